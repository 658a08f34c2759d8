"""Cut-based augmentations for image batches ``(x, y, *rest)`` with ``x`` (B, C, H, W).

Both follow :class:`nft_core.contracts.Augmentation`: every random parameter is drawn once per call from
the ``torch.Generator`` passed in (never the global RNG), and the input batch is not modified.
"""

from __future__ import annotations

from typing import Any

import torch

from nft_core.augment import sample_beta
from nft_core.contracts import MixedTarget

__all__ = ["CutMix", "CutOut"]


class CutMix:
    """CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
    Features", ICCV 2019): λ ~ Beta(α, α); a box of side ``√(1-λ)·(H, W)`` centred uniformly at random
    (clipped to the image) is pasted from ``x[perm]`` into every image. One box and one permutation per
    batch; λ is then recomputed from the clipped box, ``λ = 1 - area / (H·W)``.

    Output: ``(x̃, MixedTarget(y, y[perm], λ), *rest)``."""

    def __init__(self, alpha: float = 1.0):
        if alpha <= 0:
            raise ValueError(f"CutMix alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, y, *rest = batch
        h, w = x.shape[-2:]
        lam = sample_beta(generator, self.alpha)
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        cy, cx = (torch.rand(2, generator=generator) * torch.tensor([h, w])).tolist()
        bh, bw = (1 - lam) ** 0.5 * h, (1 - lam) ** 0.5 * w
        y0, y1 = int(max(0, cy - bh / 2)), int(min(h, cy + bh / 2))
        x0, x1 = int(max(0, cx - bw / 2)), int(min(w, cx + bw / 2))
        out = x.clone()
        out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the box was clipped: λ from its true area
        return (out, MixedTarget(y, y[perm], lam), *rest)

    def __repr__(self) -> str:
        return f"CutMix(alpha={self.alpha})"


class CutOut:
    """Cutout (DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with Cutout",
    2017): each image gets one ``length``×``length`` square set to ``fill``, centred uniformly on the image
    and clipped at its border (so it may be partly outside). Defaults: length 16 (the paper's CIFAR-10
    setting), fill 0. The B centres are drawn in one call; targets are unchanged."""

    def __init__(self, length: int = 16, fill: float = 0.0):
        if length < 1:
            raise ValueError(f"CutOut length must be >= 1, got {length}")
        self.length, self.fill = length, fill

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, *rest = batch
        b, h, w = x.shape[0], *x.shape[-2:]
        centres = (torch.rand(b, 2, generator=generator) * torch.tensor([h, w])).long().to(x.device)
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        half = self.length // 2  # the square spans [c - half, c - half + length)
        in_r = (rows[None] >= centres[:, :1] - half) & (rows[None] < centres[:, :1] - half + self.length)
        in_c = (cols[None] >= centres[:, 1:] - half) & (cols[None] < centres[:, 1:] - half + self.length)
        hole = in_r[:, :, None] & in_c[:, None, :]  # (B, H, W)
        shape = (b,) + (1,) * (x.ndim - 3) + (h, w)
        out = x.masked_fill(hole.view(shape), self.fill)
        return (out, *rest)

    def __repr__(self) -> str:
        return f"CutOut(length={self.length}, fill={self.fill})"
