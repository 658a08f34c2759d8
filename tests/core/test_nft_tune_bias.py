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
