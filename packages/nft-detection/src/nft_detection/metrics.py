"""Multi-label and detection metrics.

* :func:`average_precision`: VOC-style AP of one class — the area under the precision/recall curve with
  precision made monotone (VOC2010+), or the VOC2007 11-point interpolation.
* :func:`mean_average_precision`: the mean AP over classes with at least one positive, in percent (the
  ``map`` the multi-label literature reports).
* :func:`multilabel_asr`: the clean-image backdoor's ASR (see :mod:`nft_detection.attacks`).
* :func:`coco_map`: COCO-style box mAP@[.5:.95] (and AP50) via pycocotools.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from torch import Tensor

__all__ = ["average_precision", "mean_average_precision", "multilabel_asr", "coco_map"]


def average_precision(scores: Tensor, labels: Tensor, eleven_point: bool = False) -> float:
    """AP in [0, 1] of one class from scores ``(N,)`` and binary labels ``(N,)``; nan without positives."""
    scores, labels = torch.as_tensor(scores).float().flatten(), torch.as_tensor(labels).flatten() > 0.5
    npos = int(labels.sum())
    if npos == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    tp = labels[order].double().cumsum(0)
    rank = torch.arange(1, len(order) + 1, dtype=torch.float64)
    prec, rec = tp / rank, tp / npos
    if eleven_point:
        return float(sum((prec[rec >= t].max() if (rec >= t).any() else torch.tensor(0.0)) for t in
                         torch.linspace(0, 1, 11)) / 11)
    # monotone precision envelope, then sum precision × recall increments
    env = torch.flip(torch.cummax(torch.flip(prec, [0]), 0).values, [0])
    drec = torch.diff(rec, prepend=torch.zeros(1, dtype=torch.float64))
    return float((env * drec).sum())


def mean_average_precision(scores: Tensor, labels: Tensor, eleven_point: bool = False) -> tuple[float, list[float]]:
    """``(mAP in %, per-class AP in %)`` from ``(N, C)`` scores and multi-hot labels."""
    aps = [average_precision(scores[:, c], labels[:, c], eleven_point) * 100 for c in range(scores.shape[1])]
    valid = [a for a in aps if not np.isnan(a)]
    return (float(np.mean(valid)) if valid else float("nan")), aps


def multilabel_asr(probs: Tensor, y_true: Tensor, y_target: Tensor, threshold: float = 0.5) -> float:
    """Percentage of images on which every label the attack changed is predicted the attacker's way."""
    changed = (y_true > 0.5) != (y_target > 0.5)
    keep = changed.any(1)
    if not keep.any():
        return float("nan")
    pred = probs >= threshold
    ok = (pred == (y_target > 0.5)) | ~changed
    return float(ok[keep].all(1).float().mean() * 100)


def coco_map(predictions: list[dict], targets: list[dict], num_classes: int) -> dict[str, float]:
    """COCO box mAP (``map``: AP@[.5:.95] in %, ``map50``) of per-image ``{"boxes", "scores", "labels"}``
    against ``{"boxes", "labels"}`` (xyxy pixels, same label space), via pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    aid = 1
    for i, (p, t) in enumerate(zip(predictions, targets)):
        images.append({"id": i + 1, "width": 1, "height": 1})
        for b, lab in zip(t["boxes"].tolist(), t["labels"].tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": aid, "image_id": i + 1, "category_id": int(lab), "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": 0})
            aid += 1
        for b, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            dets.append({"image_id": i + 1, "category_id": int(lab), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                         "score": float(s)})
    if not anns:
        return {"map": float("nan"), "map50": float("nan")}
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c} for c in range(num_classes + 1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dets:
            return {"map": 0.0, "map50": 0.0}
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": float(ev.stats[0] * 100), "map50": float(ev.stats[1] * 100)}
