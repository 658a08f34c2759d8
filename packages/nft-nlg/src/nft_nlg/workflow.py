"""From an :class:`~nft_nlg.config.NLGConfig` to data, tokenizer and models: the embedded toy corpus,
backdoor training (cached), and loading a user's own model for purification."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nft_core import EvalData
from nft_core.checkpoint import atomic_write, load_checkpoint_into, save_model
from nft_core.errors import DataError, NFTInputError
from nft_core.init import seeded_init_
from nft_core.task import cache_root as task_cache_root
from nft_core.task import resolve_device

from .adapter import Seq2SeqAdapter
from .attacks import ATTACKS
from .augment import EmbeddingMixUp, SurrogateToken, SynonymReplacement, WordDeletion
from .config import NLGConfig
from .data import (
    PairData,
    Vocab,
    collate_pairs,
    load_split,
    load_tokenizer,
    train_tokenizer,
    write_toy_corpus,
)
from .models import create_model

log = logging.getLogger("nft")

__all__ = ["NLGRun", "backdoor", "load_corpus", "build_attack", "build_augmentation", "resolve_device",
           "train_seq2seq", "load_user_inputs", "cache_root"]


def nft_model_options(model, options) -> dict:
    """HF models share embedding tensors (encoder/decoder, tied LM head): keep those out of NFT's masks."""
    from .fairseq_backend import FairseqSeq2Seq
    from .models import HFSeq2Seq, shared_weight_modules

    if isinstance(model, (HFSeq2Seq, FairseqSeq2Seq)) and "exclude" not in options:
        tied = shared_weight_modules(model)
        return {"exclude": tied} if tied else {}
    return {}


def cache_root(cfg: NLGConfig) -> Path:
    return task_cache_root("nlg", cfg.cache_dir)


def _cap(pairs, n: int):
    return pairs[:n] if n and n > 0 else pairs


def load_corpus(cfg: NLGConfig, splits=("train", "valid", "test")) -> dict[str, list[tuple[str, str]]]:
    """Text pairs per split. ``toy`` writes the generated corpus (WMT layout) under the cache once and
    reads it back through the same loader as real data."""
    d = cfg.data
    name = d.name.lower()
    if name == "toy":
        sizes = {k: int(v) for k, v in d.toy_sizes.items()}
        key = hashlib.sha256(json.dumps([sizes, cfg.seed], sort_keys=True).encode()).hexdigest()[:12]
        root = cache_root(cfg) / f"toy-corpus-{key}"
        if not (root / "test.de").exists():
            tmp = root.with_name(root.name + f".tmp{os.getpid()}")
            write_toy_corpus(tmp, sizes, seed=cfg.seed)
            try:
                os.replace(tmp, root)
            except OSError:  # another process finished first
                pass
        fmt, src_lang, tgt_lang = "wmt", "en", "de"
    elif name in ("wmt", "tsv", "opensubtitles"):
        if not d.root:
            raise NFTInputError(f"data.name={name} needs data.root (the corpus folder)")
        root = Path(d.root)
        fmt = d.fmt or ("wmt" if name == "wmt" else "tsv")
        src_lang, tgt_lang = d.src_lang, d.tgt_lang
    else:
        raise NFTInputError(f"unknown data.name {d.name!r}; choose toy, wmt, tsv or opensubtitles")
    caps = {"train": d.max_train, "valid": d.max_valid, "test": d.max_test}
    return {s: _cap(load_split(root, s, fmt, src_lang, tgt_lang), caps[s]) for s in splits}


def build_attack(cfg: NLGConfig, name: str | None = None):
    a = cfg.attack
    name = (name or a.name).lower()
    if name not in ATTACKS:
        raise NFTInputError(f"unknown attack {name!r}; choose from {', '.join(sorted(ATTACKS))}")
    try:
        return ATTACKS[name](target_text=a.target_text, poison_rate=a.poison_rate, **a.options)
    except (TypeError, ValueError) as e:
        raise NFTInputError(f"attack {name}: {e}") from e


def build_augmentation(cfg: NLGConfig, vocab: Vocab):
    from nft_core import NoAugmentation

    name = cfg.augmentation.name.lower()
    opts = dict(cfg.augmentation.options)
    try:
        if name == "word_deletion":
            return WordDeletion(**opts)
        if name == "synonym":
            return SynonymReplacement(vocab, **opts)
        if name == "embedding_mixup":
            return EmbeddingMixUp(**opts)
        if name == "surrogate":
            base = opts.pop("base", "word_deletion")
            if base not in ("word_deletion", "synonym", "none"):
                raise ValueError(f"base must be word_deletion, synonym or none, got {base!r}")
            base_opts = opts.pop("base_options", {})
            base_aug = (WordDeletion(**base_opts) if base == "word_deletion" else SynonymReplacement(vocab, **base_opts)
                        if base == "synonym" else NoAugmentation())
            return SurrogateToken(base=base_aug, **opts)
        if name == "none":
            return NoAugmentation()
    except (TypeError, ValueError) as e:
        raise NFTInputError(f"augmentation {name}: {e}") from e
    raise NFTInputError(f"unknown augmentation {name!r}; choose word_deletion, synonym, embedding_mixup, surrogate, none")


def build_model(cfg: NLGConfig, vocab_size: int) -> nn.Module:
    m = cfg.model
    if m.spec.startswith("hf:"):
        return create_model(m.spec, vocab_size)
    kw = dict(d_model=m.d_model, heads=m.heads, layers=m.layers, ff=m.ff, dropout=m.dropout,
              max_len=max(128, cfg.data.max_len + 2))
    return create_model(m.spec, vocab_size, **kw)


def train_seq2seq(model: nn.Module, data: PairData, *, epochs: int, lr: float, batch_size: int, warmup: int,
                  generator: torch.Generator, device, progress=None) -> nn.Module:
    """Teacher-forced cross-entropy with AdamW, linear warm-up then cosine decay; shuffling from
    ``generator``. Returns the model in eval mode."""
    adapter = Seq2SeqAdapter(vocab=None)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    spe = max(1, -(-len(data) // batch_size))
    total = epochs * spe
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(len(data), generator=generator).tolist()
        for s in range(0, len(data), batch_size):
            batch = adapter.to_device(collate_pairs([data[i] for i in perm[s : s + batch_size]]), device)
            f = min(1.0, (step + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = lr * f
            loss = adapter.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if progress is not None:
                progress.update(1)
    return model.eval()


@dataclass
class NLGRun:
    model: nn.Module
    vocab: Vocab
    val: PairData
    eval_data: EvalData
    adapter: Seq2SeqAdapter
    meta: dict[str, Any]
    tokenizer_path: Path | None = None


def _adapter(cfg: NLGConfig, vocab: Vocab) -> Seq2SeqAdapter:
    return Seq2SeqAdapter(vocab, target_text=cfg.attack.target_text, task=cfg.data.task, max_len=cfg.data.max_len)


def backdoor(cfg: NLGConfig, *, attack_name: str | None = None, device=None, use_cache: bool = True,
             progress: bool = False) -> NLGRun:
    """Train (or load from the cache) the backdoored seq2seq model of ``cfg``; the defender's clean
    validation set is the ``valid`` split; evaluation: clean test and triggered test sources."""
    device = resolve_device(cfg.device) if device is None else device
    if attack_name is not None:
        cfg = replace(cfg, attack=replace(cfg.attack, name=attack_name))
    corpus = load_corpus(cfg)
    attack = build_attack(cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    poisoned, poison_idx = attack.poison_train(corpus["train"], g)
    key = hashlib.sha256(json.dumps(cfg.attack_key(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    cdir = cache_root(cfg) / f"{cfg.attack.name}-{key}"
    if cfg.tokenizer.path:
        tok_path = Path(cfg.tokenizer.path)
        tok = load_tokenizer(tok_path)
    elif use_cache and (cdir / "tokenizer.json").exists():
        tok_path = cdir / "tokenizer.json"
        tok = load_tokenizer(tok_path)
    else:
        texts = [s for s, _ in poisoned] + [t for _, t in poisoned]
        tok = train_tokenizer(texts, cfg.tokenizer.kind, cfg.tokenizer.vocab_size)
        tok_path = None
    vocab = Vocab(tok, max_len=cfg.data.max_len)
    model = build_model(cfg, len(vocab))
    if use_cache and (cdir / "model.safetensors").exists():
        load_checkpoint_into(model, cdir / "model.safetensors")
        meta = json.loads((cdir / "attack.json").read_text())
        meta["cached"] = True
    else:
        seeded_init_(model, torch.Generator().manual_seed(cfg.seed))
        t = cfg.train
        data = PairData.from_pairs(poisoned, vocab)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=t.epochs * -(-len(data) // t.batch_size), desc=f"attack {cfg.attack.name}", unit="step")
        try:
            model = train_seq2seq(model, data, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, warmup=t.warmup,
                                  generator=g, device=device, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        meta = {"attack": cfg.attack.name, "poisoned_samples": len(poison_idx), "train_samples": len(poisoned),
                "vocab_size": len(vocab), "key": cfg.attack_key()}
        if use_cache:
            cdir.mkdir(parents=True, exist_ok=True)
            if tok_path is None:
                atomic_write(cdir / "tokenizer.json", lambda p: tok.save(str(p)))
                tok_path = cdir / "tokenizer.json"
            save_model(model, cdir / "model.safetensors")
            atomic_write(cdir / "attack.json", lambda p: p.write_text(json.dumps(meta, default=str)))
        meta["cached"] = False
    model.to(device).eval()
    val = PairData.from_pairs(corpus["valid"], vocab)
    test = PairData.from_pairs(corpus["test"], vocab)
    trig = PairData.from_pairs(attack.poison_test(corpus["test"], torch.Generator().manual_seed(cfg.seed + 1)), vocab)
    return NLGRun(model, vocab, val, EvalData(clean=test, poisoned=trig), _adapter(cfg, vocab), meta, tok_path)


def load_user_inputs(cfg: NLGConfig, *, trust: bool = False, device=None) -> NLGRun:
    """A model nobody in this project wrote: ``model.spec`` + ``model.checkpoint`` (or ``hf:DIR``),
    ``tokenizer.path``, and the ``valid``/``test`` splits of ``data.root``; triggered test sources come
    from the configured attack (evaluation only). ``model.spec=fairseq:PATH``: the fairseq checkpoint and
    its dictionaries define the vocabulary (the text must be tokenized as for ``fairseq-preprocess``)."""
    device = resolve_device(cfg.device) if device is None else device
    if cfg.data.name == "toy":
        raise NFTInputError("purifying your own model needs data.name=wmt|tsv and data.root")
    if cfg.model.spec.startswith("fairseq:"):
        from .fairseq_backend import load_fairseq

        model, vocab = load_fairseq(cfg.model.spec[len("fairseq:"):], trust=trust, max_len=cfg.data.max_len)
        # no tokenizer file: purify writes vocab.tokenizer into the run directory
        return _user_run(cfg, model, vocab, device, {"backend": "fairseq"}, None)
    if not cfg.tokenizer.path:
        if cfg.model.spec.startswith("hf:") and (Path(cfg.model.spec[3:]) / "tokenizer.json").exists():
            cfg = replace(cfg, tokenizer=replace(cfg.tokenizer, path=str(Path(cfg.model.spec[3:]) / "tokenizer.json")))
        else:
            raise NFTInputError("purifying your own model needs tokenizer.path (its tokenizer.json)")
    vocab = Vocab(load_tokenizer(cfg.tokenizer.path), max_len=cfg.data.max_len)
    model = build_model(cfg, len(vocab))
    if cfg.model.checkpoint:
        load_checkpoint_into(model, cfg.model.checkpoint, trust=trust)
    return _user_run(cfg, model, vocab, device, {}, Path(cfg.tokenizer.path))


def _user_run(cfg: NLGConfig, model: nn.Module, vocab: Vocab, device, meta: dict, tok_path: Path | None) -> NLGRun:
    corpus = load_corpus(cfg, splits=("valid", "test"))
    attack = build_attack(cfg)
    val = PairData.from_pairs(corpus["valid"], vocab)
    test = PairData.from_pairs(corpus["test"], vocab)
    trig = PairData.from_pairs(attack.poison_test(corpus["test"], torch.Generator().manual_seed(cfg.seed + 1)), vocab)
    _check_outputs(model, val, len(vocab))
    model.to(device).eval()
    return NLGRun(model, vocab, val, EvalData(clean=test, poisoned=trig), _adapter(cfg, vocab),
                  {"attack": "user", "cached": False, **meta}, tok_path)


def _check_outputs(model: nn.Module, val: PairData, vocab_size: int) -> None:
    batch = collate_pairs([val[i] for i in range(min(2, len(val)))])
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(batch["src"], batch["tgt"][:, :-1])
    except (RuntimeError, IndexError) as e:
        raise NFTInputError(f"model.spec={type(model).__name__} cannot take this tokenizer's ids: "
                            f"{str(e).splitlines()[0]}") from e
    finally:
        model.train(was)
    if out.shape[-1] != vocab_size:
        raise DataError(f"the model has {out.shape[-1]} output tokens but the tokenizer has {vocab_size}")
