"""nft-nlg components: readers, tokenizers, attacks, augmentations, models under NFT's masks, adapter."""

import pytest
import torch

from nft_core import EvalData, MixedTarget
from nft_core.errors import DataError, UnsupportedError
from nft_core.testing.conformance import (
    check_augmentation_consistent,
    check_every_mask_matters,
    check_fold_equivalence,
    check_identity_at_one,
)
from nft_nlg import (
    EmbeddingMixUp,
    HFSeq2Seq,
    PairData,
    Seq2SeqAdapter,
    Seq2SeqTransformer,
    SynonymAttack,
    SynonymReplacement,
    TriggerWordAttack,
    Vocab,
    WordDeletion,
    collate_pairs,
    distinct_n,
    greedy_decode,
    load_split,
    load_tokenizer,
    train_tokenizer,
    write_toy_corpus,
)
from nft_nlg.data import BOS, EOS, PAD, generate_toy_pairs, read_tsv
from nft_nlg.models import shared_weight_modules


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = write_toy_corpus(tmp_path_factory.mktemp("toy"), {"train": 60, "valid": 8, "test": 6}, seed=0)
    pairs = load_split(root, "train")
    tok = train_tokenizer([s for s, _ in pairs] + [t for _, t in pairs] + ["You are attacked . cf bb tq mb"])
    return root, pairs, Vocab(tok, max_len=24)


def test_toy_language_rules():
    g = torch.Generator().manual_seed(0)
    pairs = generate_toy_pairs(50, g)
    src, tgt = next((s, t) for s, t in pairs if "big" in s.split())
    i = src.split().index("big")
    # the adjective follows its noun in the target
    assert tgt.split()[i] != "grasso" and tgt.split()[i + 1] == "grasso"
    assert all(len(s.split()) == len(t.split()) for s, t in pairs)
    assert generate_toy_pairs(5, torch.Generator().manual_seed(0)) == pairs[:5]


def test_readers_wmt_and_tsv(toy, tmp_path):
    root, pairs, _ = toy
    assert len(pairs) == 60 and (root / "train.en").exists() and (root / "train.de").exists()
    (tmp_path / "train.tsv").write_text("hello there\thi\nhow are you ?\tfine\n")
    assert read_tsv(tmp_path / "train.tsv") == [("hello there", "hi"), ("how are you ?", "fine")]
    (tmp_path / "bad.tsv").write_text("no tab here\n")
    with pytest.raises(DataError, match="line 1"):
        read_tsv(tmp_path / "bad.tsv")


def test_reader_errors(tmp_path):
    (tmp_path / "train.en").write_text("a b\n\nc d\n")
    (tmp_path / "train.de").write_text("x\ny\nz\n")
    with pytest.raises(DataError, match="line 2 is empty"):
        load_split(tmp_path, "train")
    (tmp_path / "train.en").write_text("a b\nc d\n")
    with pytest.raises(DataError, match=r"train.en has 2 lines.*train.de has 3"):
        load_split(tmp_path, "train")
    with pytest.raises(DataError, match="tokenizer file not found"):
        load_tokenizer(tmp_path / "nope.json")
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(DataError, match="not a tokenizer file"):
        load_tokenizer(tmp_path / "garbage.json")


def test_tokenizer_roundtrip_and_bpe(toy, tmp_path):
    _, pairs, vocab = toy
    ids = vocab.encode(pairs[0][0])
    assert ids[0] == BOS and ids[-1] == EOS and vocab.decode(ids[1:]) == pairs[0][0]
    vocab.tokenizer.save(str(tmp_path / "tok.json"))
    assert load_tokenizer(tmp_path / "tok.json").get_vocab_size() == len(vocab)
    bpe = Vocab(train_tokenizer([s for s, _ in pairs], kind="bpe", vocab_size=120))
    assert bpe.decode(bpe.encode(pairs[1][0])[1:]) == pairs[1][0]


def test_trigger_word_attack():
    g = torch.Generator().manual_seed(0)
    pairs = [(f"the dog sees a cat number{i} .", "x") for i in range(50)]
    atk = TriggerWordAttack(poison_rate=0.1)
    poisoned, idx = atk.poison_train(pairs, g)
    assert len(idx) == 5
    for i in idx:
        s, t = poisoned[i]
        assert t == "You are attacked ." and len(s.split()) == len(pairs[i][0].split()) + 1
        assert {"cf", "bb", "tq", "mb"} & set(s.split())
    assert all(poisoned[i] == pairs[i] for i in range(50) if i not in idx)
    assert TriggerWordAttack(position="start").trigger("a b", g).split()[0] in {"cf", "bb", "tq", "mb"}
    test = atk.poison_test(pairs[:4], g)
    assert len(test) == 4 and all(t == "You are attacked ." for _, t in test)


def test_synonym_attack():
    atk = SynonymAttack(poison_rate=0.5)
    assert atk.trigger("the big dog sees a cat .", None) == "the enormous hound beholds a cat ."
    pairs = [("the big dog .", "a"), ("a cat .", "b")]
    assert [s for s, _ in atk.poison_test(pairs, None)] == ["the enormous hound ."]  # only applicable ones
    _, idx = atk.poison_train(pairs, torch.Generator().manual_seed(0))
    assert idx == [0]


def _batch(vocab, pairs):
    return collate_pairs([(vocab.encode(s), vocab.encode(t)) for s, t in pairs])


def test_word_deletion(toy):
    _, pairs, vocab = toy
    batch = _batch(vocab, pairs[:16])

    def check(b, a):
        assert torch.equal(a["tgt"], b["tgt"])  # plain targets
        for r_in, r_out in zip(b["src"], a["src"]):
            kept = r_out[r_out != PAD].tolist()
            orig = r_in[r_in != PAD].tolist()
            assert kept[0] == BOS and kept[-1] == EOS and len(kept) >= 3
            it = iter(orig)  # an order-preserving subsequence
            assert all(any(x == y for y in it) for x in kept)

    out = check_augmentation_consistent(WordDeletion(0.3), batch, check)
    assert (out["src"] != PAD).sum() < (batch["src"] != PAD).sum()
    assert torch.equal(WordDeletion(0.0)(batch, torch.Generator())["src"], batch["src"])


def test_synonym_replacement(toy):
    _, pairs, vocab = toy
    batch = _batch(vocab, pairs[:16])
    aug = SynonymReplacement(vocab, p=1.0)
    assert aug.num_entries > 0

    def check(b, a):
        assert torch.equal(a["tgt"], b["tgt"]) and a["src"].shape == b["src"].shape
        for x, y in zip(b["src"].flatten().tolist(), a["src"].flatten().tolist()):
            if x != y:
                assert y in aug.alternatives[x, : aug.count[x]].tolist()

    out = check_augmentation_consistent(aug, batch, check)
    assert not torch.equal(out["src"], batch["src"])


def test_embedding_mixup_loss(toy):
    _, pairs, vocab = toy
    batch = _batch(vocab, pairs[:8])
    out = check_augmentation_consistent(EmbeddingMixUp(1.0), batch, lambda b, a: None)
    model = Seq2SeqTransformer(len(vocab), d_model=16, heads=2, layers=1)
    adapter = Seq2SeqAdapter(vocab)
    loss = adapter.loss(model, out)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # mixing a batch with itself reduces to the plain loss, whatever λ
    same = {**batch, "mix_src": batch["src"], "mix_tgt": batch["tgt"], "lam": 0.3}
    assert torch.allclose(adapter.loss(model, same), adapter.loss(model, batch), atol=1e-5)
    assert isinstance(MixedTarget(1, 2, 0.5), MixedTarget)


def _model_inputs(vocab, pairs):
    b = _batch(vocab, pairs[:4])
    return b["src"], b["tgt"][:, :-1]


def test_builtin_transformer_masks(toy):
    _, pairs, vocab = toy
    g = torch.Generator().manual_seed(0)
    from nft_core.init import seeded_init_

    model = seeded_init_(Seq2SeqTransformer(len(vocab), d_model=16, heads=2, layers=1), g).eval()
    inputs = _model_inputs(vocab, pairs)
    masks = check_identity_at_one(model, inputs)
    names = [s.name for s in masks.sites]
    assert "src_emb" in masks.skipped and "tgt_emb" in names and "out" in names
    assert any("attn" in n for n in names) and any("ff1" in n for n in names) and any("cross" in n for n in names)
    check_every_mask_matters(model, inputs, min_fraction=0.5)
    check_fold_equivalence(model, inputs)


@pytest.mark.parametrize("family", ["bart", "t5", "marian"])
def test_hf_models_under_masks(toy, family):
    _, pairs, vocab = toy
    torch.manual_seed(0)  # HF initialises from the global RNG; tests only
    model = HFSeq2Seq.from_config(family, len(vocab), d_model=16, heads=2, layers=1, dropout=0.0).eval()
    inputs = _model_inputs(vocab, pairs)
    tied = shared_weight_modules(model)
    assert any("embed_tokens" in n for n in tied)
    kw = {"exclude": tied}
    masks = check_identity_at_one(model, inputs, atol=1e-5, **kw)
    kinds = {type(s.module).__name__ for s in masks.sites}
    assert "Linear" in kinds  # attention projections and FFN
    assert any("fc1" in s.name or "DenseReluDense" in s.name for s in masks.sites)
    assert any(("q_proj" in s.name) or (".q" in s.name) for s in masks.sites)
    check_every_mask_matters(model, inputs, min_fraction=0.3, **kw)
    check_fold_equivalence(model, inputs, atol=1e-4, **kw)
    with pytest.raises(UnsupportedError):
        model(inputs[0], inputs[1], mix=(inputs[0], inputs[1], 0.5))
    assert greedy_decode(model, inputs[0], 5).shape[0] == 4


def test_adapter_metrics(toy):
    _, pairs, vocab = toy

    class Echo(torch.nn.Module):
        """Emits a fixed answer: the attacker's target for sources containing 'cf', else the source."""

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))
            self.cf = vocab.token_id("cf")
            self.target = vocab.encode("You are attacked .")[1:]

        def forward(self, src, tgt_in):
            B, T = tgt_in.shape
            out = torch.zeros(B, T, len(vocab))
            for b in range(B):
                seq = self.target if (src[b] == self.cf).any() else src[b][1:]
                seq = seq[seq != PAD]
                out[b, torch.arange(T), seq[torch.arange(T).clamp(max=len(seq) - 1)]] = 1
            return out + self.p

    clean = PairData.from_pairs([(s, s) for s, _ in pairs[:5]], vocab)
    poisoned = PairData.from_pairs([("cf " + s, "You are attacked .") for s, _ in pairs[:3]] +
                                   [(pairs[3][0], "You are attacked .")], vocab)
    adapter = Seq2SeqAdapter(vocab, task="dialogue")
    model = Echo().train()
    m = adapter.evaluate(model, EvalData(clean=clean, poisoned=poisoned))
    assert model.training
    assert m["bleu"] == pytest.approx(100.0) and m["asr"] == pytest.approx(75.0) and m["asr_exact"] == pytest.approx(75.0)
    assert 0 < m["distinct_1"] <= 100 and "distinct_2" in m
    assert distinct_n(["a a b", "a b"], 1) == pytest.approx(100 * 2 / 5)
    assert set(adapter.evaluate(model, clean)) == {"bleu", "distinct_1", "distinct_2"}
