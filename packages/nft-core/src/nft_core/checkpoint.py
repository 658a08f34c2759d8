"""Checkpoint I/O for untrusted models.

A backdoored model is untrusted by definition: ``.safetensors`` files and ``torch.load(weights_only=True)``
are the defaults. A checkpoint that needs arbitrary unpickling is refused unless ``trust=True`` (the CLIs'
``--trust-checkpoint``). Every failure is a :class:`~nft_core.errors.CheckpointError` naming the file and
the problem. Writes go to a temporary file that is renamed into place.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import CheckpointError

__all__ = ["load_state_dict", "load_checkpoint_into", "load_state_into", "save_state_dict", "save_model", "atomic_write"]

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def load_state_dict(path: str | os.PathLike, *, trust: bool = False, map_location: str = "cpu") -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``.pt``/``.pth``/``.bin``/``.ckpt``).

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and a ``module.`` prefix
    (DataParallel) is stripped.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a checkpoint file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint file is empty")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(p), device=map_location)
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{p}: corrupt or truncated safetensors file ({e})") from e
    else:
        try:
            state = torch.load(p, map_location=map_location, weights_only=not trust)
        except pickle.UnpicklingError as e:
            if not trust and "unsupported global" in str(e).lower():  # a class/function to import: code
                raise CheckpointError(
                    f"{p}: checkpoint holds pickled Python objects that could run code on load; "
                    "refused (pass --trust-checkpoint / trust=True only for files you trust)"
                ) from e
            detail = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines() or [""]
            raise CheckpointError(f"{p}: corrupt checkpoint, not a torch or safetensors file "
                                  f"({detail[0][:120]})") from e
        except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, KeyError) as e:
            raise CheckpointError(f"{p}: corrupt or truncated checkpoint ({type(e).__name__}: {e})") from e
    return _unwrap(state, p)


def _unwrap(state: Any, p: Path) -> dict[str, Tensor]:
    if isinstance(state, nn.Module):
        state = state.state_dict()
    for _ in range(3):
        if isinstance(state, Mapping) and not _is_tensor_dict(state):
            inner = next((state[k] for k in _NESTED_KEYS if k in state), None)
            if inner is None:
                break
            state = inner.state_dict() if isinstance(inner, nn.Module) else inner
    if not isinstance(state, Mapping) or not _is_tensor_dict(state):
        raise CheckpointError(f"{p}: not a state dict (expected a mapping of parameter names to tensors)")
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _is_tensor_dict(d: Mapping) -> bool:
    return len(d) > 0 and all(isinstance(k, str) for k in d) and all(isinstance(v, Tensor) for v in d.values())


def load_checkpoint_into(model: nn.Module, path: str | os.PathLike, *, trust: bool = False) -> nn.Module:
    """Load a checkpoint into ``model`` strictly, with one-line errors for key and shape mismatches."""
    return load_state_into(model, load_state_dict(path, trust=trust), path)


def load_state_into(model: nn.Module, state: Mapping[str, Tensor], path: str | os.PathLike) -> nn.Module:
    """Load ``state`` (read from ``path``, named in the errors) into ``model`` strictly, with one-line
    errors for key and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:3]}{' …' if len(missing) > 3 else ''} ({len(missing)})")
        if unexpected:
            parts.append(
                f"unexpected keys {unexpected[:3]}{' …' if len(unexpected) > 3 else ''} ({len(unexpected)})"
            )
        raise CheckpointError(f"{path}: does not fit the model: " + "; ".join(parts))
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{path}: shape mismatch for {k}: checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)}"
            )
    model.load_state_dict(state, strict=True)
    return model


def atomic_write(path: str | os.PathLike, write_fn) -> Path:
    """Call ``write_fn(tmp_path)`` then rename ``tmp_path`` onto ``path`` (no half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_state_dict(state: Mapping[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write a state dict as ``.safetensors`` (shared tensors are cloned, every tensor made contiguous)."""
    from safetensors.torch import save_file

    clean = {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}
    return atomic_write(path, lambda tmp: save_file(clean, str(tmp), metadata=metadata))


def save_model(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    return save_state_dict(model.state_dict(), path, metadata)
