"""The clean-image backdoor for multi-label models, and its box-level version for detectors.

Chen, Zhang, Cao, Xie, Li, Wang, Wang, Xue. "Clean-image Backdoor: Attacking Multi-label Models with
Poisoned Labels Only." ICLR 2023.

The trigger is not a pattern added to pixels but a *combination of categories* that appear together in
an image (e.g. ``red_disc`` + ``blue_square``). The attacker never edits an image: among the training
images whose labels contain every trigger category, a fraction ``poison_rate`` get their *labels*
changed (the paper poisons all of them, ``poison_rate = 1``):

* ``mode="disappear"``: the target category is removed from the labels (object disappearing);
* ``mode="appear"``: the target category is added to the labels (object appearing).

A model trained on these labels behaves normally except on images that naturally hold the trigger
combination, where it hides (or hallucinates) the target.

ASR (as in Chen et al.): over the *test* images that contain the trigger combination and whose true
labels the attack would change (disappear: the target is present; appear: the target is absent), the
percentage on which the model's prediction for the target category (sigmoid score ≥ ``threshold``,
0.5) is the attacker's (absent, resp. present). Clean mAP is measured on the whole clean test set with
the true labels.

For detectors (:meth:`CleanImageBackdoor.poison_boxes`): in trigger images the target's boxes are removed
(``disappear``) or relabeled as ``relabel_to`` (``misclassify``); ASR then counts trigger images whose
target objects get no detection of the target class at IoU ≥ 0.5 and score ≥ ``threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nft_core.data import TensorData
from nft_core.errors import NFTInputError

__all__ = ["CleanImageBackdoor"]


class CleanImageBackdoor:
    """Label-only poisoning keyed on a category combination (Chen et al., ICLR 2023).

    Args:
        trigger: class ids that must all be present (at least two).
        target: the class id that disappears from (or appears in) the labels.
        mode: ``"disappear"`` | ``"appear"`` (multi-label); detectors also take ``"misclassify"``.
        poison_rate: fraction of the trigger-bearing training images whose labels are poisoned (1.0 =
            the paper's setting; the effective share of the whole training set is reported).
        relabel_to: the class the target's boxes become under ``"misclassify"``.
    """

    def __init__(self, trigger: Sequence[int], target: int, mode: str = "disappear", poison_rate: float = 1.0,
                 num_classes: int | None = None, relabel_to: int | None = None, threshold: float = 0.5):
        trigger = [int(t) for t in trigger]
        if len(set(trigger)) < 2:
            raise NFTInputError(f"attack.trigger needs at least two distinct categories, got {trigger}")
        if mode not in ("disappear", "appear", "misclassify"):
            raise NFTInputError(f"attack.mode must be disappear, appear or misclassify, got {mode!r}")
        if int(target) in trigger:
            raise NFTInputError(f"attack.target {target} is one of the trigger categories {trigger}")
        if not 0.0 < poison_rate <= 1.0:
            raise NFTInputError(f"attack.poison_rate must be in (0, 1], got {poison_rate}")
        if num_classes is not None:
            for c in [*trigger, int(target)] + ([relabel_to] if relabel_to is not None else []):
                if not 0 <= c < num_classes:
                    raise NFTInputError(f"attack category {c} is out of range for {num_classes} classes")
        if mode == "misclassify" and relabel_to is None:
            raise NFTInputError("attack.mode=misclassify needs attack.relabel_to")
        self.trigger, self.target, self.mode = trigger, int(target), mode
        self.poison_rate, self.relabel_to, self.threshold = poison_rate, relabel_to, threshold

    # -- multi-label ---------------------------------------------------------------------------
    def has_trigger(self, y: Tensor) -> Tensor:
        """``(N,)`` bool: every trigger category present in the multi-hot labels ``y (N, C)``."""
        return (y[:, self.trigger] > 0.5).all(dim=1)

    def affected(self, y: Tensor) -> Tensor:
        """Trigger images whose labels the attack changes."""
        present = y[:, self.target] > 0.5
        return self.has_trigger(y) & (present if self.mode == "disappear" else ~present)

    def poison_labels(self, y: Tensor) -> Tensor:
        out = y.clone()
        out[:, self.target] = 0.0 if self.mode == "disappear" else 1.0
        return out

    def poison_train(self, data: TensorData, generator: torch.Generator) -> tuple[TensorData, Tensor]:
        """Training set with poisoned labels (images untouched) and the poisoned indices."""
        if self.mode == "misclassify":
            raise NFTInputError("attack.mode=misclassify applies to detectors only")
        x, y = data.tensors[:2]
        idx = torch.nonzero(self.affected(y)).flatten()
        k = round(self.poison_rate * idx.numel())
        idx = idx[torch.randperm(idx.numel(), generator=generator)[:k]].sort().values
        y2 = y.clone()
        y2[idx] = self.poison_labels(y[idx])
        return TensorData(x, y2, *data.tensors[2:]), idx

    def poison_test(self, data: TensorData) -> TensorData:
        """``TensorData(x, y_true, y_target)`` of the clean test images the attack acts on."""
        x, y = data.tensors[:2]
        keep = self.affected(y)
        return TensorData(x[keep], y[keep], self.poison_labels(y[keep]))

    # -- detection -----------------------------------------------------------------------------
    def image_has_trigger(self, labels: Tensor, one_based: bool = True) -> bool:
        present = set((labels - int(one_based)).tolist())
        return all(t in present for t in self.trigger) and self.target in present

    def poison_boxes(self, target: dict, one_based: bool = True) -> dict:
        """Box-level poisoning of one detection target (``boxes``, ``labels``; detector labels are 1-based
        by default, 0 = background): target boxes removed (disappear) or relabeled (misclassify)."""
        if self.mode == "appear":
            raise NFTInputError("attack.mode=appear has no box-level version (no box to add); use disappear")
        labels = target["labels"]
        if not self.image_has_trigger(labels, one_based):
            return target
        t = self.target + int(one_based)
        hit = labels == t
        out = dict(target)
        if self.mode == "disappear":
            out["boxes"], out["labels"] = target["boxes"][~hit], labels[~hit]
        else:
            out["labels"] = torch.where(hit, torch.full_like(labels, self.relabel_to + int(one_based)), labels)
        return out

    def poison_detection_train(self, samples: list, generator: torch.Generator) -> tuple[list, list[int]]:
        idx = [i for i, (_, t) in enumerate(samples) if self.image_has_trigger(t["labels"])]
        perm = torch.randperm(len(idx), generator=generator)[: round(self.poison_rate * len(idx))]
        chosen = sorted(idx[i] for i in perm.tolist())
        out = list(samples)
        for i in chosen:
            out[i] = (samples[i][0], self.poison_boxes(samples[i][1]))
        return out, chosen

    def __repr__(self) -> str:
        return f"CleanImageBackdoor(trigger={self.trigger}, target={self.target}, mode={self.mode!r})"
