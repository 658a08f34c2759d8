"""Batched FPS / ball query against straightforward references; every model passes nft_core's
conformance checks."""

import pytest
import torch

from nft_core.errors import NFTInputError
from nft_core.testing import check_every_mask_matters, check_fold_equivalence, check_identity_at_one
from nft_pointcloud import DGCNN, PointNet, PointNet2MSG, PointNet2SSG, create_model
from nft_pointcloud.ops import ball_query, farthest_point_sample, knn


def _fps_ref(cloud, npoint):
    dist = torch.full((cloud.shape[0],), float("inf"))
    far, out = 0, []
    for _ in range(npoint):
        out.append(far)
        dist = torch.minimum(dist, ((cloud - cloud[far]) ** 2).sum(-1))
        far = int(dist.argmax())
    return torch.tensor(out)


def test_fps_matches_reference_and_spreads_points():
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(3, 200, 3, generator=g)
    idx = farthest_point_sample(xyz, 20)
    for b in range(3):
        assert torch.equal(idx[b], _fps_ref(xyz[b], 20))
        assert len(set(idx[b].tolist())) == 20


def test_ball_query_matches_reference():
    g = torch.Generator().manual_seed(1)
    xyz = torch.rand(2, 150, 3, generator=g)
    centers = xyz[:, :10] + 0.01
    r, k = 0.25, 8
    idx = ball_query(xyz, centers, r, k)
    assert idx.shape == (2, 10, 8)
    for b in range(2):
        for s in range(10):
            inside = torch.nonzero(((xyz[b] - centers[b, s]) ** 2).sum(-1) <= r * r).flatten()[:k]
            expect = torch.full((k,), int(inside[0]))
            expect[: len(inside)] = inside
            assert torch.equal(idx[b, s], expect)
    far = ball_query(xyz, torch.full((2, 1, 3), 9.0), r, k)  # no point in range: index 0, no crash
    assert (far == 0).all()


def test_knn_includes_self():
    x = torch.rand(2, 30, 3, generator=torch.Generator().manual_seed(2))
    idx = knn(x, 4)
    assert idx.shape == (2, 30, 4) and (idx[..., 0] == torch.arange(30)).all()


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


TINY = {
    "pointnet": lambda: PointNet(num_classes=5, width=4),
    "pointnet2_ssg": lambda: PointNet2SSG(num_classes=5, width=4, npoints=(16, 8), nsample=8),
    "pointnet2_msg": lambda: PointNet2MSG(num_classes=5, width=4, npoints=(16, 8)),
    "dgcnn": lambda: DGCNN(num_classes=5, width=4, k=4),
}


@pytest.mark.parametrize("name", list(TINY))
def test_model_conformance(name):
    torch.manual_seed(0)  # only the test seeds the global RNG (default layer init)
    model = _randomize_bn(TINY[name]()).eval()
    x = torch.rand(4, 64, 3, generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert model(x).shape == (4, 5)
    check_identity_at_one(model, x)
    check_every_mask_matters(model, x, min_fraction=0.5)
    check_fold_equivalence(model, x, atol=1e-4)
    assert not model.training


def test_create_model():
    assert isinstance(create_model("pointnet2_ssg", 3, width=4), PointNet2SSG)
    assert isinstance(create_model("nft_pointcloud.models:PointNet", 3, width=4), PointNet)
    with pytest.raises(NFTInputError):
        create_model("resnet", 3)
    with pytest.raises(NFTInputError):
        create_model("nft_pointcloud.models:Nope", 3)
