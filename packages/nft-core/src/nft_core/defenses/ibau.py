"""I-BAU: Implicit Backdoor Adversarial Unlearning (simplified).

Zeng, Chen, Park, Mao, Jin, Jia. "Adversarial Unlearning of Backdoors via Implicit Hypergradient."
ICLR 2022.

I-BAU solves ``min_θ max_{‖δ‖₂≤ε} L(f_θ(x + δ), y)`` over the clean data with one universal
perturbation ``δ``, differentiating the outer loss through the inner solution with an implicit
hypergradient (K fixed-point iterations). **This implementation is simplified**: it alternates
(i) an L2-PGD search for the universal perturbation (normalised-gradient ascent steps of size
``inner_step``, ``inner_steps`` batches — default one pass over the data as in the authors' code —
projected onto the L2 ball of radius ``norm_bound``; the authors use plain SGD with lr 10, which barely
moves δ on a confident model) and (ii) unlearning steps on
``L(f_θ(x + δ), y)`` with δ held fixed (the first-order part of the hypergradient; the implicit term
is dropped). ``clean_weight`` (0 = the paper's loss) optionally adds the clean loss.

Defaults are the authors' code: 5 rounds, batch 100, Adam lr 5e-4 for the model, L2 bound 10;
``inner_step`` (default ``norm_bound / 5``) is this port's. Only continuous inputs can be perturbed: integer inputs (tokens) raise
:class:`~nft_core.errors.UnsupportedError`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from ..contracts import PurifyResult, TaskAdapter
from ..rnn import rnn_safe
from ._common import InputPerturbation, Setup, finish, l2_ascent_step

__all__ = ["IBAU"]


class IBAU:
    """I-BAU (Zeng et al., ICLR 2022), simplified to alternating universal-perturbation search and unlearning. See the module docstring."""

    name = "ibau"

    def __init__(self, rounds: int = 5, lr: float = 5e-4, inner_step: float | None = None, norm_bound: float = 10.0,
                 inner_steps: int | None = None, outer_passes: int = 1, clean_weight: float = 0.0,
                 batch_size: int = 100, seed: int = 0, device: str | None = None):
        self.rounds, self.lr, self.norm_bound = rounds, lr, norm_bound
        self.inner_step = inner_step if inner_step is not None else norm_bound / 5
        self.inner_steps, self.outer_passes, self.clean_weight = inner_steps, outer_passes, clean_weight
        self.batch_size, self.seed, self.device = batch_size, seed, device

    @rnn_safe
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        t0 = time.perf_counter()
        s = Setup(model, data, adapter, batch_size=self.batch_size, seed=self.seed, device=self.device)
        work = s.work
        pert = InputPerturbation(work, s.example, "I-BAU")
        opt = torch.optim.Adam([p for p in work.parameters() if p.requires_grad], lr=self.lr)
        spe = s.source.steps_per_epoch
        history: list[dict[str, float]] = []
        try:
            for r in range(self.rounds):
                # (i) universal perturbation: ascend the loss over the clean data
                work.eval()
                pert.active = True
                with torch.no_grad():
                    pert.delta.zero_()
                for p in work.parameters():
                    p.requires_grad_(False)
                adv = 0.0
                for _ in range(self.inner_steps if self.inner_steps is not None else spe):
                    loss = adapter.loss(work, s.source.next())
                    pert.delta.grad = None
                    loss.backward()
                    l2_ascent_step(pert.delta, self.inner_step, self.norm_bound)
                    adv = float(loss.detach())
                for p in work.parameters():
                    p.requires_grad_(True)
                # (ii) unlearning against the fixed perturbation
                work.train()
                tot = 0.0
                for _ in range(self.outer_passes * spe):
                    batch = s.source.next()
                    pert.active = True
                    loss = adapter.loss(work, batch)
                    if self.clean_weight:
                        pert.active = False
                        loss = loss + self.clean_weight * adapter.loss(work, batch)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach())
                history.append({"epoch": float(r + 1), "adv_loss": adv, "loss": tot / max(1, self.outer_passes * spe),
                                "delta_norm": float(pert.delta.detach().norm())})
        finally:
            pert.active = False
            pert.remove()
        out = finish(work, model)
        info = {"defense": self.name, "rounds": self.rounds, "norm_bound": self.norm_bound,
                "simplified": "alternating universal-perturbation search and unlearning; no implicit hypergradient"}
        if not math.isfinite(history[-1]["loss"] if history else 0.0):
            info["warning"] = "non-finite loss"
        return PurifyResult(out, {}, history, time.perf_counter() - t0, info)
