"""Each task's embedded default purifies its own model within the task's published bar (``make test-slow``).

One ``purify`` per task through its CLI, exactly as a user runs it with no config (the backdoored model
comes from the cache when an earlier run trained it). The bars are the project's targets per task:
ASR after at most ``asr`` and the clean metric at most ``drop`` points under the model's before.
"""

import json

import pytest

from nft_core.matrix import installed_task_clis

#: task -> (clean metric, ASR after at most, clean drop at most)
BARS = {"vision": ("acc", 5.0, 3.0), "detection": ("map", 20.0, 4.0), "video": ("acc", 15.0, 5.0),
        "pointcloud": ("acc", 15.0, 5.0), "nlg": ("bleu", 10.0, 3.0)}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(BARS))
def test_embedded_default_meets_its_bar(task, tmp_path, capsys):
    metric, asr_bar, drop_bar = BARS[task]
    out = tmp_path / "run"
    assert installed_task_clis()[task](["purify", "--quiet", "--out", str(out)]) == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    before, after = rep["before"], rep["after"]
    summary = (f"{task}: ASR {before['asr']:.2f} -> {after['asr']:.2f}, {metric} {before[metric]:.2f} -> "
               f"{after[metric]:.2f} ({rep['recipe']}, {rep['wall_time']:.0f} s)")
    print(summary)
    assert before["asr"] >= 80, f"the attack did not implant: {summary}"
    assert after["asr"] <= asr_bar, f"ASR after above {asr_bar:g}: {summary}"
    assert before[metric] - after[metric] <= drop_bar, f"{metric} drop above {drop_bar:g}: {summary}"
