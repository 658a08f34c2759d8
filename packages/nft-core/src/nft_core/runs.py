"""Run directories that appear whole or not at all, and the reports written into them."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import NFTInputError

__all__ = ["run_directory", "write_json", "write_report"]


@contextmanager
def run_directory(out: str | os.PathLike, overwrite: bool = True):
    """Yield a temporary directory next to ``out``; on success it is renamed to ``out`` (replacing an
    existing one if ``overwrite``); on any error it is removed, leaving nothing half-written.
    Under ``torchrun`` only rank 0 publishes: the other ranks write into a private temporary directory
    that is removed at the end (every rank runs the same code, one writes the result)."""
    from .distributed import is_main

    if not is_main():
        with tempfile.TemporaryDirectory(prefix="nft-rank-") as scratch:
            yield Path(scratch)
        return
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    except OSError as e:
        blocker = next((q for q in [parent, *parent.parents] if q.exists() and not q.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else (e.strerror or str(e))
        raise NFTInputError(f"{out}: output directory is not writable ({why})") from e
    try:
        yield tmp
        if out.exists():
            if not overwrite:
                raise NFTInputError(f"{out}: already exists")
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise NFTInputError(f"{out}: could not write the run directory ({e.strerror or e})") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (int, str, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        return _clean(obj.item())
    return repr(obj)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    Path(path).write_text(json.dumps(_clean(obj), indent=2) + "\n")


def format_table(before: dict[str, float], after: dict[str, float]) -> str:
    """Markdown table metric | before | after | change."""
    keys = [k for k in before if k in after] + [k for k in after if k not in before]
    lines = ["| metric | before | after | change |", "|---|---:|---:|---:|"]
    for k in keys:
        b, a = before.get(k), after.get(k)
        fb = f"{b:.2f}" if isinstance(b, (int, float)) else "–"
        fa = f"{a:.2f}" if isinstance(a, (int, float)) else "–"
        d = f"{a - b:+.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "–"
        lines.append(f"| {k} | {fb} | {fa} | {d} |")
    return "\n".join(lines)


def write_report(run_dir: str | os.PathLike, report: dict[str, Any]) -> None:
    """``report.json`` (everything) and ``report.md`` (the before/after table and the settings)."""
    run_dir = Path(run_dir)
    write_json(run_dir / "report.json", report)
    md = [f"# {report.get('task', 'nft')} purification report", ""]
    md += [f"- defense: `{report.get('defense')}`", f"- wall time: {report.get('wall_time', 0):.1f} s"]
    if report.get("attack"):
        md.append(f"- attack: `{report['attack']}`")
    if report.get("recipe"):
        md.append(f"- recipe: {report['recipe']}")
    md += ["", format_table(report.get("before", {}), report.get("after", {})), ""]
    md += [f"**Note:** {n}" for n in report.get("notes") or []] + ([""] if report.get("notes") else [])
    (run_dir / "report.md").write_text("\n".join(md))
