"""NFT's wall time on the CPU with and without the channels-last layout, in one process.

Runs the embedded vision default's NFT (the gated surrogate recipe of ``nft-vision purify``) on the cached
digits BadNets model once per setting of ``defense.options.channels_last`` (``False``, then ``None`` = auto,
which is on for a CPU run of a model with a Conv2d), ``--repeats`` times alternating, and prints the NFT
seconds, the ratio auto / off, and ACC / ASR after each run (the layout changes only the summation order,
so the purified model should score the same up to a flipped image or two):

    uv run python benchmarks/nft_cpu_speed.py --repeats 2 --out benchmarks/results/cpu-speed

``--cfg-options`` are passed to the vision config (e.g. ``attack.name=blend``). Threads: torch's default
(both cores of the build machine), as ``nft-vision purify`` runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nft_core import ClassificationAdapter
from nft_core.config import load_config, to_dataclass
from nft_core.pipeline import build_defense
from nft_vision.config import VisionConfig
from nft_vision.workflow import backdoor, build_augmentation


def run_once(cfg: VisionConfig, run, channels_last) -> dict:
    ad = ClassificationAdapter(run.num_classes)
    opts = {**cfg.defense.resolved_options(), "channels_last": channels_last}
    defense = build_defense("nft", opts, build_augmentation(cfg))
    t0 = time.perf_counter()
    res = defense.purify(run.model, run.val, ad)
    seconds = time.perf_counter() - t0
    after = ad.evaluate(res.model, run.eval_data)
    return {"channels_last": channels_last, "nft_s": round(seconds, 2), "acc": after["acc"], "asr": after.get("asr"),
            "search": res.info["augmentation_stats"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=None, help="folder for results.json (optional)")
    p.add_argument("--cfg-options", nargs="*", default=[])
    a = p.parse_args()
    cfg = to_dataclass(VisionConfig, load_config(None, a.cfg_options))
    run = backdoor(cfg)
    rows = []
    for r in range(a.repeats):
        for cl in (False, None):
            row = run_once(cfg, run, cl)
            row["repeat"] = r
            rows.append(row)
            print(f"repeat {r} channels_last={cl!s:5}  NFT {row['nft_s']:7.2f} s  ACC {row['acc']:.2f}  "
                  f"ASR {row['asr']:.2f}", flush=True)
    off = [x["nft_s"] for x in rows if x["channels_last"] is False]
    auto = [x["nft_s"] for x in rows if x["channels_last"] is None]
    ratios = [b / o for o, b in zip(off, auto)]
    print(f"auto / off per repeat: {', '.join(f'{x:.3f}' for x in ratios)}; "
          f"mean off {sum(off) / len(off):.2f} s, mean auto {sum(auto) / len(auto):.2f} s")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"cfg_options": a.cfg_options, "runs": rows,
                                                      "ratios": ratios}, indent=1, default=str))


if __name__ == "__main__":
    main()
