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

For detectors the poisoning is box-level (our extension of the attack to detection targets; images are
never edited), on the training images holding the trigger combination (:meth:`CleanImageBackdoor.poison_boxes`):

* ``disappear`` (target present): every box of the target category is removed;
* ``appear`` (target absent): one box of the target category is added — the smallest box enclosing the
  largest box of each trigger category (the target "appears" over the trigger combination);
* ``misclassify`` (library only): the target's boxes are relabeled as ``relabel_to``.

Box-level ASR (:class:`~nft_detection.adapters.DetectionAdapter`): over the test images the attack acts
on, the percentage of changed objects on which the detector does the attacker's bidding — a removed (or
relabeled) target object gets no detection of its true class at IoU ≥ 0.5 with score ≥ ``threshold``
(0.5); an added box gets a detection of the target class at IoU ≥ 0.5 with score ≥ ``threshold``.
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

    # -- detection ---------------------------------------------------------------------------
    def image_has_trigger(self, labels: Tensor, one_based: bool = True) -> bool:
        """Every trigger category has at least one box (``labels``: the image's box labels)."""
        present = set((labels - int(one_based)).tolist())
        return all(t in present for t in self.trigger)

    def affects_boxes(self, labels: Tensor, one_based: bool = True) -> bool:
        """The image holds the trigger combination and the attack changes its boxes: the target is present
        (``disappear``, ``misclassify``) or absent (``appear``)."""
        if not self.image_has_trigger(labels, one_based):
            return False
        present = bool((labels == self.target + int(one_based)).any())
        return present if self.mode in ("disappear", "misclassify") else not present

    def appear_box(self, target: dict, one_based: bool = True) -> Tensor:
        """``(4,)`` the box the ``appear`` attack adds: the smallest box enclosing the largest box of each
        trigger category (the target "appears" over the trigger combination)."""
        boxes, labels = target["boxes"], target["labels"]
        picked = []
        for t in self.trigger:
            b = boxes[labels == t + int(one_based)]
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            picked.append(b[int(area.argmax())])
        p = torch.stack(picked)
        return torch.cat([p[:, :2].min(0).values, p[:, 2:].max(0).values])

    def poison_boxes(self, target: dict, one_based: bool = True) -> dict:
        """Box-level poisoning of one detection target (``boxes`` (K,4) xyxy, ``labels`` (K,); detector labels
        are 1-based by default, 0 = background). Only images for which :meth:`affects_boxes` holds change;
        the image itself never does:

        * ``disappear``: every box of the target category is removed;
        * ``appear``: one box of the target category is added, :meth:`appear_box` (the box enclosing the
          trigger objects);
        * ``misclassify``: the target's boxes are relabeled as ``relabel_to``.

        A per-box ``weights`` entry, if any, follows the boxes (an added box gets weight 1)."""
        labels = target["labels"]
        if not self.affects_boxes(labels, one_based):
            return target
        t = self.target + int(one_based)
        out = dict(target)
        if self.mode == "appear":
            box = self.appear_box(target, one_based).to(target["boxes"].dtype)
            out["boxes"] = torch.cat([target["boxes"], box[None]])
            out["labels"] = torch.cat([labels, labels.new_tensor([t])])
            if "weights" in target:
                out["weights"] = torch.cat([target["weights"], target["weights"].new_ones(1)])
            return out
        hit = labels == t
        if self.mode == "disappear":
            out["boxes"], out["labels"] = target["boxes"][~hit], labels[~hit]
            if "weights" in target:
                out["weights"] = target["weights"][~hit]
        else:
            out["labels"] = torch.where(hit, torch.full_like(labels, self.relabel_to + int(one_based)), labels)
        return out

    def poison_detection_train(self, samples: list, generator: torch.Generator) -> tuple[list, list[int]]:
        """``(samples with poisoned targets, poisoned indices)``: ``poison_rate`` of the affected images
        (:meth:`affects_boxes`), drawn with ``generator``; images untouched."""
        idx = [i for i, (_, t) in enumerate(samples) if self.affects_boxes(t["labels"])]
        perm = torch.randperm(len(idx), generator=generator)[: round(self.poison_rate * len(idx))]
        chosen = sorted(idx[i] for i in perm.tolist())
        out = list(samples)
        for i in chosen:
            out[i] = (samples[i][0], self.poison_boxes(samples[i][1]))
        return out, chosen

    def poison_detection_test(self, samples: list) -> list:
        """``[(image, true target, attacked target)]`` for the test images the attack acts on (the input of
        :meth:`DetectionAdapter.evaluate`'s box-level ASR)."""
        return [(x, t, self.poison_boxes(t)) for x, t in samples if self.affects_boxes(t["labels"])]

    def __repr__(self) -> str:
        return f"CleanImageBackdoor(trigger={self.trigger}, target={self.target}, mode={self.mode!r})"
