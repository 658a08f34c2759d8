"""Data plumbing shared by every task: tensor datasets, stratified validation splits, and a batch source
that draws batches *with replacement* (so a validation set of ten samples still yields full batches).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import DataError

__all__ = ["TensorData", "BatchSource", "stratified_split", "per_class_counts", "iterate_batches"]


class TensorData(Dataset):
    """A map-style dataset over aligned tensors (first dimension = samples).

    Batches are taken by indexing the tensors directly (no per-sample Python), and the tensors can be
    moved to the training device once (:meth:`to`), so sampling costs one gather per step.
    """

    def __init__(self, *tensors: Tensor):
        if not tensors:
            raise DataError("TensorData needs at least one tensor")
        n = tensors[0].shape[0]
        for i, t in enumerate(tensors):
            if t.shape[0] != n:
                raise DataError(f"TensorData: tensor {i} has {t.shape[0]} samples, expected {n}")
        self.tensors = tuple(tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)

    def take(self, index: Tensor) -> tuple[Tensor, ...]:
        """A batch for the given indices (a tuple like ``collate`` would give)."""
        return tuple(t[index.to(t.device)] for t in self.tensors)

    def to(self, device) -> TensorData:
        return TensorData(*(t.to(device) for t in self.tensors))

    def subset(self, index: Sequence[int] | Tensor) -> TensorData:
        index = torch.as_tensor(index, dtype=torch.long)
        return TensorData(*(t[index] for t in self.tensors))


def per_class_counts(labels: Tensor, num_classes: int | None = None) -> Tensor:
    labels = torch.as_tensor(labels).long()
    return torch.bincount(labels, minlength=num_classes or 0)


def stratified_split(
    labels: Sequence[int] | Tensor,
    *,
    ratio: float | None = None,
    per_class: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Split indices into (validation, rest), stratified by label.

    Exactly one of ``ratio`` (fraction of each class, at least one sample per class) or ``per_class``
    (samples per class; one-shot = 1) must be given. Returns sorted index tensors.
    """
    if (ratio is None) == (per_class is None):
        raise ValueError("give exactly one of ratio= or per_class=")
    labels = torch.as_tensor(labels).long().cpu()
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    val, rest = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = per_class if per_class is not None else max(1, round(ratio * idx.numel()))
        if k > idx.numel():
            raise DataError(f"class {c} has {idx.numel()} samples, fewer than the {k} requested per class")
        val.append(idx[:k])
        rest.append(idx[k:])
    return torch.sort(torch.cat(val)).values, torch.sort(torch.cat(rest)).values


class BatchSource:
    """Draws batches of ``batch_size`` indices uniformly *with replacement* from ``dataset``.

    ``steps_per_epoch`` = ceil(len / batch_size), at least 1. A :class:`TensorData` is moved to ``device``
    once and indexed directly; any other dataset goes through ``collate`` and ``to_device``.
    All randomness comes from ``generator`` (CPU), so a run is reproducible and resumable.
    """

    def __init__(self, dataset: Any, batch_size: int, *, collate, to_device, device, generator):
        if len(dataset) == 0:
            raise DataError("the validation set is empty")
        self.n = len(dataset)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.generator = generator
        self.fast = isinstance(dataset, TensorData)
        self.dataset = dataset.to(self.device) if self.fast else dataset
        self.collate, self.to_device = collate, to_device
        self.steps_per_epoch = max(1, -(-self.n // batch_size))

    def next(self) -> Any:
        idx = torch.randint(self.n, (self.batch_size,), generator=self.generator)
        if self.fast:
            return self.dataset.take(idx)
        return self.to_device(self.collate([self.dataset[i] for i in idx.tolist()]), self.device)


def iterate_batches(dataset: Any, batch_size: int, collate, to_device, device) -> Iterator[Any]:
    """Every sample once, in order (for evaluation)."""
    if isinstance(dataset, TensorData):
        for s in range(0, len(dataset), batch_size):
            yield tuple(t[s : s + batch_size].to(device, non_blocking=True) for t in dataset.tensors)
        return
    for s in range(0, len(dataset), batch_size):
        yield to_device(collate([dataset[i] for i in range(s, min(len(dataset), s + batch_size))]), device)
