"""Backdoor attacks on image classifiers, one file per method (paper defaults in each constructor)."""

from .badnets import BadNets
from .base import Attack
from .blend import Blend
from .sig import SIG
from .trojan import Trojan
from .wanet import WaNet

ATTACKS = {a.name: a for a in (BadNets, Blend, Trojan, SIG, WaNet)}

__all__ = ["ATTACKS", "SIG", "Attack", "BadNets", "Blend", "Trojan", "WaNet"]
