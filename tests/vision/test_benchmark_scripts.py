"""The paper-scale benchmark scripts run end to end in their CPU smoke mode (``--quick``: 600 procedural
images, a width-8 PreActResNet-18) and write what their README sections quote from."""

from __future__ import annotations

import json
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
