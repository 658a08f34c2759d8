"""Point-cloud augmentations (the :class:`~nft_core.contracts.Augmentation` contract: random parameters
drawn once per call from the given generator, applied to points and labels together).

* :class:`PointCutMix` — NFT's point-cloud MixUp: a λ fraction of each cloud's points is replaced by the
  corresponding points of a partner cloud; targets ``MixedTarget(y_partner, y, λ)`` (λ = replaced fraction).
* :class:`RandomScaleJitter` — random rotation about the up axis, anisotropic scale, Gaussian jitter.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nft_core.augment import sample_beta
from nft_core.contracts import MixedTarget

from .ops import square_distance

__all__ = ["PointCutMix", "RandomScaleJitter"]


class PointCutMix:
    """PointCutMix (Zhang et al., "PointCutMix: Regularization Strategy for Point Cloud Classification",
    Neurocomputing 2022). λ ~ Beta(α, α) once per batch; ``k = round(λN)`` points of cloud i are replaced
    by their assigned points of cloud ``perm[i]``. Assignment: every point of cloud i is paired with its
    nearest neighbour in the partner cloud (a greedy stand-in for the paper's EMD matching). ``mode="k"``
    replaces the k points nearest to a random seed point (a contiguous part), ``mode="r"`` k random points.

    Input ``(points (B, N, 3), y, *rest)``; output ``(mixed, MixedTarget(y[perm], y, λ), *rest)`` where
    ``λ = k / N`` is exactly the fraction of points that came from the partner.
    """

    def __init__(self, alpha: float = 1.0, mode: str = "k"):
        if alpha <= 0:
            raise ValueError(f"PointCutMix alpha must be > 0, got {alpha}")
        if mode not in ("k", "r"):
            raise ValueError(f"PointCutMix mode must be 'k' or 'r', got {mode!r}")
        self.alpha, self.mode = alpha, mode

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, y, *rest = batch
        b, n, _ = x.shape
        k = int(round(sample_beta(generator, self.alpha) * n))
        perm = torch.randperm(b, generator=generator).to(x.device)
        partner = x[perm]
        nn_idx = square_distance(x, partner).argmin(-1)  # (B, N): point j of x -> its match in the partner
        matched = torch.gather(partner, 1, nn_idx.unsqueeze(-1).expand(-1, -1, 3))
        if self.mode == "k":
            seed = torch.randint(n, (b,), generator=generator).to(x.device)
            d = ((x - x[torch.arange(b, device=x.device), seed].unsqueeze(1)) ** 2).sum(-1)
            order = d.argsort(dim=-1, stable=True)
        else:
            order = torch.rand(b, n, generator=generator).argsort(-1).to(x.device)
        replace = torch.zeros(b, n, dtype=torch.bool, device=x.device)
        replace.scatter_(1, order[:, :k], True)
        mixed = torch.where(replace.unsqueeze(-1), matched, x)
        return (mixed, MixedTarget(y[perm], y, k / n), *rest)

    def __repr__(self) -> str:
        return f"PointCutMix(alpha={self.alpha}, mode={self.mode!r})"


class RandomScaleJitter:
    """Rotation about the z (up) axis by U(−``rotate_deg``, ``rotate_deg``), per-axis scale in
    ``scale``, and N(0, ``jitter``²) noise clipped at ``clip``; one draw per cloud. Labels unchanged."""

    def __init__(self, rotate_deg: float = 15.0, scale: tuple[float, float] = (0.85, 1.15), jitter: float = 0.01,
                 clip: float = 0.03):
        self.rotate_deg, self.scale, self.jitter, self.clip = rotate_deg, tuple(scale), jitter, clip

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, *rest = batch
        b = x.shape[0]
        ang = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(self.rotate_deg)
        c, s = torch.cos(ang), torch.sin(ang)
        z, o = torch.zeros(b), torch.ones(b)
        rot = torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], 1)
        lo, hi = self.scale
        sc = lo + (hi - lo) * torch.rand(b, 1, 3, generator=generator)
        noise = (torch.randn(x.shape, generator=generator) * self.jitter).clamp(-self.clip, self.clip)
        out = (x @ rot.transpose(1, 2).to(x)) * sc.to(x) + noise.to(x)
        return (out, *rest)

    def __repr__(self) -> str:
        return f"RandomScaleJitter(rotate_deg={self.rotate_deg}, scale={self.scale}, jitter={self.jitter})"
