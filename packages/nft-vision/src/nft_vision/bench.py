"""``nft-vision bench``: the attack × defense grid on the configured data and model, NFT ablation columns
(``bench.ablation``, the NFT paper's Tables 6, 7, 15, 23, 25, 26) and t-SNE views of the penultimate
features before and after purification (``bench.tsne``, the paper's Fig. 1)."""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch

from nft_core import ClassificationAdapter
from nft_core.bench import ValidationSubset, run_cells, write_results
from nft_core.config import to_dataclass
from nft_core.errors import ConfigError, NFTInputError
from nft_core.nft import NFTConfig
from nft_core.pipeline import build_defense
from nft_core.schedules import Schedule

from .config import AugmentationConfig, VisionConfig
from .workflow import backdoor, build_augmentation, resolve_device

__all__ = ["run_grid", "ablation_variants"]

log = logging.getLogger("nft")

#: variant keys that are not NFTConfig fields (see BenchConfig's docstring)
#: bench columns that are NFT recipes (``defense.options`` apply to each)
_NFT_COLUMNS = {"nft": "nft+", "nft-paper": "paper", "nft-surrogate": "surrogate"}
_SPECIAL = ("val_size", "augmentation", "recipe", "family", "alpha", "beta", "label")


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}={_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def ablation_variants(spec: dict) -> list[tuple[str, dict]]:
    """``bench.ablation`` -> ``[(column name, options), ...]`` (syntax: :class:`~nft_vision.config.BenchConfig`).

    Raises :class:`ConfigError` for a malformed spec, an unknown option or a repeated column name."""
    if not spec:
        return []
    if "variants" in spec:
        unknown = set(spec) - {"variants"}
        variants = spec["variants"]
        if not isinstance(variants, (list, tuple)) or not all(isinstance(v, dict) for v in variants):
            raise ConfigError("bench.ablation.variants must be a list of option dicts")
    elif "name" in spec and "values" in spec:
        unknown = set(spec) - {"name", "values"}
        if not isinstance(spec["values"], (list, tuple)) or not spec["values"]:
            raise ConfigError("bench.ablation.values must be a non-empty list")
        variants = [{spec["name"]: v} for v in spec["values"]]
    else:
        raise ConfigError("bench.ablation needs {'name': OPTION, 'values': [...]} or {'variants': [{...}, ...]}")
    if unknown:
        raise ConfigError(f"bench.ablation: unknown key {sorted(unknown)[0]!r}")
    allowed = [f.name for f in fields(NFTConfig)] + list(_SPECIAL)
    out: list[tuple[str, dict]] = []
    for v in variants:
        for k in v:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1, cutoff=0.75)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"bench.ablation: unknown NFT option {k!r}{hint}")
        opts = {k: x for k, x in v.items() if k != "label"}
        label = v.get("label") or ("nft[" + ",".join(f"{k}={_fmt(x)}" for k, x in opts.items()) + "]"
                                   if opts else "nft")
        if label in {name for name, _ in out}:
            raise ConfigError(f"bench.ablation: two variants are both named {label!r} (give one a 'label')")
        out.append((str(label), opts))
    return out


class _Observed:
    """A defense whose result is also handed to ``observe(model_before, result)`` (for the t-SNE view)."""

    def __init__(self, defense, observe):
        self.defense, self.observe = defense, observe
        self.name = getattr(defense, "name", type(defense).__name__)

    def purify(self, model, data, adapter):
        res = self.defense.purify(model, data, adapter)
        self.observe(model, res)
        return res


def _tsne_inputs(eval_data, max_points: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A capped, seeded subsample of the test sets: images, true labels, poisoned flags."""
    from nft_core.features import tsne_sample

    cx, cy = eval_data.clean.tensors[:2]
    px, py = (eval_data.poisoned.tensors[:2] if eval_data.poisoned is not None
              else (cx[:0], cy[:0]))
    ci, pi = tsne_sample(cy, px.shape[0], max_points=max_points, generator=torch.Generator().manual_seed(seed))
    x = torch.cat([cx[ci], px[pi]])
    y = torch.cat([cy[ci], py[pi]])
    flags = torch.cat([torch.zeros(ci.numel(), dtype=torch.bool), torch.ones(pi.numel(), dtype=torch.bool)])
    return x, y, flags


def run_grid(cfg: VisionConfig, out: Path, progress: bool = False) -> str:
    device = resolve_device(cfg.device)
    variants = ablation_variants(cfg.bench.ablation)
    clash = {name for name, _ in variants} & set(cfg.bench.defenses)
    if clash:
        raise ConfigError(f"bench.ablation: column {sorted(clash)[0]!r} is also in bench.defenses")
    current: dict[str, Any] = {}  # the attack cell being run (run_cells runs attacks one at a time)

    def make_attack(name):
        def make():
            current.clear()
            run = backdoor(cfg, attack_name=name, device=device, progress=progress)
            current.update(attack=name, eval_data=run.eval_data)
            return run.model, run.val, run.eval_data, ClassificationAdapter(run.num_classes)

        return make

    def nft_options(recipe: str) -> dict:
        base = replace(cfg.defense, name="nft", recipe=recipe).resolved_options()
        return {**base, **cfg.bench.defense_options.get("nft", {}), "seed": cfg.seed, "device": str(device)}

    def make_defense(name):
        def make():
            opts = dict(cfg.bench.defense_options.get(name, {}))
            if name in _NFT_COLUMNS:  # NFT+, the paper's recipe and the surrogate recipe side by side
                recipe = replace(cfg.defense, name="nft", recipe=_NFT_COLUMNS[name])
                opts = {**recipe.resolved_options(), **opts, "seed": cfg.seed, "device": str(device)}
                return build_defense("nft", opts, build_augmentation(cfg, recipe.recipe))
            return build_defense(name, {"seed": cfg.seed, "device": str(device), **opts})

        return make

    def make_variant(label: str, variant: dict):
        v = dict(variant)
        v_recipe = v.pop("recipe", cfg.defense.recipe)
        opts = nft_options(v_recipe)
        aug = v.pop("augmentation", None)
        val_size = v.pop("val_size", None)
        parts = {k: v.pop(k) for k in ("family", "alpha", "beta") if k in v}
        given = v.pop("schedule", None)

        def make():
            aug_cfg = cfg
            if aug is not None:
                a = AugmentationConfig(name=aug) if isinstance(aug, str) else AugmentationConfig(**aug)
                aug_cfg = replace(cfg, augmentation=a)
            defense = build_defense("nft", opts, build_augmentation(aug_cfg, v_recipe))
            if val_size is not None:
                if not isinstance(val_size, int) or isinstance(val_size, bool) or val_size < 1:
                    raise NFTInputError(f"val_size must be a positive integer, got {val_size!r}")
                defense = ValidationSubset(defense, val_size, seed=cfg.seed)
            return defense

        try:  # a wrong value (schedule family, augmentation name, option type) fails before any training
            if given is not None or parts:  # merged over the base schedule
                base = opts.get("schedule", Schedule())
                base = asdict(base) if isinstance(base, Schedule) else dict(base)
                if isinstance(given, Schedule):
                    given = asdict(given)
                given = {"family": given} if isinstance(given, str) else dict(given or {})
                opts["schedule"] = {**base, **given, **parts}
            opts.update(v)
            to_dataclass(NFTConfig, {k: asdict(x) if isinstance(x, Schedule) else x for k, x in opts.items()},
                         source=f"bench.ablation {label}")
            make()
        except ConfigError:
            raise
        except (TypeError, ValueError, NFTInputError) as e:
            raise ConfigError(f"bench.ablation {label}: {e}") from e
        return make

    columns = {d: make_defense(d) for d in cfg.bench.defenses}
    columns.update({label: make_variant(label, v) for label, v in variants})

    tsne: dict[str, dict[str, Any]] = {}
    tsne_errors: dict[str, str] = {}
    if cfg.bench.tsne and columns:
        first = next(iter(columns))
        build_first = columns[first]

        def observe(before_model, res):
            from nft_core.features import penultimate_features

            a = current.get("attack")
            try:
                x, y, flags = _tsne_inputs(current["eval_data"], cfg.bench.tsne_points, cfg.seed)
                tsne[a] = {"before": penultimate_features(before_model, x),
                           "after": penultimate_features(res.model, x), "labels": y, "poisoned": flags,
                           "defense": first}
            except Exception as e:  # noqa: BLE001 - a missing view must not cost the grid
                log.warning("t-SNE features for %s failed: %s", a, e)
                tsne_errors[str(a)] = f"{type(e).__name__}: {e}"

        columns[first] = lambda: _Observed(build_first(), observe)

    rows = run_cells({a: make_attack(a) for a in cfg.bench.attacks}, columns)
    if cfg.bench.tsne and columns:
        for r in rows:  # a cell that ran elsewhere (bench --ray: a worker process) left no features here
            if r["defense"] == first and "error" not in r and r["attack"] not in tsne | tsne_errors:
                tsne_errors[r["attack"]] = "features not collected: the cell ran in another process (--ray?)"
    figures = {}
    for a, t in tsne.items():
        def draw(path, a=a, t=t):
            from nft_core.plots import tsne_plot

            tsne_plot({"backdoored": t["before"], f"after {t['defense']}": t["after"]}, t["labels"], t["poisoned"],
                      path, seed=cfg.seed, title=f"{a}: penultimate features (t-SNE)")

        figures[f"tsne_{re.sub(r'[^A-Za-z0-9_.-]', '_', a)}.png"] = draw
    header = (f"# nft-vision bench: {cfg.data.name}, {cfg.model.spec}, seed {cfg.seed}, device {device}\n\n"
              "ASR and ACC in %, after each defense; `none` is the backdoored model.")
    extra = {"config": asdict(cfg), "device": str(device),
             "ablation": [{"column": n, "options": o} for n, o in variants]}
    if tsne or tsne_errors:
        extra["tsne"] = {a: {"defense": t["defense"], "points": int(t["labels"].numel()),
                             "poisoned_points": int(t["poisoned"].sum())} for a, t in tsne.items()}
        extra["tsne_errors"] = tsne_errors
    return write_results(rows, out, header=header, extra=extra, figures=figures)
