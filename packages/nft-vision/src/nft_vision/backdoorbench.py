"""Reader for BackdoorBench's ``attack_result.pt`` (Wu et al., "BackdoorBench: A Comprehensive Benchmark of
Backdoor Learning", NeurIPS 2022 Datasets and Benchmarks).

BackdoorBench ends every attack by ``torch.save``-ing one dict: ``model_name``, ``num_classes``, ``model``
(the state dict), ``data_path``, ``img_size`` (e.g. ``[32, 32, 3]``), ``clean_data`` (the dataset name;
the clean images themselves are *not* in the file), ``bd_train`` and ``bd_test``. The layout of the two
backdoor sets depends on the version:

- current (``prepro_cls_DatasetBD_v2.retrieve_state()``): a dict with ``bd_data_container``
  (``save_folder_path``, ``data_dict``, ``save_file_format``), ``original_index_array``,
  ``poison_indicator``, ``getitem_all``, ``getitem_all_switch``, ``save_folder_path``. ``data_dict`` maps a
  sample index to ``(PIL image, backdoor label, original label)`` when kept in memory, or to
  ``{"path": png file, "other_info": [backdoor label, original label]}`` when saved to disk (``bd_test``
  then lives in a folder next to the file, e.g. ``record/<attack>/bd_test_dataset/<label>/<index>.png``);
- early releases: ``{"x": (N, C, H, W) float tensor (0..255), "y": backdoor labels}`` — without the
  original labels, so no poisoned test set with true labels can be built from it.

Unpickling the current layout needs PIL and numpy objects, i.e. arbitrary pickle: the file is refused unless
the caller trusts it (``trust=True``, the CLI's ``--trust-checkpoint``). Failures are one-line
:class:`~nft_core.errors.CheckpointError` / :class:`~nft_core.errors.DataError`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nft_core.data import TensorData
from nft_core.errors import CheckpointError, DataError

__all__ = ["BackdoorBenchResult", "load_backdoorbench", "load_state_into"]


@dataclass
class BackdoorBenchResult:
    """What an ``attack_result.pt`` holds, in this project's terms.

    ``poisoned``: :class:`~nft_core.data.TensorData` ``(x, y_true, y_target)`` of the triggered test images
    whose true label differs from the attacker's (``x`` float (N, 3, H, W) in [0, 1]), or ``None`` when the
    file has no backdoor test set with true labels. ``layout``: ``"v2-memory"``, ``"v2-disk"``, ``"v1"`` or
    ``"none"`` (of ``bd_test``). ``meta``: everything else that is plain data (``bd_train`` size, the
    ``img_size`` as saved, extra keys)."""

    state_dict: dict[str, Tensor]
    model_name: str | None
    num_classes: int | None
    img_size: tuple[int, ...] | None
    clean_data: str | None
    data_path: str | None
    poisoned: TensorData | None
    layout: str
    meta: dict[str, Any] = field(default_factory=dict)


def load_backdoorbench(path: str | os.PathLike, trust: bool = False) -> BackdoorBenchResult:
    """Read a BackdoorBench ``attack_result.pt`` (see the module docstring for the layouts).

    Without ``trust`` only a file that ``torch.load(weights_only=True)`` accepts is read (a tensors-only
    file); anything that needs arbitrary unpickling (the usual case: PIL images, numpy arrays) raises
    :class:`CheckpointError` naming ``--trust-checkpoint``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: BackdoorBench attack result not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if not trust:
            raise CheckpointError(
                f"{p}: BackdoorBench attack_result.pt holds pickled Python objects (PIL images, numpy arrays) "
                "that could run code on load; refused (pass --trust-checkpoint / trust=True only for files you "
                "trust)") from e
        raise CheckpointError(f"{p}: corrupt BackdoorBench attack result ({e})") from e
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, KeyError) as e:
        raise CheckpointError(f"{p}: corrupt or truncated BackdoorBench attack result ({type(e).__name__}: {e})") from e
    if not isinstance(obj, Mapping) or "model" not in obj:
        keys = sorted(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{p}: not a BackdoorBench attack_result.pt (expected a dict with 'model'; got {keys})")
    state = obj["model"]
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: 'model' is not a state dict (a mapping of names to tensors)")
    state = {str(k): v for k, v in state.items()}
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}

    poisoned, layout = _bd_test(obj.get("bd_test"), p)
    img_size = obj.get("img_size")
    meta: dict[str, Any] = {k: v for k, v in obj.items() if k not in ("model", "bd_train", "bd_test")
                            and isinstance(v, (str, int, float, bool, type(None), list, tuple))}
    bd_train = obj.get("bd_train")
    if isinstance(bd_train, Mapping) and "poison_indicator" in bd_train:
        meta["bd_train_poisoned"] = int(np.asarray(bd_train["poison_indicator"]).sum())
        meta["bd_train_size"] = len(bd_train["poison_indicator"])
    elif isinstance(bd_train, Mapping) and isinstance(bd_train.get("x"), Tensor):
        meta["bd_train_poisoned"] = len(bd_train["x"])
    num_classes = obj.get("num_classes")
    return BackdoorBenchResult(
        state_dict=state,
        model_name=None if obj.get("model_name") is None else str(obj["model_name"]),
        num_classes=None if num_classes is None else int(num_classes),
        img_size=tuple(int(s) for s in img_size) if isinstance(img_size, (list, tuple)) else None,
        clean_data=None if obj.get("clean_data") is None else str(obj["clean_data"]),
        data_path=None if obj.get("data_path") is None else str(obj["data_path"]),
        poisoned=poisoned,
        layout=layout,
        meta=meta,
    )


# ------------------------------------------------------------------------------------------ bd_test
def _bd_test(bd: Any, p: Path) -> tuple[TensorData | None, str]:
    if bd is None:
        return None, "none"
    if isinstance(bd, Mapping) and "bd_data_container" in bd:
        return _v2(bd, p)
    if isinstance(bd, Mapping) and "x" in bd and "y" in bd:
        return None, "v1"  # backdoor labels only: no true labels, so no ASR/LCR set
    what = sorted(map(str, bd)) if isinstance(bd, Mapping) else type(bd).__name__
    raise DataError(f"{p}: unrecognised 'bd_test' layout ({what})")


def _v2(bd: Mapping, p: Path) -> tuple[TensorData | None, str]:
    box = bd["bd_data_container"]
    if not isinstance(box, Mapping) or "data_dict" not in box:
        raise DataError(f"{p}: 'bd_test.bd_data_container' lacks 'data_dict'")
    items: Mapping = box["data_dict"]
    folder = box.get("save_folder_path")
    on_disk = folder is not None
    index = bd.get("original_index_array")
    order = [int(i) for i in np.asarray(sorted(items) if index is None else index).tolist()]
    indicator = bd.get("poison_indicator")
    if indicator is not None:
        indicator = np.asarray(indicator)
        order = [i for i in order if indicator[i] == 1]
    order = [i for i in order if i in items]
    if not order:
        return None, "v2-disk" if on_disk else "v2-memory"
    images, y_bd, y_true = [], [], []
    for i in order:
        value = items[i]
        if on_disk:
            if not isinstance(value, Mapping) or "path" not in value:
                raise DataError(f"{p}: bd_test sample {i} has no 'path' although the set was saved to disk")
            img = _read_png(_resolve(value["path"], folder, p))
            other = list(value.get("other_info", []))
        else:
            img, *other = value
        if len(other) < 2:
            raise DataError(f"{p}: bd_test sample {i} lacks its backdoor and original labels")
        images.append(_to_chw_uint8(img, p, i))
        y_bd.append(int(other[0]))
        y_true.append(int(other[1]))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"{p}: bd_test images have different shapes {sorted(shapes)[:3]}")
    x = torch.from_numpy(np.stack(images)).float().div_(255)
    yt, yb = torch.tensor(y_true), torch.tensor(y_bd)
    keep = yt != yb
    return TensorData(x[keep], yt[keep], yb[keep]), "v2-disk" if on_disk else "v2-memory"


def _resolve(file: str, folder: str, p: Path) -> Path:
    """A saved PNG path as written on the attacker's machine: as is, else relative to the result file
    (``<dir of attack_result.pt>/<name of save_folder_path>/<rest>``)."""
    f = Path(file)
    if f.is_file():
        return f
    try:
        rest = f.relative_to(folder)
    except ValueError:
        rest = Path(*f.parts[-2:])  # <label>/<index>.png
    cand = p.parent / Path(folder).name / rest
    if cand.is_file():
        return cand
    raise DataError(f"{p}: bd_test image {file} not found (also looked for {cand})")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable image file ({type(e).__name__})") from e


def _to_chw_uint8(img: Any, p: Path, i: int) -> np.ndarray:
    """A PIL image, HWC/CHW array or tensor (uint8 0..255 or float 0..1) -> uint8 (3, H, W)."""
    if hasattr(img, "convert") and hasattr(img, "size"):  # PIL image
        a = np.asarray(img.convert("RGB"), dtype=np.uint8)
    else:
        a = img.numpy() if isinstance(img, Tensor) else np.asarray(img)
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3:
            raise DataError(f"{p}: bd_test sample {i} is not an image (shape {a.shape})")
        if a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
            a = a.transpose(1, 2, 0)
        if a.dtype != np.uint8:
            a = a.astype(np.float64)
            a = np.clip(np.round(a * 255 if a.max() <= 1 else a), 0, 255).astype(np.uint8)
        if a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a.transpose(2, 0, 1))


# --------------------------------------------------------------------------------------------- model
def load_state_into(model: nn.Module, state: Mapping[str, Tensor], where: str | os.PathLike) -> nn.Module:
    """Load ``state`` into ``model`` strictly; key or shape mismatches are one-line CheckpointErrors."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = [f"{name} keys {keys[:3]}{' …' if len(keys) > 3 else ''} ({len(keys)})"
                 for name, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise CheckpointError(f"{where}: the BackdoorBench model does not fit model.spec: " + "; ".join(parts))
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{where}: shape mismatch for {k}: checkpoint {tuple(state[k].shape)}, "
                                  f"model {tuple(v.shape)}")
    model.load_state_dict(dict(state), strict=True)
    return model
