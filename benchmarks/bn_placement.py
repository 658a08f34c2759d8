"""Where should a mask sit when a conv feeds BatchNorm? Measured on the core's toy BadNets backdoor.

Placements: "bn" (mask at BN's γ; the authors' code) and "weight" (mask on the conv's output channels, BN
kept in eval mode). Recipes: the paper's (shrink 0) and a shrink pull (--shrink, per mask; no guard).
Also the authors' train-mode BN.
Prints a Markdown table of ACC/ASR after purification, mean over seeds.

    uv run python benchmarks/bn_placement.py --seeds 0 1 2
"""

import argparse
import statistics
import time

import torch

from nft_core import NFT, ClassificationAdapter
from nft_core.testing import make_toy_backdoor


def settings(shrink: float):
    return [(p, m, s) for s in (0.0, shrink) for p, m in (("bn", "eval"), ("weight", "eval"), ("bn", "train"))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shrink", type=float, default=0.0167)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter = ClassificationAdapter()
    res = {s: [] for s in settings(args.shrink)}
    before = []
    for seed in args.seeds:
        toy = make_toy_backdoor(seed=seed)
        before.append(adapter.evaluate(toy.model, toy.test))
        for s in res:
            placement, mode, shrink = s
            t0 = time.perf_counter()
            r = NFT(placement=placement, model_mode=mode, shrink=shrink, seed=seed).purify(toy.model, toy.val, adapter)
            m = adapter.evaluate(r.model, toy.test)
            m["time"] = time.perf_counter() - t0
            res[s].append(m)
    mean = lambda rows, k: statistics.mean(r[k] for r in rows)  # noqa: E731
    print(f"seeds {args.seeds}; before: ACC {mean(before, 'acc'):.1f} ASR {mean(before, 'asr'):.1f}")
    print("| placement | BN mode | shrink | ACC after | ASR after | per-seed ASR | NFT s |")
    print("|---|---|---:|---:|---:|---|---:|")
    for s, rows in res.items():
        per = " / ".join(f"{r['asr']:.1f}" for r in rows)
        print(f"| {s[0]} | {s[1]} | {s[2]} | {mean(rows, 'acc'):.1f} | {mean(rows, 'asr'):.1f} | {per} | {mean(rows, 'time'):.1f} |")


if __name__ == "__main__":
    main()
