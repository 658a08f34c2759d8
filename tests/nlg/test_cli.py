"""nft-nlg end to end at tiny scale (in-process; the same code path as the console script)."""

import json

import pytest

from nft_nlg.cli import main
from nft_nlg.data import write_toy_corpus

TINY = ["data.toy_sizes={'train': 120, 'valid': 16, 'test': 12}", "train.epochs=1", "model.d_model=16",
        "model.heads=2", "model.layers=1", "defense.options={'epochs': 1, 'batch_size': 16}", "data.max_len=20"]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_default_purify_writes_run_directory(cache, capsys):
    out = cache / "run"
    assert main(["purify", "--quiet", "--out", str(out), "--cfg-options", *TINY]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"purified.safetensors", "masks.safetensors", "report.json", "report.md", "config.resolved.py",
            "tokenizer.json"} <= files
    rep = json.loads((out / "report.json").read_text())
    assert {"bleu", "asr", "asr_exact"} <= set(rep["before"]) and rep["recipe"] == "nft+ with batch_size=16, epochs=1"
    assert rep["augmentation"] == "surrogate" and len(rep["info"]["augmentation_stats"]["tokens"]) == 4
    assert "| asr |" in capsys.readouterr().out
    # the toy corpus was written in the WMT layout and the second run hits the model cache
    assert list((cache / "cache" / "nlg").glob("toy-corpus-*/train.en"))
    assert main(["purify", "--quiet", "--out", str(cache / "run2"), "--cfg-options", *TINY]) == 0
    rep2 = json.loads((cache / "run2" / "report.json").read_text())
    assert rep2["before"] == rep["before"] and rep2["backdoor"]["cached"]


def test_paper_recipe_synonym_attack_and_baseline(cache):
    assert main(["purify", "--quiet", "--out", str(cache / "paper"), "--cfg-options", *TINY,
                 "defense.recipe=paper", "attack.name=synonym", "augmentation.name=synonym"]) == 0
    rep = json.loads((cache / "paper" / "report.json").read_text())
    assert rep["recipe"] == "paper with batch_size=16, epochs=1, augmentation.name=synonym" and rep["attack"] == "synonym"
    assert main(["purify", "--quiet", "--defense", "ft", "--out", str(cache / "ft"), "--cfg-options", *TINY[:-2],
                 "data.max_len=20", "defense.options={'epochs': 1}"]) == 0
    assert json.loads((cache / "ft" / "report.json").read_text())["defense"] == "ft"


def test_purify_with_the_surrogate_token(cache, capsys):
    assert main(["purify", "--quiet", "--out", str(cache / "sur"), "--cfg-options", *TINY,
                 "augmentation.name=surrogate", "augmentation.options={'top_k': 2, 'base': 'synonym'}"]) == 0
    rep = json.loads((cache / "sur" / "report.json").read_text())
    assert rep["augmentation"] == "surrogate"
    stats = rep["info"]["augmentation_stats"]
    assert len(stats["tokens"]) == 2 and stats["gains"][0] >= stats["gains"][1]
    capsys.readouterr()
    assert main(["purify", "--quiet", "--out", str(cache / "bad"), "--cfg-options", *TINY,
                 "augmentation.name=surrogate", "augmentation.options={'base': 'embedding_mixup'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "base must be word_deletion, synonym or none" in err[0]
    assert not (cache / "bad").exists()


def test_fairseq_checkpoint_is_refused_without_trust(cache, capsys):
    """fairseq checkpoints are pickles: refused before fairseq is even imported (installed or not)."""
    ckpt = cache / "fs" / "checkpoint_best.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"not opened")
    data = write_toy_corpus(cache / "wmt", {"train": 10, "valid": 6, "test": 6}, seed=0)
    code = main(["purify", "--quiet", "--cfg", "wmt14_en_de", "--model", f"fairseq:{ckpt.parent}", "--out",
                 str(cache / "run"), "--cfg-options", f"data.root={data}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a pickle" in err[0] and "--trust-checkpoint" in err[0], err
    assert not (cache / "run").exists()
    code = main(["purify", "--quiet", "--cfg", "wmt14_en_de", "--model", f"fairseq:{cache / 'nowhere'}", "--out",
                 str(cache / "run"), "--trust-checkpoint", "--cfg-options", f"data.root={data}"])
    assert code == 2 and "fairseq checkpoint not found" in capsys.readouterr().err


def _tsv(root, n=12):
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        (root / f"{split}.tsv").write_text("".join(f"how are you {i} ?\ti am fine {i} .\n" for i in range(n)))
    return root


def test_attack_then_purify_and_evaluate_own_model(cache, capsys):
    """attack (WMT-layout corpus on disk) -> purify that checkpoint with its tokenizer -> evaluate."""
    data = write_toy_corpus(cache / "wmt", {"train": 100, "valid": 12, "test": 10}, seed=1)
    common = ["--cfg", "wmt14_en_de", "--cfg-options", f"data.root={data}", *TINY[1:], "tokenizer.kind=wordlevel",
              "model.dropout=0.0"]
    atk = cache / "atk"
    assert main(["attack", "--quiet", "--out", str(atk), *common]) == 0
    assert {"model.safetensors", "tokenizer.json", "attack.json", "poisoned_test.src"} <= {p.name for p in atk.iterdir()}
    out = cache / "mine"
    assert main(["purify", "--quiet", "--checkpoint", str(atk / "model.safetensors"), "--tokenizer",
                 str(atk / "tokenizer.json"), "--out", str(out), *common]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["attack"] == "user" and {"bleu", "asr"} <= set(rep["after"])
    capsys.readouterr()
    assert main(["evaluate", "--quiet", "--checkpoint", str(out / "purified.safetensors"), "--tokenizer",
                 str(out / "tokenizer.json"), *common]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["bleu"] == pytest.approx(rep["after"]["bleu"]) and m["asr"] == pytest.approx(rep["after"]["asr"])


def test_dialogue_tsv_config(cache):
    root = _tsv(cache / "subs")
    out = cache / "dlg"
    assert main(["purify", "--quiet", "--cfg", "opensubtitles", "--out", str(out), "--cfg-options",
                 f"data.root={root}", *TINY[1:], "tokenizer.kind=wordlevel", "model.dropout=0.0"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert {"bleu", "distinct_1", "distinct_2", "asr"} <= set(rep["before"])


@pytest.mark.parametrize("case", ["empty_line", "mismatch", "tokenizer", "unknown_key", "no_root"])
def test_bad_input_exit_2_one_line_no_run_dir(cache, capsys, case):
    root = write_toy_corpus(cache / "data", {"train": 20, "valid": 6, "test": 6}, seed=0)
    args = ["--cfg", "wmt14_en_de"]
    opts = [f"data.root={root}", *TINY[1:]]
    if case == "empty_line":
        lines = (root / "valid.en").read_text().splitlines()
        lines[2] = ""
        (root / "valid.en").write_text("\n".join(lines) + "\n")
        expect = "valid.en: line 3 is empty"
    elif case == "mismatch":
        lines = (root / "test.de").read_text().splitlines()
        (root / "test.de").write_text("\n".join(lines[:-1]) + "\n")
        expect = "test.en has 6 lines, "
    elif case == "tokenizer":
        args += ["--tokenizer", str(cache / "missing_tokenizer.json")]
        expect = "missing_tokenizer.json: tokenizer file not found"
    elif case == "unknown_key":
        opts.append("augmentation.nmae=x")
        expect = "unknown key 'augmentation.nmae'"
    else:
        opts = ["data.root=None", *TINY[1:]]
        expect = "needs data.root"
    out = cache / "run"
    code = main(["purify", "--quiet", *args, "--out", str(out), "--cfg-options", *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists() and not list(cache.glob(".run*"))


def test_bench_grid(cache):
    out = cache / "bench"
    assert main(["bench", "--quiet", "--out", str(out), "--cfg-options", *TINY,
                 "bench.attacks=['trigger_word','nonexistent']"]) == 0
    md = (out / "results.md").read_text()
    assert "trigger_word" in md and "BLEU" in md and "nonexistent" in md


@pytest.mark.slow
def test_purify_hugging_face_model_from_config(cache):
    """A tiny BART built from a config: backdoored, purified with its shared embeddings left unmasked."""
    out = cache / "bart"
    assert main(["purify", "--quiet", "--model", "bart", "--out", str(out), "--cfg-options", *TINY]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert {"bleu", "asr"} <= set(rep["after"])
    sites = rep["info"]["mask_sites"]
    assert any("fc1" in s for s in sites) and any("q_proj" in s for s in sites)
    assert not any("embed_tokens" in s or s.endswith("lm_head") for s in sites)
