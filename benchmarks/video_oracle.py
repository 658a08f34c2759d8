"""Diagnosis for issue 6: how far can NFT's masks go on the video default if the trigger were known?

``oracle`` appends copies of the batch stamped with the attack's **real** trigger and their true labels (an
upper bound a defender never has; never a recipe); ``surrogate`` uses the config's augmentation (e.g. the
surrogate trigger) instead. Per-epoch test ACC/ASR (``eval_every=5``) are recorded, never used to select;
the folded model is what NFT returns. Results in ``benchmarks/results/video-oracle/``:

    uv run python benchmarks/video_oracle.py oracle OUT.json defense.recipe=paper \\
        defense.options.tune_bias=last defense.options.average=0.3 defense.options.epochs=120

``--clean-fraction F`` (oracle only) also appends unmixed clean copies of the batch's first ``F`` × B clips with
their labels, as the surrogate trigger's ``clean_fraction`` option does.
"""

from __future__ import annotations

import json
import sys

import torch
from _diag import purify_and_diagnose

from nft_core.config import load_config, to_dataclass
from nft_core.contracts import MixedTarget
from nft_core.pipeline import build_defense
from nft_video.adapter import VideoAdapter
from nft_video.augment import VideoMixUp
from nft_video.config import VideoConfig
from nft_video.workflow import backdoor, build_augmentation


class Oracle:
    """Video MixUp on the batch plus the batch stamped with the real trigger, true labels (λ = 1), then
    (``clean_fraction``, as the surrogate's option) unmixed clean copies of the batch's first clips."""

    def __init__(self, attack, clean_fraction: float = 0.0):
        self.attack, self.clean_fraction, self.base = attack, clean_fraction, VideoMixUp()

    def __call__(self, batch, generator):
        x, y, *rest = batch
        xm, ym, *_ = self.base(batch, generator)
        n, kc = x.shape[0], round(self.clean_fraction * x.shape[0])
        lam = torch.as_tensor(ym.lam, dtype=torch.float32).expand(n)
        yt = torch.cat([y, y[:kc]])
        target = MixedTarget(torch.cat([ym.a, yt]), torch.cat([ym.b, yt]), torch.cat([lam, torch.ones(n + kc)]))
        return (torch.cat([xm, self.attack.apply(x), x[:kc]]), target, *rest)


def mask_in_trigger(aug, attack) -> list[dict] | None:
    """For each patch the surrogate kept: its area and how much of it lies on the pixels the attack writes (the
    pixels it overwrites: where stamping a black and a white clip gives the same value; none for a blend);
    ``None`` for the oracle."""
    if getattr(aug, "mask", None) is None:
        return None
    x = torch.zeros(1, 2, 3, *aug.mask.shape[-2:])
    region = (attack.apply(torch.zeros_like(x)) == attack.apply(torch.ones_like(x)))[0, 0].all(0).float()
    patches = [("patch", aug.mask)] + [("disjoint", aug.mask2)] * (aug.mask2 is not None)
    patches += [(f"disjoint{i + 2}", m) for i, (m, _) in enumerate(getattr(aug, "disjoint_extra", []))]
    patches += [(f"refresh{i}", t[1]) for i, t in enumerate(getattr(aug, "refreshed", [])) if t[0] == "patch"]
    rows = []
    for name, m in patches:
        m = m.detach().reshape(m.shape[-2:])
        rows.append({"which": name, "area": round(float(m.sum()), 2),
                     "in_trigger": round(float((m * region).sum()), 2), "trigger_px": int(region.sum())})
    return rows


def main() -> None:
    args = sys.argv[1:]
    clean = 0.0
    if "--clean-fraction" in args:  # oracle only: unmixed clean copies of that share of the batch
        i = args.index("--clean-fraction")
        clean, args = float(args[i + 1]), args[:i] + args[i + 2:]
    mode, out, *options = args
    if mode not in ("oracle", "surrogate"):
        raise SystemExit("usage: video_oracle.py oracle|surrogate OUT.json [KEY=VALUE ...] [--clean-fraction F]")
    torch.set_num_threads(1)
    cfg = to_dataclass(VideoConfig, load_config(None, options))
    run = backdoor(cfg)
    ad = VideoAdapter(run.num_classes)
    before = ad.evaluate(run.model, run.eval_data)
    aug = Oracle(run.attack, clean) if mode == "oracle" else build_augmentation(cfg)
    defense = build_defense("nft", {**cfg.defense.resolved_options(), "eval_every": 5}, aug, eval_data=run.eval_data)
    d = purify_and_diagnose(defense, run, ad)
    after, seconds = d["after"], d["seconds"]
    result = {"mode": mode, "options": options, "clean_fraction": clean, "before": before, "after": after, "nft_s": seconds,
              "search": d["result"].info.get("augmentation_stats"), "history": d["history"],
              "mask_in_trigger": mask_in_trigger(aug, run.attack)}
    with open(out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"{mode}: ASR {before['asr']:.1f} -> {after['asr']:.1f}, ACC {before['acc']:.2f} -> {after['acc']:.2f}, "
          f"class errors {after['per_class_errors']} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
