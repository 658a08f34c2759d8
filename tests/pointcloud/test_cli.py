"""nft-pointcloud end to end at tiny scale (in-process; the same code path as the console script)."""

import json

import h5py
import numpy as np
import pytest

from nft_pointcloud.cli import main

TINY = ["data.shapes_train=5", "data.shapes_test=2", "data.num_points=64", "model.width=4",
        "model.kwargs={'npoints': [16, 8], 'nsample': 8}", "train.epochs=2", "defense.options.epochs=2"]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_default_purify_writes_run_directory_and_caches(cache, capsys):
    out = cache / "run"
    assert main(["purify", "--quiet", "--out", str(out), "--cfg-options", *TINY]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"purified.safetensors", "masks.safetensors", "report.json", "report.md", "config.resolved.py"} <= files
    rep = json.loads((out / "report.json").read_text())
    assert {"acc", "asr", "lcr"} <= set(rep["before"]) and rep["recipe"] == "paper with epochs=2"
    assert rep["task"] == "pointcloud" and rep["attack"] == "pointba_i"
    assert "| asr |" in capsys.readouterr().out
    assert list((cache / "cache" / "pointcloud").glob("shapes-*/sphere/train/*.off"))
    assert list((cache / "cache" / "pointcloud" / "clouds").glob("*.npz"))
    assert main(["purify", "--quiet", "--out", str(cache / "run2"), "--cfg-options", *TINY,
                 "defense.recipe=nft+"]) == 0
    rep2 = json.loads((cache / "run2" / "report.json").read_text())
    assert rep2["before"] == rep["before"] and rep2["recipe"] == "nft+ with epochs=2"


def test_attack_then_purify_and_evaluate_own_model(cache, capsys):
    atk = cache / "atk"
    assert main(["attack", "--quiet", "--out", str(atk), "--cfg-options", *TINY, "attack.name=pointba_o"]) == 0
    assert {"model.safetensors", "attack.json", "val.npz", "test.npz", "poisoned_test.npz"} <= {
        p.name for p in atk.iterdir()}
    own = ["--model", "pointnet2_ssg", "--checkpoint", str(atk / "model.safetensors"), "--val", str(atk / "val.npz"),
           "--test", str(atk / "test.npz"), "--poisoned", str(atk / "poisoned_test.npz"), "--target", "0"]
    opts = ["model.width=4", "model.kwargs={'npoints': [16, 8], 'nsample': 8}", "defense.options.epochs=1"]
    assert main(["purify", "--quiet", *own, "--out", str(cache / "mine"), "--cfg-options", *opts]) == 0
    assert json.loads((cache / "mine" / "report.json").read_text())["attack"] == "user"
    capsys.readouterr()
    assert main(["evaluate", "--quiet", *own, "--cfg-options", *opts]) == 0
    assert {"acc", "asr", "lcr"} <= set(json.loads(capsys.readouterr().out))


def _mesh_root(root, bad_text):
    for cls in ("a", "b"):
        for split in ("train", "test"):
            d = root / cls / split
            d.mkdir(parents=True)
            (d / "m1.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    (root / "b" / "train" / "bad.off").write_text(bad_text)
    return root / "b" / "train" / "bad.off"


@pytest.mark.parametrize("case", ["no_faces", "nan", "h5_label", "unknown_attack", "unknown_key"])
def test_bad_input_exit_2_one_line_no_run_dir(cache, capsys, case):
    opts = list(TINY)
    if case == "no_faces":
        bad = _mesh_root(cache / "mn", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
        opts += ["data.name=modelnet", f"data.root={cache / 'mn'}"]
        expect = [str(bad), "no faces"]
    elif case == "nan":
        bad = _mesh_root(cache / "mn", "OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n")
        opts += ["data.name=modelnet", f"data.root={cache / 'mn'}"]
        expect = [str(bad), "NaN"]
    elif case == "h5_label":
        (cache / "h5").mkdir()
        with h5py.File(cache / "h5" / "ply_data_train0.h5", "w") as h:
            h["data"] = np.zeros((4, 64, 3), np.float32)
        opts += ["data.name=h5", f"data.root={cache / 'h5'}"]
        expect = ["ply_data_train0.h5", "label"]
    elif case == "unknown_attack":
        opts.append("attack.name=badnets")
        expect = ["unknown attack"]
    else:
        opts.append("defense.optoins={}")
        expect = ["unknown key 'defense.optoins'"]
    out = cache / "run"
    code = main(["purify", "--quiet", "--out", str(out), "--cfg-options", *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and all(e in err[0] for e in expect), err
    assert not out.exists() and not list(cache.glob(".run*"))


def test_bundled_configs_load():
    from nft_pointcloud.cli import PointCloudCLI

    cli = PointCloudCLI()
    for name in ("modelnet40", "modelnet10", "shapes"):
        cfg = cli.load(cli.parser().parse_args(["purify", "--cfg", name]))
        assert cfg.model.spec == "pointnet2_ssg"
    assert cfg.data.name == "shapes"
    assert cli.load(cli.parser().parse_args(["purify", "--cfg", "modelnet10"])).data.root == "data/ModelNet10"


@pytest.mark.slow
def test_embedded_default_end_to_end(cache, capsys):
    """The full embedded default (minutes on 2 CPU cores): PointBA-I backdoor, then NFT+."""
    out = cache / "default"
    assert main(["purify", "--quiet", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["before"]["asr"] >= 80 and rep["after"]["asr"] <= rep["before"]["asr"] - 40
    assert rep["before"]["acc"] - rep["after"]["acc"] <= 5


def test_recipes_resolve():
    from nft_pointcloud.config import DefenseConfig

    plus = DefenseConfig(recipe="nft+").resolved_options()
    assert plus["guard"] == 1.0 and plus["shrink"] == 0.005 and plus["lr"] == 0.2
    assert DefenseConfig().resolved_options() == {}  # the default recipe here is the paper's
    assert DefenseConfig(options={"epochs": 3}).resolved_options()["epochs"] == 3
    assert DefenseConfig(name="ft", options={"epochs": 1}).resolved_options() == {"epochs": 1}


def test_bench_grid(cache, capsys):
    out = cache / "bench"
    assert main(["bench", "--quiet", "--out", str(out), "--cfg-options", *TINY, "bench.attacks=['pointba_o']",
                 "bench.defenses=['nft']"]) == 0
    assert (out / "results.csv").exists() and "pointba_o" in capsys.readouterr().out
