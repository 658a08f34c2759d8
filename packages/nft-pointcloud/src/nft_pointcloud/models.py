"""Point-cloud classifiers (tiny widths by default so they train on a CPU): PointNet, PointNet++ SSG and
MSG, DGCNN. Every model takes points ``(B, N, 3)`` and returns logits ``(B, num_classes)``.

References: PointNet (Qi et al., CVPR 2017), PointNet++ (Qi et al., NeurIPS 2017), DGCNN (Wang et al.,
ACM TOG 2019). Conv/BatchNorm/Linear layers only, so NFT masks reach every neuron through nft_core's
default handlers (masks sit on BatchNorm γ for conv+BN pairs).
"""

from __future__ import annotations

import importlib

import torch
from torch import Tensor, nn

from nft_core.errors import NFTInputError

from .ops import ball_query, farthest_point_sample, gather_points, knn

__all__ = ["PointNet", "PointNet2SSG", "PointNet2MSG", "DGCNN", "create_model", "BUILTIN_MODELS"]


def _mlp2d(cin: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        cin = w
    return nn.Sequential(*layers)


def _head(cin: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, num_classes))


class PointNet(nn.Module):
    """Shared per-point MLP + max pool + classifier (no T-Nets: the clouds here are aligned)."""

    def __init__(self, num_classes: int = 40, width: int = 32, dropout: float = 0.3):
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        cin = 3
        for c in (w, w, 2 * w, 4 * w):
            layers += [nn.Conv1d(cin, c, 1, bias=False), nn.BatchNorm1d(c), nn.ReLU(inplace=True)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = _head(cin, 2 * w, num_classes, dropout)

    def forward(self, points: Tensor) -> Tensor:
        f = self.features(points.transpose(1, 2))  # (B, C, N)
        return self.head(f.max(-1).values)


class SetAbstraction(nn.Module):
    """PointNet++ set abstraction: FPS centers, ball-query groups (one per radius), shared MLP, max pool.
    ``npoint=None`` groups the whole cloud (the last level)."""

    def __init__(self, npoint: int | None, radii: list[float], nsamples: list[int], cin: int,
                 mlps: list[list[int]]):
        super().__init__()
        self.npoint, self.radii, self.nsamples = npoint, radii, nsamples
        self.mlps = nn.ModuleList(_mlp2d(cin + 3, m) for m in mlps)
        self.out_channels = sum(m[-1] for m in mlps)

    def forward(self, xyz: Tensor, feats: Tensor | None) -> tuple[Tensor, Tensor]:
        # xyz (B, N, 3), feats (B, N, C) or None -> new_xyz (B, S, 3), new_feats (B, S, C')
        if self.npoint is None:
            new_xyz = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped = xyz.unsqueeze(1)  # (B, 1, N, 3)
            gf = None if feats is None else feats.unsqueeze(1)
            g = grouped if gf is None else torch.cat([grouped, gf], -1)
            return new_xyz, self.mlps[0](g.permute(0, 3, 1, 2)).max(-1).values.transpose(1, 2)
        new_xyz = gather_points(xyz, farthest_point_sample(xyz, self.npoint))
        outs = []
        for radius, ns, mlp in zip(self.radii, self.nsamples, self.mlps):
            idx = ball_query(xyz, new_xyz, radius, ns)  # (B, S, K)
            rel = gather_points(xyz, idx) - new_xyz.unsqueeze(2)  # local coordinates
            g = rel if feats is None else torch.cat([rel, gather_points(feats, idx)], -1)
            outs.append(mlp(g.permute(0, 3, 1, 2)).max(-1).values)  # (B, C', S)
        return new_xyz, torch.cat(outs, 1).transpose(1, 2)


class PointNet2SSG(nn.Module):
    """PointNet++ single-scale grouping. ``width`` scales every MLP (paper: 64 -> 1024; tiny here)."""

    def __init__(self, num_classes: int = 40, width: int = 16, npoints: tuple[int, int] = (128, 32),
                 nsample: int = 16, dropout: float = 0.3):
        super().__init__()
        w = width
        self.sa1 = SetAbstraction(npoints[0], [0.2], [nsample], 0, [[w, w, 2 * w]])
        self.sa2 = SetAbstraction(npoints[1], [0.4], [nsample], self.sa1.out_channels, [[2 * w, 2 * w, 4 * w]])
        self.sa3 = SetAbstraction(None, [], [], self.sa2.out_channels, [[4 * w, 8 * w]])
        self.head = _head(self.sa3.out_channels, 4 * w, num_classes, dropout)

    def forward(self, points: Tensor) -> Tensor:
        xyz, f = self.sa1(points, None)
        xyz, f = self.sa2(xyz, f)
        _, f = self.sa3(xyz, f)
        return self.head(f.squeeze(1))


class PointNet2MSG(nn.Module):
    """PointNet++ multi-scale grouping: two radii per level, features concatenated."""

    def __init__(self, num_classes: int = 40, width: int = 16, npoints: tuple[int, int] = (128, 32),
                 dropout: float = 0.3):
        super().__init__()
        w = width
        self.sa1 = SetAbstraction(npoints[0], [0.1, 0.2], [8, 16], 0, [[w, w], [w, 2 * w]])
        self.sa2 = SetAbstraction(npoints[1], [0.2, 0.4], [8, 16], self.sa1.out_channels,
                                  [[2 * w, 2 * w], [2 * w, 4 * w]])
        self.sa3 = SetAbstraction(None, [], [], self.sa2.out_channels, [[4 * w, 8 * w]])
        self.head = _head(self.sa3.out_channels, 4 * w, num_classes, dropout)

    def forward(self, points: Tensor) -> Tensor:
        xyz, f = self.sa1(points, None)
        xyz, f = self.sa2(xyz, f)
        _, f = self.sa3(xyz, f)
        return self.head(f.squeeze(1))


class EdgeConv(nn.Module):
    """DGCNN edge convolution: k-NN in feature space, MLP on ``[x_j - x_i, x_i]``, max over neighbours."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.k = k
        self.conv = nn.Sequential(nn.Conv2d(2 * cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                                  nn.LeakyReLU(0.2, inplace=True))

    def forward(self, x: Tensor) -> Tensor:  # (B, N, C) -> (B, N, C')
        idx = knn(x, self.k)
        nb = gather_points(x, idx)  # (B, N, k, C)
        center = x.unsqueeze(2).expand_as(nb)
        e = torch.cat([nb - center, center], -1).permute(0, 3, 1, 2)  # (B, 2C, N, k)
        return self.conv(e).max(-1).values.transpose(1, 2)


class DGCNN(nn.Module):
    """A small DGCNN: three EdgeConv layers (dynamic graph), concat, 1x1 conv, max+avg pool, classifier."""

    def __init__(self, num_classes: int = 40, width: int = 16, k: int = 10, dropout: float = 0.3):
        super().__init__()
        w = width
        self.e1, self.e2, self.e3 = EdgeConv(3, w, k), EdgeConv(w, w, k), EdgeConv(w, 2 * w, k)
        self.fuse = nn.Sequential(nn.Conv1d(4 * w, 8 * w, 1, bias=False), nn.BatchNorm1d(8 * w),
                                  nn.LeakyReLU(0.2, inplace=True))
        self.head = _head(16 * w, 4 * w, num_classes, dropout)

    def forward(self, points: Tensor) -> Tensor:
        x1 = self.e1(points)
        x2 = self.e2(x1)
        x3 = self.e3(x2)
        f = self.fuse(torch.cat([x1, x2, x3], -1).transpose(1, 2))  # (B, 8w, N)
        return self.head(torch.cat([f.max(-1).values, f.mean(-1)], -1))


BUILTIN_MODELS = {"pointnet": PointNet, "pointnet2_ssg": PointNet2SSG, "pointnet2_msg": PointNet2MSG,
                  "dgcnn": DGCNN}


def create_model(spec: str, num_classes: int, **kwargs) -> nn.Module:
    """A built-in (``pointnet``, ``pointnet2_ssg``, ``pointnet2_msg``, ``dgcnn``) or ``package.module:callable``
    called as ``callable(num_classes=num_classes, **kwargs)``; it must map ``(B, N, 3)`` to logits."""
    if spec in BUILTIN_MODELS:
        try:
            return BUILTIN_MODELS[spec](num_classes=num_classes, **kwargs)
        except TypeError as e:
            raise NFTInputError(f"model {spec}: {e}") from e
    mod, _, attr = spec.partition(":")
    if not mod or not attr:
        raise NFTInputError(f"unknown model {spec!r}: use one of {sorted(BUILTIN_MODELS)} or package.module:callable")
    try:
        fn = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise NFTInputError(f"model {spec!r} cannot be imported: {e}") from e
    try:
        return fn(num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise NFTInputError(f"model {spec}: {e}") from e
