"""Attack × defense grids on the same footing: each cell purifies the same backdoored model with the
same validation data, seed and device, and records the clean metric, ASR and wall time. A failing cell
records its error and the grid goes on. Tables are laid out like the NFT paper's Table 1 (ASR/ACC per
cell, an "average drop" row) and Table 6 (wall seconds per defense). :class:`ValidationSubset` runs a defense
on a smaller stratified validation set (the paper's validation-size study, Table 25)."""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import logging
import os
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .data import stratified_split
from .errors import DataError, NFTInputError
from .runs import run_directory, write_json

__all__ = ["run_cells", "ray_cluster", "ray_map", "write_results", "results_markdown", "ValidationSubset", "validation_subset_indices"]

log = logging.getLogger("nft")


_RAY: contextvars.ContextVar[str | None] = contextvars.ContextVar("nft_bench_ray", default=None)


@contextlib.contextmanager
def ray_cluster(address: str | None):
    """Within this block :func:`run_cells` runs its cells as Ray tasks on ``address`` (``"local"``: a
    local cluster started for the grid and stopped after it; ``"auto"`` or ``"ray://host:port"``: an
    existing one). ``None`` keeps the sequential default. The task CLIs' ``bench --ray`` uses this."""
    token = _RAY.set(address)
    try:
        yield
    finally:
        _RAY.reset(token)


def run_cells(
    attacks: dict[str, Callable[[], tuple[Any, Any, Any, Any]]],
    defenses: dict[str, Callable[[], Any]],
    *,
    clean_key: str = "acc",
    attack_key: str = "asr",
    ray: str | None = None,
) -> list[dict[str, Any]]:
    """``attacks[name]()`` -> ``(model, val_data, eval_data, adapter)``; ``defenses[name]()`` -> Defense.

    Returns one row per (attack, defense) plus a ``defense="none"`` row per attack (the backdoored model).
    With ``ray`` (or inside :func:`ray_cluster`) every attack, then every cell, is a Ray task — a separate
    worker process with one CPU, or one GPU when the cluster has them; the makers are shipped to the
    workers with cloudpickle, so a cell re-runs its attack maker (a cache hit for the task packages, whose
    first phase trained and cached each backdoored model). The rows are the same as sequentially.
    """
    ray = ray if ray is not None else _RAY.get()
    if ray:
        return _run_cells_ray(attacks, defenses, clean_key, attack_key, ray)
    rows: list[dict[str, Any]] = []
    for a_name, make in attacks.items():
        row, built = _attack_cell(a_name, make, clean_key, attack_key)
        rows.append(row)
        if built is None:
            continue
        for d_name, build in defenses.items():
            rows.append(_defense_cell(a_name, d_name, built, build, clean_key, attack_key))
    return rows


def _attack_cell(a_name, make, clean_key, attack_key):
    try:
        model, val, eval_data, adapter = make()
        before = adapter.evaluate(model, eval_data)
    except Exception as e:  # noqa: BLE001 - a broken attack cell is recorded, the grid goes on
        log.warning("attack %s failed: %s", a_name, e)
        return {"attack": a_name, "defense": "none", "error": f"{type(e).__name__}: {e}"}, None
    return ({"attack": a_name, "defense": "none", "clean": before.get(clean_key), "asr": before.get(attack_key),
             "time": 0.0, "metrics": before}, (model, val, eval_data, adapter))


def _defense_cell(a_name, d_name, built, build, clean_key, attack_key):
    model, val, eval_data, adapter = built
    t0 = time.perf_counter()
    try:
        res = build().purify(model, val, adapter)
        after = adapter.evaluate(res.model, eval_data)
        row = {"attack": a_name, "defense": d_name, "clean": after.get(clean_key), "asr": after.get(attack_key),
               "time": res.wall_time, "metrics": after}
        if (res.info or {}).get("returned_original"):  # NFT's safety guard kept nothing: say so in the grid
            row["returned_original"] = True
        return row
    except Exception as e:  # noqa: BLE001
        log.warning("cell %s × %s failed: %s", a_name, d_name, e)
        return {"attack": a_name, "defense": d_name, "error": f"{type(e).__name__}: {e}",
                "time": time.perf_counter() - t0, "traceback": traceback.format_exc(limit=3)}


def _ray_attack(a_name, make, clean_key, attack_key):
    row, _ = _attack_cell(a_name, make, clean_key, attack_key)
    row["pid"] = os.getpid()
    return row


def _ray_defense(a_name, d_name, make, build, clean_key, attack_key):
    row, built = _attack_cell(a_name, make, clean_key, attack_key)
    if built is not None:
        row = _defense_cell(a_name, d_name, built, build, clean_key, attack_key)
    row["pid"] = os.getpid()
    return row


@contextlib.contextmanager
def _ray_session(address: str):
    """``ray`` connected to ``address`` ("local": a local cluster started here and stopped after)."""
    # Under `uv run`, Ray would start its workers through `uv run` in a packaged copy of the working
    # directory (a re-sync, maybe a download; on a machine without network they never start). The
    # workers of a grid use this interpreter and its environment as they are. Ray reads the flag when
    # it is first imported, so it is set before that.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
    except ImportError as e:
        raise NFTInputError("--ray needs Ray: pip install 'nft-core[ray]'") from e
    import torch

    started = not ray.is_initialized()
    if started:
        local = address == "local"
        try:
            ray.init(address=None if local else address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, **({"num_gpus": torch.cuda.device_count()} if local else {}))
        except Exception as e:  # noqa: BLE001 - cannot reach the cluster: one line, exit 2
            raise NFTInputError(f"--ray: cannot start or reach the Ray cluster {address!r} ({e})") from e
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _remote(ray, fn):
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    return ray.remote(fn).options(num_cpus=1, num_gpus=gpus, max_retries=0)


def ray_map(fn: Callable, arglist: list[tuple], address: str) -> list[Any]:
    """``[fn(*args) for args in arglist]``, each call a Ray task (one CPU, or one GPU when the cluster
    has GPUs) in its own worker process."""
    with _ray_session(address) as ray:
        task = _remote(ray, fn)
        return ray.get([task.remote(*args) for args in arglist])


def _run_cells_ray(attacks, defenses, clean_key, attack_key, address: str) -> list[dict[str, Any]]:
    with _ray_session(address) as ray:
        attack_fn, cell_fn = _remote(ray, _ray_attack), _remote(ray, _ray_defense)
        # phase 1: each attack once (trains and caches the backdoored model); phase 2: every cell
        firsts = ray.get([attack_fn.remote(a, make, clean_key, attack_key) for a, make in attacks.items()])
        refs = {(a, d): cell_fn.remote(a, d, attacks[a], build, clean_key, attack_key)
                for a, first in zip(attacks, firsts) if "error" not in first for d, build in defenses.items()}
        cells = dict(zip(refs, ray.get(list(refs.values()))))
    rows: list[dict[str, Any]] = []
    for a, first in zip(attacks, firsts):
        rows.append(first)
        rows += [cells[(a, d)] for d in defenses if (a, d) in cells]
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
    kept_nothing = [r for r in rows if r.get("returned_original")]
    if kept_nothing:
        lines += ["", "NFT's safety guard returned the original model (every epoch lost more validation accuracy "
                  "than it allows; `safety_guard: None` in that column's options keeps the purified masks, e.g. "
                  "`\"bench.defense_options={'nft-surrogate': {'safety_guard': None}}\"`):"]
        lines += [f"- {r['attack']} × {r['defense']}" for r in kept_nothing]
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Failed cells:"] + [f"- {r['attack']} × {r['defense']}: {r['error']}" for r in errors]
    return "\n".join(lines)


def write_results(rows: list[dict[str, Any]], out: str | Path, *, clean_name: str = "ACC",
                  header: str = "", extra: dict[str, Any] | None = None,
                  figures: dict[str, Callable[[Path], Any]] | None = None) -> str:
    """results.csv, results.json, results.md and an ASR-vs-clean scatter plot, written atomically.

    ``figures``: ``{file name: fn(path)}``, extra files drawn into the same directory (e.g. t-SNE views);
    one that fails is logged and listed under ``figure_errors`` in results.json, the rest is written."""
    md = results_markdown(rows, clean_name)
    with run_directory(out) as d:
        figure_errors = {}
        for fname, draw in (figures or {}).items():
            try:
                draw(Path(d) / fname)
            except Exception as e:  # noqa: BLE001 - a figure must not cost the table
                log.warning("figure %s failed: %s", fname, e)
                figure_errors[fname] = f"{type(e).__name__}: {e}"
        if figure_errors:
            extra = {**(extra or {}), "figure_errors": figure_errors}
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


def validation_subset_indices(labels: Any, size: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of a stratified subset of ``size`` samples: ``size / C`` of each of the ``C`` classes present,
    drawn with :func:`~nft_core.data.stratified_split` from a generator seeded with ``seed``. For one seed the
    subsets of different sizes are nested (each class's permutation is the same), so a validation-size sweep
    (NFT paper, Karim et al., ECCV 2024, Table 25) only adds samples as it grows."""
    labels = torch.as_tensor(labels).long().cpu()
    classes, counts = torch.unique(labels, return_counts=True)
    c = classes.numel()
    if size < c or size % c:
        raise DataError(f"validation size {size}: a stratified subset needs a multiple of the {c} classes")
    k = size // c
    if k > int(counts.min()):
        short = int(classes[counts.argmin()])
        raise DataError(f"validation size {size} needs {k} samples per class, but class {short} has only "
                        f"{int(counts.min())} of the {labels.numel()} validation samples (use a larger validation split)")
    return stratified_split(labels, per_class=k, generator=torch.Generator().manual_seed(seed))[0]


class ValidationSubset:
    """Runs ``defense`` on a stratified subset of ``size`` samples of the validation data it is given, so one
    bench grid can sweep the validation size on the same backdoored model (NFT paper, Karim et al., ECCV
    2024, Table 25: 10 to 500 CIFAR-10 images). ``info["validation_samples"]`` records the size used."""

    def __init__(self, defense: Any, size: int, seed: int = 0):
        self.defense, self.size, self.seed = defense, int(size), seed
        self.name = getattr(defense, "name", type(defense).__name__)

    def purify(self, model, data, adapter):
        if hasattr(adapter, "labels"):
            labels = adapter.labels(data)
        else:
            labels = torch.as_tensor([int(data[i][1]) for i in range(len(data))])
        idx = validation_subset_indices(labels, self.size, seed=self.seed)
        if hasattr(data, "subset"):
            sub = data.subset(idx)
        else:
            sub = torch.utils.data.Subset(data, idx.tolist())
        res = self.defense.purify(model, sub, adapter)
        res.info = {**res.info, "validation_samples": len(sub)}
        return res

    def __repr__(self) -> str:
        return f"ValidationSubset({self.defense!r}, size={self.size}, seed={self.seed})"
