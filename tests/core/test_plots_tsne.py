"""Penultimate features (input of the last nn.Linear) and the before/after t-SNE figure (NFT paper, Fig. 1)."""

import pytest
import torch
from torch import nn

from nft_core.errors import NFTInputError
from nft_core.features import last_linear, penultimate_features, tsne_sample
from nft_core.plots import tsne_embed, tsne_plot

from .models import ConvNet


def _model():
    torch.manual_seed(0)
    return ConvNet(2).train()


def test_penultimate_features_equal_the_hand_computed_activation():
    model = _model()
    x = torch.randn(7, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    feats = penultimate_features(model, x, batch_size=3)  # three batches: 3 + 3 + 1
    model.eval()
    with torch.no_grad():  # ConvNet.forward up to its head, by hand
        h = torch.relu(model.b1(model.c1(x)))
        h = torch.relu(model.b2(model.c2(h)))
        expected = model.c3(h).flatten(2).mean(-1)
    assert feats.shape == (7, 5) and feats.dtype == torch.float32
    assert torch.allclose(feats, expected, atol=1e-6)
    model.train()
    penultimate_features(model, x)
    assert model.training  # restored
    assert not model.fc._forward_pre_hooks  # hook removed
    # by name: the input of c3 is the 6-channel activation, flattened per sample
    assert penultimate_features(model, x, layer="c3").shape == (7, 6 * 6 * 6)


def test_last_linear_is_found_in_module_order_and_missing_one_is_a_clear_error():
    model = _model()
    assert last_linear(model) is model.fc
    with pytest.raises(NFTInputError, match="no nn.Linear"):
        penultimate_features(nn.Sequential(nn.Conv2d(2, 3, 1), nn.Flatten()), torch.zeros(2, 2, 4, 4))
    with pytest.raises(NFTInputError, match="no module named"):
        penultimate_features(model, torch.zeros(2, 2, 6, 6), layer="nope")


def test_tsne_sample_caps_and_is_seeded():
    labels = torch.arange(300) % 10
    c, p = tsne_sample(labels, 80, max_points=100, generator=torch.Generator().manual_seed(0))
    assert c.numel() == 80 and p.numel() == 20
    assert c.unique().numel() == 80 and int(c.max()) < 300 and int(p.max()) < 80
    c2, p2 = tsne_sample(labels, 80, max_points=100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(c, c2) and torch.equal(p, p2)
    c, p = tsne_sample(labels[:30], 5, max_points=100)
    assert c.numel() == 30 and p.numel() == 5  # fewer points than the cap: all of them


def test_tsne_plot_writes_a_png_and_embedding_is_deterministic(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4
    poisoned = torch.arange(40) >= 32
    before = torch.randn(40, 8, generator=g) + labels[:, None].float()
    after = torch.randn(40, 8, generator=g)
    e1, e2 = tsne_embed(before, seed=3), tsne_embed(before, seed=3)
    assert e1.shape == (40, 2) and torch.equal(e1, e2)
    path = tsne_plot({"backdoored": before, "after NFT": after}, labels, poisoned, tmp_path / "tsne.png",
                     title="t")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="feature rows"):
        tsne_plot({"a": before[:10]}, labels, poisoned, tmp_path / "bad.png")
