"""The task adapter for action recognition: items ``(clip (T, C, H, W) float in [0, 1], label)``;
poisoned evaluation items ``(triggered clip, true label, target)``."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from nft_core.adapters import ClassificationAdapter
from nft_core.errors import DataError

__all__ = ["VideoAdapter"]


class VideoAdapter(ClassificationAdapter):
    """Cross-entropy on clip batches ``(B, T, C, H, W)``; ``evaluate`` returns ``acc``, ``asr``, ``lcr``
    (in %). ``clean_metric = "acc"`` (read by NFT's guard)."""

    clean_metric = "acc"

    def __init__(self, num_classes: int | None = None, eval_batch_size: int = 64):
        super().__init__(num_classes=num_classes, eval_batch_size=eval_batch_size)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x = batch[0]
        if x.ndim != 5:
            raise DataError(f"video batches must be clips (B, T, C, H, W), got {tuple(x.shape)}")
        return super().loss(model, batch)
