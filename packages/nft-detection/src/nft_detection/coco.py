"""MS-COCO on disk: an ``instances_*.json`` file plus an image folder, read into
:class:`~nft_detection.voc.Record` objects (the same records the VOC loader gives).

Class ids are the positions of the JSON's ``categories`` sorted by id (COCO's 80 classes -> 0..79);
boxes are COCO ``[x, y, w, h]`` converted to ``(xmin, ymin, xmax, ymax)``. Malformed JSON, a box outside
its image, an annotation naming an unknown category or image, and a missing image file are one-line
:class:`~nft_core.errors.DataError` s naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nft_core.errors import DataError

from .voc import Record

__all__ = ["load_coco"]


def load_coco(ann_file: str | os.PathLike, image_dir: str | os.PathLike) -> tuple[list[Record], list[str]]:
    """``(records, class names)``; crowd annotations are skipped; images keep the JSON's order."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    if not ann_file.exists():
        raise DataError(f"{ann_file}: annotation file not found")
    try:
        data = json.loads(ann_file.read_text())
        cats = sorted(data["categories"], key=lambda c: c["id"])
        images = data["images"]
        anns = data.get("annotations", [])
    except json.JSONDecodeError as e:
        raise DataError(f"{ann_file}: malformed JSON ({e.msg} at line {e.lineno})") from e
    except (KeyError, TypeError) as e:
        raise DataError(f"{ann_file}: not a COCO instances file (missing {e})") from e
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    names = [str(c["name"]) for c in cats]
    recs: dict[int, Record] = {}
    for im in images:
        try:
            p = image_dir / im["file_name"]
            recs[im["id"]] = Record(p, int(im["width"]), int(im["height"]), source=str(ann_file))
        except (KeyError, TypeError) as e:
            raise DataError(f"{ann_file}: image entry without {e}") from e
    for a in anns:
        if a.get("iscrowd", 0):
            continue
        try:
            rec = recs[a["image_id"]]
        except KeyError as e:
            raise DataError(f"{ann_file}: annotation {a.get('id')} names unknown image {a.get('image_id')}") from e
        if a.get("category_id") not in cat_index:
            raise DataError(f"{ann_file}: annotation {a.get('id')} has unknown category id {a.get('category_id')}")
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{ann_file}: annotation {a.get('id')} has no valid bbox") from e
        if x < 0 or y < 0 or w < 0 or h < 0 or x + w > rec.width + 1e-3 or y + h > rec.height + 1e-3:
            raise DataError(f"{ann_file}: annotation {a.get('id')} box ({x:g}, {y:g}, {w:g}, {h:g}) is outside "
                            f"the {rec.width}x{rec.height} image {rec.image.name}")
        rec.boxes.append((x, y, x + w, y + h))
        rec.labels.append(cat_index[a["category_id"]])
        rec.difficult.append(False)
    for rec in recs.values():
        if not rec.image.exists():
            raise DataError(f"{rec.image}: image file not found (named by {ann_file})")
    if not recs:
        raise DataError(f"{ann_file}: no images")
    return list(recs.values()), names
