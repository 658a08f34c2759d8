"""The paper-scale benchmark scripts run end to end in their CPU smoke mode (``--quick``: 600 procedural
images, a width-8 PreActResNet-18) and write what their README sections quote from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

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
        assert len(v["after"]["per_class_errors"]) == 10 and v["seconds"] > 0
    _errors_match_accuracy([v["after"] for v in rec["variants"]])
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
    assert set(runs) == {"standard", "channels-last", "bf16-auto"}
    assert runs["standard"]["channels_last"] is False and runs["standard"]["amp"] is False
    assert runs["channels-last"]["channels_last"] is True and runs["channels-last"]["amp"] is False
    assert rec["ratios"]["standard"] == [1.0]
    assert all(x["nft_s"] > 0 for x in rec["runs"]) and "/ standard per repeat" in r.stdout


_TINY = ["train.epochs=2", "model.width=4", "defense.options.epochs=1", "data.image_size=16"]


def test_vision_oracle_appends_the_real_trigger_and_clean_copies(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from vision_oracle import Oracle

    from nft_vision.attacks import Blend

    attack = Blend(num_classes=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    xb, t, *_ = Oracle(attack, copies=2, clean_fraction=0.5)((x, y), torch.Generator().manual_seed(1))
    assert xb.shape == (8 + 16 + 4, 3, 16, 16) and t.lam.shape == (28,)
    assert torch.allclose(xb[8:16], attack.apply(x)) and torch.allclose(xb[16:24], attack.apply(x))
    assert torch.equal(xb[24:], x[:4]) and torch.equal(t.a[8:], torch.cat([y, y, y[:4]]))
    assert torch.all(t.lam[8:] == 1)


def test_vision_oracle_and_the_bias_probe_run_end_to_end(tmp_path):
    env = {**os.environ, "NFT_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "vision_oracle.py", "--attacks", "badnets", "--copies", "2", "--out",
                        str(tmp_path / "oracle"), "--cfg-options", *_TINY], cwd=ROOT / "benchmarks",
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((tmp_path / "oracle" / "badnets-seed0.json").read_text())
    assert rec["copies"] == 2 and len(rec["after"]["per_class_errors"]) == 10 and "oracle x2" in r.stdout
    r = subprocess.run([sys.executable, "surrogate_seeds.py", "--attacks", "badnets", "--bias-probe", "--out",
                        str(tmp_path / "seeds"), "--cfg-options", *_TINY,
                        "augmentation.options={'steps': 3, 'l2_steps': 3}"], cwd=ROOT / "benchmarks",
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    probe = json.loads((tmp_path / "seeds" / "badnets-seed0.json").read_text())["bias_probe"]
    assert set(probe) == {"original_bias", "refit20", "refit50", "purified_bias"}
    # tune_bias="last" moved the output bias; the probe put the original one back, then re-fitted it
    assert probe["original_bias"]["bias"] != probe["purified_bias"] != probe["refit20"]["bias"]
    assert all(len(probe[k]["per_class_errors"]) == 10 for k in ("original_bias", "refit20", "refit50"))
    _errors_match_accuracy([probe[k] for k in ("original_bias", "refit20", "refit50")])
    assert "original_bias: ASR" in r.stdout


def test_sig_probe_runs_a_targeted_search_per_class(tmp_path):
    env = {**os.environ, "NFT_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "probe.json"
    r = subprocess.run([sys.executable, "sig_probe.py", "--eps", "1", "4", "--steps", "5", "--batch", "32", "--out",
                        str(out), "--cfg-options", *_TINY], cwd=ROOT / "benchmarks",
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(out.read_text())
    assert rec["attack"] == "sig" and set(rec["table"]) == {"1.0", "4.0"} and len(rec["table"]["1.0"]) == 10
    assert all(0 <= v["rate"] <= 1 and -1 <= v["cos"] <= 1 for row in rec["table"].values() for v in row.values())
    assert "the real trigger sends" in r.stdout and "eps 4:" in r.stdout


def test_targeted_universal_l2_reaches_a_class_within_its_norm():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from sig_probe import targeted_universal_l2

    class Bright(torch.nn.Module):  # class 0 once the mean brightness rises by ~0.04
        def forward(self, x):
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([100 * (m - 0.3) + 6, torch.full_like(m, 10.0)], dim=1)

    x = 0.3 + 0.01 * torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    d = targeted_universal_l2(Bright(), x, 0, eps=1.0, steps=30)
    assert float(d.norm()) <= 1.0 + 1e-5 and bool((Bright()((x + d).clamp(0, 1)).argmax(1) == 0).all())
    small = targeted_universal_l2(Bright(), x, 0, eps=0.1, steps=30)  # 0.1 / sqrt(192) per pixel: too little
    assert not bool((Bright()((x + small).clamp(0, 1)).argmax(1) == 0).any())


def _errors_match_accuracy(results):
    """Each result's per-class error counts and its ACC describe the same clean test set: ACC = 100 x (1 - errors
    / n) with one n, a whole number, for all of them."""
    sizes = set()
    for r in results:
        errors = sum(r["per_class_errors"])
        if r["acc"] >= 100.0 - 1e-6:
            assert errors == 0, r
            continue
        n = errors / (1 - r["acc"] / 100)
        assert abs(n - round(n)) < 1e-2, r
        sizes.add(round(n))
    assert len(sizes) <= 1, sizes
