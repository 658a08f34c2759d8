"""From a :class:`~nft_detection.config.DetectConfig` to data and models: the embedded scenes or VOC/COCO
from disk, the clean-image backdoor (trained model cached), and a user's own checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nft_core import EvalData, TensorData
from nft_core.augment import build_from_table
from nft_core.checkpoint import atomic_write, load_checkpoint_into, save_model
from nft_core.errors import ConfigError, DataError, NFTInputError
from nft_core.init import seeded_init_
from nft_core.task import cache_root as task_cache_root
from nft_core.task import resolve_device

from .adapters import MultiLabelAdapter
from .attacks import CleanImageBackdoor
from .augment import MultiLabelMixUp, MultiLabelMosaic
from .coco import load_coco
from .config import DetectConfig
from .models import create_multilabel_model
from .scenes import SCENE_CLASSES, generate_scenes
from .train import train_multilabel
from .voc import VOC_CLASSES, Record, load_voc, records_to_multilabel

log = logging.getLogger("nft")

__all__ = ["BackdoorRun", "load_records", "load_dataset", "backdoor", "build_attack", "build_augmentation",
           "resolve_device", "cache_root", "multilabel_adapter"]


def cache_root(cfg: DetectConfig) -> Path:
    return task_cache_root("detection", cfg.cache_dir)


def _sets(value, key: str) -> list[tuple[str | None, str]]:
    try:
        return [(None if y in (None, "") else str(y), str(s)) for y, s in value]
    except (TypeError, ValueError) as e:
        raise NFTInputError(f"data.{key} must be a list of [year, split] pairs, got {value!r}") from e


def _cap(records: list[Record], n: int) -> list[Record]:
    return records[:n] if n else records


def _resolve(root: Path | None, p: str | None, key: str) -> Path:
    if p is None:
        raise NFTInputError(f"data.name=coco needs data.{key}")
    q = Path(p)
    return q if q.is_absolute() or root is None else root / q


def load_records(cfg: DetectConfig) -> tuple[list[Record], list[Record] | None, list[Record], list[str]]:
    """``(train, val or None, test, class names)`` as annotated :class:`~nft_detection.voc.Record` s (the
    embedded scenes are generated on first use), each set capped at ``data.max_images``."""
    d = cfg.data
    name = d.name.lower()
    if name == "scenes":
        root = Path(d.root) if d.root else cache_root(cfg) / "scenes-data"
        opts = {**dict(size=d.image_size, seed=cfg.seed), **d.scenes}
        try:
            generate_scenes(root, **opts)
        except TypeError as e:
            raise NFTInputError(f"data.scenes: {e}") from e
        classes = list(SCENE_CLASSES)
        root = root / "VOCdevkit"
    elif name == "voc":
        if not d.root:
            raise NFTInputError("data.name=voc needs data.root (a VOCdevkit folder)")
        root, classes = Path(d.root), list(d.classes or VOC_CLASSES)
    elif name == "coco":
        base = Path(d.root) if d.root else None
        tr, classes = load_coco(_resolve(base, d.train_ann, "train_ann"), _resolve(base, d.train_images, "train_images"))
        te, classes_te = load_coco(_resolve(base, d.test_ann, "test_ann"), _resolve(base, d.test_images, "test_images"))
        if classes_te != classes:
            raise DataError(f"{d.test_ann}: categories differ from {d.train_ann}")
        return _cap(tr, d.max_images), None, _cap(te, d.max_images), classes
    else:
        raise NFTInputError(f"unknown data.name {d.name!r}; choose scenes, voc or coco")
    load = lambda sets, key: _cap(load_voc(root, _sets(sets, key), classes), d.max_images)  # noqa: E731
    train = load(d.train_sets, "train_sets")
    val = load(d.val_sets, "val_sets") if d.val_sets else None
    test = load(d.test_sets, "test_sets")
    return train, val, test, classes


def load_dataset(cfg: DetectConfig) -> tuple[TensorData, TensorData | None, TensorData, list[str]]:
    """``(train, val or None, test, class names)`` as multi-label tensors."""
    train, val, test, classes = load_records(cfg)
    conv = lambda recs: records_to_multilabel(recs, len(classes), cfg.data.image_size)  # noqa: E731
    return conv(train), (conv(val) if val is not None else None), conv(test), classes


def build_attack(cfg: DetectConfig, classes: list[str], mode: str | None = None) -> CleanImageBackdoor:
    a = cfg.attack
    index = {c: i for i, c in enumerate(classes)}
    for c in [*a.trigger, a.target]:
        if c not in index:
            raise NFTInputError(f"attack category {c!r} is not a class of the data set ({', '.join(classes[:6])} …)")
    return CleanImageBackdoor([index[c] for c in a.trigger], index[a.target], mode or a.mode, a.poison_rate,
                              num_classes=len(classes))


def build_augmentation(cfg: DetectConfig):
    from nft_core import NoAugmentation

    table = {"mixup": MultiLabelMixUp, "mosaic": MultiLabelMosaic, "none": NoAugmentation}
    return build_from_table(table, cfg.augmentation.name, cfg.augmentation.options)


def multilabel_adapter(cfg: DetectConfig, num_classes: int, key: str = "defense") -> MultiLabelAdapter:
    """The multi-label adapter whose loss is ``defense.loss`` (what the defenses optimise; ``key="train"``:
    ``train.loss``, what trains the backdoored model) — bce | asl; a bad loss name or option is a
    one-line :class:`ConfigError`."""
    section = getattr(cfg, key)
    try:
        return MultiLabelAdapter(num_classes, loss=section.loss, loss_options=section.loss_options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}.loss={section.loss!r}: {e}") from e


def build_model(cfg: DetectConfig, num_classes: int) -> nn.Module:
    return create_multilabel_model(cfg.model.spec, num_classes, **cfg.model.kwargs)


@dataclass
class BackdoorRun:
    model: nn.Module
    val: TensorData
    eval_data: EvalData
    attack: CleanImageBackdoor
    classes: list[str]
    meta: dict[str, Any]


def _validation(cfg: DetectConfig, train: TensorData, val: TensorData | None) -> tuple[TensorData, list[int]]:
    if val is not None:
        return val, []
    g = torch.Generator().manual_seed(cfg.seed)
    k = max(1, round(cfg.data.val_ratio * len(train)))
    idx = torch.randperm(len(train), generator=g)[:k].sort().values
    return train.subset(idx), idx.tolist()


def backdoor(cfg: DetectConfig, *, mode: str | None = None, device=None, use_cache: bool = True,
             progress: bool = False) -> BackdoorRun:
    """Train (or load from the cache) the clean-image-backdoored multi-label model of ``cfg``; the
    defender's validation set holds clean labels; evaluation = clean test + the test images the attack
    acts on (:meth:`CleanImageBackdoor.poison_test`)."""
    from dataclasses import replace

    device = resolve_device(cfg.device) if device is None else device
    if mode is not None:
        cfg = replace(cfg, attack=replace(cfg.attack, mode=mode))
    train, val, test, classes = load_dataset(cfg)
    attack = build_attack(cfg, classes)
    val, val_idx = _validation(cfg, train, val)
    key = hashlib.sha256(json.dumps(cfg.attack_key(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    cdir = cache_root(cfg) / f"multilabel-{cfg.attack.mode}-{key}"
    model = build_model(cfg, len(classes))
    loss = multilabel_adapter(cfg, len(classes), key="train")  # validates train.loss before any training
    multilabel_adapter(cfg, len(classes))  # and defense.loss
    if use_cache and (cdir / "model.safetensors").exists() and (cdir / "attack.json").exists():
        load_checkpoint_into(model, cdir / "model.safetensors")
        meta = json.loads((cdir / "attack.json").read_text())
        meta["cached"] = True
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        seeded_init_(model, g)
        poisoned, idx = attack.poison_train(train, g)
        t = cfg.train
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.epochs * -(-len(train) // t.batch_size), desc=f"attack {cfg.attack.mode}", unit="step")
        model = train_multilabel(model, poisoned, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size,
                                 augment=t.augment, generator=g, device=device, progress=bar,
                                 loss_fn=loss.criterion if t.loss != "bce" else None)
        if bar is not None:
            bar.close()
        meta = {"attack": f"clean_image-{cfg.attack.mode}", "loss": t.loss, "classes": classes, "poisoned_samples": len(idx),
                "train_samples": len(train), "poison_share": len(idx) / max(1, len(train)),
                "trigger": cfg.attack.trigger, "target": cfg.attack.target}
        if use_cache:
            cdir.mkdir(parents=True, exist_ok=True)
            save_model(model, cdir / "model.safetensors")
            atomic_write(cdir / "attack.json", lambda p: p.write_text(json.dumps(meta, default=str)))
        meta["cached"] = False
    model.to(device).eval()
    poisoned_test = attack.poison_test(test)
    if len(poisoned_test) == 0:
        raise DataError(f"no test image holds the trigger {cfg.attack.trigger} with the target "
                        f"{'present' if attack.mode == 'disappear' else 'absent'}: ASR cannot be measured")
    meta["val_indices"] = val_idx
    return BackdoorRun(model, val, EvalData(clean=test, poisoned=poisoned_test), attack, classes, meta)


def load_user_inputs(cfg: DetectConfig, *, trust: bool = False, device=None) -> BackdoorRun:
    """A user's multi-label checkpoint (``model.spec`` + ``model.checkpoint``) evaluated and purified on
    the configured data: validation and test sets from ``cfg.data``, ASR for ``cfg.attack``."""
    device = resolve_device(cfg.device) if device is None else device
    train, val, test, classes = load_dataset(cfg)
    attack = build_attack(cfg, classes)
    val, val_idx = _validation(cfg, train, val)
    model = build_model(cfg, len(classes))
    load_checkpoint_into(model, cfg.model.checkpoint, trust=trust)
    with torch.no_grad():
        model.eval()
        try:
            out = model(val.tensors[0][:2])
        except RuntimeError as e:
            raise NFTInputError(f"model.spec={cfg.model.spec} cannot take the images: {str(e).splitlines()[0]}") from e
    if out.shape[-1] != len(classes):
        raise DataError(f"{cfg.model.checkpoint}: the model has {out.shape[-1]} outputs but the data has "
                        f"{len(classes)} categories")
    model.to(device).eval()
    poisoned = attack.poison_test(test)
    return BackdoorRun(model, val, EvalData(clean=test, poisoned=poisoned if len(poisoned) else None), attack,
                       classes, {"attack": "user", "cached": False, "val_indices": val_idx})
