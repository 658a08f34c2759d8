import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from nft_core.errors import DataError
from nft_vision import (
    load_cifar10,
    load_cifar100,
    load_digits_default,
    load_gtsrb,
    load_image_folder,
    load_npz,
    split_validation,
)


def _write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # protocol 2, bytes keys: like the real Python-2-era files


def _cifar_batch(rng, n, num_classes, label_key):
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    y = [int(v) for v in rng.integers(0, num_classes, n)]
    return {b"batch_label": b"x", label_key: y, b"data": x, b"filenames": [b"f%d.png" % i for i in range(n)]}, x, y


def test_cifar10_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    xs, ys = [], []
    for i in (1, 2):
        d, x, y = _cifar_batch(rng, 5, 10, b"labels")
        _write_pickle(base / f"data_batch_{i}", d)
        xs.append(x)
        ys += y
    d, xt, yt = _cifar_batch(rng, 4, 10, b"labels")
    _write_pickle(base / "test_batch", d)
    _write_pickle(base / "batches.meta", {b"label_names": [b"c%d" % i for i in range(10)], b"num_vis": 3072})
    train = load_cifar10(tmp_path)  # parent folder works too
    assert train.tensors[0].shape == (10, 3, 32, 32) and train.tensors[0].dtype == torch.float32
    ref = np.concatenate(xs).reshape(-1, 3, 32, 32)
    assert torch.equal((train.tensors[0] * 255).round().to(torch.uint8), torch.from_numpy(ref))
    assert train.tensors[1].tolist() == ys and train.classes[3] == "c3"
    test = load_cifar10(base, train=False)
    assert test.tensors[1].tolist() == yt and len(test) == 4


def test_cifar100_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    d, x, y = _cifar_batch(rng, 6, 100, b"fine_labels")
    d[b"coarse_labels"] = [0] * 6
    _write_pickle(base / "train", d)
    _write_pickle(base / "meta", {b"fine_label_names": [b"n%d" % i for i in range(100)]})
    data = load_cifar100(base)
    assert data.tensors[1].tolist() == y and data.classes[99] == "n99"
    assert torch.equal((data.tensors[0] * 255).round().to(torch.uint8).reshape(6, -1), torch.from_numpy(x))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_refuses_arbitrary_objects(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    _write_pickle(base / "data_batch_1", {b"data": _Evil(), b"labels": [0]})
    with pytest.raises(DataError, match="data_batch_1.*not allowed"):
        load_cifar10(base)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no data_batch"):
        load_cifar10(tmp_path / "empty")
    with pytest.raises(DataError, match="missing: dataset folder not found"):
        load_cifar10(tmp_path / "missing")


def _ppm(path, rng, size):
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format="PPM")


def test_gtsrb_train_and_test(tmp_path):
    rng = np.random.default_rng(2)
    base = tmp_path / "gtsrb"
    for c, n in ((0, 2), (2, 3)):
        d = base / "GTSRB" / "Training" / f"{c:05d}"
        d.mkdir(parents=True)
        for i in range(n):
            _ppm(d / f"00000_{i:05d}.ppm", rng, (30 + i, 40))
        (d / f"GT-{c:05d}.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n")
    train = load_gtsrb(tmp_path, size=16)
    assert train.tensors[0].shape == (5, 3, 16, 16) and train.tensors[1].tolist() == [0, 0, 2, 2, 2]
    img = base / "GTSRB" / "Final_Test" / "Images"
    img.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, c in enumerate((4, 1, 42)):
        _ppm(img / f"{i:05d}.ppm", rng, (32, 35))
        rows.append(f"{i:05d}.ppm;32;35;5;5;27;30;{c}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    test = load_gtsrb(base, train=False)
    assert test.tensors[0].shape == (3, 3, 32, 32) and test.tensors[1].tolist() == [4, 1, 42]
    (img / "00001.ppm").unlink()
    with pytest.raises(DataError, match="00001.ppm"):
        load_gtsrb(base, train=False)


def test_image_folder(tmp_path):
    rng = np.random.default_rng(3)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    data = load_image_folder(tmp_path, size=8)
    assert data.tensors[0].shape == (4, 3, 8, 8) and data.classes == ["cat", "dog"]
    assert data.tensors[1].tolist() == [0, 0, 1, 1]
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="notes.txt") as e:
        load_image_folder(tmp_path, size=8)
    assert "\n" not in str(e.value)


def test_image_folder_empty(tmp_path):
    with pytest.raises(DataError, match="no class subfolders"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_image_folder(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_image_folder(tmp_path / "missing")


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    y = np.arange(5)
    np.savez(tmp_path / "hwc.npz", x=x, y=y)
    np.savez(tmp_path / "chw.npz", x=x.transpose(0, 3, 1, 2).astype(np.float32) / 255, y=y)
    a, b = load_npz(tmp_path / "hwc.npz"), load_npz(tmp_path / "chw.npz")
    assert a.tensors[0].shape == (5, 3, 8, 8) and torch.allclose(a.tensors[0], b.tensors[0])
    assert a.tensors[1].tolist() == list(range(5))
    np.savez(tmp_path / "bad.npz", x=x)
    with pytest.raises(DataError, match="bad.npz.*'y'"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "range.npz", x=x.astype(np.float32), y=y)
    with pytest.raises(DataError, match="range.npz"):
        load_npz(tmp_path / "range.npz")


def test_digits_default_and_split():
    train, test = load_digits_default()
    assert train.tensors[0].shape[1:] == (3, 32, 32) and len(train) + len(test) == 1797
    assert 0 <= train.tensors[0].min() and train.tensors[0].max() <= 1
    assert torch.bincount(test.tensors[1]).min() >= 30  # stratified
    again, _ = load_digits_default()
    assert torch.equal(train.tensors[1], again.tensors[1])
    val, rest, vi, ri = split_validation(train, per_class=2, generator=torch.Generator().manual_seed(0))
    assert len(val) == 20 and torch.bincount(val.tensors[1]).tolist() == [2] * 10
    assert len(set(vi.tolist()) | set(ri.tolist())) == len(train) and torch.equal(val.tensors[1], train.tensors[1][vi])
    val, rest, vi, ri = split_validation(train, ratio=0.1)
    assert abs(len(val) - 0.1 * len(train)) <= 10 and len(rest) == len(train) - len(val)
