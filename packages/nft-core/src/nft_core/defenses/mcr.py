"""Mode Connectivity Repair (MCR).

Zhao, Chen, Das, Ramamurthy, Lin. "Bridging Mode Connectivity in Loss Landscapes and Adversarial
Robustness." ICLR 2020.

Connect two models with a quadratic Bezier curve ``θ(t) = (1−t)²θ₀ + 2t(1−t)θ_b + t²θ₁`` whose bend
``θ_b`` is trained on the clean data (``t ~ U(0, 1)`` per step, endpoints fixed), then return the model
at a point ``t`` on the path: backdoors are not preserved in the middle of a path trained on clean data.
Here ``θ₀`` is the backdoored model and ``θ₁`` a copy fine-tuned on the clean data (the paper's
single-model variant). The point ``t`` is the one with the lowest clean validation loss among the
interior grid ``t_grid`` (endpoints excluded: they are the inputs); BatchNorm statistics at the chosen
point are re-estimated on the clean data, as in the authors' code.

Defaults: endpoint fine-tuning 20 epochs lr 0.01; curve training 200 epochs, SGD lr 0.015, momentum 0.9,
weight decay 5e-4 (the mode-connectivity code's curve settings); t grid 0.1 … 0.9. Tests shrink epochs.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ..contracts import PurifyResult, TaskAdapter
from ..data import iterate_batches
from ..masks import call_model
from ..rnn import rnn_safe
from ._common import Setup, cosine_lr, finetune, finish, mean_loss

__all__ = ["MCR"]


class _CurvePoint(nn.Module):
    """Calls ``base`` with the weights of the Bezier curve at ``t`` (gradients reach the bend only)."""

    def __init__(self, base, w0, w1, bend):
        super().__init__()
        object.__setattr__(self, "base", base)
        self.w0, self.w1, self.bend, self.t = w0, w1, bend, 0.5

    def params(self):
        t = self.t
        return {k: (1 - t) ** 2 * self.w0[k] + 2 * t * (1 - t) * self.bend[k] + t ** 2 * self.w1[k] for k in self.w0}

    def forward(self, *args, **kwargs):
        return functional_call(self.base, self.params(), args, kwargs, strict=False)


class MCR:
    """Mode Connectivity Repair (Zhao et al., ICLR 2020) with a quadratic Bezier path. See the module docstring."""

    name = "mcr"

    def __init__(self, curve_epochs: int = 200, lr: float = 0.015, ft_epochs: int = 20, ft_lr: float = 0.01,
                 t_grid: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), batch_size: int = 128,
                 momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0, device: str | None = None):
        self.curve_epochs, self.lr, self.ft_epochs, self.ft_lr = curve_epochs, lr, ft_epochs, ft_lr
        self.t_grid = list(t_grid)
        self.batch_size, self.momentum, self.weight_decay = batch_size, momentum, weight_decay
        self.seed, self.device = seed, device

    @rnn_safe
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        t0 = time.perf_counter()
        s = Setup(model, data, adapter, batch_size=self.batch_size, seed=self.seed, device=self.device)
        history: list[dict[str, float]] = []
        end = copy.deepcopy(s.work)
        finetune(end, s.source, adapter, epochs=self.ft_epochs, lr=self.ft_lr, momentum=self.momentum,
                 weight_decay=self.weight_decay, history=history, stage=0)
        base = s.work
        w0 = {k: v.detach().clone() for k, v in base.named_parameters()}
        w1 = {k: v.detach().clone() for k, v in end.named_parameters()}
        bend = nn.ParameterDict({k.replace(".", "__"): nn.Parameter((w0[k] + w1[k]) / 2) for k in w0})
        keymap = {k: k.replace(".", "__") for k in w0}

        class _Bend(dict):
            def __getitem__(self, k):
                return bend[keymap[k]]

        point = _CurvePoint(base, w0, w1, _Bend())
        opt = torch.optim.SGD(bend.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        spe = s.source.steps_per_epoch
        total, step = self.curve_epochs * spe, 0
        base.train()
        for epoch in range(self.curve_epochs):
            tot = 0.0
            for _ in range(spe):
                lr = cosine_lr(opt, self.lr, step, total)
                point.t = float(torch.rand((), generator=s.gen))
                loss = adapter.loss(point, s.source.next())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach())
                step += 1
            history.append({"stage": 1.0, "epoch": float(epoch + 1), "loss": tot / spe, "lr": lr})
        # pick t by clean validation loss (BN statistics re-estimated at each point)
        best = None
        for t in self.t_grid:
            cand = self._materialise(base, point, t, data, adapter, s.device)
            vl = mean_loss(adapter, cand, data, s.device)
            history.append({"stage": 2.0, "t": float(t), "val_loss": vl})
            if best is None or vl < best[0]:
                best = (vl, t, cand)
        out = finish(best[2], model)
        info = {"defense": self.name, "t": best[1], "val_loss": best[0], "stages": ["endpoint_ft", "curve", "select_t"]}
        return PurifyResult(out, {}, history, time.perf_counter() - t0, info)

    @staticmethod
    def _materialise(base, point, t, data, adapter, device) -> nn.Module:
        point.t = t
        m = copy.deepcopy(base)
        with torch.no_grad():
            params = point.params()
            for k, p in m.named_parameters():
                p.copy_(params[k])
        bns = [mod for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
        if bns:
            moms = [b.momentum for b in bns]
            for b in bns:
                b.reset_running_stats()
                b.momentum = None  # cumulative average
            m.train()
            with torch.no_grad():
                for batch in iterate_batches(data, 256, adapter.collate, adapter.to_device, device):
                    call_model(m, adapter.example_input(batch))
            for b, mom in zip(bns, moms):
                b.momentum = mom
        m.eval()
        return m
