"""Determinism (issue 10): the same seed gives bitwise-identical purified weights on CPU, run twice, for
every task's CLI (quick settings; the backdoored model is trained once and cached, then purified twice)."""

import sys

import pytest
import torch
from safetensors.torch import load_file

from nft_core.matrix import TASK_DISTS, installed_task_clis


@pytest.mark.parametrize("task", [d.removeprefix("nft-") for d in TASK_DISTS])
def test_same_seed_bitwise_identical_purified_weights(task, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    main = installed_task_clis()[task]
    opts = list(sys.modules[main.__module__].QUICK_OPTIONS)
    runs = []
    for name in ("a", "b", "seed1"):
        seed = "1" if name == "seed1" else "0"
        args = ["purify", "--quiet", "--device", "cpu", "--seed", seed, "--out", str(tmp_path / name)]
        assert main([*args, "--cfg-options", *opts]) == 0, capsys.readouterr().err
        runs.append(load_file(tmp_path / name / "purified.safetensors"))
    a, b, other = runs
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{task}: {k} differs between two runs with the same seed"
    assert any(not torch.equal(a[k], other[k]) for k in a if k in other)  # the seed is not ignored
