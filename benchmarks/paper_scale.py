"""Paper scale on one GPU: the procedural CIFAR-scale set (50k/10k at 32×32, 10 classes), PreActResNet-18,
BadNets, Blend and WaNet at 10% poison, 1% validation (500 images), NFT (vision's surrogate recipe, NFT+ and
the paper's recipe) and every baseline at its paper defaults, on the same backdoored model, seed and device (issue 4).

Each attack's grid is written as soon as it finishes (``OUT/<attack>/results.{csv,json,md}``, from
``nft-vision bench``'s own harness), then the combined table ``OUT/results.md`` with the device name.

    uv run python benchmarks/paper_scale.py --device cuda --out benchmarks/results/paper-scale-h200
    uv run python benchmarks/paper_scale.py --device cpu --quick --out /tmp/ps    # a CPU smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from nft_vision.bench import run_grid
from nft_vision.config import (
    AttackConfig,
    BenchConfig,
    DataConfig,
    DefenseConfig,
    ModelConfig,
    TrainConfig,
    VisionConfig,
)

DEFENSES = ["nft-surrogate", "nft", "nft-paper", "ft", "ftsam", "fp", "nad", "ibau", "rnp", "awm", "anp", "mcr"]


def paper_config(device: str, epochs: int, quick: bool, out: str, attacks: list[str] | None = None,
                 defenses: list[str] | None = None) -> VisionConfig:
    """The paper-scale setting (``quick``: the tiny CPU smoke version); ``out/cache`` holds the models."""
    sizes = {"n_train": 600, "n_test": 200} if quick else {"n_train": 50000, "n_test": 10000}
    return VisionConfig(
        data=DataConfig(name="procedural", options=sizes, val_ratio=0.01 if not quick else 0.1),
        model=ModelConfig(spec="preactresnet18", width=8 if quick else None),
        attack=AttackConfig(poison_rate=0.1, target=0),
        train=TrainConfig(epochs=1 if quick else epochs, lr=0.1, batch_size=128, augment=True,
                          amp=device.startswith("cuda")),
        defense=DefenseConfig(name="nft", recipe="nft+",
                              options={"epochs": 2} if quick else {}),
        bench=BenchConfig(attacks=list(attacks or ["badnets"]), defenses=list(defenses or DEFENSES),
                          defense_options=({d: {"epochs": 1} for d in ("ft", "ftsam", "nad", "awm")}
                                           | {"anp": {"iterations": 4}, "ibau": {"rounds": 1},
                                              "mcr": {"curve_epochs": 1, "ft_epochs": 1}}
                                           if quick else {})),
        device=device, cache_dir=str(Path(out) / "cache"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--attacks", nargs="+", default=["badnets", "blend", "wanet"])
    p.add_argument("--defenses", nargs="+", default=DEFENSES)
    p.add_argument("--epochs", type=int, default=15, help="backdoor training epochs")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a CPU smoke run")
    p.add_argument("--out", default="benchmarks/results/paper-scale")
    a = p.parse_args()
    torch.backends.cudnn.benchmark = a.device.startswith("cuda")
    cfg = paper_config(a.device, a.epochs, a.quick, a.out, a.attacks, a.defenses)
    sizes = cfg.data.options
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else platform.processor() or "cpu"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tables, t_all = [], time.perf_counter()
    for attack in a.attacks:
        t0 = time.perf_counter()
        c = replace(cfg, bench=replace(cfg.bench, attacks=[attack]))
        md = run_grid(c, out / attack)
        tables.append(f"### {attack} ({time.perf_counter() - t0:.0f} s with training)\n\n{md}")
        print(tables[-1], flush=True)
    meta = {"device": name, "torch": torch.__version__, "date": dt.date.today().isoformat(), "quick": a.quick,
            "epochs": cfg.train.epochs, "sizes": sizes, "wall_s": time.perf_counter() - t_all}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "results.md").write_text(
        f"# Paper scale — {name}, torch {torch.__version__}, {meta['date']}\n\n"
        f"Procedural CIFAR-scale set ({sizes['n_train']}/{sizes['n_test']}), PreActResNet-18 trained "
        f"{cfg.train.epochs} epochs per attack, 10% poison, target 0, 1% validation; ASR/ACC in %, wall s "
        f"per defense on the same device. Total {meta['wall_s']:.0f} s.\n\n" + "\n\n".join(tables) + "\n")


if __name__ == "__main__":
    main()
