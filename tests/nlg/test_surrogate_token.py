"""The text surrogate trigger (``augmentation.name=surrogate``): token insertion, the vocabulary scan on a
real (small) backdoored translator, and NFT with it."""

import pytest
import torch

from nft_core import NoAugmentation
from nft_core.testing.conformance import check_augmentation_consistent
from nft_nlg.augment import SurrogateToken, insert_tokens
from nft_nlg.config import NLGConfig
from nft_nlg.data import BOS, EOS, PAD, collate_pairs
from nft_nlg.workflow import backdoor

TINY = {"toy_sizes": {"train": 120, "valid": 40, "test": 12}, "max_len": 20}


class Backdoored(torch.nn.Module):
    """A translator with a hand-wired backdoor: wherever token ``trigger`` appears in the source, every
    output position favours token ``hijack`` (a real model for the scan to search, not a mock of it)."""

    def __init__(self, inner, trigger: int, hijack: int):
        super().__init__()
        self.inner, self.trigger, self.hijack = inner, trigger, hijack

    def forward(self, src, tgt_in, **kw):
        logits = self.inner(src, tgt_in, **kw)
        hit = (src == self.trigger).any(1).float()[:, None, None]
        return logits + 20.0 * hit * torch.nn.functional.one_hot(
            torch.tensor(self.hijack), logits.shape[-1]).to(logits)[None, None]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = NLGConfig()
    cfg.cache_dir = str(tmp_path_factory.mktemp("cache"))
    for k, v in TINY.items():
        setattr(cfg.data, k, v)
    cfg.model.d_model, cfg.model.heads, cfg.model.layers = 16, 2, 1
    cfg.train.epochs = 1
    return backdoor(cfg, device=torch.device("cpu"))


def _rows(t):
    return [row[row != PAD].tolist() for row in t]


def test_insert_tokens_keeps_the_sentence_around_one_new_token():
    src = torch.tensor([[BOS, 5, 6, 7, EOS, PAD], [BOS, 8, EOS, PAD, PAD, PAD], [BOS, 9, 9, 9, 9, EOS]])
    for seed in range(20):
        out = insert_tokens(src, torch.tensor([99, 98, 97]), torch.Generator().manual_seed(seed))
        assert out.shape == (3, 7)
        for orig, new, tok in zip(_rows(src), _rows(out), (99, 98, 97)):
            i = new.index(tok)
            assert 1 <= i <= len(orig) - 1 and new[0] == BOS and new[-1] == EOS  # between BOS and EOS
            assert new[:i] + new[i + 1:] == orig


def test_scan_finds_the_trigger_word_and_batches_keep_true_targets(run):
    cf = run.vocab.token_id("cf")
    model = Backdoored(run.model, trigger=cf, hijack=run.vocab.token_id("attacked"))
    aug = SurrogateToken(top_k=3).bind(model, run.adapter)
    batch = collate_pairs([run.val[i] for i in range(32)])
    training = model.train().training
    out = aug(batch, torch.Generator().manual_seed(0))
    assert model.training == training and all(p.requires_grad for p in model.parameters())
    assert aug.stats["tokens"][0] == cf, aug.stats  # the largest loss increase of all 100+ tokens
    assert aug.stats["candidates"] == len(run.vocab) - 4 and aug.stats["gains"][0] > 5 > aug.stats["gains"][1]
    # the base augmentation's 32 pairs, then 32 triggered copies with their true targets
    assert out["src"].shape[0] == out["tgt"].shape[0] == 64
    assert _rows(out["tgt"][32:]) == _rows(batch["tgt"])
    for orig, new in zip(_rows(batch["src"]), _rows(out["src"][32:])):
        assert len(new) == len(orig) + 1 and any(t in aug.stats["tokens"] for t in new)
    # frozen after the first call; deterministic under a fixed seed; the global RNG untouched
    first = list(aug.stats["tokens"])
    check_augmentation_consistent(aug, batch, lambda b, a: None)
    assert aug.stats["tokens"] == first
    # the scan can be capped at the most frequent tokens; then cf (a rare word) may not be a candidate
    capped = SurrogateToken(top_k=2, max_candidates=5).bind(model, run.adapter)
    capped(batch, torch.Generator().manual_seed(0))
    assert capped.stats["candidates"] == 5 and all(4 <= t < 9 for t in capped.stats["tokens"])


@pytest.mark.slow
def test_nft_with_the_surrogate_on_the_embedded_default_seed_1(tmp_path, monkeypatch):
    """Seed 1 of the embedded default, where NFT+ with word deletion leaves ASR at 96 (README of nft-nlg):
    with the surrogate token the backdoor goes and BLEU stays within issue 8's 3 points."""
    import json

    from nft_nlg.cli import main

    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["purify", "--quiet", "--seed", "1", "--out", str(out), "--cfg-options",
                 "augmentation.name=surrogate"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["before"]["asr"] >= 90
    assert rep["after"]["asr"] <= 10 and rep["after"]["bleu"] >= rep["before"]["bleu"] - 3


def test_bad_options_and_unbound_use():
    with pytest.raises(ValueError, match="top_k"):
        SurrogateToken(top_k=0)
    with pytest.raises(ValueError, match="max_candidates"):
        SurrogateToken(top_k=4, max_candidates=2)
    with pytest.raises(RuntimeError, match="bind"):
        SurrogateToken()({"src": torch.ones(2, 3, dtype=torch.long), "tgt": torch.ones(2, 3, dtype=torch.long)},
                         torch.Generator())
    with pytest.raises(ValueError, match="adapter"):
        SurrogateToken().bind(torch.nn.Linear(2, 2), None)
    assert isinstance(SurrogateToken(base=NoAugmentation()).base, NoAugmentation)
