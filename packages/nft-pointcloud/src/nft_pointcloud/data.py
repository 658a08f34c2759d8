"""ModelNet data: OFF meshes in the ModelNet40/ModelNet10 layout (``<root>/<class>/train|test/*.off``),
area-weighted point sampling (seeded) with a ``.npz`` cache, pre-sampled HDF5 files
(``ply_data_train*.h5`` / ``ply_data_test*.h5`` with ``data`` and ``label``), and the embedded default:
procedurally generated shapes written as ``.off`` files in the ModelNet layout and read back.

Every cloud is centred and scaled into the unit sphere. Items of the returned :class:`TensorData` are
``(points (N, 3) float32, label)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from nft_core.checkpoint import atomic_write
from nft_core.data import TensorData
from nft_core.errors import DataError

__all__ = ["read_off", "write_off", "sample_surface", "normalize", "load_modelnet", "load_h5",
           "generate_shapes", "SHAPES", "modelnet_classes"]


# ---------------------------------------------------------------------------------------------- OFF
def read_off(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (V, 3) float64, triangles (F, 3) int64)`` of an OFF file; polygons are fan-triangulated.

    Accepts the ModelNet quirk of the counts glued to the header (``OFF490 518 0``) and ``#`` comments.
    Raises :class:`DataError` naming the file for a bad header, short or non-numeric data, no faces,
    non-finite coordinates or out-of-range vertex indices."""
    p = Path(path)
    try:
        text = p.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read OFF file ({e})") from e
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise DataError(f"{p}: not an OFF file (first line must start with 'OFF')")
    head = lines[0][3:].split()
    body = lines[1:]
    if not head:
        if not body:
            raise DataError(f"{p}: malformed OFF header (no vertex/face counts)")
        head, body = body[0].split(), body[1:]
    try:
        nv, nf = int(head[0]), int(head[1])
    except (ValueError, IndexError) as e:
        raise DataError(f"{p}: malformed OFF header (expected 'nv nf ne', got {' '.join(head)!r})") from e
    if nv <= 0 or nf < 0:
        raise DataError(f"{p}: malformed OFF header ({nv} vertices, {nf} faces)")
    if nf == 0:
        raise DataError(f"{p}: mesh has no faces (cannot sample a surface)")
    if len(body) < nv + nf:
        raise DataError(f"{p}: truncated OFF file ({len(body)} data lines, header promises {nv + nf})")
    try:
        verts = np.array([[float(v) for v in ln.split()[:3]] for ln in body[:nv]], dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{p}: non-numeric vertex coordinate ({e})") from e
    if verts.shape != (nv, 3):
        raise DataError(f"{p}: every vertex needs 3 coordinates")
    if not np.isfinite(verts).all():
        raise DataError(f"{p}: vertex coordinates contain NaN or infinity")
    tris = []
    try:
        for ln in body[nv : nv + nf]:
            vals = [int(v) for v in ln.split()]
            k = vals[0]
            idx = vals[1 : 1 + k]
            if k < 3 or len(idx) < k:
                raise DataError(f"{p}: malformed face line {ln!r}")
            tris.extend((idx[0], idx[i], idx[i + 1]) for i in range(1, k - 1))
    except ValueError as e:
        raise DataError(f"{p}: non-integer face index ({e})") from e
    faces = np.asarray(tris, dtype=np.int64)
    if faces.min() < 0 or faces.max() >= nv:
        raise DataError(f"{p}: face index out of range (mesh has {nv} vertices)")
    return verts, faces


def write_off(path: str | os.PathLike, verts: np.ndarray, faces: np.ndarray) -> None:
    lines = ["OFF", f"{len(verts)} {len(faces)} 0"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += ["3 " + " ".join(str(int(i)) for i in f) for f in faces]
    Path(path).write_text("\n".join(lines) + "\n")


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre at the centroid and scale so the farthest point lies on the unit sphere."""
    c = points - points.mean(0, keepdims=True)
    r = np.sqrt((c**2).sum(1)).max()
    return c / r if r > 0 else c


def sample_surface(verts: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator,
                   name: str = "mesh") -> np.ndarray:
    """``n`` points uniformly on the surface: triangles drawn with probability ∝ area, then uniform
    barycentric coordinates (the square-root trick)."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = area.sum()
    if not np.isfinite(total) or total <= 0:
        raise DataError(f"{name}: mesh has zero surface area")
    tri = rng.choice(len(faces), size=n, p=area / total)
    r1, r2 = np.sqrt(rng.random(n))[:, None], rng.random(n)[:, None]
    pts = (1 - r1) * a[tri] + r1 * (1 - r2) * b[tri] + r1 * r2 * c[tri]
    return normalize(pts).astype(np.float32)


# ----------------------------------------------------------------------------------------- ModelNet
def modelnet_classes(root: Path) -> list[str]:
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and ((d / "train").is_dir() or (d / "test").is_dir()))
    if not classes:
        raise DataError(f"{root}: no class folders with train/ or test/ (expected <root>/<class>/train/*.off)")
    return classes


def load_modelnet(root: str | os.PathLike, split: str, num_points: int = 1024, seed: int = 0,
                  cache_dir: str | os.PathLike | None = None) -> tuple[TensorData, list[str]]:
    """Sample every mesh of ``<root>/<class>/<split>/*.off`` into ``num_points`` points.

    Mesh i of the sorted file list is sampled with seed ``(seed, i)``. With ``cache_dir`` the clouds are
    cached to ``<cache_dir>/modelnet-<split>-<key>.npz`` (key: root, split, points, seed, file names and
    sizes) and reused."""
    root = Path(root)
    classes = modelnet_classes(root)
    files = [(f, ci) for ci, c in enumerate(classes) for f in sorted((root / c / split).glob("*.off"))]
    if not files:
        raise DataError(f"{root}: no {split}/*.off meshes in any class folder")
    cache = None
    if cache_dir is not None:
        sig = [str(root.resolve()), split, num_points, seed, [(str(f.relative_to(root)), f.stat().st_size) for f, _ in files]]
        key = hashlib.sha256(json.dumps(sig).encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"modelnet-{split}-{key}.npz"
        if cache.exists():
            with np.load(cache) as z:
                return TensorData(torch.from_numpy(z["points"]), torch.from_numpy(z["label"])), classes
    pts = np.empty((len(files), num_points, 3), dtype=np.float32)
    for i, (f, _) in enumerate(files):
        v, fc = read_off(f)
        pts[i] = sample_surface(v, fc, num_points, np.random.default_rng([seed, i]), name=str(f))
    labels = np.array([ci for _, ci in files], dtype=np.int64)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, lambda p: np.savez(open(p, "wb"), points=pts, label=labels))
    return TensorData(torch.from_numpy(pts), torch.from_numpy(labels)), classes


# --------------------------------------------------------------------------------------------- HDF5
def load_h5(root: str | os.PathLike, split: str, num_points: int = 1024) -> tuple[TensorData, list[str] | None]:
    """Pre-sampled ModelNet40 HDF5 (``ply_data_<split>*.h5``: ``data (B, P, 3)``, ``label (B,)`` or
    ``(B, 1)``). Keeps the first ``num_points`` points of each cloud (P ≥ num_points), re-normalized.
    Class names from ``shape_names.txt`` when present."""
    import h5py

    root = Path(root)
    files = sorted(root.glob(f"ply_data_{split}*.h5"))
    if not files:
        raise DataError(f"{root}: no ply_data_{split}*.h5 files")
    xs, ys = [], []
    for f in files:
        try:
            with h5py.File(f, "r") as h:
                for k in ("data", "label"):
                    if k not in h:
                        raise DataError(f"{f}: HDF5 file has no '{k}' dataset")
                x, y = np.asarray(h["data"], dtype=np.float32), np.asarray(h["label"]).reshape(-1).astype(np.int64)
        except OSError as e:
            raise DataError(f"{f}: cannot read HDF5 ({e})") from e
        if x.ndim != 3 or x.shape[2] < 3 or len(x) != len(y):
            raise DataError(f"{f}: 'data' must be (B, P, 3) with one label per cloud, got {x.shape} and {y.shape}")
        if x.shape[1] < num_points:
            raise DataError(f"{f}: clouds have {x.shape[1]} points, fewer than num_points={num_points}")
        if not np.isfinite(x).all():
            raise DataError(f"{f}: 'data' contains NaN or infinity")
        xs.append(x[:, :num_points, :3])
        ys.append(y)
    pts = np.stack([normalize(c) for c in np.concatenate(xs)]).astype(np.float32)
    names_file = root / "shape_names.txt"
    names = names_file.read_text().split() if names_file.exists() else None
    return TensorData(torch.from_numpy(pts), torch.from_numpy(np.concatenate(ys))), names


# -------------------------------------------------------------------------------- generated shapes
def _grid(nu: int, nv: int, fn, closed_u: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A (u, v) parametric surface as a triangle mesh; u wraps around when ``closed_u``."""
    us = np.linspace(0, 2 * math.pi, nu, endpoint=not closed_u)
    vs = np.linspace(0, 1, nv)
    uu, vv = np.meshgrid(us, vs, indexing="ij")
    verts = np.stack(fn(uu, vv), -1).reshape(-1, 3)
    faces = []
    for i in range(nu if closed_u else nu - 1):
        i2 = (i + 1) % nu
        for j in range(nv - 1):
            a, b, c, d = i * nv + j, i2 * nv + j, i2 * nv + j + 1, i * nv + j + 1
            faces += [(a, b, c), (a, c, d)]
    return verts, np.asarray(faces)


def _box(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    v = np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
                  [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]], dtype=np.float64)
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                  [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])
    return v, f


def _merge(*meshes) -> tuple[np.ndarray, np.ndarray]:
    vs, fs, off = [], [], 0
    for v, f in meshes:
        vs.append(v)
        fs.append(f + off)
        off += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def _disk(r: float, z: float, n: int = 24, up: bool = True):
    ang = np.linspace(0, 2 * math.pi, n, endpoint=False)
    v = np.concatenate([[[0, 0, z]], np.stack([r * np.cos(ang), r * np.sin(ang), np.full(n, z)], 1)])
    f = np.array([(0, 1 + i, 1 + (i + 1) % n) if up else (0, 1 + (i + 1) % n, 1 + i) for i in range(n)])
    return v, f


def _sphere(uu, vv):
    th = vv * math.pi
    return np.sin(th) * np.cos(uu), np.sin(th) * np.sin(uu), np.cos(th)


def _shape(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if name == "sphere":
        return _grid(24, 13, _sphere)
    if name == "cube":
        return _box((-1, -1, -1), (1, 1, 1))
    if name == "cylinder":
        side = _grid(24, 2, lambda u, v: (np.cos(u), np.sin(u), 2 * v - 1))
        return _merge(side, _disk(1, 1), _disk(1, -1, up=False))
    if name == "cone":
        side = _grid(24, 2, lambda u, v: ((1 - v) * np.cos(u), (1 - v) * np.sin(u), 2 * v - 1))
        return _merge(side, _disk(1, -1, up=False))
    if name == "torus":
        r = rng.uniform(0.25, 0.4)
        return _grid(24, 13, lambda u, v: ((1 + r * np.cos(2 * math.pi * v)) * np.cos(u),
                                           (1 + r * np.cos(2 * math.pi * v)) * np.sin(u),
                                           r * np.sin(2 * math.pi * v)))
    if name == "pyramid":
        v = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [0, 0, 1]], dtype=np.float64)
        return v, np.array([[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    if name == "capsule":
        def caps(u, v):  # a cylinder of half-length 1 with hemispherical caps of radius 1
            th = v * math.pi
            z = np.cos(th) + np.where(th < math.pi / 2, 1.0, -1.0)
            return np.sin(th) * np.cos(u), np.sin(th) * np.sin(u), z
        return _grid(24, 14, caps)
    if name == "table":
        t = rng.uniform(0.08, 0.2)  # leg thickness
        top = _box((-1, -0.7, 0.8), (1, 0.7, 1))
        legs = [_box((sx * 0.9 - t / 2, sy * 0.6 - t / 2, -1), (sx * 0.9 + t / 2, sy * 0.6 + t / 2, 0.8))
                for sx in (-1, 1) for sy in (-1, 1)]
        return _merge(top, *legs)
    raise ValueError(name)


#: The embedded default's classes.
SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid", "capsule", "table")


def _random_mesh(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    v, f = _shape(name, rng)
    v = v * rng.uniform(0.7, 1.3, size=3)  # random aspect
    yaw = rng.uniform(-math.pi / 6, math.pi / 6)  # small random turn about the up axis
    c, s = math.cos(yaw), math.sin(yaw)
    v = v @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T
    return v * rng.uniform(0.5, 2.0), f  # random scale (normalized away when sampled)


def generate_shapes(root: str | os.PathLike, train_per_class: int = 40, test_per_class: int = 10,
                    seed: int = 0, classes: tuple[str, ...] = SHAPES) -> Path:
    """Write random meshes of each class to ``<root>/<class>/{train,test}/<class>_NNNN.off`` (ModelNet
    layout); skipped when ``<root>/.complete`` records the same arguments. Returns ``root``."""
    root = Path(root)
    stamp = json.dumps([train_per_class, test_per_class, seed, list(classes)])
    done = root / ".complete"
    if done.exists() and done.read_text() == stamp:
        return root
    for ci, name in enumerate(classes):
        for split, count, offset in (("train", train_per_class, 0), ("test", test_per_class, 10_000)):
            d = root / name / split
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([seed, ci, offset + i])
                write_off(d / f"{name}_{offset + i + 1:04d}.off", *_random_mesh(name, rng))
    done.write_text(stamp)
    return root
