"""Task adapters: :class:`MultiLabelAdapter` (BCE, mAP + ASR) and :class:`DetectionAdapter` (torchvision
detectors: loss dict in train mode, COCO mAP + box-level ASR)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import default_collate

from nft_core.adapters import model_device, move_to
from nft_core.contracts import EvalData, MixedTarget
from nft_core.data import iterate_batches

from .metrics import coco_map, mean_average_precision, multilabel_asr

__all__ = ["MultiLabelAdapter", "DetectionAdapter", "asymmetric_loss", "multilabel_loss", "MULTILABEL_LOSSES"]

#: ``train.loss`` values of the multi-label family.
MULTILABEL_LOSSES = ("bce", "asl")


def asymmetric_loss(logits: Tensor, targets: Tensor, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
                    clip: float = 0.05, eps: float = 1e-8) -> Tensor:
    """Asymmetric loss (Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021), per
    sample ``(B,)``, averaged over the categories (the paper sums them; the mean keeps its scale that of BCE):

        L = −[ y·(1−p)^γ+ · log p  +  (1−y)·p_m^γ− · log(1−p_m) ],   p = σ(logit),  p_m = max(p − m, 0)

    ``gamma_pos`` γ+ and ``gamma_neg`` γ− focus on hard positives/negatives (the paper's defaults 0 and 4);
    ``clip`` m shifts the negatives' probability so easy negatives (p ≤ m) give no loss. Soft targets
    (MixUp) weight the two terms. With γ+ = γ− = m = 0 it is BCE."""
    if min(gamma_pos, gamma_neg, clip) < 0 or clip >= 1:
        raise ValueError(f"asymmetric_loss needs gamma_pos, gamma_neg >= 0 and 0 <= clip < 1, got {gamma_pos}, "
                         f"{gamma_neg}, {clip}")
    logits, y = logits.float(), targets.float()
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    if clip > 0:
        p_neg = (p - clip).clamp(min=0)
        log_1m = torch.log((1 - p_neg).clamp(min=eps))
    else:
        p_neg, log_1m = p, F.logsigmoid(-logits)
    pos = (1 - p).pow(gamma_pos) * log_p if gamma_pos else log_p
    neg = p_neg.pow(gamma_neg) * log_1m if gamma_neg else log_1m
    return -(y * pos + (1 - y) * neg).mean(-1)


def multilabel_loss(name: str = "bce", **options):
    """``(logits, targets) -> per-sample loss (B,)``: ``bce`` (binary cross-entropy, mean over categories)
    or ``asl`` (:func:`asymmetric_loss`; ``options`` gamma_pos, gamma_neg, clip)."""
    if name == "bce":
        if options:
            raise ValueError(f"the bce loss takes no options, got {sorted(options)}")
        return lambda logits, t: F.binary_cross_entropy_with_logits(logits.float(), t.float(), reduction="none").mean(-1)
    if name == "asl":
        import inspect

        known = set(inspect.signature(asymmetric_loss).parameters) - {"logits", "targets"}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown asl option(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
        asymmetric_loss(torch.zeros(1, 1), torch.zeros(1, 1), **options)  # validate the values now
        return lambda logits, t: asymmetric_loss(logits, t, **options)
    raise ValueError(f"unknown multi-label loss {name!r}; choose from {', '.join(MULTILABEL_LOSSES)}")


class MultiLabelAdapter:
    """Multi-label classification on ``(x, y)`` batches, ``y`` multi-hot ``(B, C)`` (soft vectors and
    :class:`~nft_core.MixedTarget` accepted by :meth:`loss`). ``loss``: ``bce`` (default) or ``asl``
    (:func:`asymmetric_loss`, ``loss_options`` gamma_pos / gamma_neg / clip) — NFT's loss on the masks;
    ``criterion(logits, targets)`` is its per-sample form.

    ``evaluate(model, EvalData(clean, poisoned))``: ``clean`` items ``(x, y)``; ``poisoned`` items
    ``(x, y_true, y_target)`` (see :meth:`CleanImageBackdoor.poison_test`). Returns ``map`` (VOC-style,
    %) and, with poisoned data, ``asr`` (%) — the clean metric is ``map``.
    """

    clean_metric = "map"

    def __init__(self, num_classes: int | None = None, threshold: float = 0.5, eval_batch_size: int = 256,
                 eleven_point: bool = False, loss: str = "bce", loss_options: dict | None = None):
        self.num_classes, self.threshold = num_classes, threshold
        self.eval_batch_size, self.eleven_point = eval_batch_size, eleven_point
        self.loss_name, self.criterion = loss, multilabel_loss(loss, **(loss_options or {}))

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x, y = batch[0], batch[1]
        logits = model(x).float()

        def per_sample(t: Tensor) -> Tensor:
            return self.criterion(logits, t)

        if isinstance(y, MixedTarget):
            return y.combine(per_sample)
        return per_sample(y).mean()

    def example_input(self, batch: Any) -> Any:
        return batch[0]

    model_input = example_input

    def collate(self, samples):
        return default_collate(list(samples))

    def to_device(self, batch: Any, device) -> Any:
        return move_to(batch, device)

    def samples_per_class(self, data: Any) -> float:
        """N_c: positive labels per category present (mean over categories)."""
        y = data.tensors[1] if hasattr(data, "tensors") else torch.stack([data[i][1] for i in range(len(data))])
        pos = (y > 0.5).sum(0)
        return float(pos.sum()) / max(1, int((pos > 0).sum()))

    @torch.no_grad()
    def predict(self, model: nn.Module, data: Any) -> tuple[Tensor, list[Tensor]]:
        """Sigmoid scores ``(N, C)`` and the other fields of every item, in order."""
        device = model_device(model)
        was = model.training
        model.eval()
        probs, rest = [], []
        try:
            for batch in iterate_batches(data, self.eval_batch_size, self.collate, self.to_device, device):
                probs.append(torch.sigmoid(model(batch[0]).float()).cpu())
                rest.append([t.cpu() for t in batch[1:]])
        finally:
            model.train(was)
        return torch.cat(probs), [torch.cat(c) for c in zip(*rest)]

    def evaluate(self, model: nn.Module, data: Any) -> dict[str, float]:
        if not isinstance(data, EvalData):
            data = EvalData(clean=data)
        probs, (y,) = self.predict(model, data.clean)
        out = {"map": mean_average_precision(probs, y, self.eleven_point)[0]}
        if data.poisoned is not None and len(data.poisoned):
            p, (y_true, y_target) = self.predict(model, data.poisoned)
            out["asr"] = multilabel_asr(p, y_true, y_target, self.threshold)
        return out


class DetectionAdapter:
    """torchvision detectors on ``(images (B,3,H,W), targets)`` batches, ``targets`` a list of
    ``{"boxes" (K,4) xyxy, "labels" (K,) 1-based[, "weights" (K,)]}``.

    ``loss``: the detector in train mode returns a loss dict; its sum is the loss. Per-box MixUp weights
    (:class:`~nft_detection.augment.DetectionMixUp`) cannot reach torchvision's box matching, so boxes
    with weight below ``min_box_weight`` are dropped and the rest count fully (the weights are otherwise
    ignored — documented limitation). NFT's ``model_mode="eval"`` is overridden for the forward pass
    because torchvision detectors only return losses in train mode; their FrozenBatchNorm/BN layers are
    kept in eval mode so mask placement stays exact.

    ``evaluate(model, EvalData(clean, poisoned))``: clean items ``(image, target)`` -> COCO ``map``
    (AP@[.5:.95], %) and ``map50``; ``poisoned`` items ``(image, true_target, attacked_target)``
    (:meth:`CleanImageBackdoor.poison_detection_test`) -> the box-level ``asr``: the percentage of the
    objects the attack changed on which the detector does the attacker's bidding — a box the attack
    removed (or relabeled) gets *no* detection of its true class at IoU ≥ 0.5 with score ≥ ``threshold``;
    a box the attack added gets a detection of its (target) class at IoU ≥ 0.5 with score ≥ ``threshold``.
    ASR is nan when no box changed.
    """

    clean_metric = "map"

    def __init__(self, num_classes: int, threshold: float = 0.5, eval_batch_size: int = 8,
                 min_box_weight: float = 0.25):
        self.num_classes, self.threshold = num_classes, threshold
        self.eval_batch_size, self.min_box_weight = eval_batch_size, min_box_weight

    def collate(self, samples):
        samples = list(samples)
        return (torch.stack([s[0] for s in samples]), *[[s[k] for s in samples] for k in range(1, len(samples[0]))])

    def to_device(self, batch: Any, device) -> Any:
        return move_to(batch, device)

    def example_input(self, batch: Any) -> Any:
        return (list(batch[0]),)

    model_input = example_input

    def samples_per_class(self, data: Any) -> float:
        counts = torch.zeros(self.num_classes + 1)
        for i in range(len(data)):
            counts += torch.bincount(data[i][1]["labels"], minlength=self.num_classes + 1)[: self.num_classes + 1]
        counts = counts[1:]
        return float(counts.sum()) / max(1, int((counts > 0).sum()))

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        images, targets = batch[0], batch[1]
        clean = []
        for t in targets:
            keep = t["weights"] >= self.min_box_weight if "weights" in t else slice(None)
            clean.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep]})
        was = model.training
        bn_modes = {m: m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)}
        model.train()
        for m in bn_modes:  # keep BN statistics frozen (masks at BN γ stay exact)
            m.eval()
        try:
            losses = model(list(images), clean)
        finally:
            model.train(was)
            for m, mode in bn_modes.items():
                m.train(mode)
        return sum(losses.values())

    @torch.no_grad()
    def predict(self, model: nn.Module, data: Any) -> tuple[list[dict], list[list]]:
        device = model_device(model)
        was = model.training
        model.eval()
        preds, rest = [], []
        try:
            for batch in iterate_batches(data, self.eval_batch_size, self.collate, self.to_device, device):
                preds += [{k: v.cpu() for k, v in p.items()} for p in model(list(batch[0]))]
                rest.append([[{k: v.cpu() for k, v in t.items()} for t in field] for field in batch[1:]])
        finally:
            model.train(was)
        fields = [sum((r[k] for r in rest), []) for k in range(len(rest[0]))] if rest else []
        return preds, fields

    def evaluate(self, model: nn.Module, data: Any) -> dict[str, float]:
        if not isinstance(data, EvalData):
            data = EvalData(clean=data)
        preds, (targets, *_) = self.predict(model, data.clean)
        out = coco_map(preds, targets, self.num_classes)
        if data.poisoned is not None and len(data.poisoned):
            preds, (true, attacked) = self.predict(model, data.poisoned)
            out["asr"] = _box_asr(preds, true, attacked, self.threshold)
        return out


def _box_asr(preds, true, attacked, threshold) -> float:
    """Box-level ASR in % (see :class:`DetectionAdapter`); nan when the attack changed no box."""
    from torchvision.ops import box_iou

    def detected(p: dict, box: Tensor, label: Tensor) -> bool:
        ok = (p["labels"] == label) & (p["scores"] >= threshold)
        return bool(ok.any()) and bool((box_iou(box[None].float(), p["boxes"][ok].float()) >= 0.5).any())

    hits = total = 0
    for p, t, a in zip(preds, true, attacked):
        kept = torch.zeros(len(t["labels"]), dtype=torch.bool)  # true boxes the attack left untouched
        for b, lab in zip(a["boxes"], a["labels"]):
            kept |= (t["boxes"] == b).all(1) & (t["labels"] == lab)
        for b, lab in zip(t["boxes"][~kept], t["labels"][~kept]):  # removed or relabeled: must vanish
            total += 1
            hits += not detected(p, b, lab)
        for b, lab in zip(a["boxes"], a["labels"]):  # added (a box the image did not hold): must appear
            if not (t["boxes"] == b).all(1).any():
                total += 1
                hits += detected(p, b, lab)
    return float(hits / total * 100) if total else float("nan")
