"""SIG (Barni, Kallas & Tondi, "A New Backdoor Attack in CNNs by Training Set Corruption Without Label
Poisoning", ICIP 2019): a horizontal sinusoid added to target-class images, labels left untouched."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Attack

__all__ = ["SIG"]


class SIG(Attack):
    """Clean-label sinusoidal signal ``v(i, j) = Δ·sin(2π·j·f / W)`` added to every pixel of row i, column
    j (all channels), then clipped to [0, 1]. Defaults: the NFT paper's (its appendix: "the [Δ] is set to
    0.2", 80% of the target class poisoned, no PGD) — Δ = 0.2, f = 6 (Barni et al. trained with Δ = 20/255,
    ``delta=20/255``). ``poison_rate`` is the fraction *of the target class*; all2one only.

    Measured on the digits default (SmallCNN, 80% of class 0 = 114 images): Δ = 20/255 gives ASR 8.7,
    Δ = 0.2 gives 83.9 after 10 epochs and 89.8 after 30, which the vision config trains it for
    (``train.epochs_scale``), all at ACC ≥ 99.7.

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape. Deterministic (no seed)."""

    name = "sig"
    clean_label = True

    def __init__(self, target: int = 0, poison_rate: float = 0.8, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, delta: float = 0.2, freq: float = 6):
        if mode != "all2one":
            raise ValueError("SIG is a clean-label attack: only mode='all2one' is defined")
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.delta, self.freq = delta, freq

    def trigger(self, shape) -> Tensor:
        """The (C, H, W) additive signal."""
        c, h, w = shape
        row = self.delta * torch.sin(2 * math.pi * torch.arange(w) * self.freq / w)
        return row.expand(c, h, w).clone()

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return (x + self.trigger(tuple(x.shape[1:])).to(x)).clamp(0, 1)
