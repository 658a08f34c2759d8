"""The typed configuration of ``nft-detect`` (config files are validated into these dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nft_core.nft import recipe_options

__all__ = ["DetectConfig", "DataConfig", "ModelConfig", "AttackConfig", "TrainConfig", "DefenseConfig",
           "AugmentationConfig", "BenchConfig", "FAMILIES", "detector_config"]

#: ``model.family`` values.
FAMILIES = ("multilabel", "detector")


@dataclass
class DataConfig:
    """``name``: scenes (embedded, generated into the cache in the VOC layout) | voc | coco.

    VOC: ``root`` is a ``VOCdevkit`` folder; ``train_sets``/``test_sets`` are ``[year, split]`` pairs
    (07+12: ``[["VOC2007", "trainval"], ["VOC2012", "trainval"]]``). COCO: ``train_ann``/``train_images``
    and ``test_ann``/``test_images`` (paths relative to ``root`` unless absolute). The defender's clean
    validation set is ``val_sets`` when given, else ``val_ratio`` of the training images (clean labels).
    ``max_images`` caps every set (0 = all) for quick runs. Images are resized to ``image_size``."""

    name: str = "scenes"
    root: str | None = None
    image_size: int = 64
    train_sets: list = field(default_factory=lambda: [["VOC2007", "train"]])
    val_sets: list | None = field(default_factory=lambda: [["VOC2007", "val"]])
    test_sets: list = field(default_factory=lambda: [["VOC2007", "test"]])
    train_ann: str | None = None
    train_images: str | None = None
    test_ann: str | None = None
    test_images: str | None = None
    val_ratio: float = 0.05
    max_images: int = 0
    classes: list[str] | None = None
    scenes: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    """``family``: ``multilabel`` (a classifier with one logit per category) | ``detector`` (a torchvision
    object detector, :func:`~nft_detection.models.create_detector`).

    ``spec`` — multi-label: smallcnn | torchvision:NAME | timm:NAME | pkg.mod:callable; detector: one of
    :data:`~nft_detection.models.DETECTORS` (tiny_fcos, tiny_retinanet, tiny_fasterrcnn_fpn, tiny_fasterrcnn,
    fasterrcnn, retinanet, fcos, ssdlite). ``kwargs`` go to the builder; ``checkpoint``: weights to purify
    instead of training a backdoored model."""

    spec: str = "smallcnn"
    kwargs: dict = field(default_factory=lambda: {"width": 16})
    checkpoint: str | None = None
    family: str = "multilabel"


@dataclass
class AttackConfig:
    """Clean-image backdoor (Chen et al., ICLR 2023): ``trigger`` category names (all present), ``target``
    category name, ``mode`` appear | disappear, ``poison_rate`` of the trigger images poisoned."""

    name: str = "clean_image"
    trigger: list[str] = field(default_factory=lambda: ["red_disc", "blue_square"])
    target: str = "green_triangle"
    mode: str = "appear"
    poison_rate: float = 1.0


@dataclass
class TrainConfig:
    """Training of the backdoored model. ``loss`` (multi-label family): ``bce`` | ``asl`` — the asymmetric
    loss of Ridnik et al. (ICCV 2021), ``loss_options`` gamma_pos / gamma_neg / clip
    (:func:`~nft_detection.adapters.asymmetric_loss`). The defenses' loss is ``defense.loss``."""

    epochs: int = 30
    lr: float = 2e-3
    batch_size: int = 64
    augment: bool = True
    loss: str = "bce"
    loss_options: dict = field(default_factory=dict)


@dataclass
class DefenseConfig:
    """``name``: nft | a baseline from nft_core (ft fp anp awm ftsam rnp ibau nad mcr); ``options`` go to it.
    ``recipe`` (NFT only): ``nft+`` adds NFT_PLUS (shrink + guard), ``paper`` does not. ``nft_epochs``: NFT's
    epochs unless ``options`` sets ``epochs`` (60 on the embedded default; the paper's 100 in the VOC/COCO
    configs) — kept apart from ``options`` so ``--defense anp`` does not receive an NFT-only key.
    ``loss`` / ``loss_options`` (multi-label family): the loss the defense optimises on the clean
    validation data — ``bce`` (default) or ``asl``, independent of ``train.loss``: on an ASL-trained
    embedded default, NFT+ with BCE removed the backdoor and with ASL it did not (docs/results/detection.md)."""

    name: str = "nft"
    recipe: str = "nft+"
    nft_epochs: int = 60
    options: dict = field(default_factory=dict)
    loss: str = "bce"
    loss_options: dict = field(default_factory=dict)

    def resolved_options(self) -> dict:
        return recipe_options(self.name, self.recipe, self.options, task_base={"epochs": self.nft_epochs})


@dataclass
class AugmentationConfig:
    """NFT's augmentation: mixup (multi-label MixUp; detection MixUp for ``model.family=detector``) | none."""

    name: str = "mixup"
    options: dict = field(default_factory=dict)


@dataclass
class BenchConfig:
    """``bench`` grid: attack modes × defenses on the same data, model seed and device."""

    attacks: list[str] = field(default_factory=lambda: ["appear", "disappear"])
    defenses: list[str] = field(default_factory=lambda: ["nft"])
    defense_options: dict = field(default_factory=dict)


@dataclass
class DetectConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    seed: int = 0
    device: str | None = None
    cache_dir: str | None = None
    threads: int = 0

    def attack_key(self) -> dict[str, Any]:
        """What determines a trained backdoored model (the cache key)."""
        d = asdict(self.data)
        d.pop("val_ratio"), d.pop("val_sets")
        train = asdict(self.train)
        if train["loss"] == "bce" and not train["loss_options"]:  # the default: the cache keys from before
            train.pop("loss"), train.pop("loss_options")
        key = {"data": d, "model": asdict(self.model), "attack": asdict(self.attack), "train": train,
               "seed": self.seed}
        from .mmdet_backend import is_mmdet_spec, mmdet_config_path

        if is_mmdet_spec(self.model.spec):  # an edited mmdet config is another model
            import hashlib

            key["mmdet_config_sha256"] = hashlib.sha256(mmdet_config_path(self.model.spec).read_bytes()).hexdigest()
        return key


def detector_config() -> DetectConfig:
    """The embedded default of ``nft-detect --family detector`` (also ``--cfg scenes_detector``): the same
    generated scenes at 64 px, :data:`~nft_detection.models.DEFAULT_DETECTOR` on the CPU-sized
    :class:`~nft_detection.models.TinyFPNBackbone`, box-level clean-image poisoning, NFT+ with detection
    MixUp. Sized for two CPU cores (measured numbers: docs/results/detection.md). ``threads=1``: a tiny detector runs
    hundreds of small ops per image; on a shared two-core CPU two OpenMP threads per op were measured ~37×
    slower than one (10 ms per training image with one thread)."""
    from .models import DEFAULT_DETECTOR

    return DetectConfig(model=ModelConfig(spec=DEFAULT_DETECTOR, kwargs={}, family="detector"),
                        attack=AttackConfig(mode="disappear"),
                        train=TrainConfig(**DETECTOR_TRAIN), threads=1)


#: Training of the embedded detector default (AdamW, one-cycle LR, horizontal flips).
DETECTOR_TRAIN = {"epochs": 30, "lr": 5e-3, "batch_size": 16, "augment": True}
