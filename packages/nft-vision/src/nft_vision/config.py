"""The typed configuration of ``nft-vision`` (config files are validated into these dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nft_core.errors import ConfigError
from nft_core.nft import recipe_options


@dataclass
class DataConfig:
    """``name``: digits (embedded) | procedural (embedded, CIFAR-scale) | cifar10 | cifar100 | gtsrb |
    imagefolder | npz.
    ``root``: dataset folder (cifar/gtsrb: the extracted folder; imagefolder: a folder with train/ and
    test/; npz: a folder with train.npz and test.npz). Validation: ``val_ratio`` of each class of the
    clean training data, or ``val_per_class`` samples per class (1 = one-shot).
    ``options``: loader options; for ``procedural``: ``n_train`` (50000), ``n_test`` (10000), ``seed``
    (0) — images are ``image_size``×``image_size`` (see :mod:`nft_vision.procedural`).
    To purify your own model supply ``val_path`` (ImageFolder or .npz), ``test_path`` (clean test) and
    ``poisoned_path`` (triggered test images with their *true* labels); then no training set is read.
    ``backdoorbench_path``: a BackdoorBench ``attack_result.pt`` (Wu et al., NeurIPS 2022 D&B) that supplies
    the model weights, the class count and the poisoned test set (needs ``--trust-checkpoint``)."""

    name: str = "digits"
    root: str | None = None
    image_size: int = 32
    val_ratio: float | None = 0.1
    val_per_class: int | None = None
    val_path: str | None = None
    test_path: str | None = None
    poisoned_path: str | None = None
    num_classes: int | None = None
    options: dict = field(default_factory=dict)
    backdoorbench_path: str | None = None


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
    """An attack from ``nft_vision.ATTACKS``; ``options`` go to its constructor. ``poison_rate``: ``None`` (the
    default) is the attack's own: 10% of the training set for the poison-label attacks, 80% of the target
    class for the clean-label SIG and CLB (the NFT paper's settings; their rate is a share of the target class).
    A number overrides it for every attack, with that meaning."""

    name: str = "badnets"
    target: int = 0
    poison_rate: float | None = None
    mode: str = "all2one"
    options: dict = field(default_factory=dict)

    def resolved_poison_rate(self) -> float | None:
        """``poison_rate``, or the attack's own default when it is ``None`` (``None`` for an unknown attack)."""
        if self.poison_rate is not None:
            return self.poison_rate
        import inspect

        from .attacks import ATTACKS

        cls = ATTACKS.get(self.name.lower())
        return None if cls is None else inspect.signature(cls).parameters["poison_rate"].default


@dataclass
class TrainConfig:
    """Training of the backdoored model (``attack`` verb, ``bench`` and the embedded default). ``amp``: bf16
    autocast. ``epochs_scale``: per-attack multiplier of ``epochs`` — WaNet's warp is learned much more slowly
    than a patch (its paper trains for hundreds of epochs): on digits 10 epochs leave it at ASR 83.9, 30 reach
    98.5 with ACC 99.4, so WaNet trains 3× as long by default (``train.epochs_scale.wanet=1`` turns it off).
    The clean-label SIG also trains 3× (ASR 83.9 after 10 epochs, 89.8 after 30, on digits)."""

    epochs: int = 10
    lr: float = 0.05
    batch_size: int = 64
    augment: bool = False
    amp: bool = False
    epochs_scale: dict = field(default_factory=lambda: {"wanet": 3.0, "sig": 3.0})

    def epochs_for(self, attack: str) -> int:
        """The epochs the backdoored model of ``attack`` trains for."""
        scale = self.epochs_scale.get(attack.lower(), 1.0)
        if not isinstance(scale, (int, float)) or scale <= 0:
            raise ConfigError(f"train.epochs_scale[{attack!r}] must be a positive number, got {scale!r}")
        return max(1, round(self.epochs * scale))


#: Vision's own NFT recipe (this project's, not the paper's): the paper's NFT with the output layer's bias
#: tuned and the masks of the last 30% of the steps averaged; with ``augmentation.name="auto"`` (the default)
#: it runs with the surrogate trigger of ``SURROGATE_AUGMENTATION``. ``safety_guard=3``: if the folded masks
#: lost more than 3 points of validation accuracy, the last epoch's masks that did not are folded instead.
#: It runs in float32 on every device, so a seed gives the same result on CPUs with and without native
#: bfloat16; ``defense.options.amp=auto`` (or ``true``) is the speed option.
VISION_RECIPES = {"surrogate": {"tune_bias": "last", "average": 0.3, "safety_guard": 3.0}}

#: What ``augmentation.name="auto"`` means under ``defense.recipe="surrogate"``: both surrogate searches,
#: gated, with a 99% fooling target and two rounds of the patch search, a later round winning only with under
#: half round 1's mask (``rounds_margin``); where the patch is the only trigger kept, a second, disjoint patch
#: toward its class. Where no trigger is found (the two searches point at different classes with the L2
#: trigger kept, or the two patch rounds ran and neither won by the margin: ``fallback_unresolved``), no
#: triggered copies but a shrink pull and clean copies, with NFT's guard as a safety net (``fallback_shrink``,
#: ``fallback_clean_fraction``, ``fallback_guard``). See docs/method.md. Under ``nft+``/``paper`` it means mixup.
SURROGATE_AUGMENTATION = {"kind": "both", "fooling_target": 0.99, "rounds": 2, "disjoint": "alone",
                          "rounds_margin": 0.5, "fallback_shrink": 0.03, "fallback_clean_fraction": 0.5,
                          "fallback_guard": 3.0, "fallback_unresolved": "ambiguous"}


@dataclass
class DefenseConfig:
    """``name``: nft | ft | fp | anp | awm | ftsam | rnp | ibau | nad | mcr; ``options`` go to it.
    ``recipe`` (NFT only): ``surrogate`` (the default; this project's, measured on the embedded default: the
    paper's NFT + the output bias + mask averaging, and with ``augmentation.name=auto`` the surrogate trigger),
    ``nft+`` (``NFT_PLUS``: shrink + guard, with mixup) or ``paper`` (the paper's NFT, with mixup)."""

    name: str = "nft"
    recipe: str = "surrogate"
    options: dict = field(default_factory=dict)

    def resolved_options(self) -> dict:
        return recipe_options(self.name, self.recipe, self.options, task_recipes=VISION_RECIPES)


@dataclass
class AugmentationConfig:
    """NFT's augmentation: auto | mixup | cutmix | cutout | augmix | randaugment | pgd | surrogate | none; ``options``
    go to its constructor (e.g. ``{'alpha': 1.0}`` for mixup, ``{'norm': 'linf', 'eps': 0.0314, 'steps': 10}`` for
    pgd, ``{'kind': 'l2', 'eps': 2.0}`` for surrogate). ``auto`` (the default) follows ``defense.recipe``: the
    surrogate trigger with ``SURROGATE_AUGMENTATION`` under ``surrogate`` (``options`` merged over it), mixup
    under ``nft+`` and ``paper`` (the paper's augmentation). The defaults of augmix, randaugment and pgd are the
    NFT paper's Table 15 settings; ``surrogate`` (:class:`~nft_vision.augment_adv.SurrogateTrigger`) is this
    project's option, not the paper's (docs/method.md)."""

    name: str = "auto"
    options: dict = field(default_factory=dict)


@dataclass
class BenchConfig:
    """``bench`` grid: attacks × defenses (each cell: the same model, validation data, seed, device).
    ``nft`` is NFT+, ``nft-paper`` the paper's recipe and ``nft-surrogate`` vision's surrogate recipe (the
    default of ``purify``), each with ``defense.options``; their augmentation is ``augmentation`` (``auto``
    follows each column's recipe).

    ``ablation`` adds one NFT column per variant after ``defenses`` (``bench.defenses=[]`` for the ablation
    alone), all on the same backdoored model, seed and device. Either one option swept over values::

        bench.ablation={'name': 'eta', 'values': [0, 1e-4, 1e-3, 1e-2]}          # Table 26
        bench.ablation={'name': 'val_size', 'values': [10, 50, 100, 250, 500]}   # Table 25
        bench.ablation={'name': 'tune_bias', 'values': [False, True]}            # Table 23
        bench.ablation={'name': 'augmentation', 'values': ['mixup', 'cutmix', 'cutout', 'none']}  # Table 15
        bench.ablation={'name': 'schedule', 'values': ['exponential', 'cosine', 'linear']}  # family (Table 6)
        bench.ablation={'name': 'alpha', 'values': [0.6, 0.7, 0.8, 0.9]}          # α (also 'beta'; Table 6)

    or a list of named variants, each an options dict (Table 7: without MixUp, without the regularizer)::

        bench.ablation={'variants': [{}, {'augmentation': 'none'}, {'eta': 0}, {'label': 'bare',
                        'augmentation': 'none', 'eta': 0}]}

    Option keys: any ``NFTConfig`` field (``eta``, ``tune_bias``, ``lr``, ``epochs``, ``shrink``, ``guard`` …);
    ``schedule``: a family name or a dict ``{'family', 'alpha', 'beta'}`` merged over the base schedule, and
    ``family``/``alpha``/``beta`` alone; ``augmentation``: a name of ``build_augmentation`` (mixup, cutmix, cutout,
    augmix, randaugment, pgd, none) or ``{'name': ..., 'options': {...}}``; ``val_size``: NFT on a stratified,
    seeded subset of that many validation samples (a multiple of the class count; sizes are nested; raise
    ``data.val_ratio`` for large ones); ``recipe``: ``nft+`` or ``paper``; ``label``: the column name. A variant
    starts from ``defense.recipe`` (surrogate by default) with ``defense.options`` and ``defense_options['nft']``, and
    the ``augmentation`` section. Columns are named ``nft[eta=0.001]``, ``nft[augmentation=none,eta=0]`` …

    ``tsne`` writes ``tsne_<attack>.png``: t-SNE of the penultimate features (input of the last
    ``nn.Linear``) of the backdoored model and of the grid's first defense column, on at most
    ``tsne_points`` test points (clean coloured by class, poisoned as black crosses; the paper's Fig. 1).
    The features are taken in the process that runs the cell: under ``bench --ray`` no view is drawn (listed
    under ``tsne_errors`` in results.json)."""

    attacks: list[str] = field(default_factory=lambda: ["badnets", "blend", "trojan", "sig", "wanet", "dynamic"])
    defenses: list[str] = field(default_factory=lambda: ["nft"])
    defense_options: dict = field(default_factory=dict)
    ablation: dict = field(default_factory=dict)
    tsne: bool = True
    tsne_points: int = 500


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
        if not data["options"]:  # keys written before data.options existed stay valid
            del data["options"]
        train = asdict(self.train)
        if not train["amp"]:  # likewise for train.amp
            del train["amp"]
        del train["epochs_scale"]  # only the epochs it gives this attack count (keys of other attacks unchanged)
        train["epochs"] = self.train.epochs_for(self.attack.name)
        attack = asdict(self.attack)
        attack["poison_rate"] = self.attack.resolved_poison_rate()  # the rate used (keys of 0.1 unchanged)
        return {"data": data, "model": asdict(self.model), "attack": attack,
                "train": train, "seed": self.seed}
