"""Neural Attention Distillation (NAD).

Li, Lyu, Koren, Lyu, Li, Ma. "Neural Attention Distillation: Erasing Backdoor Triggers from Deep Neural
Networks." ICLR 2021.

1. Teacher: fine-tune a copy of the backdoored model on the clean data (``teacher_epochs``).
2. Student (the backdoored model) is fine-tuned with the task loss plus ``Σ_k β_k·AT(F_s^k, F_t^k)``,
   where the attention map of a feature ``F`` is ``A = mean_c |F_c|^p`` flattened and L2-normalised and
   ``AT`` is the mean squared difference of the two maps (authors' code).

Defaults are the paper's CIFAR-10 setting: teacher 10 epochs, student 20 epochs, SGD lr 0.1, momentum
0.9, weight decay 1e-4, batch 64, p = 2, β = (500, 1000, 1000) on the last three feature groups. The
learning rate follows the authors' step schedule (``lr`` for the first ``lr_drop_epoch`` = 2 epochs, then
``lr · lr_drop`` = 0.01), not a decay from 0.1: measured on digits (width-16 PreActResNet-18, Blend),
0.1 held longer made the student diverge (clean accuracy 24.5%; 10.7–11.3% at paper scale on an H100).
The features are hooked by module name (``layers=``); by default one per residual group:
:func:`~nft_core.defenses._common.group_layers` takes the last convolution of each of the last
``len(betas)`` spatial resolutions (post-normalization/activation), the groups' outputs in a ResNet.
For 2-D features ``(B, D)`` the attention is ``|F|^p`` itself. Tests shrink epochs and lr.

Measured at the paper's scale with 1% validation data (500 images; docs/results/paper-scale.md), the paper's
lr 0.1 still collapses the model (ACC 10–16%), while ``lr=0.01, teacher_lr=0.01`` (BackdoorBench's lr) removes
BadNets and Blend at about 2 points of ACC; on the digits default (143 images) it is the reverse (lr 0.01 leaves
the backdoors, lr 0.1 removes most at 24–47 points). The constructor keeps the paper's value.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contracts import PurifyResult, TaskAdapter
from ..masks import call_model
from ..rnn import rnn_safe
from ._common import FeatureHooks, Setup, finetune, finish, group_layers

__all__ = ["NAD"]


def attention_map(f: Tensor, p: float) -> Tensor:
    a = f.float().abs().pow(p)
    if a.ndim > 2:
        a = a.mean(1)
    return F.normalize(a.reshape(a.shape[0], -1), dim=1)


class NAD:
    """Neural Attention Distillation (Li et al., ICLR 2021). See the module docstring."""

    name = "nad"

    def __init__(self, epochs: int = 20, teacher_epochs: int = 10, lr: float = 0.1,
                 teacher_lr: float | None = None, betas: Sequence[float] = (500.0, 1000.0, 1000.0),
                 p: float = 2.0, layers: Sequence[str] | None = None, batch_size: int = 64,
                 momentum: float = 0.9, weight_decay: float = 1e-4, lr_drop_epoch: int = 2,
                 lr_drop: float = 0.1, seed: int = 0, device: str | None = None):
        self.epochs, self.teacher_epochs, self.lr = epochs, teacher_epochs, lr
        self.teacher_lr = teacher_lr if teacher_lr is not None else lr
        self.betas, self.p, self.layers = list(betas), p, layers
        self.batch_size, self.momentum, self.weight_decay = batch_size, momentum, weight_decay
        self.lr_drop_epoch, self.lr_drop = lr_drop_epoch, lr_drop
        self.seed, self.device = seed, device

    def _epoch_lr(self, base: float):
        return lambda epoch: base if epoch < self.lr_drop_epoch else base * self.lr_drop

    @rnn_safe
    def purify(self, model: nn.Module, data: Any, adapter: TaskAdapter) -> PurifyResult:
        t0 = time.perf_counter()
        s = Setup(model, data, adapter, batch_size=self.batch_size, seed=self.seed, device=self.device)
        student = s.work
        layers = list(self.layers) if self.layers else group_layers(student, s.example, len(self.betas))
        betas = self.betas[-len(layers):] if len(layers) <= len(self.betas) else [self.betas[-1]] * len(layers)
        history: list[dict[str, float]] = []
        teacher = copy.deepcopy(student)
        finetune(teacher, s.source, adapter, epochs=self.teacher_epochs, lr=self.teacher_lr,
                 momentum=self.momentum, weight_decay=self.weight_decay, history=history, stage=0,
                 epoch_lr=self._epoch_lr(self.teacher_lr))
        teacher.eval()
        for q in teacher.parameters():
            q.requires_grad_(False)
        hs, ht = FeatureHooks(student, layers), FeatureHooks(teacher, layers)

        def at_loss(batch, loss):
            with torch.no_grad():
                call_model(teacher, adapter.example_input(batch))
            return sum(b * (attention_map(hs.out[n], self.p) - attention_map(ht.out[n], self.p)).pow(2).mean()
                       for b, n in zip(betas, layers))

        try:
            finetune(student, s.source, adapter, epochs=self.epochs, lr=self.lr, momentum=self.momentum,
                     weight_decay=self.weight_decay, extra_loss=at_loss, history=history, stage=1,
                     epoch_lr=self._epoch_lr(self.lr))
        finally:
            hs.remove()
            ht.remove()
        out = finish(student, model)
        info = {"defense": self.name, "layers": layers, "betas": betas, "stages": ["teacher", "student"]}
        return PurifyResult(out, {}, history, time.perf_counter() - t0, info)
