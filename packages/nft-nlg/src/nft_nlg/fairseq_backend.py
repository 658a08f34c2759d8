"""fairseq encoder-decoder models (Transformer, ConvS2S, …) behind ``model(src, tgt_in) -> logits``.

Optional backend: fairseq 0.12.2 does not import on Python 3.11; the community ``fairseq-fixed`` build does
(``scripts/install_fairseq.sh``; it compiles C++ extensions, about 4.5 minutes on 2 cores). Nothing here
imports fairseq until a fairseq model is asked for.

A fairseq model has its own dictionaries (``dict.<src>.txt``, ``dict.<tgt>.txt``; ``<s>`` = 0, ``<pad>`` = 1,
``</s>`` = 2, ``<unk>`` = 3) and reads text that is already tokenized (BPE applied) as it was for
``fairseq-preprocess``. :func:`fairseq_vocab` builds this project's :class:`~nft_nlg.data.Vocab` over the
union of both dictionaries (whitespace-separated tokens, so it reads exactly the same units), and
:class:`FairseqSeq2Seq` translates ids both ways: sources lose the leading [BOS] (fairseq sources end with
``</s>`` only), decoder inputs start from ``</s>`` (fairseq's convention), and the logits are re-indexed into
this project's vocabulary (tokens missing from the target dictionary get −1e4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nft_core.errors import CheckpointError, NFTInputError, UnsupportedError

from .data import BOS, EOS, PAD, SPECIALS, UNK, Vocab

__all__ = ["FairseqSeq2Seq", "fairseq_available", "fairseq_vocab", "load_fairseq"]


def fairseq_available() -> bool:
    try:
        import fairseq  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


def _words(dictionary) -> list[str]:
    specials = {dictionary.bos_word, dictionary.pad_word, dictionary.eos_word, dictionary.unk_word}
    return [s for s in dictionary.symbols if s not in specials]


def fairseq_vocab(src_dict, tgt_dict, max_len: int = 64) -> Vocab:
    """A word-level :class:`Vocab` over both fairseq dictionaries (this project's specials at 0–3)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    table: dict[str, int] = {s: i for i, s in enumerate(SPECIALS)}
    for word in _words(src_dict) + _words(tgt_dict):
        table.setdefault(word, len(table))
    tok = Tokenizer(models.WordLevel(table, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # no decoder: tokens are joined with spaces
    tok.add_special_tokens(SPECIALS)  # already at ids 0-3; marks them special
    return Vocab(tok, max_len=max_len)


class FairseqSeq2Seq(nn.Module):
    """A fairseq ``FairseqEncoderDecoderModel`` behind ``model(src, tgt_in) -> logits`` over ``vocab``'s ids.
    ``self.fs`` is the fairseq model (state dict keys carry the ``fs.`` prefix: strip it to load the
    purified weights back into fairseq). NFT masks its ``nn.Linear``/``nn.Embedding``/conv layers like any
    other model's."""

    def __init__(self, fs_model: nn.Module, src_dict, tgt_dict, vocab: Vocab):
        super().__init__()
        self.fs = fs_model
        n = len(vocab)
        src_ids = torch.empty(n, dtype=torch.long)
        tgt_ids = torch.empty(n, dtype=torch.long)
        out_bias = torch.zeros(n)
        specials = {PAD: (src_dict.pad(), tgt_dict.pad(), tgt_dict.pad()), BOS: (src_dict.bos(), tgt_dict.eos(), tgt_dict.bos()),
                    EOS: (src_dict.eos(), tgt_dict.eos(), tgt_dict.eos()), UNK: (src_dict.unk(), tgt_dict.unk(), tgt_dict.unk())}
        out_ids = torch.empty(n, dtype=torch.long)
        for i in range(n):
            if i in specials:
                src_ids[i], tgt_ids[i], out_ids[i] = specials[i]
                continue
            word = vocab.tokenizer.id_to_token(i)
            src_ids[i], tgt_ids[i] = src_dict.index(word), tgt_dict.index(word)
            out_ids[i] = tgt_ids[i]
            if tgt_ids[i] == tgt_dict.unk():
                out_bias[i] = -1e4  # not a target word: never generated
        out_bias[PAD] = out_bias[BOS] = -1e4
        self.register_buffer("src_ids", src_ids, persistent=False)
        self.register_buffer("tgt_ids", tgt_ids, persistent=False)
        self.register_buffer("out_ids", out_ids, persistent=False)
        self.register_buffer("out_bias", out_bias, persistent=False)

    def forward(self, src: Tensor, tgt_in: Tensor, mix: Any = None) -> Tensor:
        if mix is not None:
            raise UnsupportedError("token-embedding MixUp is implemented for the built-in transformer only; "
                                   "use augmentation.name=surrogate, word_deletion or synonym")
        body = src[:, 1:]  # fairseq sources: tokens + </s>, no <s>
        lengths = (body != PAD).sum(1)
        logits, _ = self.fs(self.src_ids[body], lengths, self.tgt_ids[tgt_in])
        return logits.index_select(-1, self.out_ids) + self.out_bias.to(logits.dtype)


def load_fairseq(path: str | Path, *, trust: bool = False, max_len: int = 64) -> tuple[FairseqSeq2Seq, Vocab]:
    """``path``: a fairseq checkpoint file (``checkpoint_best.pt``) or its directory, next to the
    ``dict.<src>.txt``/``dict.<tgt>.txt`` it was trained with. fairseq checkpoints are pickles: ``trust``
    must be set (``--trust-checkpoint``)."""
    p = Path(path)
    ckpt = p / "checkpoint_best.pt" if p.is_dir() else p
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt}: fairseq checkpoint not found")
    if not trust:
        raise CheckpointError(f"{ckpt}: a fairseq checkpoint is a pickle (it can run code); pass --trust-checkpoint "
                              "to load it")
    if not fairseq_available():
        raise NFTInputError("model.spec=fairseq:... needs fairseq (scripts/install_fairseq.sh installs fairseq-fixed)")
    import pickle

    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import overwrite_args_by_name
    from omegaconf import OmegaConf

    try:
        # fairseq's own loader calls torch.load with torch's default weights_only=True (torch >= 2.6), which
        # refuses its argparse/omegaconf objects; the user vouched for this pickle (trust), so load it here
        # and prepare it as fairseq's load_checkpoint_to_cpu does (data dir = the checkpoint's folder)
        with open(ckpt, "rb") as f:
            state = torch.load(f, map_location="cpu", weights_only=False)
        overrides = {"data": str(ckpt.parent)}
        if state.get("args") is not None:
            for k, v in overrides.items():
                setattr(state["args"], k, v)
        if state.get("cfg") is not None:
            state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
            overwrite_args_by_name(state["cfg"], overrides)
        state = checkpoint_utils._upgrade_state_dict(state)
        models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], state=state)
    except (OSError, KeyError, RuntimeError, ValueError, AttributeError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{ckpt}: cannot load the fairseq model ({str(e).splitlines()[0]})") from e
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    vocab = fairseq_vocab(src_dict, tgt_dict, max_len=max_len)
    return FairseqSeq2Seq(models[0], src_dict, tgt_dict, vocab), vocab
