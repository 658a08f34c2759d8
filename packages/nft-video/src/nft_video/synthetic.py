"""The embedded default: procedurally generated action clips written as real ``.avi`` files (mpeg4 via
PyAV) in the UCF-101 layout, so they are read back through the real loader.

Six motion classes over a smooth random texture (one texture, shape, colour and speed per clip):

0. ``MoveLeftRight``  a square slides horizontally (either direction)
1. ``MoveUpDown``     a square slides vertically (either direction)
2. ``Rotate``         a bar rotates about the centre (either sense)
3. ``Grow``           a square grows from small to large
4. ``Bounce``         a ball moves diagonally and bounces off the walls
5. ``Flicker``        a static square blinks on and off

Layout written under ``root``: ``<Class>/v_<Class>_gNN_cMM.avi`` and ``ucfTrainTestlist/classInd.txt``,
``trainlist01.txt``, ``testlist01.txt`` (groups ``g01``–``g{test_groups}`` are the test split, as in UCF).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .io import write_video

__all__ = ["CLASSES", "generate_clip", "write_synthetic_ucf"]

CLASSES = ["MoveLeftRight", "MoveUpDown", "Rotate", "Grow", "Bounce", "Flicker"]


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour texture (upsampled coarse noise) in [0, 1], ``(size, size, 3)``."""
    coarse = rng.random((4, 4, 3))
    idx = np.linspace(0, 3, size)
    i0 = np.floor(idx).astype(int).clip(0, 2)
    f = (idx - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]  # (size, 4, 3)
    cols = rows[:, i0] * (1 - f[None, :, :]) + rows[:, i0 + 1] * f[None, :, :]
    return 0.25 + 0.5 * cols  # mid tones, so shapes stay visible


def generate_clip(cls: int, rng: np.random.Generator, frames: int = 40, size: int = 32) -> np.ndarray:
    """One clip of class ``cls``: uint8 ``(frames, size, size, 3)``."""
    bg = _texture(rng, size)
    colour = rng.choice([0.0, 1.0], size=3)
    if colour.sum() in (0.0, 3.0) and rng.random() < 0.5:
        colour[rng.integers(3)] = 1 - colour[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((frames, size, size, 3))
    s = size / 32.0
    half = rng.uniform(3, 5) * s
    sign = rng.choice([-1.0, 1.0])
    c0 = rng.uniform(0.35, 0.65, size=2) * size
    v = rng.uniform(0.6, 1.0, size=2) * rng.choice([-1.0, 1.0], size=2) * s
    phase = rng.uniform(0, math.pi)
    for t in range(frames):
        u = t / max(1, frames - 1)
        if cls == 0:
            cx = size / 2 + sign * (u - 0.5) * (size - 2 * half - 2)
            mask = (np.abs(xx - cx) <= half) & (np.abs(yy - c0[0]) <= half)
        elif cls == 1:
            cy = size / 2 + sign * (u - 0.5) * (size - 2 * half - 2)
            mask = (np.abs(yy - cy) <= half) & (np.abs(xx - c0[1]) <= half)
        elif cls == 2:
            a = phase + sign * u * math.pi
            dx, dy = xx - size / 2, yy - size / 2
            along = dx * math.cos(a) + dy * math.sin(a)
            across = -dx * math.sin(a) + dy * math.cos(a)
            mask = (np.abs(along) <= 0.38 * size) & (np.abs(across) <= 1.6 * s)
        elif cls == 3:
            h = (1 + u * 0.3 * size)
            mask = (np.abs(xx - c0[1]) <= h) & (np.abs(yy - c0[0]) <= h)
        elif cls == 4:
            lo, hi = half, size - 1 - half
            pos = []
            for k in range(2):
                p = c0[k] + v[k] * t * 1.5
                span = hi - lo
                p = (p - lo) % (2 * span)
                pos.append(lo + (p if p <= span else 2 * span - p))
            mask = (xx - pos[1]) ** 2 + (yy - pos[0]) ** 2 <= half**2
        elif cls == 5:
            on = (t // 3) % 2 == 0
            mask = ((np.abs(xx - c0[1]) <= half) & (np.abs(yy - c0[0]) <= half)) if on else np.zeros_like(xx, bool)
        else:
            raise ValueError(f"class {cls} is not one of the {len(CLASSES)} synthetic classes")
        frame = bg.copy()
        frame[mask] = colour
        out[t] = frame
    return (out * 255).round().clip(0, 255).astype(np.uint8)


def write_synthetic_ucf(root: str | os.PathLike, *, clips_per_class: int = 40, test_groups: int = 2,
                        clips_per_group: int = 5, frames: int = 40, size: int = 32, seed: int = 0,
                        classes: int = len(CLASSES)) -> Path:
    """Write the synthetic dataset under ``root`` (atomically: a temporary folder renamed into place;
    an existing complete ``root`` is left as it is). Returns ``root``."""
    root = Path(root)
    if (root / "ucfTrainTestlist" / "testlist01.txt").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        rng = np.random.default_rng(seed)
        lists = tmp / "ucfTrainTestlist"
        lists.mkdir()
        train, test = [], []
        names = CLASSES[:classes]
        for ci, name in enumerate(names):
            for k in range(clips_per_class):
                g, c = k // clips_per_group + 1, k % clips_per_group + 1
                rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                write_video(tmp / rel, generate_clip(ci, rng, frames, size))
                (test if g <= test_groups else train).append((rel, ci + 1))
        (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
        (lists / "trainlist01.txt").write_text("".join(f"{r} {c}\n" for r, c in train))
        (lists / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
