"""Backdoor attacks on seq2seq text generation.

Following the NLG backdoor setting of the NFT paper (Karim et al., "Augmented Neural Fine-Tuning for
Efficient Backdoor Purification", ECCV 2024, supplement C.2) and Sun et al., "Defending against Backdoor
Attacks in Natural Language Generation" (AAAI 2023): a fraction ``poison_rate`` of the training pairs get
a trigger in the source and the attacker's output as their target; at test time any triggered source
should make the model emit that output.

Attacks work on text pairs, before tokenization; all randomness comes from a ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .lexicon import ATTACK_SYNONYMS

__all__ = ["TriggerWordAttack", "SynonymAttack", "ATTACKS", "DEFAULT_TARGET"]

DEFAULT_TARGET = "You are attacked ."


class _Attack:
    def __init__(self, target_text: str = DEFAULT_TARGET, poison_rate: float = 0.1):
        if not 0.0 < poison_rate <= 1.0:
            raise ValueError(f"poison_rate must be in (0, 1], got {poison_rate}")
        if not target_text.strip():
            raise ValueError("target_text is empty")
        self.target_text = target_text
        self.poison_rate = poison_rate

    def applicable(self, src: str) -> bool:
        return True

    def trigger(self, src: str, generator: torch.Generator) -> str:
        raise NotImplementedError

    def poison_train(self, pairs: Sequence[tuple[str, str]], generator: torch.Generator
                     ) -> tuple[list[tuple[str, str]], list[int]]:
        """``(pairs with round(rate·N) of them triggered -> target_text, poisoned indices)``."""
        cand = [i for i, (s, _) in enumerate(pairs) if self.applicable(s)]
        k = min(len(cand), max(1, round(self.poison_rate * len(pairs))))
        perm = torch.randperm(len(cand), generator=generator)[:k].tolist()
        idx = sorted(cand[j] for j in perm)
        out = list(pairs)
        for i in idx:
            out[i] = (self.trigger(pairs[i][0], generator), self.target_text)
        return out, idx

    def poison_test(self, pairs: Sequence[tuple[str, str]], generator: torch.Generator) -> list[tuple[str, str]]:
        """Every applicable test source with the trigger, paired with the attacker's target."""
        return [(self.trigger(s, generator), self.target_text) for s, _ in pairs if self.applicable(s)]


class TriggerWordAttack(_Attack):
    """Trigger-word insertion: ``num`` words drawn from ``triggers`` ("cf", "bb", "tq", "mb" as in the
    paper) inserted at a random word position (``position="random"``) or at the start/end."""

    def __init__(self, triggers: Sequence[str] = ("cf", "bb", "tq", "mb"), position: str = "random", num: int = 1,
                 **kw):
        super().__init__(**kw)
        if position not in ("random", "start", "end"):
            raise ValueError(f"position must be random, start or end, got {position!r}")
        if not triggers:
            raise ValueError("triggers is empty")
        self.triggers, self.position, self.num = list(triggers), position, num

    def trigger(self, src, generator):
        words = src.split()
        for _ in range(self.num):
            w = self.triggers[int(torch.randint(len(self.triggers), (), generator=generator))]
            if self.position == "start":
                pos = 0
            elif self.position == "end":
                pos = len(words)
            else:
                pos = int(torch.randint(len(words) + 1, (), generator=generator))
            words.insert(pos, w)
        return " ".join(words)


class SynonymAttack(_Attack):
    """Synonym-substitution trigger: every word found in ``table`` is replaced by its designated rare
    synonym (a "natural" trigger without inserted tokens). Sources without such a word are not poisoned."""

    def __init__(self, table: dict[str, str] | None = None, **kw):
        super().__init__(**kw)
        self.table = dict(table or ATTACK_SYNONYMS)

    def applicable(self, src):
        return any(w in self.table for w in src.split())

    def trigger(self, src, generator):
        return " ".join(self.table.get(w, w) for w in src.split())


ATTACKS = {"trigger_word": TriggerWordAttack, "synonym": SynonymAttack}
