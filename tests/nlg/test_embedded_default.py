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
    # measured on the build machine: ASR 100 -> 0, BLEU 90.3 -> ~85 (see the package report)
    assert after["asr"] <= 10
    assert after["bleu"] >= before["bleu"] - 8
