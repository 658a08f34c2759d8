"""Test helpers reused by every task package: the conformance suite and a tiny backdoored model."""

from .conformance import (
    check_augmentation_consistent,
    check_determinism,
    check_every_mask_matters,
    check_fold_equivalence,
    check_identity_at_one,
)
from .toy import SmallCNN, ToyBackdoor, apply_patch, make_toy_backdoor, toy_images

__all__ = [
    "SmallCNN",
    "ToyBackdoor",
    "apply_patch",
    "check_augmentation_consistent",
    "check_determinism",
    "check_every_mask_matters",
    "check_fold_equivalence",
    "check_identity_at_one",
    "make_toy_backdoor",
    "toy_images",
]
