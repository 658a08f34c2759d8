"""``nft``: what is installed, and the core demo.

    nft list          installed task packages, defenses and augmentations
    nft demo          train a tiny backdoored CNN on generated data, purify it with NFT, print the table
"""

from __future__ import annotations

import sys
import time
from importlib import metadata

from .cli_common import cli_entry, make_parser, setup_logging

TASK_DISTS = ["nft-vision", "nft-detection", "nft-video", "nft-pointcloud", "nft-nlg"]


def _installed_tasks() -> list[tuple[str, str, str]]:
    out = []
    for dist in TASK_DISTS:
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        scripts = [ep.name for ep in d.entry_points if ep.group == "console_scripts"]
        out.append((dist, d.version, ", ".join(scripts)))
    return out


def _first_line(obj) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def cmd_list(args) -> int:
    from .augment import MixUp, NoAugmentation
    from .defenses import DEFENSES

    print("task packages:")
    for dist, version, scripts in _installed_tasks():
        print(f"  {dist} {version}  ({scripts})")
    print("defenses:")
    for name, cls in DEFENSES.items():
        print(f"  {name:8s} {_first_line(cls)}")
    print("augmentations (core):")
    for cls in (MixUp, NoAugmentation):
        print(f"  {cls.__name__:15s} {_first_line(cls)}")
    return 0


def cmd_demo(args) -> int:
    import torch

    from . import NFT, ClassificationAdapter
    from .testing.toy import make_toy_backdoor

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sys.stderr.write("training a small CNN with a BadNets patch backdoor on generated data...\n")
    toy = make_toy_backdoor(seed=args.seed)
    adapter = ClassificationAdapter()
    rows = {"before": adapter.evaluate(toy.model, toy.test)}
    times = {}
    for label, shrink in (("NFT paper recipe", 0.0), (f"NFT+ (shrink {args.shrink:g})", args.shrink)):
        sys.stderr.write(f"purifying with {label} ({len(toy.val)} clean validation images)...\n")
        guard = 1.0 if shrink else None
        res = NFT(seed=args.seed, progress=not args.quiet, shrink=shrink, guard=guard).purify(toy.model, toy.val, adapter)
        rows[label] = adapter.evaluate(res.model, toy.test)
        times[label] = res.wall_time
    print(f"\n{'model':28s} {'ACC':>7s} {'ASR':>7s} {'LCR':>7s} {'NFT s':>7s}")
    for label, m in rows.items():
        t = f"{times[label]:7.1f}" if label in times else f"{'':7s}"
        print(f"{label:28s} {m['acc']:7.2f} {m['asr']:7.2f} {m['lcr']:7.2f} {t}")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s (toy task: 10 classes of 16x16 gratings, 3x3 patch trigger)")
    return 0


def _main(argv=None) -> int:
    p = make_parser("nft", "Neural mask Fine-Tuning: backdoor purification toolkit")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="installed task packages, defenses and augmentations")
    d = sub.add_parser("demo", help="tiny end-to-end purification on generated data (about a minute on CPU)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--shrink", type=float, default=0.02, help="shrink of the NFT+ recipe (see README)")
    d.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    setup_logging(getattr(args, "quiet", False))
    return {"list": cmd_list, "demo": cmd_demo}[args.cmd](args)


def main(argv=None) -> int:
    return cli_entry(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
