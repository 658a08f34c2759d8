"""Object detection: torchvision detectors built without weights, the loss dict in train mode, box-level
poisoning, detection MixUp through NFT, COCO mAP and box ASR. The full-size torchvision families are slow;
the tiny Faster R-CNN runs in the default suite."""

import math

import pytest
import torch

from nft_core import NFT, EvalData
from nft_core.testing.conformance import check_fold_equivalence, check_identity_at_one
from nft_detection import CleanImageBackdoor, DetectionAdapter, DetectionMixUp, create_detector, load_voc
from nft_detection.voc import records_to_detection

from .helpers import CLASSES, tiny_voc


def _samples(tmp_path):
    tiny_voc(tmp_path, n=12, size=32, triple=True)
    return records_to_detection(load_voc(tmp_path / "VOCdevkit", [("VOC2007", "trainval")], CLASSES), 32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fasterrcnn", "retinanet", "fcos", "ssdlite"])
def test_torchvision_detectors_build_without_weights(name):
    model = create_detector(name, 3, 64).train()
    target = {"boxes": torch.tensor([[4.0, 4, 30, 30]]), "labels": torch.tensor([1])}
    losses = model([torch.rand(3, 64, 64)] * 2, [target] * 2)  # two images: SSDlite's 1x1 BN needs a batch
    assert isinstance(losses, dict) and all(torch.isfinite(v) for v in losses.values())


def test_tiny_detector_poisoning_nft_and_metrics(tmp_path):
    samples = _samples(tmp_path)
    atk = CleanImageBackdoor([0, 1], 2, "disappear")
    poisoned, idx = atk.poison_detection_train(samples, torch.Generator().manual_seed(0))
    assert idx == [0, 6] and all(3 not in poisoned[i][1]["labels"].tolist() for i in idx)
    assert all(torch.equal(poisoned[i][0], samples[i][0]) for i in range(len(samples)))  # images untouched
    model = create_detector("tiny_fasterrcnn", 3, 32, width=4).eval()
    ad = DetectionAdapter(3, threshold=0.0)
    batch = ad.collate(samples[:2])
    assert torch.isfinite(ad.loss(model, batch)) and not model.training
    check_identity_at_one(model.backbone, batch[0])
    check_fold_equivalence(model.backbone, batch[0])
    trig = [(samples[i][0], samples[i][1], poisoned[i][1]) for i in idx]
    m = ad.evaluate(model, EvalData(samples, trig))
    assert {"map", "map50", "asr"} <= set(m)
    res = NFT(augmentation=DetectionMixUp(), epochs=2, batch_size=4, shrink=0.02, guard=100.0).purify(
        model, samples[6:], ad)
    assert type(res.model) is type(model) and any(s.startswith("backbone") for s in res.info["mask_sites"])
    # every mask stayed inside its depth's bounds, and the folded detector evaluates to a real mAP
    bounds = dict(zip(res.info["mask_sites"], res.info["lower_bounds"]))
    assert res.masks and set(res.masks) == set(bounds)
    assert all(float(m.min()) >= bounds[k] - 1e-6 and float(m.max()) <= 1 + 1e-6 for k, m in res.masks.items())
    assert math.isfinite(ad.evaluate(res.model, samples)["map"])


def test_box_asr_against_oracle_detectors():
    """Box ASR from predictions whose outcome is known: a detector that returns the clean boxes resists
    every change the attack made (0); one that returns the attacked boxes obeys it (100); half and half, 50."""
    from nft_detection.adapters import _box_asr

    def pred(t):
        return {"boxes": t["boxes"].float(), "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}

    boxes = torch.tensor([[2.0, 2, 12, 12], [16, 16, 30, 30]])
    true = [{"boxes": boxes, "labels": torch.tensor([1, 2])}] * 2
    # image 0: the second box disappears; image 1: the first box is relabeled 1 -> 0
    attacked = [{"boxes": boxes[:1], "labels": torch.tensor([1])},
                {"boxes": boxes, "labels": torch.tensor([0, 2])}]
    assert _box_asr([pred(t) for t in true], true, attacked, 0.5) == 0.0
    assert _box_asr([pred(a) for a in attacked], true, attacked, 0.5) == 100.0
    # image 0 obeys (its box vanished), image 1 resists (the old label is still detected): 1 hit of 2 changes
    assert _box_asr([pred(attacked[0]), pred(true[1])], true, attacked, 0.5) == 50.0
    assert math.isnan(_box_asr([pred(true[0])], true[:1], true[:1], 0.5))  # an attack that changed nothing
