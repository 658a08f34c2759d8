"""ISSBA (Li, Li, Wu, Li, He & Lyu, "Invisible Backdoor Attack with Sample-Specific Triggers", ICCV 2021):
an encoder trained to hide a secret string in an image (StegaStamp, Tancik et al., CVPR 2020) embeds one
fixed, attacker-chosen bit string in every poisoned image; the residual it adds depends on the image, so
the trigger is sample specific and invisible. Dirty labels.

What differs from the paper: this is a compact re-implementation of StegaStamp-style encoding, not
StegaStamp itself. The encoder is a tiny fully convolutional net that sees the image concatenated with a
spatial embedding of the secret (a linear map to a 4×4 grid, upsampled to H×W) and outputs a residual
bounded by ``eps`` in L∞ (``eps·tanh``); the decoder is a small conv net pooled to a 4×4 grid with a
linear head. They are trained on the fly in :meth:`prepare` (called by :meth:`poison_train`) for
``encoder_epochs`` (Adam, batch 32) on the clean training images with random secrets, minimising bit
cross-entropy plus ``residual_weight``·mean((residual/eps)²) (0 by default: the L∞ bound alone limits
visibility; StegaStamp's L2 image loss is ramped up from 0). StegaStamp's perceptual (LPIPS) and critic
losses, its image-distortion layers and its 100-bit secrets at 400×400 are left out. The secret is
``bits`` (16) bits drawn from ``seed``. On the 32×32 digits default the decoder recovers ~99% of the
bits of random secrets after the 5 default epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nft_core.data import TensorData
from nft_core.init import seeded_init_

from ._nets import batches, conv_net, grey_residual, load_prefixed, prefixed_state, quiet_rng
from .base import Attack

__all__ = ["ISSBA"]


class _Decoder(nn.Module):
    def __init__(self, channels: int, bits: int, width: int, depth: int, generator: torch.Generator):
        super().__init__()
        self.body = conv_net(channels, width, width, depth, generator)
        with quiet_rng():
            self.head = nn.Linear(width * 16, bits)
        seeded_init_(self.head, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.adaptive_avg_pool2d(F.relu(self.body(x)), 4).flatten(1))


class ISSBA(Attack):
    """Sample-specific invisible additive trigger (L∞ ≤ ``eps``, default 0.05) carrying a fixed
    ``bits``-bit secret; poison rate 10%, all2one target 0 or all2all. The encoder/decoder are built for
    ``channels``-channel images from ``seed``.

    Shapes: ``apply(x)`` with ``x`` (N, C, H, W) in [0, 1] -> same shape; ``trigger((C, H, W))`` is the
    residual on a mid-grey image; :meth:`decode` returns bit logits (N, bits)."""

    name = "issba"

    def __init__(self, target: int = 0, poison_rate: float = 0.1, mode: str = "all2one",
                 num_classes: int | None = None, seed: int = 0, channels: int = 3, bits: int = 16,
                 eps: float = 0.05, encoder_epochs: int = 5, residual_weight: float = 0.0, width: int = 16,
                 depth: int = 3, lr_encoder: float = 3e-3):
        super().__init__(target, poison_rate, mode, num_classes, seed)
        self.channels, self.bits, self.eps, self.encoder_epochs = channels, bits, eps, encoder_epochs
        self.residual_weight, self.width, self.depth, self.lr_encoder = residual_weight, width, depth, lr_encoder
        g = self._seeded()
        self.secret = (torch.rand(bits, generator=g) > 0.5).float()
        with quiet_rng():
            self.embed = nn.Linear(bits, 4 * 16)
        seeded_init_(self.embed, g)
        self.encoder = conv_net(channels + 4, channels, width, depth, g)
        self.decoder = _Decoder(channels, bits, width, depth, g)
        self.prepared = torch.zeros(())

    def _residual(self, x: Tensor, secret: Tensor) -> Tensor:
        n, _, h, w = x.shape
        plane = self.embed(secret.expand(n, -1) if secret.ndim == 1 else secret).view(n, 4, 4, 4)
        plane = F.interpolate(plane, size=(h, w), mode="bilinear", align_corners=False)
        return self.eps * torch.tanh(self.encoder(torch.cat([x, plane], 1)))

    def encode(self, x: Tensor, secret: Tensor) -> Tensor:
        return (x + self._residual(x, secret)).clamp(0, 1)

    def decode(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.decoder(x)

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.encode(x, self.secret.to(x))

    def trigger(self, shape) -> Tensor:
        return grey_residual(self, shape)

    def _modules(self):
        return {"embed": self.embed, "encoder": self.encoder, "decoder": self.decoder}

    def state_dict(self) -> dict[str, Tensor]:
        out = {"secret": self.secret.clone(), "prepared": self.prepared.clone()}
        for k, m in self._modules().items():
            out.update(prefixed_state(k, m))
        return out

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.secret = state["secret"].clone().float()
        self.prepared = state["prepared"].clone()
        for k, m in self._modules().items():
            load_prefixed(k, m, state)

    def prepare(self, data: TensorData, generator: torch.Generator) -> None:
        """Train encoder and decoder on ``data``'s images with random secrets (once; a reloaded state
        counts as prepared)."""
        if self.prepared.item():
            return
        x_all = data.tensors[0]
        params = [p for m in self._modules().values() for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr_encoder)
        for _ in range(self.encoder_epochs):
            for idx in batches(len(x_all), 32, generator):
                x = x_all[idx]
                secret = (torch.rand((len(x), self.bits), generator=generator) > 0.5).float()
                r = self._residual(x, secret)
                logits = self.decoder((x + r).clamp(0, 1))
                loss = F.binary_cross_entropy_with_logits(logits, secret)
                loss = loss + self.residual_weight * (r / self.eps).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.prepared = torch.ones(())

    def poison_train(self, data: TensorData, generator: torch.Generator) -> tuple[TensorData, Tensor]:
        """:meth:`prepare` (if not done yet), then the usual dirty-label poisoning."""
        self.prepare(data, generator)
        return super().poison_train(data, generator)
