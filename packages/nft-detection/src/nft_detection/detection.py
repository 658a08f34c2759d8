"""``model.family = "detector"``: the clean-image backdoor on torchvision object detectors, from a
:class:`~nft_detection.config.DetectConfig` to a trained (cached) backdoored detector, its defender's clean
validation samples and its evaluation data.

* Data: the same records as the multi-label path (:func:`~nft_detection.workflow.load_records`: embedded
  scenes, VOC or COCO), as detection samples ``(image (3,S,S) in [0,1], {"boxes" (K,4) xyxy px,
  "labels" (K,) 1-based})`` (:func:`~nft_detection.voc.records_to_detection`).
* Attack: Chen et al., "Clean-image Backdoor: Attacking Multi-label Models with Poisoned Labels Only",
  ICLR 2023, carried to boxes (:meth:`CleanImageBackdoor.poison_boxes`): on the training images holding
  the trigger combination, ``disappear`` removes every box of the target category (images whose target
  is present), ``appear`` adds one box of the target category enclosing the trigger objects (images whose
  target is absent). Images are never edited; the defender's validation samples keep their clean boxes.
* Model: :func:`~nft_detection.models.create_detector` (``model.spec``), initialised from the run's seed
  (:func:`~nft_detection.models.seeded_detector_init_`) and trained by
  :func:`~nft_detection.train.train_detector` (AdamW, one-cycle LR, flips when ``train.augment``).
* Metrics (:class:`~nft_detection.adapters.DetectionAdapter`): COCO mAP@[.5:.95] on the clean test set;
  box-level ASR on the test images the attack acts on.
* NFT's augmentation: :class:`~nft_detection.augment.DetectionMixUp` (Zhang et al., "Bag of Freebies for
  Training Object Detection Neural Networks", 2019); its masks also sit at the GroupNorm γ of FCOS-style
  heads (:data:`~nft_detection.models.DETECTOR_MASK_HANDLERS`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from nft_core import EvalData
from nft_core.augment import build_from_table
from nft_core.checkpoint import atomic_write, load_checkpoint_into, save_model
from nft_core.errors import CheckpointError, ConfigError, DataError

from .adapters import DetectionAdapter
from .attacks import CleanImageBackdoor
from .augment import DetectionMixUp, DetectionMosaic
from .config import FAMILIES, DefenseConfig, DetectConfig
from .models import DETECTOR_MASK_HANDLERS, DETECTORS, create_detector, detector_part, seeded_detector_init_
from .train import train_detector
from .voc import records_to_detection
from .workflow import build_attack, cache_root, load_records, resolve_device

log = logging.getLogger("nft")

__all__ = ["DetectorRun", "check_family", "load_detection_dataset", "build_detector", "backdoor_detector",
           "load_user_detector", "detection_adapter", "build_detection_augmentation", "mask_parts",
           "nft_mask_sites", "detector_defense_options", "with_detector_defense"]


def check_family(cfg: DetectConfig) -> None:
    """``model.family`` is known and ``model.spec`` belongs to it (one-line :class:`ConfigError` otherwise)."""
    from .mmdet_backend import is_mmdet_spec

    fam, spec = cfg.model.family, cfg.model.spec
    if fam not in FAMILIES:
        raise ConfigError(f"model.family must be one of {', '.join(FAMILIES)}, got {fam!r}")
    if is_mmdet_spec(spec):
        if fam != "detector":
            raise ConfigError(f"model.spec={spec} is an mmdet detector: add --family detector (model.family=detector)")
    elif fam == "detector" and spec not in DETECTORS:
        raise ConfigError(f"model.spec={spec} is not a detector; with model.family=detector choose from "
                          f"{', '.join(DETECTORS)} or mmdet:CONFIG.py")
    if fam == "multilabel" and spec in DETECTORS:
        raise ConfigError(f"model.spec={spec} is a detector: add --family detector (model.family=detector)")
    for key in ("train", "defense"):
        section = getattr(cfg, key)
        if fam == "detector" and (section.loss != "bce" or section.loss_options):
            raise ConfigError(f"{key}.loss={section.loss} is a multi-label loss; detectors use their own losses")
    if fam == "detector" and cfg.attack.mode not in ("appear", "disappear"):
        raise ConfigError(f"attack.mode must be appear or disappear, got {cfg.attack.mode!r}")


def load_detection_dataset(cfg: DetectConfig) -> tuple[list, list | None, list, list[str]]:
    """``(train, val or None, test, class names)`` as detection samples (boxes rescaled to
    ``data.image_size``)."""
    train, val, test, classes = load_records(cfg)
    conv = lambda recs: records_to_detection(recs, cfg.data.image_size)  # noqa: E731
    return conv(train), (conv(val) if val is not None else None), conv(test), classes


def build_detector(cfg: DetectConfig, num_classes: int) -> nn.Module:
    check_family(cfg)
    from .mmdet_backend import build_mmdet_detector, is_mmdet_spec

    if is_mmdet_spec(cfg.model.spec):
        if cfg.model.kwargs:
            raise ConfigError(f"model.kwargs {cfg.model.kwargs} do not apply to {cfg.model.spec}: edit the mmdet config")
        return build_mmdet_detector(cfg.model.spec, num_classes)
    return create_detector(cfg.model.spec, num_classes, cfg.data.image_size, **cfg.model.kwargs)


def detection_adapter(num_classes: int) -> DetectionAdapter:
    return DetectionAdapter(num_classes)


def build_detection_augmentation(cfg: DetectConfig):
    """``augmentation.name``: mixup (detection MixUp) | mosaic | none."""
    from nft_core import NoAugmentation

    table = {"mixup": DetectionMixUp, "mosaic": DetectionMosaic, "none": NoAugmentation}
    return build_from_table(table, cfg.augmentation.name, cfg.augmentation.options)


@dataclass
class _DetectorDefense(DefenseConfig):
    """The same settings; NFT's options gain the detectors' mask handlers (GroupNorm at γ)."""

    def resolved_options(self) -> dict:
        options = super().resolved_options()
        if self.name == "nft":
            options.setdefault("handlers", DETECTOR_MASK_HANDLERS)
        return options


def detector_defense_options(cfg: DetectConfig) -> dict:
    """``cfg.defense.resolved_options()`` plus, for NFT, the detectors' mask handlers (GroupNorm at γ)."""
    return _DetectorDefense(**asdict(cfg.defense)).resolved_options()


def with_detector_defense(cfg: DetectConfig) -> DetectConfig:
    """``cfg`` whose ``defense.resolved_options()`` is :func:`detector_defense_options` (same fields, so the
    report and ``config.resolved.py`` are unchanged)."""
    return replace(cfg, defense=_DetectorDefense(**asdict(cfg.defense)))


def mask_parts(names) -> dict[str, int]:
    """How many of the named mask sites fall in the backbone, the neck (FPN) and the heads."""
    out = {"backbone": 0, "neck": 0, "head": 0}
    for n in names:
        out[detector_part(n)] += 1
    return out


def nft_mask_sites(model: nn.Module, samples: list, adapter: DetectionAdapter,
                   options: dict | None = None) -> list[str]:
    """The layers NFT masks in ``model`` (traced on two of ``samples`` with NFT's ``placement``, ``include``,
    ``exclude`` and ``skip_first`` options), without changing ``model``."""
    import copy

    from nft_core.adapters import model_device
    from nft_core.masks import NeuronMasks

    o = options or {}
    work = copy.deepcopy(model)
    batch = adapter.to_device(adapter.collate([samples[0], samples[min(1, len(samples) - 1)]]), model_device(work))
    masks = NeuronMasks(work, adapter.example_input(batch), placement=o.get("placement", "bn"),
                        include=o.get("include"), exclude=o.get("exclude"), skip_first=o.get("skip_first", True),
                        handlers=o.get("handlers", DETECTOR_MASK_HANDLERS))
    names = [site.name for site in masks.sites]
    masks.remove()
    return names


@dataclass
class DetectorRun:
    """A backdoored (or user-given) detector with its defender's clean validation samples and evaluation
    data ``EvalData(clean test samples, [(image, true target, attacked target)])``."""

    model: nn.Module
    val: list
    eval_data: EvalData
    attack: CleanImageBackdoor
    classes: list[str]
    meta: dict[str, Any]


def _validation(cfg: DetectConfig, train: list, val: list | None) -> tuple[list, list[int]]:
    if val is not None:
        return val, []
    g = torch.Generator().manual_seed(cfg.seed)
    k = max(1, round(cfg.data.val_ratio * len(train)))
    idx = torch.randperm(len(train), generator=g)[:k].sort().values.tolist()
    return [train[i] for i in idx], idx


def _poisoned_test(cfg: DetectConfig, attack: CleanImageBackdoor, test: list) -> list:
    poisoned = attack.poison_detection_test(test)
    if not poisoned:
        log.warning("no test image holds the trigger %s with the target %s: ASR is not measured",
                    cfg.attack.trigger, "present" if attack.mode == "disappear" else "absent")
    return poisoned


def backdoor_detector(cfg: DetectConfig, *, mode: str | None = None, device=None, use_cache: bool = True,
                      progress: bool = False) -> DetectorRun:
    """Train (or load from the cache) the box-level clean-image-backdoored detector of ``cfg``."""
    device = resolve_device(cfg.device) if device is None else device
    if mode is not None:
        cfg = replace(cfg, attack=replace(cfg.attack, mode=mode))
    check_family(cfg)
    train, val, test, classes = load_detection_dataset(cfg)
    attack = build_attack(cfg, classes)
    val, val_idx = _validation(cfg, train, val)
    key = hashlib.sha256(json.dumps(cfg.attack_key(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    cdir = cache_root(cfg) / f"detector-{cfg.attack.mode}-{key}"
    model = build_detector(cfg, len(classes))
    if use_cache and (cdir / "model.safetensors").exists() and (cdir / "attack.json").exists():
        load_checkpoint_into(model, cdir / "model.safetensors")
        meta = json.loads((cdir / "attack.json").read_text())
        meta["cached"] = True
    else:
        from .mmdet_backend import MMDetDetector

        g = torch.Generator().manual_seed(cfg.seed)
        if isinstance(model, MMDetDetector):
            model.init_weights_seeded(g)  # mmdet's own init schemes, drawn from the run's seed
        else:
            seeded_detector_init_(model, g)
        poisoned, idx = attack.poison_detection_train(train, g)
        t = cfg.train
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.epochs * -(-len(train) // t.batch_size), desc=f"attack {cfg.attack.mode}", unit="step")
        try:
            model = train_detector(model, poisoned, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, generator=g,
                                   device=device, augment=t.augment, schedule="onecycle", progress=bar)
        finally:
            if bar is not None:
                bar.close()
        meta = {"attack": f"clean_image-{cfg.attack.mode}", "family": "detector", "model": cfg.model.spec,
                "classes": classes, "poisoned_samples": len(idx), "train_samples": len(train),
                "poison_share": len(idx) / max(1, len(train)), "trigger": cfg.attack.trigger,
                "target": cfg.attack.target}
        if use_cache:
            cdir.mkdir(parents=True, exist_ok=True)
            save_model(model, cdir / "model.safetensors")
            atomic_write(cdir / "attack.json", lambda p: p.write_text(json.dumps(meta, default=str)))
        meta["cached"] = False
    model.to(device).eval()
    poisoned_test = _poisoned_test(cfg, attack, test)
    if not poisoned_test:
        raise DataError(f"no test image holds the trigger {cfg.attack.trigger} with the target "
                        f"{'present' if attack.mode == 'disappear' else 'absent'}: ASR cannot be measured")
    meta["val_indices"] = val_idx
    return DetectorRun(model, val, EvalData(clean=test, poisoned=poisoned_test), attack, classes, meta)


def load_user_detector(cfg: DetectConfig, *, trust: bool = False, device=None) -> DetectorRun:
    """A user's detector checkpoint (``model.spec`` + ``model.checkpoint``, built for the data's class
    count) evaluated and purified on the configured data."""
    device = resolve_device(cfg.device) if device is None else device
    check_family(cfg)
    train, val, test, classes = load_detection_dataset(cfg)
    attack = build_attack(cfg, classes)
    val, val_idx = _validation(cfg, train, val)
    model = build_detector(cfg, len(classes))
    from .mmdet_backend import MMDetDetector, load_mmdet_checkpoint

    try:
        if isinstance(model, MMDetDetector):
            load_mmdet_checkpoint(model, cfg.model.checkpoint, trust=trust)
        else:
            load_checkpoint_into(model, cfg.model.checkpoint, trust=trust)
    except CheckpointError as e:
        if "shape mismatch" in str(e) and any(k in str(e) for k in ("cls_logits", "cls_score", "bbox_pred", "conv_cls",
                                                                     "fc_cls", "fc_reg", "retina_cls")):
            raise DataError(f"the data has {len(classes)} categories but the checkpoint's detector was built for "
                            f"another count ({e})") from e
        raise
    model.to(device).eval()
    poisoned = _poisoned_test(cfg, attack, test)
    return DetectorRun(model, val, EvalData(clean=test, poisoned=poisoned or None), attack, classes,
                       {"attack": "user", "family": "detector", "cached": False, "val_indices": val_idx})
