"""nft-vision end to end at tiny scale (in-process; the same code path as the console script)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nft_core.checkpoint import load_checkpoint_into, save_model
from nft_vision.cli import main
from nft_vision.models import SmallCNN

TINY = ["train.epochs=2", "model.width=4", "defense.options.epochs=2", "data.image_size=16"]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_default_purify_writes_run_directory(cache, capsys):
    out = cache / "run"
    assert main(["purify", "--quiet", "--out", str(out), "--cfg-options", *TINY]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"purified.safetensors", "masks.safetensors", "report.json", "report.md", "config.resolved.py"} <= files
    rep = json.loads((out / "report.json").read_text())
    assert {"acc", "asr", "lcr"} <= set(rep["before"])
    assert rep["recipe"] == "surrogate with epochs=2"
    assert rep["info"]["augmentation"].startswith("SurrogateTrigger(kind=both")  # the surrogate recipe
    assert "rounds=2" in rep["info"]["augmentation"] and len(rep["info"]["augmentation_stats"]["class_rounds"]) >= 1
    # the default runs in float32 whatever the CPU (bfloat16 is an explicit speed option), channels-last on CPU
    assert rep["info"]["config"]["amp"] is False and rep["info"]["amp"] is False
    assert rep["info"]["channels_last"] is True
    printed = capsys.readouterr().out
    assert "| asr |" in printed and "(channels-last)" in printed
    # second run hits the cache (no retraining) and gives the same model before purification
    assert main(["purify", "--quiet", "--out", str(cache / "run2"), "--cfg-options", *TINY]) == 0
    rep2 = json.loads((cache / "run2" / "report.json").read_text())
    assert rep2["before"] == rep["before"]


def test_paper_recipe_and_baseline_defense(cache):
    assert main(["purify", "--quiet", "--out", str(cache / "paper"), "--cfg-options", *TINY,
                 "defense.recipe=paper"]) == 0
    rep = json.loads((cache / "paper" / "report.json").read_text())
    assert rep["recipe"] == "paper with epochs=2" and rep["info"]["augmentation"].startswith("MixUp")  # auto: mixup
    assert main(["purify", "--quiet", "--out", str(cache / "plus"), "--cfg-options", *TINY,
                 "defense.recipe=nft+"]) == 0
    rep = json.loads((cache / "plus" / "report.json").read_text())
    assert rep["recipe"] == "nft+ with epochs=2" and rep["info"]["augmentation"].startswith("MixUp")
    assert main(["purify", "--quiet", "--defense", "ft", "--out", str(cache / "ft"), "--cfg-options",
                 "train.epochs=2", "model.width=4", "data.image_size=16", "defense.options={'epochs': 1}"]) == 0
    assert json.loads((cache / "ft" / "report.json").read_text())["defense"] == "ft"


def _npz(path, x, y):
    np.savez(path, x=(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8), y=y.numpy())


def test_purify_a_third_party_model(cache):
    """A model nobody in this project wrote: callable + checkpoint + npz data -> purified checkpoint."""
    g = torch.Generator().manual_seed(0)
    model = SmallCNN(num_classes=3, width=4)
    ckpt = cache / "suspect.safetensors"
    save_model(model, ckpt)
    x = torch.rand(30, 3, 16, 16, generator=g)
    y = torch.arange(30) % 3
    for name in ("val", "test", "poisoned"):
        _npz(cache / f"{name}.npz", x, y)
    out = cache / "mine"
    code = main(["purify", "--quiet", "--model", "nft_vision.models:SmallCNN", "--checkpoint", str(ckpt),
                 "--val", str(cache / "val.npz"), "--test", str(cache / "test.npz"), "--poisoned",
                 str(cache / "poisoned.npz"), "--target", "0", "--out", str(out), "--cfg-options",
                 "model.kwargs={'width': 4}", "data.image_size=16", "defense.options={'epochs': 2}"])
    assert code == 0
    rep = json.loads((out / "report.json").read_text())
    assert {"acc", "asr"} <= set(rep["before"]) and {"acc", "asr"} <= set(rep["after"])
    fresh = SmallCNN(num_classes=3, width=4)
    load_checkpoint_into(fresh, out / "purified.safetensors")  # loads into the same callable's model


@pytest.mark.parametrize("case", ["mismatch", "classes", "missing_class", "target", "unknown_key", "bad_type",
                                  "empty_folder", "non_image", "pickle", "recipe"])
def test_bad_input_exit_2_one_line_no_run_dir(cache, capsys, case):
    g = torch.Generator().manual_seed(0)
    ckpt = cache / "m.safetensors"
    save_model(SmallCNN(num_classes=3, width=4), ckpt)
    x = torch.rand(12, 3, 16, 16, generator=g)
    y = torch.arange(12) % 3
    _npz(cache / "val.npz", x, y)
    _npz(cache / "test.npz", x, y)
    args = ["--model", "nft_vision.models:SmallCNN", "--checkpoint", str(ckpt), "--val", str(cache / "val.npz"),
            "--test", str(cache / "test.npz"), "--target", "0"]
    opts = ["model.kwargs={'width': 4}", "data.image_size=16"]
    expect = ""
    if case == "mismatch":
        save_model(SmallCNN(num_classes=3, width=8), ckpt)
        expect = "shape mismatch"
    elif case == "classes":
        opts.append("data.num_classes=5")
        expect = "no sample of class 3"
    elif case == "missing_class":
        _npz(cache / "val.npz", x[y != 2], y[y != 2])
        _npz(cache / "test.npz", x, y)
        opts.append("data.num_classes=3")
        expect = "no sample of class 2"
    elif case == "target":
        args[-1] = "7"
        args += ["--poisoned", str(cache / "test.npz")]
        expect = "out of range"
    elif case == "unknown_key":
        opts.append("defense.optoins={}")
        expect = "unknown key 'defense.optoins'"
    elif case == "bad_type":
        opts.append("train.epochs='ten'")
        expect = "expects int"
    elif case == "empty_folder":
        (cache / "empty").mkdir()
        args[args.index("--val") + 1] = str(cache / "empty")
        expect = "empty"
    elif case == "non_image":
        d = cache / "folder" / "cat"
        d.mkdir(parents=True)
        (d / "notes.txt").write_text("not an image")
        args[args.index("--val") + 1] = str(cache / "folder")
        expect = "notes.txt"
    elif case == "pickle":
        torch.save(SmallCNN(num_classes=3, width=4), cache / "whole.pt")
        args[args.index("--checkpoint") + 1] = str(cache / "whole.pt")
        expect = "refused"
    elif case == "recipe":
        opts.append("defense.recipe=nft")
        expect = "defense.recipe must be one of 'nft+', 'paper', 'surrogate', got 'nft'"
    out = cache / "run"
    code = main(["purify", "--quiet", *args, "--out", str(out), "--cfg-options", *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists() and not list(cache.glob(".run*"))


def test_attack_and_evaluate_verbs(cache, capsys):
    out = cache / "atk"
    assert main(["attack", "--quiet", "--out", str(out), "--cfg-options", *TINY, "attack.name=blend"]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "attack.json", "val.npz", "test.npz", "poisoned_test.npz"} <= files
    meta = json.loads((out / "attack.json").read_text())
    assert meta["attack"] == "blend" and "asr" in meta["metrics"]
    capsys.readouterr()
    code = main(["evaluate", "--quiet", "--model", "smallcnn", "--checkpoint", str(out / "model.safetensors"),
                 "--val", str(out / "val.npz"), "--test", str(out / "test.npz"), "--poisoned",
                 str(out / "poisoned_test.npz"), "--target", "0", "--cfg-options", "model.width=4",
                 "data.image_size=16"])
    assert code == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(m["asr"] - meta["metrics"]["asr"]) < 2.0  # uint8 round trip of the saved sets


def test_wanet_trains_longer_by_default(cache):
    """train.epochs_scale: WaNet's backdoored model trains 3x the epochs (it is learned slowly); the other
    attacks' epochs and cache keys are as before; a bad scale is a one-line config error."""
    from nft_vision.config import VisionConfig

    out = cache / "wanet"
    assert main(["attack", "--quiet", "--out", str(out), "--cfg-options", *TINY, "attack.name=wanet"]) == 0
    assert json.loads((out / "attack.json").read_text())["train_epochs"] == 6
    assert main(["attack", "--quiet", "--out", str(cache / "wanet1"), "--cfg-options", *TINY, "attack.name=wanet",
                 "train.epochs_scale.wanet=1"]) == 0
    assert json.loads((cache / "wanet1" / "attack.json").read_text())["train_epochs"] == 2
    cfg = VisionConfig()
    assert cfg.attack_key()["train"] == {"epochs": 10, "lr": 0.05, "batch_size": 64, "augment": False}
    cfg.attack.name = "wanet"
    assert cfg.attack_key()["train"]["epochs"] == 30
    assert main(["attack", "--quiet", "--out", str(cache / "bad"), "--cfg-options", *TINY, "attack.name=wanet",
                 "train.epochs_scale.wanet=-1"]) == 2
    assert not (cache / "bad").exists()


def test_poison_rate_defaults_to_each_attacks_own(cache):
    """attack.poison_rate=None (the default): 10% of the training set for a poison-label attack, 80% of the
    target class for the clean-label SIG and CLB (the NFT paper's settings; 10% of the target class does not implant SIG). The cache key holds the rate used, so BadNets' key is what an explicit 0.1 gives."""
    from nft_vision.config import VisionConfig
    from nft_vision.workflow import build_attack

    cfg = VisionConfig()
    assert cfg.attack.poison_rate is None and build_attack(cfg, 10).poison_rate == 0.1
    explicit = VisionConfig()
    explicit.attack.poison_rate = 0.1
    assert cfg.attack_key() == explicit.attack_key()
    for name in ("sig", "clb"):
        cfg.attack.name = name
        assert build_attack(cfg, 10).poison_rate == 0.8 and cfg.attack_key()["attack"]["poison_rate"] == 0.8
    cfg.attack.name, cfg.attack.poison_rate = "sig", 0.5
    assert build_attack(cfg, 10).poison_rate == 0.5 and cfg.attack_key()["attack"]["poison_rate"] == 0.5
    out = cache / "sig"
    assert main(["attack", "--quiet", "--out", str(out), "--cfg-options", *TINY, "attack.name=sig"]) == 0
    meta = json.loads((out / "attack.json").read_text())
    # 80% of the training images of the target class are poisoned, not 10%
    from nft_core.config import load_config, to_dataclass
    from nft_vision.workflow import load_dataset

    train, _, _ = load_dataset(to_dataclass(VisionConfig, load_config(None, list(TINY))))
    n_target = int((train.tensors[1] == 0).sum())
    assert abs(meta["poisoned_samples"] - 0.8 * n_target) <= 1 and meta["key"]["attack"]["poison_rate"] == 0.8, meta


def test_bench_grid_with_failing_cell(cache):
    out = cache / "bench"
    code = main(["bench", "--quiet", "--out", str(out), "--cfg-options", *TINY,
                 "bench.attacks=['badnets','nonexistent']", "bench.defenses=['nft','ft']",
                 "bench.defense_options={'ft': {'epochs': 1}}"])
    assert code == 0
    md = (out / "results.md").read_text()
    assert "average drop" in md and "nonexistent × none" in md and "| badnets |" in md
    assert (out / "results.csv").read_text().count("\n") == 5  # header, badnets none/nft/ft, the error row


@pytest.mark.parametrize("cfg,kind", [("digits_surrogate", "patch"), ("digits_surrogate_l2", "l2"),
                                      ("digits_surrogate_both", "both")])
def test_bundled_surrogate_recipe_configs(cache, cfg, kind):
    """``--cfg digits_surrogate[_l2|_both]``: the paper's NFT + the surrogate trigger + the output bias + mask
    averaging, all recorded in report.json; the backdoored model is the embedded default's."""
    out = cache / cfg
    assert main(["purify", "--quiet", "--cfg", cfg, "--out", str(out), "--cfg-options", *TINY]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["recipe"].startswith("paper with average=0.3, epochs=2, tune_bias='last', augmentation.name=surrogate")
    assert rep["info"]["config"]["tune_bias"] == "last" and rep["info"]["averaged_steps"] > 0
    assert rep["info"]["augmentation"].startswith(f"SurrogateTrigger(kind={kind}")
    assert "fooling_all" in rep["info"]["augmentation_stats"]
    if kind == "both":  # the default's pair: two rounds of the patch search
        assert rep["info"]["augmentation_stats"]["used"] in ("patch+l2", "patch", "l2")
        assert "rounds=2" in rep["info"]["augmentation"] and "mask_l1_rounds" in rep["info"]["augmentation_stats"]
    assert main(["purify", "--quiet", "--out", str(cache / "default"), "--cfg-options", *TINY]) == 0
    assert json.loads((cache / "default" / "report.json").read_text())["before"] == rep["before"]


@pytest.mark.parametrize("recipe", ["surrogate", "paper"])
def test_the_default_does_not_depend_on_the_cpus_bfloat16(cache, monkeypatch, recipe):
    """The same seed gives bitwise-identical purified weights whether or not the CPU runs bfloat16 natively:
    no default turns bf16 on by itself (``defense.options.amp=auto`` does, as a speed option)."""
    import nft_core.nft as nft_mod

    weights = {}
    for native in (True, False):
        monkeypatch.setattr(nft_mod, "_cpu_has_native_bf16", lambda native=native: native)
        out = cache / f"{recipe}-{native}"
        guard = ["defense.options.safety_guard=None"] if recipe == "surrogate" else []  # masks, not the original
        assert main(["purify", "--quiet", "--out", str(out), "--cfg-options", *TINY, f"defense.recipe={recipe}",
                     *guard]) == 0
        rep = json.loads((out / "report.json").read_text())
        assert rep["info"]["amp"] is False, rep["info"]
        weights[native] = load_file(out / "purified.safetensors")
    assert all(torch.equal(weights[True][k], weights[False][k]) for k in weights[True])
    # the speed option does follow the CPU
    monkeypatch.setattr(nft_mod, "_cpu_has_native_bf16", lambda: True)
    assert main(["purify", "--quiet", "--out", str(cache / "amp"), "--cfg-options", *TINY,
                 "defense.recipe=paper", "defense.options.amp=auto"]) == 0
    assert json.loads((cache / "amp" / "report.json").read_text())["info"]["amp"] is True
