"""mmengine-style Python configs (``_base_`` inheritance, ``--cfg-options a.b=1``) validated into
dataclasses: an unknown or mistyped key is a :class:`~nft_core.errors.ConfigError` naming the key and the
file it came from."""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["load_config", "parse_cfg_options", "to_dataclass", "dump_config"]


def parse_cfg_options(options: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]", "d=text"]`` -> ``{"a.b": 1, "c": [1, 2], "d": "text"}``."""
    out: dict[str, Any] = {}
    for opt in options or []:
        if "=" not in opt:
            raise ConfigError(f"--cfg-options: expected KEY=VALUE, got {opt!r}")
        k, v = opt.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            low = v.strip().lower()
            out[k.strip()] = {"true": True, "false": False, "none": None}.get(low, v)
    return out


def load_config(path: str | os.PathLike | None, options: list[str] | None = None, base: dict | None = None) -> dict:
    """Read a config file (or start from ``base``) and apply ``--cfg-options`` overrides.

    Returns a plain nested dict plus the key ``_source_`` (the file name, for error messages).
    """
    from mmengine.config import Config

    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: config file not found")
        try:
            cfg = Config.fromfile(str(p))
        except Exception as e:  # noqa: BLE001 - mmengine raises many types for a broken file
            raise ConfigError(f"{p}: cannot read config ({type(e).__name__}: {e})") from e
        source = str(p)
    else:
        cfg = Config(dict(base or {}))
        source = "<default config>"
    overrides = parse_cfg_options(options)
    if overrides:
        cfg.merge_from_dict(overrides)
    data = cfg.to_dict()
    data["_source_"] = source if not overrides else f"{source} with --cfg-options"
    return data


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check (and gently coerce: int -> float, list -> tuple) ``value`` against annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return True, None
        for arm in typing.get_args(tp):
            ok, v = _type_ok(value, arm)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is str and value is None:  # ``--cfg-options a.name=none``: mmengine reads the word none as None
        return True, "none"
    if tp in (str, bool):
        return isinstance(value, tp), value
    if origin in (list, tuple, typing.Sequence, collections.abc.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(tp)
        if args and args[0] is not Ellipsis:
            inner = args[0]
            out = []
            for v in value:
                ok, cv = _type_ok(v, inner)
                if not ok:
                    return False, value
                out.append(cv)
            value = out
        return True, tuple(value) if origin is tuple or tp is tuple else list(value)
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value


def _tname(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def to_dataclass(cls: type, data: dict, source: str = "<config>", prefix: str = ""):
    """Build dataclass ``cls`` from ``data``; nested dataclass fields take nested dicts."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: key '{prefix.rstrip('.') or '<root>'}' must be a dict, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key.startswith("_") and key.endswith("_"):
            continue  # mmengine bookkeeping (_base_, _source_, ...)
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.75)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = to_dataclass(tp, value, source, f"{prefix}{key}.")
            continue
        ok, coerced = _type_ok(value, tp)
        if not ok:
            raise ConfigError(
                f"{source}: key '{prefix}{key}' expects {_tname(tp)}, got {type(value).__name__} {value!r}"
            )
        kwargs[key] = coerced
    return cls(**kwargs)


def dump_config(obj: Any, path: str | os.PathLike) -> None:
    """Write a dataclass (or dict) as a Python config file that ``load_config`` reads back."""
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
    lines = ["# resolved configuration of this run (load with --cfg)"]
    for k, v in data.items():
        lines.append(f"{k} = {v!r}")
    Path(path).write_text("\n".join(lines) + "\n")
