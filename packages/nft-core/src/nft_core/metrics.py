"""Backdoor metrics from predictions (all tensors of shape (N,), integer class ids).

* ACC: clean accuracy.
* ASR: share of poisoned inputs classified as the attacker's target, counted only over inputs whose true
  class differs from their target (all2one: target is one class; all2all: target is e.g. (y+1) mod C).
* LCR (label correction rate): share of those poisoned inputs classified as their true class.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["accuracy", "attack_success_rate", "label_correction_rate"]


def _pct(hits: Tensor) -> float:
    return float(hits.float().mean() * 100) if hits.numel() else float("nan")


def accuracy(pred: Tensor, target: Tensor) -> float:
    """Percentage of ``pred == target``."""
    return _pct(pred == target)


def attack_success_rate(pred: Tensor, true: Tensor, target: Tensor | int) -> float:
    """Percentage of poisoned inputs (true class != target) predicted as the target."""
    target = torch.as_tensor(target, device=pred.device).expand_as(pred)
    keep = true != target
    return _pct(pred[keep] == target[keep])


def label_correction_rate(pred: Tensor, true: Tensor, target: Tensor | int) -> float:
    """Percentage of poisoned inputs (true class != target) predicted as their true class."""
    target = torch.as_tensor(target, device=pred.device).expand_as(pred)
    keep = true != target
    return _pct(pred[keep] == true[keep])
