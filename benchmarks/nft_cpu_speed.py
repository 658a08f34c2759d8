"""NFT's wall time on the CPU with and without its two speed settings, in one process.

Runs the embedded vision default's NFT (the gated surrogate recipe of ``nft-vision purify``) on the cached
digits BadNets model once per setting, ``--repeats`` times in turn: ``standard`` (``channels_last=False``,
``amp=False``: float32 in the standard layout), ``channels-last`` (``channels_last=None`` = auto, on for a
CPU run of a model with a Conv2d; ``amp=False``: the default) and ``bf16-auto`` (auto layout and
``amp="auto"``: bfloat16 where the CPU has it natively, the speed option). It prints the NFT seconds, each
setting's ratio to ``standard`` and ACC / ASR after each run (both settings change only rounding, so the
purified model should score the same up to a flipped image or two):

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

SETTINGS = {"standard": {"channels_last": False, "amp": False},
            "channels-last": {"channels_last": None, "amp": False},
            "bf16-auto": {"channels_last": None, "amp": "auto"}}


def run_once(cfg: VisionConfig, run, setting: str) -> dict:
    ad = ClassificationAdapter(run.num_classes)
    opts = {**cfg.defense.resolved_options(), **SETTINGS[setting]}
    defense = build_defense("nft", opts, build_augmentation(cfg))
    t0 = time.perf_counter()
    res = defense.purify(run.model, run.val, ad)
    seconds = time.perf_counter() - t0
    after = ad.evaluate(res.model, run.eval_data)
    return {"setting": setting, "channels_last": res.info["channels_last"], "amp": res.info["amp"],
            "nft_s": round(seconds, 2), "acc": after["acc"], "asr": after.get("asr"),
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
        for setting in SETTINGS:
            row = run_once(cfg, run, setting)
            row["repeat"] = r
            rows.append(row)
            print(f"repeat {r} {setting:13}  NFT {row['nft_s']:7.2f} s  ACC {row['acc']:.2f}  ASR {row['asr']:.2f}"
                  f"  (channels_last={row['channels_last']}, amp={row['amp']})", flush=True)
    ratios = {}
    for setting in SETTINGS:
        mine = [x["nft_s"] for x in rows if x["setting"] == setting]
        base = [x["nft_s"] for x in rows if x["setting"] == "standard"]
        ratios[setting] = [m / b for m, b in zip(mine, base)]
        print(f"{setting:13} mean {sum(mine) / len(mine):7.2f} s; / standard per repeat: "
              f"{', '.join(f'{x:.3f}' for x in ratios[setting])}")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"cfg_options": a.cfg_options, "runs": rows,
                                                      "ratios": ratios}, indent=1, default=str))


if __name__ == "__main__":
    main()
