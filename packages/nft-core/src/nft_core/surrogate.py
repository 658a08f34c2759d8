"""The surrogate trigger: an NFT augmentation for classifiers of images or clips (this project's option,
not in the NFT paper; docs/method.md). Like PGD it needs the model being tuned: NFT calls
``bind(model, adapter)`` with its masked working copy before the first step."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import MixUp, frozen_model
from .contracts import MixedTarget

__all__ = ["SurrogateTrigger", "merge_surrogate_options"]

#: The options that mean something only for some ``kind`` values (the constructor rejects the others):
#: a task's default may set them, and a user who picks another kind should not have to unset them by hand.
_KIND_ONLY = {"fallback_shrink": ("both",), "fallback_clean_fraction": ("both",), "fallback_guard": ("both",),
              "fallback_unresolved": ("both",), "disjoint": ("patch", "both"), "disjoint_count": ("patch", "both"),
              "disjoint_ratio": ("patch", "both"), "refresh_every": ("patch", "both"), "rounds": ("patch", "both"),
              "search": ("patch", "both"), "shift": ("patch", "both")}


def merge_surrogate_options(defaults: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A task's default surrogate options with the user's ``options`` over them, minus the defaults that only
    apply to a ``kind`` other than the one in effect (e.g. vision's gate fallback, ``kind='both'`` only, when the
    user asks for ``kind='patch'``). What the user sets is always kept, so a real conflict still gets the
    constructor's one-line error."""
    merged = {**defaults, **options}
    kind = merged.get("kind", "patch")
    for key, kinds in _KIND_ONLY.items():
        if key in defaults and key not in options and kind not in kinds:
            del merged[key]
    return merged


class SurrogateTrigger:
    """A universal surrogate trigger, searched once on the validation data, appended to every NFT batch with
    the images' **true** labels. Not in the NFT paper; this project's option (``augmentation.name=surrogate``).

    Why: the paper's Theorem 1 motivates MixUp as a stand-in for the "ideal purification loss"
    E ℓ(f(x + trigger), y). On small data that stand-in gives a dormant backdoor neuron no gradient and the
    masks leave the backdoor in place, although the masks *can* remove it: measured on digits/SmallCNN/
    BadNets, NFT with the real trigger stamped on the 143 validation images (an oracle, true labels) gives
    ASR 0.3 / ACC 98.1, clean MixUp alone ASR 100. A backdoored model's easiest *universal* way to flip
    predictions is its trigger shortcut — the search below, untargeted and on clean images only, sends
    every validation image to the attacker's class on BadNets, Blend and Trojan digits models — so that
    search result is a surrogate for the unknown trigger (the idea behind Neural Cleanse's trigger
    reverse-engineering, Wang et al., IEEE S&P 2019, and I-BAU's universal perturbation, Zeng et al.,
    ICLR 2022; here untargeted, searched once, and learned by the masks rather than the weights).

    ``kind="patch"`` (default): ``x' = (1 − M)⊙x + M⊙P`` with a soft mask ``M = σ(a)`` of shape (1, 1, H, W)
    and a pattern ``P = σ(b)`` of shape (1, C, H, W), found by ``steps`` Adam steps (lr ``search_lr``) on
    ``−mean(min(CE(f(x'), y), ce_cap)) + lam·ΣM`` (the per-sample cap keeps a few flipped images from
    dominating; ``lam`` trades the mask's area against how many images it flips). With ``fooling_target``
    (default 0.9) ``lam`` is only the starting weight: every 10 steps it is multiplied by 1.5 while the
    trigger flips at least that share of the batch (untargeted: of the samples not of the class most
    predictions go to, which no trigger toward that class can flip) and divided by 1.5 otherwise, and the smallest mask that
    reached the target is kept (Neural Cleanse's schedule; it makes the search independent of image size).
    ``kind="l2"``: ``x' = clip(x + δ, 0, 1)`` with one ``δ`` of L2 norm ≤ ``eps``, ``steps`` normalized-gradient
    ascent steps of size ``eps / 10`` on the mean CE (a universal perturbation).
    ``kind="both"``: both searches on the same batch (the patch's ``steps``, the L2's ``l2_steps``), then a
    gate keeps the triggers that look like one backdoor: the L2 trigger if it flips at least ``l2_gate`` of
    the batch (its norm is fixed, so a backdoor shortcut flips nearly all; on digits it flipped 95.5–100%
    where it found the attacker's class and 52–86% where it did not), and the patch unless the kept L2
    trigger sends the batch to a different class (the patch search always reaches its target, so its
    share cannot tell). Every call appends one triggered copy of the first ``k`` samples per kept trigger
    (patch, then L2). The two kinds miss different backdoors (docs/results/ablations.md "The surrogate recipe's parts": on digits the
    patch search misses Blend, the L2 search Trojan). ``stats`` holds the patch's statistics, the L2's
    under an ``l2_`` prefix and ``used`` (``"patch+l2"``, ``"patch"`` or ``"l2"``).

    ``rounds`` (default 1; untargeted patch search only) repeats the patch search: round r may not send the
    batch to the classes earlier rounds' patches sent it to (it minimises the capped ``−log`` of the probability
    left on the true label *and* those classes, and counts as flipped only samples that leave all of them). The
    smallest mask that reached the fooling target wins (if none did, the patch that flips the most), as in Neural
    Cleanse, where the backdoor's target needs the least area. Why: an untargeted search follows the gradient
    and can settle on a natural class with a large mask; on digits/Trojan (NFT seed 2) it found class 8 with a
    45.7-pixel mask, and round 2 the attacker's class 0 with 19.0. But the smallest mask is not always the
    backdoor's (on digits/WaNet round 2's class-5 patch was smaller than round 1's class-0 one), so with
    ``kind="both"`` the later rounds run only when the L2 search went to the first patch's class but was gated
    out (flipped less than ``l2_gate``): a fixed-norm perturbation that reaches a class without flipping
    nearly everything points at the model's natural adversarial direction, which the patch may have followed
    too (Trojan seed 2: both went to class 8, the L2 flipping 76%). When the L2 trigger is kept, or went
    elsewhere, the gate decides as with one round (with rounds forced there, one-shot WaNet's round 2 turned
    a dropped class-0 patch into a kept class-5 one and its ASR rose from 4.95 to 17.03). It costs one
    search per round run, not one per class like ``search="per_class"``; with ``rounds > 1`` ``stats`` adds
    ``class_rounds``, ``mask_l1_rounds`` (the rounds run) and the winning ``round`` (0-based).
    ``rounds_margin`` (default 1: the smallest mask wins): a later round replaces a first round that reached
    the fooling target only if its mask is smaller than ``rounds_margin`` × the first round's. On digits the
    one later round that found the backdoor had 0.42 × round 1's mask (Trojan, first models: 45.7 → 19.0
    pixels), the one that lost it 0.63 × (one-shot WaNet, retrained models: class 0 at 9.6 pixels → class 5 at
    6.0; ASR 21.05, and 0.00 with round 1 kept); docs/results/ablations.md "The round-2 margin".

    ``fallback_shrink`` (default 0: off; ``kind="both"`` only): when no trigger the searches can invert was
    found — the gate keeps the L2 trigger and the two searches point at different classes
    (``fallback_reason="disagree"``), or, with ``fallback_unresolved=True``, the later rounds ran (the L2
    search marked round 1's class as a natural direction) and none beat round 1 by ``rounds_margin``
    (``"unresolved"``) — the augmentation appends no triggered copy and asks NFT for
    NFT+'s pull of every mask toward its lower bound with that weight (``requested_shrink``, read by
    :class:`~nft_core.nft.NFT` at every step; ``stats["used"] == "none"``), plus unmixed clean copies of
    ``fallback_clean_fraction`` of the batch (``None``: ``clean_fraction``). Why: on the digits SIG model (a
    full-image sinusoid, L2 norm 7.8, clean-label) the patch search went to class 5 and the L2 search to
    class 3 on every seed, and NFT with those copies left ASR at 98–100%, while the attack's real trigger
    (an oracle) gives 0.93; a targeted universal L2 search cannot single out SIG's class either (at ε = 2
    class 0 is the hardest to reach, 8% against 100% for classes 3 and 5). The shrink pull alone (0.02)
    removes it on 2 of 3 seeds, losing the attacker's class on the third (ACC 92.8); with clean copies of
    half the batch a pull of 0.025–0.03 removes it on all three at ACC drops ≤ 2.3, but 0.035 starts a
    collapse (docs/results/ablations.md). With one image per class SIG's searches end "unresolved" (both
    rounds on natural classes, 23.4 and 23.5 pixels): NFT with round 1's patch left 87.3% ASR, the fallback 0.6.
    ``fallback_unresolved=True`` also holds where round 1's natural-class patch did remove the backdoor (BadNets
    at paper scale on the H200: class 7 at 18.6 pixels, round 2 class 4 at 257.6; ASR 1.7), and the fallback
    there is not measured. ``fallback_unresolved="ambiguous"`` fires only where round 1 did not win
    by the margin either: the closest later round that reached the fooling target had at most
    ``1 / rounds_margin`` × round 1's mask (``stats["rounds_ratio"]``; SIG 1.00, one-shot WaNet 0.63, the H200
    BadNets 13.9). ``target_clean`` (default 0): that many extra unmixed copies of the batch's samples of the
    class the kept trigger points at (``trigger_class``), with their true labels, after the triggered copies.
    ``fallback_guard`` (points, default None): with the fallback, also ask NFT for its safety net
    (``requested_guard``): if the folded masks lost more than that much validation accuracy, the last epoch's
    masks that did not are folded instead. Why: the searches disagree on clean models too; on a clean digits
    model (BadNets at 0% poison) the fallback fired on 1 of 3 NFT seeds and, unguarded, took ACC from 99.72
    to 78.83 (docs/results/ablations.md "SIG: the no-trigger-found fallback").

    ``search="untargeted"`` (default) runs one search as above. ``search="per_class"`` (patch only) is Neural
    Cleanse's own procedure: one *targeted* patch search per class ``c`` (minimise the CE of class ``c`` on
    the batch's other samples plus ``lam·ΣM``, with the same adaptive schedule on the share sent to ``c``),
    and the class whose smallest successful mask is smallest wins — the backdoor's target needs the least
    area. It costs one search per class; ``stats`` adds every class's ``mask_l1_per_class``.

    The search runs on the first batch NFT draws (against the bound model: NFT binds its masked copy with
    every mask at 1, i.e. the original model, in eval mode), then the trigger is frozen. Every later call
    returns ``cat(base(batch), (x'[:k], y[:k]))``: the base augmentation (MixUp(1) by default) on the batch
    plus surrogate-triggered copies of its first ``k = round(fraction·B)`` samples (batches are drawn at
    random, so these are a random subset), as one batch with a per-sample :class:`~nft_core.contracts.MixedTarget`
    (λ = 1 for the triggered half). After the search, ``stats`` holds the search's ``fooling`` rate (share
    of those samples whose prediction left its true label; ``fooling_all``: of the whole batch), ``dominant_class`` and its share, and the mask
    area ``mask_l1`` (patch) or ``l2`` (l2).

    ``clean_fraction`` (default 0): every call also appends unmixed copies of the batch's first
    ``round(clean_fraction·B)`` samples with their true labels (λ = 1), after the triggered copies. The idea:
    the surrogate's ACC cost falls on the attacker's class (every triggered copy says "this evidence for that
    class is wrong"), and MixUp's mixed targets may hold that class less firmly than plain clean samples. Measured on the
    retrained digits/Blend model (docs/results/ablations.md "Against the real trigger"): it moves the trade-off
    between ASR and clean accuracy (seed 1: 2.48 / 93.04 by default, 5.26 / 96.94 with 0.5), as a smaller
    ``fraction`` does, but less steeply (``fraction=0.5``: 6.81 / 95.82).

    ``disjoint`` (``"off"`` by default; ``"alone"``: only where the patch is the only trigger kept, i.e. with
    ``kind="patch"`` or when the gate dropped the L2 trigger; ``"always"``: wherever the patch is kept): after the
    search, a second patch search *targeted* at the patch's class, on the batch's samples of other classes,
    with the mask barred from the pixels where the first mask exceeds 0.1. If it reaches the fooling target
    with at most ``disjoint_ratio`` (2) × the first mask's area, its copies are appended too (``use`` gains
    ``"disjoint"``; ``apply(x, "disjoint")``). Why: the search keeps the *smallest* mask that flips the batch,
    and a real trigger often holds more than one such subset. On the retrained digits/Trojan model the patch
    took 17–23 of the trigger's 64 pixels and NFT left 3.4–6.8% ASR, while the real trigger removes it
    (docs/results/ablations.md "Against the real trigger"); the disjoint search found a second 14.9–15.8-pixel
    patch toward the same class, overlapping the first by under 0.1 pixel, and NFT with both ended at
    2.2–3.7% ASR. A class whose flip needs the first patch's pixels (a natural feature, or a trigger with no
    spare part) gets no second patch: barred from them, the search needs a larger mask than the ratio allows.
    ``stats`` adds ``disjoint_mask_l1``, ``disjoint_reached``, ``disjoint_kept`` and ``disjoint_overlap``.
    ``disjoint_count`` (default 1): after a kept disjoint patch, up to ``disjoint_count - 1`` more, each barred
    from every kept patch's pixels and kept by the same rule; the searches stop at the first that is not kept
    (``stats["disjoint_more"]``: one row per further search).

    ``refresh_every`` (default 0, never): every ``refresh_every`` calls after the first (one call per NFT step),
    search again against the model being tuned *as it is then*, toward the kept trigger's class: a targeted
    patch search (kept if it reaches the fooling target with at most ``refresh_ratio`` × the first mask's area)
    and, with a kept L2 trigger, the L2 search (kept if it flips ``l2_gate`` of the batch toward that class).
    Kept re-searches are appended to the triggers for the rest of the run (``stats["refresh"]``: one row per
    re-search). The idea, from trigger-inversion-and-unlearning loops (BTI-DBF(U), Xu et al., ICLR 2024):
    what the masks leave of the backdoor may answer to other pixels than the first search found. Measured on
    the video default and on digits/Blend it kept nothing: against the masked model the patch search needed
    3–17× the first mask (docs/results/video.md, docs/results/ablations.md), so it
    stays off by default.

    ``shift`` (default 0, off): every appended patch is moved, per sample, by a random offset of
    up to ``shift`` pixels on each axis (rolled, so a patch at an edge reappears at the other). A CNN answers
    to a trigger's pattern wherever it is, and on the video default the patch search can land off the
    attacker's pixels (model 1: none of the first patch's 7.4 px on the trigger, docs/results/video.md); moving the found patch around teaches the masks to distrust its pattern at
    the trigger's place too. Patch kinds only.

    ``distill`` (default 0, off): the clean rows of every batch (the base augmentation's mixed
    clips or images and the unmixed clean copies; never the triggered copies) learn toward
    ``(1 − distill) ×`` their own targets ``+ distill ×`` the original model's softmax on the same input
    (knowledge distillation, Hinton et al., 2015). The original model is the reference NFT hands over before
    the first step (``wants_reference``, ``set_reference``); on MixUp's mixed inputs its prediction tells how
    the original model weighs the two classes, which a λ-weighted pair of hard labels does not. The idea: on a
    validation set of a few clips per class, a hard label constrains the tuned masks and biases little, and
    the video default's misses are mostly clean-accuracy misses (the real-trigger oracle too loses 5 points).

    Shapes: ``x`` float (B, C, H, W) images or (B, T, C, H, W) clips in [0, 1] (for clips the patch — mask
    and pattern — is the same on every frame, like a static video trigger); ``y`` class ids (B,). Loss:
    cross-entropy on ``model(x)`` logits (classification).
    """

    def __init__(self, kind: str = "patch", lam: float = 0.003, eps: float = 2.0, steps: int | None = None,
                 search_lr: float = 0.1, ce_cap: float = 10.0, fraction: float = 1.0,
                 fooling_target: float | None = 0.9, search: str = "untargeted",
                 base: Any = None, l2_steps: int | None = None, l2_gate: float = 0.9, rounds: int = 1,
                 clean_fraction: float = 0.0, disjoint: str = "off", disjoint_ratio: float = 2.0,
                 rounds_margin: float = 1.0, fallback_shrink: float = 0.0, fallback_clean_fraction: float | None = None,
                 fallback_unresolved: bool | str = False, fallback_guard: float | None = None, target_clean: int = 0,
                 refresh_every: int = 0, refresh_ratio: float = 2.0, disjoint_count: int = 1, shift: int = 0,
                 distill: float = 0.0):
        if not 0 <= distill <= 1:
            raise ValueError(f"SurrogateTrigger distill must be in [0, 1] (the original model's share of the clean "
                             f"rows' targets), got {distill!r}")
        self.distill = float(distill)
        self.reference: nn.Module | None = None  # the original model (NFT passes it when ``wants_reference``)
        if int(shift) != shift or shift < 0 or (shift and kind == "l2"):
            raise ValueError(f"SurrogateTrigger shift must be an integer >= 0 (the most pixels a patch is moved "
                             f"by, per sample; patch kinds only), got shift={shift!r}, kind={kind!r}")
        self.shift = int(shift)
        if int(disjoint_count) != disjoint_count or disjoint_count < 1:
            raise ValueError(f"SurrogateTrigger disjoint_count must be an integer >= 1 (the most disjoint patches "
                             f"kept), got {disjoint_count!r}")
        self.disjoint_count = int(disjoint_count)
        self.disjoint_extra: list[tuple[Tensor, Tensor]] = []  # the disjoint patches after the first
        if int(refresh_every) != refresh_every or refresh_every < 0 or (refresh_every and kind == "l2") or refresh_ratio <= 0:
            raise ValueError(f"SurrogateTrigger refresh_every must be an integer >= 0 (NFT steps between two "
                             f"re-searches, 0 = never; patch kinds only) and refresh_ratio > 0, got "
                             f"refresh_every={refresh_every!r}, refresh_ratio={refresh_ratio}, kind={kind!r}")
        self.refresh_every, self.refresh_ratio = int(refresh_every), float(refresh_ratio)
        self.refreshed: list[tuple] = []  # every kept re-search: ("patch", mask, pattern) or ("l2", delta)
        self.calls = 0
        if int(target_clean) != target_clean or target_clean < 0:
            raise ValueError(f"SurrogateTrigger target_clean must be an integer >= 0 (extra clean copies of the "
                             f"trigger class's samples), got {target_clean!r}")
        self.target_clean = int(target_clean)
        if not 0 < rounds_margin <= 1:
            raise ValueError(f"SurrogateTrigger rounds_margin must be in (0, 1], got {rounds_margin}")
        if fallback_shrink < 0 or (fallback_shrink and kind != "both"):
            raise ValueError(f"SurrogateTrigger fallback_shrink must be >= 0 and needs kind='both' (it acts on the "
                             f"gate), got fallback_shrink={fallback_shrink}, kind={kind!r}")
        if fallback_clean_fraction is not None and not 0 <= fallback_clean_fraction <= 1:
            raise ValueError(f"SurrogateTrigger fallback_clean_fraction must be in [0, 1] or None, got "
                             f"{fallback_clean_fraction}")
        self.rounds_margin, self.fallback_shrink = float(rounds_margin), float(fallback_shrink)
        if fallback_unresolved not in (False, True, "ambiguous"):
            raise ValueError(f"SurrogateTrigger fallback_unresolved must be False, True or 'ambiguous', got "
                             f"{fallback_unresolved!r}")
        self.fallback_clean_fraction = fallback_clean_fraction
        self.fallback_unresolved: bool | str = fallback_unresolved
        if fallback_guard is not None and fallback_guard < 0:
            raise ValueError(f"SurrogateTrigger fallback_guard must be >= 0 points or None, got {fallback_guard}")
        self.fallback_guard = None if fallback_guard is None else float(fallback_guard)
        self.requested_guard: float | None = None  # NFT's safety net on the folded masks (set with the fallback)
        self.fallback = False
        self.requested_shrink = 0.0  # NFT adds requested_shrink * sum(m) to its loss (set by the gate's fallback)
        if disjoint not in ("off", "alone", "always") or (disjoint != "off" and kind == "l2") or disjoint_ratio <= 0:
            raise ValueError(f"SurrogateTrigger disjoint must be 'off', 'alone' or 'always' (not with kind='l2') and "
                             f"disjoint_ratio > 0, got disjoint={disjoint!r}, kind={kind!r}, "
                             f"disjoint_ratio={disjoint_ratio}")
        self.disjoint, self.disjoint_ratio = disjoint, float(disjoint_ratio)
        self.mask2: Tensor | None = None
        self.pattern2: Tensor | None = None
        if not 0 <= clean_fraction <= 1:
            raise ValueError(f"SurrogateTrigger clean_fraction must be in [0, 1], got {clean_fraction}")
        self.clean_fraction = float(clean_fraction)
        if not 0 < fraction <= 1:
            raise ValueError(f"SurrogateTrigger fraction must be in (0, 1], got {fraction}")
        if fooling_target is not None and not 0 < fooling_target <= 1:
            raise ValueError(f"SurrogateTrigger fooling_target must be in (0, 1] or None, got {fooling_target}")
        self.fraction, self.fooling_target = float(fraction), fooling_target
        if kind not in ("patch", "l2", "both"):
            raise ValueError(f"SurrogateTrigger kind must be 'patch', 'l2' or 'both', got {kind!r}")
        if lam < 0 or eps <= 0 or ce_cap <= 0 or search_lr <= 0:
            raise ValueError(f"SurrogateTrigger needs lam >= 0 and eps, ce_cap, search_lr > 0, got lam={lam}, "
                             f"eps={eps}, ce_cap={ce_cap}, search_lr={search_lr}")
        if search not in ("untargeted", "per_class") or (search == "per_class" and kind == "l2"):
            raise ValueError(f"SurrogateTrigger search must be 'untargeted' or 'per_class' (patch search only), got "
                             f"{search!r} with kind={kind!r}")
        if not 0 <= l2_gate <= 1:
            raise ValueError(f"SurrogateTrigger l2_gate must be in [0, 1], got {l2_gate}")
        if int(rounds) != rounds or rounds < 1 or (rounds > 1 and (search != "untargeted" or kind == "l2")):
            raise ValueError(f"SurrogateTrigger rounds must be an integer >= 1 (more than 1 only for the untargeted "
                             f"patch search), got {rounds!r} with kind={kind!r}, search={search!r}")
        self.search, self.l2_gate, self.rounds = search, float(l2_gate), int(rounds)
        self.use: tuple[str, ...] = ()
        self.kind, self.lam, self.eps, self.search_lr, self.ce_cap = kind, float(lam), float(eps), search_lr, ce_cap
        self.steps = int(steps) if steps is not None else (100 if kind == "l2" else 300)
        self.l2_steps = int(l2_steps) if l2_steps is not None else (self.steps if kind == "l2" else 100)
        if self.steps < 1 or self.l2_steps < 1:
            raise ValueError(f"SurrogateTrigger needs steps >= 1 and l2_steps >= 1, got {self.steps}, {self.l2_steps}")
        self.base = base if base is not None else MixUp(1.0)
        self.model: nn.Module | None = None
        self.mask: Tensor | None = None
        self.pattern: Tensor | None = None
        self.delta: Tensor | None = None
        self.stats: dict[str, float] = {}

    def bind(self, model: nn.Module | None, adapter: Any = None) -> SurrogateTrigger:
        """Search against ``model`` (NFT binds its masked copy before any step); forgets an earlier trigger."""
        self.model, self.mask, self.pattern, self.delta, self.stats, self.use = model, None, None, None, {}, ()
        self.mask2 = self.pattern2 = None
        self.fallback, self.requested_shrink, self.requested_guard = False, 0.0, None
        self.refreshed, self.calls, self.disjoint_extra = [], 0, []
        return self

    @property
    def wants_reference(self) -> bool:
        """Whether NFT should hand over the original model (``set_reference``): only for ``distill``."""
        return self.distill > 0

    def set_reference(self, model: nn.Module | None) -> SurrogateTrigger:
        """The original (unmasked) model whose predictions ``distill`` learns toward; used in eval mode, no
        gradient. NFT passes a frozen copy before the first step."""
        self.reference = model
        return self

    @torch.no_grad()
    def _reference_probs(self, x: Tensor) -> Tensor:
        ref = self.reference
        if ref is None:
            raise RuntimeError("SurrogateTrigger(distill>0) needs the original model: NFT hands it over "
                               "(set_reference(model) when calling the augmentation yourself)")
        was = ref.training
        ref.eval()
        try:
            return ref(x).float().softmax(-1)
        finally:
            ref.train(was)

    def _soften(self, target: Any, x: Tensor, hard: Tensor) -> MixedTarget:
        """``target`` (a MixedTarget or class ids over the rows of ``x``) as soft targets, the rows where
        ``hard`` is False pulled ``distill`` toward the original model's prediction on ``x``."""
        if isinstance(target, MixedTarget):
            a, b, lam = target.a, target.b, target.lam
        else:
            a, b, lam = target, target, 1.0
        soft = ~hard  # never empty: the base augmentation's rows are always soft
        p = self._reference_probs(x[soft])  # its width is the class count

        def one(t: Tensor) -> Tensor:
            out = F.one_hot(t.long(), p.shape[1]).float()
            out[soft] = (1 - self.distill) * out[soft] + self.distill * p
            return out

        return MixedTarget(one(a), one(b), lam)

    @property
    def trigger_class(self) -> int | None:
        """The class the kept triggers send the batch to (``None`` before the search or after the fallback)."""
        if not self.searched or self.fallback:
            return None
        if self.kind == "l2" or self.use == ("l2",):
            return int(self.stats["dominant_class" if self.kind == "l2" else "l2_dominant_class"])
        return int(self.stats["dominant_class"])

    @property
    def searched(self) -> bool:
        return (self.mask is not None) if self.kind == "patch" else (self.delta is not None)

    def apply(self, x: Tensor, which: str | None = None) -> Tensor:
        """Stamp the frozen surrogate trigger on ``x`` (B, C, H, W) or (B, T, C, H, W). ``which`` ("patch" or
        "l2") picks one of the two triggers of ``kind="both"``; by default the kind's own (the patch for both)."""
        if not self.searched:
            raise RuntimeError("SurrogateTrigger.apply before the search: call it on a batch first")
        which = which or ("l2" if self.kind == "l2" else "patch")
        if which in ("patch", "disjoint"):
            if which == "disjoint" and self.mask2 is None:
                raise RuntimeError("SurrogateTrigger.apply(which='disjoint'): no disjoint patch was kept")
            return _stamp(x, *((self.mask, self.pattern) if which == "patch" else (self.mask2, self.pattern2)))
        return _add(x, self.delta)

    def _triggered(self, x: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """Every trigger this kind appends: one copy of ``x`` per kept trigger (``self.use``; the kind's own if
        no gate ran; none after the gate's fallback). With ``shift``, every patch lands on each sample moved by
        its own random offset of at most ``shift`` pixels per axis (the same offsets for all patches of a call;
        L2 triggers stay where they are)."""
        if self.fallback:
            return []
        offsets = (torch.randint(-self.shift, self.shift + 1, (len(x), 2), generator=generator).tolist()
                   if self.shift else None)

        def patch(m: Tensor, p: Tensor) -> Tensor:
            return _stamp(x, m, p) if offsets is None else _stamp(x, _roll_each(m, offsets), _roll_each(p, offsets))

        own = {"patch": (self.mask, self.pattern), "disjoint": (self.mask2, self.pattern2)}
        kept = [patch(*own[w]) if w in own else self.apply(x, w)
                for w in (self.use or ("l2" if self.kind == "l2" else "patch",))]
        more = [patch(m, p) for m, p in self.disjoint_extra]
        again = [patch(*t[1:]) if t[0] == "patch" else _add(x, t[1]) for t in self.refreshed]
        return kept + more + again

    def _refresh(self, x: Tensor, y: Tensor) -> None:
        """``refresh_every``: search again against the model *as it is now* (the masks tuned so far), toward the
        kept trigger's class. A kept patch: a targeted patch search on this batch's samples of other classes,
        appended to the triggers if it reaches the fooling target with at most ``refresh_ratio`` × the first
        mask's area. A kept L2 trigger: the L2 search again, appended if it flips ``l2_gate`` of the batch and
        sends it to the same class. One row per re-search in ``stats["refresh"]``."""
        cls, row = self.trigger_class, {"step": self.calls}
        keep = None if cls is None else y != cls
        rows = self.stats.setdefault("refresh", [])
        if keep is None or not bool(keep.any()):
            rows.append({**row, "searched": False})
            return
        x = x.detach()
        with frozen_model(self.model) as model, torch.enable_grad():
            if "patch" in (self.use or ("patch",)):
                new, reached, area, kept = self._another_patch(model, x[keep], y[keep], cls, self.refresh_ratio)
                if kept:
                    self.refreshed.append(("patch", *new))
                row.update(mask_l1=round(area, 2), reached=reached, kept=kept,
                           overlap=round(float((new[0] * self.mask).sum()), 2))
            if "l2" in self.use:
                d = self._search_l2(model, x, y)
                out = self._outcome(model, _add(x, d), y)
                kept = out["fooling"] >= self.l2_gate and out["dominant_class"] == cls
                if kept:
                    self.refreshed.append(("l2", d))
                row.update(l2_fooling=round(out["fooling"], 4), l2_class=out["dominant_class"], l2_kept=kept)
        rows.append(row)

    def _search_l2(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        d = torch.zeros_like(x[:1])
        for _ in range(self.l2_steps):
            d.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(_add(x, d)).float(), y), d)
            d = (d + self.eps / 10 * g / g.norm().clamp_min(1e-12)).detach()
            d = d * (self.eps / d.norm().clamp_min(1e-12)).clamp(max=1.0)
        return d

    def _outcome(self, model: nn.Module, xt: Tensor, y: Tensor) -> dict[str, float]:
        with torch.no_grad():
            pred = model(xt).argmax(1)
        counts = torch.bincount(pred, minlength=1)
        return dict(fooling=_fooling(pred, y), fooling_all=float((pred != y).float().mean()),
                    dominant_class=int(counts.argmax()), dominant_share=float(counts.max()) / len(pred))

    def _search(self, x: Tensor, y: Tensor) -> None:
        x = x.detach()
        found: list[dict] = []  # the patch search's rounds so far
        with frozen_model(self.model) as model:
            with torch.enable_grad():
                if self.kind != "l2" and self.search == "per_class":
                    self._search_per_class(model, x, y)
                elif self.kind != "l2":  # kind "both": its later rounds wait for the L2 search (below)
                    self._search_rounds(model, x, y, found, 1 if self.kind == "both" else self.rounds)
                if self.kind != "patch":
                    self.delta = self._search_l2(model, x, y)
            if self.kind == "l2":
                self.stats = {"l2": float(self.delta.norm()), **self._outcome(model, self.apply(x), y)}
                return
            self.stats.update(self._outcome(model, self.apply(x, "patch"), y))
            if self.kind == "both":
                self._gate(model, x, y, found)
            alone = self.use in ((), ("patch",)) and not self.fallback  # the patch is the only trigger kept
            if (self.disjoint == "always" and (alone or "patch" in self.use)) or (self.disjoint == "alone" and alone):
                with torch.enable_grad():
                    self._search_disjoint(model, x, y)

    def _gate(self, model: nn.Module, x: Tensor, y: Tensor, found: list[dict]) -> None:
        """``kind="both"``: which of the two triggers to keep (``self.use``), and the later rounds."""
        # the L2 trigger's statistics under an ``l2_`` prefix, then the gate
        out = {"norm": float(self.delta.norm()), **self._outcome(model, self.apply(x, "l2"), y)}
        l2 = out["fooling"] >= self.l2_gate
        if found and self.rounds > 1 and not l2 and self.stats["dominant_class"] == out["dominant_class"]:
            # the L2 search went where the patch went but flipped too little to look like a backdoor: that
            # class is the model's natural adversarial direction, which the patch may have followed too
            with torch.enable_grad():
                self._search_rounds(model, x, y, found, self.rounds)
            self.stats.update(self._outcome(model, self.apply(x, "patch"), y))
        self.stats.update({f"l2_{k}": v for k, v in out.items()})
        patch = not l2 or self.stats["dominant_class"] == out["dominant_class"]
        self.use = ("patch",) * patch + ("l2",) * l2
        self.stats["used"] = "+".join(self.use)
        # no trigger found: the searches disagree (a kept L2 trigger elsewhere), or the later rounds ran (the L2
        # search marked round 1's class as a natural direction) and none beat round 1 by the margin
        unresolved = bool(self.fallback_unresolved) and len(found) > 1 and self.stats.get("round") == 0
        if unresolved and self.fallback_unresolved == "ambiguous":
            # only where round 1 did not win by the margin either: a later round that reached the fooling target
            # with a mask within 1 / rounds_margin of round 1's
            unresolved = self.stats.get("rounds_ratio", float("inf")) <= 1 / self.rounds_margin
        reason = "disagree" if l2 and not patch else "unresolved" if unresolved else None
        if reason and self.fallback_shrink:
            self.use, self.fallback, self.requested_shrink = (), True, self.fallback_shrink
            self.requested_guard = self.fallback_guard
            self.stats.update(used="none", fallback_shrink=self.fallback_shrink, fallback_reason=reason)

    def _another_patch(self, model: nn.Module, x: Tensor, y: Tensor, target: int, ratio: float,
                       allowed: Tensor | None = None) -> tuple[tuple[Tensor, Tensor], bool, float, bool]:
        """One more targeted patch search toward ``target`` (the kept trigger and its stats left as they were):
        the new (mask, pattern), whether it reached the fooling target, its area, and whether it is kept (it
        reached the target with at most ``ratio`` × the first mask's area)."""
        first = (self.mask, self.pattern, self.stats)
        self._search_patch(model, x, y, target=target, allowed=allowed)
        new, reached = (self.mask, self.pattern), bool(self.stats["reached"] or self.fooling_target is None)
        self.mask, self.pattern, self.stats = first
        area = float(new[0].sum())
        return new, reached, area, reached and area <= ratio * float(first[0].sum())

    def _search_disjoint(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        """A second patch toward the first patch's class, barred from the pixels where the first mask exceeds 0.1,
        searched on the batch's samples of other classes (targeted, the same schedule); kept if it reaches the
        fooling target with at most ``disjoint_ratio`` × the first mask's area."""
        target, keep = self.stats["dominant_class"], y != self.stats["dominant_class"]
        if not bool(keep.any()):
            return
        first = self.mask
        new, reached, area, kept = self._another_patch(model, x[keep], y[keep], target, self.disjoint_ratio,
                                                       allowed=(first <= 0.1).to(first))
        self.stats.update(disjoint_mask_l1=area, disjoint_reached=reached, disjoint_kept=kept,
                          disjoint_overlap=float((new[0] * first).sum()))
        if kept:
            self.mask2, self.pattern2 = new
            self.use = (self.use or ("patch",)) + ("disjoint",)
            self.stats["used"] = "+".join(self.use)
        rows = []
        while kept and len(self.disjoint_extra) + 1 < self.disjoint_count:
            # ``disjoint_count``: one more patch toward the same class, barred from every kept patch's pixels
            taken = torch.stack([first, self.mask2, *(m for m, _ in self.disjoint_extra)]).amax(0)
            new, reached, area, kept = self._another_patch(model, x[keep], y[keep], target, self.disjoint_ratio,
                                                           allowed=(taken <= 0.1).to(taken))
            rows.append({"mask_l1": round(area, 2), "reached": reached, "kept": kept,
                         "overlap": round(float((new[0] * taken).sum()), 2)})
            if kept:
                self.disjoint_extra.append(new)
        if rows:
            self.stats["disjoint_more"] = rows

    def _search_rounds(self, model: nn.Module, x: Tensor, y: Tensor, found: list[dict], rounds: int) -> None:
        """Untargeted patch searches until ``found`` holds ``rounds`` of them; round r may not use the classes
        the earlier rounds' patches sent the batch to. The smallest mask that reached the fooling target wins;
        if no round reached it, the patch that flips the most samples. ``found`` keeps every round's result."""
        excluded = [f["cls"] for f in found]
        while len(found) < rounds and len(set(excluded)) == len(excluded):
            # (a round sent back to an excluded class could not leave them: no new candidate to look for)
            self._search_patch(model, x, y, exclude=tuple(excluded))
            with torch.no_grad():
                pred = model(_stamp(x, self.mask, self.pattern)).argmax(1)
            cls = int(torch.bincount(pred).argmax())
            found.append(dict(l1=float(self.mask.sum()), mask=self.mask, pattern=self.pattern, stats=self.stats,
                              cls=cls, fooling=_fooling(pred, y)))
            excluded.append(cls)
        reached = [f for f in found if f["stats"]["reached"]]
        if found[0]["stats"]["reached"]:  # a later round must beat round 1 by the margin
            reached = [found[0]] + [f for f in found[1:] if f["stats"]["reached"]
                                    and f["l1"] < self.rounds_margin * found[0]["l1"]]
        best = min(reached, key=lambda f: f["l1"]) if reached else max(found, key=lambda f: f["fooling"])
        self.mask, self.pattern, self.stats = best["mask"], best["pattern"], dict(best["stats"])
        if self.rounds > 1:
            self.stats.update(round=found.index(best), class_rounds=[f["cls"] for f in found],
                              mask_l1_rounds=[round(f["l1"], 2) for f in found])
            later = [f["l1"] for f in found[1:] if f["stats"]["reached"]]
            if later and found[0]["stats"]["reached"]:  # the closest later round, as a multiple of round 1's mask
                self.stats["rounds_ratio"] = round(min(later) / max(found[0]["l1"], 1e-12), 4)

    def _search_per_class(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        with torch.no_grad():
            n_cls = int(model(x[:1]).shape[-1])
        results = {}
        for c in range(n_cls):
            keep = y != c
            if not bool(keep.any()):
                continue
            self._search_patch(model, x[keep], y[keep], target=c)
            results[c] = (float(self.mask.sum()), self.mask, self.pattern, self.stats.get("reached", False))
        # the smallest mask among the classes whose search reached the fooling target (any class if none did)
        reached = {c: r for c, r in results.items() if r[3]} or results
        best = min(reached, key=lambda c: reached[c][0])
        self.mask, self.pattern = reached[best][1], reached[best][2]
        self.stats = {"mask_l1": reached[best][0], "target_class": best,
                      "mask_l1_per_class": {c: round(r[0], 2) for c, r in results.items()}}

    def _search_patch(self, model: nn.Module, x: Tensor, y: Tensor, target: int | None = None,
                      exclude: tuple[int, ...] = (), allowed: Tensor | None = None) -> None:
        """Untargeted (``target=None``: push ``x`` away from ``y`` and the ``exclude`` classes) or targeted
        (pull ``x`` to ``target``); ``allowed`` (0/1, the mask's shape) bars the mask from the pixels at 0."""
        def mask_of(a: Tensor) -> Tensor:
            return torch.sigmoid(a) if allowed is None else torch.sigmoid(a) * allowed

        away = None  # per sample (B, C): its label and the excluded classes
        if exclude:
            with torch.no_grad():
                away = F.one_hot(y, int(model(x[:1]).shape[-1])).bool()
            away[:, list(exclude)] = True
        a = torch.full((1,) * (x.ndim - 2) + tuple(x.shape[-2:]), -3.0, device=x.device, requires_grad=True)
        b = torch.zeros((1,) * (x.ndim - 3) + tuple(x.shape[-3:]), device=x.device, requires_grad=True)
        opt = torch.optim.Adam([a, b], lr=self.search_lr)
        lam, best, best_l1 = self.lam, None, float("inf")
        for step in range(self.steps):
            m, p = mask_of(a), torch.sigmoid(b)
            logits = model(_stamp(x, m, p)).float()
            if target is None:  # -log of the probability left on y (and the excluded classes), capped
                ce = (F.cross_entropy(logits, y, reduction="none") if away is None
                      else -torch.logsumexp(F.log_softmax(logits, 1).masked_fill(~away, float("-inf")), 1))
                fit = -ce.clamp(max=self.ce_cap).mean()
            else:
                fit = F.cross_entropy(logits, torch.full_like(y, target))
            loss = fit + lam * m.sum()
            # autograd.grad, not backward: only the trigger's gradient is computed, none for the masks that
            # NFT's model carries (they keep requires_grad; their grads would be thrown away)
            a.grad, b.grad = torch.autograd.grad(loss, (a, b))
            opt.step()
            if self.fooling_target is not None and (step + 1) % 10 == 0:
                with torch.no_grad():  # Neural Cleanse's schedule: the smallest mask that still flips enough
                    m, p = mask_of(a), torch.sigmoid(b)
                    pred = model(_stamp(x, m, p)).argmax(1)
                    fool = (_fooling(pred, y, away) if target is None
                            else float((pred == target).float().mean()))
                    if fool >= self.fooling_target:
                        if float(m.sum()) < best_l1:
                            best, best_l1 = (a.detach().clone(), b.detach().clone()), float(m.sum())
                        lam *= 1.5
                    else:
                        lam /= 1.5
        a, b = best if best is not None else (a.detach(), b.detach())
        self.mask, self.pattern = mask_of(a), torch.sigmoid(b)
        self.stats = {"mask_l1": float(self.mask.sum()), "lam_final": lam, "reached": best is not None}

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        if self.model is None:
            raise RuntimeError("SurrogateTrigger needs the model being tuned: call bind(model) first "
                               "(NFT does this before its training loop)")
        x, y, *rest = batch
        if x.ndim not in (4, 5):
            raise ValueError(f"SurrogateTrigger expects images (B, C, H, W) or clips (B, T, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        if not self.searched:
            self._search(x, y)
        elif self.refresh_every and self.calls % self.refresh_every == 0:
            self._refresh(x, y)
        self.calls += 1
        n = x.shape[0]
        k = max(1, round(self.fraction * n))  # the first k samples get a triggered copy (the batch is shuffled)
        clean = self.clean_fraction
        if self.fallback and self.fallback_clean_fraction is not None:
            clean = self.fallback_clean_fraction
        kc = round(clean * n)  # unmixed clean copies (true labels) of the first kc samples
        trig = self._triggered(x[:k], generator)
        xts = trig + [x[:kc]] * bool(kc)
        yts = [y[:k]] * len(trig) + [y[:kc]] * bool(kc)
        cls = self.trigger_class
        if self.target_clean and cls is not None and bool((y == cls).any()):
            # extra unmixed copies of the trigger class's own samples: its clean evidence, which every triggered
            # copy tells the masks to distrust, is what the purified model loses first
            xts += [x[y == cls]] * self.target_clean
            yts += [y[y == cls]] * self.target_clean
        based = self.base(batch, generator)
        if not xts:  # the gate's fallback: the base augmentation alone
            if self.distill:
                xm, ym, *more = based
                return (xm, self._soften(ym, xm, torch.zeros(len(xm), dtype=torch.bool, device=x.device)), *more)
            return based
        xm, ym, *_ = based
        xt, yt = torch.cat(xts), torch.cat(yts)
        if isinstance(ym, MixedTarget):
            lam = torch.as_tensor(ym.lam, dtype=torch.float32, device=x.device).expand(len(xm))
            a, b = ym.a, ym.b
        else:
            lam, a, b = torch.ones(len(xm), device=x.device), ym, ym
        target = MixedTarget(torch.cat([a, yt]), torch.cat([b, yt]),
                             torch.cat([lam, torch.ones(len(yt), device=x.device)]))
        xs = torch.cat([xm, xt])
        if self.distill:
            # the triggered copies keep their hard true labels: the original model answers them with its backdoor
            hard = torch.zeros(len(xs), dtype=torch.bool, device=x.device)
            hard[len(xm):len(xm) + k * len(trig)] = True
            target = self._soften(target, xs, hard)
        return (xs, target, *rest)

    def __repr__(self) -> str:
        knob = {"patch": f"lam={self.lam:g}", "l2": f"eps={self.eps:g}"}.get(self.kind, f"lam={self.lam:g}, "
                                                                                 f"eps={self.eps:g}, l2_steps={self.l2_steps}, l2_gate={self.l2_gate:g}")
        if self.rounds > 1:
            knob += f", rounds={self.rounds}"
        if self.clean_fraction:
            knob += f", clean_fraction={self.clean_fraction:g}"
        if self.target_clean:
            knob += f", target_clean={self.target_clean}"
        if self.refresh_every:
            knob += f", refresh_every={self.refresh_every}, refresh_ratio={self.refresh_ratio:g}"
        if self.shift:
            knob += f", shift={self.shift}"
        if self.distill:
            knob += f", distill={self.distill:g}"
        if self.disjoint != "off":
            knob += f", disjoint={self.disjoint}, disjoint_ratio={self.disjoint_ratio:g}"
            if self.disjoint_count > 1:
                knob += f", disjoint_count={self.disjoint_count}"
        if self.rounds_margin != 1:
            knob += f", rounds_margin={self.rounds_margin:g}"
        if self.fallback_shrink:
            knob += f", fallback_shrink={self.fallback_shrink:g}"
            if self.fallback_clean_fraction is not None:
                knob += f", fallback_clean_fraction={self.fallback_clean_fraction:g}"
            if self.fallback_unresolved:
                knob += f", fallback_unresolved={self.fallback_unresolved!r}"
            if self.fallback_guard is not None:
                knob += f", fallback_guard={self.fallback_guard:g}"
        return (f"SurrogateTrigger(kind={self.kind}, search={self.search}, {knob}, steps={self.steps}, "
                f"fraction={self.fraction:g}, fooling_target={self.fooling_target}, base={self.base!r})")


def _stamp(x: Tensor, mask: Tensor, pattern: Tensor) -> Tensor:
    """A patch trigger on ``x``: ``(1 − M)·x + M·P``."""
    mask = mask.to(x)
    return (1 - mask) * x + mask * pattern.to(x)


def _roll_each(t: Tensor, offsets: list[list[int]]) -> Tensor:
    """One copy of ``t`` (leading dim 1) per offset, each rolled by its ``(dy, dx)`` over the last two dims."""
    return torch.cat([torch.roll(t, (dy, dx), dims=(-2, -1)) for dy, dx in offsets])


def _add(x: Tensor, delta: Tensor) -> Tensor:
    """An additive (L2) trigger on ``x``, kept in [0, 1]."""
    return (x + delta.to(x)).clamp(0, 1)


def _fooling(pred: Tensor, y: Tensor, away: Tensor | None = None) -> float:
    """The share of the samples flipped away from their true label, among those whose true label is not the
    class most predictions went to: a trigger that sends everything to class c cannot flip the samples of
    class c, so counting them would make a 90% target unreachable whenever c holds more than 10% of the
    batch (it did: digits with 13 target-class images in a batch of 128; the six-class clips, 1/6 each)."""
    keep = y != torch.bincount(pred).argmax()
    if not bool(keep.any()):
        return 0.0
    if away is None:
        return float((pred[keep] != y[keep]).float().mean())
    # with excluded classes (``away``, (B, C) bool: the label and the excluded classes), a flip must leave them all
    return float((~away[keep].gather(1, pred[keep, None])).float().mean())
