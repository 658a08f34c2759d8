"""Two variants of the surrogate recipe tried on the retrained digits models and dropped (docs/results/ablations.md "Against the real trigger"); kept so the figures quoted there can be reproduced. Neither is an option
of the library. The default's NFT and surrogate trigger otherwise; one line of JSON per run on stdout.

``research AT [--targeted]``: after ``AT`` NFT steps, search a new patch against the masked model being tuned
(untargeted, or with ``--targeted`` toward the first search's class); if it goes to the first search's class
with at most 3× its mask area, append copies stamped with it too for the remaining steps:

    uv run python benchmarks/surrogate_experiments.py research trojan 0 --at 100 --targeted

``features BETA TRIG_CE CLEAN``: add ``BETA`` × the mean over the ReLU outputs of
‖h(x + t) − h₀(x)‖² / ‖h₀(x)‖² (h the model being tuned on the triggered copies, h₀ the original model on
the same clean images: "the trigger should not change any layer's representation"), weight the triggered
copies' cross-entropy by ``TRIG_CE`` and append ``CLEAN`` × B unmixed clean copies:

    uv run python benchmarks/surrogate_experiments.py features blend 1 --beta 1 --trig-ce 1 --clean 0.5
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
import torch.nn.functional as F
from _diag import evaluated_history, per_class_errors

from nft_core import ClassificationAdapter, MixedTarget
from nft_core.augment import frozen_model
from nft_core.config import load_config, to_dataclass
from nft_core.pipeline import build_defense
from nft_core.surrogate import SurrogateTrigger
from nft_vision.config import SURROGATE_AUGMENTATION, VisionConfig
from nft_vision.workflow import backdoor


def _append(batch, x, y):
    xb, t, *rest = batch
    return (torch.cat([xb, x]), MixedTarget(torch.cat([t.a, y]), torch.cat([t.b, y]),
                                            torch.cat([t.lam, torch.ones(len(y), device=x.device)])), *rest)


class Research(SurrogateTrigger):
    """The default's surrogate trigger plus one more patch searched after ``at`` calls (= NFT steps)."""

    def __init__(self, at: int, targeted: bool, **kw):
        super().__init__(**kw)
        self.at, self.targeted = at, targeted

    def bind(self, model, adapter=None):
        self.calls, self.extra, self.log = 0, None, {}
        return super().bind(model, adapter)

    def __call__(self, batch, generator):
        x, y, *_ = batch
        if self.calls == self.at and self.searched:
            first = (self.mask, self.pattern, dict(self.stats))
            with frozen_model(self.model) as model, torch.enable_grad():
                self._search_patch(model, x, y, target=first[2]["dominant_class"] if self.targeted else None)
                with torch.no_grad():
                    pred = model((1 - self.mask) * x + self.mask * self.pattern).argmax(1)
            new, (self.mask, self.pattern, self.stats) = (self.mask, self.pattern), first
            cls, area = int(torch.bincount(pred).argmax()), float(new[0].sum())
            kept = cls == self.stats["dominant_class"] and area <= 3 * self.stats["mask_l1"]
            self.log = {"step": self.calls, "class": cls, "mask_l1": area, "kept": kept}
            self.extra = new if kept else None
        self.calls += 1
        out = super().__call__(batch, generator)
        if self.extra is None:
            return out
        k = max(1, round(self.fraction * len(x)))
        m, p = self.extra
        return _append(out, (1 - m) * x[:k] + m * p, y[:k])


class Stash:
    """The default's surrogate trigger, remembering the clean images behind the triggered copies, plus
    ``clean`` × B unmixed clean copies at the end of the batch."""

    def __init__(self, inner: SurrogateTrigger, clean: float):
        self.inner, self.clean = inner, clean

    def bind(self, model, adapter=None):
        return self.inner.bind(model, adapter)

    @property
    def stats(self):
        return self.inner.stats

    def __repr__(self) -> str:
        return f"Stash({self.inner!r}, clean={self.clean})"

    def __call__(self, batch, generator):
        x, y, *_ = batch
        out = self.inner(batch, generator)
        self.k = max(1, round(self.inner.fraction * len(x)))
        self.copies = len(self.inner.use) if self.inner.kind == "both" else 1
        self.images, self.kc = x[: self.k], round(self.clean * len(x))
        return _append(out, x[: self.kc], y[: self.kc]) if self.kc else out


class FeatureAdapter(ClassificationAdapter):
    """Cross-entropy with the triggered copies weighted by ``trig_ce`` plus ``beta`` × the feature term."""

    def __init__(self, num_classes: int, aug: Stash, beta: float, trig_ce: float):
        super().__init__(num_classes)
        self.aug, self.beta, self.trig_ce, self.original = aug, beta, trig_ce, None

    def _features(self, model, x):
        feats = []
        hooks = [m.register_forward_hook(lambda m, i, o: feats.append(o)) for m in model.modules()
                 if isinstance(m, torch.nn.ReLU)]
        try:
            out = model(x)
        finally:
            for h in hooks:
                h.remove()
        return out, feats

    def loss(self, model, batch):
        x, t = batch[0], batch[1]
        if self.original is None:  # the first step: the masks are all 1, i.e. the original model
            self.original = copy.deepcopy(model).eval().requires_grad_(False)
        logits, feats = self._features(model, x)
        per = t.lam * F.cross_entropy(logits.float(), t.a, reduction="none") + (1 - t.lam) * F.cross_entropy(
            logits.float(), t.b, reduction="none")
        n_trig = self.aug.k * self.aug.copies
        start = len(x) - n_trig - self.aug.kc
        w = torch.ones(len(x), device=x.device)
        w[start:start + n_trig] = self.trig_ce
        loss = (per * w).mean()
        if self.beta:
            with torch.no_grad():
                _, ref = self._features(self.original, self.aug.images)
            term = sum(((f[start:start + n_trig].float() - r.float().repeat((self.aug.copies,) + (1,) * (r.ndim - 1)))
                        ** 2).mean() / (r.float() ** 2).mean().clamp_min(1e-8) for f, r in zip(feats, ref))
            loss = loss + self.beta * term / len(feats)
        return loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variant", choices=["research", "features"])
    p.add_argument("attack")
    p.add_argument("seed", type=int)
    p.add_argument("--at", type=int, default=100)
    p.add_argument("--targeted", action="store_true")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--trig-ce", type=float, default=1.0)
    p.add_argument("--clean", type=float, default=0.0)
    p.add_argument("--cfg-options", nargs="*", default=[])
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg = to_dataclass(VisionConfig, load_config(None, a.cfg_options))
    run = backdoor(cfg, attack_name=a.attack)
    options = {**SURROGATE_AUGMENTATION, **cfg.augmentation.options}
    if a.variant == "research":
        aug = Research(a.at, a.targeted, **options)
        adapter = ClassificationAdapter(run.num_classes)
    else:
        aug = Stash(SurrogateTrigger(**options), a.clean)
        adapter = FeatureAdapter(run.num_classes, aug, a.beta, a.trig_ce)
    defense = build_defense("nft", {**cfg.defense.resolved_options(), "seed": a.seed, "eval_every": 10}, aug,
                            eval_data=run.eval_data)
    t0 = time.perf_counter()
    res = defense.purify(run.model, run.val, adapter)
    seconds = time.perf_counter() - t0
    plain = ClassificationAdapter(run.num_classes)
    print(json.dumps({"variant": a.variant, "attack": a.attack, "seed": a.seed, "args": vars(a),
                      "after": plain.evaluate(res.model, run.eval_data), "nft_s": round(seconds, 1),
                      "research": getattr(aug, "log", None), "search": dict(getattr(aug, "stats", {}) or {}),
                      "per_class_errors": per_class_errors(res.model, run.eval_data.clean, run.num_classes),
                      "history": evaluated_history(res.history)}), flush=True)


if __name__ == "__main__":
    main()
