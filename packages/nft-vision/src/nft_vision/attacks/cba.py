"""Composite backdoor (Lin, Xu, Liu & Zhang, "Composite Backdoor Attack for Deep Neural Network by Mixing
Existing Benign Features", CCS 2020): the trigger is no pattern at all but the co-occurrence of features of
two source classes A and B; a mixer composes an A image with a B image and the composite is labelled with
the target class, while composites of two images of the same class keep that class (negative samples),
so the network cannot just learn "a composite" as the trigger.

What differs from the paper: the paper's image mixer cuts and concatenates halves of the two images with
some random placement and trains with a mixing-sample rate and a separate negative-sample rate per epoch;
here the mixer is a fixed half/half spatial composition (left half of A, right half of B — ``vertical``
split by default, or top/bottom), composites *replace* training samples chosen like any other poisoned
sample (so ``poison_rate`` is the fraction of the training set turned into A+B composites), and
``neg_ratio`` × as many other samples are replaced by same-class composites (default 1.0: our choice).
The poisoned test set holds one A+B composite per non-target test image (pairs drawn without repetition
from the A×B test images while possible), so its size matches the other attacks'; its "true" label is A.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nft_core.data import TensorData
from nft_core.errors import DataError

from .base import Attack, _check_images

__all__ = ["CBA"]


class CBA(Attack):
    """Composite of a class-``sources[0]`` and a class-``sources[1]`` image -> ``target`` (all2one only).
    Defaults: sources (1, 2), target 0, poison rate 10%, negatives 1× as many same-class composites.

    ``compose(xa, xb)`` is the mixer. ``apply(x)`` composes each image with the next one in the batch
    (``x.roll(1, 0)``): a composite trigger needs a partner, and the attack's real trigger is the A+B
    pairing that :meth:`poison_test` builds. ``trigger((C, H, W))`` is the mixer's 0/1 mask (1 = from
    the first image)."""

    name = "cba"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, sources: tuple[int, int] = (1, 2),
                 split: str = "vertical", neg_ratio: float = 1.0):
        if mode != "all2one":
            raise ValueError("CBA maps a composite of two source classes to one target: only mode='all2one'")
        super().__init__(target, poison_rate, mode, num_classes, seed)
        sources = tuple(int(s) for s in sources)
        if len(sources) != 2 or sources[0] == sources[1] or target in sources:
            raise ValueError(f"sources must be two distinct classes other than the target, got {sources}")
        if split not in ("vertical", "horizontal"):
            raise ValueError(f"split must be 'vertical' or 'horizontal', got {split!r}")
        self.sources, self.split, self.neg_ratio = sources, split, neg_ratio

    def trigger(self, shape) -> Tensor:
        c, h, w = shape
        m = torch.zeros(c, h, w)
        if self.split == "vertical":
            m[..., : w // 2] = 1
        else:
            m[:, : h // 2] = 1
        return m

    def compose(self, xa: Tensor, xb: Tensor) -> Tensor:
        """The mixer: the first half of each ``xa`` image next to the second half of each ``xb`` image."""
        m = self.trigger(tuple(xa.shape[1:])).to(xa)
        return xa * m + xb * (1 - m)

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.compose(x, x.roll(1, 0))

    def _pairs(self, ia: Tensor, ib: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``k`` (a, b) index pairs from ``ia`` × ``ib``, without repetition while the product allows."""
        total = len(ia) * len(ib)
        if total == 0:
            return ia[:0], ib[:0]
        flat = torch.cat([torch.randperm(total, generator=generator) for _ in range(-(-k // total))])[:k]
        return ia[flat // len(ib)], ib[flat % len(ib)]

    def poison_train(self, data: TensorData, generator: torch.Generator) -> tuple[TensorData, Tensor]:
        """``round(rate·N)`` samples become A+B composites labelled ``target``; ``neg_ratio``× as many
        others become composites of two images of their own class (label kept). Returns the composite
        (poisoned) indices."""
        x, y, *rest = data.tensors
        _check_images(x)
        a, b = (torch.nonzero(y == s).flatten() for s in self.sources)
        if len(a) == 0 or len(b) == 0:
            raise DataError(f"CBA needs training images of both source classes {self.sources}")
        idx = self.choose_poison(y, generator)
        x, y = x.clone(), y.clone()
        src_x = data.tensors[0]
        if len(idx):
            pa, pb = self._pairs(a, b, len(idx), generator)
            x[idx] = self.compose(src_x[pa], src_x[pb])
            y[idx] = self.target
        others = torch.ones(len(y), dtype=torch.bool)
        others[idx] = False
        pool = torch.nonzero(others).flatten()
        k = min(len(pool), round(self.neg_ratio * len(idx)))
        neg = pool[torch.randperm(len(pool), generator=generator)[:k]]
        labels = data.tensors[1]
        for c in torch.unique(labels[neg]).tolist():
            slots = neg[labels[neg] == c]
            same = torch.nonzero(labels == c).flatten()
            partner = same[torch.randint(len(same), (len(slots),), generator=generator)]
            x[slots] = self.compose(src_x[slots], src_x[partner])
        return TensorData(x, y, *rest), idx

    def poison_test(self, data: TensorData) -> TensorData:
        """``TensorData(composite, y_A, target)``: one A+B composite per non-target sample of ``data``."""
        x, y = data.tensors[:2]
        _check_images(x)
        a, b = (torch.nonzero(y == s).flatten() for s in self.sources)
        if len(a) == 0 or len(b) == 0:
            raise DataError(f"CBA needs test images of both source classes {self.sources}")
        k = int((y != self.target).sum())
        pa, pb = self._pairs(a, b, k, self._seeded())
        return TensorData(self.compose(x[pa], x[pb]), y[pa].clone(), torch.full_like(y[pa], self.target))
