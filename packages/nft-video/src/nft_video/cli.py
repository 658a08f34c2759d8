"""``nft-video``: backdoor, purify, evaluate and benchmark action-recognition models.

    nft-video purify                        # embedded default: synthetic clips + patch trigger + NFT (surrogate recipe)
    nft-video attack --cfg ucf101 --cfg-options data.root=data/UCF-101 --out runs/ucf-patch
    nft-video purify --model cnn_lstm_small --checkpoint suspect.safetensors \\
        --val val.npz --test test.npz --poisoned poisoned.npz --target 0 --out runs/mine
    nft-video evaluate --checkpoint runs/mine/purified.safetensors --test test.npz --poisoned poisoned.npz
    nft-video bench --cfg-options "bench.defenses=['nft','ft']" --out runs/video-bench
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from nft_core.checkpoint import atomic_write, save_model, save_state_dict
from nft_core.runs import run_directory
from nft_core.task_cli import TaskCLI

from .adapter import VideoAdapter
from .config import VideoConfig
from .data import save_npz_clips
from .workflow import backdoor, build_augmentation, load_user_inputs, resolve_device

log = logging.getLogger("nft")


class VideoCLI(TaskCLI):
    prog = "nft-video"
    description = "Backdoor purification for action-recognition models (NFT and baselines)."
    config_cls = VideoConfig
    configs_dir = Path(__file__).parent / "configs"

    def add_verb_args(self, verb, p):
        g = p.add_argument_group("your own model (purify / evaluate)")
        g.add_argument("--model", help="cnn_lstm_small | cnn_lstm | torchvision:r3d_18 | pkg.mod:callable")
        g.add_argument("--checkpoint", help=".safetensors or state-dict .pt to load into --model")
        g.add_argument("--num-classes", type=int)
        g.add_argument("--val", help="clean validation clips (.npz: x uint8 (N,T,H,W,C), y)")
        g.add_argument("--test", help="clean test clips (.npz)")
        g.add_argument("--poisoned", help="triggered test clips with TRUE labels (.npz)")
        g.add_argument("--target", type=int, help="the attack's target class")
        if verb in ("purify", "bench"):
            p.add_argument("--defense", help="nft (default) or a baseline defense from nft-core")

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

    def attack(self, cfg: VideoConfig, args) -> int:
        """Train a backdoored model; save it with the validation, clean and poisoned test clips."""
        out = Path(args.out or f"runs/video-attack-{cfg.attack.name}")
        run = backdoor(cfg, use_cache=False, progress=not args.quiet)
        metrics = VideoAdapter().evaluate(run.model, run.eval_data)
        with run_directory(out) as d:
            save_model(run.model, d / "model.safetensors")
            if run.attack.state_dict():
                save_state_dict(run.attack.state_dict(), d / "attack_state.safetensors")
            save_npz_clips(d / "val.npz", run.val)
            save_npz_clips(d / "test.npz", run.eval_data.clean)
            save_npz_clips(d / "poisoned_test.npz", run.eval_data.poisoned)
            meta = {**{k: v for k, v in run.meta.items() if k != "val_indices"}, "metrics": metrics,
                    "config": asdict(cfg)}
            (d / "attack.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        print(f"{cfg.attack.name}: ACC {metrics['acc']:.2f}  ASR {metrics['asr']:.2f}  -> {out}")
        return 0

    def purify(self, cfg: VideoConfig, args) -> int:
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
        skipped = run.meta.get("data", {}).get("skipped_count")
        note = f"; skipped videos {skipped}" if skipped and any(skipped.values()) else ""
        _, text = self.purify_run(cfg, args, task="video", run=run, attack_name=attack_name,
                        adapter=VideoAdapter(run.num_classes), augmentation=build_augmentation(cfg), device=device,
                        unit="clips", note=note, extra={"skipped_videos": run.meta.get("data", {}).get("skipped")})
        print(text)
        return 0

    def evaluate(self, cfg: VideoConfig, args) -> int:
        """Evaluate a checkpoint: ACC on the clean test clips, ASR/LCR on the poisoned ones."""
        if cfg.model.checkpoint:
            if cfg.data.val_path is None:
                cfg.data.val_path = cfg.data.test_path
            run = load_user_inputs(cfg, trust=args.trust_checkpoint)
        else:
            run = backdoor(cfg, progress=not args.quiet)
        metrics = VideoAdapter().evaluate(run.model, run.eval_data)
        print(json.dumps(metrics))
        if args.out:
            atomic_write(args.out, lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
        return 0

    def bench(self, cfg: VideoConfig, args) -> int:
        """Attack × defense grid on one seed and device: results.csv / .json / .md."""
        from .bench import run_grid

        print(run_grid(cfg, Path(args.out or "runs/video-bench"), progress=not args.quiet))
        return 0


#: ``--cfg-options`` that shrink the embedded default to seconds (``nft matrix --quick``, CI smoke runs).
QUICK_OPTIONS = ["data.synthetic_clips=15", "data.synthetic_classes=3", "data.image_size=16", "train.epochs=2",
                 "model.kwargs={'width': 4, 'hidden': 8}", "defense.options={'epochs': 2, 'batch_size': 16}"]


def main(argv=None) -> int:
    return VideoCLI().main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
