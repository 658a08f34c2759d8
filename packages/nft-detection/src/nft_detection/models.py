"""Models: multi-label classifiers (a small BN CNN for CPU, or any torchvision/timm backbone with a
multi-label head) and torchvision detectors built without pretrained weights.

Every classifier takes images in [0, 1] (normalisation is a module inside the model, its mean/std are
buffers) and returns one logit per category; the loss is BCE-with-logits. Nothing is ever downloaded:
``weights=None, weights_backbone=None`` for torchvision, ``pretrained=False`` for timm.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nft_core.errors import NFTInputError

__all__ = ["MultiLabelCNN", "create_multilabel_model", "create_detector", "DETECTORS", "Normalize"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1).clone())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MultiLabelCNN(nn.Module):
    """Four conv-BN-ReLU blocks (width w, 2w, 4w, 8w; max-pool between), global average pooling and a
    two-layer head (``hidden`` ReLU units, then one logit per category). ~0.4 M parameters at w = 16.

    Shapes: ``(B, 3, H, W)`` in [0, 1] -> ``(B, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, width: int = 16, hidden: int = 128):
        super().__init__()
        w = width
        self.norm = Normalize()
        self.features = nn.Sequential(
            _block(3, w), nn.MaxPool2d(2),
            _block(w, 2 * w), nn.MaxPool2d(2),
            _block(2 * w, 4 * w), nn.MaxPool2d(2),
            _block(4 * w, 8 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(8 * w, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(self.norm(x)))


class _Wrapped(nn.Module):
    """A third-party backbone whose last layer already outputs ``num_classes`` logits, behind Normalize."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.norm = Normalize()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.norm(x))


def create_multilabel_model(spec: str, num_classes: int, **kwargs) -> nn.Module:
    """``smallcnn`` | ``torchvision:resnet18`` | ``timm:tresnet_m`` | ``package.module:callable``.
    torchvision and timm models are built untrained with ``num_classes`` outputs (no download)."""
    try:
        if spec == "smallcnn":
            return MultiLabelCNN(num_classes, **kwargs)
        if spec.startswith("torchvision:"):
            import torchvision

            return _Wrapped(torchvision.models.get_model(spec.split(":", 1)[1], weights=None, num_classes=num_classes,
                                                         **kwargs))
        if spec.startswith("timm:"):
            import timm

            return _Wrapped(timm.create_model(spec.split(":", 1)[1], pretrained=False, num_classes=num_classes,
                                              **kwargs))
        if ":" in spec:
            mod, fn = spec.split(":", 1)
            return getattr(importlib.import_module(mod), fn)(num_classes=num_classes, **kwargs)
    except (ValueError, TypeError, RuntimeError, ImportError, AttributeError) as e:
        raise NFTInputError(f"model.spec={spec}: cannot build ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    raise NFTInputError(f"unknown model.spec {spec!r}; use smallcnn, torchvision:NAME, timm:NAME or pkg.mod:callable")


DETECTORS = ("tiny_fasterrcnn", "fasterrcnn", "retinanet", "fcos", "ssdlite")


class TinyBackbone(nn.Sequential):
    """Three conv-BN-ReLU blocks at stride 8 (``out_channels`` = 4w) — a CPU-sized detector backbone."""

    def __init__(self, width: int = 8):
        w = width
        super().__init__(_block(3, w), nn.MaxPool2d(2), _block(w, 2 * w), nn.MaxPool2d(2), _block(2 * w, 4 * w),
                         nn.MaxPool2d(2))
        self.out_channels = 4 * w


def create_detector(name: str, num_classes: int, size: int = 64, **kwargs) -> nn.Module:
    """A torchvision detector for ``num_classes`` object categories (+1 background where the family uses
    one), without any pretrained weights, sized for ``size``-pixel images. In train mode
    ``model(images, targets)`` returns the loss dict; in eval mode a list of ``{"boxes", "scores", "labels"}``
    with 1-based labels."""
    from torchvision.models import detection as D

    common = dict(weights=None, weights_backbone=None, num_classes=num_classes + 1, min_size=size, max_size=size)
    try:
        if name == "tiny_fasterrcnn":  # a small Faster R-CNN on a 3-block CNN (tests, CPU demos)
            from torchvision.models.detection.anchor_utils import AnchorGenerator
            from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
            from torchvision.ops import MultiScaleRoIAlign

            width = kwargs.pop("width", 8)
            backbone = TinyBackbone(width)
            anchors = AnchorGenerator(sizes=((8, 16, 32),), aspect_ratios=((0.5, 1.0, 2.0),))
            return D.FasterRCNN(backbone, num_classes=None, min_size=size, max_size=size,
                                rpn_anchor_generator=anchors, box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
                                box_head=TwoMLPHead(backbone.out_channels * 49, 64),
                                box_predictor=FastRCNNPredictor(64, num_classes + 1), rpn_batch_size_per_image=64,
                                box_batch_size_per_image=64, **kwargs)
        if name == "fasterrcnn":
            return D.fasterrcnn_mobilenet_v3_large_fpn(**common, **kwargs)
        if name == "retinanet":
            return D.retinanet_resnet50_fpn(**common, **kwargs)
        if name == "fcos":
            return D.fcos_resnet50_fpn(**common, **kwargs)
        if name == "ssdlite":
            common.pop("min_size"), common.pop("max_size")  # SSDlite's input size is fixed at 320
            return D.ssdlite320_mobilenet_v3_large(**common, **kwargs)
    except (ValueError, TypeError) as e:
        raise NFTInputError(f"detector {name}: {e}") from e
    raise NFTInputError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
