"""The skeleton every task CLI shares: the verbs ``attack | purify | evaluate | bench``, configs, errors.

A task package subclasses :class:`TaskCLI`, sets ``prog``, ``config_cls`` (a dataclass), ``configs_dir``
(bundled configs, found by name) and implements the four verbs. This module does the parsing, config
loading and validation (``--cfg``, ``--cfg-options``), the common flags, logging and the exit codes:
bad input -> one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import sys
from pathlib import Path
from typing import Any

from .cli_common import add_common_args, cli_entry, make_parser, setup_logging
from .config import load_config, to_dataclass
from .errors import ConfigError

__all__ = ["TaskCLI", "recipe_label"]

log = logging.getLogger("nft")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def recipe_label(cfg: Any) -> str | None:
    """The report's ``recipe``: the NFT recipe's name (``cfg.defense.recipe``), then every setting that differs
    from what that recipe means on this task (its NFT options, the other defense fields, the augmentation
    section), e.g. ``surrogate with lr=0.01, augmentation.name=mixup``. ``None`` for a baseline defense."""
    d = cfg.defense
    if d.name != "nft":
        return None
    ref = dataclasses.replace(type(d)(), name="nft", recipe=d.recipe)
    base, used = ref.resolved_options(), d.resolved_options()
    diffs = [f"{k}={used[k]!r}" if isinstance(used[k], str) else f"{k}={used[k]}"
             for k in sorted(used) if k not in base or base[k] != used[k]]
    diffs += [f"{k}=unset" for k in sorted(base) if k not in used]
    skip = {"name", "recipe", "options"}
    mine, theirs = _flat(dataclasses.asdict(d)), _flat(dataclasses.asdict(ref))
    for k, v in mine.items():
        field_name = k.split(".")[0]
        if field_name in skip or theirs.get(k) == v:
            continue
        # a field that feeds the NFT options (detection's nft_epochs -> epochs) is already listed there
        if dataclasses.replace(d, **{field_name: getattr(ref, field_name)}).resolved_options() == used:
            diffs.append(f"defense.{k}={v}")
    aug = getattr(cfg, "augmentation", None)
    if dataclasses.is_dataclass(aug):
        mine, theirs = _flat(dataclasses.asdict(aug)), _flat(dataclasses.asdict(type(aug)()))
        diffs += [f"augmentation.{k}={v}" for k, v in mine.items() if theirs.get(k) != v]
    return d.recipe + (" with " + ", ".join(diffs) if diffs else "")


class TaskCLI:
    prog: str = "nft-task"
    description: str = ""
    config_cls: type = object
    configs_dir: Path | None = None
    verbs = ("attack", "purify", "evaluate", "bench")

    # -- to implement ------------------------------------------------------
    def add_verb_args(self, verb: str, p: argparse.ArgumentParser) -> None:
        """Extra flags per verb (e.g. ``--defense`` for purify)."""

    def attack(self, cfg: Any, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def purify(self, cfg: Any, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def evaluate(self, cfg: Any, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def bench(self, cfg: Any, args: argparse.Namespace) -> int:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------
    def purify_run(self, cfg: Any, args: argparse.Namespace, *, task: str, run: Any, attack_name: str,
                   adapter: Any, augmentation: Any, device: Any, unit: str = "samples",
                   extra: dict[str, Any] | None = None, note: str = "", defense_options: dict[str, Any] | None = None,
                   files: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
        """The end of every ``purify`` verb: defense options (seed, device, progress, ``--resume``) and
        :func:`~nft_core.pipeline.purify_and_report`. Returns the report and the before/after table with a
        summary line, for the CLI to print. ``run`` has ``model``, ``val``, ``eval_data`` and ``meta``;
        ``cfg`` has ``seed`` and ``defense.resolved_options()``. ``defense_options`` are added to NFT's
        options (task specifics, e.g. layers to leave unmasked); ``files`` are extra ``name -> write(path)``
        outputs of the run directory (see :func:`~nft_core.pipeline.purify_and_report`)."""
        from .pipeline import build_defense, purify_and_report
        from .runs import format_table

        out = args.out or f"runs/{task}-{attack_name}-{cfg.defense.name}"
        options = cfg.defense.resolved_options()
        if cfg.defense.name == "nft":
            options.setdefault("seed", cfg.seed)
            options.setdefault("progress", not args.quiet)
            options["device"] = str(device)
            options.update(defense_options or {})
            state_dir = str(Path(out).with_name(Path(out).name + ".state"))
            if getattr(args, "resume", False):
                options.update(checkpoint_dir=state_dir, resume=True,
                               checkpoint_every=options.get("checkpoint_every", 10))
            elif "checkpoint_every" in options:
                options.setdefault("checkpoint_dir", state_dir)
        defense = build_defense(cfg.defense.name, options, augmentation)
        report = purify_and_report(task=task, model=run.model, val_data=run.val, eval_data=run.eval_data,
                                   adapter=adapter, defense=defense, out=out, config=cfg, attack=attack_name,
                                   recipe=recipe_label(cfg),
                                   extra={"validation_indices": run.meta.get("val_indices"), **(extra or {})},
                                   files=files)
        info = report.get("info") or {}
        speed = ", ".join(k for k, on in (("channels-last", info.get("channels_last")),
                                          ("bf16 autocast", info.get("amp"))) if on)
        text = (format_table(report["before"], report["after"])
                + f"\n\n{report['defense']} ({report.get('recipe') or 'defaults'}): {report['wall_time']:.1f} s "
                f"on {device}{f' ({speed})' if speed else ''}; {len(run.val)} validation {unit}{note} -> {out}")
        text += "".join(f"\n\nWARNING: {n}" for n in report.get("notes") or [])
        return report, text

    def resolve_config_path(self, name: str | None) -> str | None:
        """``--cfg`` as a path, or the name of a bundled config (``voc07`` or ``voc07.py``)."""
        if name is None:
            return None
        p = Path(name)
        if p.exists():
            return str(p)
        if self.configs_dir is not None:
            for cand in (self.configs_dir / name, self.configs_dir / f"{name}.py"):
                if cand.exists():
                    return str(cand)
            known = sorted(q.stem for q in self.configs_dir.glob("*.py") if not q.name.startswith("_"))
            raise ConfigError(f"{name}: config not found (not a file, nor a bundled config: {', '.join(known)})")
        raise ConfigError(f"{name}: config file not found")

    def load(self, args: argparse.Namespace) -> Any:
        path = self.resolve_config_path(args.cfg)
        base = dataclasses.asdict(self.config_cls()) if path is None else None
        data = load_config(path, args.cfg_options, base=base)
        cfg = to_dataclass(self.config_cls, data, data.get("_source_", "<config>"))
        for key in ("seed", "device"):
            if getattr(args, key, None) is not None and hasattr(cfg, key):
                setattr(cfg, key, getattr(args, key))
        return cfg

    def parser(self) -> argparse.ArgumentParser:
        p = make_parser(self.prog, self.description)
        sub = p.add_subparsers(dest="verb", required=True)
        for verb in self.verbs:
            doc = (getattr(type(self), verb).__doc__ or "").strip().splitlines()
            sp = sub.add_parser(verb, help=doc[0] if doc else verb)
            add_common_args(sp)
            if verb == "bench":
                sp.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                                help="run the grid's cells as Ray tasks: a local cluster, or ADDRESS "
                                     "(auto | ray://host:10001)")
            self.add_verb_args(verb, sp)
        return p

    def run(self, argv=None) -> int:
        args = self.parser().parse_args(argv)
        setup_logging(args.quiet)
        cfg = self.load(args)
        from . import distributed

        if getattr(args, "ray", None):
            from .bench import ray_cluster

            with ray_cluster(args.ray):
                return int(getattr(self, args.verb)(cfg, args) or 0)
        if not distributed.init_from_env(getattr(cfg, "device", None) or args.device):
            return int(getattr(self, args.verb)(cfg, args) or 0)
        # torchrun: every rank runs the verb (the collectives need all of them); rank 0 alone writes the
        # run directory and prints, the others log warnings only and write nothing.
        main_rank = distributed.is_main()
        if not main_rank:
            logging.getLogger().setLevel(logging.WARNING)
            args.quiet = True
        try:
            with contextlib.redirect_stdout(sys.stdout if main_rank else io.StringIO()):
                return int(getattr(self, args.verb)(cfg, args) or 0)
        finally:
            distributed.shutdown()

    def main(self, argv=None) -> int:
        return cli_entry(self.run, argv)
