"""``nft``: what is installed, the core demo, and the cross-task matrix.

    nft list          installed task packages, defenses and augmentations
    nft demo          train a tiny backdoored CNN on generated data, purify it with NFT, print the table
    nft matrix        every installed task's embedded default: NFT and FT-SAM, one table
"""

from __future__ import annotations

import sys
import time
from importlib import metadata

from .cli_common import cli_entry, make_parser, setup_logging
from .matrix import TASK_DISTS


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
    from .surrogate import SurrogateTrigger

    print("task packages:")
    for dist, version, scripts in _installed_tasks():
        print(f"  {dist} {version}  ({scripts})")
    print("defenses:")
    for name, cls in DEFENSES.items():
        print(f"  {name:8s} {_first_line(cls)}")
    print("augmentations (core):")
    for cls in (MixUp, NoAugmentation, SurrogateTrigger):
        print(f"  {cls.__name__:16s} {_first_line(cls)}")
    print("  (each task package adds its own: `augmentation.name=` in its configs)")
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


def cmd_matrix(args) -> int:
    from .matrix import matrix_markdown, run_matrix
    from .runs import run_directory, write_json

    t0 = time.perf_counter()

    def log(msg):
        if not args.quiet:
            sys.stderr.write(f"[{time.perf_counter() - t0:6.0f} s] {msg}\n")

    baseline = None if args.baseline == "none" else args.baseline
    if args.out:
        with run_directory(args.out) as d:
            rows = run_matrix(args.tasks, quick=args.quick, baseline=baseline, out=d, log=log, ray=args.ray)
            write_json(d / "matrix.json", rows)
            (d / "matrix.md").write_text(matrix_markdown(rows) + "\n")
    else:
        rows = run_matrix(args.tasks, quick=args.quick, baseline=baseline, log=log, ray=args.ray)
    print(matrix_markdown(rows))
    print(f"\n{len(rows)} runs in {time.perf_counter() - t0:.0f} s{' (quick settings)' if args.quick else ''}")
    return 1 if any("error" in r for r in rows) else 0


def _main(argv=None) -> int:
    p = make_parser("nft", "Neural mask Fine-Tuning: backdoor purification toolkit")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="installed task packages, defenses and augmentations")
    d = sub.add_parser("demo", help="tiny end-to-end purification on generated data (about a minute on CPU)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--shrink", type=float, default=0.02, help="shrink of the NFT+ recipe (docs/method.md)")
    d.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    m = sub.add_parser("matrix", help="every installed task's embedded default (NFT + a baseline), one table")
    m.add_argument("--quick", action="store_true", help="tiny settings (seconds per task; a smoke test)")
    m.add_argument("--tasks", nargs="+", help="subset of: vision detection video pointcloud nlg")
    m.add_argument("--baseline", default="ftsam", help="baseline defense beside NFT ('none' to skip)")
    m.add_argument("--out", help="folder for the run directories and matrix.md / matrix.json")
    m.add_argument("--quiet", action="store_true")
    m.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the tasks as Ray tasks: a local cluster, or ADDRESS (auto | ray://host:10001)")
    args = p.parse_args(argv)
    setup_logging(getattr(args, "quiet", False))
    return {"list": cmd_list, "demo": cmd_demo, "matrix": cmd_matrix}[args.cmd](args)


def main(argv=None) -> int:
    return cli_entry(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
