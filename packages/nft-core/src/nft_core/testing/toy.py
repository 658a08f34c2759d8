"""A tiny backdoored classifier on generated data, for tests, demos and defense smoke-benchmarks.

Ten classes of 16×16 RGB images, each class a noisy oriented grating with its own colour (learnable, not
trivial); a 3×3 checkerboard patch in the bottom-right corner as the BadNets-style trigger (Gu et al.,
2017), 10% poison rate, all2one target 0. Everything is drawn from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contracts import EvalData
from ..data import TensorData, stratified_split
from ..init import seeded_init_

__all__ = ["ToyBackdoor", "SmallCNN", "make_toy_backdoor", "toy_images", "apply_patch"]


class SmallCNN(nn.Module):
    """conv-BN-ReLU ×3 with pooling, global average pool, linear head (~25k parameters)."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(),
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean((2, 3)))


def toy_images(n: int, generator: torch.Generator, num_classes: int = 10, size: int = 16):
    """``n`` images (n, 3, size, size) in [0, 1] and labels: class k is a grating at angle k·π/C with a
    class colour, random phase, frequency jitter, brightness and Gaussian noise."""
    y = torch.randint(num_classes, (n,), generator=generator)
    ang = y.float() * math.pi / num_classes + 0.15 * torch.randn(n, generator=generator)
    freq = 2.0 + 0.5 * torch.rand(n, generator=generator)
    phase = 2 * math.pi * torch.rand(n, generator=generator)
    r = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    proj = torch.cos(ang)[:, None, None] * xx + torch.sin(ang)[:, None, None] * yy
    wave = 0.5 + 0.5 * torch.sin(math.pi * freq[:, None, None] * proj + phase[:, None, None])
    hue = torch.stack([torch.sin(y * 1.3 + c) * 0.35 + 0.6 for c in (0.0, 2.1, 4.2)], 1)
    img = wave[:, None] * hue[:, :, None, None]
    img = img * (0.7 + 0.3 * torch.rand(n, 1, 1, 1, generator=generator))
    img = img + 0.08 * torch.randn(img.shape, generator=generator)
    return img.clamp(0, 1), y


def apply_patch(x: Tensor, size: int = 3) -> Tensor:
    """Stamp a ``size``×``size`` black/white checkerboard into the bottom-right corner."""
    x = x.clone()
    i = torch.arange(size)
    board = ((i[:, None] + i[None, :]) % 2).float()
    x[..., -size:, -size:] = board
    return x


@dataclass
class ToyBackdoor:
    model: nn.Module
    clean_model_acc: float | None
    val: TensorData
    test: EvalData
    target: int
    train: TensorData


def _train(model, data: TensorData, epochs: int, generator, lr=0.05, batch=64):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    n = len(data)
    steps = epochs * math.ceil(n / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        for s in range(0, n, batch):
            x, y = data.take(perm[s : s + batch])
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


def make_toy_backdoor(
    seed: int = 0, n_train: int = 3000, n_test: int = 1000, poison_rate: float = 0.1,
    epochs: int = 8, val_ratio: float = 0.1, target: int = 0,
) -> ToyBackdoor:
    """Train :class:`SmallCNN` with a BadNets patch backdoor; hold out ``val_ratio`` of the clean training
    data (stratified) as the defender's validation set. Takes ~10 s on 2 CPU cores."""
    g = torch.Generator().manual_seed(seed)
    x, y = toy_images(n_train, g)
    val_idx, train_idx = stratified_split(y, ratio=val_ratio, generator=g)
    val = TensorData(x[val_idx], y[val_idx])
    xt, yt = x[train_idx].clone(), y[train_idx].clone()
    n_poison = int(poison_rate * len(train_idx))
    pidx = torch.randperm(len(train_idx), generator=g)[:n_poison]
    xt[pidx] = apply_patch(xt[pidx])
    yt[pidx] = target
    model = seeded_init_(SmallCNN(), g)
    _train(model, TensorData(xt, yt), epochs, g)
    xs, ys = toy_images(n_test, g)
    keep = ys != target
    test = EvalData(
        clean=TensorData(xs, ys),
        poisoned=TensorData(apply_patch(xs[keep]), ys[keep], torch.full_like(ys[keep], target)),
    )
    return ToyBackdoor(model, None, val, test, target, TensorData(xt, yt))
