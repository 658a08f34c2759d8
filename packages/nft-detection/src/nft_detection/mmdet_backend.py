"""Optional mmdet 3.3 backend: an mmdet detector (config + checkpoint) behind the torchvision detector
interface that the rest of :mod:`nft_detection` speaks.

``model.spec = "mmdet:PATH/TO/CONFIG.py"`` (or ``nft-detect … --cfg CONFIG.py`` when the file is an mmdet
config) builds the config's ``model`` with mmdet's registry and wraps it in :class:`MMDetDetector`:

* train mode, ``model(images, targets)`` -> mmdet's loss dict, each entry reduced the way mmengine's
  ``parse_losses`` does (lists of per-level losses summed, only keys holding ``loss``);
* eval mode, ``model(images)`` -> ``[{"boxes" xyxy px, "scores", "labels" 1-based}]`` from mmdet's
  ``predict`` (its own ``test_cfg``: score threshold, NMS, max detections).

``images`` are ``(3, H, W)`` RGB tensors in [0, 1], the layout of every detection sample here. They are
scaled to 0–255 and put in the channel order the config's ``data_preprocessor`` expects (mmdet configs
load BGR images with OpenCV and set ``bgr_to_rgb=True``), so the preprocessor's mean/std and padding apply
exactly as in mmdet's own test pipeline (:func:`mmdet_reference_predict` checks this against
``mmdet.apis.inference_detector``). Every layer of the detector — backbone, neck, heads — is an ordinary
``nn.Module`` registered under ``mm.``, so NFT's masks and every baseline reach all of them.

mmdet needs mmcv 2.x with compiled ops, which PyPI does not ship for torch 2.14: ``bash
scripts/install_mmdet.sh`` builds mmcv 2.1.0 (C++20) and installs mmdet 3.3.0 (measured cost in the
docs/tasks/detection.md). Without it, an ``mmdet:`` spec fails with one line naming the script.

Checkpoints: mmdet's ``.pth`` (``{"state_dict": …, "meta": …}``) loads with ``torch.load(weights_only=True)``
when it holds only tensors and plain values; training checkpoints with optimizer/message-hub objects need
``--trust-checkpoint``. Purified weights are written both as ``purified.safetensors`` (wrapper keys,
``mm.`` prefix) and, by :func:`mmdet_checkpoint_writer`, as ``purified_mmdet.pth`` — an mmengine checkpoint
(``state_dict`` + ``meta``, tensors only) that mmdet's ``init_detector(cfg, ckpt)`` / ``tools/test.py`` load.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nft_core.checkpoint import atomic_write, load_state_dict, load_state_into
from nft_core.errors import ConfigError, DataError, NFTInputError

__all__ = ["MMDET_PREFIX", "is_mmdet_spec", "is_mmdet_config", "mmdet_available", "require_mmdet",
           "MMDetDetector", "build_mmdet_detector", "load_mmdet_checkpoint", "save_mmdet_checkpoint",
           "mmdet_checkpoint_writer", "mmdet_reference_predict", "TINY_FCOS_CONFIG", "BUNDLED_CONFIGS"]

MMDET_PREFIX = "mmdet:"

#: A CPU-sized mmdet FCOS (ResNet-18 at 1/8 width, FPN, GroupNorm head) for the 64-px embedded scenes,
#: shipped with the package (``--model mmdet:tiny_fcos``).
TINY_FCOS_CONFIG = Path(__file__).parent / "configs" / "mmdet" / "tiny_fcos_scenes.py"

#: ``mmdet:NAME`` for the bundled mmdet configs: ``tiny_fcos`` (one-stage) and ``tiny_faster_rcnn``
#: (two-stage: RPN + RoIAlign box head), both CPU-sized for the 64-px scenes.
BUNDLED_CONFIGS = {"tiny_fcos": TINY_FCOS_CONFIG,
                   "tiny_faster_rcnn": TINY_FCOS_CONFIG.with_name("tiny_faster_rcnn_scenes.py")}

_INSTALL_HINT = "mmdet is not installed: run `bash scripts/install_mmdet.sh` (builds mmcv 2.1 from source)"


def is_mmdet_spec(spec: str | None) -> bool:
    return isinstance(spec, str) and spec.startswith(MMDET_PREFIX)


def mmdet_config_path(spec: str) -> Path:
    """The config file of an ``mmdet:`` spec (``mmdet:tiny_fcos`` / ``mmdet:tiny_faster_rcnn``: the bundled
    :data:`BUNDLED_CONFIGS`)."""
    name = spec[len(MMDET_PREFIX):]
    if name in BUNDLED_CONFIGS:
        return BUNDLED_CONFIGS[name]
    p = Path(name)
    if not p.is_file():
        raise ConfigError(f"model.spec={spec}: mmdet config file {p} not found")
    return p


def is_mmdet_config(path: str | Path) -> bool:
    """True when ``path`` is an mmdet config (a top-level ``model`` dict with a ``type`` key) rather than an
    ``nft-detect`` config (whose ``model`` section has ``spec``/``family``). Read with mmengine's ``Config``,
    which does not need mmdet."""
    from mmengine.config import Config

    try:
        cfg = Config.fromfile(str(path))
    except Exception:  # noqa: BLE001 - not an mmdet config; the normal loader reports the real problem
        return False
    model = cfg.get("model")
    return isinstance(model, dict) and "type" in model


def mmdet_available() -> bool:
    try:
        importlib.import_module("mmdet")
        importlib.import_module("mmcv.ops")
    except Exception:  # noqa: BLE001 - ImportError, or mmcv without compiled ops (OSError/ImportError)
        return False
    return True


def require_mmdet() -> None:
    if not mmdet_available():
        raise NFTInputError(_INSTALL_HINT)


def _num_classes_in(node: Any) -> set[int]:
    found: set[int] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "num_classes" and isinstance(v, int):
                found.add(v)
            else:
                found |= _num_classes_in(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            found |= _num_classes_in(v)
    return found


class MMDetDetector(nn.Module):
    """An mmdet ``BaseDetector`` with torchvision's detector interface (see the module docstring).

    ``mm`` is the mmdet model, ``config_path`` the config it was built from."""

    def __init__(self, detector: nn.Module, config_path: str | Path | None = None):
        super().__init__()
        self.mm = detector
        self.config_path = str(config_path) if config_path is not None else None
        pre = detector.data_preprocessor
        self._bgr_input = bool(getattr(pre, "_channel_conversion", False))

    def _data(self, images, targets=None) -> tuple[Tensor, list]:
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData

        images = list(images)
        if not images:
            raise NFTInputError("MMDetDetector: no images")
        samples, inputs = [], []
        for i, img in enumerate(images):
            if img.dim() != 3 or img.shape[0] != 3:
                raise NFTInputError(f"MMDetDetector: image {i} has shape {tuple(img.shape)}, expected (3, H, W)")
            x = img.float() * 255.0
            inputs.append(x.flip(0) if self._bgr_input else x)  # the preprocessor flips BGR back to RGB
            h, w = int(img.shape[-2]), int(img.shape[-1])
            s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                                            img_id=i))
            if targets is not None:
                t = targets[i]
                gt = InstanceData()
                gt.bboxes = t["boxes"].float().reshape(-1, 4)
                gt.labels = t["labels"].long().reshape(-1) - 1  # ours are 1-based, mmdet's 0-based
                s.gt_instances = gt
                s.ignored_instances = InstanceData(bboxes=gt.bboxes.new_zeros(0, 4),
                                                   labels=gt.labels.new_zeros(0))
            samples.append(s)
        pre = self.mm.data_preprocessor
        pre._device = inputs[0].device  # mmengine moves the batch to this; Module.to() does not update it
        data = pre({"inputs": inputs, "data_samples": samples}, training=self.training)
        return data["inputs"], data["data_samples"]

    def forward(self, images, targets=None):
        with warnings.catch_warnings():  # mmdet's anchor/point generators call torch.meshgrid without indexing
            warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
            return self._forward(images, targets)

    def _forward(self, images, targets=None):
        if self.training:
            if targets is None:
                raise NFTInputError("MMDetDetector: train mode needs targets (the loss dict is returned)")
            inputs, samples = self._data(images, targets)
            losses = self.mm.loss(inputs, samples)
            out = {}
            for k, v in losses.items():
                if "loss" not in k:
                    continue  # accuracies and other logged values, as mmengine's parse_losses
                out[k] = sum(t.mean() for t in v) if isinstance(v, (list, tuple)) else v.mean()
            return out
        inputs, samples = self._data(images)
        results = self.mm.predict(inputs, samples, rescale=True)
        return [{"boxes": r.pred_instances.bboxes.float(), "scores": r.pred_instances.scores.float(),
                 "labels": r.pred_instances.labels.long() + 1} for r in results]

    def init_weights_seeded(self, generator: torch.Generator) -> MMDetDetector:
        """mmdet's own ``init_weights`` (its per-module schemes: Kaiming, N(0, 0.01²), focal-loss bias
        prior …), drawn from a seed taken from ``generator``.

        mmengine's init functions take no generator, so the draws run on a forked global RNG
        (``torch.random.fork_rng``) seeded from ``generator``, and the caller's global RNG state is restored
        on exit — the caller's RNG is neither reseeded nor advanced (tested). Redrawing each weight from
        ``generator`` at the scale mmdet's draw had was tried and rejected: the scale read off a random draw
        depends on the global RNG state, so two runs with one seed differed."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]), _quiet_mmengine():
            torch.manual_seed(seed)
            self.mm.init_weights()
        return self


@contextlib.contextmanager
def _quiet_mmengine():
    """mmengine's logger writes every init scheme to stdout at INFO; library code here does not print."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def build_mmdet_detector(spec: str, num_classes: int) -> MMDetDetector:
    """Build the detector of an ``mmdet:CONFIG`` spec; its heads must be configured for ``num_classes``."""
    require_mmdet()
    from mmengine.config import Config

    path = mmdet_config_path(spec)
    try:
        cfg = Config.fromfile(str(path))
    except Exception as e:  # noqa: BLE001 - mmengine raises many types for a bad config file
        raise ConfigError(f"{path}: not a readable mmdet config ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    model_cfg = cfg.get("model")
    if not isinstance(model_cfg, dict) or "type" not in model_cfg:
        raise ConfigError(f"{path}: no mmdet `model` dict with a `type` key")
    counts = _num_classes_in(model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else model_cfg)
    if counts and counts != {num_classes}:
        raise DataError(f"{path}: the detector is configured for {sorted(counts)[0]} categories but the data has "
                        f"{num_classes}")
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    try:
        with _quiet_mmengine():
            register_all_modules(init_default_scope=True)
            det = MODELS.build(model_cfg)
    except Exception as e:  # noqa: BLE001 - registry KeyError/TypeError for an unknown type or bad kwargs
        raise ConfigError(f"{path}: mmdet cannot build the model ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    return MMDetDetector(det, path)


def load_mmdet_checkpoint(model: MMDetDetector, path: str | Path, *, trust: bool = False) -> MMDetDetector:
    """Load an mmdet checkpoint (mmdet key names) or our ``purified.safetensors`` (``mm.`` keys) strictly."""
    state = load_state_dict(path, trust=trust)
    if state and all(k.startswith("mm.") for k in state):
        state = {k[3:]: v for k, v in state.items()}
    load_state_into(model.mm, state, path)
    return model


def save_mmdet_checkpoint(state: dict[str, Tensor], path: str | Path, classes=None,
                          extra_meta: dict | None = None) -> Path:
    """Write a detector's weights as an mmengine checkpoint: ``state_dict`` with mmdet's key names (a
    wrapper's ``mm.`` prefix stripped) and ``meta.dataset_meta.classes`` — tensors and plain values only, so
    ``torch.load(weights_only=True)`` and mmdet's ``init_detector`` read it — written atomically."""
    if state and all(k.startswith("mm.") for k in state):
        state = {k[3:]: v for k, v in state.items()}
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta: dict[str, Any] = {"dataset_meta": {"classes": list(classes or [])}, **(extra_meta or {})}
    return atomic_write(path, lambda p: torch.save({"state_dict": state, "meta": meta}, p))


def mmdet_checkpoint_writer(classes, source: str = "purified.safetensors"):
    """A ``write(path)`` for a run directory's extra files (:func:`nft_core.pipeline.purify_and_report`):
    converts the ``source`` weights written beside ``path`` into an mmdet checkpoint at ``path``."""

    def write(p: Path) -> None:
        from safetensors.torch import load_file

        save_mmdet_checkpoint(load_file(str(Path(p).parent / source)), p, classes)

    return write


@torch.no_grad()
def mmdet_reference_predict(config_path: str | Path, checkpoint: str | Path, image_rgb01: Tensor) -> dict:
    """mmdet's own inference on one image: ``init_detector`` + ``inference_detector`` with the config's test
    pipeline, the image given as an HxWx3 uint8 **BGR** array as OpenCV would load it. Returns boxes, scores
    and 1-based labels (a reference to check :class:`MMDetDetector` against)."""
    require_mmdet()
    import numpy as np
    from mmdet.apis import inference_detector, init_detector

    det = init_detector(str(config_path), str(checkpoint), device="cpu")
    arr = (image_rgb01.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()[:, :, ::-1]
    r = inference_detector(det, np.ascontiguousarray(arr)).pred_instances
    return {"boxes": r.bboxes.float(), "scores": r.scores.float(), "labels": r.labels.long() + 1}
