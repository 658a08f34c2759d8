"""Loaders on tiny fixtures written in exactly the UCF-101 / HMDB-51 formats, and the bad-clip policy."""

import numpy as np
import pytest
import torch

from nft_core.errors import DataError
from nft_video import data as vdata
from nft_video.data import hmdb51_split, load_clips, load_npz_clips, save_npz_clips, ucf101_split
from nft_video.io import read_frames, write_video
from nft_video.synthetic import CLASSES, generate_clip, write_synthetic_ucf


def _video(path, frames=10, size=16, value=None):
    rng = np.random.default_rng(len(str(path)))
    x = np.full((frames, size, size, 3), 128, np.uint8) if value is None else np.full((frames, size, size, 3), value, np.uint8)
    x[:, 2:6, 2:6] = rng.integers(0, 255, 3)
    write_video(path, x)


def _ucf(root, short=False, corrupt=False, missing=False, empty=False):
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 Walk\n2 Jump\n")
    train, test = [], []
    for cls in ("Walk", "Jump"):
        for g in (1, 2):
            for c in (1, 2):
                rel = f"{cls}/v_{cls}_g{g:02d}_c{c:02d}.avi"
                _video(root / rel)
                (test if g == 1 else train).append(rel)
    if short:
        _video(root / "Walk/v_Walk_g02_c03.avi", frames=3)
        train.append("Walk/v_Walk_g02_c03.avi")
    if corrupt:
        (root / "Walk/v_Walk_g02_c04.avi").write_bytes(b"not a video" * 20)
        train.append("Walk/v_Walk_g02_c04.avi")
    if empty:
        (root / "Jump/v_Jump_g02_c05.avi").write_bytes(b"")
        train.append("Jump/v_Jump_g02_c05.avi")
    if missing:
        train.append("Jump/v_Jump_g09_c01.avi")
    cls_id = {"Walk": 1, "Jump": 2}
    (lists / "trainlist01.txt").write_text("".join(f"{r} {cls_id[r.split('/')[0]]}\n" for r in train))
    (lists / "testlist01.txt").write_text("".join(f"{r}\n" for r in test))
    return root


def test_read_frames_and_step(tmp_path):
    _video(tmp_path / "a.avi", frames=10)
    assert read_frames(tmp_path / "a.avi").shape == (10, 16, 16, 3)
    assert read_frames(tmp_path / "a.avi", step=5).shape == (2, 16, 16, 3)


def test_ucf_layout_and_cache(tmp_path, monkeypatch):
    root = _ucf(tmp_path / "UCF")
    items, classes = ucf101_split(root, 1, True)
    assert classes == ["Walk", "Jump"] and len(items) == 4 and {y for _, y in items} == {0, 1}
    test_items, _ = ucf101_split(root, 1, False)
    assert all("_g01_" in str(p) for p, _ in test_items)
    vs = load_clips(items, classes, frame_step=2, clip_len=4, image_size=8, cache_dir=tmp_path / "cache")
    x, y = vs.data.tensors
    assert x.shape == (4, 4, 3, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert list(y) == [0, 0, 1, 1] and not vs.skipped
    assert len(list((tmp_path / "cache").glob("clips-*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(vdata, "read_frames", boom)
    again = load_clips(items, classes, frame_step=2, clip_len=4, image_size=8, cache_dir=tmp_path / "cache")
    assert torch.equal(again.data.tensors[0], x)


@pytest.mark.parametrize("problem,expect", [("short", "fewer than clip_len"), ("corrupt", "cannot decode"),
                                            ("missing", "not found"), ("empty", "cannot decode")])
def test_bad_clips_skip_or_error(tmp_path, problem, expect):
    root = _ucf(tmp_path / "UCF", **{problem: True})
    items, classes = ucf101_split(root, 1, True)
    vs = load_clips(items, classes, frame_step=2, clip_len=4, image_size=8)
    assert len(vs.data) == 4 and len(vs.skipped) == 1 and expect in vs.skipped[0][1]
    with pytest.raises(DataError, match=expect) as e:
        load_clips(items, classes, frame_step=2, clip_len=4, image_size=8, on_bad_clip="error")
    assert "\n" not in str(e.value)


def test_ucf_bad_split_files(tmp_path):
    root = _ucf(tmp_path / "UCF")
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text("Swim/v_Swim_g01_c01.avi 3\n")
    with pytest.raises(DataError, match="Swim"):
        ucf101_split(root, 1, True)
    with pytest.raises(DataError, match="split file not found"):
        ucf101_split(root, 2, True)


def test_hmdb_layout(tmp_path):
    root = tmp_path / "hmdb"
    splits = root / "splits"
    splits.mkdir(parents=True)
    for cls in ("wave", "clap"):
        lines = []
        for i, k in enumerate((1, 1, 2, 0)):
            _video(root / cls / f"{cls}_{i}.avi")
            lines.append(f"{cls}_{i}.avi {k}\n")
        (splits / f"{cls}_test_split1.txt").write_text("".join(lines))
    tr, classes = hmdb51_split(root, 1, True, splits)
    te, _ = hmdb51_split(root, 1, False, splits)
    assert classes == ["clap", "wave"] and len(tr) == 4 and len(te) == 2
    vs = load_clips(te, classes, frame_step=1, clip_len=8, image_size=8)
    assert vs.data.tensors[0].shape == (2, 8, 3, 8, 8)
    (splits / "wave_test_split1.txt").write_text("wave_0.avi 7\n")
    with pytest.raises(DataError, match="malformed"):
        hmdb51_split(root, 1, True, splits)
    with pytest.raises(DataError, match="no HMDB-51 split files"):
        hmdb51_split(root, 2, True, splits)


def test_synthetic_is_real_video_through_the_loader(tmp_path):
    root = write_synthetic_ucf(tmp_path / "syn", clips_per_class=15, classes=3)
    assert len(list(root.glob("*/*.avi"))) == 45
    items, classes = ucf101_split(root, 1, True)
    assert classes == CLASSES[:3] and len(items) == 15  # groups 1-2 (10 per class) are the test split
    vs = load_clips(items, classes, frame_step=5, clip_len=8, image_size=16)
    assert vs.data.tensors[0].shape == (15, 8, 3, 16, 16)
    for c in range(6):  # every class moves or changes over time (except the textured background)
        clip = generate_clip(c, np.random.default_rng(c))
        assert clip.shape == (40, 32, 32, 3) and np.abs(np.diff(clip.astype(int), axis=0)).sum() > 0


def test_npz_round_trip_and_errors(tmp_path):
    from nft_core.data import TensorData

    x = torch.rand(3, 4, 3, 8, 8)
    save_npz_clips(tmp_path / "a.npz", TensorData(x, torch.tensor([0, 1, 2])))
    back = load_npz_clips(tmp_path / "a.npz")
    assert (back.tensors[0] - x).abs().max() <= 1 / 255 and back.tensors[1].tolist() == [0, 1, 2]
    np.savez(tmp_path / "b.npz", x=np.zeros((3, 8, 8, 3), np.uint8), y=np.zeros(3))
    with pytest.raises(DataError, match="N, T, H, W, C"):
        load_npz_clips(tmp_path / "b.npz")
