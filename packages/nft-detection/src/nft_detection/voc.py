"""Pascal VOC on disk (the ``VOCdevkit`` layout) — reading and writing.

::

    VOCdevkit/VOC2007/Annotations/000001.xml
                     /JPEGImages/000001.jpg
                     /ImageSets/Main/{train,val,trainval,test}.txt

:func:`load_voc` reads one or more ``(year folder, split)`` pairs (``VOC2007 test``; the 07+12 union is
``[("VOC2007", "trainval"), ("VOC2012", "trainval")]``) into :class:`Record` objects; every problem — a
missing split file, malformed XML, a box outside its image, an unknown category name, a missing image —
is a one-line :class:`~nft_core.errors.DataError` naming the file. :func:`write_voc` writes records in
exactly that layout (used by the embedded generated scenes and by the test fixtures).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nft_core.data import TensorData
from nft_core.errors import DataError

__all__ = ["VOC_CLASSES", "Record", "load_voc", "voc_year_dir", "write_voc", "read_image",
           "records_to_multilabel", "records_to_detection"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclass
class Record:
    """One annotated image: pixel boxes ``(xmin, ymin, xmax, ymax)`` (0-based, exclusive max) and class
    ids into the loader's class list."""

    image: Path
    width: int
    height: int
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    source: str = ""


def voc_year_dir(root: str | os.PathLike, year: str | None) -> Path:
    """``root`` may be a ``VOCdevkit`` folder (then ``year`` picks ``VOC2007``…) or a year folder itself."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: VOC root not found")
    if year is None:
        return root
    name = year if str(year).upper().startswith("VOC") else f"VOC{year}"
    for cand in (root / name, root / "VOCdevkit" / name):
        if cand.is_dir():
            return cand
    if (root / "Annotations").is_dir() and root.name == name:
        return root
    raise DataError(f"{root}: no {name} folder (expected VOCdevkit/{name}/Annotations)")


def _split_ids(year_dir: Path, split: str) -> list[str]:
    f = year_dir / "ImageSets" / "Main" / f"{split}.txt"
    if not f.exists():
        raise DataError(f"{f}: split file not found")
    ids = [ln.split()[0] for ln in f.read_text().splitlines() if ln.strip()]
    if not ids:
        raise DataError(f"{f}: split file is empty")
    return ids


def _num(node, tag: str, xml: Path) -> float:
    el = node.find(tag)
    if el is None or el.text is None:
        raise DataError(f"{xml}: missing <{tag}>")
    try:
        return float(el.text)
    except ValueError as e:
        raise DataError(f"{xml}: <{tag}> is not a number ({el.text!r})") from e


def parse_annotation(xml: Path, image_dir: Path, class_index: dict[str, int]) -> Record:
    """One ``Annotations/*.xml`` file. VOC pixel coordinates are 1-based inclusive; records hold 0-based
    ``[xmin - 1, ymin - 1, xmax, ymax]``."""
    if not xml.exists():
        raise DataError(f"{xml}: annotation file not found")
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as e:
        raise DataError(f"{xml}: malformed XML ({e})") from e
    fname = root.findtext("filename")
    if not fname:
        raise DataError(f"{xml}: missing <filename>")
    size = root.find("size")
    if size is None:
        raise DataError(f"{xml}: missing <size>")
    w, h = int(_num(size, "width", xml)), int(_num(size, "height", xml))
    if w <= 0 or h <= 0:
        raise DataError(f"{xml}: image size {w}x{h} is not positive")
    img = image_dir / fname.strip()
    if not img.exists():
        raise DataError(f"{img}: image file not found (named by {xml})")
    rec = Record(img, w, h, source=str(xml))
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_index:
            raise DataError(f"{xml}: unknown category {name!r}")
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"{xml}: object {name!r} has no <bndbox>")
        x0, y0, x1, y1 = (_num(bb, t, xml) for t in ("xmin", "ymin", "xmax", "ymax"))
        if not (1 <= x0 <= x1 <= w and 1 <= y0 <= y1 <= h):
            raise DataError(f"{xml}: box {name} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {w}x{h} image")
        rec.boxes.append((x0 - 1, y0 - 1, x1, y1))
        rec.labels.append(class_index[name])
        rec.difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return rec


def load_voc(root: str | os.PathLike, sets: Sequence[tuple[str | None, str]],
             classes: Sequence[str] = VOC_CLASSES) -> list[Record]:
    """Records of every ``(year, split)`` in ``sets`` (e.g. ``[("VOC2007", "test")]``), in file order."""
    class_index = {c: i for i, c in enumerate(classes)}
    out: list[Record] = []
    for year, split in sets:
        d = voc_year_dir(root, year)
        for i in _split_ids(d, split):
            out.append(parse_annotation(d / "Annotations" / f"{i}.xml", d / "JPEGImages", class_index))
    if not out:
        raise DataError(f"{root}: no images in {list(sets)}")
    return out


def read_image(path: Path, size: int | None) -> torch.Tensor:
    """``(3, size, size)`` float in [0, 1] (resized when ``size`` is given)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None:
                im = im.resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError as e:
        raise DataError(f"{path}: image file not found") from e
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from e
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255)


def records_to_multilabel(records: Sequence[Record], num_classes: int, size: int) -> TensorData:
    """``TensorData(x (N,3,S,S) in [0,1], y (N,C) multi-hot float)``; difficult-only classes count as
    present (the usual multi-label VOC convention)."""
    x = torch.stack([read_image(r.image, size) for r in records]) if records else torch.zeros(0, 3, size, size)
    y = torch.zeros(len(records), num_classes)
    for i, r in enumerate(records):
        for c in r.labels:
            y[i, c] = 1.0
    return TensorData(x, y)


def records_to_detection(records: Sequence[Record], size: int) -> list[tuple[torch.Tensor, dict]]:
    """Detection samples ``(image (3,S,S), {"boxes": (K,4), "labels": (K,) 1-based})`` with boxes rescaled
    to the resized image (label 0 is the detectors' background)."""
    out = []
    for r in records:
        x = read_image(r.image, size)
        b = torch.tensor(r.boxes, dtype=torch.float32).reshape(-1, 4)
        b[:, 0::2] *= size / r.width
        b[:, 1::2] *= size / r.height
        out.append((x, {"boxes": b, "labels": torch.tensor(r.labels, dtype=torch.int64) + 1}))
    return out


def write_voc(year_dir: str | os.PathLike, images: Sequence[np.ndarray], objects: Sequence[Sequence[tuple]],
              classes: Sequence[str], splits: dict[str, Sequence[int]], prefix: str = "") -> Path:
    """Write ``images`` (HxWx3 uint8) with ``objects`` (per image: ``(class_id, xmin, ymin, xmax, ymax)``
    0-based pixel boxes) as JPEG + VOC XML + ``ImageSets/Main/<split>.txt``. Returns the year folder."""
    from PIL import Image

    d = Path(year_dir)
    (d / "Annotations").mkdir(parents=True, exist_ok=True)
    (d / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (d / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for i, (img, objs) in enumerate(zip(images, objects)):
        stem = f"{prefix}{i:06d}"
        Image.fromarray(img).save(d / "JPEGImages" / f"{stem}.jpg", quality=92)
        h, w = img.shape[:2]
        ann = ET.Element("annotation")
        ET.SubElement(ann, "folder").text = d.name
        ET.SubElement(ann, "filename").text = f"{stem}.jpg"
        sz = ET.SubElement(ann, "size")
        for k, v in (("width", w), ("height", h), ("depth", 3)):
            ET.SubElement(sz, k).text = str(v)
        for c, x0, y0, x1, y1 in objs:
            o = ET.SubElement(ann, "object")
            ET.SubElement(o, "name").text = classes[c]
            ET.SubElement(o, "difficult").text = "0"
            bb = ET.SubElement(o, "bndbox")
            for k, v in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
                ET.SubElement(bb, k).text = str(int(round(v)))
        ET.ElementTree(ann).write(d / "Annotations" / f"{stem}.xml")
    for name, idx in splits.items():
        (d / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{prefix}{i:06d}\n" for i in idx))
    return d
