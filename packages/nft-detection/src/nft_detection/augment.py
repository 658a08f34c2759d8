"""Augmentations for NFT on multi-label and detection batches (the :class:`~nft_core.Augmentation`
contract: random parameters drawn once per call from the given generator, applied to every part).

* :class:`MultiLabelMixUp`: ``x̃ = λx_i + (1−λ)x_j`` and the label *vectors* mixed with the same λ,
  returned as :class:`~nft_core.MixedTarget` (BCE is linear in its target, so this equals BCE against the
  soft vector ``λy_i + (1−λ)y_j``; ``soft=True`` returns that vector instead).
* :class:`DetectionMixUp`: images blended with one λ, the boxes of both images kept, each with a
  per-box loss weight (λ for the first image's boxes, 1−λ for the second's), as in Zhang et al.'s
  "Bag of Freebies for Training Object Detection Neural Networks" (2019).
* :class:`DetectionMosaic` / :class:`MultiLabelMosaic`: mosaic (Bochkovskiy, Wang, Liao, "YOLOv4: Optimal
  Speed and Accuracy of Object Detection", 2020): every output image is four batch images, each resized
  into one quadrant around a random centre; boxes are scaled and shifted with their image (per-box
  weights kept; boxes smaller than ``min_size`` pixels after the resize dropped), multi-hot labels are the
  union of the four images' labels. Here the whole image is resized into its quadrant (no crop), so no
  object is cut and the label union is exact.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nft_core.augment import mix_permutation, sample_beta
from nft_core.contracts import MixedTarget

__all__ = ["MultiLabelMixUp", "DetectionMixUp", "DetectionMosaic", "MultiLabelMosaic"]


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


class _Mosaic:
    def __init__(self, center: tuple[float, float] = (0.25, 0.75)):
        lo, hi = (float(v) for v in center)
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"mosaic center must satisfy 0 < low <= high < 1, got {center!r}")
        self.center = (lo, hi)

    def _layout(self, x: torch.Tensor, generator: torch.Generator):
        """Mosaic images and, per output image, the four (source index, x0, y0, x1, y1) quadrants."""
        b, _, h, w = x.shape
        if h < 2 or w < 2:
            raise ValueError(f"mosaic needs images of at least 2x2 pixels, got {h}x{w}")
        perms = [list(range(b))] + [mix_permutation(b, generator).tolist() for _ in range(3)]
        lo, hi = self.center
        cs = torch.rand(b, 2, generator=generator) * (hi - lo) + lo
        out = torch.empty_like(x)
        layout = []
        for i in range(b):
            cx = min(max(int(round(float(cs[i, 0]) * w)), 1), w - 1)
            cy = min(max(int(round(float(cs[i, 1]) * h)), 1), h - 1)
            quads = []
            for q, (x0, y0, x1, y1) in enumerate(((0, 0, cx, cy), (cx, 0, w, cy), (0, cy, cx, h), (cx, cy, w, h))):
                j = perms[q][i]
                out[i, :, y0:y1, x0:x1] = F.interpolate(x[j:j + 1].float(), size=(y1 - y0, x1 - x0), mode="bilinear",
                                                        align_corners=False, antialias=True)[0].to(x.dtype)
                quads.append((j, x0, y0, x1, y1))
            layout.append(quads)
        return out, layout


class DetectionMosaic(_Mosaic):
    """Batch ``(images (B,3,H,W), targets list of {"boxes" xyxy pixels, "labels"[, "weights"]})`` -> mosaic
    images and targets holding the moved boxes of all four images (see the module docstring)."""

    def __init__(self, center: tuple[float, float] = (0.25, 0.75), min_size: float = 2.0):
        super().__init__(center)
        if min_size < 0:
            raise ValueError(f"mosaic min_size must be >= 0, got {min_size}")
        self.min_size = float(min_size)

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, targets = batch[0], batch[1]
        h, w = x.shape[-2:]
        images, layout = self._layout(x, generator)
        out = []
        for quads in layout:
            boxes, labels, weights = [], [], []
            for j, x0, y0, x1, y1 in quads:
                t = targets[j]
                bx = t["boxes"].float()
                scale = bx.new_tensor([(x1 - x0) / w, (y1 - y0) / h] * 2)
                moved = bx * scale + bx.new_tensor([x0, y0, x0, y0])
                keep = ((moved[:, 2] - moved[:, 0]) >= self.min_size) & ((moved[:, 3] - moved[:, 1]) >= self.min_size)
                wt = t.get("weights", torch.ones(len(t["labels"]), device=bx.device))
                boxes.append(moved[keep].to(t["boxes"].dtype))
                labels.append(t["labels"][keep])
                weights.append(wt[keep])
            out.append({"boxes": torch.cat(boxes), "labels": torch.cat(labels), "weights": torch.cat(weights)})
        return (images, out, *batch[2:])

    def __repr__(self) -> str:
        return f"DetectionMosaic(center={self.center}, min_size={self.min_size})"


class MultiLabelMosaic(_Mosaic):
    """Batch ``(x (B,3,H,W), y (B,C) multi-hot, *rest)`` -> mosaic images, labels the union of the four
    images' labels."""

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, y, *rest = batch
        if isinstance(y, MixedTarget) or y.dim() != 2:
            raise ValueError("MultiLabelMosaic expects multi-hot label vectors (B, C)")
        images, layout = self._layout(x, generator)
        union = torch.stack([torch.stack([y[q[0]] for q in quads]).amax(0) for quads in layout])
        return (images, union, *rest)

    def __repr__(self) -> str:
        return f"MultiLabelMosaic(center={self.center})"
