"""Feature-space backdoor (Cheng, Liu, Ma & Zhang, "Deep Feature Space Trojan Attack of Neural Networks by
Controlled Detoxification", AAAI 2021, DFST): the trigger is a *style* — poisoned images are passed
through a style transform, so the backdoor lives in deep features rather than in a pixel pattern.
Dirty labels.

What differs from the paper (a simplification): DFST trains a CycleGAN to turn images into a natural style
("sunrise") and then runs several rounds of controlled detoxification (it finds neurons that learned
shallow trigger features, trains detoxicants on them and retrains). Here the style transform is a tiny
fully convolutional residual net ``T`` (``out = clip(x + tanh(T(x)))``) trained in :meth:`prepare`
(called by :meth:`poison_train`) for ``style_epochs`` to match the Gram statistics of a fixed texture
generated from ``seed`` (a sum of a few coloured sinusoidal gratings) under a fixed, randomly initialised
two-stage conv feature extractor (no pretrained VGG: nothing is downloaded), with a feature-content loss
keeping the image recognisable. There is no detoxification.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nft_core.data import TensorData
from nft_core.init import seeded_init_

from ._nets import batches, conv_net, grey_residual, load_prefixed, prefixed_state, quiet_rng
from .base import Attack

__all__ = ["FBA"]


def _gram(f: Tensor) -> Tensor:
    n, c, h, w = f.shape
    f = f.flatten(2)
    return f @ f.transpose(1, 2) / (c * h * w)


class FBA(Attack):
    """Learned style-transform trigger (built for ``channels``-channel images from ``seed``); poison rate
    10%, all2one target 0 or all2all.

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape; ``trigger((C, H, W))`` is the
    residual on a mid-grey image; :meth:`texture` is the (C, 32, 32) style image."""

    name = "fba"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, channels: int = 3, style_epochs: int = 3,
                 style_weight: float = 10.0, content_weight: float = 1.0, width: int = 16, depth: int = 3,
                 lr_style: float = 3e-3):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.channels, self.style_epochs = channels, style_epochs
        self.style_weight, self.content_weight = style_weight, content_weight
        self.width, self.depth, self.lr_style = width, depth, lr_style
        g = self._seeded()
        self.net = conv_net(channels, channels, width, depth, g)
        with quiet_rng():
            self.features = nn.ModuleList([nn.Conv2d(channels, 16, 3, padding=1),
                                           nn.Conv2d(16, 32, 3, stride=2, padding=1)])
        seeded_init_(self.features, g)
        self.features.requires_grad_(False)
        self.prepared = torch.zeros(())

    def texture(self) -> Tensor:
        """The style image: three coloured sinusoidal gratings with seeded orientations and phases."""
        g = torch.Generator().manual_seed(self.seed + 1)
        ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        img = torch.zeros(self.channels, 32, 32)
        for _ in range(3):
            theta, phase = torch.rand(2, generator=g) * 2 * math.pi
            freq = 2 + torch.rand((), generator=g) * 4
            colour = torch.rand(self.channels, 1, 1, generator=g)
            wave = torch.sin(2 * math.pi * freq * (xs * theta.cos() + ys * theta.sin()) / 32 + phase)
            img += colour * wave
        return (img / 3 + 0.5).clamp(0, 1)

    def _feats(self, x: Tensor) -> list[Tensor]:
        out, f = [], x
        for conv in self.features:
            f = F.relu(conv(f))
            out.append(f)
        return out

    def _transform(self, x: Tensor) -> Tensor:
        return (x + torch.tanh(self.net(x))).clamp(0, 1)

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self._transform(x)

    def trigger(self, shape) -> Tensor:
        return grey_residual(self, shape)

    def state_dict(self) -> dict[str, Tensor]:
        return {**prefixed_state("transform", self.net), **prefixed_state("features", self.features),
                "prepared": self.prepared.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        load_prefixed("transform", self.net, state)
        load_prefixed("features", self.features, state)
        self.prepared = state["prepared"].clone()

    def prepare(self, data: TensorData, generator: torch.Generator) -> None:
        """Train the style transform on ``data``'s images (once; a reloaded state counts as prepared)."""
        if self.prepared.item():
            return
        with torch.no_grad():
            target = [_gram(f) for f in self._feats(self.texture()[None])]
        x_all = data.tensors[0]
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr_style)
        for _ in range(self.style_epochs):
            for idx in batches(len(x_all), 64, generator):
                x = x_all[idx]
                fo, fx = self._feats(self._transform(x)), self._feats(x)
                style = sum(((_gram(a) - t).pow(2).sum((1, 2)) / t.pow(2).sum()).mean()
                            for a, t in zip(fo, target))
                content = (fo[-1] - fx[-1]).pow(2).mean() / (fx[-1].pow(2).mean() + 1e-8)
                loss = self.style_weight * style + self.content_weight * content
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.prepared = torch.ones(())

    def poison_train(self, data: TensorData, generator: torch.Generator) -> tuple[TensorData, Tensor]:
        """:meth:`prepare` (if not done yet), then the usual dirty-label poisoning."""
        self.prepare(data, generator)
        return super().poison_train(data, generator)
