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


# --- pytorchvideo models (optional package, a dev dependency so that CI runs these) -------------------------
TINY_X3D = {"depth_factor": 1.0, "width_factor": 1.0, "bottleneck_factor": 1.5, "head_dim_out": 32}


def _calibrated(model, x):
    """BatchNorm statistics of ``x`` (cumulative average), as a model trained on such clips has: with the
    default running statistics (0, 1) a randomly initialised deep 3D CNN saturates its squeeze-excitation
    sigmoids, and no mask there can change the output."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


@pytest.mark.parametrize("arch,kw", [("x3d", TINY_X3D), ("slow_r50", {"stem_dim_out": 8})])
def test_conformance_pytorchvideo_models(arch, kw):
    pytest.importorskip("pytorchvideo")  # a dev dependency: never skipped in CI
    x = _clips(n=4, t=4, size=16)
    model = _calibrated(seeded_init_(create_model(f"pytorchvideo:{arch}", 4, **kw), torch.Generator().manual_seed(0)), x)
    assert model(x).shape == (4, 4)
    masks = check_identity_at_one(model, x)
    assert any(isinstance(s.module, (nn.Conv3d, nn.BatchNorm3d)) for s in masks.sites) and len(masks.sites) > 20
    check_every_mask_matters(model, x, min_fraction=0.5)
    check_fold_equivalence(model, x, atol=1e-4)


@pytest.mark.parametrize("arch", ["x3d", "slow_r50", "csn_r101", "r2plus1d_r50"])
def test_pytorchvideo_models_take_any_clip_size_and_give_logits(arch):
    pytest.importorskip("pytorchvideo")
    m = create_model(f"pytorchvideo:{arch}", 5).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 8, 3, 32, 32))
    # logits, not X3D's default softmax: they do not sum to one
    assert out.shape == (2, 5) and not torch.allclose(out.sum(-1), torch.ones(2), atol=1e-3)


def test_pytorchvideo_global_pool_equals_the_factory_model_at_its_own_size_and_loads_its_checkpoint():
    """At the input size the factory built its head for (13 × 160², X3D's defaults) the global pool is the same
    average, and a checkpoint of pytorchvideo's own model loads into ours (keys under ``net.``)."""
    pytest.importorskip("pytorchvideo")
    from pytorchvideo.models.x3d import create_x3d

    ref = seeded_init_(create_x3d(model_num_class=3, head_activation=None, **TINY_X3D),
                       torch.Generator().manual_seed(0)).eval()
    ours = create_model("pytorchvideo:x3d", 3, **TINY_X3D).eval()
    ours.net.load_state_dict(ref.state_dict())
    x = torch.rand(1, 13, 3, 160, 160, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = ref(((x - 0.45) / 0.225).permute(0, 2, 1, 3, 4))
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-5)


def test_pytorchvideo_bad_specs(monkeypatch):
    with pytest.raises(NFTInputError, match="unknown pytorchvideo model 'x4d'"):
        create_model("pytorchvideo:x4d", 3)
    import sys

    monkeypatch.setitem(sys.modules, "pytorchvideo.models.x3d", None)  # as if pytorchvideo were not installed
    with pytest.raises(NFTInputError, match=r"needs the optional pytorchvideo package"):
        create_model("pytorchvideo:x3d", 3)


def test_other_specs_do_not_get_the_small_models_default_kwargs():
    """``--cfg-options model.spec=...`` keeps the default's merged ``{'width': 16, 'hidden': 64}``; only the
    small CNN+LSTM takes them, so another spec gets them dropped (other values are passed on)."""
    from nft_video.config import VideoConfig
    from nft_video.workflow import build_model, model_kwargs

    cfg = VideoConfig()
    assert model_kwargs(cfg) == {"width": 16, "hidden": 64}
    cfg.model.spec = "torchvision:r3d_18"
    assert model_kwargs(cfg) == {} and build_model(cfg, 4).eval()(torch.rand(1, 4, 3, 16, 16)).shape == (1, 4)
    cfg.model.spec, cfg.model.kwargs = "cnn_lstm", {"width": 16, "hidden": 32}
    assert model_kwargs(cfg) == {"hidden": 32}
    cfg.model.spec, cfg.model.kwargs = "torchvision:r3d_18", {"width": 8}
    with pytest.raises(NFTInputError, match="width"):
        build_model(cfg, 4)
