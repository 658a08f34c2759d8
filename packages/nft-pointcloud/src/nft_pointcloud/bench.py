"""``nft-pointcloud bench``: the attack × defense grid on the configured data and model."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from nft_core.bench import run_cells, write_results
from nft_core.pipeline import build_defense

from .config import PointCloudConfig
from .workflow import PointCloudAdapter, backdoor, build_augmentation, resolve_device


def run_grid(cfg: PointCloudConfig, out: Path, progress: bool = False) -> str:
    device = resolve_device(cfg.device)

    def make_attack(name):
        def make():
            run = backdoor(cfg, attack_name=name, device=device, progress=progress)
            return run.model, run.val, run.eval_data, PointCloudAdapter(run.num_classes)

        return make

    def make_defense(name):
        def make():
            opts = dict(cfg.bench.defense_options.get(name, {}))
            if name == "nft":
                opts = {**cfg.defense.resolved_options(), **opts, "seed": cfg.seed, "device": str(device)}
            return build_defense(name, opts, build_augmentation(cfg))

        return make

    rows = run_cells({a: make_attack(a) for a in cfg.bench.attacks},
                     {d: make_defense(d) for d in cfg.bench.defenses})
    header = (f"# nft-pointcloud bench: {cfg.data.name}, {cfg.model.spec}, seed {cfg.seed}, device {device}\n\n"
              "ASR and ACC in %, after each defense; `none` is the backdoored model.")
    return write_results(rows, out, header=header, extra={"config": asdict(cfg), "device": str(device)})
