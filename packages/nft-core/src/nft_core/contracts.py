"""The contracts every task package and defense implements (see DESIGN.md).

Plain :class:`typing.Protocol` classes and dataclasses. A *batch* is whatever the task's collate function
produces (a tuple of tensors for classification, a dict for detection or text); the core never looks
inside it except through the task's :class:`TaskAdapter`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@dataclass
class MixedTarget:
    """Targets of a mixing augmentation: ``lam * loss(a) + (1 - lam) * loss(b)``.

    ``lam`` is a float (one λ per batch, as in MixUp) or a tensor of shape ``(B,)`` (one per sample).
    Task losses accept it wherever they accept plain targets; :meth:`combine` does the weighting.
    """

    a: Any
    b: Any
    lam: float | Tensor

    def combine(self, loss_fn: Callable[[Any], Tensor]) -> Tensor:
        """Weighted loss. ``loss_fn(targets)`` must return per-sample losses ``(B,)`` or a scalar."""
        return (self.lam * loss_fn(self.a) + (1 - self.lam) * loss_fn(self.b)).mean()


@dataclass
class ConsistencyTarget:
    """Targets of a consistency augmentation (AugMix's Jensen-Shannon loss): the batch's inputs hold ``V``
    views of every sample along dimension 1 (``(B, V, ...)``, view 0 the clean image) and the loss is the
    task loss on view 0 plus ``weight`` times the Jensen-Shannon divergence between the views' predicted
    distributions (Hendrycks et al., ICLR 2020). Keeping the views in dimension 1 lets a batch be split
    along dimension 0 (distributed shards) without separating a sample's views."""

    y: Any
    weight: float = 12.0


@runtime_checkable
class Augmentation(Protocol):
    """``aug(batch, generator) -> batch``.

    Draws its random parameters once per call from ``generator`` (never the global RNG) and applies them
    to every part of the sample (image and boxes, every frame of a clip, points and labels). Mixing
    augmentations return targets as :class:`MixedTarget`; non-mixing ones return plain targets.

    Optional, read by :class:`~nft_core.nft.NFT`: ``bind(model, adapter)`` (called once before training, for
    model-dependent augmentations), ``stats`` (a dict copied into ``info["augmentation_stats"]``) and
    ``requested_shrink`` (a float, read at every step: NFT adds ``requested_shrink * sum(m)`` to its loss)
    and ``requested_guard`` (points: NFT's safety net on the folded masks, see ``NFTConfig``);
    :class:`~nft_core.surrogate.SurrogateTrigger` sets both when its searches find no trigger.
    """

    def __call__(self, batch: Any, generator: torch.Generator) -> Any: ...


@runtime_checkable
class TaskAdapter(Protocol):
    """What the core needs to know about a task.

    - ``loss(model, batch)``: scalar training loss; targets may be :class:`MixedTarget`.
    - ``evaluate(model, data)``: metrics dict (clean metric, ``asr``, ``lcr`` or task equivalents).
      Must restore ``model.training``.
    - ``example_input(batch)``: what ``model(...)`` takes (a tensor, or a tuple/dict of them) for tracing.
    - ``collate(samples)``: list of dataset items -> batch.
    - ``to_device(batch, device)``: move a batch.
    - ``model_input(batch)`` is ``example_input`` by another name for defenses that need raw forward
      passes (feature hooks, adversarial perturbation).
    """

    def loss(self, model: nn.Module, batch: Any) -> Tensor: ...

    def evaluate(self, model: nn.Module, data: Any) -> dict[str, float]: ...

    def example_input(self, batch: Any) -> Any: ...

    def collate(self, samples: Sequence[Any]) -> Any: ...

    def to_device(self, batch: Any, device: torch.device | str) -> Any: ...


@dataclass
class PurifyResult:
    """What every defense returns.

    ``model`` is a plain model of the original class (masks folded in); ``masks`` maps a mask-site name
    to its mask vector (empty for defenses without masks); ``history`` holds one dict per epoch;
    ``wall_time`` is seconds from the start of ``purify`` to the purified model.
    """

    model: nn.Module
    masks: dict[str, Tensor] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Defense(Protocol):
    """``purify(model, data, adapter) -> PurifyResult``.

    ``data`` is the clean validation set only (a map-style dataset of samples the adapter can collate).
    The input model is not modified. Thresholds and stopping points come from ``data`` alone.
    """

    name: str

    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult: ...


@dataclass
class EvalData:
    """Evaluation sets for a task: ``clean`` and optionally ``poisoned`` (triggered inputs with their true
    labels and the attacker's target). Each task documents the item layout its adapter expects."""

    clean: Any
    poisoned: Any | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
