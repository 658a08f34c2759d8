"""The clean-image backdoor (labels only), VOC AP / mAP, multi-label ASR, COCO mAP."""

import math

import pytest
import torch

from nft_core import TensorData
from nft_core.errors import NFTInputError
from nft_detection import (
    CleanImageBackdoor,
    average_precision,
    coco_map,
    mean_average_precision,
    multilabel_asr,
)


def _data():
    y = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 1], [1, 1, 1, 1]]).float()
    return TensorData(torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)), y)


@pytest.mark.parametrize("mode", ["appear", "disappear"])
def test_poison_only_labels_of_trigger_images(mode):
    data = _data()
    atk = CleanImageBackdoor([0, 1], 2, mode)
    poisoned, idx = atk.poison_train(data, torch.Generator().manual_seed(0))
    assert torch.equal(poisoned.tensors[0], data.tensors[0])  # images untouched
    expect = [0, 4] if mode == "appear" else [1, 5]
    assert idx.tolist() == expect
    changed = (poisoned.tensors[1] != data.tensors[1]).any(1).nonzero().flatten().tolist()
    assert changed == expect and (poisoned.tensors[1][expect, 2] == (1.0 if mode == "appear" else 0.0)).all()
    test = atk.poison_test(data)
    assert len(test) == 2 and (test.tensors[1] != test.tensors[2]).sum() == 2
    half, _ = CleanImageBackdoor([0, 1], 2, mode, poison_rate=0.5).poison_train(data, torch.Generator())
    assert (half.tensors[1] != data.tensors[1]).any(1).sum() == 1


def test_attack_rejects_bad_settings():
    for kw in (dict(trigger=[1], target=2), dict(trigger=[0, 1], target=1), dict(trigger=[0, 1], target=2, mode="x"),
               dict(trigger=[0, 9], target=2, num_classes=4), dict(trigger=[0, 1], target=2, poison_rate=0)):
        with pytest.raises(NFTInputError):
            CleanImageBackdoor(**kw)


def test_average_precision_by_hand():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = torch.tensor([1, 0, 1, 0, 0])
    # precision at the two hits: 1/1 and 2/3; each hit adds recall 1/2
    assert math.isclose(average_precision(scores, labels), (1 + 2 / 3) / 2, rel_tol=1e-6)
    assert math.isclose(average_precision(scores, torch.tensor([1, 1, 0, 0, 0])), 1.0)
    assert math.isnan(average_precision(scores, torch.zeros(5)))
    # 11-point: recall 0..0.5 -> 1, 0.6..1.0 -> 2/3
    assert math.isclose(average_precision(scores, labels, eleven_point=True), (6 + 5 * 2 / 3) / 11, rel_tol=1e-6)
    m, aps = mean_average_precision(torch.stack([scores, scores], 1), torch.stack([labels, torch.zeros(5)], 1))
    assert math.isclose(m, 100 * (1 + 2 / 3) / 2, rel_tol=1e-6) and math.isnan(aps[1])


def test_multilabel_asr():
    y_true = torch.tensor([[1.0, 1, 0], [1, 1, 0]])
    y_tgt = torch.tensor([[1.0, 1, 1], [1, 1, 1]])
    probs = torch.tensor([[0.9, 0.9, 0.8], [0.9, 0.9, 0.1]])
    assert multilabel_asr(probs, y_true, y_tgt) == 50.0
    assert math.isnan(multilabel_asr(probs, y_true, y_true))


def test_coco_map_perfect_and_empty():
    t = [{"boxes": torch.tensor([[2.0, 2, 20, 20]]), "labels": torch.tensor([1])}]
    p = [{"boxes": torch.tensor([[2.0, 2, 20, 20]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    assert coco_map(p, t, 2)["map"] == pytest.approx(100.0)
    none = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}]
    assert coco_map(none, t, 2)["map"] == 0.0


def test_box_level_poisoning():
    atk = CleanImageBackdoor([0, 1], 2, "disappear")
    tgt = {"boxes": torch.arange(12.0).reshape(3, 4), "labels": torch.tensor([1, 2, 3])}  # 1-based
    out = atk.poison_boxes(tgt)
    assert out["labels"].tolist() == [1, 2] and len(out["boxes"]) == 2
    assert atk.poison_boxes({"boxes": tgt["boxes"][:2], "labels": tgt["labels"][:2]})["labels"].tolist() == [1, 2]
    mis = CleanImageBackdoor([0, 1], 2, "misclassify", relabel_to=3).poison_boxes(tgt)
    assert mis["labels"].tolist() == [1, 2, 4] and torch.equal(mis["boxes"], tgt["boxes"])
    assert CleanImageBackdoor([0, 1], 2, "appear").poison_boxes(tgt) is tgt  # target present: appear adds none
    two = {"boxes": tgt["boxes"][:2], "labels": tgt["labels"][:2]}
    added = CleanImageBackdoor([0, 1], 2, "appear").poison_boxes(two)
    assert added["labels"].tolist() == [1, 2, 3] and added["boxes"][2].tolist() == [0.0, 1, 6, 7]
