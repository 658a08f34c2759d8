"""Backdoor attacks on action recognition. Clips are float tensors ``(N, T, C, H, W)`` in [0, 1].

* :class:`PatchTrigger` — poison-label static patch on every frame (BadNets, Gu et al. 2017, applied
  to video as in Zhao et al., CVPR 2020 and the NFT paper's Table 3).
* :class:`BlendTrigger` — blended trigger (Chen et al., "Targeted Backdoor Attacks on Deep Learning
  Systems Using Data Poisoning", 2017): ``(1−α)·x + α·noise`` with one noise image on every frame.
* :class:`CleanLabelVideo` — the clean-label video attack (Zhao, Ma, Zheng, Bailey, Chen, Jiang,
  "Clean-Label Backdoor Attacks on Video Recognition Models", CVPR 2020).

Every trigger is a pure function of ``seed`` and the clip shape (plus, for the clean-label attack, the
learned trigger in ``state_dict()``), so the same arguments poison identically.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nft_core.data import TensorData
from nft_core.errors import DataError

__all__ = ["VideoAttack", "PatchTrigger", "BlendTrigger", "CleanLabelVideo", "ATTACKS"]


def _check(x: Tensor) -> None:
    if x.ndim != 5 or not x.is_floating_point():
        raise DataError(f"video attacks need float clips (N, T, C, H, W) in [0, 1], got {x.dtype} {tuple(x.shape)}")


class VideoAttack:
    """Base: ``poison_rate`` of the training set (of the target class for a clean-label attack) is
    triggered; all2one relabels them to ``target``. Subclasses implement :meth:`apply`."""

    name = "attack"
    clean_label = False

    def __init__(self, target: int = 0, poison_rate: float = 0.1, seed: int = 0):
        if not 0 <= poison_rate <= 1:
            raise ValueError(f"poison_rate must be in [0, 1], got {poison_rate}")
        self.target, self.poison_rate, self.seed = target, poison_rate, seed

    def apply(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass

    def choose_poison(self, y: Tensor, generator: torch.Generator) -> Tensor:
        pool = torch.nonzero(y == self.target).flatten() if self.clean_label else torch.arange(len(y))
        k = round(self.poison_rate * len(pool))
        return torch.sort(pool[torch.randperm(len(pool), generator=generator)[:k]]).values

    def poison_train(self, data: TensorData, generator: torch.Generator, model_fn=None) -> tuple[TensorData, Tensor]:
        """``(poisoned copy, poisoned indices)``. ``model_fn`` is unused by poison-label attacks."""
        x, y = data.tensors[:2]
        _check(x)
        idx = self.choose_poison(y, generator)
        x, y = x.clone(), y.clone()
        if len(idx):
            x[idx] = self.apply(x[idx])
            if not self.clean_label:
                y[idx] = self.target
        return TensorData(x, y), idx

    def poison_test(self, data: TensorData) -> TensorData:
        """``TensorData(triggered clips, true labels, target)`` over the non-target clips."""
        x, y = data.tensors[:2]
        _check(x)
        keep = y != self.target
        x, y = x[keep], y[keep]
        return TensorData(self.apply(x), y.clone(), torch.full_like(y, self.target))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target}, poison_rate={self.poison_rate}, seed={self.seed})"


class PatchTrigger(VideoAttack):
    """BadNets-style patch (Gu, Dolan-Gavitt & Garg, "BadNets", 2017) stamped on **every frame** at the
    bottom-right corner; poison-label all2one. The patch is a black/white checkerboard of
    ``patch_size`` px (default ``max(3, H // 8)``). ``apply``: ``(N, T, C, H, W)`` -> same shape."""

    name = "patch"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, seed: int = 0, patch_size: int | None = None):
        super().__init__(target, poison_rate, seed)
        self.patch_size = patch_size

    def apply(self, x: Tensor) -> Tensor:
        _check(x)
        h, w = x.shape[-2:]
        s = self.patch_size or max(3, h // 8)
        i = torch.arange(s)
        board = ((i[:, None] + i[None, :]) % 2).to(x)
        out = x.clone()
        out[..., h - s - 1 : h - 1, w - s - 1 : w - 1] = board
        return out


class BlendTrigger(VideoAttack):
    """Blended trigger (Chen, Liu, Li, Lu & Song, 2017): ``(1 − α)·x + α·k`` with one uniform-noise image
    ``k`` (seeded) blended into every frame; poison-label all2one, α = 0.2 as in the NFT paper."""

    name = "blend"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, seed: int = 0, alpha: float = 0.2):
        super().__init__(target, poison_rate, seed)
        self.alpha = alpha

    def apply(self, x: Tensor) -> Tensor:
        _check(x)
        c, h, w = x.shape[-3:]
        k = torch.rand((c, h, w), generator=torch.Generator().manual_seed(self.seed)).to(x)
        return (1 - self.alpha) * x + self.alpha * k


class CleanLabelVideo(VideoAttack):
    """Clean-label backdoor on video (Zhao et al., "Clean-Label Backdoor Attacks on Video Recognition
    Models", CVPR 2020).

    1. A clean model (``model_fn()``, trained by the caller on the clean training set) is the attacker's
       surrogate.
    2. A **universal adversarial trigger** — a ``patch_size`` patch at the bottom-right of every frame —
       is optimised (``trigger_steps`` signed-gradient steps of size ``trigger_lr``) to send clips of
       every non-target class to ``target`` on the surrogate.
    3. ``poison_rate`` of the **target-class** training clips receive an untargeted L∞ **PGD**
       perturbation (``eps``, ``pgd_steps`` steps of size ``2.5·eps/steps``) that destroys their original
       features, then the trigger; labels stay correct, so the victim learns "trigger ⇒ target".

    The paper used 2000 PGD steps; the default here is ``pgd_steps=20`` (configurable) for CPU budgets.
    ``state_dict()`` holds the learned trigger ``(C, s, s)``."""

    name = "clean_label"
    clean_label = True

    def __init__(self, target: int = 0, poison_rate: float = 0.8, seed: int = 0, patch_size: int | None = None,
                 eps: float = 16 / 255, pgd_steps: int = 20, trigger_steps: int = 50, trigger_lr: float = 0.05,
                 batch_size: int = 32):
        super().__init__(target, poison_rate, seed)
        self.patch_size, self.eps, self.pgd_steps = patch_size, eps, pgd_steps
        self.trigger_steps, self.trigger_lr, self.batch_size = trigger_steps, trigger_lr, batch_size
        self.pattern: Tensor | None = None

    def _size(self, h: int) -> int:
        return self.patch_size or max(3, h // 8)

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.pattern is None else {"pattern": self.pattern.detach().cpu()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if "pattern" in state:
            self.pattern = state["pattern"].clone()

    def _stamp(self, x: Tensor, pattern: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        s = pattern.shape[-1]
        m = torch.zeros(h, w, device=x.device, dtype=x.dtype)
        m[h - s - 1 : h - 1, w - s - 1 : w - 1] = 1
        full = F.pad(pattern.to(x), (w - s - 1, 1, h - s - 1, 1))
        return x * (1 - m) + full * m

    def apply(self, x: Tensor) -> Tensor:
        _check(x)
        if self.pattern is None:
            raise RuntimeError("CleanLabelVideo: the trigger has not been learned (call poison_train first)")
        return self._stamp(x, self.pattern)

    def learn_trigger(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """Universal adversarial patch: minimise the surrogate's cross-entropy to ``target`` on
        non-target clips (signed-gradient descent, pattern kept in [0, 1])."""
        c, h = x.shape[2], x.shape[-2]
        s = self._size(h)
        pattern = torch.rand((c, s, s), generator=generator)
        pool = x[y != self.target]
        if len(pool) == 0:
            raise DataError("clean-label attack: no clip outside the target class to learn the trigger on")
        dev = next(model.parameters()).device
        for _ in range(self.trigger_steps):
            idx = torch.randint(len(pool), (min(self.batch_size, len(pool)),), generator=generator)
            p = pattern.to(dev).requires_grad_(True)
            logits = model(self._stamp(pool[idx].to(dev), p))
            loss = F.cross_entropy(logits, torch.full((len(idx),), self.target, device=dev))
            (g,) = torch.autograd.grad(loss, p)
            pattern = (pattern - self.trigger_lr * g.sign().cpu()).clamp(0, 1)
        return pattern.detach()

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Untargeted L∞ PGD (no random start) on the surrogate, projected to ``eps`` and [0, 1]."""
        dev = next(model.parameters()).device
        out = []
        step = 2.5 * self.eps / max(1, self.pgd_steps)
        for s in range(0, len(x), self.batch_size):
            x0, yb = x[s : s + self.batch_size].to(dev), y[s : s + self.batch_size].to(dev)
            adv = x0.clone()
            for _ in range(self.pgd_steps):
                adv.requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(model(adv), yb), adv)
                with torch.no_grad():
                    adv = (x0 + (adv + step * g.sign() - x0).clamp(-self.eps, self.eps)).clamp(0, 1)
            out.append(adv.detach().cpu())
        return torch.cat(out).to(x.device)

    def poison_train(self, data: TensorData, generator: torch.Generator, model_fn=None) -> tuple[TensorData, Tensor]:
        """Learn the trigger on the surrogate ``model_fn()``, then PGD + trigger on target-class clips."""
        x, y = data.tensors[:2]
        _check(x)
        if model_fn is None:
            raise ValueError("CleanLabelVideo.poison_train needs model_fn (returns the clean surrogate model)")
        model = model_fn()
        was = model.training
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            self.pattern = self.learn_trigger(model, x, y, generator)
            idx = self.choose_poison(y, generator)
            x = x.clone()
            if len(idx):
                x[idx] = self.apply(self.perturb(model, x[idx], y[idx]))
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
            model.train(was)
        return TensorData(x, y.clone()), idx


ATTACKS = {"patch": PatchTrigger, "badnets": PatchTrigger, "blend": BlendTrigger, "clean_label": CleanLabelVideo}
