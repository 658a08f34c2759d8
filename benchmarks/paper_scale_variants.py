"""Defense variants side by side on one paper-scale backdoored model per attack (the setting of
``paper_scale.py``: procedural CIFAR-scale set, PreActResNet-18, 10% poison, 1% validation), with what a
single grid column does not record: the surrogate search's statistics, the per-epoch test ACC/ASR of NFT
(``eval_every``; recorded only, never used to pick anything) and the per-class clean errors.

``--variants`` is a JSON list; each entry has ``label`` and ``defense`` (``nft`` or a baseline's name) and
optionally ``options`` (the defense's keyword options, for NFT merged over its recipe), and for NFT
``recipe`` (surrogate | nft+ | paper; default surrogate) and ``augmentation`` (``{'name', 'options'}``; default
``auto``, the recipe's own)::

    uv run python benchmarks/paper_scale_variants.py --device cuda --attacks badnets --out DIR --variants \\
        '[{"label": "surrogate", "defense": "nft"}, {"label": "nad-lr0.01", "defense": "nad",
          "options": {"lr": 0.01}}]'
    uv run python benchmarks/paper_scale_variants.py --device cpu --quick --out /tmp/psv    # CPU smoke run

Writes ``OUT/<attack>.json`` after every variant (a cut-off run keeps what finished) and prints one line per
variant. Seconds include NFT's periodic test evaluations.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from _diag import purify_and_diagnose
from paper_scale import paper_config

from nft_core import ClassificationAdapter
from nft_core.pipeline import build_defense
from nft_vision.config import AugmentationConfig
from nft_vision.workflow import backdoor, build_augmentation

DEFAULT_VARIANTS = [{"label": "nft-surrogate", "defense": "nft"}, {"label": "ftsam", "defense": "ftsam"}]


def make_defense(cfg, v: dict, device: str, eval_data, eval_every: int):
    name, options = v["defense"], dict(v.get("options", {}))
    if name != "nft":
        return build_defense(name, {"seed": cfg.seed, "device": device, **options})
    recipe = v.get("recipe", "surrogate")
    dcfg = replace(cfg.defense, name="nft", recipe=recipe, options=options)
    aug_cfg = replace(cfg, augmentation=AugmentationConfig(**v["augmentation"])) if "augmentation" in v else cfg
    opts = {**dcfg.resolved_options(), "seed": cfg.seed, "device": device, "eval_every": eval_every}
    return build_defense("nft", opts, build_augmentation(aug_cfg, recipe), eval_data=eval_data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--attacks", nargs="+", default=["badnets"])
    p.add_argument("--variants", default=json.dumps(DEFAULT_VARIANTS), help="JSON list (see the docstring)")
    p.add_argument("--epochs", type=int, default=12, help="backdoor training epochs")
    p.add_argument("--eval-every", type=int, default=20, help="NFT's test evaluation period (epochs)")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a CPU smoke run")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    variants = json.loads(a.variants)
    if not isinstance(variants, list) or not all(isinstance(v, dict) and "label" in v and "defense" in v
                                                 for v in variants):
        p.error("--variants must be a JSON list of objects with 'label' and 'defense'")
    torch.backends.cudnn.benchmark = a.device.startswith("cuda")
    cfg = paper_config(a.device, a.epochs, a.quick, a.out, a.attacks)
    if a.quick:
        cfg = replace(cfg, defense=replace(cfg.defense, options={}))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for attack in a.attacks:
        t0 = time.perf_counter()
        run = backdoor(cfg, attack_name=attack)
        ad = ClassificationAdapter(run.num_classes)
        before = ad.evaluate(run.model, run.eval_data)
        record = {"attack": attack, "device": str(a.device), "train_s": time.perf_counter() - t0,
                  "before": before, "variants": []}
        if a.device.startswith("cuda"):
            record["device"] = torch.cuda.get_device_name()
        print(f"{attack}: before ASR {before['asr']:.2f} ACC {before['acc']:.2f} "
              f"({record['train_s']:.0f} s to train or load)", flush=True)
        for v in variants:
            d = purify_and_diagnose(make_defense(cfg, v, a.device, run.eval_data, a.eval_every), run, ad)
            res = d["result"]
            record["variants"].append({
                **v, "after": d["after"], "seconds": d["seconds"], "history": d["history"],
                "search": res.info.get("augmentation_stats"),
                "info": {k: x for k, x in res.info.items() if k not in ("augmentation_stats", "config")}})
            (out / f"{attack}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
            x = d["after"]
            print(f"  {v['label']}: ASR {x['asr']:.2f} ACC {x['acc']:.2f} ({d['seconds']:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
