"""Data-parallel purification and training under ``torchrun`` (DistributedDataParallel semantics).

NFT tunes a few thousand mask values on a small validation set, so every rank holds the validation
data and draws **the same** batch indices and augmentation from the same seeded generator; each rank then
computes the loss on its own contiguous shard of that batch (``shard_batch``) and the mask gradients are
all-reduced — exactly the gradient of the full-batch loss, which is what DDP does for a model's parameters
(the masks live outside the model's ``forward``, in hooks, so they are reduced here directly rather than
through a ``DistributedDataParallel`` wrapper). Every rank therefore applies the same update and holds
the same masks; the result equals a one-process run within float tolerance (summation order only).

``init_from_env`` starts the process group from torchrun's environment variables (``gloo`` on CPU,
``nccl`` on CUDA, one GPU per local rank) and is what every task CLI calls; library users who manage
their own process group need nothing from here: :class:`~nft_core.nft.NFT` detects it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist

from .errors import NFTInputError

__all__ = ["world", "is_main", "init_from_env", "shutdown", "shard_batch", "all_reduce_grads", "all_reduce_sum"]


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env(device: str | None = None) -> bool:
    """Start the default process group when launched by torchrun (``WORLD_SIZE`` > 1). Returns whether
    this is a distributed run. With CUDA (``device`` unset or starting with ``cuda``) each process uses the
    GPU of its ``LOCAL_RANK`` and the ``nccl`` backend; on CPU it uses ``gloo``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if dist.is_initialized():
        return True
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _batch_size(batch: Any) -> int | None:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.ndim else None
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        batch = [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        if isinstance(batch, list) and batch and not isinstance(batch[0], torch.Tensor):
            return len(batch)  # a list of per-sample items (e.g. detection targets)
        for item in batch:
            n = _batch_size(item)
            if n is not None:
                return n
    return None


def _slice(obj: Any, lo: int, hi: int, n: int) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj[lo:hi] if obj.ndim and obj.shape[0] == n else obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _slice(getattr(obj, f.name), lo, hi, n)
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, dict):
        return type(obj)({k: _slice(v, lo, hi, n) for k, v in obj.items()})
    if isinstance(obj, list) and len(obj) == n and (not obj or not isinstance(obj[0], torch.Tensor)
                                                     or obj[0].ndim == 0 or obj[0].shape[0] != n):
        return obj[lo:hi]  # per-sample list
    if isinstance(obj, (list, tuple)):
        items = [_slice(v, lo, hi, n) for v in obj]
        return type(obj)(items) if not hasattr(obj, "_fields") else type(obj)(*items)
    return obj  # scalars (e.g. a MixUp λ shared by the batch) stay as they are


def shard_batch(batch: Any, rank: int, world_size: int) -> tuple[Any, float]:
    """This rank's contiguous share of ``batch`` and that share's fraction of the batch.

    Tensors (and per-sample lists) whose first dimension is the batch size are sliced; tuples, dicts and
    dataclasses (e.g. :class:`~nft_core.contracts.MixedTarget`) are sliced field by field; scalars are
    kept. Shares differ by at most one sample, as ``torch.tensor_split`` splits."""
    n = _batch_size(batch)
    if n is None:
        raise NFTInputError("distributed NFT: cannot find the batch dimension of the batch to shard it")
    if n < world_size:
        raise NFTInputError(f"distributed NFT: batch of {n} samples cannot be shared by {world_size} processes")
    bounds = [n * r // world_size for r in range(world_size + 1)]
    lo, hi = bounds[rank], bounds[rank + 1]
    return _slice(batch, lo, hi, n), (hi - lo) / n


def all_reduce_grads(params: Iterable[torch.Tensor]) -> None:
    """Sum the gradients of ``params`` over all ranks, in one flat buffer (what DDP's bucket does)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
