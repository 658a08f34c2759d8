"""The asymmetric loss (Ridnik et al., ICCV 2021) of the multi-label family: its formula on hand-worked
values, BCE as its special case, the clip that silences easy negatives, option checks, and
`train.loss=asl` through the CLI (training, NFT's loss, cache key, errors)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from nft_core import MixedTarget
from nft_detection.adapters import MultiLabelAdapter, asymmetric_loss, multilabel_loss
from nft_detection.cli import main
from nft_detection.config import DetectConfig

from .test_cli import TINY


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_asl_matches_the_papers_formula_on_hand_worked_values():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    y = torch.tensor([[1.0, 0.0, 1.0]])
    got = asymmetric_loss(logits, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05)
    pm = _sig(2.0) - 0.05  # the shifted probability of the negative
    terms = [(1 - 0.5) ** 1 * math.log(0.5),                    # positive, p = 0.5
             pm ** 4 * math.log(1 - pm),                         # negative, focused and shifted
             (1 - _sig(-1.0)) ** 1 * math.log(_sig(-1.0))]       # positive, p = σ(−1)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(-sum(terms) / 3, rel=1e-5)


def test_asl_without_focusing_or_clip_is_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g) * 3
    y = (torch.rand(5, 7, generator=g) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(-1)
    assert torch.allclose(asymmetric_loss(logits, y, gamma_pos=0, gamma_neg=0, clip=0), bce, atol=1e-6)
    assert torch.allclose(multilabel_loss("bce")(logits, y), bce)
    # the defaults (γ− = 4, m = 0.05) weigh the negatives less than BCE does
    assert (asymmetric_loss(logits, torch.zeros_like(y)) < F.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(y), reduction="none").mean(-1)).all()


def test_asl_clip_gives_easy_negatives_no_loss_and_no_gradient():
    logits = torch.tensor([[-5.0, 3.0]], requires_grad=True)  # p = 0.007 (easy negative), 0.95
    loss = asymmetric_loss(logits, torch.zeros(1, 2), clip=0.05)
    loss.sum().backward()
    assert logits.grad[0, 0] == 0 and logits.grad[0, 1] > 0
    soft = asymmetric_loss(logits.detach(), torch.tensor([[0.3, 0.0]]))  # soft targets weight both terms
    assert soft.item() > asymmetric_loss(logits.detach(), torch.zeros(1, 2)).item()


def test_adapter_uses_the_configured_loss_with_mixed_targets():
    model = torch.nn.Linear(4, 3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g)
    ya, yb = (torch.rand(6, 3, generator=g) > 0.5).float(), (torch.rand(6, 3, generator=g) > 0.5).float()
    lam = torch.full((6,), 0.7)
    ad = MultiLabelAdapter(3, loss="asl", loss_options={"gamma_neg": 2.0})
    got = ad.loss(model, (x, MixedTarget(ya, yb, lam)))
    logits = model(x)
    want = (0.7 * asymmetric_loss(logits, ya, gamma_neg=2.0) + 0.3 * asymmetric_loss(logits, yb, gamma_neg=2.0)).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    assert MultiLabelAdapter(3).loss(model, (x, ya)).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, ya).item(), rel=1e-5)


@pytest.mark.parametrize("name,options,match", [("focal", {}, "unknown multi-label loss"),
                                                ("asl", {"gama_neg": 4}, "unknown asl option"),
                                                ("asl", {"clip": 1.5}, "0 <= clip < 1"),
                                                ("bce", {"clip": 0.1}, "takes no options")])
def test_bad_loss_settings_are_rejected(name, options, match):
    with pytest.raises(ValueError, match=match):
        multilabel_loss(name, **options)


def test_default_loss_keeps_the_cache_keys_of_before():
    cfg = DetectConfig()
    assert "loss" not in cfg.attack_key()["train"]
    cfg.train.loss = "asl"
    assert cfg.attack_key()["train"]["loss"] == "asl"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_cli_trains_and_purifies_with_asl(cache):
    atk = cache / "atk"
    assert main(["attack", "--quiet", "--out", str(atk), "--cfg-options", *TINY, "train.loss=asl"]) == 0
    assert json.loads((atk / "attack.json").read_text())["loss"] == "asl"
    out = cache / "run"
    assert main(["purify", "--quiet", "--out", str(out), "--cfg-options", *TINY, "train.loss=asl",
                 "train.loss_options={'gamma_neg': 2.0}"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["config"]["train"]["loss"] == "asl" and {"map", "asr"} <= set(rep["after"])
    assert rep["config"]["defense"]["loss"] == "bce"  # the defenses' loss is chosen apart
    cached = sorted(p.name for p in (cache / "cache" / "detection").glob("multilabel-*"))
    assert len(cached) == 1  # the purify run trained its own (gamma_neg 2) model; attack does not cache
    out2 = cache / "run2"  # NFT with ASL on the same cached model
    assert main(["purify", "--quiet", "--out", str(out2), "--cfg-options", *TINY, "train.loss=asl",
                 "train.loss_options={'gamma_neg': 2.0}", "defense.loss=asl"]) == 0
    rep2 = json.loads((out2 / "report.json").read_text())
    assert rep2["config"]["defense"]["loss"] == "asl" and rep2["before"] == rep["before"]
    assert rep2["history"] != rep["history"]  # another loss on the masks, another run


@pytest.mark.parametrize("family,option,expect", [
    ("multilabel", "train.loss=focal", "train.loss='focal': unknown multi-label loss 'focal'"),
    ("multilabel", "defense.loss=focal", "defense.loss='focal': unknown multi-label loss 'focal'"),
    ("detector", "train.loss=asl", "is a multi-label loss"),
    ("detector", "defense.loss=asl", "is a multi-label loss")])
def test_bad_loss_exit_2_one_line(cache, capsys, family, option, expect):
    out = cache / "run"
    code = main(["purify", "--quiet", "--family", family, "--out", str(out), "--cfg-options", *TINY, option])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists()
