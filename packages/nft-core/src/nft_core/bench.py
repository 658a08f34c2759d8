"""Attack × defense grids on the same footing: each cell purifies the same backdoored model with the
same validation data, seed and device, and records the clean metric, ASR and wall time. A failing cell
records its error and the grid goes on. Tables are laid out like the NFT paper's Table 1 (ASR/ACC per
cell, an "average drop" row) and Table 6 (wall seconds per defense)."""

from __future__ import annotations

import csv
import io
import logging
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .runs import run_directory, write_json

__all__ = ["run_cells", "write_results", "results_markdown"]

log = logging.getLogger("nft")


def run_cells(
    attacks: dict[str, Callable[[], tuple[Any, Any, Any, Any]]],
    defenses: dict[str, Callable[[], Any]],
    *,
    clean_key: str = "acc",
    attack_key: str = "asr",
) -> list[dict[str, Any]]:
    """``attacks[name]()`` -> ``(model, val_data, eval_data, adapter)``; ``defenses[name]()`` -> Defense.

    Returns one row per (attack, defense) plus a ``defense="none"`` row per attack (the backdoored model).
    """
    rows: list[dict[str, Any]] = []
    for a_name, make in attacks.items():
        try:
            model, val, eval_data, adapter = make()
            before = adapter.evaluate(model, eval_data)
        except Exception as e:  # noqa: BLE001 - a broken attack cell is recorded, the grid goes on
            log.warning("attack %s failed: %s", a_name, e)
            rows.append({"attack": a_name, "defense": "none", "error": f"{type(e).__name__}: {e}"})
            continue
        rows.append({"attack": a_name, "defense": "none", "clean": before.get(clean_key),
                     "asr": before.get(attack_key), "time": 0.0, "metrics": before})
        for d_name, build in defenses.items():
            t0 = time.perf_counter()
            try:
                res = build().purify(model, val, adapter)
                after = adapter.evaluate(res.model, eval_data)
                rows.append({"attack": a_name, "defense": d_name, "clean": after.get(clean_key),
                             "asr": after.get(attack_key), "time": res.wall_time, "metrics": after})
            except Exception as e:  # noqa: BLE001
                log.warning("cell %s × %s failed: %s", a_name, d_name, e)
                rows.append({"attack": a_name, "defense": d_name, "error": f"{type(e).__name__}: {e}",
                             "time": time.perf_counter() - t0, "traceback": traceback.format_exc(limit=3)})
    return rows


def results_markdown(rows: list[dict[str, Any]], clean_name: str = "ACC") -> str:
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    defenses = list(dict.fromkeys(r["defense"] for r in rows))
    cell = {(r["attack"], r["defense"]): r for r in rows}
    head = "| attack | " + " | ".join(f"{d} ASR | {d} {clean_name}" for d in defenses) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(defenses)]
    for a in attacks:
        parts = []
        for d in defenses:
            r = cell.get((a, d), {})
            if "error" in r:
                parts += ["error", "error"]
            elif r:
                parts += [f"{r['asr']:.2f}" if r.get("asr") is not None else "–", f"{r['clean']:.2f}"]
            else:
                parts += ["–", "–"]
        lines.append(f"| {a} | " + " | ".join(parts) + " |")
    # average drop relative to the backdoored model ("none"), over attacks where both cells ran
    parts = []
    for d in defenses:
        drops_asr, drops_clean = [], []
        for a in attacks:
            b, r = cell.get((a, "none"), {}), cell.get((a, d), {})
            if "error" in b or "error" in r or not b or not r or b.get("asr") is None or r.get("asr") is None:
                continue
            drops_asr.append(b["asr"] - r["asr"])
            drops_clean.append(b["clean"] - r["clean"])
        parts += [f"{statistics.mean(drops_asr):.2f}" if drops_asr else "–",
                  f"{statistics.mean(drops_clean):.2f}" if drops_clean else "–"]
    lines.append("| average drop | " + " | ".join(parts) + " |")
    lines += ["", "| defense | mean wall s | cells |", "|---|---:|---:|"]
    for d in defenses:
        if d == "none":
            continue
        ts = [cell[(a, d)]["time"] for a in attacks if (a, d) in cell and "error" not in cell[(a, d)]]
        lines.append(f"| {d} | {statistics.mean(ts):.2f} | {len(ts)} |" if ts else f"| {d} | – | 0 |")
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Failed cells:"] + [f"- {r['attack']} × {r['defense']}: {r['error']}" for r in errors]
    return "\n".join(lines)


def write_results(rows: list[dict[str, Any]], out: str | Path, *, clean_name: str = "ACC",
                  header: str = "", extra: dict[str, Any] | None = None) -> str:
    """results.csv, results.json, results.md and an ASR-vs-clean scatter plot, written atomically."""
    md = results_markdown(rows, clean_name)
    with run_directory(out) as d:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["attack", "defense", "asr", clean_name.lower(), "wall_s", "error"])
        for r in rows:
            w.writerow([r["attack"], r["defense"], r.get("asr"), r.get("clean"), r.get("time"), r.get("error", "")])
        (Path(d) / "results.csv").write_text(buf.getvalue())
        write_json(Path(d) / "results.json", {"rows": rows, **(extra or {})})
        (Path(d) / "results.md").write_text((header + "\n\n" if header else "") + md + "\n")
        _scatter(rows, Path(d) / "asr_vs_clean.png", clean_name)
    return md


def _scatter(rows, path: Path, clean_name: str) -> None:
    from .plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for d in dict.fromkeys(r["defense"] for r in rows):
        pts = [(r["clean"], r["asr"]) for r in rows if r["defense"] == d and "error" not in r and r.get("asr") is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=d)
    ax.set_xlabel(clean_name)
    ax.set_ylabel("ASR")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
