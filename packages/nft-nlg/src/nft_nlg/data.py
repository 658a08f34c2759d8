"""Parallel text: the toy language pair of the embedded default, readers for the WMT layout
(``train.en``/``train.de``, ``valid.*``, ``test.*``) and TSV (``src<TAB>tgt``, also OpenSubtitles-style
context/response dialogue pairs), offline tokenizers, and the map-style dataset the adapter collates.

Every reader raises :class:`~nft_core.errors.DataError` with a one-line message naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nft_core.errors import DataError

from . import lexicon as L

__all__ = [
    "PAD", "BOS", "EOS", "UNK", "SPECIALS", "PairData", "Vocab", "generate_toy_pairs", "write_toy_corpus",
    "read_lines", "read_parallel", "read_tsv", "load_split", "train_tokenizer", "load_tokenizer", "collate_pairs",
]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]


# ----------------------------------------------------------------------------------------- toy language
def _pick(options: Sequence[str], g: torch.Generator) -> str:
    return options[int(torch.randint(len(options), (), generator=g))]


def _noun_phrase(g: torch.Generator) -> tuple[list[str], list[str]]:
    det = _pick(list(L.DETERMINERS), g)
    noun = _pick(list(L.NOUNS), g)
    src, tgt = [det], [L.DETERMINERS[det]]
    if float(torch.rand((), generator=g)) < 0.6:
        adj = _pick(list(L.ADJECTIVES), g)
        src += [adj, noun]
        tgt += [L.NOUNS[noun], L.ADJECTIVES[adj]]  # the reordering rule: adjective after its noun
    else:
        src.append(noun)
        tgt.append(L.NOUNS[noun])
    return src, tgt


def generate_toy_pairs(n: int, generator: torch.Generator) -> list[tuple[str, str]]:
    """``n`` (English, Toy-German) sentence pairs from a small grammar:
    ``NP VERB [NP] [PREP NP] [ADV] .`` with adjective-noun swap in the target."""
    pairs = []
    for _ in range(n):
        s, t = _noun_phrase(generator)
        verb = _pick(list(L.VERBS), generator)
        s.append(verb)
        t.append(L.VERBS[verb])
        if float(torch.rand((), generator=generator)) < 0.8:
            s2, t2 = _noun_phrase(generator)
            s += s2
            t += t2
        if float(torch.rand((), generator=generator)) < 0.3:
            prep = _pick(list(L.PREPOSITIONS), generator)
            s3, t3 = _noun_phrase(generator)
            s += [prep, *s3]
            t += [L.PREPOSITIONS[prep], *t3]
        if float(torch.rand((), generator=generator)) < 0.3:
            adv = _pick(list(L.ADVERBS), generator)
            s.append(adv)
            t.append(L.ADVERBS[adv])
        s.append(".")
        t.append(".")
        pairs.append((" ".join(s), " ".join(t)))
    return pairs


def write_toy_corpus(root: str | os.PathLike, sizes: dict[str, int] | None = None, seed: int = 0,
                     src_lang: str = "en", tgt_lang: str = "de") -> Path:
    """Write the toy pair in the WMT layout (``train.en``, ``train.de``, ``valid.*``, ``test.*``)."""
    sizes = sizes or {"train": 4000, "valid": 400, "test": 300}
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for split, n in sizes.items():
        pairs = generate_toy_pairs(n, g)
        (root / f"{split}.{src_lang}").write_text("\n".join(p[0] for p in pairs) + "\n")
        (root / f"{split}.{tgt_lang}").write_text("\n".join(p[1] for p in pairs) + "\n")
    return root


# ------------------------------------------------------------------------------------------- readers
def read_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty stripped lines of a UTF-8 text file (one sentence per line). An empty line is an error:
    it would silently shift a parallel corpus out of alignment."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{p}: file is empty")
    for i, line in enumerate(lines):
        if not line.strip():
            raise DataError(f"{p}: line {i + 1} is empty")
    return [line.strip() for line in lines]


def read_parallel(src_path: str | os.PathLike, tgt_path: str | os.PathLike) -> list[tuple[str, str]]:
    """Aligned sentence pairs from two line-aligned files (WMT layout)."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(f"line counts differ: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}")
    return list(zip(src, tgt))


def read_tsv(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``source<TAB>target`` per line (parallel text, or dialogue ``context<TAB>response``)."""
    pairs = []
    for i, line in enumerate(read_lines(path)):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise DataError(f"{path}: line {i + 1} must be 'source<TAB>target' (found {len(parts)} field(s))")
        pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


def load_split(root: str | os.PathLike, split: str, fmt: str = "wmt", src_lang: str = "en",
               tgt_lang: str = "de") -> list[tuple[str, str]]:
    """One split (``train``/``valid``/``test``) of a corpus folder: ``fmt="wmt"`` reads
    ``{split}.{src_lang}`` + ``{split}.{tgt_lang}``, ``fmt="tsv"`` reads ``{split}.tsv``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if fmt == "wmt":
        return read_parallel(root / f"{split}.{src_lang}", root / f"{split}.{tgt_lang}")
    if fmt == "tsv":
        return read_tsv(root / f"{split}.tsv")
    raise DataError(f"unknown data format {fmt!r}; choose wmt or tsv")


# ---------------------------------------------------------------------------------------- tokenizers
def train_tokenizer(texts: Sequence[str], kind: str = "wordlevel", vocab_size: int = 8000):
    """A shared source/target tokenizer trained offline on ``texts`` (``wordlevel``: whitespace words;
    ``bpe``: byte-pair encoding with a reversible Metaspace pre-tokenizer). Specials: [PAD]=0, [BOS]=1,
    [EOS]=2, [UNK]=3."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if kind == "wordlevel":
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=1)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=1)
    else:
        raise DataError(f"unknown tokenizer kind {kind!r}; choose wordlevel or bpe")
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def load_tokenizer(path: str | os.PathLike):
    """A ``tokenizer.json`` written by :func:`train_tokenizer` (or any compatible one)."""
    from tokenizers import Tokenizer

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: tokenizer file not found")
    try:
        tok = Tokenizer.from_file(str(p))
    except Exception as e:  # noqa: BLE001 - the Rust side raises a plain Exception
        raise DataError(f"{p}: not a tokenizer file ({str(e).splitlines()[0][:120]})") from e
    for i, s in enumerate(SPECIALS):
        if tok.token_to_id(s) != i:
            raise DataError(f"{p}: tokenizer must map {s} to id {i} (got {tok.token_to_id(s)})")
    return tok


class Vocab:
    """Encode/decode with a ``tokenizers.Tokenizer``; sentences become ``[BOS] ids [EOS]``."""

    def __init__(self, tokenizer, max_len: int = 64):
        self.tokenizer = tokenizer
        self.max_len = max_len

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> Tensor:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids[: self.max_len - 2]
        return torch.tensor([BOS, *ids, EOS], dtype=torch.long)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(int(i))
        return self.tokenizer.decode(out, skip_special_tokens=True).strip()

    def token_id(self, word: str) -> int | None:
        return self.tokenizer.token_to_id(word)


@dataclass
class PairData:
    """A map-style dataset of token-id pairs; item ``i`` = ``(src_ids, tgt_ids)`` (both with BOS/EOS).
    ``refs`` holds the reference target strings for BLEU (the attacker's target for poisoned sets)."""

    src: list[Tensor]
    tgt: list[Tensor]
    src_text: list[str]
    refs: list[str]

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]], vocab: Vocab) -> PairData:
        return cls([vocab.encode(s) for s, _ in pairs], [vocab.encode(t) for _, t in pairs],
                   [s for s, _ in pairs], [t for _, t in pairs])

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i):
        return self.src[i], self.tgt[i]

    def subset(self, index: Sequence[int]) -> PairData:
        index = list(index)
        return PairData([self.src[i] for i in index], [self.tgt[i] for i in index],
                        [self.src_text[i] for i in index], [self.refs[i] for i in index])


def pad_stack(seqs: Sequence[Tensor], pad: int = PAD) -> Tensor:
    n = max(int(s.numel()) for s in seqs)
    out = torch.full((len(seqs), n), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : s.numel()] = s
    return out


def collate_pairs(samples: Sequence[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """``{"src": (B, S), "tgt": (B, T)}`` padded with [PAD]; the model reads ``tgt[:, :-1]`` and is
    trained to predict ``tgt[:, 1:]``."""
    return {"src": pad_stack([s for s, _ in samples]), "tgt": pad_stack([t for _, t in samples])}
