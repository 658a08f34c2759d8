"""Fine-Pruning (FP).

Liu, Dolan-Gavitt, Garg. "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural Networks."
RAID 2018.

1. Record the mean post-activation of every channel of the last convolutional layer on the clean data.
2. Prune channels in increasing order of activation (dormant ones first), one at a time, until the clean
   validation metric drops by more than ``max_drop`` (the paper: 4 percentage points); keep the last
   pruning level within the threshold.
3. Fine-tune the pruned network on the clean data (pruned channels stay pruned).

Pruning is a zero mask on the channel's neuron (``NeuronMasks``; a conv feeding BatchNorm is masked at
BN's γ, so the channel outputs the constant β), folded into the weights at the end. The layer defaults
to the last conv layer in forward order (a hidden linear layer if there is no conv); name another with
``layer=``. Fine-tuning defaults: 10 epochs, SGD lr 0.01 (benchmark protocol; the paper fine-tunes
briefly with a small rate).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..contracts import PurifyResult, TaskAdapter
from ..data import iterate_batches
from ..masks import NeuronMasks, call_model
from ..rnn import rnn_safe
from ._common import FeatureHooks, Setup, bn_for, clean_metric, conv_layers, feature_layers, finetune, finish

__all__ = ["FinePruning"]


class FinePruning:
    """Fine-Pruning (Liu et al., RAID 2018): prune dormant last-conv channels, then fine-tune. See the module docstring."""

    name = "fp"

    def __init__(self, max_drop: float = 4.0, max_ratio: float = 0.95, prune_step: int = 1,
                 epochs: int = 10, lr: float = 0.01, batch_size: int = 128, momentum: float = 0.9,
                 weight_decay: float = 5e-4, layer: str | None = None, seed: int = 0,
                 device: str | None = None):
        self.max_drop, self.max_ratio, self.prune_step = max_drop, max_ratio, prune_step
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.momentum, self.weight_decay, self.layer = momentum, weight_decay, layer
        self.seed, self.device = seed, device

    @rnn_safe
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        t0 = time.perf_counter()
        s = Setup(model, data, adapter, batch_size=self.batch_size, seed=self.seed, device=self.device)
        work = s.work
        layer = self.layer or conv_layers(work, s.example)[-1]
        # 1. mean post-activation per channel on clean data
        feat = feature_layers(work, s.example, 1)[0] if self.layer is None else layer
        hooks = FeatureHooks(work, [feat])
        acts = None
        was = work.training
        work.eval()
        with torch.no_grad():
            for batch in iterate_batches(data, 256, adapter.collate, adapter.to_device, s.device):
                call_model(work, adapter.example_input(batch))
                f = hooks.out[feat].float()
                f = f.movedim(1, -1) if f.ndim > 2 and isinstance(dict(work.named_modules())[layer],
                                                                   nn.modules.conv._ConvNd) else f
                a = f.reshape(-1, f.shape[-1]).sum(0)
                acts = a if acts is None else acts + a
        work.train(was)
        hooks.remove()
        # 2. prune by activation until the clean metric drops more than max_drop
        site = bn_for(work, s.example, layer)
        masks = NeuronMasks(work, s.example, placement="bn", include=[site], skip_first=False)
        m = masks.masks[masks.sites[0].key]
        m.requires_grad_(False)
        order = torch.argsort(acts.to(m.device))
        base = clean_metric(adapter, work, data)
        history: list[dict[str, float]] = []
        kept = 0
        limit = int(self.max_ratio * m.numel())
        k = 0
        while k + self.prune_step <= limit:
            k += self.prune_step
            with torch.no_grad():
                m.fill_(1.0)
                m[order[:k]] = 0.0
            metric = clean_metric(adapter, work, data)
            history.append({"stage": 0.0, "pruned": float(k), "val_metric": metric})
            if base - metric > self.max_drop:
                break
            kept = k
        with torch.no_grad():
            m.fill_(1.0)
            m[order[:kept]] = 0.0
        # 3. fine-tune with the pruned channels held at zero
        finetune(work, s.source, adapter, epochs=self.epochs, lr=self.lr, momentum=self.momentum,
                 weight_decay=self.weight_decay, history=history, stage=1)
        mask_values = masks.mask_dict()
        out = finish(masks.fold(), model)
        info = {"defense": self.name, "layer": layer, "mask_site": site, "pruned": kept,
                "channels": int(m.numel()), "val_metric_before": base, "stages": ["prune", "finetune"]}
        return PurifyResult(out, mask_values, history, time.perf_counter() - t0, info)
