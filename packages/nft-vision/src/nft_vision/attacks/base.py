"""The common attack interface: trigger a batch, poison a training set, build the poisoned test set.

Images are float tensors ``(N, C, H, W)`` in [0, 1]. Every trigger is a pure function of the attack's
``seed``, the image shape and (for attacks with a learned trigger) the learned state, so two attacks built
with the same arguments and given the same data poison identically.

Optional hooks for attacks whose trigger is learned:

- ``prepare(data, generator)``: a pre-step that learns the trigger machinery without training the
  victim classifier (a surrogate model, a stego encoder, a style network). Attacks that need it call it
  from :meth:`poison_train` when it has not run yet.
- ``requires_model_training = True`` plus ``train_backdoor(model, data, *, epochs, lr, batch_size,
  generator, device)``: the trigger generator is trained jointly with the classifier; afterwards
  :meth:`apply` is deterministic given the learned state.
- ``state_dict()`` / ``load_state_dict()``: the learned state as a flat ``{name: Tensor}`` dict (empty for
  fixed triggers), so it can be saved as safetensors next to the model; ``config()`` the constructor
  keyword arguments as a JSON-able dict.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

from nft_core.data import TensorData
from nft_core.errors import DataError

__all__ = ["Attack"]


class Attack:
    """Base class. ``mode='all2one'`` relabels poisoned samples to ``target``; ``'all2all'`` maps
    ``y -> (y + 1) mod num_classes``. ``poison_rate`` is the fraction of the training set poisoned (for a
    clean-label attack: the fraction of the target class). Subclasses implement :meth:`apply`."""

    name = "attack"
    clean_label = False
    requires_model_training = False

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0):
        if mode not in ("all2one", "all2all"):
            raise ValueError(f"mode must be 'all2one' or 'all2all', got {mode!r}")
        if mode == "all2all" and num_classes is None:
            raise ValueError("mode='all2all' needs num_classes")
        if not 0 <= poison_rate <= 1:
            raise ValueError(f"poison_rate must be in [0, 1], got {poison_rate}")
        self.target, self.poison_rate, self.mode = target, poison_rate, mode
        self.num_classes, self.seed = num_classes, seed

    # -- what subclasses provide -------------------------------------------------------------------
    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Triggered copy of ``x`` (N, C, H, W) in [0, 1]; ``generator`` only for randomised triggers."""
        raise NotImplementedError

    def trigger(self, shape: tuple[int, int, int]) -> Tensor:
        """The tensor that defines the trigger for images of ``shape`` (C, H, W) (deterministic in seed)."""
        raise NotImplementedError

    def _seeded(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    # -- optional hooks for learned triggers ------------------------------------------------------------
    def prepare(self, data: TensorData, generator: torch.Generator) -> None:
        """Learn whatever the trigger needs before poisoning (no-op for fixed triggers)."""

    def train_backdoor(self, model: torch.nn.Module, data: TensorData, *, epochs: int, lr: float,
                       batch_size: int, generator: torch.Generator, device="cpu") -> torch.nn.Module:
        """Train ``model`` and the trigger together (only attacks with ``requires_model_training``)."""
        raise NotImplementedError(f"{type(self).__name__} poisons data; use poison_train")

    def state_dict(self) -> dict[str, Tensor]:
        """Learned trigger state, tensors only (empty for fixed triggers)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no learned state, got keys {sorted(state)[:5]}")

    def config(self) -> dict:
        """Constructor keyword arguments as a JSON-able dict (arguments that are not JSON-able, such as a
        surrogate model, are left out)."""
        out = {}
        for k in inspect.signature(type(self).__init__).parameters:
            v = getattr(self, k, None)
            if k == "self" or not (v is None or isinstance(v, (bool, int, float, str, list, tuple))):
                continue
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    # -- shared logic ---------------------------------------------------------------------------------
    def target_labels(self, y: Tensor) -> Tensor:
        if self.mode == "all2one":
            return torch.full_like(y, self.target)
        return (y + 1) % self.num_classes

    def choose_poison(self, y: Tensor, generator: torch.Generator) -> Tensor:
        """Sorted indices to poison: ``round(rate·N)`` of all samples (dirty label) or of the target
        class (clean label)."""
        pool = torch.nonzero(y == self.target).flatten() if self.clean_label else torch.arange(len(y))
        k = round(self.poison_rate * len(pool))
        return torch.sort(pool[torch.randperm(len(pool), generator=generator)[:k]]).values

    def poison_train(self, data: TensorData, generator: torch.Generator) -> tuple[TensorData, Tensor]:
        """``(poisoned copy of data, poisoned_index)``; extra tensors in ``data`` are carried along."""
        x, y, *rest = data.tensors
        _check_images(x)
        idx = self.choose_poison(y, generator)
        x, y = x.clone(), y.clone()
        if len(idx):
            x[idx] = self.apply(x[idx], generator)
            if not self.clean_label:
                y[idx] = self.target_labels(y[idx])
        return TensorData(x, y, *rest), idx

    def poison_test(self, data: TensorData) -> TensorData:
        """``TensorData(x_triggered, y_true, y_target)``; all2one drops samples of the target class."""
        x, y = data.tensors[:2]
        _check_images(x)
        if self.mode == "all2one":
            keep = y != self.target
            x, y = x[keep], y[keep]
        return TensorData(self.apply(x), y.clone(), self.target_labels(y))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(target={self.target}, poison_rate={self.poison_rate}, "
                f"mode={self.mode!r}, seed={self.seed})")


def _check_images(x: Tensor) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise DataError(f"attacks need float images (N, C, H, W) in [0, 1], got {x.dtype} {tuple(x.shape)}")
