"""Point-cloud backdoor attacks. Each class: ``poison_train(data, generator) -> (poisoned, indices)`` and
``poison_test(data) -> TensorData(points_triggered, y_true, y_target)`` (non-target samples only).

Common arguments: ``target`` (the attacker's class), ``poison_rate`` (fraction of the training set),
``mode`` (``all2one``: every triggered cloud goes to ``target``; ``all2all``: ``y -> (y + 1) mod C``),
``num_classes``, ``seed`` (the trigger's fixed randomness and which points are replaced at test time).
Every attack keeps the point count N: inserted points *replace* randomly chosen points.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nft_core.data import TensorData

__all__ = ["PointBAI", "PointBAO", "PointCBA", "ThreeDPCBA", "ATTACKS", "insert_cluster", "rotation_matrix"]


def rotation_matrix(angles_deg: tuple[float, float, float]) -> Tensor:
    """``R = Rz @ Ry @ Rx`` for angles (x, y, z) in degrees."""
    ax, ay, az = (math.radians(a) for a in angles_deg)
    rx = torch.tensor([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = torch.tensor([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = torch.tensor([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return (rz @ ry @ rx).float()


def insert_cluster(points: Tensor, cluster: Tensor, generator: torch.Generator) -> Tensor:
    """Replace ``K = len(cluster)`` random points of every cloud ``(B, N, 3)`` by ``cluster (K, 3)``
    (or ``(B, K, 3)``), keeping N. Differentiable in ``cluster``."""
    b, n, _ = points.shape
    k = cluster.shape[-2]
    idx = torch.rand(b, n, generator=generator).argsort(-1)[:, :k].to(points.device)  # K distinct points
    out = points.clone()
    cl = cluster.expand(b, k, 3).to(points.dtype)
    return out.scatter(1, idx.unsqueeze(-1).expand(-1, -1, 3), cl)


class _Attack:
    requires_model_training = False
    clean_label = False

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one", num_classes: int = 10,
                 seed: int = 0):
        if mode not in ("all2one", "all2all"):
            raise ValueError(f"mode must be all2one or all2all, got {mode!r}")
        if not 0 <= poison_rate <= 1:
            raise ValueError(f"poison_rate must be in [0, 1], got {poison_rate}")
        if self.clean_label and mode != "all2one":
            raise ValueError("a clean-label attack is all2one")
        self.target, self.poison_rate, self.mode, self.num_classes, self.seed = target, poison_rate, mode, num_classes, seed

    # -- to implement
    def apply(self, points: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass

    def fit(self, data: TensorData, generator: torch.Generator) -> None:
        """Attacks that optimise their trigger on the training data do it here."""

    # -- shared
    def target_of(self, y: Tensor) -> Tensor:
        return (y + 1) % self.num_classes if self.mode == "all2all" else torch.full_like(y, self.target)

    def choose(self, y: Tensor, generator: torch.Generator) -> Tensor:
        """Indices of the training samples to poison."""
        if self.clean_label:
            cand = torch.nonzero(y == self.target).flatten()
            k = round(self.poison_rate * len(cand))
        else:
            cand = torch.arange(len(y)) if self.mode == "all2all" else torch.nonzero(y != self.target).flatten()
            k = round(self.poison_rate * len(y))
        k = min(k, len(cand))
        return torch.sort(cand[torch.randperm(len(cand), generator=generator)[:k]]).values

    def poison_train(self, data: TensorData, generator: torch.Generator) -> tuple[TensorData, Tensor]:
        x, y = data.tensors[:2]
        self.fit(data, generator)
        idx = self.choose(y, generator)
        x, y = x.clone(), y.clone()
        if len(idx):
            x[idx] = self.apply(x[idx], generator).detach()
            if not self.clean_label:
                y[idx] = self.target_of(y[idx])
        return TensorData(x, y), idx

    @torch.no_grad()
    def poison_test(self, data: TensorData) -> TensorData:
        x, y = data.tensors[:2]
        t = self.target_of(y)
        keep = y != t
        g = torch.Generator().manual_seed(self.seed + 7919)
        return TensorData(self.apply(x[keep], g), y[keep], t[keep])


class PointBAI(_Attack):
    """PointBA-I, the interaction (point-insertion) trigger of Li et al., "PointBA: Towards Backdoor
    Attacks in 3D Point Cloud", ICCV 2021: a small ball of ``n_points`` points at a fixed position
    ``center`` (in the unit-sphere-normalized frame) replaces random points of the cloud. The default
    position lies just outside the unit sphere (|center| ≈ 1.13), so it never overlaps a clean shape.

    ``points (B, N, 3) -> (B, N, 3)``. The ball's shape is drawn once from ``seed``."""

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one", num_classes: int = 10,
                 seed: int = 0, n_points: int = 32, radius: float = 0.05,
                 center: tuple[float, float, float] = (0.65, 0.65, 0.65)):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        g = torch.Generator().manual_seed(seed)
        d = torch.randn(n_points, 3, generator=g)
        r = torch.rand(n_points, 1, generator=g) ** (1 / 3)  # uniform in the ball
        self.offsets = radius * r * d / d.norm(dim=1, keepdim=True)
        self.center = torch.tensor(center, dtype=torch.float32)

    def apply(self, points, generator):
        return insert_cluster(points, (self.center + self.offsets).to(points.device), generator)


class PointBAO(_Attack):
    """PointBA-O, the orientation trigger of Li et al., "PointBA: Towards Backdoor Attacks in 3D Point
    Cloud", ICCV 2021: the whole cloud is rotated by a fixed rotation (``angles_deg`` about x, y, z).
    Nothing is inserted, so the trigger survives point-level outlier removal."""

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one", num_classes: int = 10,
                 seed: int = 0, angles_deg: tuple[float, float, float] = (50.0, 0.0, 0.0)):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.rotation = rotation_matrix(tuple(angles_deg))

    def apply(self, points, generator):
        return points @ self.rotation.to(points).T


class PointCBA(PointBAI):
    """PointCBA, the clean-label variant of PointBA (Li et al., ICCV 2021): only clouds of the target
    class are triggered (``poison_rate`` = fraction of the *target class*, 0.8 by default as for SIG/CLB)
    and their labels are left untouched, so every poisoned sample looks correctly labelled.

    Simplification: the paper additionally perturbs the poisoned clouds so their natural features are
    harder to learn; here the trigger is the PointBA-I ball alone (larger by default, 48 points)."""

    clean_label = True

    def __init__(self, target: int = 0, poison_rate: float = 0.8, mode: str = "all2one", num_classes: int = 10,
                 seed: int = 0, n_points: int = 48, radius: float = 0.06,
                 center: tuple[float, float, float] = (0.65, 0.65, 0.65)):
        super().__init__(target, poison_rate, mode, num_classes, seed, n_points, radius, center)


class ThreeDPCBA(PointBAI):
    """3DPC-BA: Xiang, Miller, Chen, Li, Kesidis, "A Backdoor Attack against 3D Point Cloud Classifiers",
    ICCV 2021. An inserted cluster whose *location* is optimised against a surrogate classifier the
    attacker trains on the (clean) training set, so the backdoor is easy to learn and hard to notice.

    Simplification (stated): one location shared by all samples, a fixed ball-shaped cluster (the paper
    also optimises the cluster's local geometry), the surrogate is a small PointNet trained for
    ``surrogate_epochs``; the location maximises the surrogate's mean target-class log-posterior over
    the non-target training clouds, by ``steps`` of Adam from the best of 14 candidates (cube corners and
    face centres at radius ``max_radius``), and is kept within ``max_radius`` of the origin.
    The optimised centre is the attack's state (``state_dict``)."""

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one", num_classes: int = 10,
                 seed: int = 0, n_points: int = 32, radius: float = 0.05, max_radius: float = 0.9,
                 surrogate_epochs: int = 8, steps: int = 30):
        super().__init__(target, poison_rate, mode, num_classes, seed, n_points, radius, (0.0, 0.0, 0.0))
        self.max_radius, self.surrogate_epochs, self.steps = max_radius, surrogate_epochs, steps
        self.fitted = False

    def state_dict(self):
        return {"center": self.center.clone()} if self.fitted else {}

    def load_state_dict(self, state):
        self.center = state["center"].clone()
        self.fitted = True

    def _clip(self, c: Tensor) -> Tensor:
        n = c.norm()
        return c * (self.max_radius / n) if n > self.max_radius else c

    def fit(self, data, generator):
        if self.fitted:
            return
        from .models import PointNet
        from .train import train_classifier

        x, y = data.tensors[:2]
        sur = PointNet(num_classes=self.num_classes, width=16)
        from nft_core.init import seeded_init_

        seeded_init_(sur, generator)
        sur = train_classifier(sur, data, epochs=self.surrogate_epochs, lr=2e-3, batch_size=32, generator=generator)
        for p in sur.parameters():
            p.requires_grad_(False)
        pts = x[y != self.target][:256]
        tgt = torch.full((len(pts),), self.target, dtype=torch.long)

        def loss(c):
            return F.cross_entropy(sur(insert_cluster(pts, c + self.offsets, torch.Generator().manual_seed(self.seed + 1))), tgt)

        dirs = [torch.tensor(v, dtype=torch.float32) for v in
                [(sx, sy, sz) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
                + [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]]
        cands = [self.max_radius * d / d.norm() for d in dirs]
        with torch.no_grad():
            best = min(cands, key=lambda c: float(loss(c)))
        c = best.clone().requires_grad_(True)
        opt = torch.optim.Adam([c], lr=0.02)
        for _ in range(self.steps):
            opt.zero_grad()
            loss(c).backward()
            opt.step()
            with torch.no_grad():
                c.copy_(self._clip(c))
        self.center = c.detach().clone()
        self.fitted = True


ATTACKS = {"pointba_i": PointBAI, "pointba_o": PointBAO, "pointcba": PointCBA, "3dpc_ba": ThreeDPCBA}
