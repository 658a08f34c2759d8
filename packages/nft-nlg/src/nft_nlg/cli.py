"""``nft-nlg``: backdoor, purify, evaluate and benchmark seq2seq text generators.

    nft-nlg purify                          # embedded default: toy MT pair + trigger words + NFT+, table
    nft-nlg attack --cfg wmt14_en_de --cfg-options data.root=data/wmt14 --out runs/mt-attack
    nft-nlg purify --cfg wmt14_en_de --cfg-options data.root=data/wmt14 \\
        --checkpoint runs/mt-attack/model.safetensors --tokenizer runs/mt-attack/tokenizer.json --out runs/mt
    nft-nlg evaluate --checkpoint runs/mt/purified.safetensors --tokenizer ... --cfg-options data.name=wmt ...
    nft-nlg bench --out runs/nlg-bench
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from nft_core.checkpoint import atomic_write, save_model
from nft_core.runs import run_directory
from nft_core.task_cli import TaskCLI

from .config import NLGConfig
from .workflow import backdoor, build_augmentation, load_user_inputs, nft_model_options, resolve_device

log = logging.getLogger("nft")


class NLGCLI(TaskCLI):
    prog = "nft-nlg"
    description = "Backdoor purification for seq2seq text generation (translation, dialogue)."
    config_cls = NLGConfig
    configs_dir = Path(__file__).parent / "configs"

    def add_verb_args(self, verb, p):
        g = p.add_argument_group("your own model (purify / evaluate)")
        g.add_argument("--model", help="transformer | marian | bart | t5 | hf:DIR | fairseq:CHECKPOINT_OR_DIR")
        g.add_argument("--checkpoint", help=".safetensors or state-dict .pt to load into --model")
        g.add_argument("--tokenizer", help="tokenizer.json of the model")
        g.add_argument("--data-root", help="corpus folder (WMT layout or TSV)")
        if verb in ("purify", "bench"):
            p.add_argument("--defense", help="nft (default) or a baseline: ft fp anp awm ftsam rnp nad mcr")

    def load(self, args):
        cfg = super().load(args)
        for flag, (section, key) in {
            "model": ("model", "spec"), "checkpoint": ("model", "checkpoint"), "tokenizer": ("tokenizer", "path"),
            "data_root": ("data", "root"), "defense": ("defense", "name"),
        }.items():
            value = getattr(args, flag, None)
            if value is not None:
                setattr(getattr(cfg, section), key, value)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return cfg

    def _run(self, cfg: NLGConfig, args, device=None):
        if cfg.model.checkpoint or cfg.model.spec.startswith(("hf:", "fairseq:")):
            return load_user_inputs(cfg, trust=args.trust_checkpoint, device=device), "user"
        if not args.quiet:
            sys.stderr.write(f"backdoored model: {cfg.attack.name} on {cfg.data.name} (cached after the first run)\n")
        return backdoor(cfg, device=device, progress=not args.quiet), cfg.attack.name

    # -- verbs -----------------------------------------------------------------------------------
    def attack(self, cfg: NLGConfig, args) -> int:
        """Train a backdoored model; save model, tokenizer, attack metadata and the evaluation text."""
        out = Path(args.out or f"runs/nlg-attack-{cfg.attack.name}")
        run = backdoor(cfg, use_cache=False, progress=not args.quiet)
        metrics = run.adapter.evaluate(run.model, run.eval_data)
        with run_directory(out) as d:
            save_model(run.model, d / "model.safetensors")
            run.vocab.tokenizer.save(str(d / "tokenizer.json"))
            for name, data in (("valid", run.val), ("test", run.eval_data.clean),
                               ("poisoned_test", run.eval_data.poisoned)):
                (d / f"{name}.src").write_text("\n".join(data.src_text) + "\n")
                (d / f"{name}.tgt").write_text("\n".join(data.refs) + "\n")
            meta = {**run.meta, "metrics": metrics, "config": asdict(cfg)}
            (d / "attack.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        print(f"{cfg.attack.name}: BLEU {metrics['bleu']:.2f}  ASR {metrics.get('asr', 0):.2f}  -> {out}")
        return 0

    def purify(self, cfg: NLGConfig, args) -> int:
        """Purify a model (the embedded default without --cfg/--checkpoint) and write a run directory."""
        device = resolve_device(cfg.device)
        run, attack_name = self._run(cfg, args, device)
        tok_path = run.tokenizer_path

        def write_tokenizer(p: Path) -> None:  # inside the atomic run directory, with the model
            if tok_path is not None and Path(tok_path).exists():
                shutil.copyfile(tok_path, p)
            else:
                run.vocab.tokenizer.save(str(p))

        nft_opts = nft_model_options(run.model, cfg.defense.resolved_options()) if cfg.defense.name == "nft" else {}
        _, text = self.purify_run(cfg, args, task="nlg", run=run, attack_name=attack_name, adapter=run.adapter,
                                  augmentation=build_augmentation(cfg, run.vocab), device=device, unit="pairs",
                                  note=f", augmentation {cfg.augmentation.name}", defense_options=nft_opts,
                                  files={"tokenizer.json": write_tokenizer},
                                  extra={"augmentation": cfg.augmentation.name, "backdoor": run.meta})
        print(text)
        return 0

    def evaluate(self, cfg: NLGConfig, args) -> int:
        """Evaluate a checkpoint: BLEU on the clean test set, ASR on triggered test sources."""
        run, _ = self._run(cfg, args)
        metrics = run.adapter.evaluate(run.model, run.eval_data)
        print(json.dumps(metrics))
        if args.out:
            atomic_write(args.out, lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
        return 0

    def bench(self, cfg: NLGConfig, args) -> int:
        """Attack × defense grid on one seed and device: results.csv / .json / .md."""
        from .bench import run_grid

        out = Path(args.out or "runs/nlg-bench")
        print(run_grid(cfg, out, progress=not args.quiet))
        return 0


#: ``--cfg-options`` that shrink the embedded default to seconds (``nft matrix --quick``, CI smoke runs).
QUICK_OPTIONS = ["data.toy_sizes={'train': 120, 'valid': 16, 'test': 12}", "train.epochs=1", "model.d_model=16",
                 "model.heads=2", "model.layers=1", "defense.options={'epochs': 1, 'batch_size': 16}", "data.max_len=20"]


def main(argv=None) -> int:
    return NLGCLI().main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
