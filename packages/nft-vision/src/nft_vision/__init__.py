"""nft_vision: image classification for NFT — data loaders, models, backdoor attacks, augmentations."""

from .attacks import (
    ATTACKS,
    BPPA,
    CBA,
    CLB,
    FBA,
    ISSBA,
    LIRA,
    SIG,
    Attack,
    BadNets,
    Blend,
    Dynamic,
    Trojan,
    WaNet,
)
from .augment import AugMix, CutMix, CutOut, RandAugment
from .augment_adv import PGD, SurrogateTrigger
from .backdoorbench import BackdoorBenchResult, load_backdoorbench
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
from .models import VGG16, Normalize, PreActResNet18, SmallCNN, create_model

__all__ = [
    "ATTACKS", "Attack", "AugMix", "BPPA", "BackdoorBenchResult", "BadNets", "Blend", "CBA", "CLB", "CutMix",
    "CutOut", "Dynamic", "FBA", "ISSBA", "LIRA", "Normalize", "PGD", "PreActResNet18", "RandAugment", "SIG", "SurrogateTrigger",
    "SmallCNN", "Trojan", "VGG16", "WaNet", "create_model", "load_backdoorbench", "load_cifar10", "load_cifar100",
    "load_digits_default", "load_gtsrb", "load_image_folder", "load_npz", "load_procedural", "split_validation",
]
