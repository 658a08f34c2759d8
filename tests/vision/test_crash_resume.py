"""Crash safety: kill -9 during `nft-vision purify`, rerun with --resume, get the uninterrupted masks."""

import os
import signal
import subprocess
import sys
import time

import torch

from nft_core.checkpoint import load_state_dict
from nft_vision.cli import main

OPTS = ["train.epochs=2", "model.width=4", "data.image_size=16",
        "defense.options={'epochs': 400, 'checkpoint_every': 5}", "defense.recipe=paper"]


def test_kill_9_then_resume_gives_bitwise_identical_masks(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    ref = tmp_path / "ref"
    assert main(["purify", "--quiet", "--out", str(ref), "--cfg-options", *OPTS]) == 0  # also fills the cache

    out = tmp_path / "run"
    state = tmp_path / "run.state" / "nft_state.pt"
    env = {**os.environ, "NFT_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nft_vision.cli", "purify", "--quiet", "--out", str(out), "--cfg-options", *OPTS]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; raise the epoch count"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.exists() and not out.exists()  # killed mid-run: a checkpoint, no run directory

    assert main(["purify", "--quiet", "--resume", "--out", str(out), "--cfg-options", *OPTS]) == 0
    a = load_state_dict(ref / "masks.safetensors")
    b = load_state_dict(out / "masks.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pa, pb = load_state_dict(ref / "purified.safetensors"), load_state_dict(out / "purified.safetensors")
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
