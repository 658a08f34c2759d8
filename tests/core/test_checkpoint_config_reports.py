import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

from nft_core.checkpoint import atomic_write, load_checkpoint_into, load_state_dict, save_model
from nft_core.config import dump_config, load_config, parse_cfg_options, to_dataclass
from nft_core.errors import CheckpointError, ConfigError, NFTInputError
from nft_core.nft import NFTConfig
from nft_core.plots import history_plot, mask_heatmap
from nft_core.runs import run_directory, write_report


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_safetensors_roundtrip(tmp_path):
    a, b = _net(), _net()
    save_model(a, tmp_path / "m.safetensors")
    load_checkpoint_into(b, tmp_path / "m.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not list(tmp_path.glob(".*tmp"))  # temp file renamed away


def test_weights_only_torch_file_and_wrappers(tmp_path):
    a = _net()
    torch.save({"state_dict": {"module." + k: v for k, v in a.state_dict().items()}}, tmp_path / "m.pt")
    b = load_checkpoint_into(_net(), tmp_path / "m.pt")
    assert torch.equal(b[0].weight, a[0].weight)


def test_missing_empty_corrupt_truncated(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_state_dict(tmp_path / "empty.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="junk.safetensors: corrupt"):
        load_state_dict(tmp_path / "junk.safetensors")
    save_model(_net(), tmp_path / "t.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_state_dict(tmp_path / "t.safetensors")
    torch.save(_net().state_dict(), tmp_path / "t.pt")
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="t.pt: corrupt"):
        load_state_dict(tmp_path / "t.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['NFT_EVIL_MARKER']}",))


def test_malicious_pickle_refused_and_nothing_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("NFT_EVIL_MARKER", str(marker))
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    with pytest.raises(CheckpointError, match="refused"):
        load_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()


def test_pickle_with_objects_loads_only_when_trusted(tmp_path):
    torch.save(_net(), tmp_path / "whole.pt")  # a pickled nn.Module
    with pytest.raises(CheckpointError, match="refused"):
        load_state_dict(tmp_path / "whole.pt")
    state = load_state_dict(tmp_path / "whole.pt", trust=True)
    assert "0.weight" in state


def test_key_and_shape_mismatch_messages(tmp_path):
    save_model(_net(), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint_into(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Linear(2, 2)), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_checkpoint_into(nn.Sequential(nn.Linear(3, 4)), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatch for 2.weight: checkpoint \(2, 4\), model \(5, 4\)"):
        load_checkpoint_into(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5)), tmp_path / "m.safetensors")
    torch.save({"epoch": 3}, tmp_path / "nostate.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_state_dict(tmp_path / "nostate.pt")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def fail(p):
        p.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.bin", fail)
    assert list(tmp_path.iterdir()) == []


def test_config_file_base_overrides_and_validation(tmp_path):
    (tmp_path / "base.py").write_text("epochs = 10\nlr = 0.05\nschedule = dict(family='exponential', alpha=0.8, beta=0.5)\n")
    (tmp_path / "cfg.py").write_text("_base_ = ['base.py']\nepochs = 20\n")
    data = load_config(tmp_path / "cfg.py", ["lr=0.1", "schedule.alpha=0.7"])
    cfg = to_dataclass(NFTConfig, data, data["_source_"])
    assert (cfg.epochs, cfg.lr, cfg.schedule.alpha) == (20, 0.1, 0.7)
    (tmp_path / "bad.py").write_text("epoch = 3\n")
    data = load_config(tmp_path / "bad.py")
    with pytest.raises(ConfigError, match=r"bad.py: unknown key 'epoch' \(did you mean"):
        to_dataclass(NFTConfig, data, data["_source_"])
    data = load_config(None, ["epochs='many'"], base={})
    with pytest.raises(ConfigError, match="key 'epochs' expects int, got str"):
        to_dataclass(NFTConfig, data, data["_source_"])
    data = load_config(None, ["schedule.gamma=1"], base={"schedule": {}})
    with pytest.raises(ConfigError, match="unknown key 'schedule.gamma'"):
        to_dataclass(NFTConfig, data, data["_source_"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.py")
    (tmp_path / "broken.py").write_text("epochs = (\n")
    with pytest.raises(ConfigError, match="broken.py: cannot read config"):
        load_config(tmp_path / "broken.py")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_cfg_options(["novalue"])
    dump_config(cfg, tmp_path / "resolved.py")
    again = to_dataclass(NFTConfig, load_config(tmp_path / "resolved.py"))
    assert again.epochs == 20 and again.schedule.alpha == 0.7


def test_run_directory_atomic(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError):
        with run_directory(out) as d:
            (d / "a.txt").write_text("x")
            raise ValueError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with run_directory(out) as d:
        write_report(d, {"task": "t", "defense": "nft", "before": {"acc": 90.0, "asr": 99.0},
                         "after": {"acc": 89.0, "asr": 1.0}, "wall_time": 1.5})
    rep = json.loads((out / "report.json").read_text())
    assert rep["after"]["asr"] == 1.0
    assert "| asr | 99.00 | 1.00 | -98.00 |" in (out / "report.md").read_text()


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")  # even root cannot create a directory below a regular file
    with pytest.raises(NFTInputError, match="not writable"):
        with run_directory(blocker / "sub" / "run"):
            pass


def test_plots(tmp_path):
    p = mask_heatmap({"a": torch.rand(10), "b": torch.rand(700)}, tmp_path / "h.png")
    assert p.stat().st_size > 1000
    assert history_plot([{"epoch": 1, "asr": 50}, {"epoch": 2, "asr": 5}], ["asr", "acc"], tmp_path / "c.png")
    assert history_plot([{"epoch": 1}], ["asr"], tmp_path / "d.png") is None


def test_nft_cli_list():
    out = subprocess.run([sys.executable, "-m", "nft_core.cli", "list"], capture_output=True, text=True, check=True)
    assert "nft" in out.stdout and "MixUp" in out.stdout and "SurrogateTrigger" in out.stdout and "nft-vision" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "nft_core.cli", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2
