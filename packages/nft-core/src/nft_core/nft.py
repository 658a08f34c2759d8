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
from torch import Tensor, nn

from .adapters import model_device
from .augment import MixUp
from .contracts import Augmentation, PurifyResult, TaskAdapter
from .data import BatchSource
from .distributed import all_reduce_grads, all_reduce_sum, shard_batch
from .distributed import world as dist_world
from .errors import CheckpointError
from .masks import LayerHandler, NeuronMasks
from .rnn import rnn_safe
from .schedules import Schedule

__all__ = ["NFT", "NFTConfig", "NFT_PLUS", "recipe_options"]

#: The NFT+ recipe's extra settings (see docs/method.md); ``NFT(**NFT_PLUS)``.
NFT_PLUS = {"shrink": 0.02, "guard": 1.0}


def recipe_options(defense: str, recipe: str, options: dict, *, task_plus: dict | None = None,
                   task_base: dict | None = None, task_recipes: dict[str, dict] | None = None) -> dict:
    """Keyword options for a CLI's defense section.

    NFT: ``paper`` -> ``task_base`` + ``options``; ``nft+`` -> ``task_base`` + ``NFT_PLUS`` + the task's own
    measured ``task_plus`` + ``options`` (later wins); a task's own named recipe (``task_recipes``, e.g.
    vision's ``surrogate``) -> ``task_base`` + its settings + ``options``. Any other defense gets ``options``
    alone.
    """
    if defense != "nft":
        return dict(options)
    named = task_recipes or {}
    if recipe not in ("nft+", "paper", *named):
        from .errors import ConfigError

        choices = ", ".join(repr(r) for r in ("nft+", "paper", *named))
        raise ConfigError(f"defense.recipe must be one of {choices}, got {recipe!r}")
    plus = {**NFT_PLUS, **(task_plus or {})} if recipe == "nft+" else dict(named.get(recipe, {}))
    return {**(task_base or {}), **plus, **options}

Callback = Callable[[int, dict[str, float], "NFT"], None]


@dataclass
class NFTConfig:
    """NFT settings. Defaults are the paper's (CIFAR-10 protocol) unless noted.

    ``steps``: total optimizer steps, overriding ``epochs`` (an epoch is ceil(N/batch) steps).
    ``placement``: ``"bn"`` masks a conv feeding BatchNorm at BN's γ; ``"weight"`` masks the conv itself.
    ``tune_bias`` (the paper's Table 23 ablation; ``False`` = the paper, which freezes biases): the biases
    of the masked layers (BN's β under ``placement="bn"``) are trained too, same optimizer and lr as the
    masks, snapshotted with them by ``guard`` and resume; the folded model keeps the tuned biases.
    ``tune_bias="last"`` (this project's option) trains only the last masked layer's bias — a classifier's
    per-class offsets — e.g. to give back the prior a surrogate trigger takes from the attacker's class.
    ``average`` (this project's option, 0 = off): the masks (and tuned biases) folded are the mean over the
    last ``average`` share of the steps instead of the last step's (Polyak averaging; as in SWA, Izmailov
    et al., UAI 2018); exclusive with ``guard``.
    ``model_mode``: ``"eval"`` keeps BatchNorm statistics and dropout frozen while tuning (the default,
    docs/method.md); ``"train"`` is the authors' code.
    ``eta``: regularizer weight η; the loss adds ``eta / N_c * ||m - 1||_1``.
    ``shrink`` (not in the paper; 0 = the paper's recipe) adds ``shrink * sum(m)`` for the first
    ``shrink_fraction`` of the steps: a pull of every mask toward its lower bound, so neurons the clean
    data does not need (a dormant backdoor neuron gets no gradient from clean data at all) sink, while
    the ones it needs are held up by the task loss. ``guard`` (points): after every epoch the clean
    metric is measured on the validation data without augmentation; the masks of the last epoch whose
    metric stayed within ``guard`` of the original model's are the ones folded (the Fine-Pruning
    principle: shrink until clean accuracy drops). Both use the clean validation data only.
    An augmentation with a non-zero ``requested_shrink`` attribute (read at every step, after the batch is
    drawn) adds ``requested_shrink * sum(m)`` too, for the rest of the run: SurrogateTrigger's
    ``fallback_shrink`` asks for it when its searches find no trigger to append. One with a
    ``requested_guard`` (points; read after every batch until set, when ``guard`` is None) gets a safety
    net: the validation metric is measured after every epoch as for ``guard``, and if the masks folded at
    the end (averaged or not) lost more than that against the original model, the last epoch's masks that
    did not are folded instead (``info["guard_reverted"]``). ``safety_guard`` (points, this project's option,
    exclusive with ``guard``) is the same safety net for every run, compatible with ``average``.
    See docs/method.md for the measurements.
    ``amp``: the loss under bfloat16 autocast (masks, regularizer and optimizer stay float32); ``"auto"``
    turns it on for a CPU run where oneDNN has native bfloat16 (AVX-512 BF16 or AMX; off on GPUs and other
    CPUs, where it was not measured), ``info["amp"]`` says which ran. Augmentation searches (the surrogate
    trigger, PGD) run outside it, in float32.
    ``channels_last`` (speed only, not the paper's): tune with the model's 4-D weights in PyTorch's
    channels-last memory layout. ``None`` (auto) turns it on for a CPU run of a model with a ``Conv2d``,
    where oneDNN's convolutions and max-pooling are faster in that layout (the digits default's 200 steps
    and search, measured in docs/results/speed.md); the folded model is given back in the standard
    layout. The result can differ from ``False`` in the last float bits (another summation order). A model
    whose forward fails in that layout (``x.view(n, -1)`` on a feature map) falls back to the standard one
    under auto; ``info["channels_last"]`` says which ran.
    ``distributed``: when a ``torch.distributed`` process group is running (e.g. under ``torchrun``),
    every rank draws the same batch and computes its shard, mask gradients are all-reduced and only rank 0
    writes checkpoints (:mod:`nft_core.distributed`); ``False`` ignores the group.
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
    tune_bias: bool | str = False
    amp: bool | str = False
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
    safety_guard: float | None = None
    average: float = 0.0
    channels_last: bool | None = None
    distributed: bool = True


class NFT:
    """The NFT defense (``purify(model, data, adapter) -> PurifyResult``).

    Args:
        augmentation: an :class:`~nft_core.contracts.Augmentation`; default ``MixUp(1.0)``. If it has a
            ``bind`` method, ``bind(model, adapter)`` is called once before training with the masked model
            being tuned (for model-dependent augmentations such as PGD adversarial examples); if its
            ``wants_reference`` is true, ``set_reference(copy)`` gets a frozen copy of the original model
            before the first step and ``set_reference(None)`` after the run (the surrogate's ``distill``).
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
        if c.tune_bias not in (False, True, "last"):
            raise ValueError(f"tune_bias must be false, true or 'last', got {c.tune_bias!r}")
        if not 0.0 <= c.average < 1.0:
            raise ValueError(f"average must be in [0, 1) (the share of final steps averaged), got {c.average!r}")
        if c.amp not in (True, False, "auto"):
            raise ValueError(f"amp must be true, false or 'auto', got {c.amp!r}")
        if c.channels_last not in (None, True, False):
            raise ValueError(f"channels_last must be true, false or null (auto), got {c.channels_last!r}")
        if c.average and c.guard is not None:
            raise ValueError("average and guard both choose the folded masks: set one of them")
        if c.safety_guard is not None and (c.guard is not None or c.safety_guard < 0):
            raise ValueError(f"safety_guard must be >= 0 points and is exclusive with guard, got safety_guard="
                             f"{c.safety_guard}, guard={c.guard}")
        self.augmentation = augmentation if augmentation is not None else MixUp(1.0)
        self.eval_data = eval_data
        self.callbacks = list(callbacks)
        self.handlers = handlers
        self.masks: NeuronMasks | None = None

    # ------------------------------------------------------------------ run
    @rnn_safe
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        c = self.config
        t0 = time.perf_counter()
        device = torch.device(c.device) if c.device else model_device(model)
        was_training = model.training
        work = copy.deepcopy(model).to(device)
        for p in work.parameters():
            p.requires_grad_(False)
        channels_last = c.channels_last
        if channels_last is None:
            channels_last = device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in work.modules())
        if channels_last:
            work.to(memory_format=torch.channels_last)

        gen = torch.Generator().manual_seed(c.seed)
        source = BatchSource(
            data, c.batch_size, collate=adapter.collate, to_device=adapter.to_device, device=device, generator=gen
        )
        example = adapter.example_input(
            adapter.to_device(adapter.collate([data[0], data[min(1, len(data) - 1)]]), device)
        )
        def build_masks() -> NeuronMasks:
            return NeuronMasks(work, example, placement=c.placement, include=c.include, exclude=c.exclude,
                               skip_first=c.skip_first, handlers=self.handlers)

        try:
            masks = build_masks()  # its trace is a forward pass: the auto layout's trial too
        except RuntimeError:
            if not (channels_last and c.channels_last is None):
                raise
            # e.g. ``x.view(n, -1)`` on a feature map needs the standard layout: auto falls back to it
            work.to(memory_format=torch.contiguous_format)
            channels_last = False
            masks = build_masks()
        self.masks = masks
        masks.set_bounds(c.schedule.bounds(len(masks.sites)))
        n_c = adapter.samples_per_class(data) if hasattr(adapter, "samples_per_class") else float(len(data))
        reg_weight = c.eta / max(n_c, 1e-12)

        self._tuned = self._masked_biases(masks, last_only=c.tune_bias == "last") if c.tune_bias else {}
        trained = {**masks.masks, **self._tuned}  # what the guard snapshots and a resume restores
        opt = torch.optim.SGD([*masks.parameters(), *self._tuned.values()], lr=c.lr, momentum=c.momentum)
        spe = source.steps_per_epoch
        total = c.steps if c.steps is not None else c.epochs * spe
        epochs = math.ceil(total / spe)
        history: list[dict[str, float]] = []
        start_epoch = 0
        ckpt = Path(c.checkpoint_dir) / "nft_state.pt" if c.checkpoint_dir else None
        fingerprint = self._fingerprint(masks, len(data))
        if c.resume and ckpt is not None and ckpt.exists():
            start_epoch, history, guard_state, avg_state = self._load_state(ckpt, masks, opt, gen, fingerprint)
        else:
            guard_state, avg_state = {}, {}
        metric_key = getattr(adapter, "clean_metric", "acc")
        guard_ref = guard_state.get("ref")
        # the augmentation may ask for a safety net after its first call (``requested_guard``)
        guard = c.guard if c.guard is not None else c.safety_guard
        if guard is not None and guard_ref is None:
            guard_ref = adapter.evaluate(work, data)[metric_key]
        best_masks = guard_state.get("masks") or {k: v.detach().clone() for k, v in trained.items()}
        best_epoch = guard_state.get("epoch", 0)

        work.train(c.model_mode == "train")
        if callable(getattr(self.augmentation, "bind", None)):  # model-dependent augmentations (e.g. PGD)
            self.augmentation.bind(work, adapter)
        if getattr(self.augmentation, "wants_reference", False):  # e.g. the surrogate's ``distill``
            reference = copy.deepcopy(model).to(device).eval()
            for p in reference.parameters():
                p.requires_grad_(False)
            self.augmentation.set_reference(reference)
        amp_on = bool(c.amp) if c.amp != "auto" else device.type == "cpu" and _cpu_has_native_bf16()
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp_on)
        bar = None
        if c.progress and (dist_world()[0] == 0 or not c.distributed):
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=min(total, start_epoch * spe), desc="nft", unit="step")
        step = start_epoch * spe
        avg_sum: dict[str, Tensor] = dict(avg_state.get("sum") or {})
        avg_n = int(avg_state.get("n", 0))
        rank, world_size = dist_world() if c.distributed else (0, 1)
        shard = getattr(adapter, "shard", shard_batch)
        try:
            for epoch in range(start_epoch, epochs):
                loss_sum = torch.zeros((), device=device)
                n_steps = 0
                while n_steps < spe and step < total:
                    for g in opt.param_groups:  # cosine decay from lr to lr_min over all steps
                        g["lr"] = c.lr_min + (c.lr - c.lr_min) * 0.5 * (1 + math.cos(math.pi * step / total))
                    batch = self.augmentation(source.next(), gen)
                    if guard is None and getattr(self.augmentation, "requested_guard", None) is not None:
                        guard = float(self.augmentation.requested_guard)
                        if guard_ref is None and step == 0:  # no step taken yet: the original model's metric
                            was = work.training
                            guard_ref = adapter.evaluate(work, data)[metric_key]
                            work.train(was)
                    share = 1.0
                    if world_size > 1:  # same batch on every rank; each computes its shard (distributed.py)
                        batch, share = shard(batch, rank, world_size)
                    with amp:
                        loss = adapter.loss(work, batch)
                    objective = loss.float() * share
                    reg = reg_weight * masks.l1_distance()
                    if c.shrink and step < c.shrink_fraction * total:
                        reg = reg + c.shrink * masks.mask_sum()
                    asked = float(getattr(self.augmentation, "requested_shrink", 0.0) or 0.0)
                    if asked:  # the augmentation's own call for the shrink pull (SurrogateTrigger's fallback)
                        reg = reg + asked * masks.mask_sum()
                    objective = objective + reg / world_size  # summed over ranks below: counted once
                    opt.zero_grad(set_to_none=True)
                    objective.backward()
                    if world_size > 1:
                        all_reduce_grads([p for g in opt.param_groups for p in g["params"]])  # masks (+ biases)
                        loss = loss * share * world_size  # so the epoch loss summed over ranks is the mean
                    opt.step()
                    masks.clip_()
                    if c.average and step >= (1 - c.average) * total:  # running mean of the last steps' masks
                        with torch.no_grad():
                            for k, v in trained.items():
                                avg_sum[k] = avg_sum[k] + v if k in avg_sum else v.detach().clone()
                        avg_n += 1
                    loss_sum += loss.detach().float()
                    n_steps += 1
                    step += 1
                    if bar is not None:
                        bar.update(1)
                if world_size > 1:
                    loss_sum = all_reduce_sum(loss_sum) / world_size
                row = self._row(epoch, loss_sum / max(n_steps, 1), masks, opt, reg_weight)
                if self.eval_data is not None and c.eval_every and (epoch + 1) % c.eval_every == 0:
                    was = work.training
                    row.update(adapter.evaluate(work, self.eval_data))
                    work.train(was)
                if guard_ref is not None:
                    was = work.training
                    row["val_" + metric_key] = adapter.evaluate(work, data)[metric_key]
                    work.train(was)
                    if guard_ref - row["val_" + metric_key] <= guard:
                        best_masks = {k: v.detach().clone() for k, v in trained.items()}
                        best_epoch = epoch + 1
                history.append(row)
                for cb in self.callbacks:
                    cb(epoch, row, self)
                if ckpt is not None and c.checkpoint_every and (epoch + 1) % c.checkpoint_every == 0 and rank == 0:
                    guard_state = {"ref": guard_ref, "masks": best_masks, "epoch": best_epoch}
                    self._save_state(ckpt, epoch + 1, masks, opt, gen, history, fingerprint, guard_state,
                                     {"sum": avg_sum, "n": avg_n})
        finally:
            if bar is not None:
                bar.close()
            if getattr(self.augmentation, "wants_reference", False):
                self.augmentation.set_reference(None)  # the frozen copy is not needed after the run
        net = guard_ref is not None and c.guard is None  # a safety net only: safety_guard or requested_guard
        if guard_ref is not None and not net:
            with torch.no_grad():
                for k, v in best_masks.items():
                    trained[k].copy_(v)
        if avg_n:  # ``average``: fold the mean of the last steps' masks (and tuned biases)
            with torch.no_grad():
                for k, v in avg_sum.items():
                    trained[k].copy_(v / avg_n)
        reverted = False
        if net:  # the final masks unless they lost more than ``guard``: then the last epoch that did not
            was = work.training
            final = adapter.evaluate(work, data)[metric_key]
            work.train(was)
            if guard_ref - final > guard:
                reverted = True
                with torch.no_grad():
                    for k, v in best_masks.items():
                        trained[k].copy_(v)
        mask_values = masks.mask_dict()
        if channels_last:  # fold and give back in the standard layout (safetensors wants contiguous)
            work.to(memory_format=torch.contiguous_format)
        purified = masks.fold()
        for p, q in zip(purified.parameters(), model.parameters()):
            p.requires_grad_(q.requires_grad)
        purified.train(was_training)
        info = {
            "defense": "nft",
            "config": _jsonable(asdict(c)),
            "augmentation": repr(self.augmentation),
            "augmentation_stats": dict(getattr(self.augmentation, "stats", None) or {}),  # e.g. the surrogate search
            "num_masks": masks.num_masks(),
            "mask_sites": [s.name for s in masks.sites],
            "lower_bounds": masks.lower_bounds(),
            "skipped": masks.skipped,
            "samples_per_class": n_c,
            "steps": step,
            "world_size": world_size,
            "guard_reference": guard_ref,
            "guard": guard,
            "guard_net": net,
            "guard_requested": net and c.safety_guard is None,
            "guard_reverted": reverted,
            # the guard put back epoch 0's masks (all 1): the model comes back unchanged, backdoor and all
            "returned_original": reverted and best_epoch == 0,
            "selected_epoch": best_epoch if (guard_ref is not None and not net) or reverted else epochs,
            "averaged_steps": avg_n,
            "channels_last": bool(channels_last),
            "amp": amp_on,
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
        for k in ("checkpoint_dir", "checkpoint_every", "resume", "progress", "eval_every", "device",
                  "distributed"):
            c.pop(k, None)
        if not c.get("average"):  # added later: resume states written before it stay valid
            c.pop("average", None)
        if c.get("channels_last") is None:  # likewise (auto)
            c.pop("channels_last", None)
        key = json.dumps([c, [s.name for s in masks.sites], n, repr(self.augmentation)], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @staticmethod
    def _masked_biases(masks: NeuronMasks, last_only: bool = False) -> dict[str, nn.Parameter]:
        """``tune_bias``: the bias parameters of every masked layer (BN's β under ``placement="bn"``), made
        trainable, keyed ``bias:<module>.<param>``. The NFT paper (Karim et al., ECCV 2024, Sec. 4.2 and
        Table 23) freezes them; tuning them is its ablation."""
        out: dict[str, nn.Parameter] = {}
        seen: set[int] = set()
        for site in masks.sites[-1:] if last_only else masks.sites:
            for pname, p in site.module.named_parameters():
                if "bias" in pname.rsplit(".", 1)[-1] and id(p) not in seen:
                    seen.add(id(p))
                    p.requires_grad_(True)
                    out[f"bias:{site.name}.{pname}"] = p
        return out

    def _save_state(self, path: Path, epoch, masks, opt, gen, history, fingerprint, guard_state,
                    avg_state) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "epoch": epoch,
            "masks": {k: v.detach().cpu() for k, v in {**masks.masks, **getattr(self, "_tuned", {})}.items()},
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "history": history,
            "fingerprint": fingerprint,
            "guard": guard_state,
            "average": {"sum": {k: v.detach().cpu() for k, v in avg_state["sum"].items()}, "n": avg_state["n"]},
        }
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: a kill leaves the previous checkpoint intact

    def _load_state(self, path: Path, masks, opt, gen, fingerprint):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure to read means a bad file
            raise CheckpointError(f"{path}: cannot read the NFT resume state ({type(e).__name__}: {e})") from e
        if state.get("fingerprint") != fingerprint:
            raise CheckpointError(f"{path}: the resume state was written by a run with other settings or data")
        trained = {**masks.masks, **getattr(self, "_tuned", {})}
        with torch.no_grad():
            for k, v in state["masks"].items():
                trained[k].copy_(v)
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        avg = state.get("average") or {}
        avg = {"sum": {k: v.to(trained[k].device) for k, v in (avg.get("sum") or {}).items()}, "n": avg.get("n", 0)}
        return int(state["epoch"]), list(state["history"]), dict(state.get("guard") or {}), avg


def _cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX-512 BF16 / AMX), not by emulation."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or without that query
        return False


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return repr(obj)
