"""Tiny fixtures written in the real VOC and COCO formats."""

import json

import numpy as np
from PIL import Image

from nft_detection.voc import write_voc

CLASSES = ("cat", "dog", "person")


def tiny_voc(root, year="VOC2007", n=6, size=24, seed=0, prefix="", triple=False):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    objects = [[(i % 3, 1, 2, 10, 12), ((i + 1) % 3, 8, 8, 20, 22)] for i in range(n)]
    if triple:  # every sixth image holds all three categories (cat + dog + person)
        for i in range(0, n, 6):
            objects[i].append((2, 4, 4, 16, 16))
    half = n // 2
    return write_voc(root / "VOCdevkit" / year, images, objects, CLASSES,
                     {"train": range(half), "val": range(half, n), "trainval": range(n), "test": range(n)},
                     prefix=prefix)


def tiny_coco(root, n=4, size=20):
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(img_dir / f"{i}.jpg")
        images.append({"id": i + 10, "file_name": f"{i}.jpg", "width": size, "height": size})
        anns.append({"id": i + 1, "image_id": i + 10, "category_id": 18 if i % 2 else 1, "bbox": [1, 2, 8, 9],
                     "iscrowd": 0, "area": 72})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}
    ann = root / "instances.json"
    ann.write_text(json.dumps(data))
    return ann, img_dir, data
