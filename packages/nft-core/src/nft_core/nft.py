"""Neural mask Fine-Tuning (NFT).

Karim, Arafat, Rahman, Bhattacharya, Wang, Tang, Zhang, Chen. "Augmented Neural Fine-Tuning for Efficient
Backdoor Purification." ECCV 2024.

Learn one mask per neuron on a small clean validation set, minimising an augmented (MixUp by default) loss
plus ``(η / N_c)·‖m − 1‖₁``; after every SGD step clip each mask to ``[μ_l, 1]`` (depth-wise schedule);
finally fold the masks into the weights, giving a plain model of the original class.

Example::

    from nft_core import NFT, ClassificationAdapter
    result = NFT(epochs=100).purify(model, val_set, ClassificationAdapter())
    purified = result.model
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adapters import model_device
from .augment import MixUp
from .contracts import Augmentation, PurifyResult, TaskAdapter
from .data import BatchSource
from .errors import CheckpointError
from .masks import LayerHandler, NeuronMasks
from .schedules import Schedule

__all__ = ["NFT", "NFTConfig", "NFT_PLUS", "recipe_options"]

#: The NFT+ recipe's extra settings (see README "NFT recipes"); ``NFT(**NFT_PLUS)``.
NFT_PLUS = {"shrink": 0.02, "guard": 1.0}


def recipe_options(defense: str, recipe: str, options: dict, *, task_plus: dict | None = None,
                   task_base: dict | None = None) -> dict:
    """Keyword options for a CLI's defense section.

    NFT: ``paper`` -> ``task_base`` + ``options``; ``nft+`` -> ``task_base`` + ``NFT_PLUS`` + the task's own
    measured ``task_plus`` + ``options`` (later wins). Any other defense gets ``options`` alone.
    """
    if defense != "nft":
        return dict(options)
    if recipe not in ("nft+", "paper"):
        from .errors import ConfigError

        raise ConfigError(f"defense.recipe must be 'nft+' or 'paper', got {recipe!r}")
    plus = {**NFT_PLUS, **(task_plus or {})} if recipe == "nft+" else {}
    return {**(task_base or {}), **plus, **options}

Callback = Callable[[int, dict[str, float], "NFT"], None]


@dataclass
class NFTConfig:
    """NFT settings. Defaults are the paper's (CIFAR-10 protocol) unless noted.

    ``steps``: total optimizer steps, overriding ``epochs`` (an epoch is ceil(N/batch) steps).
    ``placement``: ``"bn"`` masks a conv feeding BatchNorm at BN's γ; ``"weight"`` masks the conv itself.
    ``model_mode``: ``"eval"`` keeps BatchNorm statistics and dropout frozen while tuning (the default,
    see README for the measurement); ``"train"`` is the authors' code.
    ``eta``: regularizer weight η; the loss adds ``eta / N_c * ||m - 1||_1``.
    ``shrink`` (not in the paper; 0 = the paper's recipe) adds ``shrink * sum(m)`` for the first
    ``shrink_fraction`` of the steps: a pull of every mask toward its lower bound, so neurons the clean
    data does not need (a dormant backdoor neuron gets no gradient from clean data at all) sink, while
    the ones it needs are held up by the task loss. ``guard`` (points): after every epoch the clean
    metric is measured on the validation data without augmentation; the masks of the last epoch whose
    metric stayed within ``guard`` of the original model's are the ones folded (the Fine-Pruning
    principle: shrink until clean accuracy drops). Both use the clean validation data only.
    See README "NFT recipes" for the measurements.
    """

    epochs: int = 100
    steps: int | None = None
    batch_size: int = 128
    lr: float = 0.05
    lr_min: float = 0.02
    momentum: float = 0.95
    eta: float = 1e-3
    schedule: Schedule = field(default_factory=Schedule)
    placement: str = "bn"
    model_mode: str = "eval"
    skip_first: bool = True
    include: Sequence[str] | None = None
    exclude: Sequence[str] | None = None
    amp: bool = False
    device: str | None = None
    seed: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    resume: bool = False
    eval_every: int = 0
    progress: bool = False
    shrink: float = 0.0
    shrink_fraction: float = 1.0
    guard: float | None = None


class NFT:
    """The NFT defense (``purify(model, data, adapter) -> PurifyResult``).

    Args:
        augmentation: an :class:`~nft_core.contracts.Augmentation`; default ``MixUp(1.0)``.
        eval_data: optional data passed to ``adapter.evaluate`` every ``eval_every`` epochs (recorded in
            the history; never used to make a decision).
        callbacks: ``fn(epoch, history_row, nft)`` after every epoch.
        handlers: extra layer handlers for :class:`~nft_core.masks.NeuronMasks`.
        **kwargs: any :class:`NFTConfig` field.
    """

    name = "nft"

    def __init__(
        self,
        config: NFTConfig | None = None,
        *,
        augmentation: Augmentation | None = None,
        eval_data: Any = None,
        callbacks: Sequence[Callback] = (),
        handlers: dict[type, LayerHandler] | None = None,
        **kwargs: Any,
    ):
        self.config = config if config is not None else NFTConfig()
        for k, v in kwargs.items():
            if not hasattr(self.config, k):
                raise TypeError(f"NFT got an unknown option {k!r}")
            setattr(self.config, k, v)
        c = self.config
        if c.placement not in ("bn", "weight"):
            raise ValueError(f"placement must be 'bn' or 'weight', got {c.placement!r}")
        if c.model_mode not in ("eval", "train"):
            raise ValueError(f"model_mode must be 'eval' or 'train', got {c.model_mode!r}")
        self.augmentation = augmentation if augmentation is not None else MixUp(1.0)
        self.eval_data = eval_data
        self.callbacks = list(callbacks)
        self.handlers = handlers
        self.masks: NeuronMasks | None = None

    # ------------------------------------------------------------------ run
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        c = self.config
        t0 = time.perf_counter()
        device = torch.device(c.device) if c.device else model_device(model)
        was_training = model.training
        work = copy.deepcopy(model).to(device)
        for p in work.parameters():
            p.requires_grad_(False)

        gen = torch.Generator().manual_seed(c.seed)
        source = BatchSource(
            data, c.batch_size, collate=adapter.collate, to_device=adapter.to_device, device=device, generator=gen
        )
        example = adapter.example_input(
            adapter.to_device(adapter.collate([data[0], data[min(1, len(data) - 1)]]), device)
        )
        masks = NeuronMasks(
            work,
            example,
            placement=c.placement,
            include=c.include,
            exclude=c.exclude,
            skip_first=c.skip_first,
            handlers=self.handlers,
        )
        self.masks = masks
        masks.set_bounds(c.schedule.bounds(len(masks.sites)))
        n_c = adapter.samples_per_class(data) if hasattr(adapter, "samples_per_class") else float(len(data))
        reg_weight = c.eta / max(n_c, 1e-12)

        opt = torch.optim.SGD(masks.parameters(), lr=c.lr, momentum=c.momentum)
        spe = source.steps_per_epoch
        total = c.steps if c.steps is not None else c.epochs * spe
        epochs = math.ceil(total / spe)
        history: list[dict[str, float]] = []
        start_epoch = 0
        ckpt = Path(c.checkpoint_dir) / "nft_state.pt" if c.checkpoint_dir else None
        fingerprint = self._fingerprint(masks, len(data))
        if c.resume and ckpt is not None and ckpt.exists():
            start_epoch, history, guard_state = self._load_state(ckpt, masks, opt, gen, fingerprint)
        else:
            guard_state = {}
        metric_key = getattr(adapter, "clean_metric", "acc")
        guard_ref = guard_state.get("ref")
        if c.guard is not None and guard_ref is None:
            guard_ref = adapter.evaluate(work, data)[metric_key]
        best_masks = guard_state.get("masks") or {k: v.detach().clone() for k, v in masks.masks.items()}
        best_epoch = guard_state.get("epoch", 0)

        work.train(c.model_mode == "train")
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=c.amp)
        bar = None
        if c.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=min(total, start_epoch * spe), desc="nft", unit="step")
        step = start_epoch * spe
        try:
            for epoch in range(start_epoch, epochs):
                loss_sum = torch.zeros((), device=device)
                n_steps = 0
                while n_steps < spe and step < total:
                    for g in opt.param_groups:  # cosine decay from lr to lr_min over all steps
                        g["lr"] = c.lr_min + (c.lr - c.lr_min) * 0.5 * (1 + math.cos(math.pi * step / total))
                    batch = self.augmentation(source.next(), gen)
                    with amp:
                        loss = adapter.loss(work, batch)
                    objective = loss.float() + reg_weight * masks.l1_distance()
                    if c.shrink and step < c.shrink_fraction * total:
                        objective = objective + c.shrink * masks.mask_sum()
                    opt.zero_grad(set_to_none=True)
                    objective.backward()
                    opt.step()
                    masks.clip_()
                    loss_sum += loss.detach().float()
                    n_steps += 1
                    step += 1
                    if bar is not None:
                        bar.update(1)
                row = self._row(epoch, loss_sum / max(n_steps, 1), masks, opt, reg_weight)
                if self.eval_data is not None and c.eval_every and (epoch + 1) % c.eval_every == 0:
                    was = work.training
                    row.update(adapter.evaluate(work, self.eval_data))
                    work.train(was)
                if guard_ref is not None:
                    was = work.training
                    row["val_" + metric_key] = adapter.evaluate(work, data)[metric_key]
                    work.train(was)
                    if guard_ref - row["val_" + metric_key] <= c.guard:
                        best_masks = {k: v.detach().clone() for k, v in masks.masks.items()}
                        best_epoch = epoch + 1
                history.append(row)
                for cb in self.callbacks:
                    cb(epoch, row, self)
                if ckpt is not None and c.checkpoint_every and (epoch + 1) % c.checkpoint_every == 0:
                    guard_state = {"ref": guard_ref, "masks": best_masks, "epoch": best_epoch}
                    self._save_state(ckpt, epoch + 1, masks, opt, gen, history, fingerprint, guard_state)
        finally:
            if bar is not None:
                bar.close()
        if guard_ref is not None:
            with torch.no_grad():
                for k, v in best_masks.items():
                    masks.masks[k].copy_(v)
        mask_values = masks.mask_dict()
        purified = masks.fold()
        for p, q in zip(purified.parameters(), model.parameters()):
            p.requires_grad_(q.requires_grad)
        purified.train(was_training)
        info = {
            "defense": "nft",
            "config": _jsonable(asdict(c)),
            "augmentation": repr(self.augmentation),
            "num_masks": masks.num_masks(),
            "mask_sites": [s.name for s in masks.sites],
            "lower_bounds": masks.lower_bounds(),
            "skipped": masks.skipped,
            "samples_per_class": n_c,
            "steps": step,
            "guard_reference": guard_ref,
            "selected_epoch": best_epoch if guard_ref is not None else epochs,
        }
        return PurifyResult(purified, mask_values, history, time.perf_counter() - t0, info)

    # -------------------------------------------------------------- helpers
    @staticmethod
    def _row(epoch, loss, masks: NeuronMasks, opt, reg_weight) -> dict[str, float]:
        with torch.no_grad():
            flat = torch.cat([m.detach().flatten() for m in masks.masks.values()])
            return {
                "epoch": epoch + 1,
                "loss": float(loss),
                "reg": float(reg_weight * (flat - 1).abs().sum()),
                "lr": opt.param_groups[0]["lr"],
                "mask_mean": float(flat.mean()),
                "mask_min": float(flat.min()),
            }

    def _fingerprint(self, masks: NeuronMasks, n: int) -> str:
        c = _jsonable(asdict(self.config))
        for k in ("checkpoint_dir", "checkpoint_every", "resume", "progress", "eval_every", "device"):
            c.pop(k, None)
        key = json.dumps([c, [s.name for s in masks.sites], n, repr(self.augmentation)], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @staticmethod
    def _save_state(path: Path, epoch, masks, opt, gen, history, fingerprint, guard_state) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "epoch": epoch,
            "masks": {k: v.detach().cpu() for k, v in masks.masks.items()},
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "history": history,
            "fingerprint": fingerprint,
            "guard": guard_state,
        }
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: a kill leaves the previous checkpoint intact

    @staticmethod
    def _load_state(path: Path, masks, opt, gen, fingerprint):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure to read means a bad file
            raise CheckpointError(f"{path}: cannot read the NFT resume state ({type(e).__name__}: {e})") from e
        if state.get("fingerprint") != fingerprint:
            raise CheckpointError(f"{path}: the resume state was written by a run with other settings or data")
        with torch.no_grad():
            for k, v in state["masks"].items():
                masks.masks[k].copy_(v)
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        return int(state["epoch"]), list(state["history"]), dict(state.get("guard") or {})


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return repr(obj)
