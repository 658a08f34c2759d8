"""NFT under torchrun with 2 CPU processes (gloo): the same masks on both ranks, equal to one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .ddp_worker import purify

HERE = Path(__file__).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, tmp_path, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_port()), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_process_nft_equals_one_process(tmp_path):
    proc = _torchrun([str(HERE / "ddp_worker.py"), str(tmp_path)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["size"] == 2
    for k in r0["masks"]:  # DDP keeps the ranks in lock-step: bitwise the same masks
        assert torch.equal(r0["masks"][k], r1["masks"][k]), k
    single = purify()  # this process has no process group: the one-process reference
    moved = 0.0
    for k, m in single.masks.items():
        torch.testing.assert_close(r0["masks"][k], m, atol=1e-5, rtol=1e-4)
        moved = max(moved, float((m - 1).abs().max()))
    assert moved > 0.05  # the masks did move: equality is not vacuous
    assert r0["loss"] == pytest.approx([h["loss"] for h in single.history], rel=1e-4, abs=1e-6)


def test_nft_vision_purify_cli_under_torchrun(tmp_path):
    """The real CLI under torchrun: rank 0 writes one run directory, equal to a one-process run."""
    opts = ["train.epochs=1", "model.width=4", "data.image_size=16", "defense.options={'epochs': 3}",
            f"cache_dir='{tmp_path / 'cache'}'"]
    proc = _torchrun(["-m", "nft_vision.cli", "purify", "--quiet", "--device", "cpu", "--out",
                      str(tmp_path / "ddp"), "--cfg-options", *opts], tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("->") == 1  # one table, printed by rank 0 only
    one = subprocess.run([sys.executable, "-m", "nft_vision.cli", "purify", "--quiet", "--device", "cpu", "--out",
                          str(tmp_path / "one"), "--cfg-options", *opts], cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=400)
    assert one.returncode == 0, one.stderr[-3000:]
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "ddp" / "masks.safetensors"), load_file(tmp_path / "one" / "masks.safetensors")
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=1e-3)  # float sums over 2 ranks
    rep = json.loads((tmp_path / "ddp" / "report.json").read_text())
    assert rep["info"]["world_size"] == 2
    assert not list(tmp_path.glob("ddp.*")) and not list(tmp_path.glob(".ddp*"))
