"""`bench --ray`: the grid's cells as Ray tasks on a local cluster (loopback), same rows as sequentially."""

import json
import os

from nft_vision.cli import main

TINY = ["train.epochs=2", "model.width=4", "data.image_size=16", "defense.options={'epochs': 2}",
        "bench.attacks=['badnets','blend']", "bench.defenses=['nft','ft']", "bench.defense_options={'ft': {'epochs': 1}}",
        "bench.tsne=False"]


def _opts(cache):
    return [*TINY, f"cache_dir='{cache}'"]


def test_bench_ray_matches_sequential(tmp_path):
    cache = tmp_path / "cache"
    seq, par = tmp_path / "seq", tmp_path / "ray"
    assert main(["bench", "--quiet", "--device", "cpu", "--out", str(seq), "--cfg-options", *_opts(cache)]) == 0
    assert main(["bench", "--quiet", "--device", "cpu", "--ray", "--out", str(par), "--cfg-options",
                 *_opts(cache)]) == 0
    a = json.loads((seq / "results.json").read_text())["rows"]
    b = json.loads((par / "results.json").read_text())["rows"]
    assert [(r["attack"], r["defense"]) for r in a] == [(r["attack"], r["defense"]) for r in b]
    assert len(b) == 6 and not any("error" in r for r in b), [r.get("error") for r in b]
    for r, s in zip(a, b):
        assert s["asr"] == r["asr"] and s["clean"] == r["clean"], (r, s)
    pids = {r["pid"] for r in b}
    assert os.getpid() not in pids and len(pids) >= 2  # cells ran in worker processes, not here
    assert (par / "results.md").read_text().count("| badnets |") == 1


def test_matrix_ray_runs_each_task_in_its_own_worker(tmp_path, monkeypatch, capsys):
    from nft_core.cli import main as nft_main

    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "matrix"
    assert nft_main(["matrix", "--quick", "--quiet", "--ray", "--tasks", "vision", "pointcloud", "--baseline",
                     "none", "--out", str(out)]) == 0
    rows = json.loads((out / "matrix.json").read_text())
    assert [r["task"] for r in rows] == ["vision", "pointcloud"] and not any("error" in r for r in rows), rows
    pids = {r["pid"] for r in rows}
    assert len(pids) == 2 and os.getpid() not in pids
    assert (out / "vision-nft" / "purified.safetensors").exists()
    assert "| pointcloud |" in capsys.readouterr().out
