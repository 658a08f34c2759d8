"""Diagnosis for issue 3: can a *targeted* universal L2 search single out SIG's class (Neural Cleanse's criterion)?

For every class ``c`` and every ``eps``: one universal perturbation of L2 norm ≤ ``eps`` on a batch of the
cached model's clean validation images (those not of class ``c``), ``--steps`` normalized-gradient steps
*down* the cross-entropy of class ``c``; prints the share of the batch sent to ``c`` and the cosine of the
perturbation with the attack's real trigger (where the attack has an additive ``trigger``). If the
attacker's class needed a markedly smaller norm than the others, a per-class L2 search would find SIG.
docs/results/ablations.md "SIG: the no-trigger-found fallback" (measured: it does not):

    uv run python benchmarks/sig_probe.py --out benchmarks/results/vision-digits-surrogate/sig/probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from nft_core.config import load_config, to_dataclass
from nft_vision.config import VisionConfig
from nft_vision.workflow import backdoor


def targeted_universal_l2(model, x, target: int, eps: float, steps: int) -> torch.Tensor:
    """One perturbation (1, C, H, W) of norm ≤ eps pulling every image of ``x`` to ``target``."""
    d = torch.zeros_like(x[:1])
    y = torch.full((len(x),), target)
    for _ in range(steps):
        d.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model((x + d).clamp(0, 1)), y), d)
        d = (d - eps / 10 * g / g.norm().clamp_min(1e-12)).detach()
        d = d * (eps / d.norm().clamp_min(1e-12)).clamp(max=1.0)
    return d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attack", default="sig")
    p.add_argument("--eps", nargs="+", type=float, default=[1.0, 2.0, 4.0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--out", default=None, help="JSON file for the table (optional)")
    p.add_argument("--cfg-options", nargs="*", default=[])
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg = to_dataclass(VisionConfig, load_config(None, a.cfg_options))
    run = backdoor(cfg, attack_name=a.attack)
    model = run.model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    idx = torch.randperm(len(run.val), generator=torch.Generator().manual_seed(0))[: a.batch]
    x = torch.stack([run.val[int(i)][0] for i in idx])
    y = torch.tensor([int(run.val[int(i)][1]) for i in idx])
    trig = run.attack.trigger(tuple(x.shape[1:])) if hasattr(run.attack, "trigger") else None
    with torch.no_grad():
        pred = model(run.attack.apply(x, torch.Generator().manual_seed(0))).argmax(1)
    t = run.attack.target
    real = float((pred[y != t] == t).float().mean())
    print(f"{a.attack}: the real trigger sends {real:.2%} of the batch's other classes to class {t}"
          + (f" (L2 norm {float(trig.norm()):.2f})" if trig is not None else ""), flush=True)
    table = {}
    for eps in a.eps:
        row = {}
        for c in range(run.num_classes):
            keep = y != c
            d = targeted_universal_l2(model, x[keep], c, eps, a.steps)
            with torch.no_grad():
                rate = float((model((x[keep] + d).clamp(0, 1)).argmax(1) == c).float().mean())
            cos = float(F.cosine_similarity(d.flatten(), trig.flatten(), 0)) if trig is not None else None
            row[c] = {"rate": rate, "cos": cos}
        table[eps] = row
        print(f"eps {eps:g}: " + "  ".join(f"{c}: {v['rate']:.2f}" + (f"/{v['cos']:+.2f}" if v["cos"] is not None else "")
                                           for c, v in row.items()), flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"attack": a.attack, "target": t, "real_trigger_rate": real,
                                           "steps": a.steps, "table": table}, indent=1))


if __name__ == "__main__":
    main()
