"""WaNet (Nguyen & Tran, "WaNet – Imperceptible Warping-based Backdoor Attack", ICLR 2021): the trigger is
a smooth, fixed warping of the image; "noise mode" adds randomly perturbed warps with true labels so the
network learns the exact warp, not warping in general."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nft_core.data import TensorData

from .base import Attack, _check_images

__all__ = ["WaNet"]


class WaNet(Attack):
    """Warp field: a k×k control grid uniform in [-1, 1], normalised by its mean absolute value, upsampled
    bicubically to H×W and scaled by ``s / H``; added to the identity sampling grid (coordinates in
    [-1, 1], clipped) and applied with ``grid_sample``. Paper defaults k = 4, s = 0.5, poison rate 10%,
    noise mode with ``cross_ratio`` = 2 (twice as many noise samples as poisoned ones, each warped by the
    trigger grid plus uniform noise in [-1, 1]/H, keeping its true label).

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape; ``trigger((C, H, W))`` is the
    (H, W, 2) sampling grid."""

    name = "wanet"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, k: int = 4, s: float = 0.5,
                 cross_ratio: float = 2.0):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.k, self.s, self.cross_ratio = k, s, cross_ratio

    def trigger(self, shape) -> Tensor:
        _, h, w = shape
        ctrl = torch.rand((1, 2, self.k, self.k), generator=self._seeded()) * 2 - 1
        ctrl = ctrl / ctrl.abs().mean()
        flow = F.interpolate(ctrl, size=(h, w), mode="bicubic", align_corners=True)[0].permute(1, 2, 0)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        identity = torch.stack([xs, ys], -1)  # grid_sample wants (x, y) order
        return (identity + self.s * flow / h).clamp(-1, 1)

    def _warp(self, x: Tensor, grid: Tensor) -> Tensor:
        grid = grid.to(x).expand(x.shape[0], -1, -1, -1) if grid.ndim == 3 else grid.to(x)
        return F.grid_sample(x, grid, align_corners=True).clamp(0, 1)

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self._warp(x, self.trigger(tuple(x.shape[1:])))

    def apply_noise(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """The noise-mode warp: trigger grid plus per-sample uniform noise in [-1, 1]/H."""
        n, _, h, w = x.shape
        grid = self.trigger(tuple(x.shape[1:]))
        noise = (torch.rand((n, h, w, 2), generator=generator) * 2 - 1) / h
        return self._warp(x, (grid + noise).clamp(-1, 1))

    def poison_train(self, data: TensorData, generator: torch.Generator) -> tuple[TensorData, Tensor]:
        """Poisoned samples get the warp and target labels; ``cross_ratio``× as many other samples get a
        noisy warp and keep their labels. Returns the poisoned indices only (not the noise ones)."""
        poisoned, idx = super().poison_train(data, generator)
        x, y, *rest = poisoned.tensors
        _check_images(x)
        others = torch.ones(len(y), dtype=torch.bool)
        others[idx] = False
        pool = torch.nonzero(others).flatten()
        k = min(len(pool), round(self.cross_ratio * len(idx)))
        cross = pool[torch.randperm(len(pool), generator=generator)[:k]]
        if k:
            x[cross] = self.apply_noise(x[cross], generator)
        return TensorData(x, y, *rest), idx
