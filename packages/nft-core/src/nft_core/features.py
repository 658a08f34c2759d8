"""Penultimate-layer features, for the t-SNE views of a backdoored and a purified model (NFT paper, Sec. 4.1
and Fig. 1: triggered samples form a "poison cluster" next to the target class; purification should
dissolve it, sending them back to their true classes' clusters).

The penultimate features are the *input of the model's last* ``nn.Linear`` (in module order), taken with a
forward pre-hook, so any classifier with a linear head works without knowing its attribute names.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .adapters import model_device
from .errors import NFTInputError
from .masks import call_model

__all__ = ["last_linear", "penultimate_features", "tsne_sample"]


def last_linear(model: nn.Module) -> nn.Module:
    """The last ``nn.Linear`` (or subclass) of ``model`` in ``named_modules()`` order."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not found:
        raise NFTInputError(f"{type(model).__name__} has no nn.Linear layer, so it has no penultimate features "
                            "(pass layer= to choose the module whose input to take)")
    return found[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, inputs: Tensor, *, layer: nn.Module | str | None = None,
                         batch_size: int = 256) -> Tensor:
    """The input of ``layer`` (default: :func:`last_linear`) for every sample of ``inputs`` (N, ...).

    Returns a float32 CPU tensor ``(N, F)``; an input with more than two dimensions (a linear applied per
    token) is flattened per sample. The model runs in eval mode (restored afterwards) on its own device.
    ``layer`` may be a module of ``model`` or its name in ``named_modules()``.
    """
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            raise NFTInputError(f"{type(model).__name__} has no module named {layer!r}")
        layer = modules[layer]
    target = last_linear(model) if layer is None else layer
    captured: list[Tensor] = []

    def grab(mod, args):
        if not args or not isinstance(args[0], Tensor):
            raise NFTInputError(f"{type(mod).__name__}: its first input is not a tensor")
        captured.append(args[0].detach())

    device = model_device(model)
    was = model.training
    model.eval()
    handle = target.register_forward_pre_hook(grab)
    out: list[Tensor] = []
    try:
        for s in range(0, inputs.shape[0], batch_size):
            captured.clear()
            call_model(model, inputs[s : s + batch_size].to(device))
            if not captured:
                raise NFTInputError(f"{type(target).__name__} was not called in the forward pass")
            feats = captured[-1]  # the last call in this forward (a head called once, as usual)
            out.append(feats.reshape(feats.shape[0], -1).float().cpu())
    finally:
        handle.remove()
        model.train(was)
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


def tsne_sample(clean_labels: Tensor, num_poisoned: int, *, max_points: int = 500,
                poisoned_fraction: float = 0.2, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor]:
    """Indices of a capped random subsample for a t-SNE view: ``(clean_idx, poisoned_idx)``.

    At most ``max_points`` in all, of which ``poisoned_fraction`` (or fewer, if there are fewer) are
    poisoned test points; each part is drawn uniformly without replacement from ``generator``.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n_clean = int(torch.as_tensor(clean_labels).numel())
    k_poison = min(num_poisoned, int(round(max_points * poisoned_fraction)))
    k_clean = min(n_clean, max_points - k_poison)
    clean_idx = torch.sort(torch.randperm(n_clean, generator=g)[:k_clean]).values
    poison_idx = torch.sort(torch.randperm(num_poisoned, generator=g)[:k_poison]).values
    return clean_idx, poison_idx

