"""``nft-nlg bench``: the attack × defense grid on the configured corpus and model."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from nft_core.bench import run_cells, write_results
from nft_core.pipeline import build_defense

from .config import NLGConfig
from .workflow import backdoor, build_augmentation, nft_model_options, resolve_device


def run_grid(cfg: NLGConfig, out: Path, progress: bool = False) -> str:
    device = resolve_device(cfg.device)
    vocabs = {}

    def make_attack(name):
        def make():
            run = backdoor(cfg, attack_name=name, device=device, progress=progress)
            vocabs["last"] = run.vocab
            vocabs["model"] = run.model
            return run.model, run.val, run.eval_data, run.adapter

        return make

    def make_defense(name):
        def make():
            opts = dict(cfg.bench.defense_options.get(name, {}))
            if name == "nft":
                opts = {**cfg.defense.resolved_options(), **opts, "seed": cfg.seed, "device": str(device)}
                opts.update(nft_model_options(vocabs["model"], opts))
            return build_defense(name, opts, build_augmentation(cfg, vocabs["last"]))

        return make

    rows = run_cells({a: make_attack(a) for a in cfg.bench.attacks},
                     {d: make_defense(d) for d in cfg.bench.defenses}, clean_key="bleu")
    header = (f"# nft-nlg bench: {cfg.data.name}, {cfg.model.spec}, seed {cfg.seed}, device {device}\n\n"
              "ASR (output contains the attacker's target) and BLEU, after each defense; `none` is the "
              "backdoored model.")
    return write_results(rows, out, clean_name="BLEU", header=header,
                         extra={"config": asdict(cfg), "device": str(device)})
