"""``nft-detect``: clean-image backdoors on multi-label classifiers — attack, purify, evaluate, bench.

    nft-detect purify                       # embedded default: generated VOC-layout scenes, NFT+, table
    nft-detect attack --cfg voc07 --cfg-options data.root=/data/VOCdevkit --out runs/voc07-attack
    nft-detect purify --cfg voc07 --cfg-options data.root=/data/VOCdevkit \\
        --checkpoint runs/voc07-attack/model.safetensors --out runs/voc07-nft
    nft-detect evaluate --checkpoint runs/voc07-nft/purified.safetensors --cfg voc07 --cfg-options data.root=...
    nft-detect bench --cfg-options "bench.defenses=['nft','ft']" --out runs/detect-bench

Object detection (torchvision detectors, box-level poisoning, detection MixUp, COCO mAP) is available as
a library (:mod:`nft_detection.detection`); mmdet is not installed here and is not supported.
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

from .adapters import MultiLabelAdapter
from .config import DetectConfig
from .workflow import backdoor, build_augmentation, load_user_inputs, resolve_device

log = logging.getLogger("nft")


class DetectCLI(TaskCLI):
    prog = "nft-detect"
    description = "Backdoor purification for multi-label classifiers (clean-image backdoor; NFT and baselines)."
    config_cls = DetectConfig
    configs_dir = Path(__file__).parent / "configs"

    def add_verb_args(self, verb, p):
        p.add_argument("--model", help="model spec: smallcnn | torchvision:NAME | timm:NAME | pkg.mod:callable")
        p.add_argument("--checkpoint", help=".safetensors or state-dict .pt to purify/evaluate (skips the attack)")
        p.add_argument("--mode", choices=["appear", "disappear"], help="clean-image backdoor mode")
        if verb in ("purify", "bench"):
            p.add_argument("--defense", help="nft (default) or a baseline from nft-core (ft, fp, anp …)")

    def load(self, args):
        cfg = super().load(args)
        for flag, (section, key) in {"model": ("model", "spec"), "checkpoint": ("model", "checkpoint"),
                                     "mode": ("attack", "mode"), "defense": ("defense", "name")}.items():
            value = getattr(args, flag, None)
            if value is not None:
                setattr(getattr(cfg, section), key, value)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return cfg

    def _run(self, cfg: DetectConfig, args, device=None):
        if cfg.model.checkpoint:
            return load_user_inputs(cfg, trust=args.trust_checkpoint, device=device)
        if not args.quiet:
            sys.stderr.write(f"backdoored model: clean-image {cfg.attack.mode} on {cfg.data.name} "
                             "(cached after the first run)\n")
        return backdoor(cfg, device=device, progress=not args.quiet)

    # -- verbs -----------------------------------------------------------------------------------
    def attack(self, cfg: DetectConfig, args) -> int:
        """Train a clean-image-backdoored multi-label model; save it with its attack metadata."""
        out = Path(args.out or f"runs/detect-attack-{cfg.attack.mode}")
        run = backdoor(cfg, use_cache=False, progress=not args.quiet)
        metrics = MultiLabelAdapter(len(run.classes)).evaluate(run.model, run.eval_data)
        with run_directory(out) as d:
            save_model(run.model, d / "model.safetensors")
            meta = {**{k: v for k, v in run.meta.items() if k != "val_indices"}, "metrics": metrics,
                    "config": asdict(cfg)}
            (d / "attack.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        print(f"clean-image {cfg.attack.mode}: mAP {metrics['map']:.2f}  ASR {metrics['asr']:.2f}  -> {out}")
        return 0

    def purify(self, cfg: DetectConfig, args) -> int:
        """Purify a model (the embedded default without --cfg/--checkpoint) and write a run directory."""
        device = resolve_device(cfg.device)
        run = self._run(cfg, args, device)
        if run.eval_data.poisoned is None:
            log.warning("no test image holds the trigger: ASR is not measured")
        attack_name = run.meta.get("attack", "user")
        _, text = self.purify_run(cfg, args, task="multilabel", run=run, attack_name=attack_name,
                        adapter=MultiLabelAdapter(len(run.classes)), augmentation=build_augmentation(cfg),
                        device=device, unit="images", extra={"classes": run.classes})
        print(text)
        return 0

    def evaluate(self, cfg: DetectConfig, args) -> int:
        """mAP on the clean test set and ASR on its trigger images (JSON on stdout, --out to save)."""
        run = self._run(cfg, args)
        metrics = MultiLabelAdapter(len(run.classes)).evaluate(run.model, run.eval_data)
        print(json.dumps(metrics))
        if args.out:
            atomic_write(args.out, lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
        return 0

    def bench(self, cfg: DetectConfig, args) -> int:
        """Attack mode × defense grid on one seed and device: results.csv / .json / .md."""
        from .bench import run_grid

        print(run_grid(cfg, Path(args.out or "runs/detect-bench"), progress=not args.quiet))
        return 0


#: ``--cfg-options`` that shrink the embedded default to seconds (``nft matrix --quick``, CI smoke runs).
QUICK_OPTIONS = ["train.epochs=2", "model.kwargs={'width': 4, 'hidden': 8}", "defense.nft_epochs=2", "data.image_size=24",
                 "data.scenes={'n_train':48,'n_val':16,'n_test':40,'trigger_rate':0.5}"]


def main(argv=None) -> int:
    return DetectCLI().main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
