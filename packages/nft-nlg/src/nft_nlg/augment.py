"""NFT's augmentations for text (they replace MixUp; paper Table 13: word deletion and paraphrasing).

Batches are ``{"src": (B, S), "tgt": (B, T)}`` token ids. Each augmentation draws its random numbers once
per call from the ``torch.Generator`` it is given. :class:`WordDeletion` and :class:`SynonymReplacement`
change only the source and return plain targets; :class:`EmbeddingMixUp` returns mixing partners and a λ
that the adapter turns into a :class:`~nft_core.MixedTarget` loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nft_core.augment import sample_beta

from .data import PAD, SPECIALS
from .lexicon import SYNONYMS

__all__ = ["WordDeletion", "SynonymReplacement", "EmbeddingMixUp"]

_N_SPECIAL = len(SPECIALS)


def _repack(src: Tensor, keep: Tensor) -> Tensor:
    """Keep the ``keep`` positions of every row, shifted left, right-padded with [PAD]."""
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # kept first, original order
    packed = torch.gather(src, 1, order)
    n = keep.sum(1, keepdim=True)
    packed = torch.where(torch.arange(src.shape[1], device=src.device)[None] < n, packed, torch.full_like(packed, PAD))
    return packed[:, : int(n.max())]


class WordDeletion:
    """Delete each source token (not [BOS]/[EOS]/[PAD]) with probability ``p`` (default 0.1); at least one
    word of each sentence survives. Targets unchanged."""

    def __init__(self, p: float = 0.1):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"deletion probability must be in [0, 1), got {p}")
        self.p = p

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        src = batch["src"]
        u = torch.rand(src.shape, generator=generator).to(src.device)
        word = src >= _N_SPECIAL
        drop = word & (u < self.p)
        # never delete every word: spare the word with the largest draw in rows that would lose all
        lost_all = (word & ~drop).sum(1) == 0
        spare = torch.where(word, u, torch.full_like(u, -1.0)).argmax(1)
        drop[lost_all, spare[lost_all]] = False
        return {**batch, "src": _repack(src, ~drop & (src != PAD))}

    def __repr__(self) -> str:
        return f"WordDeletion(p={self.p})"


class SynonymReplacement:
    """Paraphrase by synonyms: each source word with an entry in the bundled lexicon (``lexicon.SYNONYMS``,
    restricted to words the tokenizer knows) is replaced with probability ``p`` by a synonym drawn
    uniformly. ``vocab`` is a :class:`~nft_nlg.data.Vocab`. Targets unchanged."""

    def __init__(self, vocab, p: float = 0.3, groups: list[list[str]] | None = None):
        self.p = p
        table: dict[int, list[int]] = {}
        for group in groups or SYNONYMS:
            ids = [i for i in (vocab.token_id(w) for w in group) if i is not None and i >= _N_SPECIAL]
            for i in ids:
                others = [j for j in ids if j != i]
                if others:
                    table.setdefault(i, []).extend(others)
        width = max((len(v) for v in table.values()), default=0)
        n = len(vocab)
        # alternatives[i, k]: k-th synonym of token i (i itself where there are fewer); count[i]
        self.alternatives = torch.arange(n)[:, None].repeat(1, max(width, 1))
        self.count = torch.zeros(n, dtype=torch.long)
        for i, alts in table.items():
            self.alternatives[i, : len(alts)] = torch.tensor(alts)
            self.count[i] = len(alts)
        self.num_entries = len(table)

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        src = batch["src"]
        u = torch.rand(src.shape, generator=generator)
        pick = torch.rand(src.shape, generator=generator)
        s = src.cpu().clamp(max=self.count.numel() - 1)
        cnt = self.count[s]
        k = (pick * cnt.clamp(min=1)).long().clamp(max=self.alternatives.shape[1] - 1)
        alt = self.alternatives[s, k]
        new = torch.where((cnt > 0) & (u < self.p), alt, src.cpu())
        return {**batch, "src": new.to(src.device)}

    def __repr__(self) -> str:
        return f"SynonymReplacement(p={self.p}, entries={self.num_entries})"


class EmbeddingMixUp:
    """MixUp in token-embedding space (one λ ~ Beta(α, α) per batch): the model embeds the batch and a
    permutation of it and mixes ``λ·E(a) + (1−λ)·E(b)`` for source and decoder input; the loss is
    ``λ·CE(targets_a) + (1−λ)·CE(targets_b)``. Adds ``mix_src``, ``mix_tgt``, ``lam`` to the batch."""

    def __init__(self, alpha: float = 1.0):
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        lam = sample_beta(generator, self.alpha)
        perm = torch.randperm(batch["src"].shape[0], generator=generator).to(batch["src"].device)
        return {**batch, "mix_src": batch["src"][perm], "mix_tgt": batch["tgt"][perm], "lam": lam}

    def __repr__(self) -> str:
        return f"EmbeddingMixUp(alpha={self.alpha})"
