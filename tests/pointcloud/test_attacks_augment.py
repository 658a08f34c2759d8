"""Attacks keep N and poison what they say; PointCutMix targets match the replaced fraction."""

import pytest
import torch

from nft_core import MixedTarget, TensorData
from nft_core.testing import check_augmentation_consistent
from nft_pointcloud import ATTACKS, PointBAI, PointBAO, PointCBA, PointCutMix, RandomScaleJitter, ThreeDPCBA
from nft_pointcloud.attacks import rotation_matrix


def _data(n=40, points=64, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, points, 3, generator=g) * 1.2 - 0.6
    return TensorData(x, torch.arange(n) % classes)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name):
    data = _data()
    opts = {"surrogate_epochs": 1, "steps": 2} if name == "3dpc_ba" else {}
    atk = ATTACKS[name](target=0, poison_rate=0.2, num_classes=4, seed=0, **opts)
    poisoned, idx = atk.poison_train(data, torch.Generator().manual_seed(0))
    x, y = data.tensors
    px, py = poisoned.tensors
    assert px.shape == x.shape  # N kept
    untouched = torch.ones(len(x), dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(px[untouched], x[untouched]) and torch.equal(py[untouched], y[untouched])
    if atk.clean_label:
        assert (y[idx] == 0).all() and torch.equal(py, y) and len(idx) == round(0.2 * 10)
    else:
        assert (py[idx] == 0).all() and (y[idx] != 0).all() and len(idx) == round(0.2 * 40)
    test = atk.poison_test(data)
    assert len(test) == int((y != 0).sum()) and (test.tensors[2] == 0).all()
    assert torch.equal(test.tensors[0], atk.poison_test(data).tensors[0])  # fixed test trigger


def test_pointba_i_inserts_the_fixed_cluster():
    atk = PointBAI(num_classes=4, n_points=10, radius=0.05)
    x = _data().tensors[0][:3]
    out = atk.apply(x, torch.Generator().manual_seed(0))
    near = ((out - atk.center).norm(dim=-1) <= 0.05 + 1e-6).sum(1)
    assert (near == 10).all() and ((out != x).any(-1).sum(1) == 10).all()


def test_pointba_o_rotates_and_all2all():
    atk = PointBAO(num_classes=4, mode="all2all", angles_deg=(90, 0, 0))
    x = _data().tensors[0][:2]
    out = atk.apply(x, torch.Generator())
    assert torch.allclose(out[..., 1], -x[..., 2], atol=1e-6) and torch.allclose(out.norm(dim=-1), x.norm(dim=-1))
    test = atk.poison_test(_data())
    assert torch.equal(test.tensors[2], (test.tensors[1] + 1) % 4)
    assert torch.allclose(rotation_matrix((0, 0, 0)), torch.eye(3))


def test_clean_label_rejects_all2all():
    with pytest.raises(ValueError):
        PointCBA(mode="all2all")


def test_3dpc_ba_optimises_a_location_within_bounds():
    atk = ThreeDPCBA(num_classes=4, surrogate_epochs=1, steps=3, max_radius=0.8)
    atk.poison_train(_data(), torch.Generator().manual_seed(0))
    c = atk.state_dict()["center"]
    assert c.norm() <= 0.8 + 1e-5
    other = ThreeDPCBA(num_classes=4)
    other.load_state_dict(atk.state_dict())
    assert torch.equal(other.center, c) and other.fitted


def _check_cutmix(batch, out):
    x, y = batch
    mixed, t = out
    assert isinstance(t, MixedTarget) and mixed.shape == x.shape
    n = x.shape[1]
    k = round(t.lam * n)
    assert abs(t.lam - k / n) < 1e-9  # λ is exactly the replaced fraction
    changed = (mixed != x).any(-1).sum(1)
    assert (changed <= k).all()  # at most k points changed (a matched point may coincide)
    # every point of a mixed cloud comes from the cloud itself or from its partner (label t.a)
    for i in range(len(x)):
        partner = [j for j in range(len(x)) if y[j] == t.a[i]][0]
        from_self = (mixed[i][:, None] == x[i][None]).all(-1).any(1)
        from_partner = (mixed[i][:, None] == x[partner][None]).all(-1).any(1)
        assert (from_self | from_partner).all()
        assert int((~from_self).sum()) <= k
    assert torch.equal(t.b, y)


@pytest.mark.parametrize("mode", ["k", "r"])
def test_pointcutmix_consistent(mode):
    x = _data(n=6, classes=6).tensors[0]
    y = torch.arange(6)  # unique labels identify every partner
    check_augmentation_consistent(PointCutMix(mode=mode), (x, y), _check_cutmix, seed=3)


def test_scale_jitter_keeps_labels():
    x = _data(n=4).tensors[0]
    y = torch.arange(4)

    def check(batch, out):
        assert out[0].shape == x.shape and torch.equal(out[1], y) and not torch.equal(out[0], x)

    check_augmentation_consistent(RandomScaleJitter(), (x, y), check)
