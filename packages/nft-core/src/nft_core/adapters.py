"""Generic task adapters. :class:`ClassificationAdapter` serves any model mapping a tensor batch to class
logits (images, clips, point clouds...). Task packages subclass it or write their own adapter."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import default_collate

from .contracts import ConsistencyTarget, EvalData, MixedTarget
from .data import iterate_batches
from .metrics import accuracy, attack_success_rate, label_correction_rate

__all__ = ["ClassificationAdapter", "move_to", "model_device"]


def move_to(obj: Any, device) -> Any:
    """Move tensors inside nested tuples/lists/dicts/dataclass-free containers to ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, MixedTarget):
        return MixedTarget(move_to(obj.a, device), move_to(obj.b, device), move_to(obj.lam, device))
    if isinstance(obj, ConsistencyTarget):
        return ConsistencyTarget(move_to(obj.y, device), obj.weight)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device) for v in obj)
    return obj


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class ClassificationAdapter:
    """Cross-entropy classification on ``(x, y)`` batches.

    * training items: ``(x, y)``; ``y`` class ids, soft targets or a :class:`MixedTarget`; or ``x`` of
      shape ``(B, V, ...)`` with a :class:`ConsistencyTarget` (cross-entropy on view 0 plus the weighted
      Jensen-Shannon divergence of the V views, as AugMix's loss).
    * ``evaluate(model, EvalData(clean, poisoned))``: ``clean`` items ``(x, y)``; ``poisoned`` items
      ``(x_triggered, y_true, y_target)``. Returns ``acc`` and, with poisoned data, ``asr`` and ``lcr``.
    """

    def __init__(self, num_classes: int | None = None, eval_batch_size: int = 512):
        self.num_classes = num_classes
        self.eval_batch_size = eval_batch_size

    # -- contract -------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x, y = batch[0], batch[1]
        if isinstance(y, ConsistencyTarget):
            return self._consistency_loss(model, x, y)
        logits = model(x)

        def ce(t: Tensor) -> Tensor:
            return F.cross_entropy(logits.float(), t, reduction="none")

        if isinstance(y, MixedTarget):
            return y.combine(ce)
        return ce(y).mean()

    @staticmethod
    def _consistency_loss(model: nn.Module, x: Tensor, t: ConsistencyTarget) -> Tensor:
        if x.ndim < 3 or x.shape[1] < 2:
            raise ValueError(f"a ConsistencyTarget needs inputs (B, V>=2, ...), got shape {tuple(x.shape)}")
        b, v = x.shape[:2]
        logits = model(x.flatten(0, 1)).float().view(b, v, -1)
        ce = F.cross_entropy(logits[:, 0], t.y)
        p = logits.softmax(-1)
        log_m = p.mean(1).clamp(1e-7, 1).log()  # the mixture's log-probabilities
        # JSD = mean over views of KL(p_view || mixture), KL averaged over the batch (Hendrycks et al.)
        jsd = sum(F.kl_div(log_m, p[:, i], reduction="batchmean") for i in range(v)) / v
        return ce + t.weight * jsd

    def example_input(self, batch: Any) -> Any:
        x = batch[0]
        return x.flatten(0, 1) if isinstance(batch[1], ConsistencyTarget) else x

    def collate(self, samples):
        return default_collate(list(samples))

    def to_device(self, batch: Any, device) -> Any:
        return move_to(batch, device)

    def samples_per_class(self, data: Any) -> float:
        """N_c of the NFT regularizer: mean validation samples per class present."""
        labels = self.labels(data)
        return float(labels.numel()) / max(1, int(torch.unique(labels).numel()))

    # -- helpers --------------------------------------------------------------
    def labels(self, data: Any) -> Tensor:
        if hasattr(data, "tensors"):
            return data.tensors[1].cpu()
        return torch.as_tensor([int(data[i][1]) for i in range(len(data))])

    @torch.no_grad()
    def predict(self, model: nn.Module, data: Any) -> tuple[Tensor, list[Tensor]]:
        """Predicted class ids and the remaining fields of every item, in dataset order."""
        device = model_device(model)
        was = model.training
        model.eval()
        preds, rest = [], []
        try:
            for batch in iterate_batches(data, self.eval_batch_size, self.collate, self.to_device, device):
                preds.append(model(batch[0]).argmax(-1).cpu())
                rest.append([t.cpu() for t in batch[1:]])
        finally:
            model.train(was)
        return torch.cat(preds), [torch.cat(c) for c in zip(*rest)]

    def evaluate(self, model: nn.Module, data: Any) -> dict[str, float]:
        if not isinstance(data, EvalData):
            data = EvalData(clean=data)
        pred, (y,) = self.predict(model, data.clean)
        out = {"acc": accuracy(pred, y)}
        if data.poisoned is not None and len(data.poisoned):
            pred, (y_true, y_target) = self.predict(model, data.poisoned)
            out["asr"] = attack_success_rate(pred, y_true, y_target)
            out["lcr"] = label_correction_rate(pred, y_true, y_target)
        return out
