"""Image-classification loaders for the real on-disk formats, plus the embedded default (sklearn digits),
the procedural CIFAR-scale set (:mod:`nft_vision.procedural`) and BackdoorBench's ``attack_result.pt``
(:mod:`nft_vision.backdoorbench`).

Every loader returns :class:`nft_core.data.TensorData` ``(x, y)`` with ``x`` float32 in [0, 1] of shape
``(N, 3, H, W)`` and ``y`` int64 ``(N,)``; class names, where the format has them, are in ``data.classes``.
Nothing is ever downloaded. Every failure is a one-line :class:`~nft_core.errors.DataError` naming the file.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from nft_core.data import TensorData, stratified_split
from nft_core.errors import DataError

from .procedural import load_procedural

__all__ = [
    "load_cifar10", "load_cifar100", "load_gtsrb", "load_image_folder", "load_npz",
    "load_digits_default", "load_procedural", "split_validation", "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# What a CIFAR pickle may reference: numpy's array reconstruction and nothing else (no arbitrary classes).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy"):
            try:  # numpy 2 (numpy.core is a deprecated alias)
                import numpy._core.multiarray as ma
                import numpy._core.numeric as nm
            except ImportError:  # numpy 1.x
                import numpy.core.multiarray as ma
                import numpy.core.numeric as nm

            return {"ndarray": np.ndarray, "dtype": np.dtype, "_reconstruct": ma._reconstruct,
                    "scalar": ma.scalar, "_frombuffer": nm._frombuffer}[name]
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    """Read one CIFAR batch: a dict of builtins and numpy arrays, keys normalised to ``str``."""
    if not path.is_file():
        raise DataError(f"{path}: CIFAR batch file not found")
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{path}: not a valid CIFAR python batch ({e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _names(values) -> list[str]:
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values]


def _cifar_arrays(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    if "data" not in d or label_key not in d:
        raise DataError(f"{path}: CIFAR batch lacks 'data' or '{label_key}' (keys: {sorted(d)})")
    x, y = np.asarray(d["data"]), np.asarray(d[label_key], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3072 or x.shape[0] != y.shape[0]:
        raise DataError(f"{path}: expected data (N, 3072) and N labels, got {x.shape} and {y.shape}")
    return x, y


def _cifar_root(root: str | os.PathLike, folder: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found")
    return root / folder if (root / folder).is_dir() else root


def _to_data(x: np.ndarray, y: np.ndarray, classes: list[str] | None) -> TensorData:
    """uint8 (N, 3, H, W) numpy -> float TensorData in [0, 1]."""
    data = TensorData(torch.from_numpy(np.ascontiguousarray(x)).float().div_(255), torch.from_numpy(y).long())
    data.classes = classes
    return data


def load_cifar10(root: str | os.PathLike, train: bool = True) -> TensorData:
    """CIFAR-10 python batches: ``root`` is ``cifar-10-batches-py`` or its parent. Train = ``data_batch_*``
    (however many are present, at least one), test = ``test_batch``; names from ``batches.meta``."""
    base = _cifar_root(root, "cifar-10-batches-py")
    files = sorted(base.glob("data_batch_*")) if train else [base / "test_batch"]
    if not files:
        raise DataError(f"{base}: no data_batch_* files (CIFAR-10 python version expected)")
    parts = [_cifar_arrays(f, "labels") for f in files]
    x = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    y = np.concatenate([p[1] for p in parts])
    meta = base / "batches.meta"
    classes = _names(_unpickle(meta).get("label_names", [])) if meta.is_file() else None
    return _to_data(x, y, classes)


def load_cifar100(root: str | os.PathLike, train: bool = True) -> TensorData:
    """CIFAR-100 python version (``train`` / ``test`` files, ``fine_labels``; names from ``meta``)."""
    base = _cifar_root(root, "cifar-100-python")
    x, y = _cifar_arrays(base / ("train" if train else "test"), "fine_labels")
    meta = base / "meta"
    classes = _names(_unpickle(meta).get("fine_label_names", [])) if meta.is_file() else None
    return _to_data(x.reshape(-1, 3, 32, 32), y, classes)


def _read_image(path: Path, size: int | tuple[int, int]) -> np.ndarray:
    """One image file -> uint8 (3, H, W), resized (bilinear) to ``size``."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (hw[1], hw[0]):
                im = im.resize((hw[1], hw[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: not a readable image file ({type(e).__name__})") from e


def _stack(paths: list[Path], labels: list[int], size, classes, where) -> TensorData:
    if not paths:
        raise DataError(f"{where}: no images found")
    x = np.stack([_read_image(p, size) for p in paths])
    return _to_data(x, np.asarray(labels, dtype=np.int64), classes)


def load_image_folder(root: str | os.PathLike, size: int | tuple[int, int] = 32) -> TensorData:
    """An ImageFolder tree ``root/<class>/<image>``; classes sorted by name, images resized to ``size``.

    Hidden files (``.name``) are skipped; any other file that is not a readable image is an error."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class subfolders (expected root/<class>/<image>)")
    paths, labels = [], []
    for k, c in enumerate(classes):
        for p in sorted((root / c).rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                paths.append(p)
                labels.append(k)
    return _stack(paths, labels, size, classes, root)


def load_gtsrb(root: str | os.PathLike, train: bool = True, size: int | tuple[int, int] = 32) -> TensorData:
    """GTSRB in torchvision's layout: ``root/gtsrb/GTSRB/Training/<00000..>/*.ppm`` for training and
    ``root/gtsrb/GTSRB/Final_Test/Images/*.ppm`` with ``root/gtsrb/GT-final_test.csv`` (``;``-separated,
    columns ``Filename`` and ``ClassId``) for testing. ``root`` may also be the ``gtsrb`` folder itself."""
    base = Path(root)
    if (base / "gtsrb").is_dir():
        base = base / "gtsrb"
    if train:
        folder = base / "GTSRB" / "Training"
        if not folder.is_dir():
            raise DataError(f"{folder}: GTSRB training folder not found")
        paths, labels = [], []
        for d in sorted(p for p in folder.iterdir() if p.is_dir()):
            if not d.name.isdigit():
                raise DataError(f"{d}: GTSRB class folder names must be numbers like 00000")
            for p in sorted(d.glob("*.ppm")):
                paths.append(p)
                labels.append(int(d.name))
        return _stack(paths, labels, size, None, folder)
    folder, gt = base / "GTSRB" / "Final_Test" / "Images", base / "GT-final_test.csv"
    if not gt.is_file():
        raise DataError(f"{gt}: GTSRB test ground-truth file not found")
    try:
        rows = list(csv.DictReader(io.StringIO(gt.read_text()), delimiter=";", skipinitialspace=True))
        samples = [(folder / r["Filename"], int(r["ClassId"])) for r in rows]
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(f"{gt}: malformed GTSRB CSV (need Filename and ClassId columns; {e})") from e
    for p, _ in samples:
        if not p.is_file():
            raise DataError(f"{p}: listed in {gt.name} but missing")
    return _stack([p for p, _ in samples], [c for _, c in samples], size, None, gt)


def load_npz(path: str | os.PathLike) -> TensorData:
    """An ``.npz`` with ``x`` (N, H, W, C) or (N, C, H, W), C in {1, 3}, uint8 (0..255) or float (0..1),
    and integer ``y`` (N,). Pickled object arrays are refused."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise DataError(f"{path}: needs arrays 'x' and 'y', found {sorted(f.files)}")
            x, y = f["x"], f["y"]
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from e
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{path}: expected x (N, H, W, C) or (N, C, H, W) and y (N,), got {x.shape}, {y.shape}")
    if len(x) == 0:
        raise DataError(f"{path}: the file is empty (0 samples)")
    if x.shape[1] not in (1, 3):
        if x.shape[3] not in (1, 3):
            raise DataError(f"{path}: cannot find a 1- or 3-channel axis in x of shape {x.shape}")
        x = x.transpose(0, 3, 1, 2)
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must hold integer class ids, got dtype {y.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype == np.uint8:
        t = t.float().div_(255)
    elif np.issubdtype(x.dtype, np.floating):
        t = t.float()
        bad = ~torch.isfinite(t)
        if bad.any():
            kind = "NaN" if torch.isnan(t).any() else "Inf"
            first = int(bad.flatten(1).any(1).nonzero()[0])
            raise DataError(f"{path}: x contains {kind} values ({int(bad.sum())} of them; first in sample {first})")
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise DataError(f"{path}: float x must lie in [0, 1], found [{t.min():.3g}, {t.max():.3g}]")
    else:
        raise DataError(f"{path}: x must be uint8 or float, got dtype {x.dtype}")
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1).contiguous()
    data = TensorData(t, torch.from_numpy(y.astype(np.int64)))
    data.classes = None
    return data


def load_digits_default(size: int = 32, test_ratio: float = 0.2, seed: int = 0) -> tuple[TensorData, TensorData]:
    """The embedded default: scikit-learn's bundled 8×8 digits (1,797 images, 10 classes, no download),
    upscaled bilinearly to ``size``×``size`` grey-as-RGB, split stratified into (train, test) with a fixed
    seed (80/20 by default)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().div_(16).unsqueeze(1)  # (N, 1, 8, 8), pixel values 0..16
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    x = x.expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(d.target).long()
    test_idx, train_idx = stratified_split(y, ratio=test_ratio, generator=torch.Generator().manual_seed(seed))
    classes = [str(i) for i in range(10)]
    train, test = TensorData(x[train_idx], y[train_idx]), TensorData(x[test_idx], y[test_idx])
    train.classes = test.classes = classes
    return train, test


def split_validation(
    data: TensorData, *, ratio: float | None = None, per_class: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[TensorData, TensorData, torch.Tensor, torch.Tensor]:
    """Stratified hold-out: ``(val, rest, val_index, rest_index)``. Give exactly one of ``ratio`` (fraction
    of each class) or ``per_class`` (samples per class, 1 = one-shot); labels are ``data.tensors[1]``."""
    val_idx, rest_idx = stratified_split(data.tensors[1], ratio=ratio, per_class=per_class, generator=generator)
    val, rest = data.subset(val_idx), data.subset(rest_idx)
    val.classes = rest.classes = getattr(data, "classes", None)
    return val, rest, val_idx, rest_idx
