"""Model-dependent NFT augmentations: PGD adversarial examples ("NFT-Adv" of the NFT paper's Table 15) and
the surrogate trigger (this project's option, not in the paper; docs/method.md).

Unlike the other augmentations, these need the model being tuned. :class:`~nft_core.nft.NFT` calls
``augmentation.bind(model, adapter)`` once before its training loop when the augmentation has a ``bind``
method; every later call then perturbs the batch against the masked model *in its current state*.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nft_core.augment import frozen_model
from nft_core.surrogate import SurrogateTrigger  # in nft-core: video uses it too

__all__ = ["PGD", "SurrogateTrigger"]


class PGD:
    """Projected gradient descent (Madry et al., "Towards Deep Learning Models Resistant to Adversarial
    Attacks", ICLR 2018): ``steps`` signed-gradient (L∞) or normalized-gradient (L2) ascent steps of size
    ``step_size`` on the loss, each followed by projection onto the ``eps``-ball around the clean image and
    onto the valid image range [0, 1]; optionally from a uniform random start inside the ball.

    Defaults follow NFT's Table 15 ("NFT-Adv", Supplementary: a 2-step PGD with a perturbation norm of 1).
    The norm's symbol is lost in the paper text we have; we read it as L2 with ε = 1 on [0, 1] images,
    the only reading under which ε = 1 is a meaningful budget that costs the ~15 ACC points the table
    reports (L∞ with ε = 1 would be unbounded, L∞ with ε = 1/255 nearly invisible). The classic L∞
    setting is ``PGD(norm="linf", eps=8/255, step_size=2/255, steps=10)``. ``step_size`` defaults to
    ``eps / 2``.

    Call contract: ``pgd((x, y, *rest), generator) -> (x_adv, y, *rest)``; ``x`` float (B, C, H, W) in
    [0, 1]. The random start is drawn from ``generator`` only. The loss is ``adapter.loss(model, batch)``
    when an adapter is bound, else cross-entropy of ``model(x)``. During the attack the model runs in
    ``model_mode`` ("eval": BatchNorm statistics are not updated; "train"; "keep": as it is); its training
    flag and every parameter's ``requires_grad`` are restored afterwards, and gradients are taken with
    respect to the input only (``torch.autograd.grad``), so nothing accumulates in the ``.grad`` of the
    masks or weights.
    """

    def __init__(self, eps: float = 1.0, step_size: float | None = None, steps: int = 2, norm: str = "l2",
                 random_start: bool = True, model_mode: str = "eval"):
        norm = str(norm).lower().replace("∞", "inf")
        if norm not in ("linf", "l2"):
            raise ValueError(f"PGD norm must be 'linf' or 'l2', got {norm!r}")
        if eps <= 0 or steps < 1:
            raise ValueError(f"PGD needs eps > 0 and steps >= 1, got eps={eps}, steps={steps}")
        if model_mode not in ("eval", "train", "keep"):
            raise ValueError(f"PGD model_mode must be 'eval', 'train' or 'keep', got {model_mode!r}")
        self.eps, self.steps, self.norm = float(eps), int(steps), norm
        self.step_size = float(step_size) if step_size is not None else self.eps / 2
        if self.step_size <= 0:
            raise ValueError(f"PGD step_size must be > 0, got {self.step_size}")
        self.random_start, self.model_mode = random_start, model_mode
        self.model: nn.Module | None = None
        self.adapter: Any = None

    def bind(self, model: nn.Module | None, adapter: Any = None) -> PGD:
        """Attack ``model`` (NFT binds its working, masked copy) with ``adapter.loss`` (optional)."""
        self.model, self.adapter = model, adapter
        return self

    # ----------------------------------------------------------------------------------------- helpers
    def _loss(self, x: Tensor, y: Any, rest: list) -> Tensor:
        if self.adapter is not None:
            return self.adapter.loss(self.model, (x, y, *rest))
        return F.cross_entropy(self.model(x).float(), y)

    def _per_sample_norm(self, t: Tensor) -> Tensor:
        return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.ndim - 1)))

    def _project(self, delta: Tensor) -> Tensor:
        if self.norm == "linf":
            return delta.clamp(-self.eps, self.eps)
        return delta * (self.eps / self._per_sample_norm(delta)).clamp(max=1.0)

    def _random_start(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.norm == "linf":
            d = (torch.rand(x.shape, generator=generator) * 2 - 1) * self.eps
        else:  # a uniform direction, radius eps·u
            d = torch.randn(x.shape, generator=generator)
            u = torch.rand(x.shape[0], generator=generator).view(-1, *([1] * (x.ndim - 1)))
            d = d / self._per_sample_norm(d) * u * self.eps
        return d.to(device=x.device, dtype=x.dtype)

    # ------------------------------------------------------------------------------------------ call
    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        if self.model is None:
            raise RuntimeError("PGD needs the model being tuned: call pgd.bind(model, adapter) first "
                               "(NFT does this before its training loop)")
        x, y, *rest = batch
        x0 = x.detach()
        delta = self._random_start(x0, generator) if self.random_start else torch.zeros_like(x0)
        delta = (x0 + delta).clamp(0, 1) - x0
        with frozen_model(self.model, self.model_mode):
            for _ in range(self.steps):
                xa = (x0 + delta).requires_grad_(True)
                with torch.enable_grad():
                    (grad,) = torch.autograd.grad(self._loss(xa, y, rest), xa)
                if self.norm == "linf":
                    step = grad.sign()
                else:
                    step = grad / self._per_sample_norm(grad)
                delta = self._project(delta + self.step_size * step)
                delta = (x0 + delta).clamp(0, 1) - x0  # stay a valid image (shrinks, never leaves the ball)
        return ((x0 + delta).detach(), y, *rest)

    def __repr__(self) -> str:
        return (f"PGD(norm={self.norm}, eps={self.eps:g}, step_size={self.step_size:g}, steps={self.steps}, "
                f"random_start={self.random_start}, model_mode={self.model_mode})")
