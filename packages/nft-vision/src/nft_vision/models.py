"""Image classifiers: the CIFAR-style PreActResNet-18 and VGG-16 used in the backdoor literature, a small
CNN for tests and demos, and :func:`create_model` for built-in names, torchvision, timm or any callable.

Built-in models start with a :class:`Normalize` module, so the input normalisation travels with the
weights (its mean/std are buffers in the state dict) and every model takes images in [0, 1].
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nft_core.errors import NFTInputError

__all__ = ["Normalize", "PreActResNet18", "VGG16", "SmallCNN", "create_model", "BUILTIN_MODELS"]

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; identity when mean/std are not given."""

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None, channels=3):
        super().__init__()
        mean = torch.zeros(channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(channels) if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., ECCV 2016): BN-ReLU-conv ×2, projection shortcut if needed."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    """PreActResNet-18 for 32×32 inputs: 3×3 stem (no max-pool), four stages of two blocks with
    ``width, 2·width, 4·width, 8·width`` channels (width 64 = the standard 11.2M-parameter model)."""

    def __init__(self, num_classes: int = 10, width: int = 64, mean=None, std=None):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        layers, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            layers.append(nn.Sequential(PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(cin)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


_VGG16 = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")  # channels in units of width


class VGG16(nn.Module):
    """VGG-16 with BatchNorm, CIFAR variant: 13 conv-BN-ReLU layers, five max-pools (32×32 -> 1×1) and
    one linear classifier on ``8·width`` features (width 64 = the usual 512-feature model)."""

    def __init__(self, num_classes: int = 10, width: int = 64, mean=None, std=None):
        super().__init__()
        self.normalize = Normalize(mean, std)
        layers, cin = [], 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                cout = v * width
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.features(self.normalize(x))
        return self.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1))


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU layers, two max-pools, global average pool, linear head (~100k parameters at
    width 16); trains on 32×32 digits in seconds on a CPU."""

    def __init__(self, num_classes: int = 10, width: int = 16, mean=None, std=None):
        super().__init__()
        w = width
        self.normalize = Normalize(mean, std)

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, w), *block(w, 2 * w), nn.MaxPool2d(2), *block(2 * w, 4 * w), nn.MaxPool2d(2),
            *block(4 * w, 4 * w),
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(self.normalize(x)).mean((2, 3)))


BUILTIN_MODELS = {"preactresnet18": PreActResNet18, "vgg16": VGG16, "smallcnn": SmallCNN}


def _external(spec: str, num_classes: int, kwargs) -> nn.Module:
    prefix, _, name = spec.partition(":")
    if prefix == "torchvision":
        import torchvision

        try:
            return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        except (ValueError, KeyError) as e:
            raise NFTInputError(f"model {spec!r}: unknown torchvision model ({e})") from e
    if prefix == "timm":
        import timm

        if not timm.is_model(name):
            raise NFTInputError(f"model {spec!r}: unknown timm model")
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    try:
        fn = getattr(importlib.import_module(prefix), name)
    except (ImportError, AttributeError) as e:
        raise NFTInputError(f"model {spec!r}: cannot import {name} from {prefix} ({e})") from e
    model = fn(num_classes=num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise NFTInputError(f"model {spec!r}: the callable returned {type(model).__name__}, not an nn.Module")
    return model


def create_model(spec: str, num_classes: int, mean=None, std=None, **kwargs) -> nn.Module:
    """Build a classifier from ``spec``:

    - a built-in name: ``preactresnet18``, ``vgg16``, ``smallcnn`` (``kwargs`` e.g. ``width=``);
    - ``torchvision:NAME`` (``weights=None``) or ``timm:NAME`` (``pretrained=False``): nothing is downloaded;
    - ``package.module:callable``, called as ``callable(num_classes=num_classes, **kwargs)``.

    Built-ins hold ``Normalize(mean, std)`` as their first module. An external model gets the
    normalization as a forward pre-hook (no new parameters or buffers), so its ``state_dict`` keys stay
    exactly its own: a user's checkpoint loads into it and the purified checkpoint loads back into the
    user's callable. Unknown specs raise :class:`NFTInputError`.
    """
    if spec in BUILTIN_MODELS:
        return BUILTIN_MODELS[spec](num_classes=num_classes, mean=mean, std=std, **kwargs)
    if ":" not in spec or not all(spec.partition(":")[::2]):
        raise NFTInputError(
            f"unknown model {spec!r}: use one of {sorted(BUILTIN_MODELS)}, torchvision:NAME, timm:NAME "
            "or package.module:callable")
    model = _external(spec, num_classes, kwargs)
    if mean is not None or std is not None:
        model.register_forward_pre_hook(_NormalizeInput(mean, std))
    return model


class _NormalizeInput:
    """Forward pre-hook: ``(x - mean) / std`` on the first positional input (images in [0, 1])."""

    def __init__(self, mean, std):
        n = Normalize(mean, std)
        self.mean, self.std = n.mean, n.std

    def __call__(self, module, args):
        x = args[0]
        if self.mean.device != x.device:
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return ((x - self.mean) / self.std, *args[1:])
