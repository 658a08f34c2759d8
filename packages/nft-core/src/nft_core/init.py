"""Seeded weight initialisation without touching the global RNG."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["seeded_init_"]


@torch.no_grad()
def seeded_init_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every weight of ``model`` from ``generator`` (PyTorch's default schemes: Kaiming
    uniform with a=√5 for conv/linear, fan-in uniform biases, N(0,1) embeddings, ones/zeros for norms,
    uniform ±1/√H for recurrent layers). Returns ``model``."""
    for m in model.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in = m.weight[0].numel() if not isinstance(m, nn.modules.conv._ConvTransposeNd) else (
                    m.weight.shape[0] * m.weight[0, 0].numel())
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, generator=generator)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.RNNBase):
            bound = 1 / math.sqrt(m.hidden_size)
            for p in m.parameters(recurse=False):
                nn.init.uniform_(p, -bound, bound, generator=generator)
        elif isinstance(m, nn.MultiheadAttention):
            for p in m.parameters(recurse=False):
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p, generator=generator)
                else:
                    nn.init.zeros_(p)
    return model
