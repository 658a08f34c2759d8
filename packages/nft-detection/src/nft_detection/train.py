"""Training the (backdoored) multi-label classifier and detector; all randomness from a generator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nft_core.data import TensorData

__all__ = ["train_multilabel", "train_detector", "random_flip", "flip_detection"]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample horizontal flip (labels of a multi-label image do not change)."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def train_multilabel(model: nn.Module, data: TensorData, *, epochs: int, lr: float = 2e-3, batch_size: int = 64,
                     weight_decay: float = 1e-4, augment: bool = True, generator: torch.Generator,
                     device="cpu", progress=None, loss_fn=None) -> nn.Module:
    """BCE-with-logits (or ``loss_fn(logits, targets) -> (B,)``, e.g. the asymmetric loss of
    :func:`~nft_detection.adapters.multilabel_loss`), AdamW + one-cycle LR; returns the model in eval mode."""
    device = torch.device(device)
    model.to(device).train()
    x_all, y_all = (t.to(device) for t in data.tensors[:2])
    n = len(data)
    steps = max(1, epochs * math.ceil(n / batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).to(device)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            x, y = x_all[idx], y_all[idx]
            if augment:
                x = random_flip(x, generator)
            logits = model(x)
            loss = loss_fn(logits, y).mean() if loss_fn is not None else F.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None:
                progress.update(1)
    return model.eval()


def flip_detection(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Horizontal flip of one detection sample (boxes mirrored; labels unchanged)."""
    w = image.shape[-1]
    out = dict(target)
    b = target["boxes"].clone()
    b[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    out["boxes"] = b
    return image.flip(-1), out


def train_detector(model: nn.Module, samples: list, *, epochs: int, lr: float = 1e-3, batch_size: int = 4,
                   generator: torch.Generator, device="cpu", weight_decay: float = 1e-4, augment: bool = False,
                   schedule: str = "constant", progress=None) -> nn.Module:
    """AdamW on the detector's summed loss dict over ``(image, target)`` samples; returns the model in eval
    mode. ``augment``: random horizontal flips (boxes mirrored); ``schedule``: ``constant`` or
    ``onecycle`` (warm-up then cosine decay, as :func:`train_multilabel`); ``progress``: a tqdm-like bar
    updated once per step."""
    if schedule not in ("constant", "onecycle"):
        raise ValueError(f"schedule must be 'constant' or 'onecycle', got {schedule!r}")
    device = torch.device(device)
    model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(len(samples) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps) if schedule == "onecycle" else None
    for _ in range(epochs):
        perm = torch.randperm(len(samples), generator=generator).tolist()
        for s in range(0, len(perm), batch_size):
            chunk = [samples[i] for i in perm[s : s + batch_size]]
            if augment:
                flips = (torch.rand(len(chunk), generator=generator) < 0.5).tolist()
                chunk = [flip_detection(*c) if f else c for c, f in zip(chunk, flips)]
            images = [c[0].to(device) for c in chunk]
            targets = [{k: v.to(device) for k, v in c[1].items()} for c in chunk]
            loss = sum(model(images, targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if progress is not None:
                progress.update(1)
    return model.eval()
