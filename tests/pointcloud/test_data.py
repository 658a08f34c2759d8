"""ModelNet readers (OFF meshes, HDF5), surface sampling, the .npz cache and the generated shapes."""

import h5py
import numpy as np
import pytest
import torch

from nft_core.errors import DataError
from nft_pointcloud.data import (
    SHAPES,
    generate_shapes,
    load_h5,
    load_modelnet,
    read_off,
    sample_surface,
    write_off,
)

CUBE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
CUBE_Q = ["4 0 3 2 1", "4 4 5 6 7", "4 0 1 5 4", "4 1 2 6 5", "4 2 3 7 6", "4 3 0 4 7"]


def _cube_off(path, glued=False):
    head = "OFF8 6 0" if glued else "OFF\n# a comment\n8 6 0"
    path.write_text(head + "\n" + "\n".join(" ".join(map(str, v)) for v in CUBE_V) + "\n" + "\n".join(CUBE_Q) + "\n")


@pytest.mark.parametrize("glued", [False, True])
def test_read_off_quads_comments_and_glued_header(tmp_path, glued):
    _cube_off(tmp_path / "c.off", glued)
    v, f = read_off(tmp_path / "c.off")
    assert v.shape == (8, 3) and f.shape == (12, 3)  # quads fan-triangulated


@pytest.mark.parametrize("text,expect", [
    ("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "no faces"),
    ("OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n", "NaN"),
    ("PLY\n3 1 0\n", "not an OFF file"),
    ("OFF\nthree one zero\n", "malformed OFF header"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "truncated"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 9\n", "out of range"),
])
def test_read_off_errors_name_the_file(tmp_path, text, expect):
    p = tmp_path / "bad.off"
    p.write_text(text)
    with pytest.raises(DataError) as e:
        read_off(p)
    assert str(p) in str(e.value) and expect in str(e.value) and "\n" not in str(e.value)


def test_sampling_is_area_weighted_seeded_and_normalized():
    # two triangles, the second 9x the area: ~90% of the points land on it
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [13, 0, 0], [10, 3, 0]], float)
    f = np.array([[0, 1, 2], [3, 4, 5]])
    a = sample_surface(v, f, 4000, np.random.default_rng(0))
    b = sample_surface(v, f, 4000, np.random.default_rng(0))
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert np.allclose(a.mean(0), 0, atol=1e-5) and np.isclose(np.linalg.norm(a, axis=1).max(), 1, atol=1e-5)
    share = (a[:, 0] > a[:, 0].min() + 0.5).mean()  # the big triangle sits to the right
    assert 0.85 < share < 0.95


def test_modelnet_layout_and_cache(tmp_path):
    root = tmp_path / "ModelNet"
    for cls in ("chair", "airplane"):
        for split in ("train", "test"):
            (root / cls / split).mkdir(parents=True)
            _cube_off(root / cls / split / f"{cls}_0001.off")
            _cube_off(root / cls / split / f"{cls}_0002.off", glued=True)
    data, classes = load_modelnet(root, "train", 64, seed=0, cache_dir=tmp_path / "cache")
    assert classes == ["airplane", "chair"] and data.tensors[0].shape == (4, 64, 3)
    assert data.tensors[1].tolist() == [0, 0, 1, 1]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again, _ = load_modelnet(root, "train", 64, seed=0, cache_dir=tmp_path / "cache")
    assert torch.equal(again.tensors[0], data.tensors[0])
    other, _ = load_modelnet(root, "train", 64, seed=1)
    assert not torch.equal(other.tensors[0], data.tensors[0])


def test_h5_reader_and_missing_label(tmp_path):
    g = np.random.default_rng(0)
    for i in range(2):
        with h5py.File(tmp_path / f"ply_data_train{i}.h5", "w") as h:
            h["data"] = g.normal(size=(5, 128, 3)).astype(np.float32)
            h["label"] = np.arange(5, dtype=np.uint8).reshape(5, 1)
    (tmp_path / "shape_names.txt").write_text("\n".join("abcde"))
    data, names = load_h5(tmp_path, "train", 64)
    assert data.tensors[0].shape == (10, 64, 3) and data.tensors[1].tolist() == list(range(5)) * 2
    assert names == list("abcde")
    assert torch.allclose(data.tensors[0].norm(dim=-1).amax(1), torch.ones(10))
    with h5py.File(tmp_path / "ply_data_test0.h5", "w") as h:
        h["data"] = np.zeros((2, 64, 3), np.float32)
    with pytest.raises(DataError, match="ply_data_test0.h5: HDF5 file has no 'label'"):
        load_h5(tmp_path, "test", 64)


def test_generated_shapes_read_back_through_the_loader(tmp_path):
    root = generate_shapes(tmp_path / "shapes", train_per_class=2, test_per_class=1, seed=0)
    assert len(SHAPES) >= 8
    assert len(list(root.glob("*/train/*.off"))) == 2 * len(SHAPES)
    train, classes = load_modelnet(root, "train", 128)
    assert sorted(classes) == sorted(SHAPES) and train.tensors[0].shape == (2 * len(SHAPES), 128, 3)
    v, f = read_off(next(root.glob("table/train/*.off")))
    write_off(tmp_path / "copy.off", v, f)
    assert read_off(tmp_path / "copy.off")[1].shape == f.shape
