"""FT-SAM: fine-tuning with sharpness-aware minimization.

Zhu, Wei, Zha, Wu. "Enhancing Fine-Tuning Based Backdoor Defense with Sharpness-Aware Minimization."
ICCV 2023.

Every step: ascend to the worst-case weights within a (by default adaptive, ASAM-style: scaled by
``|w|``) ball of radius ``rho``, take the gradient there, and apply it to the original weights. The
larger radius pushes the backdoor-related (large-norm) neurons out of their sharp basin.
Defaults (CIFAR protocol as in the authors' BackdoorBench implementation): adaptive SAM with rho 2.0,
SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 128, 100 epochs, cosine decay. Tests shrink ``epochs``.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..contracts import PurifyResult, TaskAdapter
from ..rnn import rnn_safe
from ._common import Setup, cosine_lr, finish

__all__ = ["FTSAM"]


class FTSAM:
    """FT-SAM (Zhu et al., ICCV 2023): fine-tuning with sharpness-aware minimization. See the module docstring."""

    name = "ftsam"

    def __init__(self, epochs: int = 100, lr: float = 0.01, rho: float = 2.0, adaptive: bool = True,
                 batch_size: int = 128, momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0,
                 device: str | None = None):
        self.epochs, self.lr, self.rho, self.adaptive = epochs, lr, rho, adaptive
        self.batch_size, self.momentum, self.weight_decay = batch_size, momentum, weight_decay
        self.seed, self.device = seed, device

    @rnn_safe
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        t0 = time.perf_counter()
        s = Setup(model, data, adapter, batch_size=self.batch_size, seed=self.seed, device=self.device)
        work = s.work
        params = [p for p in work.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        spe = s.source.steps_per_epoch
        total, step = self.epochs * spe, 0
        history: list[dict[str, float]] = []
        work.train()
        for epoch in range(self.epochs):
            tot, tot_sharp = 0.0, 0.0
            for _ in range(spe):
                lr = cosine_lr(opt, self.lr, step, total)
                batch = s.source.next()
                loss = adapter.loss(work, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                with torch.no_grad():
                    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                    scaled = [(p.abs() if self.adaptive else 1.0) * g for p, g in zip(params, grads)]
                    norm = torch.norm(torch.stack([t.norm() for t in scaled])) + 1e-12
                    eps = [(p.abs() if self.adaptive else 1.0) * t * (self.rho / norm)
                           for p, t in zip(params, scaled)]
                    for p, e in zip(params, eps):
                        p.add_(e)
                opt.zero_grad(set_to_none=True)
                sharp = adapter.loss(work, batch)
                sharp.backward()
                with torch.no_grad():
                    for p, e in zip(params, eps):
                        p.sub_(e)
                opt.step()
                tot += float(loss.detach())
                tot_sharp += float(sharp.detach())
                step += 1
            history.append({"epoch": float(epoch + 1), "loss": tot / spe, "sam_loss": tot_sharp / spe, "lr": lr})
        out = finish(work, model)
        info = {"defense": self.name, "epochs": self.epochs, "lr": self.lr, "rho": self.rho,
                "adaptive": self.adaptive}
        return PurifyResult(out, {}, history, time.perf_counter() - t0, info)
