"""Diagnosis for issue 3: how far can NFT's masks go on a digits model if the trigger were known?

``oracle`` replaces the surrogate trigger by the attack's **real** trigger: every NFT batch is MixUp(1) on
the batch plus ``copies`` copies of it stamped with the real trigger and their true labels (λ = 1) — an
upper bound a defender never has, never a recipe. Everything else is the default's NFT (the surrogate
recipe's ``tune_bias="last"`` and ``average=0.3``). The default's gated pair appends two triggered copies
when both of its triggers are kept, hence ``--copies 2`` to compare like with like. Per-epoch test ACC/ASR
(``eval_every=10``) are recorded, never used to select; the folded model is what NFT returns; the per-class
clean errors of the purified model are recorded too. docs/results/ablations.md "On the retrained models":

    uv run python benchmarks/vision_oracle.py --attacks blend trojan --seeds 0 1 2 --copies 2 \\
        --out benchmarks/results/vision-digits-surrogate/oracle
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _diag import purify_and_diagnose
from surrogate_seeds import bias_probe

from nft_core import ClassificationAdapter, MixUp
from nft_core.config import load_config, to_dataclass
from nft_core.contracts import MixedTarget
from nft_core.pipeline import build_defense
from nft_vision.config import VisionConfig
from nft_vision.workflow import backdoor


class Oracle:
    """MixUp(1) on the batch plus ``copies`` copies of it stamped with the real trigger, true labels, then
    (``clean_fraction``, as the surrogate's option) unmixed clean copies of the batch's first samples."""

    def __init__(self, attack, copies: int = 1, clean_fraction: float = 0.0):
        self.attack, self.copies, self.clean_fraction, self.base = attack, copies, clean_fraction, MixUp(1.0)

    def __repr__(self) -> str:
        return f"Oracle({type(self.attack).__name__}, copies={self.copies}, clean_fraction={self.clean_fraction})"

    def __call__(self, batch, generator):
        x, y, *rest = batch
        xm, ym, *_ = self.base(batch, generator)
        n = x.shape[0]
        lam = torch.as_tensor(ym.lam, dtype=torch.float32).expand(n)
        xt = torch.cat([self.attack.apply(x, generator) for _ in range(self.copies)])
        yt = y.repeat(self.copies)
        kc = round(self.clean_fraction * n)
        xt, yt = torch.cat([xt, x[:kc]]), torch.cat([yt, y[:kc]])
        target = MixedTarget(torch.cat([ym.a, yt]), torch.cat([ym.b, yt]), torch.cat([lam, torch.ones(len(yt))]))
        return (torch.cat([xm, xt]), target, *rest)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attacks", nargs="+", default=["blend"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--clean-fraction", type=float, default=0.0)
    p.add_argument("--bias-probe", action="store_true", help="as surrogate_seeds.py's")
    p.add_argument("--out", required=True)
    p.add_argument("--cfg-options", nargs="*", default=[])
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = to_dataclass(VisionConfig, load_config(None, a.cfg_options))
    for seed in a.seeds:
        for attack in a.attacks:
            run = backdoor(cfg, attack_name=attack)
            ad = ClassificationAdapter(run.num_classes)
            before = ad.evaluate(run.model, run.eval_data)
            opts = {**cfg.defense.resolved_options(), "seed": seed, "eval_every": 10}
            defense = build_defense("nft", opts, Oracle(run.attack, a.copies, a.clean_fraction), eval_data=run.eval_data)
            d = purify_and_diagnose(defense, run, ad)
            r = {"attack": attack, "seed": seed, "copies": a.copies, "clean_fraction": a.clean_fraction, "options": a.cfg_options, "before": before,
                 "after": d["after"], "nft_s": d["seconds"], "history": d["history"]}
            if a.bias_probe:
                r["bias_probe"] = bias_probe(d["result"].model, run.model, run, ad)
            (out / f"{attack}-seed{seed}.json").write_text(json.dumps(r, indent=1, default=str))
            b, x = before, d["after"]
            print(f"{attack} seed {seed} (oracle x{a.copies}, clean {a.clean_fraction:g}): ASR {b['asr']:.2f} -> {x['asr']:.2f}, ACC "
                  f"{b['acc']:.2f} -> {x['acc']:.2f}, class errors {x['per_class_errors']} ({d['seconds']:.0f} s)",
                  flush=True)
            for k, v in r.get("bias_probe", {}).items():
                if isinstance(v, dict):
                    print(f"  {k}: ASR {v['asr']:.2f}, ACC {v['acc']:.2f}, class errors {v['per_class_errors']}")


if __name__ == "__main__":
    main()
