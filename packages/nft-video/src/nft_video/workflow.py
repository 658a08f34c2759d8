"""From a :class:`~nft_video.config.VideoConfig` to models and data: loading (cached decoding),
backdooring (cached models), and a user's own model and clips for purification."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nft_core import EvalData, TensorData
from nft_core.augment import build_from_table
from nft_core.checkpoint import atomic_write, load_checkpoint_into, save_model, save_state_dict
from nft_core.data import stratified_split
from nft_core.errors import DataError, NFTInputError
from nft_core.init import seeded_init_
from nft_core.task import cache_root as task_cache_root
from nft_core.task import resolve_device

from .attacks import ATTACKS
from .config import VideoConfig
from .data import hmdb51_split, load_clips, load_npz_clips, ucf101_split
from .models import create_model
from .synthetic import CLASSES, write_synthetic_ucf
from .train import train_classifier

__all__ = ["BackdoorRun", "backdoor", "load_dataset", "load_user_inputs", "build_augmentation", "resolve_device",
           "cache_root"]


def cache_root(cfg: VideoConfig) -> Path:
    return task_cache_root("video", cfg.cache_dir)


def synthetic_root(cfg: VideoConfig) -> Path:
    d = cfg.data
    if not 2 <= d.synthetic_classes <= len(CLASSES):
        raise NFTInputError(f"data.synthetic_classes must be in 2..{len(CLASSES)}, got {d.synthetic_classes}")
    if d.synthetic_clips < 15:
        raise NFTInputError(f"data.synthetic_clips must be >= 15 (10 test + 5 train per class), got {d.synthetic_clips}")
    tag = f"c{d.synthetic_classes}-n{d.synthetic_clips}-v1"
    return write_synthetic_ucf(cache_root(cfg) / f"synthetic-{tag}", clips_per_class=d.synthetic_clips,
                               classes=d.synthetic_classes, seed=0)


def load_dataset(cfg: VideoConfig, progress: bool = False) -> tuple[TensorData, TensorData, int, dict[str, Any]]:
    """``(train, test, num_classes, info)``; ``info`` lists the skipped videos per split."""
    d = cfg.data
    name = d.name.lower()
    if name == "synthetic":
        root, reader = synthetic_root(cfg), ucf101_split
    elif name in ("ucf101", "hmdb51"):
        if not d.root:
            raise NFTInputError(f"data.name={name} needs data.root (the video folder)")
        root = Path(d.root)
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder not found")
        reader = ucf101_split if name == "ucf101" else hmdb51_split
    else:
        raise NFTInputError(f"unknown data.name {d.name!r}; choose synthetic, ucf101, hmdb51")
    sets = {}
    for split_name, is_train in (("train", True), ("test", False)):
        items, classes = reader(root, d.split, is_train, d.split_dir)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc=f"decode {split_name}", unit="video")
        try:
            sets[split_name] = load_clips(items, classes, frame_step=d.frame_step, clip_len=d.clip_len,
                                          image_size=d.image_size, on_bad_clip=d.on_bad_clip,
                                          cache_dir=cache_root(cfg) / "clips", progress=bar)
        finally:
            if bar is not None:
                bar.close()
    n_cls = len(sets["train"].classes)
    if d.num_classes is not None:
        if d.num_classes < n_cls:
            raise DataError(f"data.num_classes={d.num_classes} but the split files name {n_cls} classes")
        n_cls = d.num_classes
    info = {"classes": sets["train"].classes,
            "skipped": {k: [list(s) for s in v.skipped] for k, v in sets.items()},
            "skipped_count": {k: len(v.skipped) for k, v in sets.items()}}
    return sets["train"].data, sets["test"].data, n_cls, info


#: The embedded default's model settings (``configs/default.py``), which only the small CNN+LSTM takes.
SMALL_MODEL_KWARGS = {"width": 16, "hidden": 64}


def model_kwargs(cfg: VideoConfig) -> dict:
    """``model.kwargs`` for the builder. ``--cfg-options model.kwargs={...}`` merges into the default's
    ``{'width': 16, 'hidden': 64}``, which only ``cnn_lstm_small`` takes: for another spec those two keys are
    dropped where they still hold the default's values, so ``model.spec=torchvision:r3d_18`` works without
    unsetting them by hand (any other value is passed on, and a model that does not take it says so)."""
    kw = dict(cfg.model.kwargs)
    if cfg.model.spec.strip() not in ("cnn_lstm_small", "small"):
        for key, value in SMALL_MODEL_KWARGS.items():
            if kw.get(key) == value:
                del kw[key]
    return kw


def build_model(cfg: VideoConfig, num_classes: int) -> nn.Module:
    return create_model(cfg.model.spec, num_classes, **model_kwargs(cfg))


def build_attack(cfg: VideoConfig, num_classes: int, name: str | None = None):
    a = cfg.attack
    name = (name or a.name).lower()
    if name not in ATTACKS:
        raise NFTInputError(f"unknown attack {name!r}; choose from {', '.join(sorted(ATTACKS))}")
    if not 0 <= a.target < num_classes:
        raise NFTInputError(f"attack.target={a.target} is out of range for {num_classes} classes")
    try:
        return ATTACKS[name](target=a.target, poison_rate=a.poison_rate, seed=cfg.seed, **a.options)
    except (TypeError, ValueError) as e:
        raise NFTInputError(f"attack {name}: {e}") from e


def build_augmentation(cfg: VideoConfig, recipe: str | None = None):
    """NFT's augmentation from ``cfg.augmentation``; ``auto`` follows the NFT recipe in effect (``recipe``, by
    default ``cfg.defense.recipe``): the surrogate trigger for ``surrogate``, video MixUp otherwise."""
    from nft_core import NoAugmentation, SurrogateTrigger
    from nft_core.surrogate import merge_surrogate_options

    from .augment import Compose, TemporalJitter, VideoCutMix, VideoMixUp
    from .config import SURROGATE_AUGMENTATION

    def surrogate(**options):  # this project's option (docs/method.md), on top of video MixUp
        return SurrogateTrigger(base=VideoMixUp(), **options)

    table = {"mixup": VideoMixUp, "cutmix": VideoCutMix, "surrogate": surrogate, "none": NoAugmentation}
    a = cfg.augmentation
    name, options = a.name, dict(a.options)
    if name == "auto":
        if (recipe or cfg.defense.recipe) == "surrogate":
            name, options = "surrogate", merge_surrogate_options(SURROGATE_AUGMENTATION, options)
        else:
            name = "mixup"
    aug = build_from_table(table, name, options)
    return Compose(TemporalJitter(a.jitter), aug) if a.jitter else aug


@dataclass
class BackdoorRun:
    model: nn.Module
    val: TensorData
    eval_data: EvalData
    attack: Any
    num_classes: int
    meta: dict[str, Any]


def _split(cfg: VideoConfig, train: TensorData) -> tuple[TensorData, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed)
    labels = train.tensors[1]
    if cfg.data.val_per_class is not None:
        vi, _ = stratified_split(labels, per_class=cfg.data.val_per_class, generator=g)
    else:
        vi, _ = stratified_split(labels, ratio=cfg.data.val_ratio or 0.05, generator=g)
    return train.subset(vi), vi


def backdoor(cfg: VideoConfig, *, attack_name: str | None = None, device=None, use_cache: bool = True,
             progress: bool = False) -> BackdoorRun:
    """Train (or load from the cache) the backdoored model of ``cfg``; build the defender's clean
    validation set (a stratified sample of the clean training clips, as in the paper) and the evaluation
    sets (clean test, triggered non-target test clips)."""
    device = resolve_device(cfg.device) if device is None else device
    if attack_name is not None:
        cfg = replace(cfg, attack=replace(cfg.attack, name=attack_name))
    train, test, n_cls, info = load_dataset(cfg, progress=progress)
    attack = build_attack(cfg, n_cls)
    val, val_idx = _split(cfg, train)
    key = hashlib.sha256(json.dumps(cfg.attack_key(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    cdir = cache_root(cfg) / "models" / f"{cfg.attack.name}-{key}"
    model = build_model(cfg, n_cls)
    t = cfg.train
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
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.epochs * -(-len(train) // t.batch_size), desc=f"attack {cfg.attack.name}", unit="step")

        def surrogate():
            clean = seeded_init_(build_model(cfg, n_cls), torch.Generator().manual_seed(cfg.seed + 1))
            return train_classifier(clean, train, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size,
                                    jitter=t.jitter, generator=g, device=device)

        poisoned, poison_idx = attack.poison_train(train, g, model_fn=surrogate)
        model = train_classifier(model, poisoned, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size,
                                 jitter=t.jitter, generator=g, device=device, progress=bar)
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
    meta.update(val_indices=val_idx.tolist(), data=info)
    return BackdoorRun(model, val, eval_data, attack, n_cls, meta)


def load_user_inputs(cfg: VideoConfig, *, trust: bool = False, device=None) -> BackdoorRun:
    """A model nobody in this project wrote: ``model.spec`` + ``model.checkpoint``; validation, clean
    test and poisoned test clips from ``.npz`` files (``data.val_path``/``test_path``/``poisoned_path``)."""
    d = cfg.data
    device = resolve_device(cfg.device) if device is None else device
    for k in ("val_path", "test_path"):
        if getattr(d, k) is None:
            raise NFTInputError(f"purifying your own model needs data.{k} (an .npz of clips)")
    val, test = load_npz_clips(d.val_path), load_npz_clips(d.test_path)
    n_cls = d.num_classes or int(max(val.tensors[1].max(), test.tensors[1].max())) + 1
    absent = sorted(set(range(n_cls)) - set(val.tensors[1].tolist()))
    if absent:
        raise DataError(f"{d.val_path}: validation set has no clip of class {absent[0]} "
                        f"({len(absent)} of {n_cls} classes missing)")
    model = build_model(cfg, n_cls)
    load_checkpoint_into(model, cfg.model.checkpoint, trust=trust)
    with torch.no_grad():
        try:
            out = model.eval()(val.tensors[0][:2])
        except (RuntimeError, ValueError) as e:
            raise NFTInputError(f"model.spec={cfg.model.spec} cannot take clips {tuple(val.tensors[0].shape[1:])}: "
                                f"{str(e).splitlines()[0]}") from e
    if out.shape[-1] != n_cls:
        raise DataError(f"the model has {out.shape[-1]} outputs but the data has {n_cls} classes")
    poisoned = None
    if d.poisoned_path is not None:
        if not 0 <= cfg.attack.target < n_cls:
            raise NFTInputError(f"attack.target={cfg.attack.target} is out of range for {n_cls} classes")
        p = load_npz_clips(d.poisoned_path)
        x, y = p.tensors[:2]
        tgt = p.tensors[2] if len(p.tensors) > 2 else torch.full_like(y, cfg.attack.target)
        keep = y != tgt
        poisoned = TensorData(x[keep], y[keep], tgt[keep])
    model.to(device).eval()
    return BackdoorRun(model, val, EvalData(clean=test, poisoned=poisoned), None, n_cls,
                       {"attack": "user", "num_classes": n_cls, "cached": False})
