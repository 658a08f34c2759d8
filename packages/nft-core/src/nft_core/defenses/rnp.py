"""Reconstructive Neuron Pruning (RNP).

Li, Lyu, Ma, Chen, Koren, Li, Ma. "Reconstructive Neuron Pruning for Backdoor Defense." ICML 2023.

1. Unlearn: gradient *ascent* on the clean loss over all weights (SGD) until the clean accuracy on the
   validation batches falls to ``clean_threshold`` (or ``unlearn_epochs`` run out).
2. Recover: on the unlearned model (weights frozen) learn one mask per neuron (``NeuronMasks``, at
   BatchNorm's γ for conv-BN) minimising the clean loss, masks clipped to ``[0, 1]``. Neurons the clean
   task does not need to recover — the backdoor neurons exposed by unlearning — end with small masks.
3. Prune those neurons (mask below ``threshold`` → 0, others 1) in the *original* model and fold.

Defaults are the paper's: unlearning lr 0.01, momentum 0.9, weight decay 5e-4, up to 20 epochs, stop at
clean accuracy 0.2 (the code's ``clean_threshold``; 20 in percent units); recovery 20 epochs, mask lr 0.2,
momentum 0.9; batch 128; prune by threshold 0.2. The unlearning stop is checked once per epoch on the
task's clean metric over ``data`` (``adapter.evaluate``). Masks are tuned with the model in eval mode
(frozen BatchNorm statistics). The output layer is not masked (``skip_last=True``; the authors' code masks
BatchNorm layers only, and pruning a classifier's output neuron deletes a class). ``max_acc_drop``
(points; not in the paper, default off) prunes only as many under-threshold neurons, lowest mask first, as
keep the clean validation accuracy within that many points of the original's. Tests shrink epochs.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from ..contracts import PurifyResult, TaskAdapter
from ..masks import NeuronMasks
from ..rnn import rnn_safe
from ._common import Setup, clean_metric, finish, prune_by_threshold

__all__ = ["RNP"]


class RNP:
    """Reconstructive Neuron Pruning (Li et al., ICML 2023): unlearn, recover masks, prune. See the module docstring."""

    name = "rnp"

    def __init__(self, unlearn_epochs: int = 20, unlearn_lr: float = 0.01, clean_threshold: float = 20.0,
                 recover_epochs: int = 20, recover_lr: float = 0.2, threshold: float = 0.2,
                 momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 128,
                 placement: str = "bn", skip_first: bool = True, skip_last: bool = True,
                 max_acc_drop: float | None = None, seed: int = 0, device: str | None = None):
        self.unlearn_epochs, self.unlearn_lr, self.clean_threshold = unlearn_epochs, unlearn_lr, clean_threshold
        self.recover_epochs, self.recover_lr, self.threshold = recover_epochs, recover_lr, threshold
        self.momentum, self.weight_decay, self.batch_size = momentum, weight_decay, batch_size
        self.placement, self.skip_first, self.seed, self.device = placement, skip_first, seed, device
        self.skip_last, self.max_acc_drop = skip_last, max_acc_drop

    @rnn_safe
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        t0 = time.perf_counter()
        s = Setup(model, data, adapter, batch_size=self.batch_size, seed=self.seed, device=self.device)
        original = copy.deepcopy(s.work)
        work = s.work
        spe = s.source.steps_per_epoch
        history: list[dict[str, float]] = []
        # 1. unlearning (gradient ascent on the clean loss)
        opt = torch.optim.SGD(work.parameters(), lr=self.unlearn_lr, momentum=self.momentum,
                              weight_decay=self.weight_decay)
        for epoch in range(self.unlearn_epochs):
            work.train()
            tot = 0.0
            for _ in range(spe):
                loss = adapter.loss(work, s.source.next())
                opt.zero_grad(set_to_none=True)
                (-loss).backward()
                opt.step()
                tot += float(loss.detach())
            acc = clean_metric(adapter, work, data)
            history.append({"stage": 0.0, "epoch": float(epoch + 1), "loss": tot / spe, "val_metric": acc})
            if acc <= self.clean_threshold:
                break
        # 2. recovery: masks on the unlearned model
        for p in work.parameters():
            p.requires_grad_(False)
        work.eval()
        masks = NeuronMasks(work, s.example, placement=self.placement, skip_first=self.skip_first,
                        skip_last=self.skip_last)
        mopt = torch.optim.SGD(masks.parameters(), lr=self.recover_lr, momentum=self.momentum)
        for epoch in range(self.recover_epochs):
            tot = 0.0
            for _ in range(spe):
                loss = adapter.loss(work, s.source.next())
                mopt.zero_grad(set_to_none=True)
                loss.backward()
                mopt.step()
                masks.clip_()
                tot += float(loss.detach())
            flat = torch.cat([m.detach().flatten() for m in masks.masks.values()])
            history.append({"stage": 1.0, "epoch": float(epoch + 1), "loss": tot / spe, "mask_mean": float(flat.mean()),
                            "below_threshold": float((flat < self.threshold).sum())})
        soft = masks.mask_dict()
        masks.remove()
        # 3. prune the original model
        pm = NeuronMasks(original, s.example, placement=self.placement, skip_first=self.skip_first,
                        skip_last=self.skip_last)

        def metric(h):
            pm.load_mask_dict(h)
            return clean_metric(adapter, original, data)

        hard, pinfo = prune_by_threshold(soft, self.threshold, metric, self.max_acc_drop)
        pm.load_mask_dict(hard)
        out = finish(pm.fold(), model)
        info = {"defense": self.name, "pruned": int(pinfo["pruned"]), "pruning": pinfo,
                "num_masks": pm.num_masks(), "soft_masks": {k: v.tolist() for k, v in soft.items()}, "stages": ["unlearn", "recover"]}
        return PurifyResult(out, hard, history, time.perf_counter() - t0, info)
