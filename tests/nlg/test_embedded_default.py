"""The embedded default at full size (trains the backdoored toy-MT transformer: minutes on 2 CPU cores)."""

import json

import pytest

from nft_nlg.cli import main


@pytest.mark.slow
def test_embedded_default_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["purify", "--quiet", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    before, after = rep["before"], rep["after"]
    assert before["asr"] >= 90 and before["bleu"] >= 80  # a working backdoored translator
    # measured on the build machine (surrogate token, 8 epochs): ASR 100 -> 0, BLEU 89.61 -> 89.56
    assert after["asr"] <= 10 and rep["augmentation"] == "surrogate"
    assert after["bleu"] >= before["bleu"] - 3  # issue 8's bar
