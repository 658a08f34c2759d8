"""BadNets (Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
Supply Chain", 2017): a small checkerboard patch stamped into a corner, dirty labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Attack

__all__ = ["BadNets"]


class BadNets(Attack):
    """3×3 black/white checkerboard in the bottom-right corner of a 32×32 image; on other sizes the patch
    is scaled to ``round(3·H/32)`` pixels (at least 3). Defaults: poison rate 10%, all2one target 0.

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape. The pattern is fixed (the seed
    plays no part)."""

    name = "badnets"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, patch_size: int | None = None):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.patch_size = patch_size

    def _size(self, h: int) -> int:
        return self.patch_size or max(3, round(3 * h / 32))

    def trigger(self, shape) -> Tensor:
        """The (C, s, s) patch: a 3×3 checkerboard (white at the corners) upscaled to s×s."""
        c, h, _ = shape
        i = torch.arange(3)
        board = ((i[:, None] + i[None, :] + 1) % 2).float()
        s = self._size(h)
        board = F.interpolate(board[None, None], size=(s, s), mode="nearest")[0, 0]
        return board.expand(c, s, s).clone()

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        patch = self.trigger(tuple(x.shape[1:])).to(x)
        s = patch.shape[-1]
        x = x.clone()
        x[..., -s:, -s:] = patch
        return x
