"""nft-nlg: NFT backdoor purification for seq2seq text generation (machine translation and dialogue)."""

from .adapter import Seq2SeqAdapter, distinct_n
from .attacks import ATTACKS, SynonymAttack, TriggerWordAttack
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
from .models import HFSeq2Seq, Seq2SeqTransformer, create_model, greedy_decode

__all__ = [
    "ATTACKS", "EmbeddingMixUp", "HFSeq2Seq", "NLGConfig", "PairData", "Seq2SeqAdapter", "Seq2SeqTransformer",
    "SurrogateToken", "SynonymAttack", "SynonymReplacement", "TriggerWordAttack", "Vocab", "WordDeletion", "collate_pairs",
    "create_model", "distinct_n", "greedy_decode", "load_split", "load_tokenizer", "train_tokenizer",
    "write_toy_corpus",
]
