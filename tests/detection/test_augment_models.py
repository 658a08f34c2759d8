"""Multi-label MixUp and detection MixUp (check_augmentation_consistent), the multi-label model through the
mask conformance suite, the adapter's contract and a tiny NFT run."""

import pytest
import torch

from nft_core import NFT, EvalData, MixedTarget, TensorData
from nft_core.testing.conformance import (
    check_augmentation_consistent,
    check_every_mask_matters,
    check_fold_equivalence,
    check_identity_at_one,
)
from nft_detection import (
    DetectionMixUp,
    MultiLabelAdapter,
    MultiLabelCNN,
    MultiLabelMixUp,
    create_multilabel_model,
)


def _batch(n=6, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), (torch.rand(n, c, generator=g) < 0.5).float()


def test_multilabel_mixup_same_lambda_for_images_and_labels():
    x, y = _batch()

    def check(batch, out):
        xm, t = out
        assert isinstance(t, MixedTarget) and torch.equal(t.a, y)
        perm = [next(j for j in range(len(y)) if torch.equal(t.b[i], y[j]) and torch.allclose(
            xm[i], t.lam * x[i] + (1 - t.lam) * x[j], atol=1e-6)) for i in range(len(y))]
        assert len(perm) == len(y)

    check_augmentation_consistent(MultiLabelMixUp(), (x, y), check)
    xm, soft = MultiLabelMixUp(soft=True)((x, y), torch.Generator().manual_seed(0))
    _, mixed = MultiLabelMixUp()((x, y), torch.Generator().manual_seed(0))
    assert torch.allclose(soft, mixed.lam * mixed.a + (1 - mixed.lam) * mixed.b)
    # BCE is linear in the target: the MixedTarget loss equals the soft-vector loss
    model, ad = MultiLabelCNN(4, width=4), MultiLabelAdapter(4)
    model.eval()
    assert torch.allclose(ad.loss(model, (xm, soft)), ad.loss(model, (xm, mixed)), atol=1e-6)
    with pytest.raises(ValueError):
        MultiLabelMixUp()((x, y[:, 0]), torch.Generator())


def test_detection_mixup_keeps_boxes_of_both_with_weights():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 16, 16, generator=g)
    targets = [{"boxes": torch.tensor([[float(i), 0, 5, 5]] * (i + 1)), "labels": torch.full((i + 1,), i + 1)}
               for i in range(3)]

    def check(batch, out):
        xm, tm = out
        for i, t in enumerate(tm):
            own = targets[i]
            k = len(own["labels"])
            assert torch.equal(t["boxes"][:k], own["boxes"]) and torch.equal(t["labels"][:k], own["labels"])
            lam = float(t["weights"][0])
            j = int(t["labels"][k]) - 1  # the partner image
            assert torch.allclose(t["weights"][k:], torch.full((len(t["labels"]) - k,), 1 - lam))
            assert torch.allclose(xm[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)

    check_augmentation_consistent(DetectionMixUp(), (x, targets), check)


def test_multilabel_cnn_conformance():
    x, _ = _batch(4)
    model = MultiLabelCNN(4, width=4, hidden=8)
    check_identity_at_one(model, x)
    check_every_mask_matters(model, x, min_fraction=0.5)
    check_fold_equivalence(model, x)
    assert create_multilabel_model("smallcnn", 3, width=4)(x).shape == (4, 3)


def test_adapter_contract_and_tiny_nft():
    x, y = _batch(12, 4)
    y[:, 0] = 1.0
    ad = MultiLabelAdapter(4)
    model = MultiLabelCNN(4, width=4, hidden=8)
    model.train()
    poisoned = TensorData(x[:3], y[:3], 1 - y[:3])
    m = ad.evaluate(model, EvalData(TensorData(x, y), poisoned))
    assert set(m) == {"map", "asr"} and model.training  # training mode restored
    assert ad.samples_per_class(TensorData(x, y)) == pytest.approx(float(y.sum()) / int((y.sum(0) > 0).sum()))
    res = NFT(augmentation=MultiLabelMixUp(), epochs=2, batch_size=8, shrink=0.02, guard=1.0).purify(
        model.eval(), TensorData(x, y), ad)
    assert type(res.model) is MultiLabelCNN and res.masks and len(res.history) == 2


def _coded_batch(n=4, size=24):
    """Image i is the constant i + 1 (so every output pixel names its source); one box per image, label i + 1."""
    x = torch.stack([torch.full((3, size, size), float(i + 1)) for i in range(n)])
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 20.0, 18.0]]), "labels": torch.tensor([i + 1]),
                "weights": torch.tensor([0.5 + 0.1 * i])} for i in range(n)]
    return x, targets


def test_detection_mosaic_moves_boxes_with_their_images():
    from nft_detection import DetectionMosaic

    x, targets = _coded_batch()

    def check(batch, out):
        xm, tm = out
        assert xm.shape == x.shape and len(tm) == len(targets)
        for i, t in enumerate(tm):
            assert len(t["boxes"]) == len(t["labels"]) == len(t["weights"]) >= 1
            own = range(len(t["labels"]))
            assert any(int(lab) == i + 1 for lab in t["labels"])  # the image's own quadrant is always there
            for k in own:
                x0, y0, x1, y1 = t["boxes"][k].tolist()
                assert 0 <= x0 < x1 <= x.shape[-1] and 0 <= y0 < y1 <= x.shape[-2]
                src = int(t["labels"][k])
                cy, cx = int((y0 + y1) / 2), int((x0 + x1) / 2)
                assert torch.allclose(xm[i, :, cy, cx], torch.full((3,), float(src)), atol=1e-4), (i, k, src)
                assert torch.isclose(t["weights"][k], targets[src - 1]["weights"][0])
                # the box shrank with its image: 16x12 in a 24x24 image, here scaled by the quadrant's size
                assert x1 - x0 < 16 + 1e-4 and y1 - y0 < 12 + 1e-4
        # every output pixel comes from one of the batch's images
        assert set(torch.unique(xm.round()).tolist()) <= {1.0, 2.0, 3.0, 4.0}

    check_augmentation_consistent(DetectionMosaic(), (x, targets), check)
    tiny = DetectionMosaic(min_size=100.0)((x, targets), torch.Generator().manual_seed(0))[1]
    assert all(len(t["boxes"]) == 0 for t in tiny)  # every box under min_size is dropped, consistently
    with pytest.raises(ValueError):
        DetectionMosaic(center=(0.0, 0.5))


def test_multilabel_mosaic_labels_are_the_union():
    from nft_detection import MultiLabelMosaic

    x, _ = _coded_batch()
    y = torch.eye(4)

    def check(batch, out):
        xm, ym = out
        for i in range(4):
            present = {int(v) - 1 for v in torch.unique(xm[i].round()).tolist()}
            assert set(torch.nonzero(ym[i]).flatten().tolist()) == present
            assert ym[i, i] == 1

    check_augmentation_consistent(MultiLabelMosaic(), (x, y), check)
