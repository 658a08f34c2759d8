"""The cross-task matrix: every installed task CLI end to end at tiny scale, through the same pipeline."""

import json

import pytest

from nft_core.cli import main
from nft_core.matrix import TASK_DISTS, installed_task_clis

TASKS = [d.removeprefix("nft-") for d in TASK_DISTS]


def test_every_task_package_is_installed_with_its_cli():
    assert sorted(installed_task_clis()) == sorted(TASKS)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_quick_matrix_runs_every_task_with_nft_and_a_baseline(cache, capsys):
    out = cache / "matrix"
    assert main(["matrix", "--quick", "--quiet", "--out", str(out)]) == 0
    rows = json.loads((out / "matrix.json").read_text())
    assert {(r["task"], r["defense"]) for r in rows} == {(t, d) for t in TASKS for d in ("nft", "ftsam")}
    for r in rows:
        assert "error" not in r, r
        run = out / f"{r['task']}-{r['defense']}"
        rep = json.loads((run / "report.json").read_text())
        # every number of the row is the run's own report's, none missing
        assert (r["clean_before"], r["clean_after"]) == (rep["before"][r["metric"]], rep["after"][r["metric"]]), r
        assert (r["asr_before"], r["asr_after"]) == (rep["before"]["asr"], rep["after"]["asr"]), r
        assert all(isinstance(r[k], float) for k in ("clean_before", "clean_after", "asr_before", "asr_after")), r
        assert (run / "purified.safetensors").exists()
    table = capsys.readouterr().out
    assert table.count("\n| ") >= len(rows) and "ASR before" in table


def test_a_missing_task_is_reported_and_the_rest_still_runs(cache, capsys):
    code = main(["matrix", "--quick", "--quiet", "--tasks", "nosuch", "vision", "--baseline", "none"])
    assert code == 1
    out = capsys.readouterr().out
    assert "nft-nosuch is not installed" in out and "| vision | badnets | nft" in out


def test_the_matrix_table_carries_a_reports_notes():
    """A task whose NFT run gave back the original model (its report's ``notes``) is named under the table."""
    from nft_core.matrix import matrix_markdown

    row = {"task": "vision", "attack": "badnets", "defense": "nft", "recipe": None, "metric": "acc",
           "clean_before": 94.6, "clean_after": 94.6, "asr_before": 100.0, "asr_after": 100.0, "defense_s": 20.0,
           "wall": 25.0}
    assert "Notes:" not in matrix_markdown([row])
    md = matrix_markdown([{**row, "notes": ["NFT's safety guard returned the ORIGINAL model unchanged"]}])
    assert md.endswith("- vision × nft: NFT's safety guard returned the ORIGINAL model unchanged")
