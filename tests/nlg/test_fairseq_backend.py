"""The optional fairseq backend (``--model fairseq:PATH``; scripts/install_fairseq.sh installs fairseq-fixed).
Every test here trains a real, tiny fairseq transformer with fairseq's own CLI (preprocess + 1 epoch)."""

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("fairseq", reason="optional backend: scripts/install_fairseq.sh installs fairseq-fixed")

from nft_core.checkpoint import load_checkpoint_into  # noqa: E402
from nft_core.testing.conformance import (  # noqa: E402
    check_every_mask_matters,
    check_fold_equivalence,
    check_identity_at_one,
)
from nft_nlg.cli import main  # noqa: E402
from nft_nlg.data import collate_pairs, write_toy_corpus  # noqa: E402
from nft_nlg.fairseq_backend import FairseqSeq2Seq, load_fairseq  # noqa: E402
from nft_nlg.models import greedy_decode, shared_weight_modules  # noqa: E402


@pytest.fixture(scope="module")
def fs_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fairseq")
    corpus = write_toy_corpus(root / "corpus", {"train": 200, "valid": 16, "test": 12}, seed=0)
    ckpt = root / "model"
    py = sys.executable
    subprocess.run([py, "-m", "fairseq_cli.preprocess", "--source-lang", "en", "--target-lang", "de",
                    "--trainpref", str(corpus / "train"), "--validpref", str(corpus / "valid"),
                    "--destdir", str(ckpt), "--workers", "1"], check=True, capture_output=True)
    subprocess.run([py, "-m", "fairseq_cli.train", str(ckpt), "--task", "translation", "-s", "en", "-t", "de",
                    "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
                    "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
                    "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
                    "--decoder-attention-heads", "2", "--max-epoch", "1", "--batch-size", "16",
                    "--optimizer", "adam", "--lr", "1e-3", "--cpu", "--save-dir", str(ckpt),
                    "--no-epoch-checkpoints", "--no-progress-bar", "--seed", "1"], check=True, capture_output=True)
    return corpus, ckpt


def test_wrapper_gives_fairseq_logits_in_our_vocabulary(fs_run):
    corpus, ckpt = fs_run
    model, vocab = load_fairseq(ckpt, trust=True, max_len=24)
    model.eval()
    src_dict, tgt_dict = model.fs.encoder.dictionary, model.fs.decoder.dictionary
    src_text, tgt_text = (corpus / "valid.en").read_text().splitlines()[0], (corpus / "valid.de").read_text().splitlines()[0]
    ours = collate_pairs([(vocab.encode(src_text), vocab.encode(tgt_text))])
    with torch.no_grad():
        logits = model(ours["src"], ours["tgt"][:, :-1])
        fs_src = src_dict.encode_line(src_text, add_if_not_exist=False, append_eos=True).long()[None]
        fs_tgt = tgt_dict.encode_line(tgt_text, add_if_not_exist=False, append_eos=True).long()
        prev = torch.cat([torch.tensor([tgt_dict.eos()]), fs_tgt[:-1]])[None]
        ref, _ = model.fs(fs_src, torch.tensor([fs_src.shape[1]]), prev)
    assert logits.shape == (1, prev.shape[1], len(vocab))
    for word in tgt_text.split()[:4] + ["</s>"]:
        ours_id = vocab.token_id(word) if word != "</s>" else 2
        assert torch.allclose(logits[..., ours_id], ref[..., tgt_dict.index(word)], atol=1e-5)


def test_masks_reach_attention_ffn_and_fold_exactly(fs_run):
    _, ckpt = fs_run
    model, vocab = load_fairseq(ckpt, trust=True, max_len=24)
    model.eval()
    pairs = list(zip((fs_run[0] / "valid.en").read_text().splitlines(), (fs_run[0] / "valid.de").read_text().splitlines()))
    batch = collate_pairs([(vocab.encode(s), vocab.encode(t)) for s, t in pairs[:4]])
    inputs = (batch["src"], batch["tgt"][:, :-1])
    kw = {"exclude": shared_weight_modules(model)}
    masks = check_identity_at_one(model, inputs, atol=1e-5, **kw)
    names = [s.name for s in masks.sites]
    assert any("q_proj" in n for n in names) and any("fc1" in n for n in names), names
    check_every_mask_matters(model, inputs, min_fraction=0.3, **kw)
    check_fold_equivalence(model, inputs, atol=1e-4, **kw)
    assert greedy_decode(model, inputs[0], 5).shape[0] == 4


def test_cli_purifies_a_fairseq_checkpoint(fs_run, tmp_path, capsys):
    corpus, ckpt = fs_run
    out = tmp_path / "run"
    args = ["purify", "--quiet", "--cfg", "wmt14_en_de", "--model", f"fairseq:{ckpt}", "--out", str(out),
            "--cfg-options", f"data.root={corpus}", "data.max_len=24", "defense.options={'epochs': 1, 'batch_size': 8}",
            "augmentation.options={'max_candidates': 30}"]
    assert main(args) == 2  # a pickle: refused without --trust-checkpoint
    assert "--trust-checkpoint" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--trust-checkpoint"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert {"bleu", "asr"} <= set(rep["before"]) and rep["backdoor"]["backend"] == "fairseq"
    assert (out / "tokenizer.json").exists()
    # the purified weights load back into the fairseq model (keys under "fs.")
    model, _ = load_fairseq(ckpt, trust=True, max_len=24)
    load_checkpoint_into(model, out / "purified.safetensors")
    assert isinstance(model, FairseqSeq2Seq) and all(k.startswith("fs.") for k in model.state_dict())
