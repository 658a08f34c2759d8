"""Training a (backdoored) point-cloud classifier: Adam + cosine LR, optional random rotation/scale/jitter;
all randomness from a ``torch.Generator``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nft_core.data import TensorData

__all__ = ["train_classifier"]


def train_classifier(model: nn.Module, data: TensorData, *, epochs: int, lr: float = 2e-3, batch_size: int = 32,
                     weight_decay: float = 1e-4, augment: bool = False, generator: torch.Generator,
                     device: str | torch.device = "cpu", progress=None) -> nn.Module:
    """Train ``model`` on items ``(points (N, 3), label)`` with cross-entropy; returns it in eval mode."""
    from .augment import RandomScaleJitter

    device = torch.device(device)
    model.to(device).train()
    x_all, y_all = (t.to(device) for t in data.tensors[:2])
    n = len(data)
    steps = max(1, epochs * math.ceil(n / batch_size))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    aug = RandomScaleJitter() if augment else None
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).to(device)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x, y = x_all[idx], y_all[idx]
            if aug is not None:
                x, y = aug((x, y), generator)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None:
                progress.update(1)
    return model.eval()
