"""What every task package shares outside its CLI: the device a run uses and where its cache lives."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import NFTInputError

__all__ = ["resolve_device", "cache_root"]


def resolve_device(device: str | None) -> torch.device:
    """``device`` as asked (a one-line error if it names CUDA on a machine without it), else CUDA where
    available, else the CPU."""
    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise NFTInputError(f"device {device!r} requested but CUDA is not available")
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cache_root(task: str, cache_dir: str | None = None) -> Path:
    """A task's cache folder: under ``cache_dir`` (the config's), else ``$NFT_CACHE_DIR``, else
    ``~/.cache/nft``."""
    return Path(cache_dir or os.environ.get("NFT_CACHE_DIR") or Path.home() / ".cache" / "nft") / task
