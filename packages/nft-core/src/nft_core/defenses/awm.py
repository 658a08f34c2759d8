"""Adversarial Weight Masking (AWM).

Chai, Chen. "One-shot Neural Backdoor Erasing via Adversarial Weight Masking." NeurIPS 2022.

Alternates (i) trigger recovery: a universal input perturbation ``Δ`` maximising the loss of the
currently masked model (L2-PGD: normalised-gradient ascent steps of size ``inner_step``, projected onto an L2 ball of
radius ``norm_bound``; δ persists across outer steps),
and (ii) mask learning: soft masks ``m ∈ [0, 1]`` minimising
``α·L(x) + β·L(x + Δ) + γ·‖m‖₁`` on the clean data, clipped to ``[0, 1]`` after every step; the soft
masks are folded into the weights at the end.

Simplifications (documented): masks are per *neuron* (``NeuronMasks``, at BatchNorm's γ for conv-BN)
rather than per weight, and the trigger is an additive L2-bounded universal perturbation rather than
the paper's mask-and-pattern trigger with an L1 budget. Needs continuous inputs (raises
:class:`~nft_core.errors.UnsupportedError` otherwise).

Defaults follow the paper: α = 0.9, β = 0.1, γ = 1e-8, 100 outer epochs, 5 inner trigger steps per outer
step, mask optimiser Adam lr 1e-3, batch 128; ``norm_bound`` 10 and ``inner_step`` (default ``norm_bound / 10``) are this port's.
Tests shrink epochs and raise the lr.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..contracts import PurifyResult, TaskAdapter
from ..masks import NeuronMasks
from ..rnn import rnn_safe
from ._common import InputPerturbation, Setup, finish, l2_ascent_step

__all__ = ["AWM"]


class AWM:
    """Adversarial Weight Masking (Chai & Chen, NeurIPS 2022), per-neuron simplification. See the module docstring."""

    name = "awm"

    def __init__(self, epochs: int = 100, inner_steps: int = 5, alpha: float = 0.9, beta: float = 0.1,
                 gamma: float = 1e-8, lr: float = 1e-3, inner_step: float | None = None, norm_bound: float = 10.0,
                 batch_size: int = 128, placement: str = "bn", skip_first: bool = True, seed: int = 0,
                 device: str | None = None):
        self.epochs, self.inner_steps, self.alpha, self.beta, self.gamma = epochs, inner_steps, alpha, beta, gamma
        self.lr, self.norm_bound, self.batch_size = lr, norm_bound, batch_size
        self.inner_step = inner_step if inner_step is not None else norm_bound / 10
        self.placement, self.skip_first, self.seed, self.device = placement, skip_first, seed, device

    @rnn_safe
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        t0 = time.perf_counter()
        s = Setup(model, data, adapter, batch_size=self.batch_size, seed=self.seed, device=self.device)
        work = s.work
        for p in work.parameters():
            p.requires_grad_(False)
        pert = InputPerturbation(work, s.example, "AWM")
        masks = NeuronMasks(work, s.example, placement=self.placement, skip_first=self.skip_first)
        opt = torch.optim.Adam(masks.parameters(), lr=self.lr)
        work.eval()
        spe = s.source.steps_per_epoch
        history: list[dict[str, float]] = []
        try:
            for epoch in range(self.epochs):
                tot_c, tot_a = 0.0, 0.0
                for _ in range(spe):
                    batch = s.source.next()
                    pert.active = True
                    for _ in range(self.inner_steps):
                        pert.delta.grad = None
                        adapter.loss(work, batch).backward()
                        l2_ascent_step(pert.delta, self.inner_step, self.norm_bound)
                    adv = adapter.loss(work, batch)
                    pert.active = False
                    clean = adapter.loss(work, batch)
                    loss = self.alpha * clean + self.beta * adv + self.gamma * masks.mask_sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    masks.clip_()
                    tot_c += float(clean.detach())
                    tot_a += float(adv.detach())
                flat = torch.cat([m.detach().flatten() for m in masks.masks.values()])
                history.append({"epoch": float(epoch + 1), "loss": tot_c / spe, "adv_loss": tot_a / spe,
                                "mask_mean": float(flat.mean()), "mask_min": float(flat.min()),
                                "delta_norm": float(pert.delta.detach().norm())})
        finally:
            pert.active = False
            pert.remove()
        mask_values = masks.mask_dict()
        out = finish(masks.fold(), model)
        info = {"defense": self.name, "num_masks": masks.num_masks(),
                "simplified": "per-neuron masks; additive L2-bounded universal trigger"}
        return PurifyResult(out, mask_values, history, time.perf_counter() - t0, info)
