"""Augmentations for NFT on multi-label and detection batches (the :class:`~nft_core.Augmentation`
contract: random parameters drawn once per call from the given generator, applied to every part).

* :class:`MultiLabelMixUp`: ``x̃ = λx_i + (1−λ)x_j`` and the label *vectors* mixed with the same λ,
  returned as :class:`~nft_core.MixedTarget` (BCE is linear in its target, so this equals BCE against the
  soft vector ``λy_i + (1−λ)y_j``; ``soft=True`` returns that vector instead).
* :class:`DetectionMixUp`: images blended with one λ, the boxes of both images kept, each with a
  per-box loss weight (λ for the first image's boxes, 1−λ for the second's), as in Zhang et al.'s
  "Bag of Freebies for Training Object Detection Neural Networks" (2019).
"""

from __future__ import annotations

from typing import Any

import torch

from nft_core.augment import mix_permutation, sample_beta
from nft_core.contracts import MixedTarget

__all__ = ["MultiLabelMixUp", "DetectionMixUp"]


class MultiLabelMixUp:
    """Batch ``(x (B,3,H,W), y (B,C) multi-hot, *rest)`` -> ``(x̃, MixedTarget(y, y[perm], λ), *rest)``."""

    def __init__(self, alpha: float = 1.0, soft: bool = False):
        if alpha <= 0:
            raise ValueError(f"MixUp alpha must be > 0, got {alpha}")
        self.alpha, self.soft = alpha, soft

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, y, *rest = batch
        if isinstance(y, MixedTarget) or y.dim() != 2:
            raise ValueError("MultiLabelMixUp expects multi-hot label vectors (B, C)")
        lam = sample_beta(generator, self.alpha)
        perm = mix_permutation(x.shape[0], generator).to(x.device)
        x_mixed = x.mul(lam).add_(x[perm], alpha=1 - lam)
        target = y * lam + y[perm] * (1 - lam) if self.soft else MixedTarget(y, y[perm], lam)
        return (x_mixed, target, *rest)

    def __repr__(self) -> str:
        return f"MultiLabelMixUp(alpha={self.alpha}, soft={self.soft})"


class DetectionMixUp:
    """Batch ``(images (B,3,H,W), targets list of {"boxes", "labels"[, "weights"]})`` -> blended images and
    targets holding the boxes of both images, ``weights`` λ and 1−λ (times any weights they had)."""

    def __init__(self, alpha: float = 1.0):
        if alpha <= 0:
            raise ValueError(f"MixUp alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, targets = batch[0], batch[1]
        lam = sample_beta(generator, self.alpha)
        perm = mix_permutation(x.shape[0], generator).tolist()
        x_mixed = x.mul(lam).add_(x[torch.as_tensor(perm, device=x.device)], alpha=1 - lam)
        out = []
        for i, j in enumerate(perm):
            a, b = targets[i], targets[j]
            wa = a.get("weights", torch.ones(len(a["labels"]), device=a["boxes"].device)) * lam
            wb = b.get("weights", torch.ones(len(b["labels"]), device=b["boxes"].device)) * (1 - lam)
            out.append({"boxes": torch.cat([a["boxes"], b["boxes"]]), "labels": torch.cat([a["labels"], b["labels"]]),
                        "weights": torch.cat([wa, wb])})
        return (x_mixed, out, *batch[2:])

    def __repr__(self) -> str:
        return f"DetectionMixUp(alpha={self.alpha})"
