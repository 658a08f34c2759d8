"""From a :class:`~nft_pointcloud.config.PointCloudConfig` to models and data: loading, backdooring
(cached), and loading a user's own model and data for purification."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nft_core import ClassificationAdapter, EvalData, TensorData
from nft_core.augment import build_from_table
from nft_core.checkpoint import atomic_write, load_checkpoint_into, save_model, save_state_dict
from nft_core.data import stratified_split
from nft_core.errors import DataError, NFTInputError
from nft_core.init import seeded_init_
from nft_core.task import cache_root as task_cache_root
from nft_core.task import resolve_device

from .attacks import ATTACKS
from .config import PointCloudConfig
from .data import generate_shapes, load_h5, load_modelnet
from .models import create_model
from .train import train_classifier

__all__ = ["PointCloudAdapter", "BackdoorRun", "backdoor", "load_dataset", "load_user_inputs",
           "build_augmentation", "resolve_device", "cache_root", "save_npz", "load_npz"]


class PointCloudAdapter(ClassificationAdapter):
    """Classification on ``(points (B, N, 3), label)`` batches; clean items ``(points, y)``, poisoned
    items ``(points_triggered, y_true, y_target)``. ``evaluate`` returns ``acc``, ``asr`` and ``lcr`` (%)."""

    clean_metric = "acc"


def cache_root(cfg: PointCloudConfig) -> Path:
    return task_cache_root("pointcloud", cfg.cache_dir)


def load_dataset(cfg: PointCloudConfig) -> tuple[TensorData, TensorData, int]:
    """``(train, test, num_classes)`` for ``cfg.data``."""
    d = cfg.data
    name = d.name.lower()
    clouds = cache_root(cfg) / "clouds"
    if name == "shapes":
        root = generate_shapes(cache_root(cfg) / f"shapes-{d.shapes_train}-{d.shapes_test}-{cfg.seed}",
                               d.shapes_train, d.shapes_test, seed=cfg.seed)
        train, _ = load_modelnet(root, "train", d.num_points, cfg.seed, clouds)
        test, _ = load_modelnet(root, "test", d.num_points, cfg.seed, clouds)
    elif name in ("modelnet", "h5"):
        if not d.root:
            raise NFTInputError(f"data.name={name} needs data.root (the dataset folder)")
        if name == "modelnet":
            train, _ = load_modelnet(d.root, "train", d.num_points, cfg.seed, clouds)
            test, _ = load_modelnet(d.root, "test", d.num_points, cfg.seed, clouds)
        else:
            train, _ = load_h5(d.root, "train", d.num_points)
            test, _ = load_h5(d.root, "test", d.num_points)
    else:
        raise NFTInputError(f"unknown data.name {d.name!r}; choose shapes, modelnet, h5")
    n_cls = int(max(train.tensors[1].max(), test.tensors[1].max())) + 1
    if d.num_classes is not None:
        if d.num_classes < n_cls:
            raise DataError(f"data.num_classes={d.num_classes} but the labels go up to {n_cls - 1}")
        n_cls = d.num_classes
    return train, test, n_cls


def build_model(cfg: PointCloudConfig, num_classes: int) -> nn.Module:
    kw = dict(cfg.model.kwargs)
    if cfg.model.width is not None and cfg.model.spec in ("pointnet", "pointnet2_ssg", "pointnet2_msg", "dgcnn"):
        kw.setdefault("width", cfg.model.width)
    return create_model(cfg.model.spec, num_classes, **kw)


def build_attack(cfg: PointCloudConfig, num_classes: int):
    a = cfg.attack
    name = a.name.lower()
    if name not in ATTACKS:
        raise NFTInputError(f"unknown attack {name!r}; choose from {', '.join(sorted(ATTACKS))}")
    if not 0 <= a.target < num_classes:
        raise NFTInputError(f"attack.target={a.target} is out of range for {num_classes} classes")
    try:
        return ATTACKS[name](target=a.target, poison_rate=a.poison_rate, mode=a.mode, num_classes=num_classes,
                             seed=cfg.seed, **a.options)
    except (TypeError, ValueError) as e:
        raise NFTInputError(f"attack {name}: {e}") from e


def build_augmentation(cfg: PointCloudConfig):
    from nft_core import MixUp, NoAugmentation

    from .augment import PointCutMix, RandomScaleJitter

    table = {"pointcutmix": PointCutMix, "mixup": MixUp, "scale_jitter": RandomScaleJitter, "none": NoAugmentation}
    return build_from_table(table, cfg.augmentation.name, cfg.augmentation.options)


@dataclass
class BackdoorRun:
    model: nn.Module
    val: TensorData
    eval_data: EvalData
    attack: Any
    num_classes: int
    meta: dict[str, Any]


def backdoor(cfg: PointCloudConfig, *, attack_name: str | None = None, device=None, use_cache: bool = True,
             progress: bool = False) -> BackdoorRun:
    """Train (or load from the cache) the backdoored model of ``cfg``; build the defender's clean
    validation set (a stratified sample of the clean training clouds) and the evaluation sets."""
    device = resolve_device(cfg.device) if device is None else device
    if attack_name is not None:
        cfg = replace(cfg, attack=replace(cfg.attack, name=attack_name))
    train, test, n_cls = load_dataset(cfg)
    attack = build_attack(cfg, n_cls)
    g = torch.Generator().manual_seed(cfg.seed)
    d = cfg.data
    val_idx, _ = stratified_split(train.tensors[1], ratio=None if d.val_per_class else (d.val_ratio or 0.01),
                                  per_class=d.val_per_class, generator=g)
    val = train.subset(val_idx)
    key = hashlib.sha256(json.dumps(cfg.attack_key(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    cdir = cache_root(cfg) / f"{cfg.attack.name}-{key}"
    model = build_model(cfg, n_cls)
    if use_cache and (cdir / "model.safetensors").exists():
        load_checkpoint_into(model, cdir / "model.safetensors")
        meta = json.loads((cdir / "attack.json").read_text())
        if (cdir / "attack_state.safetensors").exists():
            from safetensors.torch import load_file

            attack.load_state_dict(load_file(str(cdir / "attack_state.safetensors")))
        meta["cached"] = True
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        seeded_init_(model, g)
        t = cfg.train
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.epochs * -(-len(train) // t.batch_size), desc=f"attack {cfg.attack.name}", unit="step")
        poisoned, poison_idx = attack.poison_train(train, g)
        model = train_classifier(model, poisoned, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size,
                                 augment=t.augment, generator=g, device=device, progress=bar)
        if bar is not None:
            bar.close()
        meta = {"attack": cfg.attack.name, "num_classes": n_cls, "key": cfg.attack_key(),
                "poisoned_samples": len(poison_idx), "train_samples": len(train)}
        if use_cache:
            cdir.mkdir(parents=True, exist_ok=True)
            save_model(model, cdir / "model.safetensors")
            if attack.state_dict():
                save_state_dict(attack.state_dict(), cdir / "attack_state.safetensors")
            atomic_write(cdir / "attack.json", lambda p: p.write_text(json.dumps(meta, default=str)))
        meta["cached"] = False
    model.to(device).eval()
    eval_data = EvalData(clean=test, poisoned=attack.poison_test(test))
    meta["val_indices"] = val_idx.tolist()
    return BackdoorRun(model, val, eval_data, attack, n_cls, meta)


def load_npz(path: str | os.PathLike) -> TensorData:
    """A set of clouds as ``.npz``: ``points (B, N, 3)``, ``y (B,)`` and optionally ``y_target (B,)``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: not found")
    try:
        with np.load(p) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: cannot read .npz ({e})") from e
    for k in ("points", "y"):
        if k not in arrays:
            raise DataError(f"{p}: missing array '{k}' (expected points (B, N, 3) and y (B,))")
    x = arrays["points"]
    if x.ndim != 3 or x.shape[2] != 3:
        raise DataError(f"{p}: 'points' must be (B, N, 3), got {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{p}: 'points' contains NaN or infinity")
    ts = [torch.from_numpy(x.astype(np.float32)), torch.from_numpy(arrays["y"].astype(np.int64).reshape(-1))]
    if "y_target" in arrays:
        ts.append(torch.from_numpy(arrays["y_target"].astype(np.int64).reshape(-1)))
    try:
        return TensorData(*ts)
    except DataError as e:
        raise DataError(f"{p}: {e}") from e


def save_npz(path: Path, data: TensorData, keys=("points", "y", "y_target")) -> None:
    arrays = {k: t.numpy() for k, t in zip(keys, data.tensors)}
    atomic_write(path, lambda p: np.savez_compressed(open(p, "wb"), **arrays))


def load_user_inputs(cfg: PointCloudConfig, *, trust: bool = False, device=None) -> BackdoorRun:
    """A model nobody in this project wrote: ``model.spec`` + ``model.checkpoint`` and .npz clouds from
    ``data.val_path`` / ``test_path`` / ``poisoned_path``."""
    d = cfg.data
    device = resolve_device(cfg.device) if device is None else device
    missing = [k for k in ("val_path", "test_path") if getattr(d, k) is None]
    if missing:
        raise NFTInputError(f"purifying your own model needs data.{missing[0]} (.npz with points, y)")
    val, test = load_npz(d.val_path), load_npz(d.test_path)
    n_cls = d.num_classes or int(max(val.tensors[1].max(), test.tensors[1].max())) + 1
    absent = sorted(set(range(n_cls)) - set(val.tensors[1].tolist()))
    if absent:
        raise DataError(f"{d.val_path}: validation set has no sample of class {absent[0]} "
                        f"({len(absent)} of {n_cls} classes missing)")
    model = build_model(cfg, n_cls)
    load_checkpoint_into(model, cfg.model.checkpoint, trust=trust)
    with torch.no_grad():
        model.eval()
        try:
            out = model(val.tensors[0][:2])
        except RuntimeError as e:
            raise NFTInputError(f"model {cfg.model.spec} cannot take clouds {tuple(val.tensors[0].shape[1:])}: "
                                f"{str(e).splitlines()[0]}") from e
    if out.shape[-1] != n_cls:
        raise DataError(f"the model has {out.shape[-1]} outputs but the data has {n_cls} classes")
    poisoned = None
    if d.poisoned_path is not None:
        if not 0 <= cfg.attack.target < n_cls:
            raise NFTInputError(f"attack.target={cfg.attack.target} is out of range for {n_cls} classes")
        p = load_npz(d.poisoned_path)
        x, y = p.tensors[:2]
        if len(p.tensors) > 2:
            tgt = p.tensors[2]
        elif cfg.attack.mode == "all2all":
            tgt = (y + 1) % n_cls
        else:
            tgt = torch.full_like(y, cfg.attack.target)
        keep = y != tgt
        poisoned = TensorData(x[keep], y[keep], tgt[keep])
    model.to(device).eval()
    return BackdoorRun(model, val, EvalData(clean=test, poisoned=poisoned), None, n_cls,
                       {"attack": "user", "num_classes": n_cls, "cached": False})
