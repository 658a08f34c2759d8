"""``nft matrix``: every installed task's embedded default through the same pipeline, one table.

Each task package's console script is found through its distribution's entry points (nft-core imports no
task package), and its ``purify`` verb runs in this process: NFT with the task's default recipe, then one
baseline (FT-SAM by default) on the same cached backdoored model. A failing task is recorded and the
matrix goes on.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["TASK_DISTS", "installed_task_clis", "run_matrix", "matrix_markdown"]

TASK_DISTS = ["nft-vision", "nft-detection", "nft-video", "nft-pointcloud", "nft-nlg"]


def installed_task_clis() -> dict[str, Any]:
    """``{task: main}`` for every installed task package (task = the distribution name minus ``nft-``)."""
    out = {}
    for dist in TASK_DISTS:
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        eps = [ep for ep in d.entry_points if ep.group == "console_scripts"]
        if eps:
            out[dist.removeprefix("nft-")] = eps[0].load()
    return out


def _run(main, argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ""


def run_matrix(tasks: list[str] | None = None, *, quick: bool = False, baseline: str | None = "ftsam",
               out: Path | None = None, log=None, ray: str | None = None) -> list[dict[str, Any]]:
    """Rows of the matrix. With ``ray`` (``"local"`` or a cluster address) each task is a Ray task (its
    NFT and baseline runs one after another in that worker, the baseline on the cached model)."""
    clis = installed_task_clis()
    tasks = tasks or list(clis)
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="nft-matrix-"))
    missing = {t: [{"task": t, "defense": "nft", "error": f"task package nft-{t} is not installed"}]
               for t in tasks if t not in clis}
    present = [t for t in tasks if t in clis]
    if ray:
        from .bench import ray_map

        done = dict(zip(present, ray_map(_task_rows, [(t, quick, baseline, root, None) for t in present], ray)))
    else:
        done = {t: _task_rows(t, quick, baseline, root, log) for t in present}
    return [row for t in tasks for row in (missing.get(t) or done[t])]


def _task_rows(task: str, quick: bool, baseline: str | None, root: Path, log) -> list[dict[str, Any]]:
    main = installed_task_clis()[task]
    opts = list(getattr(sys.modules[main.__module__], "QUICK_OPTIONS", [])) if quick else []
    rows: list[dict[str, Any]] = []
    for defense in ["nft"] + ([baseline] if baseline else []):
        run_dir = root / f"{task}-{defense}"
        argv = ["purify", "--quiet", "--out", str(run_dir)]
        if defense != "nft":
            argv += ["--defense", defense]
        extra = ["defense.options={'epochs': 1}"] if quick and defense != "nft" else []
        if opts or extra:
            argv += ["--cfg-options", *opts, *extra]
        if log:
            log(f"{task} × {defense} ...")
        t0 = time.perf_counter()
        try:
            code, last = _run(main, argv)
        except Exception as e:  # noqa: BLE001 - one task's failure must not hide another's
            code, last = 1, f"{type(e).__name__}: {e}"
        wall = time.perf_counter() - t0
        if code != 0 or not (run_dir / "report.json").exists():
            rows.append({"task": task, "defense": defense, "error": last or f"exit code {code}", "wall": wall})
            continue
        rep = json.loads((run_dir / "report.json").read_text())
        before, after = rep["before"], rep["after"]
        metric = next(k for k in before if k not in ("asr", "lcr", "asr_exact"))
        rows.append({"task": task, "attack": rep.get("attack"), "defense": defense,
                     "recipe": rep.get("recipe"), "metric": metric,
                     "clean_before": before.get(metric), "clean_after": after.get(metric),
                     "asr_before": before.get("asr"), "asr_after": after.get("asr"),
                     "defense_s": rep.get("wall_time"), "wall": wall, "run_dir": str(run_dir), "pid": os.getpid(),
                     "notes": rep.get("notes") or []})
    return rows


def matrix_markdown(rows: list[dict[str, Any]]) -> str:
    def f(v):
        return f"{v:.2f}" if isinstance(v, (int, float)) else "–"

    lines = ["| task | attack | defense | metric | clean before | clean after | ASR before | ASR after | defense s | wall s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['task']} | – | {r['defense']} | error: {r['error']} | | | | | | {f(r.get('wall'))} |")
            continue
        name = r["defense"] + (f" ({r['recipe']})" if r.get("recipe") else "")
        lines.append(f"| {r['task']} | {r['attack']} | {name} | {r['metric']} | {f(r['clean_before'])} | "
                     f"{f(r['clean_after'])} | {f(r['asr_before'])} | {f(r['asr_after'])} | {f(r['defense_s'])} | "
                     f"{f(r['wall'])} |")
    notes = [f"- {r['task']} × {r['defense']}: {n}" for r in rows for n in r.get("notes") or []]
    return "\n".join(lines + (["", "Notes:", *notes] if notes else []))
