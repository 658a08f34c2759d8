"""The typed configuration of ``nft-video`` (config files are validated into these dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nft_core.nft import recipe_options


@dataclass
class DataConfig:
    """``name``: synthetic (embedded default) | ucf101 | hmdb51. ``root``: the video folder;
    ``split_dir``: the split files (UCF default ``<root>/ucfTrainTestlist``; HMDB default
    ``<root>/testTrainMulti_7030_splits`` or ``<root>``); ``split``: 1, 2 or 3.
    Decoding: one frame in ``frame_step``, the centre ``clip_len`` frames, resized to ``image_size``².
    ``on_bad_clip``: ``skip`` (count and report corrupt/empty/missing/short videos) or ``error``.
    Validation: ``val_ratio`` of each class of the clean training clips (the paper: 5%) or
    ``val_per_class`` clips per class. Your own model: ``val_path``/``test_path``/``poisoned_path`` are
    ``.npz`` files with ``x`` uint8 ``(N, T, H, W, C)``, ``y`` (and optionally ``y_target``).
    ``synthetic_clips``: clips per class of the generated default (``synthetic_classes`` ≤ 6)."""

    name: str = "synthetic"
    root: str | None = None
    split_dir: str | None = None
    split: int = 1
    frame_step: int = 5
    clip_len: int = 8
    image_size: int = 32
    on_bad_clip: str = "skip"
    val_ratio: float | None = 0.1
    val_per_class: int | None = None
    val_path: str | None = None
    test_path: str | None = None
    poisoned_path: str | None = None
    num_classes: int | None = None
    synthetic_clips: int = 40
    synthetic_classes: int = 6


@dataclass
class ModelConfig:
    """``spec``: cnn_lstm_small | cnn_lstm (ResNet-50 + LSTM) | torchvision:r3d_18 | torchvision:r2plus1d_18
    | torchvision:mc3_18 | pytorchvideo:x3d | pytorchvideo:slow_r50 | pytorchvideo:csn_r101 |
    pytorchvideo:r2plus1d_r50 (optional pytorchvideo package) | package.module:callable. ``kwargs`` go to
    the builder (e.g. ``width``, ``hidden``, ``encoder_weights`` = a local torchvision resnet50 state dict;
    the default's ``width``/``hidden`` reach only cnn_lstm_small, ``workflow.model_kwargs``).
    ``checkpoint``: the weights to purify."""

    spec: str = "cnn_lstm_small"
    checkpoint: str | None = None
    kwargs: dict = field(default_factory=lambda: {"width": 16, "hidden": 64})


@dataclass
class AttackConfig:
    """``name``: patch | blend | clean_label; ``options`` go to its constructor (e.g.
    ``pgd_steps`` for clean_label; the paper used 2000)."""

    name: str = "patch"
    target: int = 0
    poison_rate: float = 0.1
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Training of the backdoored model (``attack`` verb and the embedded default); ``jitter``: temporal
    jitter (frames) during training."""

    epochs: int = 20
    lr: float = 0.05
    batch_size: int = 16
    jitter: int = 0


#: This project's video recipe (docs/method.md, measurements in docs/results/video.md):
#: the paper's NFT with every masked layer's bias tuned (``tune_bias=True``: BatchNorm's beta and the LSTM/classifier
#: biases; with only the output bias even the attack's real trigger cost 8.3 ACC points on the generated
#: clips, with all of them 5.0), mask averaging over the last 30% of the steps, and 120 epochs.
VIDEO_RECIPES = {"surrogate": {"tune_bias": True, "average": 0.3, "epochs": 120}}

#: What ``augmentation.name="auto"`` means under ``defense.recipe="surrogate"``: Neural Cleanse's per-class
#: patch search (200 steps per class; the untargeted search never found the clips' target class), up to three
#: disjoint patches toward the winning class (each barred from the earlier patches' pixels), and unmixed clean copies of half the batch, on top of video MixUp.
SURROGATE_AUGMENTATION = {"search": "per_class", "steps": 200, "disjoint": "alone", "disjoint_count": 3,
                          "clean_fraction": 0.5}


@dataclass
class DefenseConfig:
    """``name``: nft or a baseline from nft_core; ``options`` go to it. ``recipe`` (NFT only): ``surrogate``
    (the default: ``VIDEO_RECIPES``, with the surrogate trigger under
    ``augmentation.name=auto``), ``nft+`` (``NFT_PLUS``: shrink + guard, with mixup) or ``paper`` (the
    paper's NFT, with mixup)."""

    name: str = "nft"
    recipe: str = "surrogate"
    options: dict = field(default_factory=dict)

    def resolved_options(self) -> dict:
        return recipe_options(self.name, self.recipe, self.options, task_recipes=VIDEO_RECIPES)


@dataclass
class AugmentationConfig:
    """NFT's augmentation: auto (the default: the surrogate trigger with ``SURROGATE_AUGMENTATION`` under
    ``defense.recipe=surrogate``, ``options`` merged over it; mixup under ``nft+`` and ``paper``) | mixup (one
    λ for every frame) | cutmix | surrogate (a searched static trigger on top of mixup; this project's
    option, docs/method.md) | none; ``jitter`` > 0 adds temporal jitter before it; ``options`` go to
    the chosen augmentation (e.g. ``alpha``, ``per_clip``)."""

    name: str = "auto"
    jitter: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class BenchConfig:
    attacks: list[str] = field(default_factory=lambda: ["patch", "blend"])
    defenses: list[str] = field(default_factory=lambda: ["nft"])
    defense_options: dict = field(default_factory=dict)


@dataclass
class VideoConfig:
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
        data = {k: v for k, v in asdict(self.data).items() if not k.startswith("val_") and not k.endswith("_path")}
        return {"data": data, "model": asdict(self.model), "attack": asdict(self.attack),
                "train": asdict(self.train), "seed": self.seed}
