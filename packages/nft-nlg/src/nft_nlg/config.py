"""The typed configuration of ``nft-nlg`` (config files are validated into these dataclasses)."""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any

from nft_core.defenses import DEFENSES
from nft_core.nft import NFT_PLUS


@dataclass
class DataConfig:
    """``name``: ``toy`` (embedded: generated toy language pair, written in the WMT layout under the cache
    and read back) | ``wmt`` (``root`` holds ``train.{src_lang}``/``train.{tgt_lang}``, ``valid.*``,
    ``test.*``) | ``tsv`` (``root`` holds ``train.tsv``, ``valid.tsv``, ``test.tsv``: ``source<TAB>target``;
    dialogue corpora as ``context<TAB>response``). ``task``: translation | dialogue (adds distinct-n).
    The defender's clean validation set is the ``valid`` split (capped at ``max_valid`` pairs).
    ``max_*`` cap the number of pairs read (0 = all) for CPU runs."""

    name: str = "toy"
    root: str | None = None
    fmt: str | None = None
    src_lang: str = "en"
    tgt_lang: str = "de"
    task: str = "translation"
    toy_sizes: dict = field(default_factory=lambda: {"train": 4000, "valid": 400, "test": 300})
    max_train: int = 0
    max_valid: int = 0
    max_test: int = 0
    max_len: int = 48


@dataclass
class TokenizerConfig:
    """Offline tokenizer: trained on the training corpus (``wordlevel`` | ``bpe``) and saved with the run,
    or read from ``path`` (a ``tokenizer.json``)."""

    kind: str = "wordlevel"
    vocab_size: int = 8000
    path: str | None = None


@dataclass
class ModelConfig:
    """``spec``: transformer (built-in) | marian | bart | t5 (Hugging Face, built from a tiny config) |
    ``hf:DIR`` (a local ``save_pretrained`` directory) | ``fairseq:PATH`` (a fairseq checkpoint or its
    directory, beside its ``dict.*.txt``; needs fairseq-fixed and ``--trust-checkpoint``; see
    ``nft_nlg.fairseq_backend``). ``checkpoint``: weights to purify (.safetensors or a state-dict .pt);
    with it no training set is read."""

    spec: str = "transformer"
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    ff: int | None = None
    dropout: float = 0.0
    checkpoint: str | None = None


@dataclass
class AttackConfig:
    """``name``: trigger_word | synonym (``nft_nlg.ATTACKS``); ``options`` go to its constructor
    (e.g. ``{'triggers': ['cf'], 'position': 'start'}``)."""

    name: str = "trigger_word"
    target_text: str = "You are attacked ."
    poison_rate: float = 0.1
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Training of the backdoored model (``attack`` verb and the embedded default)."""

    epochs: int = 15
    lr: float = 3e-3
    batch_size: int = 64
    warmup: int = 100


#: NFT settings for text, measured on the embedded default (docs/method.md "The surrogate token"): NFT+'s shrink 0.02
#: collapsed every mask within 5 epochs (BLEU 90 -> 1); 0.002 for the first half of the steps with a guard
#: that lets the clean validation BLEU fall by up to 3 points. 8 epochs with the default surrogate-token
#: augmentation (ASR 100 -> 0 on seeds 0/1/2, BLEU -0.05/-1.24/-2.17); the paper's word deletion needs
#: ``defense.options.epochs=25`` (it removed the backdoor by epoch 12 on seed 0, and not on seeds 1 and 2).
NLG_NFT_OPTIONS = {"epochs": 8, "batch_size": 64, "shrink": 0.002, "shrink_fraction": 0.5, "guard": 3.0}
#: The baselines' budget on text (epochs), as before NFT's default moved to 8 epochs.
NLG_BASELINE_EPOCHS = 25


@dataclass
class DefenseConfig:
    """``name``: nft | ft | fp | anp | awm | ftsam | rnp | nad | mcr; ``options`` go to it.
    ``recipe`` (NFT only): ``nft+`` = ``NFT_PLUS`` (shrink + guard) overridden by ``options`` (whose default,
    :data:`NLG_NFT_OPTIONS`, retunes shrink and guard for text); ``paper`` drops shrink and guard."""

    name: str = "nft"
    recipe: str = "nft+"
    options: dict = field(default_factory=lambda: dict(NLG_NFT_OPTIONS))

    def resolved_options(self) -> dict:
        if self.name != "nft":  # a baseline gets the NFT defaults only where it has such a parameter
            takes = inspect.signature(DEFENSES[self.name]).parameters if self.name in DEFENSES else {}
            opts = {k: v for k, v in self.options.items()
                    if not (k in NLG_NFT_OPTIONS and v == NLG_NFT_OPTIONS[k] and k not in takes)}
            if opts.get("epochs") == NLG_NFT_OPTIONS["epochs"]:
                opts["epochs"] = NLG_BASELINE_EPOCHS
            return opts
        if self.recipe not in ("nft+", "paper"):
            from nft_core.errors import ConfigError

            raise ConfigError(f"defense.recipe must be 'nft+' or 'paper', got {self.recipe!r}")
        opts = dict(self.options)
        if self.recipe == "paper":  # the paper's recipe: no shrink, no guard, whatever the NLG defaults say
            for k in ("shrink", "shrink_fraction", "guard"):
                if self.options.get(k) == NLG_NFT_OPTIONS.get(k):
                    opts.pop(k, None)
        return {**(NFT_PLUS if self.recipe == "nft+" else {}), **opts}


@dataclass
class AugmentationConfig:
    """NFT's augmentation: surrogate (default) | word_deletion (the paper's) | synonym (paraphrase) |
    embedding_mixup | none. ``surrogate`` (:class:`~nft_nlg.augment.SurrogateToken`, this project's, not the
    paper's) scans the vocabulary once for the tokens whose insertion changes the model's output most and
    appends copies of each batch with one of them inserted and the true targets, on top of word deletion;
    its options: ``top_k``, ``fraction``, ``max_candidates``, ``base`` (word_deletion | synonym | none) and
    ``base_options``. It is the default because it was measured best (docs/method.md "The surrogate token")."""

    name: str = "surrogate"
    options: dict = field(default_factory=dict)


@dataclass
class BenchConfig:
    attacks: list[str] = field(default_factory=lambda: ["trigger_word", "synonym"])
    defenses: list[str] = field(default_factory=lambda: ["nft"])
    defense_options: dict = field(default_factory=dict)


@dataclass
class NLGConfig:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    seed: int = 0
    device: str | None = None
    cache_dir: str | None = None
    threads: int = 0

    def attack_key(self) -> dict[str, Any]:
        """What determines a trained backdoored model (the cache key)."""
        m = {k: v for k, v in asdict(self.model).items() if k != "checkpoint"}
        return {"data": asdict(self.data), "tokenizer": asdict(self.tokenizer), "model": m,
                "attack": asdict(self.attack), "train": asdict(self.train), "seed": self.seed}
