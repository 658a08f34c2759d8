"""Per-seed runs of an NFT recipe on the cached digits models, with per-epoch test ACC/ASR for diagnosis.

The per-epoch test numbers (``eval_every``) are recorded only, never used to pick anything; the folded
model is what NFT returns. Also records the per-class clean errors of the purified model and the
surrogate search's statistics. README "The surrogate recipe" was measured with it:

    uv run python benchmarks/surrogate_seeds.py --attacks badnets blend trojan wanet dynamic --seeds 0 1 2 \\
        --out benchmarks/results/vision-digits-surrogate/recipe --cfg-options defense.recipe=paper \\
        augmentation.name=surrogate "augmentation.options={'fooling_target': 0.99}" \\
        defense.options.tune_bias=last defense.options.average=0.3

``--seeds`` sets NFT's seed only (validation batches, MixUp draws); the backdoored model is the cached one
of the embedded default's attack. One thread per run (two runs fit the 2-core build machine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _diag import purify_and_diagnose

from nft_core import ClassificationAdapter
from nft_core.config import load_config, to_dataclass
from nft_core.pipeline import build_defense
from nft_vision.config import VisionConfig
from nft_vision.workflow import backdoor, build_augmentation


def run_one(attack: str, seed: int, options: list[str]) -> dict:
    cfg = to_dataclass(VisionConfig, load_config(None, options))
    run = backdoor(cfg, attack_name=attack)
    ad = ClassificationAdapter(run.num_classes)
    before = ad.evaluate(run.model, run.eval_data)
    opts = {**cfg.defense.resolved_options(), "seed": seed, "eval_every": 5}
    defense = build_defense("nft", opts, build_augmentation(cfg), eval_data=run.eval_data)
    d = purify_and_diagnose(defense, run, ad)
    res = d["result"]
    return {"attack": attack, "seed": seed, "options": options, "before": before, "after": d["after"],
            "nft_s": d["seconds"], "search": res.info["augmentation_stats"], "recipe": res.info["config"],
            "history": d["history"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attacks", nargs="+", default=["badnets"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", required=True)
    p.add_argument("--cfg-options", nargs="*", default=[])
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        for attack in a.attacks:
            r = run_one(attack, seed, a.cfg_options)
            (out / f"{attack}-seed{seed}.json").write_text(json.dumps(r, indent=1, default=str))
            b, x = r["before"], r["after"]
            print(f"{attack} seed {seed}: ASR {b['asr']:.2f} -> {x['asr']:.2f}, ACC {b['acc']:.2f} -> "
                  f"{x['acc']:.2f} ({r['nft_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
