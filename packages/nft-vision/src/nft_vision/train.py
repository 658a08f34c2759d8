"""Training a (backdoored) classifier: SGD + one-cycle LR, optional crop/flip, all randomness from a
``torch.Generator``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nft_core.data import TensorData

__all__ = ["train_classifier", "random_crop_flip"]


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Per-sample random crop (zero padding ``pad``) and horizontal flip, batched."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (n, w)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def train_classifier(
    model: nn.Module,
    data: TensorData,
    *,
    epochs: int,
    lr: float = 0.05,
    batch_size: int = 128,
    weight_decay: float = 5e-4,
    augment: bool = False,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    progress=None,
    amp: bool = False,
) -> nn.Module:
    """Train ``model`` on ``data`` (items ``(x, y)``) with cross-entropy; returns it in eval mode.

    Under ``torchrun`` (a running process group) the model is wrapped in DistributedDataParallel: every
    rank draws the same permutation from ``generator`` and trains on its shard of each batch (batches
    smaller than the world size are skipped on every rank alike); BatchNorm statistics come from rank 0's
    shard (DDP broadcasts buffers). ``amp``: bf16 autocast for the forward pass (GPU benchmarks)."""
    from nft_core.distributed import world

    device = torch.device(device)
    model.to(device).train()
    rank, size = world()
    net = model
    if size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    x_all, y_all = (t.to(device) for t in data.tensors[:2])
    n = len(data)
    steps = epochs * math.ceil(n / batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).to(device)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            x, y = x_all[idx], y_all[idx]
            if augment:
                x = random_crop_flip(x, generator)
            if size > 1:
                if len(idx) < size:
                    continue
                x, y = x.tensor_split(size)[rank], y.tensor_split(size)[rank]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None:
                progress.update(1)
    return model.eval()
