"""``NFTConfig.tune_bias`` (the NFT paper's Table 23 ablation: biases frozen, the default, vs tuned)."""

import pytest
import torch

from nft_core import NFT, ClassificationAdapter, TensorData

from .models import ConvNet


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, 2, 6, 6, generator=g), torch.arange(n) % 3)


def _model():
    torch.manual_seed(0)
    return ConvNet(2)


# placement="bn": c1/b1 is the unmasked first layer; b2 stands for c2, so c2's own bias is no masked
# layer's bias; c3 and fc are masked directly.
MASKED_BIASES = {"b2.bias", "c3.bias", "fc.bias"}
OTHER_BIASES = {"c1.bias", "b1.bias", "c2.bias"}


def _biases(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.endswith(".bias")}


def test_frozen_biases_are_bitwise_unchanged():
    model = _model()
    res = NFT(epochs=3, batch_size=16, lr=0.5).purify(model, _data(), ClassificationAdapter())
    before, after = _biases(model), _biases(res.model)
    assert set(before) == MASKED_BIASES | OTHER_BIASES
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert any(m.min() < 0.999 for m in res.masks.values())  # the masks did train


def test_tuned_biases_of_masked_layers_change_and_others_do_not():
    model = _model().train()
    res = NFT(epochs=3, batch_size=16, lr=0.5, tune_bias=True).purify(model, _data(), ClassificationAdapter())
    before, after = _biases(model), _biases(res.model)
    for k in MASKED_BIASES:
        assert not torch.equal(before[k], after[k]), k
    for k in OTHER_BIASES:
        assert torch.equal(before[k], after[k]), k
    # the input model is untouched, flags restored on the purified copy
    assert torch.equal(_biases(_model())["fc.bias"], before["fc.bias"])
    assert res.model.training and all(p.requires_grad for p in res.model.parameters())
    assert res.info["config"]["tune_bias"] is True


def test_guard_restores_tuned_biases_with_the_masks():
    """A guard that accepts no epoch folds the initial state: masks at 1 *and* the original biases."""
    model = _model()
    res = NFT(epochs=3, batch_size=16, lr=0.5, tune_bias=True, guard=-1e9).purify(
        model, _data(), ClassificationAdapter())
    assert res.info["selected_epoch"] == 0
    before, after = _biases(model), _biases(res.model)
    for k in before:
        assert torch.equal(before[k], after[k]), k


class _Stop(Exception):
    pass


@pytest.mark.parametrize("kw", [{}, {"guard": 1.0}])
def test_resume_restores_tuned_biases(tmp_path, kw):
    full = NFT(epochs=4, batch_size=16, lr=0.5, tune_bias=True, **kw).purify(_model(), _data(), ClassificationAdapter())

    def boom(epoch, row, nft):
        if epoch == 2:
            raise _Stop

    opts = dict(epochs=4, batch_size=16, lr=0.5, tune_bias=True, checkpoint_dir=str(tmp_path), checkpoint_every=2, **kw)
    with pytest.raises(_Stop):
        NFT(callbacks=[boom], **opts).purify(_model(), _data(), ClassificationAdapter())
    resumed = NFT(resume=True, **opts).purify(_model(), _data(), ClassificationAdapter())
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_tune_bias_last_changes_only_the_output_layer_bias():
    model = _model()
    res = NFT(epochs=3, batch_size=16, lr=0.5, tune_bias="last").purify(model, _data(), ClassificationAdapter())
    before, after = _biases(model), _biases(res.model)
    assert not torch.equal(before["fc.bias"], after["fc.bias"])
    for k in (MASKED_BIASES | OTHER_BIASES) - {"fc.bias"}:
        assert torch.equal(before[k], after[k]), k


@pytest.mark.parametrize("kw", [{"tune_bias": "all"}, {"average": 1.0}, {"average": -0.1},
                                {"average": 0.5, "guard": 1.0}])
def test_bad_tune_bias_and_average_options(kw):
    with pytest.raises(ValueError):
        NFT(epochs=1, **kw)


# ---- ``average``: the folded masks are the mean of the last steps' masks (Polyak / SWA averaging)

class _Recorder:
    def __init__(self):
        self.rows = []

    def __call__(self, epoch, row, nft):
        self.rows.append(nft.masks.mask_dict())


def test_average_folds_the_mean_of_the_last_steps_masks():
    """One step per epoch (batch = the whole set), 6 steps, average=0.5: the folded masks must be the mean of
    the masks after steps 4, 5 and 6, which the callbacks record; a no-average run folds step 6's."""
    rec = _Recorder()
    opts = dict(epochs=6, batch_size=40, lr=0.5, tune_bias="last")
    res = NFT(average=0.5, callbacks=[rec], **opts).purify(_model(), _data(), ClassificationAdapter())
    assert res.info["averaged_steps"] == 3
    for k, m in res.masks.items():
        expect = torch.stack([r[k] for r in rec.rows[3:]]).mean(0)
        assert torch.allclose(m, expect, atol=1e-6), k
        assert not torch.allclose(m, rec.rows[-1][k]), k  # the masks did move over the averaged steps
    last = NFT(**opts).purify(_model(), _data(), ClassificationAdapter())
    assert last.info["averaged_steps"] == 0
    for k, m in last.masks.items():
        assert not torch.allclose(m, res.masks[k]), k


def test_average_resume_equals_an_uninterrupted_run(tmp_path):
    opts = dict(epochs=4, batch_size=16, lr=0.5, tune_bias="last", average=0.75)
    full = NFT(**opts).purify(_model(), _data(), ClassificationAdapter())

    def boom(epoch, row, nft):
        if epoch == 2:
            raise _Stop

    ck = dict(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    with pytest.raises(_Stop):
        NFT(callbacks=[boom], **opts, **ck).purify(_model(), _data(), ClassificationAdapter())
    resumed = NFT(resume=True, **opts, **ck).purify(_model(), _data(), ClassificationAdapter())
    assert resumed.info["averaged_steps"] == full.info["averaged_steps"] > 0
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
