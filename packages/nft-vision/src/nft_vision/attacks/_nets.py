"""Helpers shared by the attacks with a learned trigger: tiny size-agnostic conv nets, the victim
optimiser (the same SGD + one-cycle recipe as :func:`nft_vision.train.train_classifier`) and state-dict
plumbing. Nothing here touches the global RNG."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nft_core.init import seeded_init_


def conv_net(cin: int, cout: int, width: int, depth: int, generator: torch.Generator) -> nn.Sequential:
    """``depth`` 3×3 conv + ReLU layers of ``width`` channels (padding keeps H×W), then a 3×3 conv to
    ``cout`` channels; no normalisation, so the output of one image never depends on the batch."""
    layers: list[nn.Module] = []
    c = cin
    with quiet_rng():
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            c = width
        layers.append(nn.Conv2d(c, cout, 3, padding=1))
    return seeded_init_(nn.Sequential(*layers), generator)


def quiet_rng():
    """Context that restores the global CPU RNG on exit (PyTorch's default init of a new module draws
    from it; every weight is then re-drawn from a seeded generator)."""
    return torch.random.fork_rng(devices=[])


def victim_optimizer(model: nn.Module, lr: float, steps: int, weight_decay: float = 5e-4):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Shuffled index batches covering ``n`` samples once."""
    perm = torch.randperm(n, generator=generator)
    for s in range(0, n, batch_size):
        yield perm[s : s + batch_size]


def steps_for(n: int, batch_size: int, epochs: int) -> int:
    return epochs * math.ceil(n / batch_size)


def prefixed_state(prefix: str, module: nn.Module) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_prefixed(prefix: str, module: nn.Module, state: dict[str, Tensor]) -> None:
    sub = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    module.load_state_dict(sub)


def grey_residual(attack, shape) -> Tensor:
    """``apply(g) - g`` for a mid-grey image ``g`` of ``shape`` (C, H, W): the trigger of a sample-specific
    attack shown on a neutral input."""
    g = torch.full((1, *shape), 0.5)
    return (attack.apply(g) - g)[0]
