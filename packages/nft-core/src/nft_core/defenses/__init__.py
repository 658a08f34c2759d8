"""Defenses, each implementing ``purify(model, data, adapter) -> PurifyResult``.

``DEFENSES`` maps the CLI's ``--defense NAME`` to the class (a plain lookup table for the command line).
Baselines: vanilla fine-tuning (ft), Fine-Pruning (fp), ANP (anp), AWM (awm), FT-SAM (ftsam), RNP (rnp),
I-BAU (ibau, simplified), NAD (nad) and mode connectivity repair (mcr).
"""

from ..nft import NFT
from .anp import ANP
from .awm import AWM
from .fp import FinePruning
from .ft import FineTuning
from .ftsam import FTSAM
from .ibau import IBAU
from .mcr import MCR
from .nad import NAD
from .rnp import RNP

DEFENSES: dict[str, type] = {
    "nft": NFT,
    "ft": FineTuning,
    "fp": FinePruning,
    "anp": ANP,
    "awm": AWM,
    "ftsam": FTSAM,
    "rnp": RNP,
    "ibau": IBAU,
    "nad": NAD,
    "mcr": MCR,
}

__all__ = ["ANP", "AWM", "DEFENSES", "FTSAM", "IBAU", "MCR", "NAD", "NFT", "RNP", "FinePruning", "FineTuning"]
