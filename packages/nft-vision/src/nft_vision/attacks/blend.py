"""Blend (Chen, Liu, Li, Lu & Song, "Targeted Backdoor Attacks on Deep Learning Systems Using Data
Poisoning", 2017): the whole image is blended with a fixed pattern, ``x' = (1-α)·x + α·pattern``."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Attack

__all__ = ["Blend"]


class Blend(Attack):
    """Blended-injection attack with a uniform-noise pattern drawn from ``seed`` (the paper's "random
    pattern" key), α = 0.2, poison rate 10%, all2one target 0.

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape."""

    name = "blend"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, alpha: float = 0.2):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.alpha = alpha

    def trigger(self, shape) -> Tensor:
        """The (C, H, W) pattern, uniform in [0, 1]."""
        return torch.rand(tuple(shape), generator=self._seeded())

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        pattern = self.trigger(tuple(x.shape[1:])).to(x)
        return x * (1 - self.alpha) + pattern * self.alpha
