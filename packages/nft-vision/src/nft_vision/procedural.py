"""A procedural CIFAR-scale image-classification set for benchmarks where no dataset can be downloaded.

``data.name='procedural'``: 10 classes of parametric shapes, each drawn with a random colour, opacity,
position, scale, rotation and stretch over a random textured background (colour, low-frequency noise, a
sine grating), half of the images with a small distractor blob behind the shape and half crossed by a
random bar, plus pixel noise. The class is the shape family alone:

    0 disk · 1 ring · 2 square · 3 triangle · 4 plus · 5 ellipse · 6 striped disk · 7 checkered square ·
    8 crescent · 9 two dots

Ambiguity comes from scale, stretch, clutter and noise (a small checkered square looks like a square, a
stretched disk like an ellipse, a disk beside the blob like two dots, low contrast hides the shape), so a
small CNN learns it but stays well below 100% in a few epochs (numbers in docs/results/paper-scale.md).
Everything is vectorized torch on the CPU (shapes as signed distances in each image's own rotated and scaled
coordinates, anti-aliased over one pixel), generated in chunks, and is a deterministic
function of ``(seed, split, n, size)``: the train and test splits come from separate generators, so
changing ``n_train`` does not change the test set. Labels are exactly balanced (counts differ by at most
one) and shuffled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nft_core.data import TensorData

__all__ = ["CLASSES", "make_procedural", "load_procedural"]

CLASSES = ["disk", "ring", "square", "triangle", "plus", "ellipse", "striped_disk", "checkered_square",
           "crescent", "two_dots"]


def _shape(k: int, u: Tensor, v: Tensor) -> Tensor:
    """Signed distance-like inside measure (> 0 inside) of class ``k`` in canonical coordinates."""
    r = torch.sqrt(u * u + v * v)
    if k in (0, 6):  # disk, striped disk
        return 0.85 - r
    if k == 1:  # ring
        return 0.18 - (r - 0.66).abs()
    if k in (2, 7):  # square, checkered square
        return 0.72 - torch.maximum(u.abs(), v.abs())
    if k == 3:  # equilateral triangle, inradius 0.45
        d = None
        for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
            h = 0.45 + (u * math.cos(a) + v * math.sin(a))  # distance to the edge facing direction -a
            d = h if d is None else torch.minimum(d, h)
        return d
    if k == 4:  # plus
        bar1 = torch.minimum(0.22 - u.abs(), 0.8 - v.abs())
        bar2 = torch.minimum(0.22 - v.abs(), 0.8 - u.abs())
        return torch.maximum(bar1, bar2)
    if k == 5:  # ellipse, semi-axes 0.9 and 0.38
        q = torch.sqrt((u / 0.9) ** 2 + (v / 0.38) ** 2)
        return (1 - q) * 0.38
    if k == 8:  # crescent: a disk minus an offset disk
        r2 = torch.sqrt((u - 0.42) ** 2 + v * v)
        return torch.minimum(0.85 - r, r2 - 0.68)
    if k == 9:  # two dots
        d1 = torch.sqrt((u - 0.5) ** 2 + v * v)
        d2 = torch.sqrt((u + 0.5) ** 2 + v * v)
        return 0.36 - torch.minimum(d1, d2)
    raise ValueError(k)


def _upsample_matrix(size: int, low: int = 4) -> Tensor:
    """(size², low²) bilinear-interpolation matrix: ``z.flatten() @ M.T`` upsamples a low×low grid."""
    eye = torch.eye(low).unsqueeze(1)  # (low, 1, low): one impulse per row
    a = F.interpolate(eye, size=size, mode="linear", align_corners=False).squeeze(1).T  # (size, low)
    return torch.kron(a, a)


def _chunk(labels: Tensor, size: int, g: torch.Generator) -> Tensor:
    n = labels.shape[0]

    def U(lo, hi, *shape):
        return torch.rand(n, *shape, generator=g).mul_(hi - lo).add_(lo)

    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    Y, X = lin.view(1, size, 1), lin.view(1, 1, size)

    # --- background: colour + low-frequency colour noise + a coloured sine grating
    noise = torch.randn(n, 3, 16, generator=g).mul_(U(0, 0.18, 1, 1))
    img = (noise.view(n * 3, 16) @ _upsample_matrix(size).T).view(n, 3, size, size)
    img.add_(U(0, 1, 3, 1, 1))
    phi, freq, phase = U(0, math.pi, 1, 1), U(1.0, 5.0, 1, 1), U(0, 2 * math.pi, 1, 1)
    grating = (X * torch.cos(phi) + Y * torch.sin(phi)).mul_(math.pi * freq).add_(phase).sin_()  # (n, H, W)
    amp = U(0, 0.15, 3, 1, 1) * torch.where(torch.rand(n, 3, 1, 1, generator=g) < 0.5, 1.0, -1.0)
    img.addcmul_(amp, grating.unsqueeze(1))
    # a distractor blob behind the shape in half of the images (radius 0.06-0.14 of the half-width)
    bx, by, br = U(-0.8, 0.8, 1, 1), U(-0.8, 0.8, 1, 1), U(0.06, 0.14, 1, 1)
    blob = (br - torch.sqrt((X - bx) ** 2 + (Y - by) ** 2)).div_(2.0 / size).add_(0.5).clamp_(0, 1)
    blob.mul_(torch.rand(n, 1, 1, generator=g) < 0.5)
    img.lerp_(U(0, 1, 3, 1, 1), blob.unsqueeze(1))

    # --- the shape: canonical coordinates of every pixel, per image (rotated, scaled, stretched 0.8-1.25×)
    scale = U(0.3, 0.85, 1, 1)
    cx, cy = U(-0.5, 0.5, 1, 1), U(-0.5, 0.5, 1, 1)
    th = U(0, 2 * math.pi, 1, 1)
    stretch = U(-0.22, 0.22, 1, 1).exp_()
    c, s = torch.cos(th) / scale, torch.sin(th) / scale
    dx, dy = X - cx, Y - cy
    u = (c * dx + s * dy) / stretch
    v = (c * dy - s * dx) * stretch
    inside = torch.empty(n, size, size)
    for k in range(len(CLASSES)):
        idx = (labels == k).nonzero().squeeze(1)
        if idx.numel():
            inside[idx] = _shape(k, u[idx], v[idx])
    pixel = 2.0 / size / scale  # one pixel in canonical units
    opacity = U(0.4, 1.0, 1, 1)
    alpha = inside.div_(pixel).add_(0.5).clamp_(0, 1).mul_(opacity).unsqueeze(1)  # (n, 1, H, W)

    # --- foreground colour fg1; shapes 6 (stripes) and 7 (checkers) mix it with fg2 by a pattern t:
    # img <- img + α(fg - img), fg = fg2 + t(fg1 - fg2)  ==  lerp(img, fg2, α) + αt(fg1 - fg2)
    fg1, fg2 = U(0, 1, 3, 1, 1), U(0, 1, 3, 1, 1)
    tex_f = U(2.2, 3.4, 1, 1)
    t = torch.ones(n, size, size)
    for k in (6, 7):
        sel = (labels == k).nonzero().squeeze(1)
        if not sel.numel():
            continue
        f = tex_f[sel]
        pattern = torch.sin(math.pi * f * u[sel])
        if k == 7:
            pattern = pattern * torch.sin(math.pi * f * v[sel])
        t[sel] = (pattern / (pixel[sel] * f * 2.0) + 0.5).clamp_(0, 1)
    img.lerp_(fg2, alpha)
    img.addcmul_(alpha * t.unsqueeze(1), fg1 - fg2)

    # --- clutter: a random bar across half of the images, then pixel noise
    bphi, boff, bwidth = U(0, math.pi, 1, 1), U(-0.8, 0.8, 1, 1), U(0.03, 0.10, 1, 1)
    bdist = (X * torch.cos(bphi) + Y * torch.sin(bphi) - boff).abs_()
    bar = (bwidth - bdist).div_(2.0 / size).add_(0.5).clamp_(0, 1)
    bar.mul_(torch.rand(n, 1, 1, generator=g) < 0.5)
    img.lerp_(U(0, 1, 3, 1, 1), bar.unsqueeze(1))
    # pixel noise: uniform with standard deviation σ ~ U(0, 0.1) (uniform draws are cheaper than normal ones)
    img.addcmul_(torch.rand(n, 3, size, size, generator=g).sub_(0.5), U(0, 0.1 * math.sqrt(12), 1, 1, 1))
    return img.clamp_(0, 1)


_CHUNK = 8192  # images per vectorized chunk (part of the definition: it fixes the order of random draws)


def make_procedural(n: int, *, size: int = 32, seed: int = 0, split: str = "train") -> TensorData:
    """``n`` images ``(n, 3, size, size)`` float32 in [0, 1] with balanced labels 0..9, deterministic in
    ``(seed, split, n, size)``."""
    if n < 1 or size < 8:
        raise ValueError(f"procedural data needs n >= 1 and size >= 8, got n={n}, size={size}")
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + {"train": 0, "test": 1}[split])
    labels = (torch.arange(n) % len(CLASSES))[torch.randperm(n, generator=g)]
    x = torch.empty(n, 3, size, size)
    for s in range(0, n, _CHUNK):
        x[s : s + _CHUNK] = _chunk(labels[s : s + _CHUNK], size, g)
    data = TensorData(x, labels)
    data.classes = list(CLASSES)
    return data


def load_procedural(n_train: int = 50_000, n_test: int = 10_000, size: int = 32,
                    seed: int = 0) -> tuple[TensorData, TensorData]:
    """The (train, test) splits: 50k / 10k at 32×32 by default, like CIFAR-10."""
    return (make_procedural(n_train, size=size, seed=seed, split="train"),
            make_procedural(n_test, size=size, seed=seed, split="test"))
