"""The typed configuration of ``nft-vision`` (config files are validated into these dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nft_core.nft import recipe_options


@dataclass
class DataConfig:
    """``name``: digits (embedded) | cifar10 | cifar100 | gtsrb | imagefolder | npz.
    ``root``: dataset folder (cifar/gtsrb: the extracted folder; imagefolder: a folder with train/ and
    test/; npz: a folder with train.npz and test.npz). Validation: ``val_ratio`` of each class of the
    clean training data, or ``val_per_class`` samples per class (1 = one-shot).
    To purify your own model supply ``val_path`` (ImageFolder or .npz), ``test_path`` (clean test) and
    ``poisoned_path`` (triggered test images with their *true* labels); then no training set is read."""

    name: str = "digits"
    root: str | None = None
    image_size: int = 32
    val_ratio: float | None = 0.1
    val_per_class: int | None = None
    val_path: str | None = None
    test_path: str | None = None
    poisoned_path: str | None = None
    num_classes: int | None = None


@dataclass
class ModelConfig:
    """``spec``: preactresnet18 | vgg16 | smallcnn | torchvision:NAME | timm:NAME | package.module:callable.
    ``mean``/``std``: input normalization, part of the model. ``checkpoint``: weights to purify
    (.safetensors or a state-dict .pt); ``kwargs``: extra arguments for the builder."""

    spec: str = "smallcnn"
    width: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    checkpoint: str | None = None
    kwargs: dict = field(default_factory=dict)


@dataclass
class AttackConfig:
    """An attack from ``nft_vision.ATTACKS``; ``options`` go to its constructor."""

    name: str = "badnets"
    target: int = 0
    poison_rate: float = 0.1
    mode: str = "all2one"
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Training of the backdoored model (``attack`` verb and the embedded default)."""

    epochs: int = 10
    lr: float = 0.05
    batch_size: int = 64
    augment: bool = False


@dataclass
class DefenseConfig:
    """``name``: nft | ft | fp | anp | awm | ftsam | rnp | ibau | nad | mcr; ``options`` go to it.
    ``recipe`` (NFT only): ``nft+`` adds ``NFT_PLUS`` (shrink + guard) under ``options``; ``paper`` does not."""

    name: str = "nft"
    recipe: str = "nft+"
    options: dict = field(default_factory=dict)

    def resolved_options(self) -> dict:
        return recipe_options(self.name, self.recipe, self.options)


@dataclass
class AugmentationConfig:
    """NFT's augmentation: mixup | cutmix | cutout | none."""

    name: str = "mixup"
    options: dict = field(default_factory=dict)


@dataclass
class BenchConfig:
    """``bench`` grid: attacks × defenses (each cell: the same model, validation data, seed, device).
    ``nft`` is NFT with ``defense.recipe``/``defense.options``; ``nft-paper`` is the paper's recipe."""

    attacks: list[str] = field(default_factory=lambda: ["badnets", "blend", "trojan", "sig", "wanet", "dynamic"])
    defenses: list[str] = field(default_factory=lambda: ["nft"])
    defense_options: dict = field(default_factory=dict)


@dataclass
class VisionConfig:
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
        from dataclasses import asdict

        data = {k: v for k, v in asdict(self.data).items() if not k.startswith("val_") and not k.endswith("_path")}
        return {"data": data, "model": asdict(self.model), "attack": asdict(self.attack),
                "train": asdict(self.train), "seed": self.seed}
