"""Video classifiers taking clips ``(B, T, C, H, W)`` in [0, 1] and returning logits ``(B, classes)``.

* :class:`CNNLSTM` — the paper's action-recognition model: a torchvision ResNet-50 frame encoder (weights
  from a local file when given, random otherwise; never downloaded) followed by an LSTM over time; the
  logits come from the LSTM's last hidden state.
* :class:`SmallCNNLSTM` — the same design at CPU size (three conv-BN-ReLU blocks per frame + LSTM); the
  default.
* :class:`Video3D` — torchvision's ``r3d_18`` / ``r2plus1d_18`` / ``mc3_18`` (``weights=None``), fed
  ``(B, C, T, H, W)``.

* :class:`PyTorchVideoNet` — pytorchvideo's X3D, Slow R50, CSN, R(2+1)D (random weights; a checkpoint
  is loaded the usual way), fed ``(B, C, T, H, W)``; needs the optional ``pytorchvideo`` package
  (``nft-video[pytorchvideo]``), of which only ``pytorchvideo.models`` is imported (its transforms module
  does not import with torchvision 0.29).

:func:`create_model` builds any of them from a spec string: ``cnn_lstm_small`` | ``cnn_lstm`` |
``torchvision:r3d_18`` | ``torchvision:r2plus1d_18`` | ``torchvision:mc3_18`` | ``pytorchvideo:x3d`` |
``pytorchvideo:slow_r50`` | ``pytorchvideo:csn_r101`` | ``pytorchvideo:r2plus1d_r50`` | ``package.module:callable``
(called with ``num_classes=`` and the extra keyword arguments).
"""

from __future__ import annotations

import importlib
import warnings

import torch
from torch import Tensor, nn

from nft_core.checkpoint import load_state_dict
from nft_core.errors import CheckpointError, NFTInputError
from nft_core.rnn import rnn_forward

__all__ = ["CNNLSTM", "PyTorchVideoNet", "SmallCNNLSTM", "Video3D", "create_model"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class _FramesThenLSTM(nn.Module):
    """Encode every frame with ``self.encoder`` -> (B, T, F), LSTM, linear head on the last step."""

    encoder: nn.Module
    lstm: nn.LSTM
    fc: nn.Linear

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected clips (B, T, C, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        feats = self.encoder(self.norm(x.flatten(0, 1))).flatten(1).view(b, t, -1)
        out, _ = rnn_forward(self.lstm, feats)  # differentiable in eval mode on CUDA too (nft_core.rnn)
        return self.fc(out[:, -1])


class SmallCNNLSTM(_FramesThenLSTM):
    """Per-frame CNN (conv-BN-ReLU ×3, widths w, 2w, 4w, max-pool between, then average-pooled to a
    ``pool``×``pool`` grid so the LSTM still sees *where* things are — global pooling would hide the
    motion of a translating object) + LSTM (``hidden`` units) + linear head."""

    def __init__(self, num_classes: int = 6, width: int = 16, hidden: int = 64, in_channels: int = 3, pool: int = 2,
                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__()
        w = width

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.norm = _Normalize(mean[:in_channels], std[:in_channels])
        self.encoder = nn.Sequential(*block(in_channels, w), nn.MaxPool2d(2), *block(w, 2 * w), nn.MaxPool2d(2),
                                     *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(pool))
        self.lstm = nn.LSTM(4 * w * pool * pool, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)


class CNNLSTM(_FramesThenLSTM):
    """ResNet-50 per frame (ImageNet normalization) + LSTM + linear head, as in the NFT paper's video
    experiments. ``encoder_weights``: a local ``.safetensors``/``.pth`` state dict of torchvision's
    ``resnet50`` (its ``fc.*`` keys are ignored); random initialisation when None."""

    def __init__(self, num_classes: int = 101, hidden: int = 512, encoder_weights: str | None = None,
                 freeze_encoder: bool = False):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        if encoder_weights:
            state = load_state_dict(encoder_weights)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise CheckpointError(f"{encoder_weights}: not a torchvision resnet50 state dict "
                                      f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
        net.fc = nn.Identity()
        self.norm = _Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.encoder = net
        self.lstm = nn.LSTM(2048, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)


class Video3D(nn.Module):
    """torchvision 3D CNN (``r3d_18``, ``r2plus1d_18``, ``mc3_18``; random weights) on ``(B, T, C, H, W)``
    clips (permuted to ``(B, C, T, H, W)``), Kinetics normalization."""

    def __init__(self, arch: str = "r3d_18", num_classes: int = 101):
        super().__init__()
        from torchvision.models import video

        if arch not in ("r3d_18", "r2plus1d_18", "mc3_18"):
            raise NFTInputError(f"unknown torchvision video model {arch!r}; choose r3d_18, r2plus1d_18, mc3_18")
        self.norm = _Normalize((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
        self.net = getattr(video, arch)(weights=None, num_classes=num_classes)

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        x = self.norm(x.flatten(0, 1)).view(b, t, *x.shape[2:])
        return self.net(x.permute(0, 2, 1, 3, 4))


#: pytorchvideo architectures: (module of ``pytorchvideo.models``, factory, its settings for that architecture).
#: The factories' own defaults otherwise; the head's pooling becomes global (below), the head's activation
#: none (X3D's default is a softmax: NFT and every defense need logits).
PYTORCHVIDEO_ARCHS: dict[str, tuple[str, str, dict]] = {
    "x3d": ("x3d", "create_x3d", {"depth_factor": 2.2}),  # X3D-S/M's network (XS/S/M differ by input size)
    "slow_r50": ("resnet", "create_resnet", {"model_depth": 50, "stem_conv_kernel_size": (1, 7, 7)}),
    "csn_r101": ("csn", "create_csn", {"model_depth": 101}),
    "r2plus1d_r50": ("r2plus1d", "create_r2plus1d", {"model_depth": 50}),
}


class PyTorchVideoNet(nn.Module):
    """A pytorchvideo model (``arch`` in :data:`PYTORCHVIDEO_ARCHS`; random weights) on ``(B, T, C, H, W)``
    clips in [0, 1]: normalized with pytorchvideo's Kinetics mean/std, permuted to ``(B, C, T, H, W)``.

    The head's fixed-size average pool (sized for the factory's 13×160² or 8×224² input) is replaced by a
    global one, so any clip length and frame size works, and equals the original where the input has the
    size it was built for; the head's activation is dropped, so the output is logits. Neither has
    parameters, so a pytorchvideo checkpoint of the same architecture loads unchanged (the state dict keys
    are ``net.`` + pytorchvideo's). ``kwargs`` go to the factory (e.g. ``input_clip_length``, ``width_factor``).
    """

    def __init__(self, arch: str = "x3d", num_classes: int = 101, **kwargs):
        super().__init__()
        if arch not in PYTORCHVIDEO_ARCHS:
            raise NFTInputError(f"unknown pytorchvideo model {arch!r}; choose {', '.join(PYTORCHVIDEO_ARCHS)}")
        module, factory, settings = PYTORCHVIDEO_ARCHS[arch]
        try:  # only the models package: pytorchvideo's transforms do not import with torchvision 0.29
            with warnings.catch_warnings():  # its import scripts a function with the deprecated torch.jit.script
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
                build = getattr(importlib.import_module(f"pytorchvideo.models.{module}"), factory)
        except ImportError as e:
            raise NFTInputError(f"model spec pytorchvideo:{arch} needs the optional pytorchvideo package "
                                f"(pip install 'nft-video[pytorchvideo]'): {e}") from e
        self.net = build(**{**settings, "model_num_class": num_classes, "head_activation": None, **kwargs})
        head = self.net.blocks[-1]
        for name, mod in list(head.named_modules()):
            if isinstance(mod, nn.AvgPool3d):
                parent, _, attr = name.rpartition(".")  # get_submodule("") is the head itself
                setattr(head.get_submodule(parent), attr, nn.AdaptiveAvgPool3d(1))
        self.norm = _Normalize((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected clips (B, T, C, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        x = self.norm(x.flatten(0, 1)).view(b, t, *x.shape[2:])
        return self.net(x.permute(0, 2, 1, 3, 4))


def create_model(spec: str, num_classes: int, **kwargs) -> nn.Module:
    """A model from its spec (see the module docstring); ``kwargs`` go to the constructor."""
    s = spec.strip()
    try:
        if s in ("cnn_lstm_small", "small"):
            return SmallCNNLSTM(num_classes=num_classes, **kwargs)
        if s in ("cnn_lstm", "resnet50_lstm"):
            return CNNLSTM(num_classes=num_classes, **kwargs)
        if s.startswith("torchvision:"):
            return Video3D(s.split(":", 1)[1], num_classes=num_classes, **kwargs)
        if s.startswith("pytorchvideo:"):
            return PyTorchVideoNet(s.split(":", 1)[1], num_classes=num_classes, **kwargs)
        if ":" in s:
            mod, fn = s.split(":", 1)
            try:
                obj = getattr(importlib.import_module(mod), fn)
            except (ImportError, AttributeError) as e:
                raise NFTInputError(f"model spec {spec!r}: cannot import ({e})") from e
            return obj(num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise NFTInputError(f"model spec {spec!r}: {e}") from e
    raise NFTInputError(f"unknown model spec {spec!r}; choose cnn_lstm_small, cnn_lstm, torchvision:r3d_18, "
                        "torchvision:r2plus1d_18, torchvision:mc3_18, pytorchvideo:x3d, pytorchvideo:slow_r50, "
                        "pytorchvideo:csn_r101, pytorchvideo:r2plus1d_r50 or package.module:callable")
