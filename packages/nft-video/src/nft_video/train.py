"""Training a (backdoored) video classifier: SGD + one-cycle LR, optional temporal jitter; all
randomness from a ``torch.Generator``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nft_core.data import TensorData

from .augment import TemporalJitter

__all__ = ["train_classifier"]


def train_classifier(model: nn.Module, data: TensorData, *, epochs: int, lr: float = 0.05, batch_size: int = 32,
                     weight_decay: float = 5e-4, jitter: int = 0, generator: torch.Generator,
                     device="cpu", progress=None) -> nn.Module:
    """Train on items ``(clip, y)`` with cross-entropy; returns the model in eval mode."""
    device = torch.device(device)
    model.to(device).train()
    x_all, y_all = data.tensors[0], data.tensors[1]
    n = len(data)
    steps = max(1, epochs * math.ceil(n / batch_size))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    aug = TemporalJitter(jitter) if jitter else None
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            x, y = x_all[idx], y_all[idx]
            if aug is not None:
                x, y = aug((x, y), generator)
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None:
                progress.update(1)
    return model.eval()
