"""Backdoor attacks on image classifiers, one file per method (paper defaults in each constructor)."""

from .badnets import BadNets
from .base import Attack
from .blend import Blend
from .bppa import BPPA
from .cba import CBA
from .clb import CLB
from .dynamic import Dynamic
from .fba import FBA
from .issba import ISSBA
from .lira import LIRA
from .sig import SIG
from .trojan import Trojan
from .wanet import WaNet

ATTACKS = {a.name: a for a in (BadNets, Blend, Trojan, SIG, WaNet, CLB, Dynamic, ISSBA, LIRA, BPPA, FBA, CBA)}

__all__ = ["ATTACKS", "BPPA", "CBA", "CLB", "FBA", "ISSBA", "LIRA", "SIG", "Attack", "BadNets", "Blend", "Dynamic",
           "Trojan", "WaNet"]
