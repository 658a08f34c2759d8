import pytest
import torch

from nft_core.contracts import Augmentation, MixedTarget
from nft_core.testing import check_augmentation_consistent
from nft_vision import CutMix, CutOut


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 16, 16, generator=g), torch.arange(6), torch.zeros(6)


@pytest.mark.parametrize("seed", range(5))
def test_cutmix(seed):
    def check(batch, out):
        x, y, extra = batch
        xm, t, extra2 = out
        assert isinstance(t, MixedTarget) and torch.equal(t.a, y) and torch.equal(extra, extra2)
        from_self = (xm == x).all(1)  # (B, H, W): pixels kept from the image itself
        # the pasted region is one box shared by the batch; λ is its complement's true area
        for i in range(len(y)):
            if t.b[i] != y[i]:
                assert abs(from_self[i].float().mean().item() - t.lam) < 1e-6
                j = t.b[i].item()
                assert torch.equal(xm[i][:, ~from_self[i]], x[j][:, ~from_self[i]])
        assert 0 <= t.lam <= 1

    x0 = _batch()[0].clone()
    check_augmentation_consistent(CutMix(), _batch(), check, seed=seed)
    assert isinstance(CutMix(), Augmentation) and torch.equal(_batch()[0], x0)


@pytest.mark.parametrize("seed", range(5))
def test_cutout(seed):
    def check(batch, out):
        x, y, extra = batch
        xc, y2, extra2 = out
        assert torch.equal(y, y2) and torch.equal(extra, extra2)
        hole = (xc != x).any(1)
        for i in range(len(y)):
            rows, cols = hole[i].any(1).nonzero(), hole[i].any(0).nonzero()
            assert len(rows) <= 8 and len(cols) <= 8 and len(rows) > 0
            assert hole[i].sum() == len(rows) * len(cols)  # a (clipped) square
            assert (xc[i][:, hole[i]] == 0).all()

    check_augmentation_consistent(CutOut(length=8), _batch(), check, seed=seed)
    assert isinstance(CutOut(), Augmentation)
