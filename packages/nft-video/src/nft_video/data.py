"""Action-recognition datasets read from their on-disk formats, decoded with PyAV and cached.

* UCF-101: ``<root>/<ClassName>/v_X_gNN_cMM.avi``; split files in ``<split_dir>`` (default
  ``<root>/ucfTrainTestlist``): ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0N.txt``
  (``Class/v_..avi 1``) and ``testlist0N.txt`` (``Class/v_..avi``; label from the folder name).
* HMDB-51: ``<root>/<class>/<name>.avi``; split files ``<split_dir>/<class>_test_splitN.txt`` (default
  ``split_dir`` = ``<root>/testTrainMulti_7030_splits``, else ``<root>``), lines ``<name>.avi K`` with
  K = 1 train, 2 test, 0 unused. Classes are the sorted split-file class names.

Every video is decoded, one frame in ``frame_step`` kept, the centre ``clip_len`` frames taken and
resized to ``image_size``² (bilinear, antialiased; non-square frames are squashed). A clip is a float
tensor ``(T, C, H, W)`` in [0, 1]; a dataset is a :class:`~nft_core.data.TensorData` ``(clips, labels)``.

Bad clips (a corrupt or empty video, a split file naming a missing file, a clip with fewer than
``clip_len`` frames after subsampling): with ``on_bad_clip="skip"`` (default) they are left out, counted
and reported (``VideoSet.skipped``: ``[(path, reason), ...]``, logged as a warning); with
``on_bad_clip="error"`` the first one raises a one-line :class:`~nft_core.errors.DataError`.

The decoded, resized clips of each split are cached on first use as one uint8 ``.npz`` under
``cache_dir`` (keyed by the file list, sizes, modification times and the decoding parameters).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nft_core.checkpoint import atomic_write
from nft_core.data import TensorData
from nft_core.errors import DataError

from .io import read_frames

log = logging.getLogger("nft")

__all__ = ["VideoSet", "decode_clip", "load_clips", "ucf101_split", "hmdb51_split", "load_npz_clips",
           "save_npz_clips"]


@dataclass
class VideoSet:
    """Decoded clips plus the bookkeeping of what was left out."""

    data: TensorData
    classes: list[str]
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def decode_clip(path: str | os.PathLike, *, frame_step: int = 5, clip_len: int = 8, image_size: int = 32) -> np.ndarray:
    """uint8 ``(clip_len, image_size, image_size, 3)``: every ``frame_step``-th frame, the centre
    ``clip_len`` of them, resized. :class:`DataError` when the video is bad or too short."""
    frames = read_frames(path, frame_step)
    if len(frames) < clip_len:
        raise DataError(f"{path}: {len(frames)} frames after keeping one in {frame_step}, "
                        f"fewer than clip_len={clip_len}")
    s = (len(frames) - clip_len) // 2
    x = torch.from_numpy(frames[s : s + clip_len]).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def ucf101_split(root: str | os.PathLike, split: int = 1, train: bool = True,
                 split_dir: str | os.PathLike | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """``([(video path, class index)], class names)`` of a UCF-101 train or test list."""
    root = Path(root)
    sdir = Path(split_dir) if split_dir else root / "ucfTrainTestlist"
    classes: dict[int, str] = {}
    ind = sdir / "classInd.txt"
    for ln in _read_lines(ind):
        parts = ln.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{ind}: malformed line {ln!r} (expected 'INDEX ClassName')")
        classes[int(parts[0])] = parts[1]
    if sorted(classes) != list(range(1, len(classes) + 1)):
        raise DataError(f"{ind}: class indices must be 1..{len(classes)}")
    names = [classes[i] for i in range(1, len(classes) + 1)]
    by_name = {n.lower(): i for i, n in enumerate(names)}
    lst = sdir / f"{'trainlist' if train else 'testlist'}{split:02d}.txt"
    items = []
    for ln in _read_lines(lst):
        rel = ln.split()[0]
        folder = rel.replace("\\", "/").split("/")[0]
        if folder.lower() not in by_name:
            raise DataError(f"{lst}: {rel!r} names class folder {folder!r}, not in {ind.name}")
        label = by_name[folder.lower()]
        if len(ln.split()) > 1 and ln.split()[1].isdigit() and int(ln.split()[1]) - 1 != label:
            raise DataError(f"{lst}: {rel!r} has label {ln.split()[1]} but its folder is class {label + 1}")
        items.append((root / rel, label))
    if not items:
        raise DataError(f"{lst}: split file lists no videos")
    return items, names


def hmdb51_split(root: str | os.PathLike, split: int = 1, train: bool = True,
                 split_dir: str | os.PathLike | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """``([(video path, class index)], class names)`` of an HMDB-51 split (1 = train, 2 = test)."""
    root = Path(root)
    if split_dir:
        sdir = Path(split_dir)
    else:
        sdir = root / "testTrainMulti_7030_splits"
        sdir = sdir if sdir.is_dir() else root
    suffix = f"_test_split{split}.txt"
    files = sorted(sdir.glob(f"*{suffix}"))
    if not files:
        raise DataError(f"{sdir}: no HMDB-51 split files '*{suffix}'")
    names = [f.name[: -len(suffix)] for f in files]
    want = "1" if train else "2"
    items = []
    for ci, (f, name) in enumerate(zip(files, names)):
        for ln in _read_lines(f):
            parts = ln.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{f}: malformed line {ln!r} (expected 'video.avi 0|1|2')")
            if parts[1] == want:
                items.append((root / name / parts[0], ci))
    if not items:
        raise DataError(f"{sdir}: split {split} lists no {'training' if train else 'test'} videos")
    return items, names


def _cache_key(items, params: dict) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for p, y in items:
        try:
            st = p.stat()
            h.update(f"{p}|{y}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}|{y}|missing\n".encode())
    return h.hexdigest()[:20]


def load_clips(items: list[tuple[Path, int]], classes: list[str], *, frame_step: int = 5, clip_len: int = 8,
               image_size: int = 32, on_bad_clip: str = "skip", cache_dir: str | os.PathLike | None = None,
               progress=None) -> VideoSet:
    """Decode ``items`` into a :class:`VideoSet` (see the module docstring for the bad-clip policy)."""
    if on_bad_clip not in ("skip", "error"):
        raise DataError(f"on_bad_clip must be 'skip' or 'error', got {on_bad_clip!r}")
    if frame_step < 1 or clip_len < 1 or image_size < 1:
        raise DataError(f"frame_step, clip_len and image_size must be >= 1, got {frame_step}, {clip_len}, {image_size}")
    params = {"frame_step": frame_step, "clip_len": clip_len, "image_size": image_size, "v": 1}
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"clips-{_cache_key(items, params)}.npz"
        if cache.exists():
            with np.load(cache, allow_pickle=False) as z:
                skipped = [tuple(s.split("\t", 1)) for s in z["skipped"].tolist()]
                if on_bad_clip == "error" and skipped:
                    raise DataError(f"{skipped[0][1]}")
                out = VideoSet(_to_tensors(z["x"], z["y"]), classes, z["files"].tolist(), skipped)
            _report(out)
            return out
    clips, labels, files, skipped = [], [], [], []
    for path, label in items:
        try:
            clips.append(decode_clip(path, frame_step=frame_step, clip_len=clip_len, image_size=image_size))
        except DataError as e:
            if on_bad_clip == "error":
                raise
            skipped.append((str(path), str(e)))
            continue
        finally:
            if progress is not None:
                progress.update(1)
        labels.append(label)
        files.append(str(path))
    if not clips:
        raise DataError(f"no usable clip among {len(items)} videos (first problem: {skipped[0][1] if skipped else '-'})")
    x = np.stack(clips)
    y = np.asarray(labels, dtype=np.int64)
    if cache is not None:
        arrays = {"x": x, "y": y, "files": np.asarray(files), "skipped": np.asarray(["\t".join(s) for s in skipped] or [], dtype=str)}
        atomic_write(cache, lambda p: np.savez(open(p, "wb"), **arrays))
    out = VideoSet(_to_tensors(x, y), classes, files, skipped)
    _report(out)
    return out


def _report(vs: VideoSet) -> None:
    if vs.skipped:
        log.warning("skipped %d of %d videos (first: %s)", len(vs.skipped), len(vs.skipped) + len(vs.files),
                    vs.skipped[0][1])


def _to_tensors(x: np.ndarray, y: np.ndarray) -> TensorData:
    clips = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 1, 4, 2, 3).float().div_(255)
    return TensorData(clips, torch.from_numpy(np.asarray(y)).long())


def save_npz_clips(path: str | os.PathLike, data: TensorData, keys=("x", "y", "y_target")) -> None:
    """Write clips ``(N, T, C, H, W)`` as uint8 ``x`` ``(N, T, H, W, C)`` plus labels."""
    arrays = {}
    for k, t in zip(keys, data.tensors):
        if t.is_floating_point():
            arrays[k] = (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
        else:
            arrays[k] = t.numpy()
    atomic_write(path, lambda p: np.savez_compressed(open(p, "wb"), **arrays))


def load_npz_clips(path: str | os.PathLike) -> TensorData:
    """Read ``x`` uint8 ``(N, T, H, W, C)``, ``y`` and optional ``y_target`` from an ``.npz``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise DataError(f"{p}: expected arrays 'x' (N, T, H, W, C) and 'y', found {sorted(z.files)}")
            x, y = z["x"], z["y"]
            tgt = z["y_target"] if "y_target" in z else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as e:
        if not zipfile.is_zipfile(p):  # np.load falls back to unpickling anything that is not a zip
            raise DataError(f"{p}: not an .npz file (no zip archive inside)") from e
        raise DataError(f"{p}: cannot read npz ({type(e).__name__}: {e})") from e
    if x.ndim != 5 or x.shape[-1] not in (1, 3) or len(x) != len(y) or len(x) == 0:
        raise DataError(f"{p}: 'x' must be (N, T, H, W, C) with C in (1, 3) and N = len(y) > 0, got {x.shape}")
    clips = torch.from_numpy(x).permute(0, 1, 4, 2, 3).float()
    if x.dtype == np.uint8:
        clips = clips / 255
    tensors = [clips, torch.from_numpy(y).long()]
    if tgt is not None:
        tensors.append(torch.from_numpy(tgt).long())
    return TensorData(*tensors)
