"""The paper-scale benchmark scripts run end to end in their CPU smoke mode (``--quick``: 600 procedural
images, a width-8 PreActResNet-18) and write what their README sections quote from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_paper_scale_variants_quick_writes_each_variant(tmp_path):
    variants = [
        {"label": "nft-l2", "defense": "nft", "options": {"epochs": 1},
         "augmentation": {"name": "surrogate", "options": {"kind": "l2", "steps": 3}}},
        {"label": "nad-lr0.01", "defense": "nad", "options": {"lr": 0.01, "teacher_lr": 0.01, "epochs": 1,
                                                             "teacher_epochs": 1}},
    ]
    out = tmp_path / "psv"
    r = subprocess.run([sys.executable, "paper_scale_variants.py", "--device", "cpu", "--quick", "--out", str(out),
                        "--variants", json.dumps(variants)], cwd=ROOT / "benchmarks", capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((out / "badnets.json").read_text())
    assert [v["label"] for v in rec["variants"]] == ["nft-l2", "nad-lr0.01"]
    nft, nad = rec["variants"]
    assert 0 < nft["search"]["l2"] <= 2.0 + 1e-4  # the L2 search ran, inside its default radius
    assert nad["info"]["defense"] == "nad" and nad["search"] is None
    for v in rec["variants"]:
        assert 0.0 <= v["after"]["acc"] <= 100.0 and 0.0 <= v["after"]["asr"] <= 100.0
        assert len(v["after"]["per_class_errors"]) == 10 and v["seconds"] > 0
    assert "nft-l2: ASR" in r.stdout and "nad-lr0.01: ASR" in r.stdout


def test_paper_scale_variants_rejects_a_malformed_list(tmp_path):
    r = subprocess.run([sys.executable, "paper_scale_variants.py", "--device", "cpu", "--quick", "--out",
                        str(tmp_path / "x"), "--variants", '[{"defense": "nad"}]'], cwd=ROOT / "benchmarks",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "label" in r.stderr and not (tmp_path / "x").exists()


def test_nft_cpu_speed_runs_each_setting_and_records_what_ran(tmp_path):
    out = tmp_path / "speed"
    tiny = ["train.epochs=2", "model.width=4", "defense.options.epochs=1", "data.image_size=16",
            "augmentation.options={'steps': 3, 'l2_steps': 3}"]
    r = subprocess.run([sys.executable, "nft_cpu_speed.py", "--out", str(out), "--cfg-options", *tiny],
                       cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=600,
                       env={**os.environ, "NFT_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((out / "results.json").read_text())
    runs = {x["setting"]: x for x in rec["runs"]}
    assert set(runs) == {"standard", "channels-last", "default"}
    assert runs["standard"]["channels_last"] is False and runs["standard"]["amp"] is False
    assert runs["channels-last"]["channels_last"] is True and runs["channels-last"]["amp"] is False
    assert rec["ratios"]["standard"] == [1.0]
    assert all(x["nft_s"] > 0 for x in rec["runs"]) and "/ standard per repeat" in r.stdout
