"""nft-detect end to end at tiny scale (in-process; the same code path as the console script)."""

import json

import pytest

from nft_core.checkpoint import save_model
from nft_detection.cli import main
from nft_detection.models import MultiLabelCNN

from .helpers import tiny_voc

SCENES = "data.scenes={'n_train':48,'n_val':16,'n_test':40,'trigger_rate':0.5}"
TINY = ["train.epochs=2", "model.kwargs={'width': 4, 'hidden': 8}", "defense.nft_epochs=2",
        "data.image_size=24", SCENES]


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
    assert {"map", "asr"} <= set(rep["before"]) and rep["recipe"] == "nft+ with epochs=2"
    assert rep["task"] == "multilabel" and rep["attack"] == "clean_image-appear"
    assert "| asr |" in capsys.readouterr().out
    assert main(["purify", "--quiet", "--out", str(cache / "run2"), "--cfg-options", *TINY,
                 "defense.recipe=paper"]) == 0
    rep2 = json.loads((cache / "run2" / "report.json").read_text())
    assert rep2["before"] == rep["before"] and rep2["recipe"] == "paper with epochs=2"  # cached model
    for name, opts in (("ft", "{'epochs': 1}"), ("anp", "{'iterations': 4}")):  # baselines get no NFT setting
        assert main(["purify", "--quiet", "--defense", name, "--out", str(cache / name), "--cfg-options", *TINY,
                     f"defense.options={opts}"]) == 0
        assert json.loads((cache / name / "report.json").read_text())["defense"] == name
    assert main(["purify", "--quiet", "--out", str(cache / "mosaic"), "--cfg-options", *TINY,
                 "augmentation.name=mosaic"]) == 0
    assert "MultiLabelMosaic" in json.loads((cache / "mosaic" / "report.json").read_text())["info"]["augmentation"]


def test_attack_evaluate_and_bundled_config_on_a_voc_fixture(cache, capsys):
    tiny_voc(cache / "voc", "VOC2007", n=12, size=24, triple=True)
    opts = [f"data.root={cache / 'voc'}", "data.image_size=24", "model.spec=smallcnn",
            "model.kwargs={'width': 4, 'hidden': 8}", "train.epochs=1", "attack.trigger=['cat','dog']",
            "attack.target=person", "attack.mode=disappear", "data.val_ratio=0.25"]
    out = cache / "atk"
    assert main(["attack", "--quiet", "--cfg", "voc07", "--out", str(out), "--cfg-options", *opts]) == 0
    meta = json.loads((out / "attack.json").read_text())
    assert meta["attack"] == "clean_image-disappear" and "asr" in meta["metrics"]
    capsys.readouterr()
    assert main(["evaluate", "--quiet", "--cfg", "voc07", "--checkpoint", str(out / "model.safetensors"),
                 "--cfg-options", *opts]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m == pytest.approx(meta["metrics"])
    assert main(["purify", "--quiet", "--cfg", "voc07", "--checkpoint", str(out / "model.safetensors"),
                 "--out", str(cache / "pur"), "--cfg-options", *opts, "defense.options={'epochs': 1}"]) == 0
    assert (cache / "pur" / "purified.safetensors").exists()


@pytest.mark.parametrize("name", ["voc12", "voc0712", "coco"])
def test_bundled_configs_resolve(cache, capsys, name):
    # a missing data root is reported in one line (exit 2): the config itself loads and validates
    code = main(["evaluate", "--quiet", "--cfg", name, "--cfg-options", f"data.root={cache / 'absent'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "absent" in err[0], err


@pytest.mark.parametrize("case", ["unknown_key", "bad_type", "category", "malformed_xml", "mismatch", "pickle",
                                  "config_name"])
def test_bad_input_exit_2_one_line_no_run_dir(cache, capsys, case):
    tiny_voc(cache / "voc", "VOC2007", n=12, size=24)
    args = ["--cfg", "voc07"]
    opts = [f"data.root={cache / 'voc'}", "data.image_size=24", "model.spec=smallcnn",
            "model.kwargs={'width': 4, 'hidden': 8}", "attack.trigger=['cat','dog']", "attack.target=person"]
    ckpt = cache / "m.safetensors"
    save_model(MultiLabelCNN(20, width=4, hidden=8), ckpt)
    args += ["--checkpoint", str(ckpt)]
    if case == "unknown_key":
        opts.append("defense.optoins={}")
        expect = "unknown key 'defense.optoins'"
    elif case == "bad_type":
        opts.append("train.epochs='ten'")
        expect = "expects int"
    elif case == "category":
        opts.append("attack.target=unicorn")
        expect = "'unicorn'"
    elif case == "malformed_xml":
        (cache / "voc" / "VOCdevkit" / "VOC2007" / "Annotations" / "000003.xml").write_text("<annotation")
        expect = "000003.xml"
    elif case == "mismatch":
        save_model(MultiLabelCNN(20, width=8, hidden=8), ckpt)
        expect = "shape mismatch"
    elif case == "pickle":
        import torch

        torch.save(MultiLabelCNN(20, width=4, hidden=8), cache / "whole.pt")
        args[-1] = str(cache / "whole.pt")
        expect = "refused"
    else:
        args[1] = "voc2099"
        expect = "config not found"
    out = cache / "run"
    code = main(["purify", "--quiet", *args, "--out", str(out), "--cfg-options", *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists() and not list(cache.glob(".run*"))


def test_bench_grid(cache):
    out = cache / "bench"
    code = main(["bench", "--quiet", "--out", str(out), "--cfg-options", *TINY,
                 "bench.attacks=['appear','bogus']", "bench.defenses=['nft']"])
    assert code == 0
    md = (out / "results.md").read_text()
    assert "average drop" in md and "| appear |" in md and "bogus × none" in md


@pytest.mark.slow
def test_embedded_default_meets_the_targets(cache):
    """The full embedded default (800 generated training scenes, 30 epochs, NFT+ 60 epochs): a few minutes."""
    import torch

    torch.set_num_threads(1)
    assert main(["purify", "--quiet", "--out", str(cache / "full")]) == 0
    rep = json.loads((cache / "full" / "report.json").read_text())
    assert rep["before"]["asr"] >= 80 and rep["after"]["asr"] <= 20
    assert rep["before"]["map"] - rep["after"]["map"] <= 4
