"""Image augmentations for batches ``(x, y, *rest)`` with ``x`` float (B, C, H, W) in [0, 1].

All follow :class:`nft_core.contracts.Augmentation`: every random parameter comes from the
``torch.Generator`` passed in (never the global RNG), and the input batch is not modified. CutMix and CutOut
are batched tensor code; RandAugment and AugMix wrap ``torchvision.transforms.v2`` (which draws from the
global RNG) under a *forked* global RNG seeded from the generator, so the caller's global RNG state is
unchanged and the same generator seed gives the same output. The model-dependent PGD augmentation is in
:mod:`nft_vision.augment_adv`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from nft_core.augment import sample_beta
from nft_core.contracts import MixedTarget

__all__ = ["AugMix", "CutMix", "CutOut", "RandAugment", "forked_rng"]


class CutMix:
    """CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
    Features", ICCV 2019): λ ~ Beta(α, α); a box of side ``√(1-λ)·(H, W)`` centred uniformly at random
    (clipped to the image) is pasted from ``x[perm]`` into every image. One box and one permutation per
    batch; λ is then recomputed from the clipped box, ``λ = 1 - area / (H·W)``.

    Output: ``(x̃, MixedTarget(y, y[perm], λ), *rest)``."""

    def __init__(self, alpha: float = 1.0):
        if alpha <= 0:
            raise ValueError(f"CutMix alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, y, *rest = batch
        h, w = x.shape[-2:]
        lam = sample_beta(generator, self.alpha)
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        cy, cx = (torch.rand(2, generator=generator) * torch.tensor([h, w])).tolist()
        bh, bw = (1 - lam) ** 0.5 * h, (1 - lam) ** 0.5 * w
        y0, y1 = int(max(0, cy - bh / 2)), int(min(h, cy + bh / 2))
        x0, x1 = int(max(0, cx - bw / 2)), int(min(w, cx + bw / 2))
        out = x.clone()
        out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the box was clipped: λ from its true area
        return (out, MixedTarget(y, y[perm], lam), *rest)

    def __repr__(self) -> str:
        return f"CutMix(alpha={self.alpha})"


class CutOut:
    """Cutout (DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with Cutout",
    2017): each image gets one ``length``×``length`` square set to ``fill``, centred uniformly on the image
    and clipped at its border (so it may be partly outside). Defaults: length 16 (the paper's CIFAR-10
    setting), fill 0. The B centres are drawn in one call; targets are unchanged."""

    def __init__(self, length: int = 16, fill: float = 0.0):
        if length < 1:
            raise ValueError(f"CutOut length must be >= 1, got {length}")
        self.length, self.fill = length, fill

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, *rest = batch
        b, h, w = x.shape[0], *x.shape[-2:]
        centres = (torch.rand(b, 2, generator=generator) * torch.tensor([h, w])).long().to(x.device)
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        half = self.length // 2  # the square spans [c - half, c - half + length)
        in_r = (rows[None] >= centres[:, :1] - half) & (rows[None] < centres[:, :1] - half + self.length)
        in_c = (cols[None] >= centres[:, 1:] - half) & (cols[None] < centres[:, 1:] - half + self.length)
        hole = in_r[:, :, None] & in_c[:, None, :]  # (B, H, W)
        shape = (b,) + (1,) * (x.ndim - 3) + (h, w)
        out = x.masked_fill(hole.view(shape), self.fill)
        return (out, *rest)

    def __repr__(self) -> str:
        return f"CutOut(length={self.length}, fill={self.fill})"


@contextlib.contextmanager
def forked_rng(generator: torch.Generator) -> Iterator[None]:
    """Run a block that uses torch's global CPU RNG (e.g. torchvision v2 transforms) deterministically from
    ``generator``: one seed is drawn from ``generator``, the global CPU RNG is forked, seeded with it, and
    restored on exit. Only the CPU generator is touched (``torch.manual_seed`` would also reseed CUDA)."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


class _PerImageV2:
    """Apply a ``torchvision.transforms.v2`` transform image by image (a v2 transform called on a batch
    would share one set of random parameters across it). Images go to uint8 on the CPU (the photometric
    ops of RandAugment/AugMix are defined on 0..255 images; the inputs are quantized to 1/255) and come
    back as floats in [0, 1] on the input's device and dtype."""

    transform: Any

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        x, *rest = batch
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects images (B, C, H, W), got shape {tuple(x.shape)}")
        u8 = x.detach().clamp(0, 1).mul(255).round().to(device="cpu", dtype=torch.uint8)
        out = torch.empty_like(u8)
        with forked_rng(generator):
            for i in range(u8.shape[0]):
                out[i] = self.transform(u8[i])
        return (out.to(device=x.device, dtype=x.dtype).div_(255), *rest)


class RandAugment(_PerImageV2):
    """RandAugment (Cubuk et al., "RandAugment: Practical Automated Data Augmentation with a Reduced Search
    Space", CVPRW 2020) via ``torchvision.transforms.v2.RandAugment``: per image, ``num_ops`` operations
    drawn uniformly from the 14 of the paper (identity, shear x/y, translate x/y, rotate, brightness,
    colour, contrast, sharpness, posterize, solarize, auto-contrast, equalize), each at ``magnitude`` on a
    0..30 scale (``num_magnitude_bins`` = 31). Defaults are NFT's Table 15 setting (Supplementary: four
    operations, intensity 10, on the 0..30 scale of the implementation the NFT authors used). Targets are
    unchanged."""

    def __init__(self, num_ops: int = 4, magnitude: int = 10, num_magnitude_bins: int = 31, fill: float = 0.0):
        from torchvision.transforms import v2

        if num_ops < 1:
            raise ValueError(f"RandAugment num_ops must be >= 1, got {num_ops}")
        if not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(f"RandAugment magnitude must be in [0, {num_magnitude_bins - 1}], got {magnitude}")
        self.num_ops, self.magnitude, self.num_magnitude_bins, self.fill = num_ops, magnitude, num_magnitude_bins, fill
        self.transform = v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=num_magnitude_bins,
                                        fill=round(fill * 255))

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, bins={self.num_magnitude_bins})"


class AugMix(_PerImageV2):
    """AugMix (Hendrycks et al., "AugMix: A Simple Data Processing Method to Improve Robustness and
    Uncertainty", ICLR 2020) via ``torchvision.transforms.v2.AugMix``: per image, ``width`` chains of 1-3
    random operations (``depth=-1``) at up to ``severity`` are mixed with Dirichlet(α) weights, and the mix
    is blended with the original with a Beta(α, α) weight. Defaults are NFT's Table 15 setting
    (Supplementary: severity 5, 3 chains, α = 1). By default only the augmented image is produced (NFT
    trains on it with its usual loss; targets unchanged). ``jsd=True`` is AugMix's full loss: the batch
    becomes ``(B, 3, C, H, W)`` — the clean image and two independent AugMix views — with a
    :class:`~nft_core.ConsistencyTarget`, so the loss is cross-entropy on the clean view plus ``jsd_weight``
    (12, the AugMix paper's λ) times the Jensen-Shannon divergence of the three predictions
    (classification tasks; :class:`~nft_core.ClassificationAdapter` computes it)."""

    def __init__(self, severity: int = 5, width: int = 3, depth: int = -1, alpha: float = 1.0,
                 all_ops: bool = True, jsd: bool = False, jsd_weight: float = 12.0):
        from torchvision.transforms import v2

        if jsd_weight < 0:
            raise ValueError(f"AugMix jsd_weight must be >= 0, got {jsd_weight}")
        self.jsd, self.jsd_weight = bool(jsd), float(jsd_weight)
        if not 1 <= severity <= 10:
            raise ValueError(f"AugMix severity must be in 1..10, got {severity}")
        if width < 1 or alpha <= 0:
            raise ValueError(f"AugMix needs width >= 1 and alpha > 0, got width={width}, alpha={alpha}")
        self.severity, self.width, self.depth, self.alpha, self.all_ops = severity, width, depth, alpha, all_ops
        self.transform = v2.AugMix(severity=severity, mixture_width=width, chain_depth=depth, alpha=alpha,
                                   all_ops=all_ops)

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        if not self.jsd:
            return super().__call__(batch, generator)
        from nft_core import ConsistencyTarget

        x, y, *rest = batch
        if isinstance(y, ConsistencyTarget):
            raise ValueError("AugMix(jsd=True) got a batch that already holds views")
        a1 = super().__call__((x, y), generator)[0]
        a2 = super().__call__((x, y), generator)[0]
        return (torch.stack([x, a1, a2], dim=1), ConsistencyTarget(y, self.jsd_weight), *rest)

    def __repr__(self) -> str:
        jsd = f", jsd=True, jsd_weight={self.jsd_weight}" if self.jsd else ""
        return (f"AugMix(severity={self.severity}, width={self.width}, depth={self.depth}, alpha={self.alpha}, "
                f"all_ops={self.all_ops}{jsd})")
