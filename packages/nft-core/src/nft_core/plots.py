"""Figures for reports: per-layer mask heatmap, metrics per epoch and t-SNE views of penultimate features
before and after purification (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["mask_heatmap", "history_plot", "tsne_embed", "tsne_plot"]


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


def tsne_embed(features: Tensor, *, seed: int = 0, perplexity: float = 30.0) -> Tensor:
    """2-D t-SNE embedding (scikit-learn, Barnes-Hut) of ``features`` ``(N, F)``; deterministic for a seed.

    The perplexity is capped below ``(N - 1) / 3`` so that a small sample still embeds."""
    from sklearn.manifold import TSNE

    x = features.detach().float().cpu().numpy()
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    perp = min(perplexity, max(1.0, (n - 1) / 3.0 - 1e-6))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca" if x.shape[1] >= 2 else "random",
                learning_rate="auto", random_state=seed)
    return torch.from_numpy(tsne.fit_transform(x)).float()


def tsne_plot(features: dict[str, Tensor], labels: Tensor, poisoned: Tensor, path: str | os.PathLike, *,
              seed: int = 0, title: str | None = None, poisoned_label: str = "poisoned test") -> Path:
    """One t-SNE panel per entry of ``features`` (e.g. ``{"backdoored": f0, "after NFT": f1}``), as in the NFT
    paper's Fig. 1 (Karim et al., ECCV 2024): every panel embeds the same N points, clean test points coloured
    by class, poisoned (triggered) test points drawn as black crosses, so a "poison cluster" beside the target
    class — and its dissolution after purification — is visible.

    ``features[k]``: ``(N, F)``; ``labels``: ``(N,)`` class ids (true classes, also for poisoned points);
    ``poisoned``: ``(N,)`` bool.
    """
    plt = _plt()
    labels = torch.as_tensor(labels).long().cpu()
    poisoned = torch.as_tensor(poisoned).bool().cpu()
    for k, f in features.items():
        if f.shape[0] != labels.numel() or poisoned.numel() != labels.numel():
            raise ValueError(f"t-SNE panel {k!r}: {f.shape[0]} feature rows for {labels.numel()} labels "
                             f"and {poisoned.numel()} poisoned flags")
    classes = sorted(set(labels[~poisoned].tolist()))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "gist_ncar")
    colour = {c: cmap(i / max(len(classes) - 1, 1) if len(classes) > 20 else i) for i, c in enumerate(classes)}
    fig, axes = plt.subplots(1, len(features), figsize=(4.2 * len(features) + 1.2, 4.2), squeeze=False)
    for ax, (name, f) in zip(axes[0], features.items()):
        xy = tsne_embed(f, seed=seed).numpy()
        for c in classes:
            sel = ((labels == c) & ~poisoned).numpy()
            ax.scatter(xy[sel, 0], xy[sel, 1], s=7, color=colour[c], label=str(c) if len(classes) <= 20 else None)
        if poisoned.any():
            sel = poisoned.numpy()
            ax.scatter(xy[sel, 0], xy[sel, 1], s=16, marker="x", color="black", linewidths=0.8, label=poisoned_label)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
