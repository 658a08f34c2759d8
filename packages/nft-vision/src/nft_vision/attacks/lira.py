"""LIRA (Doan, Lao, Zhao & Li, "LIRA: Learnable, Imperceptible and Robust Backdoor Attacks", ICCV 2021):
a trigger generator T and the classifier are learned together; the poisoned image is
``x' = clip(x + eps·T(x))`` with ``T(x)`` in [-1, 1], so the trigger is sample specific and bounded by
``eps`` in L∞. Training alternates a generator update (make the classifier map ``x'`` to the target) and
a classifier update on the clean and poisoned batch (weights ``alpha`` and ``1 − alpha``).

What differs from the paper: the paper's generator is an autoencoder/U-Net and its generator step uses a
one-step look-ahead ("virtual") copy of the classifier inside a constrained bilevel optimisation,
followed by a second stage that fine-tunes the classifier with the generator fixed. Here T is a tiny
fully convolutional net (``depth`` 3×3 conv layers of ``width`` channels), the generator step uses the
current classifier directly (one Adam step per batch, lr ``lr_generator``), and the second stage
(classifier fine-tuned with the generator fixed, a ``poison_rate`` fraction of each batch poisoned) takes
the last ``tune_ratio`` of the epochs within the same one-cycle schedule rather than a fresh run. ``eps`` defaults to 0.05 for small images (the paper sets eps per dataset; it is a constructor
argument), ``alpha`` to 0.5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nft_core.data import TensorData

from ._nets import (
    batches,
    conv_net,
    grey_residual,
    load_prefixed,
    prefixed_state,
    steps_for,
    victim_optimizer,
)
from .base import Attack

__all__ = ["LIRA"]


class LIRA(Attack):
    """Dirty-label, learned L∞-bounded additive trigger (generator built for ``channels``-channel
    images). all2one (target 0) or all2all. :meth:`train_backdoor` is the attack; :meth:`poison_train`
    poisons data with the current generator (e.g. reloaded from a state dict).

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape; ``trigger((C, H, W))`` is the
    residual on a mid-grey image."""

    name = "lira"
    requires_model_training = True

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, channels: int = 3, eps: float = 0.05,
                 alpha: float = 0.5, width: int = 16, depth: int = 3, lr_generator: float = 1e-3,
                 tune_ratio: float = 0.5):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.channels, self.eps, self.alpha = channels, eps, alpha
        self.width, self.depth, self.lr_generator = width, depth, lr_generator
        self.tune_ratio = tune_ratio
        self.net = conv_net(channels, channels, width, depth, self._seeded())

    def _poison(self, x: Tensor) -> Tensor:
        return (x + self.eps * torch.tanh(self.net(x))).clamp(0, 1)

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        dev = next(self.net.parameters()).device
        with torch.no_grad():
            return self._poison(x.to(dev)).to(x.device)

    def trigger(self, shape) -> Tensor:
        return grey_residual(self, shape)

    def state_dict(self) -> dict[str, Tensor]:
        return prefixed_state("generator", self.net)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        load_prefixed("generator", self.net, state)

    def train_backdoor(self, model: nn.Module, data: TensorData, *, epochs: int, lr: float, batch_size: int,
                       generator: torch.Generator, device="cpu") -> nn.Module:
        """Alternate, per batch, one generator step (cross-entropy of the classifier on ``T``-poisoned
        images towards the target labels) and one classifier step (``alpha``·clean loss +
        ``(1 − alpha)``·poisoned loss, clean and poisoned copies of the batch in one forward pass).
        Then, for the last ``round(tune_ratio·epochs)`` epochs, the generator is fixed and the classifier
        trains on batches whose first ``round(poison_rate·B)`` images are poisoned.
        Returns ``model`` (its ``training`` flag restored)."""
        device = torch.device(device)
        was = model.training
        model.to(device).train()
        self.net.to(device)
        x_all, y_all = (t.to(device) for t in data.tensors[:2])
        n = len(y_all)
        opt, sched = victim_optimizer(model, lr, steps_for(n, batch_size, epochs))
        opt_g = torch.optim.Adam(self.net.parameters(), lr=self.lr_generator)
        tune = round(self.tune_ratio * epochs)
        trainable = [p for p in model.parameters() if p.requires_grad]
        for _ in range(epochs - tune):
            for idx in batches(n, batch_size, generator):
                x, y = x_all[idx], y_all[idx]
                yt = self.target_labels(y)
                b = len(y)
                # clean and poisoned images share one forward pass, so batch-norm statistics never tell
                # them apart (separate all-clean / all-poisoned batches would leak the trigger through BN)
                for p in trainable:
                    p.requires_grad_(False)
                loss_g = F.cross_entropy(model(torch.cat([x, self._poison(x)]))[b:], yt)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                for p in trainable:
                    p.requires_grad_(True)
                with torch.no_grad():
                    xp = self._poison(x)
                out = model(torch.cat([x, xp]))
                loss = self.alpha * F.cross_entropy(out[:b], y) + (1 - self.alpha) * F.cross_entropy(out[b:], yt)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        for _ in range(tune):
            for idx in batches(n, batch_size, generator):
                x, y = x_all[idx], y_all[idx]
                nb = round(self.poison_rate * len(y))
                with torch.no_grad():
                    x = torch.cat([self._poison(x[:nb]), x[nb:]])
                y = torch.cat([self.target_labels(y[:nb]), y[nb:]])
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        self.net.cpu()
        return model.train(was)
