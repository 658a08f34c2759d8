"""``nft-detect bench``: clean-image backdoor modes × defenses on the configured data and model (a
multi-label classifier, or a detector with ``model.family=detector``: mAP is then COCO mAP@[.5:.95] and
ASR the box-level ASR). ``bench.defenses`` takes ``nft`` (the configured recipe), ``nft-paper`` (the
paper's recipe) and any baseline of nft-core."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from nft_core.bench import run_cells, write_results
from nft_core.pipeline import build_defense

from .config import DetectConfig
from .workflow import backdoor, build_augmentation, multilabel_adapter, resolve_device


def run_grid(cfg: DetectConfig, out: Path, progress: bool = False) -> str:
    device = resolve_device(cfg.device)
    detector = cfg.model.family == "detector"
    if detector:
        from .detection import (
            backdoor_detector,
            build_detection_augmentation,
            detection_adapter,
            with_detector_defense,
        )

        augmentation = lambda: build_detection_augmentation(cfg)  # noqa: E731
        cfg = with_detector_defense(cfg)  # NFT's masks also at the heads' GroupNorm γ
    else:
        augmentation = lambda: build_augmentation(cfg)  # noqa: E731

    def make_attack(mode):
        def make():
            if detector:
                run = backdoor_detector(cfg, mode=mode, device=device, progress=progress)
                return run.model, run.val, run.eval_data, detection_adapter(len(run.classes))
            run = backdoor(cfg, mode=mode, device=device, progress=progress)
            return run.model, run.val, run.eval_data, multilabel_adapter(cfg, len(run.classes))

        return make

    def make_defense(name):
        def make():
            opts = dict(cfg.bench.defense_options.get(name, {}))
            if name in ("nft", "nft-paper"):  # the configured recipe (NFT+ by default) and the paper's, side by side
                d = cfg.defense if name == "nft" else replace(cfg.defense, recipe="paper")
                opts = {**d.resolved_options(), **opts, "seed": cfg.seed, "device": str(device)}
                return build_defense("nft", opts, augmentation())
            return build_defense(name, opts, augmentation())

        return make

    rows = run_cells({a: make_attack(a) for a in cfg.bench.attacks},
                     {d: make_defense(d) for d in cfg.bench.defenses}, clean_key="map")
    header = (f"# nft-detect bench: {cfg.data.name}, {cfg.model.spec}, seed {cfg.seed}, device {device}\n\n"
              "ASR and mAP in %, after each defense; `none` is the backdoored model.")
    return write_results(rows, out, clean_name="mAP", header=header, extra={"config": asdict(cfg), "device": str(device)})
