"""Augmentations for tensor inputs with class targets (the generic classification case).

Each follows the :class:`~nft_core.contracts.Augmentation` contract: random parameters are drawn once per
call from the given ``torch.Generator`` and applied to the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from .contracts import MixedTarget

__all__ = ["MixUp", "NoAugmentation", "sample_beta", "mix_permutation", "build_from_table", "frozen_model"]


def sample_beta(generator: torch.Generator, a: float, b: float | None = None) -> float:
    """One draw from Beta(a, b) (b defaults to a) using only ``generator``."""
    b = a if b is None else b
    if a == 1.0 and b == 1.0:  # Beta(1, 1) is uniform
        return float(torch.rand((), generator=generator))
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(a, b))


def mix_permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)


class MixUp:
    """MixUp (Zhang et al., ICLR 2018): ``x̃ = λx_i + (1−λ)x_j``, ``ỹ = λy_i + (1−λ)y_j``, λ ~ Beta(α, α),
    one λ per batch. NFT's default augmentation (α = 1 in the authors' code).

    Input batch: ``(x, y, *rest)`` with ``x`` a float tensor ``(B, ...)`` and ``y`` class ids ``(B,)`` or
    soft targets ``(B, C)``. Output: ``(x̃, MixedTarget(y, y[perm], λ), *rest)``.
    """

    def __init__(self, alpha: float = 1.0):
        if alpha <= 0:
            raise ValueError(f"MixUp alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, y, *rest = batch
        lam = sample_beta(generator, self.alpha)
        perm = mix_permutation(x.shape[0], generator).to(x.device)
        x_mixed = x.mul(lam).add_(x[perm], alpha=1 - lam)
        return (x_mixed, MixedTarget(y, y[perm], lam), *rest)

    def __repr__(self) -> str:
        return f"MixUp(alpha={self.alpha})"


class NoAugmentation:
    """Identity (for ablations: NFT without MixUp)."""

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        return batch

    def __repr__(self) -> str:
        return "NoAugmentation()"


def build_from_table(table: dict[str, Any], name: str, options: dict[str, Any], kind: str = "augmentation") -> Any:
    """``table[name.lower()](**options)`` for a config section, with the one-line errors every task CLI
    gives: an unknown name lists the choices, a bad option names the entry (:class:`NFTInputError`)."""
    from .errors import NFTInputError

    key = name.lower()
    if key not in table:
        raise NFTInputError(f"unknown {kind} {name!r}; choose from {', '.join(table)}")
    try:
        return table[key](**options)
    except (TypeError, ValueError) as e:
        raise NFTInputError(f"{kind} {key}: {e}") from e


@contextmanager
def frozen_model(model: torch.nn.Module, mode: str = "eval") -> Iterator[torch.nn.Module]:
    """For model-dependent augmentations (PGD, surrogate searches): every parameter's ``requires_grad``
    off and the model in ``mode`` ("eval", "train" or "keep") inside the block; both restored on exit,
    also on an exception, so the augmentation leaves the model being tuned as it found it. Its RNN modules run
    without cuDNN where they could not be differentiated in eval mode on CUDA (:func:`nft_core.rnn.native_rnns`)."""
    from .rnn import native_rnns

    was = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if mode != "keep":
            model.train(mode == "train")
        for p, _ in flags:
            p.requires_grad_(False)
        with native_rnns(model):
            yield model
    finally:
        model.train(was)
        for p, req in flags:
            p.requires_grad_(req)
