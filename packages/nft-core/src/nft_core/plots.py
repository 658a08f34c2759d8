"""Figures for reports: per-layer mask heatmap and metrics per epoch (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["mask_heatmap", "history_plot"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def mask_heatmap(masks: dict[str, Tensor], path: str | os.PathLike, max_cols: int = 512) -> Path:
    """One row per masked layer (forward order), neurons sorted by mask value; NaN-padded."""
    plt = _plt()
    names = list(masks)
    width = min(max_cols, max(m.numel() for m in masks.values()))
    grid = torch.full((len(names), width), float("nan"))
    for i, n in enumerate(names):
        v = torch.sort(masks[n].detach().float().cpu().flatten()).values
        if v.numel() > width:  # subsample evenly so the row still shows the distribution
            v = v[torch.linspace(0, v.numel() - 1, width).long()]
        grid[i, : v.numel()] = v
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(names) + 1.5))
    im = ax.imshow(grid.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(names)), [n[-40:] for n in names], fontsize=6)
    ax.set_xlabel("neurons (sorted by mask value)")
    fig.colorbar(im, ax=ax, label="mask")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def history_plot(history: list[dict[str, float]], keys: list[str], path: str | os.PathLike) -> Path | None:
    """Lines of ``keys`` per epoch (only the keys present in the history)."""
    keys = [k for k in keys if any(k in h for h in history)]
    if not keys:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys:
        pts = [(h["epoch"], h[k]) for h in history if k in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
