"""nft-video end to end at tiny scale (in-process; the same code path as the console script)."""

import json

import numpy as np
import pytest
import torch

from nft_core.checkpoint import load_checkpoint_into, save_model
from nft_video.cli import main
from nft_video.models import SmallCNNLSTM

TINY = ["data.synthetic_clips=15", "data.synthetic_classes=3", "data.image_size=16", "train.epochs=2",
        "model.kwargs={'width': 4, 'hidden': 8}", "defense.options={'epochs': 2, 'batch_size': 16}"]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("video-cache")


@pytest.fixture()
def cache(tmp_path, shared_cache, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(shared_cache))
    return tmp_path


def test_default_purify_writes_run_directory(cache, capsys):
    out = cache / "run"
    assert main(["purify", "--quiet", "--out", str(out), "--cfg-options", *TINY]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"purified.safetensors", "masks.safetensors", "report.json", "report.md", "config.resolved.py"} <= files
    rep = json.loads((out / "report.json").read_text())
    assert {"acc", "asr", "lcr"} <= set(rep["before"])
    # the default recipe: the paper's NFT + every masked bias + averaging, the per-class surrogate
    assert rep["recipe"] == "surrogate with batch_size=16, epochs=2", rep["recipe"]
    assert rep["info"]["config"]["tune_bias"] is True and rep["info"]["config"]["average"] == 0.3
    assert "search=per_class" in rep["info"]["augmentation"] and "VideoMixUp" in rep["info"]["augmentation"]
    stats = rep["info"]["augmentation_stats"]
    assert set(stats["mask_l1_per_class"]) == {"0", "1", "2"} and stats["target_class"] in (0, 1, 2), stats
    assert rep["task"] == "video" and any("lstm" in s for s in rep["info"]["mask_sites"])
    assert "| asr |" in capsys.readouterr().out
    assert main(["purify", "--quiet", "--out", str(cache / "run2"), "--cfg-options", *TINY]) == 0  # cached model
    assert json.loads((cache / "run2" / "report.json").read_text())["before"] == rep["before"]


def test_default_recipe_with_temporal_jitter(cache):
    """``augmentation.jitter`` under the default (surrogate) recipe: the jitter's ``Compose`` hands the
    trigger's ``bind`` through, so the search runs and its stats are reported."""
    assert main(["purify", "--quiet", "--out", str(cache / "jitter"), "--cfg-options", *TINY,
                 "augmentation.jitter=1"]) == 0
    rep = json.loads((cache / "jitter" / "report.json").read_text())
    assert "TemporalJitter" in rep["info"]["augmentation"] and "search=per_class" in rep["info"]["augmentation"]
    assert set(rep["info"]["augmentation_stats"]["mask_l1_per_class"]) == {"0", "1", "2"}


def test_paper_recipe_cutmix_and_bundled_configs(cache):
    assert main(["purify", "--quiet", "--out", str(cache / "paper"), "--cfg-options", *TINY,
                 "defense.recipe=paper", "augmentation.name=cutmix", "augmentation.jitter=1"]) == 0
    rep = json.loads((cache / "paper" / "report.json").read_text())
    assert rep["recipe"] == "paper with batch_size=16, epochs=2, augmentation.name=cutmix, augmentation.jitter=1" and "VideoCutMix" in rep["info"]["augmentation"]
    # the bundled configs load (their data roots do not exist here: a one-line error, exit 2)
    for name in ("ucf101", "hmdb51"):
        assert main(["purify", "--quiet", "--cfg", name, "--out", str(cache / name)]) == 2
        assert not (cache / name).exists()


def _npz(path, x, y):
    np.savez(path, x=(x.permute(0, 1, 3, 4, 2).numpy() * 255).astype(np.uint8), y=y.numpy())


def _user_files(cache, n=12, classes=3, width=4):
    g = torch.Generator().manual_seed(0)
    save_model(SmallCNNLSTM(num_classes=classes, width=width, hidden=8), cache / "m.safetensors")
    x = torch.rand(n, 4, 3, 16, 16, generator=g)
    y = torch.arange(n) % classes
    for name in ("val", "test", "poisoned"):
        _npz(cache / f"{name}.npz", x, y)
    return x, y


USER_OPTS = ["model.kwargs={'width': 4, 'hidden': 8}", "defense.options={'epochs': 2, 'batch_size': 8}"]


def test_purify_and_evaluate_a_third_party_model(cache, capsys):
    _user_files(cache)
    out = cache / "mine"
    args = ["--model", "nft_video.models:SmallCNNLSTM", "--checkpoint", str(cache / "m.safetensors"),
            "--test", str(cache / "test.npz"), "--poisoned", str(cache / "poisoned.npz"), "--target", "0"]
    assert main(["purify", "--quiet", *args, "--val", str(cache / "val.npz"), "--out", str(out),
                 "--cfg-options", *USER_OPTS]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert {"acc", "asr"} <= set(rep["after"])
    load_checkpoint_into(SmallCNNLSTM(num_classes=3, width=4, hidden=8), out / "purified.safetensors")
    capsys.readouterr()
    args[args.index("--checkpoint") + 1] = str(out / "purified.safetensors")
    assert main(["evaluate", "--quiet", *args, "--cfg-options", *USER_OPTS]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["acc"] == pytest.approx(rep["after"]["acc"]) and m["asr"] == pytest.approx(rep["after"]["asr"])


@pytest.mark.parametrize("case", ["mismatch", "missing_class", "target", "unknown_key", "bad_type", "bad_npz",
                                  "pickle", "no_root", "unknown_attack"])
def test_bad_input_exit_2_one_line_no_run_dir(cache, capsys, case):
    x, y = _user_files(cache)
    args = ["--model", "cnn_lstm_small", "--checkpoint", str(cache / "m.safetensors"), "--val",
            str(cache / "val.npz"), "--test", str(cache / "test.npz"), "--target", "0"]
    opts = list(USER_OPTS)
    if case == "mismatch":
        save_model(SmallCNNLSTM(num_classes=3, width=8, hidden=8), cache / "m.safetensors")
        expect = "shape mismatch"
    elif case == "missing_class":
        _npz(cache / "val.npz", x[y != 2], y[y != 2])
        opts.append("data.num_classes=3")
        expect = "no clip of class 2"
    elif case == "target":
        args[-1] = "7"
        args += ["--poisoned", str(cache / "test.npz")]
        expect = "out of range"
    elif case == "unknown_key":
        opts.append("data.clip_lenght=4")
        expect = "unknown key 'data.clip_lenght'"
    elif case == "bad_type":
        opts.append("train.epochs='ten'")
        expect = "expects int"
    elif case == "bad_npz":
        (cache / "val.npz").write_bytes(b"junk")
        expect = "val.npz"
    elif case == "pickle":
        torch.save(SmallCNNLSTM(num_classes=3, width=4, hidden=8), cache / "whole.pt")
        args[args.index("--checkpoint") + 1] = str(cache / "whole.pt")
        expect = "refused"
    elif case == "no_root":
        args = []
        opts = ["data.name=ucf101", f"data.root={cache / 'nowhere'}"]
        expect = "not found"
    else:
        args = []
        opts = [*TINY, "attack.name=trojan"]
        expect = "unknown attack"
    out = cache / "run"
    code = main(["purify", "--quiet", *args, "--out", str(out), "--cfg-options", *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists() and not list(cache.glob(".run*"))


def test_bad_clip_policy_error_exits_2(cache, capsys, tmp_path):
    from tests.video.test_data import _ucf

    root = _ucf(tmp_path / "UCF", corrupt=True)
    opts = ["data.name=ucf101", f"data.root={root}", "data.frame_step=2", "data.clip_len=4", "data.image_size=8",
            "data.on_bad_clip=error", "train.epochs=1", "model.kwargs={'width': 4, 'hidden': 8}"]
    assert main(["purify", "--quiet", "--out", str(cache / "r"), "--cfg-options", *opts]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot decode" in err[0] and not (cache / "r").exists()


def test_bad_clip_policy_skip_is_counted_and_reported(cache, capsys, tmp_path):
    from tests.video.test_data import _ucf

    root = _ucf(tmp_path / "UCF", corrupt=True, short=True)
    opts = ["data.name=ucf101", f"data.root={root}", "data.frame_step=2", "data.clip_len=4", "data.image_size=8",
            "train.epochs=1", "model.kwargs={'width': 4, 'hidden': 8}", "defense.options={'epochs': 1}"]
    assert main(["purify", "--quiet", "--out", str(cache / "r"), "--cfg-options", *opts]) == 0
    assert "skipped videos {'train': 2, 'test': 0}" in capsys.readouterr().out
    rep = json.loads((cache / "r" / "report.json").read_text())
    reasons = [r for _, r in rep["skipped_videos"]["train"]]
    assert len(reasons) == 2 and any("cannot decode" in r for r in reasons) and any("fewer" in r for r in reasons)


def test_attack_verb_and_bench(cache):
    out = cache / "atk"
    assert main(["attack", "--quiet", "--out", str(out), "--cfg-options", *TINY, "attack.name=blend"]) == 0
    assert {"model.safetensors", "attack.json", "val.npz", "test.npz", "poisoned_test.npz"} <= {
        p.name for p in out.iterdir()}
    assert "asr" in json.loads((out / "attack.json").read_text())["metrics"]
    bench = cache / "bench"
    assert main(["bench", "--quiet", "--out", str(bench), "--cfg-options", *TINY,
                 "bench.attacks=['patch','nonexistent']", "bench.defenses=['nft']"]) == 0
    rows = json.loads((bench / "results.json").read_text())["rows"]
    assert any(r["attack"] == "nonexistent" and "error" in r for r in rows)
    assert any(r["attack"] == "patch" and r["defense"] == "nft" and "asr" in r for r in rows)


def test_bundled_default_config_matches_the_builtin_defaults():
    from dataclasses import asdict

    from nft_core.config import load_config, to_dataclass
    from nft_video.cli import VideoCLI
    from nft_video.config import VideoConfig

    cli = VideoCLI()
    cfg = to_dataclass(VideoConfig, load_config(cli.resolve_config_path("default")))
    assert asdict(cfg) == asdict(VideoConfig())
    ucf = to_dataclass(VideoConfig, load_config(cli.resolve_config_path("hmdb51")))
    assert ucf.data.name == "hmdb51" and ucf.data.val_ratio == 0.05 and ucf.model.spec == "cnn_lstm"


def test_purify_a_pytorchvideo_x3d_end_to_end(cache):
    """``model.spec=pytorchvideo:x3d``: trained, backdoored, purified (NFT+: the default's per-class search
    adds a minute here and nothing model-specific), and the purified checkpoint loads back into the same
    spec's model."""
    pytest.importorskip("pytorchvideo")  # a dev dependency: never skipped in CI
    from nft_video.models import create_model

    kw = {"depth_factor": 1.0, "width_factor": 1.0, "bottleneck_factor": 1.5, "head_dim_out": 32}
    out = cache / "x3d"
    opts = [o for o in TINY if not o.startswith("model.kwargs")] + ["model.spec=pytorchvideo:x3d", f"model.kwargs={kw}",
                                                                     "defense.recipe=nft+"]
    assert main(["purify", "--quiet", "--out", str(out), "--cfg-options", *opts]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert any(s.startswith("net.blocks") for s in rep["info"]["mask_sites"]) and "asr" in rep["after"]
    model = create_model("pytorchvideo:x3d", 3, **kw)
    load_checkpoint_into(model, out / "purified.safetensors")
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 4, 3, 16, 16)).shape == (1, 3)
