"""AugMix, RandAugment (torchvision v2 under a forked RNG) and PGD adversarial examples (NFT's Table 15)."""

import json
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nft_core import NFT, ClassificationAdapter, TensorData
from nft_core.contracts import Augmentation
from nft_core.errors import NFTInputError
from nft_core.testing import check_augmentation_consistent
from nft_vision import PGD, AugMix, RandAugment
from nft_vision.augment import forked_rng
from nft_vision.cli import main
from nft_vision.config import VisionConfig
from nft_vision.workflow import build_augmentation


def _images(b=8, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth images with structure (geometric/photometric ops must visibly change them)
    low = torch.rand(b, 3, 4, 4, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return x.mul(255).round().div(255)  # on the 1/255 grid, as images loaded from disk are


# ------------------------------------------------------------------------------------- v2 wrappers
@pytest.mark.parametrize("aug", [RandAugment(), AugMix(), RandAugment(num_ops=1, magnitude=30), AugMix(10, width=1)],
                         ids=repr)
def test_v2_augmentations_contract(aug):
    x, y, extra = _images(), torch.arange(8), torch.zeros(8)
    x0 = x.clone()
    py_state = random.getstate()

    def check(batch, out):
        xa, ya, ea = out
        assert xa.shape == x.shape and xa.dtype == x.dtype and xa.device == x.device
        assert 0 <= xa.min() and xa.max() <= 1
        assert torch.equal(ya, y) and torch.equal(ea, extra)

    # same generator seed -> same output, and the global torch RNG is untouched (checked by the helper)
    out = check_augmentation_consistent(aug, (x, y, extra), check, seed=3)
    assert random.getstate() == py_state
    assert torch.equal(x, x0)  # the input batch is not modified
    assert isinstance(aug, Augmentation)
    other = aug((x, y, extra), torch.Generator().manual_seed(4))[0]
    assert not torch.equal(out[0], other)  # the generator does drive the randomness
    changed = (out[0] - x).abs().flatten(1).amax(1) > 1.5 / 255
    assert changed.sum() >= 5  # most images are visibly transformed


@pytest.mark.parametrize("cls", [RandAugment, AugMix])
def test_v2_augmentations_draw_per_image_parameters(cls):
    """A v2 transform on a whole batch would share one set of parameters: the wrappers must not."""
    x = _images(1).expand(8, -1, -1, -1).contiguous()  # eight copies of one image
    out = cls()((x, torch.zeros(8)), torch.Generator().manual_seed(0))[0]
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) >= 6


def test_forked_rng_restores_global_state_and_is_reproducible():
    before = torch.random.get_rng_state()
    with forked_rng(torch.Generator().manual_seed(1)):
        a = torch.rand(5)
    with forked_rng(torch.Generator().manual_seed(1)):
        b = torch.rand(5)
    with forked_rng(torch.Generator().manual_seed(2)):
        c = torch.rand(5)
    assert torch.equal(before, torch.random.get_rng_state())
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_table15_defaults_and_bad_options():
    assert (RandAugment().num_ops, RandAugment().magnitude) == (4, 10)
    assert (AugMix().severity, AugMix().width, AugMix().alpha) == (5, 3, 1.0)
    p = PGD()
    assert (p.norm, p.eps, p.steps) == ("l2", 1.0, 2)
    with pytest.raises(ValueError):
        RandAugment(magnitude=31)
    with pytest.raises(ValueError):
        AugMix(severity=0)
    with pytest.raises(ValueError):
        PGD(norm="l1")


@pytest.mark.parametrize("name,cls", [("augmix", AugMix), ("randaugment", RandAugment), ("pgd", PGD)])
def test_build_augmentation_names(name, cls):
    cfg = VisionConfig()
    cfg.augmentation.name = name
    assert isinstance(build_augmentation(cfg), cls)
    cfg.augmentation.options = {"no_such_option": 1}
    with pytest.raises(NFTInputError, match=name):
        build_augmentation(cfg)


# --------------------------------------------------------------------------------------------- PGD
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def _trained_model():
    """Three classes by a slightly brighter colour channel; trained to high accuracy in a second."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 3
    x = torch.rand(96, 3, 8, 8, generator=g) * 0.5
    x[torch.arange(96), y] += 0.1
    model = _Net()
    torch.manual_seed(0)  # test code only: deterministic init
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    assert (model.eval()(x).argmax(1) == y).float().mean() > 0.9
    return model, x, y


@pytest.mark.parametrize("norm,eps,step", [("linf", 8 / 255, 2 / 255), ("l2", 1.0, 0.5)])
def test_pgd_increases_loss_within_budget_and_restores_model(norm, eps, step):
    model, x, y = _trained_model()
    model.train()
    model.fc.weight.requires_grad_(False)  # a frozen parameter must stay frozen, the others trainable
    stats = model.bn.running_mean.clone()
    pgd = PGD(norm=norm, eps=eps, step_size=step, steps=10).bind(model)
    rng = torch.random.get_rng_state()
    xa, ya, extra = pgd((x, y, torch.ones(96)), torch.Generator().manual_seed(0))
    xb = pgd((x, y, torch.ones(96)), torch.Generator().manual_seed(0))[0]
    assert torch.equal(rng, torch.random.get_rng_state()) and torch.equal(xa, xb)
    assert torch.equal(ya, y) and torch.equal(extra, torch.ones(96)) and not xa.requires_grad
    assert 0 <= xa.min() and xa.max() <= 1
    d = (xa - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert size.max() <= eps + 1e-5 and size.mean() > 0.5 * eps
    # the model is restored: training flag, requires_grad flags, no gradients, BN statistics untouched
    assert model.training
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["fc.weight"]
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model.bn.running_mean, stats)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    noise = noise.sign() * eps if norm == "linf" else noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps
    with torch.no_grad():
        model.eval()
        clean, adv = F.cross_entropy(model(x), y), F.cross_entropy(model(xa), y)
        rand = F.cross_entropy(model((x + noise).clamp(0, 1)), y)  # same budget, no gradient
        acc_adv = (model(xa).argmax(1) == y).float().mean()
    assert adv > clean + 0.2 and adv > 10 * rand and acc_adv < 0.9


def test_pgd_needs_binding():
    with pytest.raises(RuntimeError, match="bind"):
        PGD()((torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)), torch.Generator())


def test_nft_binds_pgd_to_the_masked_working_copy():
    model, x, y = _trained_model()
    model.eval()
    data = TensorData(x[:30], y[:30])
    pgd = PGD(norm="linf", eps=4 / 255, step_size=2 / 255, steps=2)
    result = NFT(augmentation=pgd, epochs=2, batch_size=16, seed=0).purify(model, data, ClassificationAdapter(3))
    assert pgd.model is not None and pgd.model is not model  # NFT's working copy, not the caller's model
    assert "PGD(norm=linf" in result.info["augmentation"] and result.history
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name,options,expected", [
    ("pgd", "{'norm': 'linf', 'eps': 0.03, 'steps': 2}", "PGD(norm=linf, eps=0.03"),
    ("surrogate", "{'steps': 5}", "SurrogateTrigger(kind=patch, search=untargeted, lam=0.003, steps=5"),  # this project's option
])
def test_cli_purify_with_a_model_dependent_augmentation(tmp_path, monkeypatch, name, options, expected):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["purify", "--quiet", "--out", str(out), "--cfg-options", "train.epochs=2", "model.width=4",
                 "defense.options.epochs=2", "data.image_size=16", f"augmentation.name={name}",
                 f"augmentation.options={options}"])
    assert code == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["info"]["augmentation"].startswith(expected)
    assert {"acc", "asr"} <= set(rep["after"])


# ------------------------------------------------------------------------ AugMix's consistency loss
def test_augmix_jsd_batch_holds_the_clean_view_and_two_augmix_views():
    from nft_core import ConsistencyTarget

    x, y, extra = _images(), torch.arange(8), torch.zeros(8)

    def check(batch, out):
        xv, t, ea = out
        assert xv.shape == (8, 3, *x.shape[1:]) and torch.equal(xv[:, 0], x)
        assert isinstance(t, ConsistencyTarget) and torch.equal(t.y, y) and t.weight == 12.0
        assert torch.equal(ea, extra)
        assert not torch.equal(xv[:, 1], x) and not torch.equal(xv[:, 2], x) and not torch.equal(xv[:, 1], xv[:, 2])

    check_augmentation_consistent(AugMix(jsd=True), (x, y, extra), check)
    with pytest.raises(ValueError):
        AugMix(jsd_weight=-1.0)
    assert "jsd=True" in repr(AugMix(jsd=True)) and "jsd" not in repr(AugMix())


def test_consistency_loss_is_cross_entropy_plus_weighted_jsd():
    from nft_core import ConsistencyTarget

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    ad = ClassificationAdapter(5)
    x, y = torch.rand(6, 3, 4, 4), torch.randint(0, 5, (6,))
    same = torch.stack([x, x, x], 1)
    ce = F.cross_entropy(model(x), y)
    # identical views: the divergence is 0 and the loss is the clean cross-entropy
    assert torch.allclose(ad.loss(model, (same, ConsistencyTarget(y, 12.0))), ce, atol=1e-6)
    views = torch.stack([x, torch.rand_like(x), torch.rand_like(x)], 1)
    p = model(views.flatten(0, 1)).softmax(-1).view(6, 3, 5)
    m = p.mean(1)
    jsd = sum((p[:, i] * (p[:, i].log() - m.log())).sum(-1).mean() for i in range(3)) / 3
    for w in (0.0, 1.0, 12.0):
        got = ad.loss(model, (views, ConsistencyTarget(y, w)))
        assert torch.allclose(got, ce + w * jsd, atol=1e-5), (w, got, ce + w * jsd)
    assert jsd > 0
    with pytest.raises(ValueError):
        ad.loss(model, (x.flatten(1), ConsistencyTarget(y)))  # no views dimension


def test_views_stay_together_when_a_batch_is_sharded():
    from nft_core import ConsistencyTarget
    from nft_core.distributed import shard_batch

    x, y = _images(6), torch.arange(6)
    xv, t = AugMix(jsd=True)((x, y), torch.Generator().manual_seed(0))
    (xs, ts), share = shard_batch((xv, t), 1, 2)
    assert share == 0.5 and torch.equal(xs, xv[3:]) and torch.equal(ts.y, y[3:])
    assert isinstance(ts, ConsistencyTarget) and ts.weight == t.weight


def test_nft_runs_with_augmix_jsd_and_the_cli_option(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    model.eval()
    x, y = _images(12), torch.arange(12) % 3
    res = NFT(augmentation=AugMix(jsd=True), epochs=2, batch_size=6).purify(model, TensorData(x, y),
                                                                            ClassificationAdapter(3))
    assert len(res.history) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in res.history)
    assert "jsd=True" in res.info["augmentation"]
    cfg = VisionConfig()
    cfg.augmentation.name, cfg.augmentation.options = "augmix", {"jsd": True}
    assert build_augmentation(cfg).jsd
