"""``nft-pointcloud``: backdoor, purify, evaluate and benchmark point-cloud classifiers.

    nft-pointcloud purify                     # embedded default: generated shapes + PointBA-I + NFT+
    nft-pointcloud attack --cfg modelnet40 --cfg-options data.root=data/ModelNet40 attack.name=pointba_o
    nft-pointcloud purify --model pointnet2_ssg --checkpoint suspect.safetensors \\
        --val val.npz --test test.npz --poisoned poisoned.npz --target 0 --out runs/mine
    nft-pointcloud evaluate --checkpoint runs/mine/purified.safetensors --test test.npz --poisoned p.npz
    nft-pointcloud bench --cfg-options "bench.defenses=['nft','ft']" --out runs/pc-bench
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from nft_core.checkpoint import atomic_write, save_model, save_state_dict
from nft_core.runs import run_directory
from nft_core.task_cli import TaskCLI

from .config import PointCloudConfig
from .workflow import (
    PointCloudAdapter,
    backdoor,
    build_augmentation,
    load_user_inputs,
    resolve_device,
    save_npz,
)


class PointCloudCLI(TaskCLI):
    prog = "nft-pointcloud"
    description = "Backdoor purification for point-cloud classifiers (NFT and baselines)."
    config_cls = PointCloudConfig
    configs_dir = Path(__file__).parent / "configs"

    def add_verb_args(self, verb, p):
        g = p.add_argument_group("your own model (purify / evaluate)")
        g.add_argument("--model", help="pointnet2_ssg | pointnet2_msg | pointnet | dgcnn | pkg.mod:callable")
        g.add_argument("--checkpoint", help=".safetensors or state-dict .pt to load into --model")
        g.add_argument("--num-classes", type=int)
        g.add_argument("--val", help="clean validation clouds: .npz (points, y)")
        g.add_argument("--test", help="clean test clouds: .npz (points, y)")
        g.add_argument("--poisoned", help="triggered test clouds with TRUE labels: .npz (points, y[, y_target])")
        g.add_argument("--target", type=int, help="the attack's target class")
        if verb in ("purify", "bench"):
            p.add_argument("--defense", help="nft (default) or a baseline from nft_core (ft, fp, anp, ...)")

    def load(self, args):
        cfg = super().load(args)
        for flag, (section, key) in {
            "model": ("model", "spec"), "checkpoint": ("model", "checkpoint"), "num_classes": ("data", "num_classes"),
            "val": ("data", "val_path"), "test": ("data", "test_path"), "poisoned": ("data", "poisoned_path"),
            "target": ("attack", "target"), "defense": ("defense", "name"),
        }.items():
            value = getattr(args, flag, None)
            if value is not None:
                setattr(getattr(cfg, section), key, value)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return cfg

    def attack(self, cfg: PointCloudConfig, args) -> int:
        """Train a backdoored model; save model, attack metadata, validation and poisoned test sets."""
        out = Path(args.out or f"runs/pointcloud-attack-{cfg.attack.name}")
        run = backdoor(cfg, use_cache=False, progress=not args.quiet)
        metrics = PointCloudAdapter().evaluate(run.model, run.eval_data)
        with run_directory(out) as d:
            save_model(run.model, d / "model.safetensors")
            if run.attack.state_dict():
                save_state_dict(run.attack.state_dict(), d / "attack_state.safetensors")
            save_npz(d / "val.npz", run.val)
            save_npz(d / "test.npz", run.eval_data.clean)
            save_npz(d / "poisoned_test.npz", run.eval_data.poisoned)
            meta = {**{k: v for k, v in run.meta.items() if k != "val_indices"}, "metrics": metrics,
                    "config": asdict(cfg)}
            (d / "attack.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        print(f"{cfg.attack.name}: ACC {metrics['acc']:.2f}  ASR {metrics['asr']:.2f}  -> {out}")
        return 0

    def purify(self, cfg: PointCloudConfig, args) -> int:
        """Purify a model (the embedded default without --checkpoint) and write a run directory."""
        device = resolve_device(cfg.device)
        if cfg.model.checkpoint:
            run = load_user_inputs(cfg, trust=args.trust_checkpoint, device=device)
            attack_name = "user"
        else:
            if not args.quiet:
                sys.stderr.write(f"backdoored model: {cfg.attack.name} on {cfg.data.name} (cached after the first run)\n")
            run = backdoor(cfg, device=device, progress=not args.quiet)
            attack_name = cfg.attack.name
        _, text = self.purify_run(cfg, args, task="pointcloud", run=run, attack_name=attack_name,
                        adapter=PointCloudAdapter(run.num_classes), augmentation=build_augmentation(cfg),
                        device=device, unit="clouds")
        print(text)
        return 0

    def evaluate(self, cfg: PointCloudConfig, args) -> int:
        """Evaluate a checkpoint: ACC on the clean test set, ASR/LCR on the poisoned test set."""
        run = load_user_inputs(cfg, trust=args.trust_checkpoint) if cfg.model.checkpoint else \
            backdoor(cfg, progress=not args.quiet)
        metrics = PointCloudAdapter().evaluate(run.model, run.eval_data)
        print(json.dumps(metrics))
        if args.out:
            atomic_write(args.out, lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
        return 0

    def bench(self, cfg: PointCloudConfig, args) -> int:
        """Attack × defense grid on one seed and device: results.csv / .json / .md."""
        from .bench import run_grid

        print(run_grid(cfg, Path(args.out or "runs/pointcloud-bench"), progress=not args.quiet))
        return 0


#: ``--cfg-options`` that shrink the embedded default to seconds (``nft matrix --quick``, CI smoke runs).
QUICK_OPTIONS = ["data.shapes_train=5", "data.shapes_test=2", "data.num_points=64", "model.width=4",
                 "model.kwargs={'npoints': [16, 8], 'nsample': 8}", "train.epochs=2", "defense.options.epochs=2"]


def main(argv=None) -> int:
    return PointCloudCLI().main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
