"""The shared ``purify`` pipeline every task CLI ends with.

model + validation data + evaluation data + adapter + defense -> purify (validation data only) ->
evaluate the model before and after on the evaluation data -> a run directory (written atomically) holding
``purified.safetensors``, ``masks.safetensors``, ``report.json``, ``report.md``, ``mask_heatmap.png``,
``history.png`` and ``config.resolved.py``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adapters import model_device
from .checkpoint import save_model, save_state_dict
from .contracts import Augmentation, Defense, PurifyResult, TaskAdapter
from .errors import NFTInputError
from .runs import run_directory, write_report

__all__ = ["build_defense", "purify_and_report"]


def build_defense(name: str, options: dict[str, Any] | None = None, augmentation: Augmentation | None = None,
                  eval_data: Any = None) -> Defense:
    """A defense from its CLI name (``nft``, ``ft``, ``anp`` …) and keyword options."""
    from .defenses import DEFENSES
    from .nft import NFT
    from .schedules import Schedule

    if name not in DEFENSES:
        raise NFTInputError(f"unknown defense {name!r}; choose from {', '.join(DEFENSES)}")
    options = dict(options or {})
    cls = DEFENSES[name]
    if cls is NFT:
        if isinstance(options.get("schedule"), dict):
            options["schedule"] = Schedule(**options["schedule"])
        return NFT(augmentation=augmentation, eval_data=eval_data, **options)
    try:
        return cls(**options)
    except TypeError as e:
        raise NFTInputError(f"defense {name}: {e}") from e


def purify_and_report(
    *,
    task: str,
    model: nn.Module,
    val_data: Any,
    eval_data: Any,
    adapter: TaskAdapter,
    defense: Defense,
    out: str | os.PathLike | None,
    config: Any = None,
    attack: str | None = None,
    recipe: str | None = None,
    extra: dict[str, Any] | None = None,
    files: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``defense`` and write the run directory ``out`` (skipped when ``out`` is None).

    ``recipe``: the NFT recipe's label for the report (see :func:`~nft_core.task_cli.recipe_label`).
    ``files`` maps extra file names to ``write(path)`` callables run inside the same atomic directory
    (e.g. the tokenizer of a text model), so they appear together with the rest or not at all.

    Returns the report dict (``before``, ``after``, ``wall_time``, ``history``, ``info`` …).
    """
    t0 = time.perf_counter()
    result: PurifyResult = defense.purify(model, val_data, adapter)
    # the evaluation data is read only once the defense has returned (a defense leaves ``model`` as it was)
    before = adapter.evaluate(model, eval_data)
    after = adapter.evaluate(result.model, eval_data)
    cfg = config
    if dataclasses.is_dataclass(cfg):
        cfg = dataclasses.asdict(cfg)
    notes = []
    info = result.info or {}
    if info.get("returned_original"):  # a user without a poisoned test set would otherwise not know
        ref, guard = info.get("guard_reference"), info.get("guard")
        notes.append(f"NFT's safety guard returned the ORIGINAL model unchanged: every epoch's masks lost more "
                     f"than {guard:g} points of validation accuracy (reference {ref:.2f}), so nothing was purified "
                     f"and a backdoor, if there is one, is still there. To keep the purified masks at that cost: "
                     f"--cfg-options " + ("\"augmentation.options={'fallback_guard': None}\" (the guard was asked "
                                          "for by the surrogate trigger, which found no trigger)"
                                          if info.get("guard_requested") else "defense.options.safety_guard=None"))
    report = {
        "task": task,
        "attack": attack,
        "defense": getattr(defense, "name", type(defense).__name__),
        "recipe": recipe,
        "before": before,
        "after": after,
        "wall_time": result.wall_time,
        "total_time": time.perf_counter() - t0,
        "validation_samples": len(val_data),
        "notes": notes,
        "history": result.history,
        "info": result.info,
        "config": cfg,
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(model_device(result.model)),
        },
        **(extra or {}),
    }
    if out is not None:
        with run_directory(out) as d:
            _write_run(Path(d), result, report, config)
            for name, write in (files or {}).items():
                write(Path(d) / name)
    return report


def _write_run(d: Path, result: PurifyResult, report: dict[str, Any], config: Any) -> None:
    from .config import dump_config
    from .plots import history_plot, mask_heatmap

    save_model(result.model, d / "purified.safetensors", metadata={"task": str(report["task"])})
    if result.masks:
        save_state_dict(result.masks, d / "masks.safetensors")
        mask_heatmap(result.masks, d / "mask_heatmap.png")
    history_plot(result.history, ["asr", "acc", "map", "bleu", "loss"], d / "history.png")
    write_report(d, report)
    if config is not None:
        dump_config(config, d / "config.resolved.py")
