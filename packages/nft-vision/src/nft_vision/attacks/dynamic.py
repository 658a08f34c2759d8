"""Input-aware dynamic backdoor (Nguyen & Tran, "Input-Aware Dynamic Backdoor Attack", NeurIPS 2020): a
generator maps each image to its own trigger pattern and a mask network to its own (sparse) mask,
``x' = x + (pattern(x) − x)·mask(x)``; the generators are trained jointly with the classifier with a
backdoor loss, the clean loss and a cross-trigger loss (an image carrying the trigger generated from
*another* image keeps its true label), plus a diversity loss that keeps triggers of different images apart.

What differs from the paper: the generators are tiny fully convolutional nets (``depth`` 3×3 conv layers
of ``width`` channels, no down/up-sampling, no batch norm) instead of the paper's encoder–decoders; the
mask network is pre-trained for ``mask_epochs`` (paper: 25) with the norm loss (target density
``mask_density`` = 0.032, λ_norm = 100) and the diversity loss, then frozen, as in the paper; the mask
is ``sigmoid(sharpness·m)`` rather than the paper's tanh threshold. Loss weights, the per-batch backdoor
fraction (``poison_rate``, 0.1) and ``cross_ratio`` (2) follow the paper; the classifier optimiser is the
project's SGD + one-cycle recipe, the generators use Adam (lr 0.01, betas 0.5/0.9) as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nft_core.data import TensorData

from ._nets import (
    batches,
    conv_net,
    grey_residual,
    load_prefixed,
    prefixed_state,
    steps_for,
    victim_optimizer,
)
from .base import Attack, _check_images

__all__ = ["Dynamic"]


def _dist(a: Tensor, b: Tensor) -> Tensor:
    return ((a - b).flatten(1).pow(2).mean(1) + 1e-8).sqrt()


class Dynamic(Attack):
    """Dirty-label, sample-specific trigger from two seeded generators (built for ``channels``-channel
    images). all2one (target 0) or all2all. Use :meth:`train_backdoor` for the paper's joint training;
    :meth:`poison_train` poisons data with the current (e.g. learned and reloaded) generators, adding
    ``cross_ratio``× as many cross-trigger samples with true labels.

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape; ``trigger((C, H, W))`` is the
    residual on a mid-grey image."""

    name = "dynamic"
    requires_model_training = True

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, channels: int = 3, cross_ratio: float = 2.0,
                 mask_density: float = 0.032, lambda_norm: float = 100.0, lambda_div: float = 1.0,
                 mask_epochs: int = 5, width: int = 16, depth: int = 3, sharpness: float = 10.0,
                 lr_generator: float = 0.01):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.channels, self.cross_ratio, self.mask_density = channels, cross_ratio, mask_density
        self.lambda_norm, self.lambda_div, self.mask_epochs = lambda_norm, lambda_div, mask_epochs
        self.width, self.depth, self.sharpness, self.lr_generator = width, depth, sharpness, lr_generator
        g = self._seeded()
        self.pattern_net = conv_net(channels, channels, width, depth, g)
        self.mask_net = conv_net(channels, 1, width, depth, g)

    # -- the trigger ---------------------------------------------------------------------------------------
    def _pattern(self, x: Tensor) -> Tensor:
        return (torch.tanh(self.pattern_net(x)) + 1) / 2

    def _mask(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.sharpness * self.mask_net(x))

    def _mix(self, x: Tensor, source: Tensor) -> Tensor:
        """``x`` carrying the trigger generated from ``source``."""
        m = self._mask(source)
        return x + (self._pattern(source) - x) * m

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        dev = next(self.pattern_net.parameters()).device
        with torch.no_grad():
            return self._mix(x.to(dev), x.to(dev)).clamp(0, 1).to(x.device)

    def apply_cross(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Each image with the trigger of another, randomly chosen image of the batch (true label kept)."""
        partner = x[torch.randperm(len(x), generator=generator)] if len(x) > 1 else x.flip(-1)
        dev = next(self.pattern_net.parameters()).device
        with torch.no_grad():
            return self._mix(x.to(dev), partner.to(dev)).clamp(0, 1).to(x.device)

    def trigger(self, shape) -> Tensor:
        return grey_residual(self, shape)

    # -- learned state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        return {**prefixed_state("pattern", self.pattern_net), **prefixed_state("mask", self.mask_net)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        load_prefixed("pattern", self.pattern_net, state)
        load_prefixed("mask", self.mask_net, state)

    # -- poisoning and joint training ---------------------------------------------------------------------
    def poison_train(self, data: TensorData, generator: torch.Generator) -> tuple[TensorData, Tensor]:
        poisoned, idx = super().poison_train(data, generator)
        x, y, *rest = poisoned.tensors
        _check_images(x)
        others = torch.ones(len(y), dtype=torch.bool)
        others[idx] = False
        pool = torch.nonzero(others).flatten()
        k = min(len(pool), round(self.cross_ratio * len(idx)))
        cross = pool[torch.randperm(len(pool), generator=generator)[:k]]
        if k:
            x[cross] = self.apply_cross(x[cross], generator)
        return TensorData(x, y, *rest), idx

    def train_backdoor(self, model: nn.Module, data: TensorData, *, epochs: int, lr: float, batch_size: int,
                       generator: torch.Generator, device="cpu") -> nn.Module:
        """Pre-train the mask network (norm + diversity loss, ``mask_epochs``), freeze it, then train the
        classifier and the pattern generator together for ``epochs``: in every batch the first
        ``round(poison_rate·B)`` images get their own trigger and the target label, the next
        ``cross_ratio``× as many get another image's trigger and keep their label, the rest stay clean.
        Returns ``model`` (its ``training`` flag restored)."""
        device = torch.device(device)
        was = model.training
        model.to(device).train()
        self.pattern_net.to(device)
        self.mask_net.to(device)
        x_all, y_all = (t.to(device) for t in data.tensors[:2])
        n = len(y_all)
        betas = (0.5, 0.9)
        opt_m = torch.optim.Adam(self.mask_net.parameters(), lr=self.lr_generator, betas=betas)
        self.mask_net.requires_grad_(True)
        for _ in range(self.mask_epochs):
            for idx in batches(n, batch_size, generator):
                x = x_all[idx]
                x2 = x[torch.randperm(len(x), generator=generator).to(device)]
                m1, m2 = self._mask(x), self._mask(x2)
                norm = F.relu(m1.flatten(1).mean(1) - self.mask_density).mean()
                div = (_dist(x, x2) / (_dist(m1, m2) + 1e-3)).mean()
                loss = self.lambda_norm * norm + self.lambda_div * div
                opt_m.zero_grad(set_to_none=True)
                loss.backward()
                opt_m.step()
        self.mask_net.requires_grad_(False)
        opt, sched = victim_optimizer(model, lr, steps_for(n, batch_size, epochs))
        opt_g = torch.optim.Adam(self.pattern_net.parameters(), lr=self.lr_generator, betas=betas)
        for _ in range(epochs):
            for idx in batches(n, batch_size, generator):
                x, y = x_all[idx], y_all[idx]
                b = len(y)
                nb = round(self.poison_rate * b)
                nc = min(b - nb, round(self.cross_ratio * nb))
                x2 = x_all[torch.randint(n, (nc,), generator=generator).to(device)]
                x_bd = self._mix(x[:nb], x[:nb]).clamp(0, 1)
                x_cr = self._mix(x[nb : nb + nc], x2).clamp(0, 1)
                inputs = torch.cat([x_bd, x_cr, x[nb + nc :]])
                labels = torch.cat([self.target_labels(y[:nb]), y[nb:]])
                loss = F.cross_entropy(model(inputs), labels)
                if nc:
                    p1, p2 = self._pattern(x[nb : nb + nc]), self._pattern(x2)
                    loss = loss + self.lambda_div * (_dist(x[nb : nb + nc], x2) / (_dist(p1, p2) + 1e-3)).mean()
                opt.zero_grad(set_to_none=True)
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                opt_g.step()
                sched.step()
        self.pattern_net.requires_grad_(True)
        self.mask_net.requires_grad_(True)
        self.pattern_net.cpu()
        self.mask_net.cpu()
        return model.train(was)
