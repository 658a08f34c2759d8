"""``nft-vision``: backdoor, purify, evaluate and benchmark image classifiers.

    nft-vision purify                       # embedded default: digits + BadNets + NFT, before/after table
    nft-vision attack --cfg cifar10 --cfg-options data.root=... attack.name=blend --out runs/blend
    nft-vision purify --model mypkg.nets:build --checkpoint suspect.safetensors \\
        --val val.npz --test test.npz --poisoned poisoned.npz --target 0 --out runs/mine
    nft-vision evaluate --model ... --checkpoint runs/mine/purified.safetensors --test ... --poisoned ...
    nft-vision purify --backdoorbench record/badnet/attack_result.pt --trust-checkpoint --model pkg.mod:PreActResNet18 \
        --val val.npz --test test.npz --cfg-options "model.mean=[0.4914,0.4822,0.4465]" "model.std=[0.247,0.243,0.261]"
    nft-vision purify --cfg-options data.name=procedural augmentation.name=pgd   # NFT-Adv (Table 15)
    nft-vision bench --cfg-options "bench.defenses=['nft','ft']" --out runs/bench
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from nft_core.checkpoint import atomic_write, save_model
from nft_core.runs import run_directory
from nft_core.task_cli import TaskCLI

from .config import VisionConfig
from .workflow import backdoor, build_augmentation, load_user_inputs, resolve_device, save_npz

log = logging.getLogger("nft")


class VisionCLI(TaskCLI):
    prog = "nft-vision"
    description = "Backdoor purification for image classifiers (NFT and baselines)."
    config_cls = VisionConfig
    configs_dir = Path(__file__).parent / "configs"

    def add_verb_args(self, verb, p):
        g = p.add_argument_group("your own model (purify / evaluate)")
        g.add_argument("--model", help="model spec: preactresnet18 | vgg16 | torchvision:NAME | timm:NAME | pkg.mod:callable")
        g.add_argument("--checkpoint", help=".safetensors or state-dict .pt to load into --model")
        g.add_argument("--num-classes", type=int)
        g.add_argument("--val", help="clean validation set: ImageFolder dir or .npz (x, y)")
        g.add_argument("--test", help="clean test set: ImageFolder dir or .npz")
        g.add_argument("--poisoned", help="poisoned test set with TRUE labels: ImageFolder dir or .npz")
        g.add_argument("--target", type=int, help="the attack's target class")
        g.add_argument("--backdoorbench", metavar="PATH",
                       help="BackdoorBench attack_result.pt: weights, class count and poisoned test set "
                            "(with --model, --val, --test; needs --trust-checkpoint)")
        if verb in ("purify", "bench"):
            p.add_argument("--defense", help="nft (default) or a baseline: ft fp anp awm ftsam rnp ibau nad mcr")
        if verb == "purify":
            p.add_argument("--resume", action="store_true", help="resume an interrupted NFT run in --out")

    def load(self, args):
        cfg = super().load(args)
        for flag, (section, key) in {
            "model": ("model", "spec"), "checkpoint": ("model", "checkpoint"), "num_classes": ("data", "num_classes"),
            "val": ("data", "val_path"), "test": ("data", "test_path"), "poisoned": ("data", "poisoned_path"),
            "target": ("attack", "target"), "defense": ("defense", "name"),
            "backdoorbench": ("data", "backdoorbench_path"),
        }.items():
            value = getattr(args, flag, None)
            if value is not None:
                setattr(getattr(cfg, section), key, value)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return cfg

    # -- verbs -----------------------------------------------------------------------------------
    def attack(self, cfg: VisionConfig, args) -> int:
        """Train a backdoored model; save model, attack metadata, validation and poisoned test sets."""
        out = Path(args.out or f"runs/vision-attack-{cfg.attack.name}")
        run = backdoor(cfg, use_cache=False, progress=not args.quiet)
        metrics = _evaluate(run.model, run.eval_data)
        with run_directory(out) as d:
            save_model(run.model, d / "model.safetensors")
            if run.attack is not None and hasattr(run.attack, "state_dict") and run.attack.state_dict():
                from nft_core.checkpoint import save_state_dict

                save_state_dict(run.attack.state_dict(), d / "attack_state.safetensors")
            save_npz(d / "val.npz", run.val)
            save_npz(d / "test.npz", run.eval_data.clean)
            save_npz(d / "poisoned_test.npz", run.eval_data.poisoned)
            meta = {**{k: v for k, v in run.meta.items() if k != "val_indices"}, "metrics": metrics,
                    "config": asdict(cfg)}
            (d / "attack.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
            (d / "val_indices.json").write_text(json.dumps(run.meta["val_indices"]))
        print(f"{cfg.attack.name}: ACC {metrics['acc']:.2f}  ASR {metrics['asr']:.2f}  -> {out}")
        return 0

    def purify(self, cfg: VisionConfig, args) -> int:
        """Purify a model (the embedded default without --cfg/--checkpoint) and write a run directory."""
        device = resolve_device(cfg.device)
        if cfg.model.checkpoint or cfg.data.backdoorbench_path:
            run = load_user_inputs(cfg, trust=args.trust_checkpoint, device=device)
            attack_name = run.meta["attack"]
        else:
            if not args.quiet:
                sys.stderr.write(f"backdoored model: {cfg.attack.name} on {cfg.data.name} (cached after the first run)\n")
            run = backdoor(cfg, device=device, progress=not args.quiet)
            attack_name = cfg.attack.name
        _, text = self.purify_run(cfg, args, task="vision", run=run, attack_name=attack_name,
                        adapter=_adapter(run.num_classes), augmentation=build_augmentation(cfg), device=device,
                        unit="images")
        print(text)
        return 0

    def evaluate(self, cfg: VisionConfig, args) -> int:
        """Evaluate a checkpoint: ACC on the clean test set, ASR/LCR on the poisoned test set."""
        if not (cfg.model.checkpoint or cfg.data.backdoorbench_path):
            run = backdoor(cfg, progress=not args.quiet)
        else:
            run = load_user_inputs(cfg, trust=args.trust_checkpoint)
        metrics = _evaluate(run.model, run.eval_data)
        print(json.dumps(metrics))
        if args.out:
            atomic_write(args.out, lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
        return 0

    def bench(self, cfg: VisionConfig, args) -> int:
        """Attack × defense grid on one seed and device: results.csv / .json / .md."""
        from .bench import run_grid

        out = Path(args.out or "runs/vision-bench")
        table = run_grid(cfg, out, progress=not args.quiet)
        print(table)
        return 0


def _adapter(num_classes: int):
    from nft_core import ClassificationAdapter

    return ClassificationAdapter(num_classes=num_classes)


def _evaluate(model, eval_data) -> dict[str, float]:
    return _adapter(0).evaluate(model, eval_data)


#: ``--cfg-options`` that shrink the embedded default to seconds (``nft matrix --quick``, CI smoke runs).
QUICK_OPTIONS = ["train.epochs=2", "model.width=4", "defense.options.epochs=2", "data.image_size=16"]


def main(argv=None) -> int:
    return VisionCLI().main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
