"""Vanilla fine-tuning (FT) on the clean validation set.

The simplest baseline (e.g. Liu et al., "Fine-Pruning", RAID 2018, Sec. 4; BackdoorBench's ``ft``):
train every weight on the defender's clean data with the task loss. Defaults follow the common
benchmark protocol: SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 128, 100 epochs, cosine decay.
Tests shrink ``epochs`` for tiny data.
"""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from ..contracts import PurifyResult, TaskAdapter
from ..rnn import rnn_safe
from ._common import Setup, finetune, finish

__all__ = ["FineTuning"]


class FineTuning:
    """Fine-tune all weights on ``data`` (``purify(model, data, adapter) -> PurifyResult``)."""

    name = "ft"

    def __init__(self, epochs: int = 100, lr: float = 0.01, batch_size: int = 128, momentum: float = 0.9,
                 weight_decay: float = 5e-4, seed: int = 0, device: str | None = None):
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.momentum, self.weight_decay, self.seed, self.device = momentum, weight_decay, seed, device

    @rnn_safe
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        t0 = time.perf_counter()
        s = Setup(model, data, adapter, batch_size=self.batch_size, seed=self.seed, device=self.device)
        history: list[dict[str, float]] = []
        finetune(s.work, s.source, adapter, epochs=self.epochs, lr=self.lr, momentum=self.momentum,
                 weight_decay=self.weight_decay, history=history)
        out = finish(s.work, model)
        info = {"defense": self.name, "epochs": self.epochs, "lr": self.lr}
        return PurifyResult(out, {}, history, time.perf_counter() - t0, info)
