import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nft_core import LayerHandler, NeuronMasks, register_layer
from nft_core.masks import call_model, handler_for
from nft_core.testing import check_every_mask_matters, check_fold_equivalence, check_identity_at_one

from .models import ConvNet, OutOfOrder, cases, randomize_bn

CASES = cases()
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,make,inputs", CASES, ids=IDS)
@pytest.mark.parametrize("placement", ["bn", "weight"])
def test_identity_at_one(name, make, inputs, placement):
    check_identity_at_one(randomize_bn(make()), inputs(), placement=placement)


@pytest.mark.parametrize("name,make,inputs", CASES, ids=IDS)
@pytest.mark.parametrize("placement", ["bn", "weight"])
def test_every_mask_gets_gradient_and_changes_output(name, make, inputs, placement):
    torch.manual_seed(0)
    check_every_mask_matters(randomize_bn(make()), inputs(), placement=placement, min_fraction=0.5)


@pytest.mark.parametrize("name,make,inputs", CASES, ids=IDS)
@pytest.mark.parametrize("placement", ["bn", "weight"])
def test_fold_equals_masked_model(name, make, inputs, placement):
    torch.manual_seed(1)
    check_fold_equivalence(randomize_bn(make()), inputs(), atol=1e-5, placement=placement)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), low=st.floats(0.0, 0.99), case=st.sampled_from(range(len(CASES))))
def test_fold_equivalence_property(seed, low, case):
    _, make, inputs = CASES[case]
    g = torch.Generator().manual_seed(seed)
    model = make()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    check_fold_equivalence(randomize_bn(model, seed), inputs(), atol=1e-5, seed=seed, low=low)


def test_lstm_mask_reaches_output_through_flat_weights():
    """nn.LSTM keeps a private _flat_weights list; masks must not be bypassed (and are restored after)."""
    from .models import RecurrentNet

    model = RecurrentNet("lstm")
    x = torch.randn(2, 4, 3)
    masks = NeuronMasks(model, x)
    site = next(s for s in masks.sites if s.name == "rnn")
    ref = model(x)
    with torch.no_grad():
        masks.masks[site.key].zero_()
    assert not torch.allclose(model(x), ref)
    # the real parameters are untouched and back in place after the forward
    assert all(w is getattr(model.rnn, n) for w, n in zip(model.rnn._flat_weights, model.rnn._flat_weights_names))
    assert model.rnn.weight_ih_l0.abs().sum() > 0


def test_forward_order_not_registration_order():
    model = OutOfOrder()
    masks = NeuronMasks(model, torch.randn(2, 3), skip_first=False)
    assert [s.name for s in masks.sites] == ["first", "middle", "last"]
    assert [s.depth for s in masks.sites] == [1, 2, 3]


def test_skip_last_leaves_the_output_layer_unmasked():
    model = OutOfOrder()
    masks = NeuronMasks(model, torch.randn(2, 3), skip_first=False, skip_last=True)
    assert [s.name for s in masks.sites] == ["first", "middle"]
    assert masks.skipped == {"last": "last layer"}
    both = NeuronMasks(OutOfOrder(), torch.randn(2, 3), skip_first=True, skip_last=True)
    assert [s.name for s in both.sites] == ["middle"]


def test_first_layer_and_biases_untouched_by_fold():
    model = randomize_bn(ConvNet(2))
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 2, 6, 6)
    masks = NeuronMasks(model, x, placement="weight")
    assert "c1" in masks.skipped and all(s.name != "c1" for s in masks.sites)
    with torch.no_grad():
        for m in masks.masks.values():
            m.fill_(0.5)
    folded = masks.fold().state_dict()
    for k, v in before.items():
        if k.startswith("c1.") or k.endswith("bias") or "running" in k or "num_batches" in k:
            assert torch.equal(folded[k], v), k
    assert not torch.equal(folded["c2.weight"], before["c2.weight"])


def test_bn_placement_pairs_conv_with_its_batchnorm():
    model = ConvNet(2)
    masks = NeuronMasks(model, torch.randn(2, 2, 6, 6), placement="bn")
    names = [s.name for s in masks.sites]
    # c1 is the first layer (its BN b1 stands for it and is skipped with it); c2 -> b2; c3 has no BN
    assert names == ["b2", "c3", "fc"]
    masks_w = NeuronMasks(model, torch.randn(2, 2, 6, 6), placement="weight")
    assert [s.name for s in masks_w.sites] == ["c2", "c3", "fc"]


def test_bn_in_train_mode_cancels_conv_mask_but_not_bn_mask():
    """The pitfall from the paper digest, demonstrated: BN(m*z) == BN(z) with batch statistics."""
    model = ConvNet(2)
    x = torch.randn(8, 2, 6, 6)
    for placement, expect_cancel in (("weight", True), ("bn", False)):
        m = copy.deepcopy(model).train()
        masks = NeuronMasks(m, x, placement=placement)
        site = masks.sites[0]
        ref = m(x).detach()
        with torch.no_grad():
            masks.masks[site.key].fill_(0.5)
        diff = (m(x) - ref).abs().max().item()
        assert (diff < 1e-3) == expect_cancel, (placement, diff)


def test_include_exclude_patterns():
    model = ConvNet(2)
    x = torch.randn(2, 2, 6, 6)
    assert [s.name for s in NeuronMasks(model, x, placement="weight", exclude=["fc"]).sites] == ["c2", "c3"]
    assert [s.name for s in NeuronMasks(model, x, placement="weight", include=["c*"]).sites] == ["c2", "c3"]
    assert [s.name for s in NeuronMasks(model, x, placement="weight", include=[r"c\d"]).sites] == ["c2", "c3"]


def test_tied_weights_are_masked_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.Linear(3, 4)
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight
            self.c = nn.Linear(4, 2)

        def forward(self, x):
            return self.c(self.b(torch.relu(self.a(self.first(x)))))

    masks = NeuronMasks(Tied(), torch.randn(2, 3))
    assert [s.name for s in masks.sites] == ["c"]
    assert masks.skipped["a"] == "weights tied to b" and masks.skipped["b"] == "weights tied to a"
    check_fold_equivalence(Tied(), torch.randn(2, 3))


def test_weights_tied_to_the_unmasked_first_layer_are_not_masked():
    """HF encoder/decoder share one embedding: masking the decoder's copy would change the encoder's."""

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Embedding(7, 4)
            self.dec = nn.Embedding(7, 4)
            self.dec.weight = self.enc.weight
            self.out = nn.Linear(4, 2)

        def forward(self, t):
            return self.out(self.enc(t).mean(1) + self.dec(t).mean(1))

    t = torch.randint(7, (3, 5))
    masks = NeuronMasks(Shared(), t)
    assert [s.name for s in masks.sites] == ["out"] and masks.skipped["dec"] == "weights tied to enc"
    check_fold_equivalence(Shared(), t)


def test_subclass_found_through_class_hierarchy_and_custom_handler():
    class MyLinear(nn.Linear):
        pass

    assert handler_for(MyLinear(2, 2)) is handler_for(nn.Linear(2, 2))

    class Scale(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n))

        def forward(self, x):
            return x * self.weight

    class ScaleHandler(LayerHandler):
        def num_neurons(self, module):
            return module.weight.numel()

        def channel_dim(self, module, out):
            return -1

        def fold(self, module, mask):
            module.weight.mul_(mask)

    model = nn.Sequential(nn.Linear(3, 4), Scale(4), nn.Linear(4, 2))
    x = torch.randn(2, 3)
    masks = NeuronMasks(model, x, handlers={Scale: ScaleHandler()})
    assert [s.name for s in masks.sites] == ["1", "2"]
    masks.remove()
    check_fold_equivalence(model, x, handlers={Scale: ScaleHandler()})
    register_layer(Scale, ScaleHandler())
    try:
        nm = NeuronMasks(model, x)
        assert [s.name for s in nm.sites] == ["1", "2"]
        nm.remove()
    finally:
        from nft_core.masks import _HANDLERS

        _HANDLERS.pop(Scale)


def test_masks_are_not_part_of_model_state_dict_and_remove_restores():
    model = ConvNet(2).eval()
    keys = set(model.state_dict())
    x = torch.randn(2, 2, 6, 6)
    ref = model(x)
    masks = NeuronMasks(model, x)
    with torch.no_grad():
        for m in masks.masks.values():
            m.fill_(0.3)
    assert set(model.state_dict()) == keys
    assert not torch.allclose(model(x), ref)
    masks.remove()
    assert torch.allclose(model(x), ref)


def test_clip_and_bounds():
    masks = NeuronMasks(ConvNet(2), torch.randn(2, 2, 6, 6))
    masks.set_bounds([0.5, 0.25, 0.0])
    with torch.no_grad():
        for m in masks.masks.values():
            m.uniform_(-2, 3)
    masks.clip_()
    for s, lo in zip(masks.sites, [0.5, 0.25, 0.0]):
        v = masks.masks[s.key]
        assert v.min() >= lo and v.max() <= 1.0
    with pytest.raises(ValueError):
        masks.set_bounds([0.1])


def test_no_maskable_layer_is_an_error():
    with pytest.raises(ValueError, match="no maskable layer"):
        NeuronMasks(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.randn(1, 2))


def test_call_model_dispatch():
    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(2, 2)

        def forward(self, a, b=None):
            return self.l(a) + (0 if b is None else b)

    m = KW()
    a, b = torch.randn(1, 2), torch.randn(1, 2)
    assert torch.equal(call_model(m, {"a": a, "b": b}), m(a, b))
    assert torch.equal(call_model(m, (a, b)), m(a, b))
    assert torch.equal(call_model(m, a), m(a))


def test_groupnorm_placement_masks_gamma_where_a_conv_mask_would_be_normalized_away():
    """Conv -> GroupNorm with one channel per group: a mask on the conv is cancelled exactly; at γ it acts
    (and every mask-based defense gets this placement from the core's default table)."""
    torch.manual_seed(0)  # test code only
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.GroupNorm(4, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[3].weight.uniform_(0.5, 1.5)
        model[3].bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 2, 6, 6)
    for placement, site, expect_cancel in (("weight", "2", True), ("bn", "3", False)):
        m = copy.deepcopy(model)
        masks = NeuronMasks(m, x, placement=placement)
        assert site in [s.name for s in masks.sites], (placement, [s.name for s in masks.sites])
        key = next(s.key for s in masks.sites if s.name == site)
        ref = m(x).detach()
        with torch.no_grad():
            masks.masks[key].fill_(0.5)
        diff = (m(x) - ref).abs().max().item()
        assert (diff < 1e-3) == expect_cancel, (placement, diff)  # GroupNorm eps: not bit-exact
    check_fold_equivalence(copy.deepcopy(model), x, placement="bn")


class _NoDetections(nn.Module):
    """A detector-like model whose output can be empty (no box above its score threshold)."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 4, 3)  # the first layer is left unmasked (skip_first)
        self.conv = nn.Conv2d(4, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        s = self.bn(self.conv(self.conv0(x))).flatten(1)
        return s[s > 1e9]  # nothing passes


def test_identity_at_one_accepts_an_empty_output():
    """A detector with no detections on the probe images has an empty output: identity at 1 holds (it used
    to crash taking the max of the empty reference)."""
    masks = check_identity_at_one(_NoDetections().eval(), torch.randn(2, 3, 8, 8))
    assert masks.sites
