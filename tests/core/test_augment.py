import pytest
import torch

from nft_core import MixedTarget, MixUp, NoAugmentation
from nft_core.augment import sample_beta
from nft_core.testing import check_augmentation_consistent


def _check_mixup(batch, out):
    x, y = batch
    xm, t = out
    assert isinstance(t, MixedTarget) and 0 <= t.lam <= 1
    # recover the permutation from the targets and check the inputs were mixed with the same λ and pairs
    for i in range(len(x)):
        j = [k for k in range(len(x)) if torch.allclose(xm[i], t.lam * x[i] + (1 - t.lam) * x[k], atol=1e-6)]
        assert j, f"sample {i} is not a λ-mixture of x[{i}] and another sample"
        assert any(t.b[i] == y[k] for k in j)
    assert torch.equal(t.a, y)


def test_mixup_consistent_and_deterministic():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 4, 4, generator=g)
    y = torch.arange(8)
    check_augmentation_consistent(MixUp(1.0), (x, y), _check_mixup)
    check_augmentation_consistent(MixUp(0.4), (x, y), _check_mixup, seed=5)


def test_mixup_loss_weighting():
    t = MixedTarget(torch.tensor([0, 1]), torch.tensor([1, 1]), 0.25)
    losses = {0: torch.tensor([1.0, 2.0]), 1: torch.tensor([3.0, 4.0])}
    out = t.combine(lambda tgt: losses[int(tgt[0])])
    assert out.item() == pytest.approx((0.25 * 1 + 0.75 * 3 + 0.25 * 2 + 0.75 * 4) / 2)


def test_beta_sampling_uses_generator_only():
    a = [sample_beta(torch.Generator().manual_seed(1), 0.5) for _ in range(2)]
    assert a[0] == a[1] and 0 <= a[0] <= 1
    draws = torch.tensor([sample_beta(torch.Generator().manual_seed(s), 2.0) for s in range(400)])
    assert abs(draws.mean().item() - 0.5) < 0.05  # Beta(2,2) has mean 0.5


def test_no_augmentation_and_bad_alpha():
    b = (torch.zeros(2, 1), torch.zeros(2))
    assert NoAugmentation()(b, torch.Generator()) is b
    with pytest.raises(ValueError):
        MixUp(0)
