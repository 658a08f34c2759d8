"""From a :class:`~nft_vision.config.VisionConfig` to models and data: loading, backdooring (cached),
and loading a user's own model and data for purification."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nft_core import EvalData, TensorData
from nft_core.augment import build_from_table
from nft_core.checkpoint import atomic_write, load_checkpoint_into, save_model, save_state_dict
from nft_core.distributed import is_main
from nft_core.errors import DataError, NFTInputError
from nft_core.init import seeded_init_
from nft_core.surrogate import merge_surrogate_options
from nft_core.task import cache_root as task_cache_root
from nft_core.task import resolve_device

from .attacks import ATTACKS
from .augment import AugMix, CutMix, CutOut, RandAugment
from .augment_adv import PGD, SurrogateTrigger
from .config import VisionConfig
from .data import (
    load_cifar10,
    load_cifar100,
    load_digits_default,
    load_gtsrb,
    load_image_folder,
    load_npz,
    load_procedural,
    split_validation,
)
from .models import create_model
from .train import train_classifier

log = logging.getLogger("nft")

__all__ = ["BackdoorRun", "backdoor", "load_dataset", "load_user_inputs", "build_augmentation", "resolve_device"]


def load_eval_file(path: str | os.PathLike, size: int) -> TensorData:
    """An evaluation or validation set given as an ImageFolder directory or an ``.npz`` file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: not found")
    return load_npz(p) if p.suffix == ".npz" else load_image_folder(p, size=size)


def load_dataset(cfg: VisionConfig) -> tuple[TensorData, TensorData, int]:
    """``(train, test, num_classes)`` for ``cfg.data``."""
    d = cfg.data
    name = d.name.lower()
    if name == "digits":
        train, test = load_digits_default(size=d.image_size)
    elif name == "procedural":
        opts = dict(d.options)
        unknown = sorted(set(opts) - {"n_train", "n_test", "seed"})
        if unknown:
            raise NFTInputError(f"data.options.{unknown[0]}: unknown for data.name=procedural "
                                "(known: n_train, n_test, seed)")
        try:
            train, test = load_procedural(size=d.image_size, **opts)
        except (TypeError, ValueError) as e:
            raise NFTInputError(f"data.name=procedural: {e}") from e
    elif name in ("cifar10", "cifar100", "gtsrb", "imagefolder", "npz"):
        if not d.root:
            raise NFTInputError(f"data.name={name} needs data.root (the dataset folder)")
        root = Path(d.root)
        if name == "cifar10":
            train, test = load_cifar10(root, train=True), load_cifar10(root, train=False)
        elif name == "cifar100":
            train, test = load_cifar100(root, train=True), load_cifar100(root, train=False)
        elif name == "gtsrb":
            train, test = load_gtsrb(root, True, d.image_size), load_gtsrb(root, False, d.image_size)
        elif name == "imagefolder":
            train, test = load_image_folder(root / "train", d.image_size), load_image_folder(root / "test", d.image_size)
        else:
            train, test = load_npz(root / "train.npz"), load_npz(root / "test.npz")
    else:
        raise NFTInputError(f"unknown data.name {d.name!r}; choose digits, procedural, cifar10, cifar100, gtsrb, "
                            "imagefolder, npz")
    n_cls = int(max(train.tensors[1].max(), test.tensors[1].max())) + 1
    if d.num_classes is not None:
        if d.num_classes < n_cls:
            raise DataError(f"data.num_classes={d.num_classes} but the labels go up to {n_cls - 1}")
        n_cls = d.num_classes
    return train, test, n_cls


def build_model(cfg: VisionConfig, num_classes: int) -> nn.Module:
    kw = dict(cfg.model.kwargs)
    if cfg.model.width is not None:
        kw["width"] = cfg.model.width
    return create_model(cfg.model.spec, num_classes, mean=cfg.model.mean, std=cfg.model.std, **kw)


def build_attack(cfg: VisionConfig, num_classes: int, name: str | None = None):
    a = cfg.attack
    name = (name or a.name).lower()
    if name not in ATTACKS:
        raise NFTInputError(f"unknown attack {name!r}; choose from {', '.join(sorted(ATTACKS))}")
    if not 0 <= a.target < num_classes:
        raise NFTInputError(f"attack.target={a.target} is out of range for {num_classes} classes")
    try:
        rate = {} if a.poison_rate is None else {"poison_rate": a.poison_rate}  # None: the attack's own
        return ATTACKS[name](target=a.target, mode=a.mode, num_classes=num_classes, seed=cfg.seed, **rate,
                             **a.options)
    except (TypeError, ValueError) as e:
        raise NFTInputError(f"attack {name}: {e}") from e


def build_augmentation(cfg: VisionConfig, recipe: str | None = None):
    """NFT's augmentation from ``cfg.augmentation``; ``auto`` follows the NFT recipe in effect (``recipe``, by
    default ``cfg.defense.recipe``): the surrogate trigger for ``surrogate``, mixup otherwise."""
    from nft_core import MixUp, NoAugmentation

    from .config import SURROGATE_AUGMENTATION

    table = {"mixup": MixUp, "cutmix": CutMix, "cutout": CutOut, "augmix": AugMix, "randaugment": RandAugment,
             "pgd": PGD, "surrogate": SurrogateTrigger, "none": NoAugmentation}
    name, options = cfg.augmentation.name, dict(cfg.augmentation.options)
    if name == "auto":
        if (recipe or cfg.defense.recipe) == "surrogate":
            name, options = "surrogate", merge_surrogate_options(SURROGATE_AUGMENTATION, options)
        else:
            name = "mixup"
    return build_from_table(table, name, options)


@dataclass
class BackdoorRun:
    model: nn.Module
    val: TensorData
    eval_data: EvalData
    attack: Any
    num_classes: int
    meta: dict[str, Any]


def _split(cfg: VisionConfig, train: TensorData) -> tuple[TensorData, TensorData, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed)
    if cfg.data.val_per_class is not None:
        val, rest, vi, _ = split_validation(train, per_class=cfg.data.val_per_class, generator=g)
    else:
        val, rest, vi, _ = split_validation(train, ratio=cfg.data.val_ratio or 0.01, generator=g)
    return val, rest, vi


def cache_root(cfg: VisionConfig) -> Path:
    return task_cache_root("vision", cfg.cache_dir)


def backdoor(cfg: VisionConfig, *, attack_name: str | None = None, device=None, use_cache: bool = True,
             progress: bool = False) -> BackdoorRun:
    """Train (or load from the cache) the backdoored model of ``cfg`` and build the defender's clean
    validation set and the evaluation sets (clean test, poisoned test)."""
    device = resolve_device(cfg.device) if device is None else device
    train, test, n_cls = load_dataset(cfg)
    if attack_name is not None:
        from dataclasses import replace

        cfg = replace(cfg, attack=replace(cfg.attack, name=attack_name))
    attack = build_attack(cfg, n_cls)
    # As in the paper, the attacker trains on the whole (poisoned) training set and the defender's
    # validation set is a stratified sample of the *clean* training images, so the backdoored model does
    # not depend on the validation size (Table 25's sweep purifies one model).
    val, _, val_idx = _split(cfg, train)
    rest = train
    key = hashlib.sha256(json.dumps(cfg.attack_key(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    cdir = cache_root(cfg) / f"{cfg.attack.name}-{key}"
    model = build_model(cfg, n_cls)
    meta: dict[str, Any]
    if use_cache and (cdir / "model.safetensors").exists():
        load_checkpoint_into(model, cdir / "model.safetensors")
        meta = json.loads((cdir / "attack.json").read_text())
        if (cdir / "attack_state.safetensors").exists() and hasattr(attack, "load_state_dict"):
            from safetensors.torch import load_file

            attack.load_state_dict(load_file(str(cdir / "attack_state.safetensors")))
        model.to(device).eval()
        meta["cached"] = True
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        seeded_init_(model, g)
        t = cfg.train
        epochs = t.epochs_for(cfg.attack.name)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs * -(-len(rest) // t.batch_size), desc=f"attack {cfg.attack.name}", unit="step")
        if getattr(attack, "requires_model_training", False):
            model = attack.train_backdoor(model, rest, epochs=epochs, lr=t.lr, batch_size=t.batch_size,
                                          generator=g, device=device)
            poison_idx = []
        else:
            poisoned, poison_idx = attack.poison_train(rest, g)
            model = train_classifier(model, poisoned, epochs=epochs, lr=t.lr, batch_size=t.batch_size,
                                     augment=t.augment, generator=g, device=device, progress=bar, amp=t.amp)
        if bar is not None:
            bar.close()
        meta = {"attack": cfg.attack.name, "num_classes": n_cls, "key": cfg.attack_key(),
                "poisoned_samples": len(poison_idx), "train_samples": len(rest), "train_epochs": epochs}
        if use_cache and is_main():  # under torchrun the ranks hold the same model; rank 0 caches it
            cdir.mkdir(parents=True, exist_ok=True)
            save_model(model, cdir / "model.safetensors")
            if hasattr(attack, "state_dict") and attack.state_dict():
                save_state_dict(attack.state_dict(), cdir / "attack_state.safetensors")
            atomic_write(cdir / "attack.json", lambda p: p.write_text(json.dumps(meta, default=str)))
        meta["cached"] = False
    model.to(device).eval()
    eval_data = EvalData(clean=test, poisoned=attack.poison_test(test))
    meta["val_indices"] = val_idx.tolist()
    return BackdoorRun(model, val, eval_data, attack, n_cls, meta)


def load_user_inputs(cfg: VisionConfig, *, trust: bool = False, device=None) -> BackdoorRun:
    """A model nobody in this project wrote: ``model.spec`` + ``model.checkpoint``, validation, clean
    test and poisoned test sets from ``data.val_path``/``test_path``/``poisoned_path``.

    With ``data.backdoorbench_path`` (a BackdoorBench ``attack_result.pt``; needs ``trust``) the weights,
    the class count and (unless ``poisoned_path`` is given) the poisoned test set come from that file;
    ``model.spec`` must still build the architecture whose state dict it holds."""
    d = cfg.data
    device = resolve_device(cfg.device) if device is None else device
    missing = [k for k in ("val_path", "test_path") if getattr(d, k) is None]
    if missing:
        raise NFTInputError(f"purifying your own model needs data.{missing[0]} (ImageFolder or .npz)")
    bb = None
    if d.backdoorbench_path:
        if cfg.model.checkpoint:
            raise NFTInputError("give model.checkpoint or data.backdoorbench_path (--backdoorbench), not both")
        from .backdoorbench import load_backdoorbench

        bb = load_backdoorbench(d.backdoorbench_path, trust=trust)
    val = load_eval_file(d.val_path, d.image_size)
    test = load_eval_file(d.test_path, d.image_size)
    n_cls = d.num_classes or (bb.num_classes if bb is not None else None) or int(
        max(val.tensors[1].max(), test.tensors[1].max())) + 1
    present = set(val.tensors[1].tolist())
    if len(present) < n_cls:
        absent = sorted(set(range(n_cls)) - present)
        raise DataError(f"{d.val_path}: validation set has no sample of class {absent[0]} "
                        f"({len(absent)} of {n_cls} classes missing)")
    model = build_model(cfg, n_cls)
    if bb is not None:
        from .backdoorbench import load_state_into

        load_state_into(model, bb.state_dict, d.backdoorbench_path)
    else:
        load_checkpoint_into(model, cfg.model.checkpoint, trust=trust)
    _check_outputs(model, val, n_cls)
    poisoned = None
    if d.poisoned_path is None and bb is not None and bb.poisoned is not None:
        poisoned = bb.poisoned
        if poisoned.tensors[0].shape[1:] != val.tensors[0].shape[1:]:
            raise DataError(f"{d.backdoorbench_path}: poisoned test images are {tuple(poisoned.tensors[0].shape[1:])}"
                            f" but the validation images {tuple(val.tensors[0].shape[1:])} (set data.image_size)")
        if int(poisoned.tensors[2].max()) >= n_cls:
            raise DataError(f"{d.backdoorbench_path}: a poisoned target label is out of range for {n_cls} classes")
    elif d.poisoned_path is not None:
        p = load_eval_file(d.poisoned_path, d.image_size)
        x, y = p.tensors[:2]
        if not 0 <= cfg.attack.target < n_cls:
            raise NFTInputError(f"attack.target={cfg.attack.target} is out of range for {n_cls} classes")
        if len(p.tensors) > 2:
            tgt = p.tensors[2]
        elif cfg.attack.mode == "all2all":
            tgt = (y + 1) % n_cls
        else:
            tgt = torch.full_like(y, cfg.attack.target)
        keep = y != tgt
        poisoned = TensorData(x[keep], y[keep], tgt[keep])
    model.to(device).eval()
    meta = {"attack": "user", "num_classes": n_cls, "cached": False}
    if bb is not None:
        meta.update(attack="backdoorbench", backdoorbench={"model_name": bb.model_name, "clean_data": bb.clean_data,
                                                            "layout": bb.layout, **bb.meta})
    return BackdoorRun(model, val, EvalData(clean=test, poisoned=poisoned), None, n_cls, meta)


def _check_outputs(model: nn.Module, val: TensorData, n_cls: int) -> None:
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            out = model(val.tensors[0][:2])
        except RuntimeError as e:
            raise NFTInputError(f"model.spec={type(model).__name__} cannot take the images "
                                f"{tuple(val.tensors[0].shape[1:])}: {str(e).splitlines()[0]}") from e
        finally:
            model.train(was)
    if out.shape[-1] != n_cls:
        raise DataError(f"the model has {out.shape[-1]} outputs but the data has {n_cls} classes")


def save_npz(path: Path, data: TensorData, keys=("x", "y", "y_target")) -> None:
    arrays = {}
    for k, t in zip(keys, data.tensors):
        arrays[k] = (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy() if t.is_floating_point() else t.numpy()
    atomic_write(path, lambda p: np.savez_compressed(open(p, "wb"), **arrays))
