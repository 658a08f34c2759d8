"""Trojan (Liu, Ma, Aafer, Lee, Zhai, Wang & Zhang, "Trojaning Attack on Neural Networks", NDSS 2018):
a watermark-like square stamped onto the image, dirty labels.

Not the paper's trigger: Liu et al. reverse-engineer the trigger's pixel values from the victim model's
neurons. Here the pattern is a fixed, seeded stand-in of the same form (a square logo-like mark); the
poisoning and labelling follow the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Attack

__all__ = ["Trojan"]


class Trojan(Attack):
    """A ``size``×``size`` square (default H/4, i.e. 8 px on 32×32) in the bottom-right corner: a
    one-pixel white frame around a coloured interior drawn from ``seed``, blended with opacity ``alpha``
    (1 = stamped). Defaults: poison rate 10%, all2one target 0; ``mode='all2all'`` is the "Trojan all" variant.

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape."""

    name = "trojan"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, size: int | None = None, alpha: float = 1.0):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.size, self.alpha = size, alpha

    def trigger(self, shape) -> Tensor:
        """The (C, s, s) mark: white frame, seeded colours inside, thresholded to {0, 1} per channel."""
        c, h, _ = shape
        s = self.size or max(4, h // 4)
        mark = (torch.rand((c, s, s), generator=self._seeded()) > 0.5).float()
        mark[:, 0, :] = mark[:, -1, :] = mark[:, :, 0] = mark[:, :, -1] = 1.0
        return mark

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mark = self.trigger(tuple(x.shape[1:])).to(x)
        s = mark.shape[-1]
        x = x.clone()
        x[..., -s:, -s:] = (1 - self.alpha) * x[..., -s:, -s:] + self.alpha * mark
        return x
