"""The conformance suite every task package runs on its models, adapters and augmentations.

Each ``check_*`` raises ``AssertionError`` with a message on failure and returns what it measured.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..contracts import MixedTarget
from ..masks import NeuronMasks, call_model

__all__ = [
    "check_identity_at_one",
    "check_every_mask_matters",
    "check_fold_equivalence",
    "check_augmentation_consistent",
    "check_determinism",
]


def _flat(out: Any) -> Tensor:
    """Concatenate every floating tensor in a (nested) model output."""
    if isinstance(out, Tensor):
        return out.float().flatten()
    if hasattr(out, "to_tuple"):  # HF ModelOutput
        out = out.to_tuple()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        parts = [_flat(o) for o in out]
        parts = [p for p in parts if p.numel()]
        return torch.cat(parts) if parts else torch.zeros(0)
    return torch.zeros(0)


@torch.no_grad()
def _eval_out(model: nn.Module, inputs: Any) -> Tensor:
    was = model.training
    model.eval()
    try:
        return _flat(call_model(model, inputs))
    finally:
        model.train(was)


def check_identity_at_one(model: nn.Module, inputs: Any, atol: float = 1e-6, **mask_kwargs) -> NeuronMasks:
    """Masks at 1 leave the eval-mode output unchanged."""
    model = copy.deepcopy(model)
    ref = _eval_out(model, inputs)
    masks = NeuronMasks(model, inputs, **mask_kwargs)
    out = _eval_out(model, inputs)
    err = (out - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0  # an empty output (a detector with no boxes)
    assert out.shape == ref.shape, f"masks at 1 changed the output's shape {tuple(ref.shape)} -> {tuple(out.shape)}"
    assert err <= atol * max(1.0, scale), f"masks at 1 changed the output by {err:.3g}"
    return masks


def check_every_mask_matters(
    model: nn.Module,
    inputs: Any,
    loss_fn: Callable[[Any], Tensor] | None = None,
    *,
    min_fraction: float = 1.0,
    **mask_kwargs,
) -> dict[str, float]:
    """Every mask site gets a non-zero gradient from an eval-mode loss, and scaling that site's masks
    changes the eval-mode output. ``min_fraction`` of the individual mask entries must have a non-zero
    gradient (neurons that are dead on these inputs legitimately get none).

    Returns ``{site: fraction of its masks with a non-zero gradient}``.
    """
    model = copy.deepcopy(model)
    masks = NeuronMasks(model, inputs, **mask_kwargs)
    model.eval()
    out = call_model(model, inputs)
    loss = loss_fn(out) if loss_fn is not None else (_flat(out) ** 2).sum()
    loss.backward()
    fractions = {}
    for site in masks.sites:
        g = masks.masks[site.key].grad
        assert g is not None, f"mask of {site.name} got no gradient"
        fractions[site.name] = float((g != 0).float().mean())
        assert g.abs().sum() > 0, f"mask of {site.name} got an all-zero gradient"
    total = sum(fractions[s.name] * masks.masks[s.key].numel() for s in masks.sites) / masks.num_masks()
    assert total >= min_fraction, f"only {total:.1%} of the mask entries got a gradient"
    base = _eval_out(model, inputs)
    for site in masks.sites:
        m = masks.masks[site.key]
        with torch.no_grad():
            m.mul_(0.5)
        changed = (_eval_out(model, inputs) - base).abs().max().item()
        with torch.no_grad():
            m.fill_(1.0)
        assert changed > 0, f"scaling the masks of {site.name} did not change the eval-mode output"
    return fractions


def check_fold_equivalence(
    model: nn.Module, inputs: Any, atol: float = 1e-5, seed: int = 0, low: float = 0.3, **mask_kwargs
) -> float:
    """Random masks in [low, 1]: the folded plain model equals the masked model (max abs diff ≤ atol,
    relative to the output scale). The folded model has the original class, the same parameter names and
    shapes, and no hooks. Returns the max abs difference."""
    model = copy.deepcopy(model)
    names = {k: v.shape for k, v in model.state_dict().items()}
    masks = NeuronMasks(model, inputs, **mask_kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in masks.masks.values():
            m.copy_(low + (1 - low) * torch.rand(m.shape, generator=g).to(m.device))
    masked = _eval_out(model, inputs)
    cls = type(model)
    folded = masks.fold()
    plain = _eval_out(folded, inputs)
    assert type(folded) is cls, "fold changed the model's class"
    assert {k: v.shape for k, v in folded.state_dict().items()} == names, "fold changed the state_dict keys"
    hooks = [
        n for n, mod in folded.named_modules() if mod._forward_hooks or mod._forward_pre_hooks
    ]
    assert not hooks, f"fold left hooks on {hooks[:3]}"
    err = (masked - plain).abs().max().item() if masked.numel() else 0.0
    scale = max(1.0, masked.abs().max().item())
    assert err <= atol * scale, f"folded model differs from masked model by {err:.3g}"
    return err


def check_augmentation_consistent(
    aug: Callable[[Any, torch.Generator], Any],
    batch: Any,
    check: Callable[[Any, Any], None],
    seed: int = 0,
) -> Any:
    """Run ``aug`` twice with the same seed (identical outputs required, global RNG untouched) and call
    ``check(batch, augmented)`` — the task's own assertion that targets stayed consistent with inputs."""
    state = torch.random.get_rng_state()
    a = aug(batch, torch.Generator().manual_seed(seed))
    b = aug(batch, torch.Generator().manual_seed(seed))
    assert torch.equal(state, torch.random.get_rng_state()), "the augmentation used the global RNG"
    assert _same(a, b), "the augmentation is not deterministic under a fixed generator seed"
    check(batch, a)
    return a


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, MixedTarget):
        return _same(a.a, b.a) and _same(a.b, b.b) and _same(a.lam, b.lam)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def check_determinism(run: Callable[[], dict[str, Tensor]]) -> None:
    """``run()`` twice returns bitwise-identical tensors (e.g. purified state_dicts)."""
    a, b = run(), run()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between two runs with the same seed"
