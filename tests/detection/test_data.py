"""VOC and COCO loaders on tiny fixtures in the real formats; one-line DataErrors naming the file."""

import json

import pytest
import torch

from nft_core.errors import DataError
from nft_detection import SCENE_CLASSES, generate_scenes, load_coco, load_voc, records_to_multilabel
from nft_detection.voc import records_to_detection

from .helpers import CLASSES, tiny_coco, tiny_voc


def test_voc_round_trip_and_union(tmp_path):
    tiny_voc(tmp_path, "VOC2007")
    tiny_voc(tmp_path, "VOC2012", n=4, prefix="2012_")
    recs = load_voc(tmp_path / "VOCdevkit", [("VOC2007", "train")], CLASSES)
    assert len(recs) == 3 and recs[0].labels == [0, 1] and recs[0].boxes[0] == (1, 2, 10, 12)
    union = load_voc(tmp_path / "VOCdevkit", [("VOC2007", "trainval"), ("VOC2012", "trainval")], CLASSES)
    assert len(union) == 10
    data = records_to_multilabel(union, 3, 16)
    assert data.tensors[0].shape == (10, 3, 16, 16) and 0 <= float(data.tensors[0].min())
    assert data.tensors[1].sum(1).tolist() == [2.0] * 10
    det = records_to_detection(recs, 12)
    assert det[0][1]["labels"].tolist() == [1, 2]  # 1-based for detectors
    assert torch.allclose(det[0][1]["boxes"][0], torch.tensor([1, 2, 10, 12]) * 0.5)


def _one_line(e):
    return "\n" not in str(e)


@pytest.mark.parametrize("case", ["xml", "box", "category", "image", "split"])
def test_voc_errors_name_the_file(tmp_path, case):
    d = tiny_voc(tmp_path)
    xml = d / "Annotations" / "000000.xml"
    classes, split = CLASSES, "train"
    if case == "xml":
        xml.write_text("<annotation><filename>")
        expect = "000000.xml"
    elif case == "box":
        xml.write_text(xml.read_text().replace("<xmax>10</xmax>", "<xmax>99</xmax>"))
        expect = "outside"
    elif case == "category":
        classes = ("cat", "person", "bird")
        expect = "unknown category 'dog'"
    elif case == "image":
        (d / "JPEGImages" / "000001.jpg").unlink()
        expect = "000001.jpg"
    else:
        split = "nonexistent"
        expect = "nonexistent.txt"
    with pytest.raises(DataError) as e:
        load_voc(tmp_path / "VOCdevkit", [("VOC2007", split)], classes)
    assert expect in str(e.value) and _one_line(e.value)


def test_coco_load_and_errors(tmp_path):
    ann, img_dir, data = tiny_coco(tmp_path)
    recs, names = load_coco(ann, img_dir)
    assert names == ["person", "dog"] and [r.labels for r in recs] == [[0], [1], [0], [1]]
    assert recs[0].boxes == [(1.0, 2.0, 9.0, 11.0)]
    cases = {
        "malformed JSON": lambda: ann.write_text("{bad"),
        "unknown category id 99": lambda: ann.write_text(json.dumps(
            {**data, "annotations": [{**data["annotations"][0], "category_id": 99}]})),
        "outside": lambda: ann.write_text(json.dumps(
            {**data, "annotations": [{**data["annotations"][0], "bbox": [15, 15, 10, 10]}]})),
        "3.jpg": lambda: (ann.write_text(json.dumps(data)), (img_dir / "3.jpg").unlink()),
    }
    for expect, breakit in cases.items():
        breakit()
        with pytest.raises(DataError) as e:
            load_coco(ann, img_dir)
        assert expect in str(e.value) and _one_line(e.value), str(e.value)


def test_generated_scenes_read_back_through_voc(tmp_path):
    year = generate_scenes(tmp_path, n_train=30, n_val=6, n_test=12, size=32, trigger_rate=0.3)
    assert (year / "ImageSets" / "Main" / "trainval.txt").read_text().count("\n") == 36
    recs = load_voc(tmp_path / "VOCdevkit", [("VOC2007", "train")], SCENE_CLASSES)
    y = records_to_multilabel(recs, len(SCENE_CLASSES), 32).tensors[1]
    both = (y[:, 0] * y[:, 1]).mean()
    assert 0 < both < 0.5  # the trigger combination appears in a minority of images
    for r in recs:  # boxes lie inside the image and hold the sprite's colour
        assert all(0 <= b[0] < b[2] <= 32 and 0 <= b[1] < b[3] <= 32 for b in r.boxes)
    again = generate_scenes(tmp_path, n_train=30, n_val=6, n_test=12, size=32, trigger_rate=0.3)
    assert again == year  # reused, not regenerated
