"""``nft-detect``: clean-image backdoors (Chen et al., ICLR 2023) on multi-label classifiers and object
detectors — attack, purify, evaluate, bench.

    nft-detect purify                       # embedded default: generated VOC-layout scenes, NFT+, table
    nft-detect attack --cfg voc07 --cfg-options data.root=/data/VOCdevkit --out runs/voc07-attack
    nft-detect purify --cfg voc07 --cfg-options data.root=/data/VOCdevkit \\
        --checkpoint runs/voc07-attack/model.safetensors --out runs/voc07-nft
    nft-detect evaluate --checkpoint runs/voc07-nft/purified.safetensors --cfg voc07 --cfg-options data.root=...
    nft-detect bench --cfg-options "bench.defenses=['nft','ft']" --out runs/detect-bench

Object detectors (``--family detector``, i.e. ``model.family=detector``; ``multilabel`` is the default):

    nft-detect attack --family detector --out runs/det-attack          # tiny FCOS on the scenes, disappear
    nft-detect purify --family detector --out runs/det-nft             # NFT+ with detection MixUp
    nft-detect purify --family detector --defense ftsam --out runs/det-ftsam
    nft-detect evaluate --family detector --checkpoint runs/det-nft/purified.safetensors
    nft-detect purify --family detector --model tiny_retinanet --mode appear

The detector default (:func:`~nft_detection.config.detector_config`, also ``--cfg scenes_detector``) trains
``tiny_fcos`` — torchvision's FCOS on the CPU-sized :class:`~nft_detection.models.TinyFPNBackbone`, 64 px
images, 30 epochs, one thread — on the generated scenes with *box-level* poisoning of the trigger images:
``disappear`` (default) removes the target's boxes; ``appear`` adds a target box enclosing the trigger
objects (:mod:`nft_detection.attacks`). ``model.spec`` takes any of :data:`~nft_detection.models.DETECTORS`;
with ``--cfg``/``--checkpoint`` the spec must match the checkpoint and the data's class count. Clean metric:
COCO mAP@[.5:.95] (``map``; ``map50`` too); ``asr``: the box-level attack success rate of
:class:`~nft_detection.adapters.DetectionAdapter` — over the changed objects of the test images holding
the trigger, a removed target object *not* detected as its class, an added box detected as the target
(IoU ≥ 0.5, score ≥ 0.5). NFT's augmentation is detection MixUp; its masks reach the backbone, the FPN neck
and the heads (GroupNorm towers at γ, :data:`~nft_detection.models.DETECTOR_MASK_HANDLERS`); the report's
``mask_parts`` counts them. Baselines (``--defense ft``, ``ftsam`` …) run on the same detector.

mmdet 3.3 detectors (optional; ``bash scripts/install_mmdet.sh`` builds mmcv 2.1 and installs mmdet):

    nft-detect purify --cfg my_mmdet_config.py --checkpoint epoch_12.pth --cfg-options data.name=voc data.root=…
    nft-detect attack --model mmdet:tiny_fcos --out runs/mmdet-attack    # the bundled CPU-sized mmdet FCOS
    nft-detect purify --model mmdet:tiny_fcos --checkpoint runs/mmdet-attack/model_mmdet.pth --out runs/mmdet-nft

``--cfg`` naming an mmdet config (a ``model`` dict with a ``type``) makes it the model (``model.spec =
mmdet:PATH``, family detector) on the detector defaults; ``--cfg-options`` then set nft-detect's keys (data,
defense …). The run directory also holds ``purified_mmdet.pth`` for mmdet's own tools
(:mod:`nft_detection.mmdet_backend`).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from nft_core.checkpoint import atomic_write, save_model
from nft_core.config import load_config, parse_cfg_options, to_dataclass
from nft_core.errors import ConfigError
from nft_core.runs import run_directory
from nft_core.task_cli import TaskCLI

from .config import DetectConfig, detector_config
from .workflow import backdoor, build_augmentation, load_user_inputs, multilabel_adapter, resolve_device

log = logging.getLogger("nft")


class DetectCLI(TaskCLI):
    prog = "nft-detect"
    description = ("Backdoor purification for multi-label classifiers and object detectors (clean-image backdoor; "
                   "NFT and baselines).")
    config_cls = DetectConfig
    configs_dir = Path(__file__).parent / "configs"

    def add_verb_args(self, verb, p):
        p.add_argument("--family", help="multilabel (default) | detector: the kind of model (model.family)")
        p.add_argument("--model", help="model spec: multilabel smallcnn | torchvision:NAME | timm:NAME | "
                                       "pkg.mod:callable; detector tiny_fcos | tiny_retinanet | … | mmdet:CONFIG.py "
                                       "(model.spec; mmdet needs scripts/install_mmdet.sh)")
        p.add_argument("--checkpoint", help=".safetensors or state-dict .pt/.pth (mmdet checkpoints too) to "
                                            "purify/evaluate (skips the attack)")
        p.add_argument("--mode", choices=["appear", "disappear"], help="clean-image backdoor mode")
        if verb in ("purify", "bench"):
            p.add_argument("--defense", help="nft (default) or a baseline from nft-core (ft, fp, anp …)")

    def load(self, args):
        from .mmdet_backend import MMDET_PREFIX, is_mmdet_config, is_mmdet_spec

        opts = parse_cfg_options(args.cfg_options)
        family = args.family if args.family is not None else opts.get("model.family")
        spec = args.model if args.model is not None else opts.get("model.spec")
        mmdet_cfg = None
        if args.cfg is not None and Path(args.cfg).suffix == ".py" and Path(args.cfg).is_file() \
                and is_mmdet_config(args.cfg):  # --cfg is an mmdet config: it is the model; data etc. default
            if spec is not None:
                raise ConfigError(f"--cfg {args.cfg} is an mmdet config (the model); do not also give --model/model.spec")
            mmdet_cfg, spec = args.cfg, MMDET_PREFIX + args.cfg
        if is_mmdet_spec(spec) and family is None:
            family = "detector"
        if (args.cfg is None or mmdet_cfg) and family == "detector":  # the detector family's own embedded default
            data = load_config(None, args.cfg_options, base=asdict(detector_config()))
            cfg = to_dataclass(DetectConfig, data, data.get("_source_", "<config>"))
            for key in ("seed", "device"):
                if getattr(args, key, None) is not None:
                    setattr(cfg, key, getattr(args, key))
        else:
            cfg = super().load(args)
        for flag, (section, key) in {"family": ("model", "family"), "model": ("model", "spec"),
                                     "checkpoint": ("model", "checkpoint"), "mode": ("attack", "mode"),
                                     "defense": ("defense", "name")}.items():
            value = getattr(args, flag, None)
            if value is not None:
                setattr(getattr(cfg, section), key, value)
        if is_mmdet_spec(spec):
            cfg.model.spec, cfg.model.family = spec, family
        from .detection import check_family

        check_family(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return cfg

    @staticmethod
    def _detector(cfg: DetectConfig) -> bool:
        return cfg.model.family == "detector"

    def _run(self, cfg: DetectConfig, args, device=None):
        det = self._detector(cfg)
        if cfg.model.checkpoint:
            if det:
                from .detection import load_user_detector

                return load_user_detector(cfg, trust=args.trust_checkpoint, device=device)
            return load_user_inputs(cfg, trust=args.trust_checkpoint, device=device)
        if not args.quiet:
            sys.stderr.write(f"backdoored {'detector' if det else 'model'}: clean-image {cfg.attack.mode} on "
                             f"{cfg.data.name} (cached after the first run)\n")
        if det:
            from .detection import backdoor_detector

            return backdoor_detector(cfg, device=device, progress=not args.quiet)
        return backdoor(cfg, device=device, progress=not args.quiet)

    def _adapter(self, cfg: DetectConfig, run):
        if self._detector(cfg):
            from .detection import detection_adapter

            return detection_adapter(len(run.classes))
        return multilabel_adapter(cfg, len(run.classes))

    # -- verbs -----------------------------------------------------------------------------------
    def attack(self, cfg: DetectConfig, args) -> int:
        """Train a clean-image-backdoored multi-label model or detector; save it with its attack metadata."""
        det = self._detector(cfg)
        out = Path(args.out or f"runs/detect-attack-{'detector-' if det else ''}{cfg.attack.mode}")
        if det:
            from .detection import backdoor_detector

            run = backdoor_detector(cfg, use_cache=False, progress=not args.quiet)
        else:
            run = backdoor(cfg, use_cache=False, progress=not args.quiet)
        metrics = self._adapter(cfg, run).evaluate(run.model, run.eval_data)
        with run_directory(out) as d:
            save_model(run.model, d / "model.safetensors")
            from .mmdet_backend import MMDetDetector, save_mmdet_checkpoint

            if isinstance(run.model, MMDetDetector):  # also as an mmdet checkpoint (init_detector, tools/test.py)
                save_mmdet_checkpoint(run.model.state_dict(), d / "model_mmdet.pth", run.classes)
            meta = {**{k: v for k, v in run.meta.items() if k != "val_indices"}, "metrics": metrics,
                    "config": asdict(cfg)}
            (d / "attack.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        what = f"{cfg.model.spec} " if det else ""
        print(f"clean-image {cfg.attack.mode}: {what}mAP {metrics['map']:.2f}  ASR {metrics['asr']:.2f}  -> {out}")
        return 0

    def purify(self, cfg: DetectConfig, args) -> int:
        """Purify a model (the embedded default without --cfg/--checkpoint) and write a run directory."""
        device = resolve_device(cfg.device)
        run = self._run(cfg, args, device)
        if run.eval_data.poisoned is None:
            log.warning("no test image holds the trigger: ASR is not measured")
        attack_name = run.meta.get("attack", "user")
        extra, note, adapter, files = {"classes": run.classes}, "", self._adapter(cfg, run), None
        if self._detector(cfg):
            from .detection import (
                build_detection_augmentation,
                mask_parts,
                nft_mask_sites,
                with_detector_defense,
            )
            from .mmdet_backend import is_mmdet_spec, mmdet_checkpoint_writer

            task, augmentation = "detection", build_detection_augmentation(cfg)
            extra.update(family="detector", model=cfg.model.spec)
            if is_mmdet_spec(cfg.model.spec):  # the purified weights for mmdet's own tools too
                files = {"purified_mmdet.pth": mmdet_checkpoint_writer(run.classes)}
            cfg = with_detector_defense(cfg)  # NFT's masks also at the heads' GroupNorm γ
            if cfg.defense.name == "nft":  # where NFT's masks sit: backbone, neck (FPN), heads
                parts = mask_parts(nft_mask_sites(run.model, run.val, adapter, cfg.defense.resolved_options()))
                extra["mask_parts"] = parts
                note = "; mask sites " + ", ".join(f"{k} {v}" for k, v in parts.items())
        else:
            task, augmentation = "multilabel", build_augmentation(cfg)
        _, text = self.purify_run(cfg, args, task=task, run=run, attack_name=attack_name, adapter=adapter,
                                  augmentation=augmentation, device=device, unit="images", extra=extra, note=note,
                                  files=files)
        print(text)
        return 0

    def evaluate(self, cfg: DetectConfig, args) -> int:
        """mAP on the clean test set and ASR on its trigger images (JSON on stdout, --out to save)."""
        run = self._run(cfg, args)
        metrics = self._adapter(cfg, run).evaluate(run.model, run.eval_data)
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
