"""BppAttack (Wang, Zhai & Ma, "BppAttack: Stealthy and Efficient Trojan Attacks against Deep Neural
Networks via Image Quantization and Contrastive Adversarial Learning", CVPR 2022): the trigger is colour
depth reduction with Floyd–Steinberg dithering; negative samples teach the network that other small
perturbations are not the trigger.

What differs from the paper: the paper builds its negative samples on the fly during training with an
adversarial perturbation against the model being trained ("contrastive adversarial learning"). Here the
attack only poisons data (no access to the model), so a negative sample is the clean image plus a
*random* uniform perturbation of up to one quantisation step per pixel, keeping its true label; their
number is ``neg_ratio`` × the number of poisoned samples (0.2 by default: our choice, the paper's text
gives none). Quantisation and dithering follow the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nft_core.data import TensorData

from .base import Attack, _check_images

__all__ = ["BPPA"]


def dither_quantize(x: Tensor, levels: int) -> Tensor:
    """Quantise ``x`` (N, C, H, W) in [0, 1] to ``levels`` evenly spaced values with Floyd–Steinberg error
    diffusion (raster order, weights 7/16 right, 3/16 down-left, 5/16 down, 1/16 down-right)."""
    q = levels - 1
    e = x.clone()
    out = torch.empty_like(x)
    _, _, h, w = x.shape
    for i in range(h):
        for j in range(w):
            old = e[:, :, i, j]
            new = (torch.round(old * q) / q).clamp(0, 1)
            out[:, :, i, j] = new
            err = old - new
            if j + 1 < w:
                e[:, :, i, j + 1] += err * (7 / 16)
            if i + 1 < h:
                if j > 0:
                    e[:, :, i + 1, j - 1] += err * (3 / 16)
                e[:, :, i + 1, j] += err * (5 / 16)
                if j + 1 < w:
                    e[:, :, i + 1, j + 1] += err * (1 / 16)
    return out


class BPPA(Attack):
    """Bit-depth squeezing to ``bits`` bits per channel (2**bits levels; paper default 5 for CIFAR-10 and
    GTSRB) with Floyd–Steinberg dithering; dirty labels, poison rate 10%, all2one target 0 or all2all.

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape; ``trigger((C, H, W))`` is the
    residual on a mid-grey image (the trigger is image dependent). Deterministic (no seed)."""

    name = "bppa"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, bits: int = 5, dither: bool = True,
                 neg_ratio: float = 0.2):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.bits, self.dither, self.neg_ratio = bits, dither, neg_ratio

    @property
    def levels(self) -> int:
        return 2**self.bits

    def trigger(self, shape) -> Tensor:
        g = torch.full((1, *tuple(shape)), 0.5)
        return (self.apply(g) - g)[0]

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.dither:
            return dither_quantize(x, self.levels)
        q = self.levels - 1
        return torch.round(x * q) / q

    def apply_negative(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """A negative sample: uniform noise of at most one quantisation step per pixel, clipped."""
        step = 1 / (self.levels - 1)
        noise = (torch.rand(x.shape, generator=generator) * 2 - 1) * step
        return (x + noise.to(x)).clamp(0, 1)

    def poison_train(self, data: TensorData, generator: torch.Generator) -> tuple[TensorData, Tensor]:
        """Poisoned samples are quantised and relabelled; ``neg_ratio``× as many other samples get a
        random perturbation and keep their labels. Returns the poisoned indices only."""
        poisoned, idx = super().poison_train(data, generator)
        x, y, *rest = poisoned.tensors
        _check_images(x)
        others = torch.ones(len(y), dtype=torch.bool)
        others[idx] = False
        pool = torch.nonzero(others).flatten()
        k = min(len(pool), round(self.neg_ratio * len(idx)))
        neg = pool[torch.randperm(len(pool), generator=generator)[:k]]
        if k:
            x[neg] = self.apply_negative(x[neg], generator)
        return TensorData(x, y, *rest), idx
