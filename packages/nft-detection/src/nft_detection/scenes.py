"""The embedded default data set: generated scenes in the Pascal VOC layout.

Coloured geometric sprites (red disc, blue square, green triangle, yellow star, magenta ring, cyan
cross) pasted at random positions and scales onto random crops of scikit-image's bundled sample photos
(astronaut, coffee, chelsea, rocket, camera …), written as JPEG + VOC XML + split files and read back
through :func:`~nft_detection.voc.load_voc` — the same code path as real VOC.

Co-occurrence is controlled so the clean-image backdoor has a natural trigger: the *combination*
``red_disc + blue_square`` appears in ``trigger_rate`` of the images (a minority, 20 % by default); the
other images hold at most one of the two. ``green_triangle`` (the default attack target) is more frequent
inside trigger images (``target_given_trigger``) so that both the disappearing and the appearing attack
have test images to measure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .voc import write_voc

__all__ = ["SCENE_CLASSES", "generate_scenes", "render_scene"]

SCENE_CLASSES = ("red_disc", "blue_square", "green_triangle", "yellow_star", "magenta_ring", "cyan_cross")
_COLORS = np.array([(220, 30, 30), (30, 60, 230), (30, 200, 40), (240, 220, 20), (220, 40, 220), (20, 220, 220)])
_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "coins", "moon")


def _photos() -> list[np.ndarray]:
    import skimage.data as skd

    out = []
    for name in _PHOTOS:
        a = getattr(skd, name)()
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        out.append(a[..., :3])
    return out


def _shape_mask(kind: int, s: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``(s, s)`` mask of sprite ``kind``."""
    from skimage.draw import polygon

    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    c = s / 2
    d = np.hypot(yy - c, xx - c)
    m = np.zeros((s, s), bool)
    if kind == 0:  # disc
        m = d <= c
    elif kind == 1:  # square
        m[:] = True
    elif kind == 2:  # triangle
        rr, cc = polygon([s - 1, s - 1, 0], [0, s - 1, c], (s, s))
        m[rr, cc] = True
    elif kind == 3:  # five-pointed star
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, c, c * 0.45)
        rr, cc = polygon(c + rad * np.sin(ang), c + rad * np.cos(ang), (s, s))
        m[rr, cc] = True
    elif kind == 4:  # ring
        m = (d <= c) & (d >= c * 0.55)
    else:  # cross
        t = max(2, s // 5)
        m[:, int(c) - t // 2 - 1 : int(c) + t // 2 + 1] = True
        m[int(c) - t // 2 - 1 : int(c) + t // 2 + 1, :] = True
    return m


def render_scene(cats: list[int], size: int, rng: np.random.Generator, photos: list[np.ndarray]):
    """One ``(size, size, 3)`` uint8 image with the sprites ``cats`` and their boxes."""
    from PIL import Image

    ph = photos[rng.integers(len(photos))]
    h, w = ph.shape[:2]
    crop = int(rng.integers(min(h, w) // 4, min(h, w) // 2 + 1))
    y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    bg = Image.fromarray(ph[y0 : y0 + crop, x0 : x0 + crop]).resize((size, size), Image.BILINEAR)
    img = (np.asarray(bg, dtype=np.float32) * 0.6).astype(np.float32)
    objs, placed = [], []
    lo, hi = max(6, size * 7 // 32), max(8, size * 13 // 32)
    for c in cats:
        for _ in range(30):
            s = int(rng.integers(lo, hi + 1))
            x, y = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
            if all(_overlap((x, y, x + s, y + s), b) < 0.15 for b in placed):
                break
        placed.append((x, y, x + s, y + s))
        m = _shape_mask(c, s, rng)
        color = np.clip(_COLORS[c] + rng.integers(-20, 21, 3), 0, 255)
        img[y : y + s, x : x + s][m] = color
        ys, xs = np.nonzero(m)
        objs.append((c, x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1))
    return img.clip(0, 255).astype(np.uint8), objs


def _overlap(a, b) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _draw_categories(rng: np.random.Generator, trigger: tuple[int, int], target: int, trigger_rate: float,
                     target_given_trigger: float, p_other: float, n_cls: int) -> list[int]:
    a, b = trigger
    if rng.random() < trigger_rate:
        cats = [a, b]
        if rng.random() < target_given_trigger:
            cats.append(target)
        others = [c for c in range(n_cls) if c not in (a, b, target)]
    else:
        cats = []
        r = rng.random()
        if r < 0.35:
            cats.append(a)
        elif r < 0.7:
            cats.append(b)
        others = [c for c in range(n_cls) if c not in (a, b)]
    cats += [c for c in others if rng.random() < p_other]
    if not cats:
        cats = [int(rng.choice(others))]
    cats = cats[:4]
    rng.shuffle(cats)
    return [int(c) for c in cats]


def generate_scenes(root: str | os.PathLike, *, n_train: int = 800, n_val: int = 100, n_test: int = 400,
                    size: int = 64, seed: int = 0, trigger: tuple[int, int] = (0, 1), target: int = 2,
                    trigger_rate: float = 0.2, target_given_trigger: float = 0.6, p_other: float = 0.3) -> Path:
    """Write the scenes under ``root/VOCdevkit/VOC2007`` (splits train, val, test, trainval) and return
    that folder. Idempotent: a finished folder (``scenes.json`` present, same settings) is reused."""
    settings = dict(n_train=n_train, n_val=n_val, n_test=n_test, size=size, seed=seed, trigger=list(trigger),
                    target=target, trigger_rate=trigger_rate, target_given_trigger=target_given_trigger,
                    p_other=p_other, classes=list(SCENE_CLASSES))
    year = Path(root) / "VOCdevkit" / "VOC2007"
    marker = year / "scenes.json"
    if marker.exists() and json.loads(marker.read_text()) == settings:
        return year
    rng = np.random.default_rng(seed)
    photos = _photos()
    n = n_train + n_val + n_test
    images, objects = [], []
    for _ in range(n):
        cats = _draw_categories(rng, tuple(trigger), target, trigger_rate, target_given_trigger, p_other,
                                len(SCENE_CLASSES))
        img, objs = render_scene(cats, size, rng, photos)
        images.append(img)
        objects.append(objs)
    splits = {"train": range(n_train), "val": range(n_train, n_train + n_val),
              "trainval": range(n_train + n_val), "test": range(n_train + n_val, n)}
    write_voc(year, images, objects, SCENE_CLASSES, splits)
    marker.write_text(json.dumps(settings))
    return year
