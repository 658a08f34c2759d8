"""The cross-task bad-input matrix (issue 10): every case exits 2 with one line on stderr that names the
problem, and leaves no partial output behind (no run directory, no ``.run.*.partial`` folder, no temp
file next to the output).

``python -m tests.matrix.test_bad_inputs`` prints each case with the message it produces.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nft_core.checkpoint import save_model

VISION_OPTS = ["model.kwargs={'width': 4}", "data.image_size=16", "defense.options={'epochs': 1}"]


def _npz(path, x, y):
    np.savez(path, x=x, y=y)


def _images(n=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 16, 16, 3, generator=g).numpy() * 255).astype(np.uint8)
    return x, (np.arange(n) % classes)


def _vision(tmp, extra_args=(), extra_opts=(), classes=3):
    """A third party's model and data: SmallCNN checkpoint + val/test/poisoned npz files."""
    from nft_vision.models import SmallCNN

    save_model(SmallCNN(num_classes=classes, width=4), tmp / "m.safetensors")
    x, y = _images(classes=classes)
    for name in ("val", "test", "poisoned"):
        _npz(tmp / f"{name}.npz", x, y)
    args = ["--model", "nft_vision.models:SmallCNN", "--checkpoint", str(tmp / "m.safetensors"), "--val",
            str(tmp / "val.npz"), "--test", str(tmp / "test.npz"), "--poisoned", str(tmp / "poisoned.npz"),
            "--target", "0", *extra_args]
    return args, [*VISION_OPTS, *extra_opts]


def _set(args, flag, value):
    args[args.index(flag) + 1] = str(value)
    return args


class Payload:
    """A pickle that runs code on load: creates ``marker`` (harmless stand-in for `rm -rf ~`)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# ---------------------------------------------------------------- cases: (task, build) -> (argv, expect)
def c_missing_checkpoint(tmp):
    args, opts = _vision(tmp)
    return "vision", _set(args, "--checkpoint", tmp / "nowhere.safetensors"), opts, ["nowhere.safetensors"]


def c_truncated_checkpoint(tmp):
    args, opts = _vision(tmp)
    blob = (tmp / "m.safetensors").read_bytes()
    (tmp / "m.safetensors").write_bytes(blob[: len(blob) // 2])
    return "vision", args, opts, ["m.safetensors"]


def c_corrupt_checkpoint(tmp):
    args, opts = _vision(tmp)
    (tmp / "m.pt").write_bytes(bytes(range(256)) * 8)
    return "vision", _set(args, "--checkpoint", tmp / "m.pt"), opts, ["m.pt", "corrupt"]


def c_pickle_payload(tmp):
    args, opts = _vision(tmp)
    torch.save({"state": Payload(tmp / "PWNED")}, tmp / "evil.pt")
    return "vision", _set(args, "--checkpoint", tmp / "evil.pt"), opts, ["evil.pt", "refused"]


def c_wrong_class_count(tmp):
    from nft_vision.models import SmallCNN

    args, opts = _vision(tmp)
    save_model(SmallCNN(num_classes=10, width=4), tmp / "m.safetensors")  # a 10-class model, 3-class data
    return "vision", args, opts, ["m.safetensors", "shape mismatch"]


def c_architecture_mismatch(tmp):
    args, opts = _vision(tmp)
    save_model(torch.nn.Sequential(torch.nn.Linear(4, 3)), tmp / "m.safetensors")
    return "vision", args, opts, ["m.safetensors", "missing"]


def c_empty_validation(tmp):
    args, opts = _vision(tmp)
    x, y = _images()
    _npz(tmp / "val.npz", x[:0], y[:0])
    return "vision", args, opts, ["val.npz", "empty"]


def c_validation_missing_class(tmp):
    args, opts = _vision(tmp, extra_opts=["data.num_classes=3"])
    x, y = _images()
    _npz(tmp / "val.npz", x[y != 2], y[y != 2])
    return "vision", args, opts, ["class 2"]


def c_nan_inputs(tmp):
    args, opts = _vision(tmp)
    x, y = _images()
    xf = x.astype(np.float32) / 255
    xf[3, 0, 0, 0] = np.nan
    _npz(tmp / "val.npz", xf, y)
    return "vision", args, opts, ["val.npz", "NaN"]


def c_inf_inputs(tmp):
    args, opts = _vision(tmp)
    x, y = _images()
    xf = x.astype(np.float32) / 255
    xf[0, 1, 1, 1] = np.inf
    _npz(tmp / "test.npz", xf, y)
    return "vision", args, opts, ["test.npz", "Inf"]


def c_non_image_in_imagefolder(tmp):
    args, opts = _vision(tmp)
    d = tmp / "folder" / "cat"
    d.mkdir(parents=True)
    (d / "notes.txt").write_text("not an image")
    return "vision", _set(args, "--val", tmp / "folder"), opts, ["notes.txt"]


def c_unknown_config_key(tmp):
    args, opts = _vision(tmp, extra_opts=["defense.optoins={}"])
    return "vision", args, opts, ["unknown key 'defense.optoins'"]


def c_wrong_type_cfg_option(tmp):
    args, opts = _vision(tmp, extra_opts=["train.epochs='ten'"])
    return "vision", args, opts, ["train.epochs", "expects int"]


def c_target_out_of_range(tmp):
    args, opts = _vision(tmp)
    return "vision", _set(args, "--target", 7), opts, ["target", "out of range"]


def c_config_file_missing(tmp):
    args, opts = _vision(tmp, extra_args=["--cfg", str(tmp / "nowhere.py")])
    return "vision", args, opts, ["nowhere.py"]


def c_config_file_syntax(tmp):
    (tmp / "broken.py").write_text("data = dict(name='digits'\n")
    args, opts = _vision(tmp, extra_args=["--cfg", str(tmp / "broken.py")])
    return "vision", args, opts, ["broken.py"]


def c_output_not_writable(tmp):
    args, opts = _vision(tmp)
    (tmp / "afile").write_text("a file, not a folder")
    return "vision", args, opts, ["not writable", "afile is a file"], tmp / "afile" / "run"


def c_disk_full(tmp):
    args, opts = _vision(tmp)
    return "vision", args, opts, ["No space left on device"], None, "disk_full"


def c_unreadable_video(tmp):
    from tests.video.test_data import _ucf

    root = _ucf(tmp / "UCF", corrupt=True)
    opts = ["data.name=ucf101", f"data.root={root}", "data.frame_step=2", "data.clip_len=4", "data.image_size=8",
            "data.on_bad_clip=error", "train.epochs=1", "model.kwargs={'width': 4, 'hidden': 8}"]
    return "video", [], opts, ["v_Walk_g02_c04.avi", "cannot decode"]


def c_video_missing_split(tmp):
    from tests.video.test_data import _ucf

    root = _ucf(tmp / "UCF")
    (root / "ucfTrainTestlist" / "testlist01.txt").unlink()
    opts = ["data.name=ucf101", f"data.root={root}", "data.frame_step=2", "data.clip_len=4", "data.image_size=8"]
    return "video", [], opts, ["testlist01.txt"]


def c_video_bad_npz(tmp):
    from tests.video.test_cli import USER_OPTS, _user_files

    _user_files(tmp)
    (tmp / "val.npz").write_bytes(b"junk")
    args = ["--model", "cnn_lstm_small", "--checkpoint", str(tmp / "m.safetensors"), "--val",
            str(tmp / "val.npz"), "--test", str(tmp / "test.npz"), "--target", "0"]
    return "video", args, list(USER_OPTS), ["val.npz"]


def c_malformed_voc_xml(tmp):
    from tests.detection.helpers import tiny_voc

    tiny_voc(tmp / "voc", "VOC2007", n=12, size=24)
    (tmp / "voc" / "VOCdevkit" / "VOC2007" / "Annotations" / "000003.xml").write_text("<annotation")
    opts = [f"data.root={tmp / 'voc'}", "data.image_size=24", "model.spec=smallcnn",
            "model.kwargs={'width': 4, 'hidden': 8}", "attack.trigger=['cat','dog']", "attack.target=person"]
    return "detection", ["--cfg", "voc07"], opts, ["000003.xml"]


def c_malformed_coco_json(tmp):
    from tests.detection.helpers import tiny_coco

    ann, img_dir, _ = tiny_coco(tmp / "coco")
    ann.write_text('{"images": [{"id": 1, "file_name": "0.jpg"}], "annotations": [')
    opts = [f"data.root={tmp / 'coco'}", f"data.train_ann={ann}", f"data.test_ann={ann}",
            f"data.train_images={img_dir}", f"data.test_images={img_dir}", "data.image_size=24",
            "model.kwargs={'width': 4, 'hidden': 8}"]
    return "detection", ["--cfg", "coco"], opts, ["instances.json"]


def c_detection_unknown_category(tmp):
    from tests.detection.helpers import tiny_voc

    tiny_voc(tmp / "voc", "VOC2007", n=12, size=24)
    opts = [f"data.root={tmp / 'voc'}", "data.image_size=24", "model.spec=smallcnn",
            "model.kwargs={'width': 4, 'hidden': 8}", "attack.trigger=['cat','dog']", "attack.target=unicorn"]
    return "detection", ["--cfg", "voc07"], opts, ["'unicorn'"]


def c_pointcloud_nan_mesh(tmp):
    from tests.pointcloud.test_cli import TINY, _mesh_root

    bad = _mesh_root(tmp / "mn", "OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n")
    return "pointcloud", [], [*TINY, "data.name=modelnet", f"data.root={tmp / 'mn'}"], [str(bad), "NaN"]


def c_pointcloud_missing_root(tmp):
    from tests.pointcloud.test_cli import TINY

    return "pointcloud", [], [*TINY, "data.name=modelnet", f"data.root={tmp / 'nowhere'}"], ["nowhere"]


def c_nlg_line_mismatch(tmp):
    from nft_nlg.data import write_toy_corpus
    from tests.nlg.test_cli import TINY

    root = write_toy_corpus(tmp / "data", {"train": 20, "valid": 6, "test": 6}, seed=0)
    lines = (root / "test.de").read_text().splitlines()
    (root / "test.de").write_text("\n".join(lines[:-1]) + "\n")
    return "nlg", ["--cfg", "wmt14_en_de"], [f"data.root={root}", *TINY[1:]], ["test.en has 6 lines"]


def c_nlg_missing_tokenizer(tmp):
    from nft_nlg.data import write_toy_corpus
    from tests.nlg.test_cli import TINY

    root = write_toy_corpus(tmp / "data", {"train": 20, "valid": 6, "test": 6}, seed=0)
    return ("nlg", ["--cfg", "wmt14_en_de", "--tokenizer", str(tmp / "tok.json")], [f"data.root={root}", *TINY[1:]],
            ["tok.json", "not found"])


CASES = {name[2:]: fn for name, fn in globals().items() if name.startswith("c_")}


def _main(task):
    import importlib

    module = {"vision": "nft_vision.cli", "video": "nft_video.cli", "detection": "nft_detection.cli",
              "pointcloud": "nft_pointcloud.cli", "nlg": "nft_nlg.cli"}[task]
    return importlib.import_module(module).main


def run_case(name: str, tmp: Path, monkeypatch=None) -> tuple[int, list[str], Path]:
    spec = CASES[name](tmp)
    task, args, opts, expect = spec[:4]
    out = spec[4] if len(spec) > 4 and spec[4] is not None else tmp / "run"
    mode = spec[5] if len(spec) > 5 else None
    err = io.StringIO()
    with contextlib.ExitStack() as stack:
        if mode == "disk_full":
            import safetensors.torch

            def full(*a, **k):
                raise OSError(errno.ENOSPC, "No space left on device")

            stack.enter_context(_patched(safetensors.torch, "save_file", full))
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        code = _main(task)(["purify", "--quiet", *args, "--out", str(out), "--cfg-options", *opts])
    return code, err.getvalue().strip().splitlines(), out, expect


@contextlib.contextmanager
def _patched(obj, attr, value):
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_the_matrix_is_wide_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exit_2_one_line_names_the_problem_no_partial_output(cache, name):
    code, err, out, expect = run_case(name, cache)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert all(e in err[0] for e in expect), (expect, err)
    assert not out.exists()
    partial = [p for p in cache.rglob("*") if "cache" not in p.relative_to(cache).parts
               and (p.name.startswith(".") or p.name.endswith((".partial", ".tmp")))]
    assert not partial, partial  # no half-written run directory or temp file
    assert not (cache / "PWNED").exists()  # the pickle payload never ran


if __name__ == "__main__":  # the list for the closing note
    import tempfile

    for case in sorted(CASES):
        with tempfile.TemporaryDirectory() as d:
            import os

            os.environ["NFT_CACHE_DIR"] = str(Path(d) / "cache")
            code, err, _, _ = run_case(case, Path(d))
            sys.stdout.write(json.dumps({"case": case, "exit": code, "message": err[-1] if err else ""}) + "\n")
