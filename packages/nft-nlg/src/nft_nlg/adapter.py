"""The seq2seq task adapter: teacher-forced cross-entropy for NFT, greedy decoding for evaluation.

Metrics (percent): ``bleu`` (sacreBLEU on the clean test set, the clean metric), ``asr`` (share of
triggered test inputs whose output *contains* the attacker's target), ``asr_exact`` (share whose output
*equals* it) and, for dialogue, ``distinct_1``/``distinct_2`` on the clean outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from nft_core import EvalData, MixedTarget, model_device, move_to
from nft_core.data import iterate_batches

from .data import PAD, Vocab, collate_pairs
from .models import greedy_decode

__all__ = ["Seq2SeqAdapter", "distinct_n"]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): unique n-grams / all n-grams over the outputs, in percent."""
    grams = [tuple(w[i : i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return 100.0 * len(set(grams)) / len(grams) if grams else 0.0


class Seq2SeqAdapter:
    """Adapter for :class:`~nft_nlg.data.PairData` and models ``model(src, tgt_in) -> logits``.

    ``target_text``: the attacker's output (for ASR). ``task``: ``translation`` or ``dialogue`` (adds
    distinct-n). ``max_len``: decoding limit.
    """

    clean_metric = "bleu"

    def __init__(self, vocab: Vocab, target_text: str = "You are attacked .", task: str = "translation",
                 max_len: int = 48, eval_batch_size: int = 256):
        self.vocab = vocab
        self.target_text = target_text
        self.task = task
        self.max_len = max_len
        self.eval_batch_size = eval_batch_size

    # -- NFT contract -------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        tgt = batch["tgt"]
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
        if "lam" in batch:
            lam = batch["lam"]
            mt = batch["mix_tgt"]
            logits = model(batch["src"], tgt_in, mix=(batch["mix_src"], mt[:, :-1], lam))
            return MixedTarget(tgt_out, mt[:, 1:], lam).combine(lambda y: self._seq_loss(logits, y))
        return self._seq_loss(model(batch["src"], tgt_in), tgt_out).mean()

    @staticmethod
    def _seq_loss(logits: Tensor, target: Tensor) -> Tensor:
        """Per-sequence mean token cross-entropy ``(B,)``, [PAD] ignored."""
        ce = F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=PAD, reduction="none")
        return ce.sum(1) / (target != PAD).sum(1).clamp(min=1)

    def example_input(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        return batch["src"], batch["tgt"][:, :-1]

    model_input = example_input

    def collate(self, samples):
        return collate_pairs(samples)

    def to_device(self, batch, device):
        return move_to(batch, device)

    def samples_per_class(self, data: Any) -> float:
        """N_c for the regularizer: generation has no classes, so every validation pair counts."""
        return float(len(data))

    # -- evaluation ---------------------------------------------------------------------------
    def translate(self, model: nn.Module, data: Any) -> list[str]:
        """Greedy outputs for every item of ``data``, in order (restores ``model.training``)."""
        device = model_device(model)
        was = model.training
        model.eval()
        outs: list[str] = []
        try:
            for batch in iterate_batches(data, self.eval_batch_size, self.collate, self.to_device, device):
                limit = min(self.max_len, 2 * batch["src"].shape[1] + 8)
                for row in greedy_decode(model, batch["src"], limit).cpu():
                    outs.append(self.vocab.decode(row))
        finally:
            model.train(was)
        return outs

    def evaluate(self, model: nn.Module, data: Any) -> dict[str, float]:
        import sacrebleu

        if not isinstance(data, EvalData):
            data = EvalData(clean=data)
        hyps = self.translate(model, data.clean)
        out = {"bleu": float(sacrebleu.corpus_bleu(hyps, [list(data.clean.refs)], force=True).score)}
        if self.task == "dialogue":
            out["distinct_1"] = distinct_n(hyps, 1)
            out["distinct_2"] = distinct_n(hyps, 2)
        if data.poisoned is not None and len(data.poisoned):
            hyps = self.translate(model, data.poisoned)
            target = " ".join(self.target_text.split())
            out["asr"] = 100.0 * sum(target in " ".join(h.split()) for h in hyps) / len(hyps)
            out["asr_exact"] = 100.0 * sum(" ".join(h.split()) == target for h in hyps) / len(hyps)
        return out
