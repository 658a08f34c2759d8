"""Per-seed runs of an NFT recipe on the cached digits models, with per-epoch test ACC/ASR for diagnosis.

The per-epoch test numbers (``eval_every``) are recorded only, never used to pick anything; the folded
model is what NFT returns. Also records the per-class clean errors of the purified model and the
surrogate search's statistics. docs/results/ablations.md "The surrogate recipe's parts" was measured with it:

    uv run python benchmarks/surrogate_seeds.py --attacks badnets blend trojan wanet dynamic --seeds 0 1 2 \\
        --out benchmarks/results/vision-digits-surrogate/recipe --cfg-options defense.recipe=paper \\
        augmentation.name=surrogate "augmentation.options={'fooling_target': 0.99}" \\
        defense.options.tune_bias=last defense.options.average=0.3

``--bias-probe`` also records how much of the purification is the tuned output bias: the purified model with
the output layer's original bias put back, and with that bias re-fitted on the clean validation set (20 and 50
Adam steps, lr 0.05, nothing else trained; docs/results/ablations.md "Against the real trigger").

``--seeds`` sets NFT's seed only (validation batches, MixUp draws); the backdoored model is the cached one
of the embedded default's attack. One thread per run (two runs fit the 2-core build machine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from _diag import per_class_errors, purify_and_diagnose

from nft_core import ClassificationAdapter
from nft_core.config import load_config, to_dataclass
from nft_core.pipeline import build_defense
from nft_vision.config import VisionConfig
from nft_vision.workflow import backdoor, build_augmentation


def bias_probe(model, original, run, adapter) -> dict:
    """ACC/ASR (and clean per-class errors) of ``model`` with its last Linear layer's bias replaced by
    ``original``'s, and with that bias re-fitted by CE on the clean validation set (the weights untouched)."""
    name = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    last, b0 = model.get_submodule(name), model.get_submodule(name).bias.detach().clone()
    x = torch.stack([run.val[i][0] for i in range(len(run.val))])
    y = torch.tensor([int(run.val[i][1]) for i in range(len(run.val))])
    out, was = {}, model.training
    model.eval()
    for label, steps in (("original_bias", None), ("refit20", 20), ("refit50", 50)):
        with torch.no_grad():
            last.bias.copy_(original.get_submodule(name).bias if steps is None else b0)
        if steps:
            bias = last.bias.requires_grad_(True)
            opt = torch.optim.Adam([bias], lr=0.05)
            for _ in range(steps):
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
            bias.requires_grad_(False)
        m = adapter.evaluate(model, run.eval_data)
        out[label] = {"acc": m["acc"], "asr": m["asr"], "bias": [round(float(v), 3) for v in last.bias.detach()],
                      "per_class_errors": per_class_errors(model, run.eval_data.clean, run.num_classes)}
    with torch.no_grad():
        last.bias.copy_(b0)
    model.train(was)
    out["purified_bias"] = [round(float(v), 3) for v in b0]
    return out


def run_one(attack: str, seed: int, options: list[str], probe: bool = False) -> dict:
    cfg = to_dataclass(VisionConfig, load_config(None, options))
    run = backdoor(cfg, attack_name=attack)
    ad = ClassificationAdapter(run.num_classes)
    before = ad.evaluate(run.model, run.eval_data)
    opts = {**cfg.defense.resolved_options(), "seed": seed, "eval_every": 5}
    defense = build_defense("nft", opts, build_augmentation(cfg), eval_data=run.eval_data)
    d = purify_and_diagnose(defense, run, ad)
    res = d["result"]
    out = {"attack": attack, "seed": seed, "options": options, "before": before, "after": d["after"],
           "nft_s": d["seconds"], "search": res.info["augmentation_stats"], "recipe": res.info["config"],
           "history": d["history"],
           "guard": {k: res.info.get(k) for k in ("guard", "guard_requested", "guard_reverted", "guard_reference",
                                                   "selected_epoch")}}
    if probe:
        out["bias_probe"] = bias_probe(res.model, run.model, run, ad)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attacks", nargs="+", default=["badnets"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", required=True)
    p.add_argument("--cfg-options", nargs="*", default=[])
    p.add_argument("--bias-probe", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        for attack in a.attacks:
            r = run_one(attack, seed, a.cfg_options, a.bias_probe)
            (out / f"{attack}-seed{seed}.json").write_text(json.dumps(r, indent=1, default=str))
            b, x = r["before"], r["after"]
            print(f"{attack} seed {seed}: ASR {b['asr']:.2f} -> {x['asr']:.2f}, ACC {b['acc']:.2f} -> "
                  f"{x['acc']:.2f} ({r['nft_s']:.0f} s)", flush=True)
            for k, v in r.get("bias_probe", {}).items():
                if isinstance(v, dict):
                    print(f"  {k}: ASR {v['asr']:.2f}, ACC {v['acc']:.2f}, class errors {v['per_class_errors']}")


if __name__ == "__main__":
    main()
