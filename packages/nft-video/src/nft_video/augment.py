"""Video augmentations (the :class:`~nft_core.contracts.Augmentation` contract): random parameters are
drawn once per call from the given generator and applied to **every frame** of a clip.

Batches are ``(clips (B, T, C, H, W), labels (B,), *rest)``."""

from __future__ import annotations

from typing import Any

import torch

from nft_core.augment import sample_beta
from nft_core.contracts import MixedTarget

__all__ = ["VideoMixUp", "TemporalJitter", "VideoCutMix", "Compose"]


class VideoMixUp:
    """Video MixUp (Zhang et al., ICLR 2018, as NFT uses it for action recognition): clip ``i`` becomes
    ``λ·x_i + (1−λ)·x_j`` with the **same λ on every frame**; targets ``MixedTarget(y, y[perm], λ)``.
    λ ~ Beta(α, α); one λ per batch, or one per clip with ``per_clip=True`` (then ``lam`` is ``(B,)``)."""

    def __init__(self, alpha: float = 1.0, per_clip: bool = False):
        if alpha <= 0:
            raise ValueError(f"VideoMixUp alpha must be > 0, got {alpha}")
        self.alpha, self.per_clip = alpha, per_clip

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, y, *rest = batch
        n = x.shape[0]
        if self.per_clip:
            lam = torch.tensor([sample_beta(generator, self.alpha) for _ in range(n)], dtype=x.dtype)
            lam = lam.to(x.device)
            w = lam.view(-1, *([1] * (x.ndim - 1)))
        else:
            lam = sample_beta(generator, self.alpha)
            w = lam
        perm = torch.randperm(n, generator=generator).to(x.device)
        mixed = w * x + (1 - w) * x[perm]
        return (mixed, MixedTarget(y, y[perm], lam), *rest)

    def __repr__(self) -> str:
        return f"VideoMixUp(alpha={self.alpha}, per_clip={self.per_clip})"


class TemporalJitter:
    """Shift each clip in time by ``k ∈ [−max_shift, max_shift]`` frames (drawn per clip), repeating the
    edge frame; labels unchanged."""

    def __init__(self, max_shift: int = 1):
        self.max_shift = max_shift

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, *rest = batch
        b, t = x.shape[:2]
        shift = torch.randint(-self.max_shift, self.max_shift + 1, (b,), generator=generator)
        idx = (torch.arange(t)[None, :] - shift[:, None]).clamp(0, t - 1).to(x.device)  # (B, T)
        out = x[torch.arange(b, device=x.device)[:, None], idx]
        return (out, *rest)

    def __repr__(self) -> str:
        return f"TemporalJitter(max_shift={self.max_shift})"


class VideoCutMix:
    """CutMix (Yun et al., ICCV 2019) per clip pair: one box per batch (area 1−λ, λ ~ Beta(α, α)) pasted
    from clip ``perm[i]`` into clip ``i`` at the same place on **every frame**; λ is the kept area."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, y, *rest = batch
        h, w = x.shape[-2:]
        lam = sample_beta(generator, self.alpha)
        bh, bw = int(round(h * (1 - lam) ** 0.5)), int(round(w * (1 - lam) ** 0.5))
        cy = int(torch.randint(h, (), generator=generator))
        cx = int(torch.randint(w, (), generator=generator))
        y0, y1 = max(0, cy - bh // 2), min(h, cy + bh - bh // 2)
        x0, x1 = max(0, cx - bw // 2), min(w, cx + bw - bw // 2)
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        out = x.clone()
        out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        return (out, MixedTarget(y, y[perm], lam), *rest)

    def __repr__(self) -> str:
        return f"VideoCutMix(alpha={self.alpha})"


class Compose:
    """Apply augmentations in order (mixing ones last: they change the targets' type).

    NFT's hooks reach every member that has them: ``bind(model, adapter)`` (e.g. the surrogate trigger's
    search), ``wants_reference`` / ``set_reference`` (its ``distill``), and the read-only ``stats``,
    ``requested_guard`` and ``requested_shrink``. Without this, ``augmentation.jitter`` on top of the
    surrogate trigger failed on the first step (the trigger was never bound)."""

    def __init__(self, *augs):
        self.augs = augs

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        for a in self.augs:
            batch = a(batch, generator)
        return batch

    def bind(self, model: Any, adapter: Any = None) -> Compose:
        for a in self.augs:
            if callable(getattr(a, "bind", None)):
                a.bind(model, adapter)
        return self

    @property
    def wants_reference(self) -> bool:
        return any(getattr(a, "wants_reference", False) for a in self.augs)

    def set_reference(self, model: Any) -> Compose:
        for a in self.augs:
            if getattr(a, "wants_reference", False):
                a.set_reference(model)
        return self

    @property
    def stats(self) -> dict:
        merged: dict = {}
        for a in self.augs:
            merged.update(getattr(a, "stats", None) or {})
        return merged

    @property
    def requested_guard(self) -> float | None:
        asked = [g for a in self.augs if (g := getattr(a, "requested_guard", None)) is not None]
        return min(asked) if asked else None

    @property
    def requested_shrink(self) -> float:
        return max((float(getattr(a, "requested_shrink", 0.0) or 0.0) for a in self.augs), default=0.0)

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(map(repr, self.augs)) + ")"
