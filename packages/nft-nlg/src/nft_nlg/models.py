"""Seq2seq models behind one calling convention, ``model(src, tgt_in) -> logits (B, T, V)``:

* :class:`Seq2SeqTransformer` - a compact pre-LayerNorm Transformer (``nn.Embedding``, ``nn.Linear``,
  ``nn.MultiheadAttention``: every layer NFT's masks know) that trains on a CPU in a minute or two;
* :class:`HFSeq2Seq` - a Hugging Face encoder-decoder (Marian, BART, T5) built from a config (tiny sizes)
  or loaded from a local directory (never from the hub).

Both accept an optional ``mix=(src_b, tgt_in_b, lam)`` for token-embedding MixUp (the built-in model
only). :func:`greedy_decode` is the evaluation decoder.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nft_core.errors import CheckpointError, NFTInputError, UnsupportedError

from .data import BOS, EOS, PAD

__all__ = ["Seq2SeqTransformer", "HFSeq2Seq", "create_model", "greedy_decode", "HF_FAMILIES", "shared_weight_modules"]


def _sinusoid(n: int, d: int) -> Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class _Block(nn.Module):
    """Pre-LN block: self-attention, optional cross-attention, feed-forward (two ``nn.Linear``)."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, cross: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.cross = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True) if cross else None
        self.ln2 = nn.LayerNorm(d) if cross else None
        self.ln3 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pad_mask=None, causal=None, memory=None, memory_pad=None):
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, h, h, key_padding_mask=pad_mask, attn_mask=causal, need_weights=False)[0])
        if self.cross is not None:
            h = self.ln2(x)
            x = x + self.drop(self.cross(h, memory, memory, key_padding_mask=memory_pad, need_weights=False)[0])
        return x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(self.ln3(x))))))


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer for a shared vocabulary.

    Args: ``vocab_size``; ``d_model`` (64), ``heads`` (4), ``layers`` (encoder and decoder, 2 each),
    ``ff`` (feed-forward width, 4·d), ``dropout`` (0.0), ``max_len`` (sinusoidal positions, 128).
    Shapes: ``src (B, S)``, ``tgt_in (B, T)`` token ids ([PAD]=0) -> logits ``(B, T, vocab_size)``.
    """

    def __init__(self, vocab_size: int, d_model: int = 64, heads: int = 4, layers: int = 2, ff: int | None = None,
                 dropout: float = 0.0, max_len: int = 128):
        super().__init__()
        ff = ff or 4 * d_model
        self.d_model = d_model
        self.src_emb = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.register_buffer("pos", _sinusoid(max_len, d_model), persistent=False)
        self.encoder = nn.ModuleList(_Block(d_model, heads, ff, dropout, cross=False) for _ in range(layers))
        self.decoder = nn.ModuleList(_Block(d_model, heads, ff, dropout, cross=True) for _ in range(layers))
        self.enc_norm = nn.LayerNorm(d_model)
        self.dec_norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)
        self.drop = nn.Dropout(dropout)

    def _embed(self, emb: nn.Embedding, ids: Tensor, mix) -> Tensor:
        x = emb(ids)
        if mix is not None:  # token-embedding MixUp: λ·E(a) + (1-λ)·E(b), through the (masked) module
            other, lam = mix
            x = lam * x + (1 - lam) * emb(other)
        x = x * math.sqrt(self.d_model) + self.pos[: ids.shape[1]]
        return self.drop(x)

    def encode(self, src: Tensor, src_b: Tensor | None = None, lam: float | None = None) -> tuple[Tensor, Tensor]:
        """``(memory (B, S, d), source padding mask (B, S))``."""
        src_pad = src == PAD
        if src_b is not None:
            src_pad = src_pad & (src_b == PAD)
        x = self._embed(self.src_emb, src, None if src_b is None else (src_b, lam))
        for blk in self.encoder:
            x = blk(x, pad_mask=src_pad)
        return self.enc_norm(x), src_pad

    def decode(self, memory: Tensor, src_pad: Tensor, tgt_in: Tensor, tgt_b: Tensor | None = None,
               lam: float | None = None) -> Tensor:
        """Logits ``(B, T, V)`` for decoder inputs ``tgt_in`` given the encoder output."""
        T = tgt_in.shape[1]
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=tgt_in.device), 1)
        y = self._embed(self.tgt_emb, tgt_in, None if tgt_b is None else (tgt_b, lam))
        for blk in self.decoder:
            y = blk(y, causal=causal, memory=memory, memory_pad=src_pad)
        return self.out(self.dec_norm(y))

    def forward(self, src: Tensor, tgt_in: Tensor, mix: tuple[Tensor, Tensor, float] | None = None) -> Tensor:
        src_b, tgt_b, lam = mix if mix is not None else (None, None, None)
        memory, src_pad = self.encode(src, src_b, lam)
        return self.decode(memory, src_pad, tgt_in, tgt_b, lam)


HF_FAMILIES = ("marian", "bart", "t5")


class HFSeq2Seq(nn.Module):
    """A Hugging Face encoder-decoder behind ``model(src, tgt_in) -> logits``. ``self.hf`` is the HF model;
    its state dict keys carry the ``hf.`` prefix. NFT masks its ``nn.Linear``/``nn.Embedding`` layers
    (attention projections, feed-forward, embeddings) through the class hierarchy."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, src: Tensor, tgt_in: Tensor, mix=None) -> Tensor:
        if mix is not None:
            raise UnsupportedError("token-embedding MixUp is implemented for the built-in transformer only; "
                                   "use augmentation.name=word_deletion or synonym")
        return self.hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt_in,
                       use_cache=False).logits

    @classmethod
    def from_config(cls, family: str, vocab_size: int, d_model: int = 64, heads: int = 4, layers: int = 2,
                    ff: int | None = None, dropout: float = 0.1, max_len: int = 128) -> HFSeq2Seq:
        """A tiny randomly initialised Marian / BART / T5 with this project's special-token ids."""
        import transformers as tf

        ff = ff or 4 * d_model
        ids = dict(pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=BOS)
        if family in ("marian", "bart"):
            Config, Model = ((tf.MarianConfig, tf.MarianMTModel) if family == "marian"
                             else (tf.BartConfig, tf.BartForConditionalGeneration))
            config = Config(vocab_size=vocab_size, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                            encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ff,
                            decoder_ffn_dim=ff, max_position_embeddings=max_len, dropout=dropout,
                            attention_dropout=0.0, activation_dropout=0.0, **ids)
        elif family == "t5":
            Config, Model = tf.T5Config, tf.T5ForConditionalGeneration
            config = Config(vocab_size=vocab_size, d_model=d_model, d_kv=d_model // heads, d_ff=ff, num_layers=layers,
                            num_decoder_layers=layers, num_heads=heads, dropout_rate=dropout, **ids)
        else:
            raise NFTInputError(f"unknown Hugging Face family {family!r}; choose {', '.join(HF_FAMILIES)}")
        return cls(Model(config))

    @classmethod
    def from_directory(cls, path: str) -> HFSeq2Seq:
        """A local ``save_pretrained`` directory (config.json + weights); nothing is downloaded."""
        import transformers as tf

        p = Path(path)
        if not (p / "config.json").is_file():
            raise CheckpointError(f"{p}: not a Hugging Face model directory (no config.json)")
        try:
            model = tf.AutoModelForSeq2SeqLM.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{p}: cannot load the Hugging Face model ({str(e).splitlines()[0]})") from e
        return cls(model)


def shared_weight_modules(model: nn.Module) -> list[str]:
    """Names of modules whose ``weight`` tensor is shared with another module (HF's shared
    encoder/decoder embeddings and a tied LM head). NFT must leave them unmasked: folding a mask into a
    shared tensor would also rescale the other users (e.g. the unmasked encoder embedding)."""
    users: dict[int, list[str]] = {}
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(w, Tensor):
            users.setdefault(w.data_ptr(), []).append(name)
    return sorted(n for names in users.values() if len(names) > 1 for n in names)


def create_model(spec: str, vocab_size: int, **kwargs) -> nn.Module:
    """``transformer`` (built-in), ``marian``/``bart``/``t5`` (HF from a tiny config) or ``hf:DIR``."""
    if spec == "transformer":
        return Seq2SeqTransformer(vocab_size, **kwargs)
    if spec in HF_FAMILIES:
        return HFSeq2Seq.from_config(spec, vocab_size, **kwargs)
    if spec.startswith("hf:"):
        return HFSeq2Seq.from_directory(spec[3:])
    raise NFTInputError(f"unknown model.spec {spec!r}; choose transformer, marian, bart, t5 or hf:DIR")


@torch.no_grad()
def greedy_decode(model: nn.Module, src: Tensor, max_len: int = 64) -> Tensor:
    """Greedy decoding, ``(B, S) -> (B, <= max_len)`` generated ids (without the leading [BOS]); rows end
    with [EOS] then [PAD]. Re-runs the decoder on the whole prefix each step (sentences are short)."""
    B = src.shape[0]
    ys = torch.full((B, 1), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    if isinstance(model, Seq2SeqTransformer):  # encode once
        memory, src_pad = model.encode(src)

        def step(prefix):
            return model.decode(memory, src_pad, prefix)
    else:

        def step(prefix):
            return model(src, prefix)

    for _ in range(max_len):
        nxt = step(ys)[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        ys = torch.cat([ys, nxt[:, None]], 1)
        done |= nxt == EOS
        if bool(done.all()):
            break
    return ys[:, 1:]
