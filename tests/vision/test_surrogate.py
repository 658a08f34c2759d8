"""The surrogate-trigger augmentation (this project's option, docs/method.md)."""


import pytest
import torch

from nft_core import NFT, ClassificationAdapter
from nft_core.contracts import MixedTarget
from nft_core.testing.toy import make_toy_backdoor
from nft_vision import SurrogateTrigger
from nft_vision.config import VisionConfig
from nft_vision.workflow import build_augmentation


@pytest.fixture(scope="module")
def toy():
    return make_toy_backdoor(seed=0)


def _batch(toy, n=128):
    xs = torch.stack([toy.val[i][0] for i in range(n)])
    ys = torch.tensor([int(toy.val[i][1]) for i in range(n)])
    return xs, ys


@pytest.mark.parametrize("kind", ["patch", "l2"])
def test_search_finds_the_backdoor_shortcut_and_restores_the_model(toy, kind):
    model = toy.model
    model.train()
    last = list(model.parameters())[-1]
    last.requires_grad_(False)  # a frozen parameter must stay frozen, the others trainable
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    stats = {n: b.clone() for n, b in model.named_buffers()}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    x, y = _batch(toy)
    aug = SurrogateTrigger(kind=kind, eps=3.0, steps=None if kind == "patch" else 50).bind(model)
    rng = torch.random.get_rng_state()
    xb, target, *_ = aug((x, y), torch.Generator().manual_seed(0))
    assert torch.equal(rng, torch.random.get_rng_state())
    if kind == "patch":
        # the untargeted search on clean images lands on the attacker's class: the backdoor is the easiest
        # flip (the L2 search does not find this 16x16 toy's patch backdoor: it goes to class 3 or 7)
        assert aug.stats["dominant_class"] == toy.target and aug.stats["dominant_share"] > 0.8, aug.stats
        assert aug.stats["fooling"] > 0.7 and aug.stats["mask_l1"] < 0.5 * x.shape[-1] * x.shape[-2]
    else:
        assert abs(aug.stats["l2"] - 3.0) < 1e-3 and aug.stats["fooling"] > 0.2, aug.stats
    # the batch: base augmentation of the clean batch, then the triggered copy with the TRUE labels
    assert xb.shape == (2 * len(x), *x.shape[1:]) and isinstance(target, MixedTarget)
    assert torch.equal(target.a[len(x):], y) and torch.equal(target.b[len(x):], y)
    assert torch.all(target.lam[len(x):] == 1) and torch.allclose(xb[len(x):], aug.apply(x))
    assert 0 <= xb.min() and xb.max() <= 1
    # frozen: a second call stamps the same trigger
    before = aug.apply(x).clone()
    aug((x, y), torch.Generator().manual_seed(1))
    assert torch.equal(aug.apply(x), before)
    # the model is left as it was
    assert model.training and {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all((g is None and p.grad is None) or torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert all(torch.equal(b, stats[n]) for n, b in model.named_buffers())
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)


def test_per_class_search_picks_the_attackers_class(toy):
    """Neural Cleanse's procedure: one targeted search per class; the backdoor's target needs the smallest
    patch (and every class's mask area is reported)."""
    x, y = _batch(toy, 64)
    aug = SurrogateTrigger(search="per_class", steps=150).bind(toy.model)
    aug((x, y), torch.Generator().manual_seed(0))
    areas = aug.stats["mask_l1_per_class"]
    assert aug.stats["target_class"] == toy.target and len(areas) == 10, aug.stats
    assert areas[toy.target] == min(areas.values()) and areas[toy.target] < 0.5 * sorted(areas.values())[1]
    assert aug.stats["dominant_class"] == toy.target and "per_class" in repr(aug)


def test_surrogate_makes_the_paper_recipe_remove_the_toy_backdoor(toy):
    """The core toy: the paper's recipe (MixUp) leaves ASR at 100 (README); with the surrogate it does not."""
    ad = ClassificationAdapter(10)
    before = ad.evaluate(toy.model, toy.test)
    assert before["asr"] > 90
    aug = SurrogateTrigger()
    res = NFT(augmentation=aug, epochs=40, seed=0).purify(toy.model, toy.val, ad)
    after = ad.evaluate(res.model, toy.test)
    assert after["asr"] < 20 and after["acc"] > before["acc"] - 3, (before, after, aug.stats)
    assert aug.model is not toy.model and res.info["augmentation"].startswith("SurrogateTrigger(kind=patch")
    assert res.info["augmentation_stats"]["dominant_class"] == toy.target


def test_bad_options_and_unbound_use():
    for kw in ({"kind": "linf"}, {"lam": -1}, {"eps": 0}, {"steps": 0}, {"ce_cap": 0}, {"fraction": 0},
               {"fooling_target": 1.5}, {"search": "all"}, {"search": "per_class", "kind": "l2"},
               {"clean_fraction": -0.1}, {"clean_fraction": 1.5}, {"disjoint": "yes"},
               {"disjoint": "alone", "kind": "l2"}, {"disjoint_ratio": 0}):
        with pytest.raises(ValueError):
            SurrogateTrigger(**kw)
    with pytest.raises(RuntimeError, match="bind"):
        SurrogateTrigger()((torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)), torch.Generator())
    aug = SurrogateTrigger().bind(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="images"):
        aug((torch.rand(2, 3, 8), torch.zeros(2, dtype=torch.long)), torch.Generator())
    with pytest.raises(RuntimeError, match="search"):
        aug.apply(torch.rand(2, 3, 8, 8))


def test_build_augmentation():  # the CLI run: test_augment_extra.py::test_cli_purify_with_a_model_dependent_augmentation
    cfg = VisionConfig()
    cfg.augmentation.name, cfg.augmentation.options = "surrogate", {"kind": "l2", "eps": 1.5}
    aug = build_augmentation(cfg)
    assert isinstance(aug, SurrogateTrigger) and aug.kind == "l2" and aug.eps == 1.5
    default = build_augmentation(VisionConfig())  # the vision default: the gated recipe with its fallbacks
    assert isinstance(default, SurrogateTrigger) and default.kind == "both" and default.rounds_margin == 0.5
    assert default.fallback_unresolved == "ambiguous" and default.fallback_shrink == 0.03 and not default.target_clean


def test_another_kind_over_the_default_drops_the_defaults_only_that_kind_rejects():
    """The CIFAR-scale advice, ``augmentation.options={'kind': 'patch'}``, must work although the default's
    gate fallback needs kind='both': defaults that only apply to other kinds are dropped, the
    rest stay, and what the user sets explicitly still gets the constructor's error."""
    from nft_core.errors import NFTInputError

    cfg = VisionConfig()
    cfg.augmentation.options = {"kind": "patch"}
    patch = build_augmentation(cfg)
    assert patch.kind == "patch" and patch.rounds == 2 and patch.disjoint == "alone" and patch.rounds_margin == 0.5
    assert patch.fallback_shrink == 0 and patch.fooling_target == 0.99
    cfg.augmentation.options = {"kind": "l2"}
    l2 = build_augmentation(cfg)
    assert l2.kind == "l2" and l2.rounds == 1 and l2.disjoint == "off" and l2.fooling_target == 0.99
    cfg.augmentation.options = {"kind": "patch", "fallback_shrink": 0.03}
    with pytest.raises(NFTInputError, match="fallback_shrink"):
        build_augmentation(cfg)


def test_fooling_target_counts_only_flippable_samples(toy):
    """A batch where the attacker's class holds 30%: a trigger sending everything there flips at most 70% of
    the whole batch, so a 90% target over the whole batch was unreachable (the search then let its mask
    grow without bound). Counted over the samples of the other classes, it is reached with a small mask."""
    xs = torch.stack([toy.val[i][0] for i in range(len(toy.val))])
    ys = torch.tensor([int(toy.val[i][1]) for i in range(len(toy.val))])
    tgt = torch.nonzero(ys == toy.target).flatten()
    other = torch.nonzero(ys != toy.target).flatten()
    idx = torch.cat([tgt[:36], other[: 96 - len(tgt[:36])]])
    x, y = xs[idx], ys[idx]
    assert (y == toy.target).float().mean() > 0.25
    aug = SurrogateTrigger().bind(toy.model.eval())
    aug((x, y), torch.Generator().manual_seed(0))
    s = aug.stats
    assert s["reached"] and s["dominant_class"] == toy.target, s
    assert s["fooling"] >= 0.9 > s["fooling_all"], s
    assert s["mask_l1"] < 0.25 * x.shape[-1] * x.shape[-2], s



class _BrightnessShortcut(torch.nn.Module):
    """Class 0 wins once an image's mean brightness rises by ~0.04: a 'backdoor' both kinds of search find."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([100 * (m - 0.3) + 6, torch.full_like(m, 10.0), torch.full_like(m, 9.0)], dim=1)


def test_both_kind_appends_one_copy_per_kept_trigger():
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.01 * torch.randn(32, 3, 16, 16, generator=g)
    y = torch.ones(32, dtype=torch.long)
    aug = SurrogateTrigger(kind="both", l2_steps=30).bind(_BrightnessShortcut())
    xb, target, *_ = aug((x, y), torch.Generator().manual_seed(0))
    s = aug.stats
    assert s["used"] == "patch+l2" and s["dominant_class"] == s["l2_dominant_class"] == 0, s
    assert s["fooling"] >= 0.9 and s["l2_fooling"] >= 0.9 and abs(s["l2_norm"] - 2.0) < 1e-3, s
    n = len(x)
    assert xb.shape == (3 * n, *x.shape[1:]) and torch.equal(target.a[n:], y.repeat(2))
    assert torch.all(target.lam[n:] == 1) and target.lam.shape == (3 * n,)
    assert torch.allclose(xb[n:2 * n], aug.apply(x, "patch")) and torch.allclose(xb[2 * n:], aug.apply(x, "l2"))
    assert not torch.allclose(aug.apply(x, "patch"), aug.apply(x, "l2"))
    assert "l2_gate=0.9" in repr(aug)


def test_clean_fraction_appends_unmixed_clean_copies_after_the_triggered_ones():
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.01 * torch.randn(32, 3, 16, 16, generator=g)
    y = torch.ones(32, dtype=torch.long)
    aug = SurrogateTrigger(kind="both", l2_steps=30, clean_fraction=0.5).bind(_BrightnessShortcut())
    xb, target, *_ = aug((x, y), torch.Generator().manual_seed(0))
    n, kc = len(x), 16
    assert aug.stats["used"] == "patch+l2", aug.stats
    assert xb.shape == (3 * n + kc, *x.shape[1:]) and target.lam.shape == (3 * n + kc,)
    # [MixUp of the batch | patch copies | L2 copies | the first kc clean samples, unmixed, true labels]
    assert torch.equal(xb[3 * n:], x[:kc]) and torch.equal(target.a[3 * n:], y[:kc])
    assert torch.equal(target.b[3 * n:], y[:kc]) and torch.all(target.lam[n:] == 1)
    assert not torch.allclose(xb[:n], x)  # the base's MixUp is unchanged: mixed images first
    assert "clean_fraction=0.5" in repr(aug) and "clean_fraction" not in repr(SurrogateTrigger())


class _Spots(torch.nn.Module):
    """Class 0 wins when a 2×2 spot (top-left, or with ``two`` also bottom-right) is mostly white: a backdoor
    that one patch can hold on ``two`` different sets of pixels, or only on one."""

    def __init__(self, two: bool):
        super().__init__()
        self.two = two

    def forward(self, x):
        s = x[:, :, :2, :2].mean(dim=(1, 2, 3))
        if self.two:
            s = torch.maximum(s, x[:, :, -2:, -2:].mean(dim=(1, 2, 3)))
        return torch.stack([10 * (s - 0.3) + 6, torch.full_like(s, 10.0), torch.full_like(s, 9.0)], dim=1)


def test_disjoint_patch_finds_a_second_part_of_a_redundant_trigger():
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.01 * torch.randn(32, 3, 16, 16, generator=g)
    y = torch.ones(32, dtype=torch.long)
    aug = SurrogateTrigger(kind="patch", steps=200, disjoint="alone").bind(_Spots(two=True))
    xb, target, *_ = aug((x, y), torch.Generator().manual_seed(0))
    s = aug.stats
    assert s["dominant_class"] == 0 and s["disjoint_reached"] and s["disjoint_kept"], s
    assert s["used"] == "patch+disjoint" and s["disjoint_overlap"] < 0.1, s
    corners = [aug.mask[..., :2, :2].sum(), aug.mask[..., -2:, -2:].sum()]
    corners2 = [aug.mask2[..., :2, :2].sum(), aug.mask2[..., -2:, -2:].sum()]
    first = int(corners[1] > corners[0])
    assert corners[first] > 3 and corners2[1 - first] > 3 and corners2[first] < 0.5, (corners, corners2)
    # the batch: [MixUp | patch copies | disjoint copies], true labels
    n = len(x)
    assert xb.shape == (3 * n, *x.shape[1:]) and torch.equal(target.a[n:], y.repeat(2))
    assert torch.allclose(xb[2 * n:], aug.apply(x, "disjoint")) and torch.all(target.lam[n:] == 1)
    assert "disjoint=alone" in repr(aug)
    # a backdoor that needs every pixel the first patch took: the second search cannot reach its target
    aug = SurrogateTrigger(kind="patch", steps=200, disjoint="always").bind(_Spots(two=False))
    xb, *_ = aug((x, y), torch.Generator().manual_seed(0))
    assert not aug.stats["disjoint_kept"] and aug.mask2 is None and xb.shape[0] == 2 * n, aug.stats
    with pytest.raises(RuntimeError, match="disjoint"):
        aug.apply(x, "disjoint")


def test_disjoint_alone_skips_when_the_l2_trigger_is_kept():
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.01 * torch.randn(32, 3, 16, 16, generator=g)
    y = torch.ones(32, dtype=torch.long)
    aug = SurrogateTrigger(kind="both", l2_steps=30, disjoint="alone").bind(_BrightnessShortcut())
    aug((x, y), torch.Generator().manual_seed(0))
    assert aug.stats["used"] == "patch+l2" and "disjoint_mask_l1" not in aug.stats, aug.stats


def test_both_kind_gate_keeps_the_triggers_that_look_like_one_backdoor(toy):
    """On the toy the L2 search does not find the patch backdoor (it flips a minority, toward another class):
    the gate drops it and only the patch copies are appended. With the gate at 0 the L2 trigger is kept,
    and then the patch is dropped because the two triggers point at different classes."""
    x, y = _batch(toy)
    aug = SurrogateTrigger(kind="both", eps=3.0, l2_steps=50).bind(toy.model)
    xb, *_ = aug((x, y), torch.Generator().manual_seed(0))
    s = aug.stats
    assert s["l2_fooling"] < 0.9 and s["dominant_class"] == toy.target and s["used"] == "patch", s
    assert xb.shape[0] == 2 * len(x) and torch.allclose(xb[len(x):], aug.apply(x, "patch"))
    aug = SurrogateTrigger(kind="both", eps=3.0, l2_steps=50, l2_gate=0.0).bind(toy.model)
    xb, *_ = aug((x, y), torch.Generator().manual_seed(0))
    s = aug.stats
    assert s["l2_dominant_class"] != toy.target and s["used"] == "l2", s
    assert xb.shape[0] == 2 * len(x) and torch.allclose(xb[len(x):], aug.apply(x, "l2"))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="l2_gate"):
            SurrogateTrigger(kind="both", l2_gate=bad)


class _NaturalAndBackdoor(torch.nn.Module):
    """Class 2 by default; class 1 once the whole image brightens (a natural flip that needs a large mask);
    class 0 once the top-left 2x2 corner brightens (a backdoor: a tiny patch). The untargeted search goes to
    class 1 first: brightening everything is its easiest gradient direction at the start."""

    def forward(self, x):
        g, c = x.mean(dim=(1, 2, 3)), x[:, :, :2, :2].mean(dim=(1, 2, 3))
        return torch.stack([20 * (c - 0.3) + 6, 100 * (g - 0.3) + 9, torch.full_like(g, 10.0)], dim=1)


def test_rounds_exclude_earlier_classes_and_keep_the_smallest_mask():
    g = torch.Generator().manual_seed(0)
    x = (0.3 + 0.01 * torch.randn(64, 3, 16, 16, generator=g)).clamp(0, 1)
    y = torch.full((64,), 2)
    one = SurrogateTrigger(steps=150).bind(_NaturalAndBackdoor())
    one((x, y), torch.Generator().manual_seed(0))
    assert one.stats["dominant_class"] == 1 and "class_rounds" not in one.stats, one.stats
    two = SurrogateTrigger(steps=150, rounds=2).bind(_NaturalAndBackdoor())
    two((x, y), torch.Generator().manual_seed(0))
    s = two.stats
    # round 1 repeats the single search exactly; round 2 may not go to class 1 and finds the backdoor
    assert s["class_rounds"] == [1, 0] and s["mask_l1_rounds"][0] == round(one.stats["mask_l1"], 2), s
    assert s["round"] == 1 and s["dominant_class"] == 0 and s["mask_l1"] < s["mask_l1_rounds"][0], s
    assert s["reached"] and s["fooling"] >= 0.9, s
    with torch.no_grad():
        assert (_NaturalAndBackdoor()(two.apply(x)).argmax(1) == 0).float().mean() >= 0.9


def test_rounds_keep_a_first_round_that_found_the_backdoor(toy):
    """On the toy the single search already finds the backdoor; a second round runs but must not replace it
    unless its mask is smaller (the default margin 1). Which class round 2 lands on is left open: it
    depends on the last float bits of the trained toy, which differ between CPUs and thread counts."""
    x, y = _batch(toy, 64)
    aug = SurrogateTrigger(rounds=2).bind(toy.model)
    aug((x, y), torch.Generator().manual_seed(0))
    s = aug.stats
    assert s["class_rounds"][0] == toy.target and len(s["class_rounds"]) == 2 and s["round"] == 0, s
    assert s["dominant_class"] == toy.target and round(s["mask_l1"], 2) == s["mask_l1_rounds"][0] and s["reached"], s
    # round 1 reached the fooling target, so round 2 wins only by a smaller mask that also reached it
    assert s.get("rounds_ratio") is None or s["rounds_ratio"] >= 1, s
    for bad in ({"rounds": 0}, {"rounds": 1.5}, {"rounds": 2, "kind": "l2"}, {"rounds": 2, "search": "per_class"}):
        with pytest.raises(ValueError, match="rounds"):
            SurrogateTrigger(**bad)


def test_both_kind_runs_later_rounds_only_when_a_gated_out_l2_trigger_went_where_the_patch_went(toy):
    """kind="both", rounds=2: round 2 runs only if the L2 trigger went to round 1's class but flipped less
    than the gate (that class is the model's natural adversarial direction, which the patch may have
    followed). Here brightening the image (class 1) is natural, the 2x2 corner (class 0) the backdoor."""
    g = torch.Generator().manual_seed(0)
    off = -0.03 + 0.035 * torch.rand(64, 1, 1, 1, generator=g)  # per-image brightness: a partial L2 flip
    x = (0.3 + off + 0.01 * torch.randn(64, 3, 16, 16, generator=g)).clamp(0, 1)
    y = torch.full((64,), 2)
    model = _NaturalAndBackdoor()
    assert bool((model(x).argmax(1) == y).all())
    runs = {}
    for eps in (0.8, 1.2):
        aug = SurrogateTrigger(kind="both", steps=150, rounds=2, eps=eps, l2_steps=30).bind(model)
        xb, *_ = aug((x, y), torch.Generator().manual_seed(0))
        runs[eps] = (aug, xb)
    s = runs[0.8][0].stats  # L2 -> class 1, 61% < 0.9: gated out and where round 1's patch went -> round 2
    assert s["l2_dominant_class"] == 1 and s["l2_fooling"] < 0.9 and s["class_rounds"] == [1, 0], s
    assert s["round"] == 1 and s["dominant_class"] == 0 and s["used"] == "patch", s
    assert s["mask_l1_rounds"][1] < s["mask_l1_rounds"][0] and runs[0.8][1].shape[0] == 2 * len(x)
    s = runs[1.2][0].stats  # a kept L2 trigger toward the same class confirms round 1: no round 2
    assert s["l2_fooling"] >= 0.9 and s["class_rounds"] == [1] and s["used"] == "patch+l2", s
    # the toy: the L2 trigger is gated out but went to another class than the patch (the target): no round 2
    xt, yt = _batch(toy)
    one = SurrogateTrigger(kind="both", eps=3.0, l2_steps=50).bind(toy.model)
    one((xt, yt), torch.Generator().manual_seed(0))
    two = SurrogateTrigger(kind="both", eps=3.0, l2_steps=50, rounds=2).bind(toy.model)
    two((xt, yt), torch.Generator().manual_seed(0))
    s = two.stats
    assert s["l2_dominant_class"] != toy.target and s["class_rounds"] == [toy.target] and s["used"] == "patch", s
    assert torch.equal(two.apply(xt), one.apply(xt)) and "class_rounds" not in one.stats
    assert "rounds=2" in repr(two) and "rounds" not in repr(one)


def test_rounds_margin_keeps_round_one_unless_a_later_mask_is_that_much_smaller():
    """_NaturalAndBackdoor: round 1 goes to the natural class 1, round 2 to the backdoor's class 0, whose 2x2
    corner needs a smaller mask. The margin only chooses between the rounds (the searches are the same), so
    a margin just above the measured ratio must pick round 2 and one just below it must keep round 1."""
    g = torch.Generator().manual_seed(0)
    x = (0.3 + 0.01 * torch.randn(64, 3, 16, 16, generator=g)).clamp(0, 1)
    y = torch.full((64,), 2)

    def run(margin):
        aug = SurrogateTrigger(steps=150, rounds=2, rounds_margin=margin).bind(_NaturalAndBackdoor())
        aug((x, y), torch.Generator().manual_seed(0))
        return aug

    ref = run(1.0).stats
    l1 = ref["mask_l1_rounds"]
    assert ref["class_rounds"] == [1, 0] and l1[1] < l1[0] and ref["round"] == 1, ref  # the smaller mask wins
    ratio = ref["rounds_ratio"]
    above, below = run(min(1.0, 1.05 * ratio)), run(0.95 * ratio)
    sa, sb = above.stats, below.stats
    assert sa["mask_l1_rounds"] == sb["mask_l1_rounds"] == l1 and sa["class_rounds"] == sb["class_rounds"], (sa, sb)
    assert sa["round"] == 1 and sa["dominant_class"] == 0, sa  # round 2's mask is under the margin
    assert sb["round"] == 0 and sb["dominant_class"] == 1 and sb["reached"], sb  # it is not: round 1 kept
    assert f"rounds_margin={0.95 * ratio:g}" in repr(below) and "rounds_margin" not in repr(SurrogateTrigger(rounds=2))
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="rounds_margin"):
            SurrogateTrigger(rounds=2, rounds_margin=bad)


def test_fallback_shrink_replaces_the_copies_when_the_two_searches_disagree(toy):
    """The toy with the gate at 0 keeps an L2 trigger toward another class than the patch's (the target):
    with ``fallback_shrink`` no triggered copy is appended, the batch is the base MixUp's alone, and NFT is
    asked for the shrink pull; where the searches agree (the brightness shortcut) nothing changes."""
    from nft_core import MixUp

    x, y = _batch(toy)
    aug = SurrogateTrigger(kind="both", eps=3.0, l2_steps=50, l2_gate=0.0, fallback_shrink=0.02).bind(toy.model)
    assert aug.requested_shrink == 0.0
    out = aug((x, y), torch.Generator().manual_seed(0))
    s = aug.stats
    assert s["l2_dominant_class"] != s["dominant_class"] == toy.target, s
    assert s["used"] == "none" and s["fallback_shrink"] == 0.02 and aug.requested_shrink == 0.02, s
    assert s["fallback_reason"] == "disagree", s
    ref = MixUp(1.0)((x, y), torch.Generator().manual_seed(0))
    assert out[0].shape == x.shape and torch.equal(out[0], ref[0]) and torch.equal(out[1].a, ref[1].a)
    assert "fallback_shrink=0.02" in repr(aug) and "fallback_clean" not in repr(aug)
    assert aug.requested_guard is None  # no fallback_guard: no safety net asked for
    aug.bind(toy.model)  # forgets the decision with the trigger
    assert aug.requested_shrink == 0.0 and not aug.fallback
    guarded = SurrogateTrigger(kind="both", eps=3.0, l2_steps=50, l2_gate=0.0, fallback_shrink=0.02,
                               fallback_guard=3.0).bind(toy.model)
    assert guarded.requested_guard is None
    guarded((x, y), torch.Generator().manual_seed(0))
    assert guarded.requested_guard == 3.0 and "fallback_guard=3" in repr(guarded)
    assert guarded.bind(toy.model).requested_guard is None
    with pytest.raises(ValueError, match="fallback_guard"):
        SurrogateTrigger(kind="both", fallback_shrink=0.02, fallback_guard=-1)
    # fallback_clean_fraction: unmixed clean copies after the MixUp batch (clean_fraction elsewhere)
    aug = SurrogateTrigger(kind="both", eps=3.0, l2_steps=50, l2_gate=0.0, fallback_shrink=0.02,
                           fallback_clean_fraction=0.25).bind(toy.model)
    xb, target, *_ = aug((x, y), torch.Generator().manual_seed(0))
    n, kc = len(x), len(x) // 4
    assert aug.stats["used"] == "none" and xb.shape[0] == n + kc and torch.equal(xb[:n], ref[0])
    assert torch.equal(xb[n:], x[:kc]) and torch.equal(target.a[n:], y[:kc]) and torch.all(target.lam[n:] == 1)
    assert "fallback_clean_fraction=0.25" in repr(aug)
    g = torch.Generator().manual_seed(0)
    xb_ = 0.3 + 0.01 * torch.randn(32, 3, 16, 16, generator=g)
    agree = SurrogateTrigger(kind="both", l2_steps=30, fallback_shrink=0.02).bind(_BrightnessShortcut())
    xb, *_ = agree((xb_, torch.ones(32, dtype=torch.long)), torch.Generator().manual_seed(0))
    assert agree.stats["used"] == "patch+l2" and agree.requested_shrink == 0.0 and xb.shape[0] == 3 * 32
    for bad in ({"fallback_shrink": -0.1, "kind": "both"}, {"fallback_shrink": 0.02}, {"fallback_shrink": 0.02, "kind": "l2"}):
        with pytest.raises(ValueError, match="fallback_shrink"):
            SurrogateTrigger(**bad)
    with pytest.raises(ValueError, match="fallback_clean_fraction"):
        SurrogateTrigger(kind="both", fallback_shrink=0.02, fallback_clean_fraction=1.5)


def test_nft_with_the_fallback_is_nft_with_mixup_and_the_shrink_pull(toy):
    """End to end on the toy: when the gate falls back, NFT runs exactly NFT(shrink=...) with MixUp."""
    from nft_core import MixUp
    from nft_core.pipeline import purify_and_report

    ad = ClassificationAdapter()
    kw = dict(epochs=2, batch_size=64, seed=0)
    aug = SurrogateTrigger(kind="both", eps=3.0, l2_steps=50, steps=60, l2_gate=0.0, fallback_shrink=0.05)
    rep = purify_and_report(task="toy", model=toy.model, val_data=toy.val, eval_data=toy.test, adapter=ad,
                            defense=NFT(augmentation=aug, **kw), out=None)
    ref = NFT(augmentation=MixUp(1.0), shrink=0.05, **kw).purify(toy.model, toy.val, ad)
    assert rep["info"]["augmentation_stats"]["used"] == "none"
    assert rep["info"]["augmentation_stats"]["fallback_shrink"] == 0.05
    got = NFT(augmentation=aug, **kw).purify(toy.model, toy.val, ad)
    for k in ref.masks:
        assert torch.equal(ref.masks[k], got.masks[k]), k


def test_fallback_when_the_later_rounds_do_not_beat_round_one():
    """_NaturalAndBackdoor with a per-image brightness spread: the L2 trigger goes to round 1's class (1) but is
    gated out, so round 2 runs and finds class 0 with about 0.2× the mask. With a 0.15 margin it does not win:
    round 1's class stays unconfirmed, and with ``fallback_shrink`` that is 'no trigger found' ("unresolved")."""
    g = torch.Generator().manual_seed(0)
    off = -0.03 + 0.035 * torch.rand(64, 1, 1, 1, generator=g)
    x = (0.3 + off + 0.01 * torch.randn(64, 3, 16, 16, generator=g)).clamp(0, 1)
    y = torch.full((64,), 2)
    kw = dict(kind="both", steps=150, rounds=2, eps=0.8, l2_steps=30, rounds_margin=0.15)
    aug = SurrogateTrigger(**kw, fallback_shrink=0.02, fallback_unresolved=True).bind(_NaturalAndBackdoor())
    out = aug((x, y), torch.Generator().manual_seed(0))
    s = aug.stats
    assert s["class_rounds"] == [1, 0] and s["round"] == 0 and s["l2_fooling"] < 0.9, s
    assert 0.15 < s["mask_l1_rounds"][1] / s["mask_l1_rounds"][0] < 0.3, s
    assert s["used"] == "none" and s["fallback_reason"] == "unresolved" and aug.requested_shrink == 0.02, s
    assert out[0].shape == x.shape
    assert "fallback_unresolved=True" in repr(aug)
    # without the fallback, or without opting in to this condition: round 1's patch
    for plain in (SurrogateTrigger(**kw), SurrogateTrigger(**kw, fallback_shrink=0.02)):
        xb, *_ = plain.bind(_NaturalAndBackdoor())((x, y), torch.Generator().manual_seed(0))
        assert plain.stats["used"] == "patch" and plain.stats["dominant_class"] == 1 and xb.shape[0] == 2 * len(x)
    # 'ambiguous': round 2 came within 1 / margin of round 1 (0.2x here, margin 0.15), so it fires too
    amb = SurrogateTrigger(**kw, fallback_shrink=0.02, fallback_unresolved="ambiguous").bind(_NaturalAndBackdoor())
    amb((x, y), torch.Generator().manual_seed(0))
    assert amb.stats["fallback_reason"] == "unresolved" and 0.15 < amb.stats["rounds_ratio"] < 0.3, amb.stats
    assert "fallback_unresolved='ambiguous'" in repr(amb)
    # a round 2 that wins by the margin is a trigger found: no fallback
    won = SurrogateTrigger(**{**kw, "rounds_margin": 0.3}, fallback_shrink=0.02,
                           fallback_unresolved=True).bind(_NaturalAndBackdoor())
    won((x, y), torch.Generator().manual_seed(0))
    assert won.stats["round"] == 1 and won.stats["used"] == "patch" and won.requested_shrink == 0.0, won.stats


class _NaturalAndLargeBackdoor(torch.nn.Module):
    """Class 2 by default; class 1 once the whole image brightens (a natural flip, about 20 pixels of mask);
    class 0 once the top-left 8x8 corner brightens a lot (over 100 pixels): round 2 finds class 0 with a mask
    several times round 1's."""

    def forward(self, x):
        g, c = x.mean(dim=(1, 2, 3)), x[:, :, :8, :8].mean(dim=(1, 2, 3))
        return torch.stack([10 * (c - 0.3) + 7, 100 * (g - 0.3) + 9, torch.full_like(g, 10.0)], dim=1)


def test_ambiguous_fallback_keeps_a_round_one_that_won_by_the_margin():
    """``fallback_unresolved="ambiguous"``: a round 2 that needed more than 1 / rounds_margin x round 1's mask
    leaves round 1 a clear winner, a trigger found (the paper-scale BadNets case: 18.6 vs 257.6 pixels), while
    ``True`` treats every lost round 2 as no trigger found."""
    g = torch.Generator().manual_seed(0)
    off = -0.03 + 0.035 * torch.rand(64, 1, 1, 1, generator=g)
    x = (0.3 + off + 0.01 * torch.randn(64, 3, 16, 16, generator=g)).clamp(0, 1)
    y = torch.full((64,), 2)
    kw = dict(kind="both", steps=150, rounds=2, eps=0.8, l2_steps=30, rounds_margin=0.5, fallback_shrink=0.02)
    runs = {}
    for mode in (True, "ambiguous"):
        aug = SurrogateTrigger(**kw, fallback_unresolved=mode).bind(_NaturalAndLargeBackdoor())
        runs[mode] = (aug, aug((x, y), torch.Generator().manual_seed(0)))
    s = runs["ambiguous"][0].stats
    assert s["class_rounds"] == [1, 0] and s["round"] == 0 and s["rounds_ratio"] > 2, s
    assert s["used"] == "patch" and runs["ambiguous"][0].requested_shrink == 0.0, s
    assert runs["ambiguous"][1][0].shape[0] == 2 * len(x)  # MixUp batch + round 1's patch copies
    assert runs[True][0].stats["fallback_reason"] == "unresolved" and runs[True][1][0].shape == x.shape


def test_target_clean_appends_copies_of_the_trigger_class(toy):
    """``target_clean=k``: k more unmixed copies of the batch's samples of the class the kept trigger points at
    (with their true labels), after the triggered copies; none without the option."""
    x, y = _batch(toy, 64)
    aug = SurrogateTrigger(target_clean=2).bind(toy.model)
    xb, t, *_ = aug((x, y), torch.Generator().manual_seed(0))
    assert aug.trigger_class == toy.target, aug.stats
    n0 = int((y == toy.target).sum())
    assert n0 > 0 and xb.shape[0] == 2 * len(x) + 2 * n0
    assert torch.equal(xb[-2 * n0:], torch.cat([x[y == toy.target]] * 2))
    assert bool((t.a[-2 * n0:] == toy.target).all()) and bool((t.lam[-2 * n0:] == 1).all())
    assert "target_clean=2" in repr(aug)
    plain = SurrogateTrigger().bind(toy.model)
    assert plain((x, y), torch.Generator().manual_seed(0))[0].shape[0] == 2 * len(x)
    with pytest.raises(ValueError, match="target_clean"):
        SurrogateTrigger(target_clean=-1)
    with pytest.raises(ValueError, match="fallback_unresolved"):
        SurrogateTrigger(kind="both", fallback_shrink=0.02, fallback_unresolved="sometimes")


class _MovingSpot(torch.nn.Module):
    """Class 0 wins when a 2×2 spot at ``where`` ("tl", "br") is mostly white, or never (``None``): a stand-in for
    the backdoor the masks leave behind, which may answer to other pixels than the first search found."""

    def __init__(self):
        super().__init__()
        self.where: str | None = "tl"

    def forward(self, x):
        spot = {"tl": x[:, :, :2, :2], "br": x[:, :, -2:, -2:]}.get(self.where)
        s = spot.mean(dim=(1, 2, 3)) if spot is not None else 0 * x.mean(dim=(1, 2, 3))
        return torch.stack([10 * (s - 0.3) + 6, torch.full_like(s, 10.0), torch.full_like(s, 9.0)], dim=1)


def test_refresh_searches_the_model_again_and_keeps_a_new_patch_that_still_works():
    """``refresh_every=k``: every k calls after the first, a targeted search toward the trigger's class against
    the model as it is then; a patch that reaches the fooling target within ``refresh_ratio`` × the first mask is
    appended to the triggers, one that does not is recorded and dropped."""
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.01 * torch.randn(32, 3, 16, 16, generator=g)
    y = torch.ones(32, dtype=torch.long)
    model = _MovingSpot()
    aug = SurrogateTrigger(kind="patch", steps=200, refresh_every=2).bind(model)
    n = len(x)
    assert aug((x, y), g)[0].shape[0] == 2 * n and aug.trigger_class == 0  # call 0: the search (top-left)
    assert float(aug.mask[..., :2, :2].sum()) > 3 and "refresh" not in aug.stats
    model.where = "br"  # the backdoor moved: the first patch no longer flips anything
    assert aug((x, y), g)[0].shape[0] == 2 * n and "refresh" not in aug.stats  # call 1: no refresh yet
    xb, t, *_ = aug((x, y), g)  # call 2: the re-search finds the bottom-right spot
    (row,) = aug.stats["refresh"]
    assert row["step"] == 2 and row["reached"] and row["kept"] and row["overlap"] < 0.1, row
    ((kind, m, p),) = aug.refreshed
    assert kind == "patch"
    assert float(m[..., -2:, -2:].sum()) > 3 and float(m[..., :2, :2].sum()) < 0.5
    assert xb.shape[0] == 3 * n and torch.equal(t.a[n:], y.repeat(2)) and torch.all(t.lam[n:] == 1)
    with torch.no_grad():
        assert bool((model(xb[2 * n:]).argmax(1) == 0).all())  # the new copies carry the backdoor that is left
    assert aug.stats["dominant_class"] == 0 and float(aug.mask[..., :2, :2].sum()) > 3  # the first trigger stays
    model.where = None  # purified: the next re-search reaches nothing and adds nothing
    aug((x, y), g)
    xb, *_ = aug((x, y), g)
    assert aug.stats["refresh"][-1] == {**aug.stats["refresh"][-1], "step": 4, "reached": False, "kept": False}
    assert len(aug.refreshed) == 1 and xb.shape[0] == 3 * n
    assert "refresh_every=2" in repr(aug)
    aug.bind(model)  # a new run forgets the re-searched patches
    assert aug.refreshed == [] and aug.calls == 0
    for bad in (dict(refresh_every=-1), dict(refresh_every=1.5), dict(refresh_every=2, kind="l2"),
                dict(refresh_ratio=0)):
        with pytest.raises(ValueError, match="refresh"):
            SurrogateTrigger(**bad)


def test_refresh_re_searches_a_kept_l2_trigger_too():
    """With ``kind="both"`` keeping patch and L2 trigger, a re-search runs both searches again; on a model whose
    shortcut is still there both are kept (two more copies); once it is gone, neither."""
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.01 * torch.randn(32, 3, 16, 16, generator=g)
    y = torch.ones(32, dtype=torch.long)

    class Switch(_BrightnessShortcut):
        on = True

        def forward(self, x):
            return super().forward(x) if self.on else super().forward(0 * x + 0.3)

    model = Switch()
    aug = SurrogateTrigger(kind="both", l2_steps=30, refresh_every=1).bind(model)
    n = len(x)
    assert aug((x, y), g)[0].shape[0] == 3 * n and aug.stats["used"] == "patch+l2"
    xb, *_ = aug((x, y), g)
    (row,) = aug.stats["refresh"]
    assert row["kept"] and row["l2_kept"] and row["l2_class"] == 0 and row["l2_fooling"] >= 0.9, row
    assert [t[0] for t in aug.refreshed] == ["patch", "l2"] and xb.shape[0] == 5 * n
    assert torch.allclose(xb[4 * n:], (x + aug.refreshed[1][1]).clamp(0, 1))
    model.on = False
    xb, *_ = aug((x, y), g)
    row = aug.stats["refresh"][-1]
    assert not row["kept"] and not row["l2_kept"] and len(aug.refreshed) == 2 and xb.shape[0] == 5 * n, row


class _ThreeSpots(torch.nn.Module):
    """Class 0 wins when any of three 2×2 corner spots (top-left, bottom-right, top-right) is mostly white."""

    def forward(self, x):
        s = torch.stack([x[:, :, :2, :2], x[:, :, -2:, -2:], x[:, :, :2, -2:]]).mean(dim=(2, 3, 4)).amax(0)
        return torch.stack([10 * (s - 0.3) + 6, torch.full_like(s, 10.0), torch.full_like(s, 9.0)], dim=1)


def test_disjoint_count_keeps_more_disjoint_patches_while_they_work():
    """``disjoint_count=k``: up to k disjoint patches, each barred from every earlier kept patch's pixels; the
    searches stop at the first that is not kept (here the fourth: three spots, three patches)."""
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.01 * torch.randn(32, 3, 16, 16, generator=g)
    y = torch.ones(32, dtype=torch.long)
    aug = SurrogateTrigger(kind="patch", steps=300, disjoint="alone", disjoint_count=3).bind(_ThreeSpots())
    xb, t, *_ = aug((x, y), torch.Generator().manual_seed(0))
    third, fourth = aug.stats["disjoint_more"]
    assert aug.stats["disjoint_kept"] and third["kept"] and third["overlap"] < 0.1, aug.stats
    assert not fourth["kept"] and not fourth["reached"] and len(aug.disjoint_extra) == 1, aug.stats
    masks = [aug.mask, aug.mask2, aug.disjoint_extra[0][0]]
    corners = [(slice(0, 2), slice(0, 2)), (slice(-2, None), slice(-2, None)), (slice(0, 2), slice(-2, None))]
    owner = [max(range(3), key=lambda i: float(masks[i][..., r, c].sum())) for r, c in corners]
    assert sorted(owner) == [0, 1, 2], owner  # each patch took its own corner
    n = len(x)
    assert xb.shape[0] == 4 * n and torch.equal(t.a[n:], y.repeat(3))
    m, p = aug.disjoint_extra[0]
    assert torch.allclose(xb[3 * n:], (1 - m) * x + m * p) and "disjoint_count=3" in repr(aug)
    # the default (one disjoint patch) runs no further search
    aug = SurrogateTrigger(kind="patch", steps=300, disjoint="alone").bind(_ThreeSpots())
    xb, *_ = aug((x, y), torch.Generator().manual_seed(0))
    assert aug.stats["disjoint_kept"] and "disjoint_more" not in aug.stats and xb.shape[0] == 3 * n
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="disjoint_count"):
            SurrogateTrigger(disjoint_count=bad)


def test_shift_moves_every_patch_copy_per_sample_and_is_off_by_default():
    """``shift``: each appended patch copy lands moved by its own offset (at most ``shift`` px per axis), the
    same offsets for every patch of one call, reproducible from NFT's generator; L2 is rejected."""
    from nft_core.surrogate import _roll_each

    x = torch.zeros(6, 3, 8, 8)
    aug = SurrogateTrigger(kind="patch", shift=2)
    aug.use = ("patch",)
    aug.mask = torch.zeros(1, 1, 8, 8)
    aug.mask[..., 3, 3] = 1.0
    aug.pattern = torch.ones(1, 3, 8, 8)
    out = aug._triggered(x, torch.Generator().manual_seed(0))[0]
    where = [tuple(int(i) for i in torch.nonzero(o[0])[0]) for o in out]
    assert all(abs(r - 3) <= 2 and abs(c - 3) <= 2 for r, c in where), where
    assert len(set(where)) > 1  # per sample, not one offset for the batch
    again = aug._triggered(x, torch.Generator().manual_seed(0))[0]
    assert torch.equal(out, again)
    aug.shift = 0  # off: the patch where the search put it, on every sample
    assert all(bool(o[0, 3, 3] == 1) and float(o.sum()) == 3 for o in aug._triggered(x)[0])
    assert torch.equal(_roll_each(aug.mask, [[0, 0], [1, -1]])[1, 0, 4, 2], torch.tensor(1.0))
    assert "shift=2" in repr(SurrogateTrigger(kind="both", shift=2))
    for bad in ({"shift": -1}, {"shift": 1.5}, {"kind": "l2", "shift": 2}):
        with pytest.raises(ValueError, match="shift"):
            SurrogateTrigger(**bad)


def test_distill_pulls_the_clean_rows_toward_the_original_model_and_keeps_triggered_rows_hard(toy):
    """``distill=β``: the MixUp rows and the unmixed clean copies learn toward ``(1 − β)`` × their own one-hot
    targets ``+ β`` × the reference model's softmax on the same input; the triggered copies keep their hard
    true labels (the reference answers them with its backdoor)."""
    x, y = _batch(toy, 64)
    aug = SurrogateTrigger(clean_fraction=0.25, distill=0.4).bind(toy.model).set_reference(toy.model)
    xb, t, *_ = aug((x, y), torch.Generator().manual_seed(0))
    n, kc = len(x), 16
    assert xb.shape[0] == 2 * n + kc and t.a.shape == (2 * n + kc, 10) and t.b.shape == t.a.shape
    with torch.no_grad():
        p = toy.model.eval()(xb).softmax(-1)
    # triggered copies: exactly the one-hot true labels, λ = 1
    eye = torch.eye(10)
    assert torch.equal(t.a[n:2 * n], eye[y]) and torch.equal(t.b[n:2 * n], eye[y])
    assert bool((t.lam[n:] == 1).all())
    # clean copies: 0.6 one-hot + 0.4 the reference's prediction
    assert torch.allclose(t.a[2 * n:], 0.6 * eye[y[:kc]] + 0.4 * p[2 * n:], atol=1e-5)
    # MixUp rows: each side of the pair pulled toward the reference's prediction on the mixed image
    mixed = SurrogateTrigger(clean_fraction=0.25).bind(toy.model)((x, y), torch.Generator().manual_seed(0))[1]
    assert torch.allclose(t.a[:n], 0.6 * eye[mixed.a[:n]] + 0.4 * p[:n], atol=1e-5)
    assert torch.allclose(t.b[:n], 0.6 * eye[mixed.b[:n]] + 0.4 * p[:n], atol=1e-5)
    assert torch.allclose(t.a.sum(1), torch.ones(len(xb)), atol=1e-5)
    # the soft targets train: the classification loss accepts them
    loss = ClassificationAdapter().loss(toy.model, (xb, t))
    assert torch.isfinite(loss) and "distill=0.4" in repr(aug) and "distill" not in repr(SurrogateTrigger())
    with pytest.raises(RuntimeError, match="original model"):
        SurrogateTrigger(distill=0.5).bind(toy.model)((x, y), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="distill"):
        SurrogateTrigger(distill=1.5)


class _RecordsReference(SurrogateTrigger):
    """Records, at every call, what the reference NFT handed over answers on a fixed input."""

    def __init__(self, probe, **kw):
        super().__init__(**kw)
        self.probe, self.answers = probe, []

    def __call__(self, batch, generator):
        with torch.no_grad():
            self.answers.append(self.reference(self.probe).clone())
        return super().__call__(batch, generator)


def test_nft_hands_over_a_frozen_copy_of_the_original_model_and_takes_it_back(toy):
    """NFT gives an augmentation with ``wants_reference`` the original model, untouched by the masks being
    tuned (its answers stay the original's at every step), in eval mode, and drops it after the run."""
    x, _ = _batch(toy, 8)
    model = toy.model.eval()
    with torch.no_grad():
        original = model(x).clone()
    aug = _RecordsReference(x, steps=20, clean_fraction=0.5, distill=0.5)
    result = NFT(epochs=3, batch_size=64, lr=0.5, augmentation=aug).purify(model, toy.val, ClassificationAdapter())
    assert len(aug.answers) >= 3 and all(torch.allclose(a, original, atol=1e-5) for a in aug.answers)
    with torch.no_grad():
        assert not torch.allclose(result.model(x), original, atol=1e-4)  # the masks did move
    assert aug.reference is None and not model.training
