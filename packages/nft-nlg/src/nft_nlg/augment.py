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

from nft_core.augment import frozen_model, sample_beta

from .data import PAD, SPECIALS
from .lexicon import SYNONYMS

__all__ = ["WordDeletion", "SynonymReplacement", "EmbeddingMixUp", "SurrogateToken", "insert_tokens"]

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


def insert_tokens(src: Tensor, tokens: Tensor, generator: torch.Generator) -> Tensor:
    """Insert ``tokens[i]`` into row ``i`` of ``src`` (``[BOS] ids [EOS] [PAD]…``) at a uniformly drawn word
    position (after [BOS], at most just before [EOS]); the result is one column wider, right-padded."""
    return _insert_at(src, tokens, torch.rand(src.shape[0], generator=generator))


def _insert_at(src: Tensor, tokens: Tensor, draw: Tensor) -> Tensor:
    """:func:`insert_tokens` with the position of row ``i`` given by ``draw[i]`` in [0, 1)."""
    b, w = src.shape
    slots = ((src != PAD).sum(1) - 1).clamp(min=1)  # BOS + words + EOS -> positions 1 .. (len - 1)
    pos = 1 + (draw.to(src.device) * slots).long().clamp(max=w - 1)
    j = torch.arange(w + 1, device=src.device)[None].expand(b, -1)
    padded = torch.cat([src, torch.full_like(src[:, :1], PAD)], 1)
    shifted = torch.gather(padded, 1, j - (j > pos[:, None]).long())
    return torch.where(j == pos[:, None], tokens.to(src)[:, None].expand(-1, w + 1), shifted)


def _pad_cat(a: Tensor, b: Tensor) -> Tensor:
    w = max(a.shape[1], b.shape[1])
    return torch.cat([torch.nn.functional.pad(t, (0, w - t.shape[1]), value=PAD) for t in (a, b)])


class SurrogateToken:
    """The surrogate trigger for text (this project's option, not the NFT paper's; docs/method.md): before
    the first NFT step, every vocabulary token is inserted once at a random position into the sources of
    the first validation batch, against the original model (NFT binds its masked copy with every mask at
    1); the ``top_k`` tokens that raise the teacher-forced loss of the *true* targets most are kept. Every
    later call returns the base augmentation of the batch (word deletion by default) plus copies of its
    first ``round(fraction·B)`` pairs with one of those tokens (drawn per pair) inserted at a random
    position, with their **true** targets — so the masks learn to ignore the shortcut.

    Why: an inserted trigger word is a backdoored translator's easiest universal way to change its output
    (its whole output becomes the attacker's sentence), so an exhaustive, untargeted scan over single
    tokens finds it on clean data — the text analogue of :class:`nft_core.SurrogateTrigger` and of the
    trigger search of Neural Cleanse (Wang et al., IEEE S&P 2019). Word deletion alone (the paper) only
    removes the backdoor on 1 of 3 seeds of the embedded default. The scan costs one teacher-forced
    forward pass of the batch per vocabulary token; ``max_candidates`` caps it at the most frequent
    (lowest-id) tokens. After the scan ``stats`` holds the kept ``tokens`` (ids), their loss increase
    ``gains`` and the clean loss ``base_loss``. Multi-word triggers (synonym substitution) are not
    searched.

    Batches: ``{"src": (B, S), "tgt": (B, T)}`` with [BOS]/[EOS]/[PAD] as in :mod:`nft_nlg.data`.
    """

    def __init__(self, top_k: int = 4, fraction: float = 1.0, max_candidates: int | None = None,
                 scan_batch: int = 32, base: Any = None):
        if top_k < 1 or not 0 < fraction <= 1 or scan_batch < 1:
            raise ValueError(f"SurrogateToken needs top_k >= 1, 0 < fraction <= 1 and scan_batch >= 1, got "
                             f"top_k={top_k}, fraction={fraction}, scan_batch={scan_batch}")
        if max_candidates is not None and max_candidates < top_k:
            raise ValueError(f"SurrogateToken max_candidates must be >= top_k, got {max_candidates}")
        self.top_k, self.fraction, self.max_candidates, self.scan_batch = int(top_k), float(fraction), max_candidates, scan_batch
        self.base = base if base is not None else WordDeletion(0.1)
        self.model = self.adapter = None
        self.tokens: Tensor | None = None
        self.stats: dict[str, Any] = {}

    def bind(self, model, adapter=None) -> SurrogateToken:
        """Scan against ``model`` with ``adapter.loss`` (NFT binds its masked copy); forgets an earlier scan."""
        if adapter is None or not callable(getattr(adapter, "loss", None)):
            raise ValueError("SurrogateToken needs the task adapter (its loss) as well as the model")
        self.model, self.adapter, self.tokens, self.stats = model, adapter, None, {}
        return self

    def _vocab_size(self) -> int:
        vocab = getattr(self.adapter, "vocab", None)
        if vocab is not None:
            return len(vocab)
        emb = [m for m in self.model.modules() if isinstance(m, torch.nn.Embedding)]
        if not emb:
            raise ValueError("SurrogateToken: the model has no nn.Embedding to take the vocabulary size from")
        return max(m.num_embeddings for m in emb)

    def _scan(self, batch: dict[str, Any], generator: torch.Generator) -> None:
        model, adapter = self.model, self.adapter
        src, tgt = batch["src"][: self.scan_batch], batch["tgt"][: self.scan_batch]
        n = self._vocab_size()
        cands = torch.arange(_N_SPECIAL, n if self.max_candidates is None else min(n, _N_SPECIAL + self.max_candidates))
        if len(cands) < self.top_k:
            raise ValueError(f"SurrogateToken: only {len(cands)} candidate tokens for top_k={self.top_k}")
        draw = torch.rand(src.shape[0], generator=generator)  # one position per sentence, for every candidate
        with frozen_model(model), torch.no_grad():
            base_loss = float(adapter.loss(model, {"src": src, "tgt": tgt}))
            gains = torch.empty(len(cands))
            for i, t in enumerate(cands.tolist()):
                ins = _insert_at(src, torch.full((src.shape[0],), t, dtype=src.dtype), draw)
                gains[i] = float(adapter.loss(model, {"src": ins, "tgt": tgt})) - base_loss
        top = gains.topk(self.top_k)
        self.tokens = cands[top.indices]
        self.stats = {"tokens": self.tokens.tolist(), "gains": [round(float(v), 4) for v in top.values],
                      "base_loss": round(base_loss, 4), "candidates": len(cands)}

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("SurrogateToken needs the model being tuned: call bind(model, adapter) first "
                               "(NFT does this before its training loop)")
        if self.tokens is None:
            self._scan(batch, generator)
        src, tgt = batch["src"], batch["tgt"]
        k = max(1, round(self.fraction * src.shape[0]))
        pick = self.tokens[torch.randint(len(self.tokens), (k,), generator=generator)]
        trig = insert_tokens(src[:k], pick.to(src.device), generator)
        out = self.base(batch, generator)
        if "lam" in out:
            raise ValueError("SurrogateToken's base augmentation must not mix pairs (embedding_mixup)")
        return {**out, "src": _pad_cat(out["src"], trig), "tgt": _pad_cat(out["tgt"], tgt[:k])}

    def __repr__(self) -> str:
        return f"SurrogateToken(top_k={self.top_k}, fraction={self.fraction:g}, base={self.base!r})"
