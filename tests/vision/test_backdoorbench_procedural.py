"""BackdoorBench ``attack_result.pt`` reader (fixtures written in its layouts) and the procedural data set."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nft_core.checkpoint import load_checkpoint_into
from nft_core.errors import CheckpointError, NFTInputError
from nft_vision import SmallCNN, load_backdoorbench, load_procedural
from nft_vision.cli import main
from nft_vision.config import VisionConfig
from nft_vision.procedural import CLASSES, make_procedural
from nft_vision.workflow import load_dataset

TARGET = 0


def _bd_samples(n=9, size=16):
    """Triggered test images (uint8 HWC), their true labels; every third one is of the target class."""
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    labels = [i % 3 for i in range(n)]
    return imgs, labels


def _write_attack_result(path, *, layout="memory", model=None):
    """A BackdoorBench ``attack_result.pt`` as its ``save_attack_result`` writes it (current version):
    ``bd_test`` is ``prepro_cls_DatasetBD_v2.retrieve_state()``; as in BackdoorBench the poisoned test set
    holds the non-target samples (``original_index_array``); one target-class entry is left in the
    container to check that the index array is honoured."""
    model = model or SmallCNN(num_classes=3, width=4)
    imgs, labels = _bd_samples()
    n = len(imgs)
    indicator = np.array([1 if lab != TARGET else 0 for lab in labels])
    keep = np.nonzero(indicator)[0]
    folder = None
    data_dict = {}
    for i in range(n):
        if i not in keep and i != 0:
            continue
        if layout == "memory":
            data_dict[i] = (Image.fromarray(imgs[i]), TARGET, labels[i])
        else:  # saved to disk: paths as written on the attacker's machine (another root)
            folder = "/elsewhere/bb/record/badnet_demo/bd_test_dataset"
            local = path.parent / "bd_test_dataset" / str(labels[i])
            local.mkdir(parents=True, exist_ok=True)
            Image.fromarray(imgs[i]).save(local / f"{i}.png")
            data_dict[i] = {"path": f"{folder}/{labels[i]}/{i}.png", "other_info": [TARGET, labels[i]]}
    bd_test = {
        "bd_data_container": {"save_folder_path": folder, "data_dict": data_dict, "save_file_format": ".png"},
        "getitem_all": True, "getitem_all_switch": False, "original_index_array": keep,
        "poison_indicator": indicator, "save_folder_path": folder,
    }
    bd_train = {
        "bd_data_container": {"save_folder_path": None, "data_dict": {}, "save_file_format": ".png"},
        "getitem_all": True, "getitem_all_switch": False, "original_index_array": np.arange(20),
        "poison_indicator": np.array([1, 0, 0, 0] * 5), "save_folder_path": None,
    }
    torch.save({
        "model_name": "smallcnn", "num_classes": 3,
        "model": {f"module.{k}": v for k, v in model.state_dict().items()},  # saved from DataParallel
        "data_path": "./data/cifar10", "img_size": [16, 16, 3], "clean_data": "cifar10",
        "bd_train": bd_train, "bd_test": bd_test,
    }, path)
    return model, [imgs[i] for i in keep], [labels[i] for i in keep]


@pytest.mark.parametrize("layout", ["memory", "disk"])
def test_reader_refuses_untrusted_then_round_trips(tmp_path, layout):
    pt = tmp_path / "record" / "badnet_demo" / "attack_result.pt"
    pt.parent.mkdir(parents=True)
    model, imgs, labels = _write_attack_result(pt, layout=layout)
    with pytest.raises(CheckpointError, match="--trust-checkpoint") as e:
        load_backdoorbench(pt)
    assert "\n" not in str(e.value)
    r = load_backdoorbench(pt, trust=True)
    assert r.layout == f"v2-{layout}" and r.model_name == "smallcnn" and r.num_classes == 3
    assert r.img_size == (16, 16, 3) and r.clean_data == "cifar10" and r.data_path == "./data/cifar10"
    assert r.meta["bd_train_poisoned"] == 5 and r.meta["bd_train_size"] == 20
    ref = model.state_dict()
    assert r.state_dict.keys() == ref.keys() and all(torch.equal(r.state_dict[k], ref[k]) for k in ref)
    x, y_true, y_target = r.poisoned.tensors
    assert x.shape == (len(imgs), 3, 16, 16) and x.dtype == torch.float32
    expect = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(x, expect)  # pixel-exact, in the file's order
    assert y_true.tolist() == labels and (y_target == TARGET).all() and (y_true != TARGET).all()


def test_reader_early_layout_and_bad_files(tmp_path):
    # early releases: bd_test as tensors with backdoor labels only (no true labels -> no poisoned set);
    # a file of tensors only needs no unpickling and is read without trust
    model = SmallCNN(num_classes=3, width=4)
    early = tmp_path / "early.pt"
    torch.save({"model_name": "smallcnn", "num_classes": 3, "model": model.state_dict(), "data_path": "d",
                "img_size": [16, 16, 3], "clean_data": "cifar10",
                "bd_train": {"x": torch.zeros(4, 3, 16, 16), "y": torch.zeros(4, dtype=torch.long),
                             "original_index": None},
                "bd_test": {"x": torch.full((5, 3, 16, 16), 200.0), "y": torch.zeros(5, dtype=torch.long)}}, early)
    r = load_backdoorbench(early)
    assert r.layout == "v1" and r.poisoned is None and r.meta["bd_train_poisoned"] == 4
    not_bb = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, not_bb)
    with pytest.raises(CheckpointError, match="not a BackdoorBench"):
        load_backdoorbench(not_bb, trust=True)
    with pytest.raises(CheckpointError, match="not found"):
        load_backdoorbench(tmp_path / "missing.pt", trust=True)
    (tmp_path / "broken.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_backdoorbench(tmp_path / "broken.pt", trust=True)


def _npz(path, n=30, size=16):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(n, size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    np.savez(path, x=x, y=(np.arange(n) % 3))


def test_cli_purifies_a_backdoorbench_result(tmp_path, capsys):
    pt = tmp_path / "attack_result.pt"
    _, imgs, _ = _write_attack_result(pt)
    _npz(tmp_path / "val.npz")
    _npz(tmp_path / "test.npz")
    args = ["purify", "--quiet", "--backdoorbench", str(pt), "--model", "nft_vision.models:SmallCNN",
            "--val", str(tmp_path / "val.npz"), "--test", str(tmp_path / "test.npz"), "--out", str(tmp_path / "run"),
            "--cfg-options", "model.kwargs={'width': 4}", "data.image_size=16", "defense.options={'epochs': 2}"]
    assert main(args) == 2  # untrusted pickle: refused, one line, no run directory
    err = capsys.readouterr().err.strip()
    assert "--trust-checkpoint" in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()
    assert main([*args, "--trust-checkpoint"]) == 0
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert {"acc", "asr", "lcr"} <= set(rep["before"]) and {"acc", "asr"} <= set(rep["after"])
    load_checkpoint_into(SmallCNN(num_classes=3, width=4), tmp_path / "run" / "purified.safetensors")
    # the weights must fit model.spec: a wider model is a one-line error
    capsys.readouterr()
    bad = [a if a != "model.kwargs={'width': 4}" else "model.kwargs={'width': 8}" for a in args]
    assert main([*bad, "--trust-checkpoint", "--out", str(tmp_path / "run2")]) == 2
    assert "shape mismatch" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- procedural
def test_procedural_is_deterministic_balanced_and_sized():
    a = make_procedural(205, size=16, seed=0)
    b = make_procedural(205, size=16, seed=0)
    x, y = a.tensors
    assert x.shape == (205, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.1
    assert torch.equal(x, b.tensors[0]) and torch.equal(y, b.tensors[1])
    counts = torch.bincount(y, minlength=10)
    assert len(counts) == 10 and counts.max() - counts.min() <= 1
    assert not torch.equal(y, torch.arange(205) % 10)  # shuffled
    assert not torch.equal(x, make_procedural(205, size=16, seed=1).tensors[0])
    assert not torch.equal(x[:50], make_procedural(205, size=16, seed=0, split="test").tensors[0][:50])
    assert a.classes == CLASSES and len(set(CLASSES)) == 10
    tr, te = load_procedural(n_train=40, n_test=20, size=32, seed=3)
    assert tr.tensors[0].shape == (40, 3, 32, 32) and te.tensors[0].shape == (20, 3, 32, 32)
    assert (torch.bincount(tr.tensors[1]) == 4).all()
    # the test split does not depend on the train size
    assert torch.equal(te.tensors[0], load_procedural(n_train=10, n_test=20, size=32, seed=3)[1].tensors[0])


def test_procedural_images_vary_within_a_class():
    """Random colour, pose and background: no class is a fixed template (learnability itself is measured on
    a GPU, see the README: a small CNN reaches well below 100% in a few epochs)."""
    x, y = make_procedural(300, size=32, seed=0).tensors
    for k in range(10):
        xk = x[y == k]
        assert xk.flatten(1).std(0).mean() > 0.15
        assert (xk[:, None] - xk[None]).abs().flatten(2).mean(2).add(torch.eye(len(xk))).min() > 0.02


def test_load_dataset_procedural_options():
    cfg = VisionConfig()
    cfg.data.name, cfg.data.image_size = "procedural", 16
    cfg.data.options = {"n_train": 60, "n_test": 30}
    train, test, n_cls = load_dataset(cfg)
    assert n_cls == 10 and train.tensors[0].shape == (60, 3, 16, 16) and len(test) == 30
    cfg.data.options = {"n_trian": 60}
    with pytest.raises(NFTInputError, match="n_trian"):
        load_dataset(cfg)
    cfg.data.options = {"n_train": 0}
    with pytest.raises(NFTInputError, match="procedural"):
        load_dataset(cfg)
    # an empty data.options leaves the cache key as it was before the field existed
    assert "options" not in VisionConfig().attack_key()["data"]
    assert cfg.attack_key()["data"]["options"] == {"n_train": 0}
