"""Models: shapes, masks reaching the LSTM gates (conformance suite on the small CNN+LSTM)."""

import pytest
import torch
from torch import nn

from nft_core import NeuronMasks
from nft_core.checkpoint import save_state_dict
from nft_core.errors import NFTInputError
from nft_core.init import seeded_init_
from nft_core.testing import check_every_mask_matters, check_fold_equivalence, check_identity_at_one
from nft_video.models import CNNLSTM, SmallCNNLSTM, create_model


def _small():
    m = SmallCNNLSTM(num_classes=4, width=4, hidden=8)
    return seeded_init_(m, torch.Generator().manual_seed(0)).eval()


def _clips(n=3, t=4, size=16):
    return torch.rand(n, t, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_small_cnn_lstm_shapes():
    assert _small()(_clips()).shape == (3, 4)
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        _small()(torch.rand(2, 3, 16, 16))


def test_conformance_small_cnn_lstm():
    model, x = _small(), _clips()
    masks = check_identity_at_one(model, x)
    assert any(isinstance(s.module, nn.LSTM) for s in masks.sites), "the LSTM is not a mask site"
    fractions = check_every_mask_matters(model, x, min_fraction=0.9)
    lstm_site = [s.name for s in masks.sites if isinstance(s.module, nn.LSTM)][0]
    assert fractions[lstm_site] > 0.9  # gate rows get gradients
    check_fold_equivalence(model, x, atol=1e-5)


def test_lstm_gate_masks_change_the_output():
    model, x = _small(), _clips()
    masks = NeuronMasks(model, x)
    site = [s for s in masks.sites if isinstance(s.module, nn.LSTM)][0]
    m = masks.masks[site.key]
    assert m.numel() == 4 * 8  # one mask per gate row (i, f, g, o) x hidden
    with torch.no_grad():
        ref = model(x)
        m[: 8].fill_(0.3)  # input gate rows only
        assert (model(x) - ref).abs().max() > 1e-4


@pytest.mark.slow  # builds two ResNet-50s and writes a 100 MB file (about 35 s on the 2-core box)
def test_cnn_lstm_resnet50_local_weights(tmp_path):
    from torchvision.models import resnet50

    ref = resnet50(weights=None)
    with torch.no_grad():
        ref.conv1.weight.fill_(0.01)
    save_state_dict(ref.state_dict(), tmp_path / "r50.safetensors")
    model = CNNLSTM(num_classes=3, hidden=8, encoder_weights=str(tmp_path / "r50.safetensors")).eval()
    assert torch.all(model.encoder.conv1.weight == 0.01)
    with torch.no_grad():
        assert model(torch.rand(1, 2, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18", "mc3_18"])
def test_torchvision_video_models(arch):
    m = create_model(f"torchvision:{arch}", 5).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 4, 3, 16, 16)).shape == (1, 5)


def test_bad_specs():
    with pytest.raises(NFTInputError, match="unknown model spec"):
        create_model("nope", 3)
    with pytest.raises(NFTInputError, match="unknown torchvision video model"):
        create_model("torchvision:x3d", 3)
    with pytest.raises(NFTInputError, match="cannot import"):
        create_model("no_such_pkg.mod:fn", 3)
