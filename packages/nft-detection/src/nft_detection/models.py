"""Models: multi-label classifiers (a small BN CNN for CPU, or any torchvision/timm backbone with a
multi-label head) and torchvision detectors built without pretrained weights.

Every classifier takes images in [0, 1] (normalisation is a module inside the model, its mean/std are
buffers) and returns one logit per category; the loss is BCE-with-logits. Nothing is ever downloaded:
``weights=None, weights_backbone=None`` for torchvision, ``pretrained=False`` for timm.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nft_core.errors import NFTInputError
from nft_core.masks import GroupNormHandler, LayerHandler

__all__ = ["MultiLabelCNN", "create_multilabel_model", "create_detector", "DETECTORS", "DEFAULT_DETECTOR", "Normalize",
           "TinyBackbone", "TinyFPNBackbone", "detector_part", "seeded_detector_init_",
           "GroupNormHandler", "DETECTOR_MASK_HANDLERS"]

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


DETECTORS = ("tiny_fasterrcnn", "tiny_fasterrcnn_fpn", "tiny_retinanet", "tiny_fcos", "fasterrcnn", "retinanet",
             "fcos", "ssdlite")
#: The detector ``nft-detect --family detector`` trains by default (CPU-sized, with a feature pyramid).
DEFAULT_DETECTOR = "tiny_fcos"


class TinyBackbone(nn.Sequential):
    """Three conv-BN-ReLU blocks at stride 8 (``out_channels`` = 4w) — a CPU-sized detector backbone."""

    def __init__(self, width: int = 8):
        w = width
        super().__init__(_block(3, w), nn.MaxPool2d(2), _block(w, 2 * w), nn.MaxPool2d(2), _block(2 * w, 4 * w),
                         nn.MaxPool2d(2))
        self.out_channels = 4 * w


class TinyFPNBackbone(nn.Module):
    """A CPU-sized backbone with a feature pyramid, laid out like torchvision's ``BackboneWithFPN``:
    ``body`` (conv-BN-ReLU stages at strides 4, 8, 16, 32 px, widths 2w, 4w, 8w, 8w after a stride-2 stem of
    width w) and ``fpn`` (:class:`torchvision.ops.FeaturePyramidNetwork`, Lin et al., "Feature Pyramid
    Networks for Object Detection", CVPR 2017; no extra level: at 64 px a stride-64 map is 1×1, which
    the GroupNorm of FCOS's head cannot normalize for a single image).

    With ``context`` (default) C5 also receives an image-level context vector (global average pool, 1×1
    conv, ReLU, added to every position; Liu et al., "ParseNet: Looking Wider to See Better", 2015), and
    the top-down path hands it to every level — what a detector needs to tie a box to a *combination* of
    objects anywhere in the image (the clean-image backdoor's trigger).
    Returns an ``OrderedDict`` of ``out_channels``-channel maps ``"0"``…``"3"`` (strides 4…32).
    """

    def __init__(self, width: int = 8, out_channels: int = 32, context: bool = True):
        from collections import OrderedDict

        from torchvision.ops import FeaturePyramidNetwork

        super().__init__()
        w = width
        chans = [2 * w, 4 * w, 8 * w, 8 * w]
        self.body = nn.ModuleDict(OrderedDict(
            stem=nn.Sequential(_block(3, w), nn.MaxPool2d(2)),
            layer1=nn.Sequential(_block(w, chans[0]), nn.MaxPool2d(2)),
            layer2=nn.Sequential(_block(chans[0], chans[1]), nn.MaxPool2d(2)),
            layer3=nn.Sequential(_block(chans[1], chans[2]), nn.MaxPool2d(2)),
            layer4=nn.Sequential(_block(chans[2], chans[3]), nn.MaxPool2d(2)),
        ))
        if context:  # image-level context (ParseNet-style): global average pool -> 1x1 conv, added to C5
            self.body["context"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(chans[3], chans[3], 1),
                                                 nn.ReLU(inplace=True))
        self.fpn = FeaturePyramidNetwork(chans, out_channels)
        self.out_channels = out_channels

    def forward(self, x: Tensor):
        from collections import OrderedDict

        x = self.body["stem"](x)
        feats = OrderedDict()
        for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
            x = self.body[name](x)
            feats[str(i)] = x
        if "context" in self.body:
            feats["3"] = x + self.body["context"](x)
        return self.fpn(feats)


def detector_part(name: str) -> str:
    """``backbone`` | ``neck`` | ``head``: which part of a torchvision-layout detector a module belongs to
    (``backbone.fpn.*`` is the neck; ``backbone.*`` the backbone; ``rpn.*``, ``roi_heads.*``, ``head.*`` the
    heads; the input ``transform`` counts as backbone). mmdet detectors (``mm.`` prefix): ``neck.*`` is the
    neck, ``*_head.*`` the heads)."""
    name = name.removeprefix("mm.")  # an mmdet detector (MMDetDetector): backbone / neck / *_head
    if name.startswith(("backbone.fpn", "neck")):
        return "neck"
    if name.startswith(("backbone", "transform", "data_preprocessor")):
        return "backbone"
    return "head"


#: NFT mask handlers for detectors (FCOS / RetinaNet-v2 heads normalize with GroupNorm). GroupNorm at γ is
#: now the core's default (``nft_core.masks.GroupNormHandler``), so every mask-based defense gets it; the
#: table stays for callers that pass it explicitly.
DETECTOR_MASK_HANDLERS: dict[type, LayerHandler] = {nn.GroupNorm: GroupNormHandler()}


def _no_norm(channels: int) -> nn.Module:
    return nn.Identity()


def _fcos_head(channels: int, num_classes: int, num_convs: int, norm: str = "group") -> nn.Module:
    """torchvision's ``FCOSHead`` (one anchor per location, ``num_convs`` convs per tower) whose towers
    normalize with ``GroupNorm(min(32, C), C)`` (``norm="group"``, torchvision's choice) or not at all
    (``"none"``)."""
    if norm not in ("group", "none"):
        raise ValueError(f"head_norm must be 'group' or 'none', got {norm!r}")
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSHead, FCOSRegressionHead

    head = FCOSHead.__new__(FCOSHead)
    nn.Module.__init__(head)
    head.box_coder = det_utils.BoxLinearCoder(normalize_by_size=True)
    nl = _no_norm if norm == "none" else (lambda c: nn.GroupNorm(min(32, c), c))
    head.classification_head = FCOSClassificationHead(channels, 1, num_classes, num_convs, norm_layer=nl)
    head.regression_head = FCOSRegressionHead(channels, 1, num_convs, norm_layer=nl)
    return head


def _tiny_fpn(name: str, num_classes: int, size: int, width: int, out_channels: int, **kwargs) -> nn.Module:
    from torchvision.models import detection as D
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    backbone = TinyFPNBackbone(width, out_channels, kwargs.pop("context", True))
    levels = 4  # P2..P5 (strides 4..32)
    if name == "tiny_fasterrcnn_fpn":
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.ops import MultiScaleRoIAlign

        hidden = kwargs.pop("hidden", 64)
        anchors = AnchorGenerator(sizes=tuple((8 * 2**i,) for i in range(levels)),
                                  aspect_ratios=((0.5, 1.0, 2.0),) * levels)
        opts = dict(rpn_batch_size_per_image=64, box_batch_size_per_image=64, rpn_pre_nms_top_n_train=300,
                    rpn_post_nms_top_n_train=150, rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=100)
        return D.FasterRCNN(backbone, num_classes=None, min_size=size, max_size=size, rpn_anchor_generator=anchors,
                            box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2, canonical_scale=size),
                            box_head=TwoMLPHead(out_channels * 49, hidden),
                            box_predictor=FastRCNNPredictor(hidden, num_classes + 1), **{**opts, **kwargs})
    if name == "tiny_retinanet":
        from torchvision.models.detection.retinanet import RetinaNetHead

        anchors = AnchorGenerator(sizes=tuple(tuple(8 * 2**i * 2 ** (k / 3) for k in range(3)) for i in range(levels)),
                                  aspect_ratios=((0.5, 1.0, 2.0),) * levels)
        head = RetinaNetHead(out_channels, anchors.num_anchors_per_location()[0], num_classes + 1)
        return D.RetinaNet(backbone, num_classes + 1, min_size=size, max_size=size, anchor_generator=anchors,
                           head=head, **kwargs)
    # tiny_fcos: torchvision's FCOS head (GroupNorm towers; NFT masks them at γ, see GroupNormHandler)
    anchors = AnchorGenerator(sizes=tuple((4 * 2**i,) for i in range(levels)), aspect_ratios=((1.0,),) * levels)
    head = _fcos_head(out_channels, num_classes + 1, kwargs.pop("num_convs", 2), kwargs.pop("head_norm", "group"))
    return D.FCOS(backbone, num_classes + 1, min_size=size, max_size=size, anchor_generator=anchors, head=head,
                  **kwargs)


@torch.no_grad()
def seeded_detector_init_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise a torchvision-layout detector from ``generator`` (never the global RNG):
    :func:`~nft_core.init.seeded_init_` everywhere, then torchvision's detection schemes — FPN convs
    Kaiming-uniform (a = 1) with zero bias; RPN / RetinaNet / FCOS head convs N(0, 0.01²) with zero bias;
    the classification logits' bias at the focal-loss prior −log((1 − π)/π), π = 0.01 (Lin et al., ICCV
    2017). Returns ``model``."""
    from nft_core.init import seeded_init_

    seeded_init_(model, generator)
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if name.startswith("backbone.fpn"):
            nn.init.kaiming_uniform_(m.weight, a=1, generator=generator)
        elif name.startswith(("rpn.head", "head.")):
            nn.init.normal_(m.weight, std=0.01, generator=generator)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    cls = getattr(getattr(model, "head", None), "classification_head", None)
    logits = getattr(cls, "cls_logits", None)
    if isinstance(logits, nn.Conv2d) and logits.bias is not None:
        nn.init.constant_(logits.bias, -math.log((1 - 0.01) / 0.01))
    return model


def create_detector(name: str, num_classes: int, size: int = 64, **kwargs) -> nn.Module:
    """A torchvision detector for ``num_classes`` object categories (+1 background where the family uses
    one), without any pretrained weights, sized for ``size``-pixel images. In train mode
    ``model(images, targets)`` returns the loss dict; in eval mode a list of ``{"boxes", "scores", "labels"}``
    with 1-based labels.

    ``tiny_*`` are CPU-sized: ``tiny_fasterrcnn`` a single-level Faster R-CNN on :class:`TinyBackbone`;
    ``tiny_fasterrcnn_fpn`` (Ren et al., NeurIPS 2015), ``tiny_retinanet`` (Lin et al., ICCV 2017) and
    ``tiny_fcos`` (Tian et al., ICCV 2019) on :class:`TinyFPNBackbone` (kwargs ``width``, ``out_channels``;
    ``hidden`` for the Faster R-CNN box head; ``num_convs`` and ``head_norm`` — ``group`` (torchvision's
    GroupNorm towers, default) or ``none`` — for FCOS; ``context=False`` drops the backbone's image-level
    context). GroupNorm in a head needs :data:`DETECTOR_MASK_HANDLERS` for NFT's masks to act there (a
    per-channel mask on the conv before a one-channel-per-group GroupNorm is normalized away exactly).
    ``fasterrcnn`` (MobileNetV3-FPN),
    ``retinanet`` / ``fcos`` (ResNet-50-FPN) and ``ssdlite`` are torchvision's full-size builders."""
    from torchvision.models import detection as D

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise NFTInputError(f"detector {name}: num_classes must be a positive integer, got {num_classes!r}")
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
        if name in ("tiny_fasterrcnn_fpn", "tiny_retinanet", "tiny_fcos"):
            width, out_channels = kwargs.pop("width", 8), kwargs.pop("out_channels", 32)
            return _tiny_fpn(name, num_classes, size, width, out_channels, **kwargs)
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
