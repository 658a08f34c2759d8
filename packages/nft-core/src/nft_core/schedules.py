"""Depth-wise lower bounds μ_l for the masks (NFT paper, Sec. 4.2 and Table 6).

``l`` is the depth of a masked layer in forward order, starting at 1 for the first masked layer (the
network's first layer, depth 0, is left unmasked). Every family starts near α at l = 1 and decreases with
depth, so early layers (generic features) are protected and deep layers may be re-weighted freely.
Masks are clipped to [μ_l, 1] after every optimizer step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Schedule", "SCHEDULES", "make_schedule"]

#: family name -> μ(l, L, α, β); L is the number of masked layers.
SCHEDULES = {
    # the paper's choice: α·exp(−βl)
    "exponential": lambda l, L, a, b: a * math.exp(-b * l),
    # half a cosine from α at l=1 to 0 at l=L (β unused)
    "cosine": lambda l, L, a, b: a * 0.5 * (1 + math.cos(math.pi * (l - 1) / max(L - 1, 1))),
    # α·(1 − β·ln l), floored at 0
    "logarithmic": lambda l, L, a, b: max(0.0, a * (1 - b * math.log(l))),
    # α·(1 − (l−1)/(L−1))³
    "cubic": lambda l, L, a, b: a * (1 - (l - 1) / max(L - 1, 1)) ** 3,
    # α·(1 − (l−1)/(L−1))
    "linear": lambda l, L, a, b: a * (1 - (l - 1) / max(L - 1, 1)),
    # α at every depth
    "constant": lambda l, L, a, b: a,
}


@dataclass(frozen=True)
class Schedule:
    """A lower-bound schedule. ``Schedule()`` is the paper's default: exponential, α = 0.8, β = 0.5."""

    family: str = "exponential"
    alpha: float = 0.8
    beta: float = 0.5

    def __post_init__(self):
        if self.family not in SCHEDULES:
            raise ValueError(f"unknown schedule family {self.family!r}; choose from {sorted(SCHEDULES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"schedule alpha must be in [0, 1], got {self.alpha}")

    def bounds(self, num_layers: int) -> list[float]:
        """μ_l for l = 1..num_layers, each clamped to [0, 1]."""
        f = SCHEDULES[self.family]
        return [min(1.0, max(0.0, f(l, num_layers, self.alpha, self.beta))) for l in range(1, num_layers + 1)]


def make_schedule(family: str = "exponential", alpha: float = 0.8, beta: float = 0.5) -> Schedule:
    return Schedule(family, alpha, beta)
