"""No defense reads the test or poisoned test data: every defense and every NFT recipe, through each task
CLI's ``purify`` path.

The evaluation data a CLI loads is swapped for a :class:`Tripwire` that raises on any access until the
defense's ``purify`` has returned; only then may the pipeline read it for the before/after table. The
purification must also leave the suspect model as it was (the pipeline evaluates it afterwards), and on
the user-input path two different test and poisoned sets give bitwise-identical purified weights.
"""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import nft_core.pipeline as pipeline
from nft_core.matrix import installed_task_clis
from nft_core.task_cli import TaskCLI
from tests.core.test_defenses import TINY


class LeakError(BaseException):
    """Not an ``Exception``: a defense's own ``except Exception`` cannot swallow it."""


class Tripwire:
    """Stands in for a data object: any attribute, item, length or iteration raises until :meth:`disarm`."""

    def __init__(self, wrapped, what: str):
        object.__setattr__(self, "_wrapped", wrapped)
        object.__setattr__(self, "_what", what)
        object.__setattr__(self, "armed", True)

    def disarm(self):
        object.__setattr__(self, "armed", False)

    def _open(self):
        if object.__getattribute__(self, "armed"):
            raise LeakError(f"the {object.__getattribute__(self, '_what')} was read before purify returned")
        return object.__getattribute__(self, "_wrapped")

    def __getattr__(self, name):
        return getattr(self._open(), name)

    def __setattr__(self, name, value):
        setattr(self._open(), name, value)

    @property
    def __class__(self):  # isinstance() checks are accesses too
        return type(self._open())

    def __len__(self):
        return len(self._open())

    def __getitem__(self, i):
        return self._open()[i]

    def __iter__(self):
        return iter(self._open())


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture()
def guarded(monkeypatch):
    """Every ``purify`` verb run under it has its evaluation data behind a tripwire; the returned list gets one
    record per run: whether the defense ran with the wire armed and whether it left the model untouched."""
    records = []
    real_run, real_build = TaskCLI.purify_run, pipeline.build_defense

    def purify_run(self, cfg, args, *, run, **kw):
        run = copy.copy(run)
        wire = Tripwire(run.eval_data, "test / poisoned test data")
        run.eval_data = wire
        rec = {"wire": wire, "ran": False}
        records.append(rec)

        def build_defense(*a, **k):
            defense = real_build(*a, **k)
            inner = defense.purify

            def purify(model, data, adapter):
                before = _state(model)
                rec["armed_during"] = wire.armed
                result = inner(model, data, adapter)
                wire.disarm()
                after = model.state_dict()
                rec["model_untouched"] = before.keys() == after.keys() and all(
                    torch.equal(before[k], after[k]) for k in before)
                rec["ran"] = True
                return result

            defense.purify = purify
            return defense

        monkeypatch.setattr(pipeline, "build_defense", build_defense)
        try:
            return real_run(self, cfg, args, run=run, **kw)
        finally:
            monkeypatch.setattr(pipeline, "build_defense", real_build)

    monkeypatch.setattr(TaskCLI, "purify_run", purify_run)
    return records


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("leak-cache")


BASELINES = ["ft", "fp", "anp", "awm", "ftsam", "rnp", "ibau", "nad", "mcr"]
#: Every NFT recipe a task CLI offers, and the model-aware augmentations its recipes train on.
NFT_RUNS = {
    "vision": [["defense.recipe=surrogate"], ["defense.recipe=paper"], ["defense.recipe=nft+"],
               ["defense.recipe=paper", "augmentation.name=surrogate", "augmentation.options={'kind': 'l2'}"],
               ["defense.recipe=paper", "augmentation.name=pgd", "augmentation.options={'steps': 2}"]],
    "video": [["defense.recipe=surrogate"], ["defense.recipe=paper"], ["defense.recipe=nft+"]],
    "pointcloud": [["defense.recipe=paper"], ["defense.recipe=nft+"]],
    "detection": [["defense.recipe=nft+"], ["defense.recipe=paper"]],
    "nlg": [["defense.recipe=nft+"], ["defense.recipe=paper"], ["defense.recipe=nft+", "augmentation.name=none"]],
}
#: I-BAU's and AWM's input perturbations need continuous inputs, not token ids: the CLI says so, exit 2
UNSUPPORTED = {("nlg", "ibau"), ("nlg", "awm")}


def _cases():
    for task, runs in NFT_RUNS.items():
        for opts in runs:
            yield pytest.param(task, "nft", opts, id=f"{task}-nft-{'-'.join(o.split('=')[1] for o in opts)}")
        for b in BASELINES:
            yield pytest.param(task, b, [f"defense.options={TINY[b]!r}"], id=f"{task}-{b}")


@pytest.mark.parametrize("task,defense,opts", list(_cases()))
def test_no_defense_reads_the_test_data_before_it_returns(task, defense, opts, cache, guarded, monkeypatch, capsys,
                                                          tmp_path):
    monkeypatch.setenv("NFT_CACHE_DIR", str(cache / task))
    main = installed_task_clis()[task]
    quick = [o for o in sys.modules[main.__module__].QUICK_OPTIONS if defense == "nft" or
             not o.startswith("defense.options")]
    argv = ["purify", "--quiet", "--device", "cpu", "--out", str(tmp_path / "run"), "--cfg-options", *quick, *opts]
    if defense != "nft":
        argv[1:1] = ["--defense", defense]
    code = main(argv)
    err = capsys.readouterr().err
    if (task, defense) in UNSUPPORTED:
        assert code == 2 and "continuous" in err and not (tmp_path / "run").exists(), err
        return
    assert code == 0, err
    assert len(guarded) == 1, "the CLI did not reach the shared purify path"
    rec = guarded[0]
    assert rec["ran"] and rec["armed_during"] and rec["model_untouched"], rec
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["defense"] == defense and rep["before"] and rep["after"]  # read once the defense had returned


def test_the_tripwire_catches_a_planted_read(cache, guarded, monkeypatch, tmp_path):
    """The wire has teeth: a baseline that peeks at the test set the CLI loaded is stopped."""
    from nft_core.defenses import FineTuning as FT

    real = FT.purify

    def leaky(self, model, data, adapter):
        len(guarded[-1]["wire"].clean)  # the planted read
        return real(self, model, data, adapter)

    monkeypatch.setattr(FT, "purify", leaky)
    monkeypatch.setenv("NFT_CACHE_DIR", str(cache / "vision"))
    main = installed_task_clis()["vision"]
    quick = [o for o in sys.modules[main.__module__].QUICK_OPTIONS if not o.startswith("defense.options")]
    with pytest.raises(LeakError, match="read before purify returned"):
        main(["purify", "--quiet", "--defense", "ft", "--out", str(tmp_path / "run"), "--cfg-options", *quick,
              "defense.options={'epochs': 1}"])
    assert not (tmp_path / "run").exists()  # nothing half-written


def _npz(path, x, y):
    np.savez(path, x=(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8), y=y.numpy())


@pytest.fixture(scope="module")
def toy():
    from nft_core.testing.toy import make_toy_backdoor

    return make_toy_backdoor(seed=0, n_train=600, n_test=120, epochs=3)


@pytest.mark.parametrize("defense", ["nft", "nad"])
def test_other_test_sets_give_bitwise_identical_purified_weights(defense, toy, tmp_path):
    """A third-party model purified twice with the same seed and validation set, once against one test and
    poisoned set and once against another (other images, other sizes): the purified weights are identical."""
    from nft_core.checkpoint import save_model
    from nft_core.testing.toy import apply_patch

    main = installed_task_clis()["vision"]
    ckpt = tmp_path / "suspect.safetensors"
    save_model(toy.model, ckpt)
    xv, yv = toy.val.tensors[:2]
    _npz(tmp_path / "val.npz", xv[:60], yv[:60])
    xt, yt = toy.test.clean.tensors[:2]
    for name, rows in (("a", slice(0, 50)), ("b", slice(50, 120))):
        _npz(tmp_path / f"test-{name}.npz", xt[rows], yt[rows])
        _npz(tmp_path / f"poisoned-{name}.npz", apply_patch(xt[rows]), yt[rows])
    opts = ["data.image_size=16", "defense.options={'epochs': 2}" if defense == "nft"
            else f"defense.options={TINY['nad']!r}"]
    weights, reports = {}, {}
    for name in ("a", "b"):
        out = tmp_path / f"run-{name}"
        argv = ["purify", "--quiet", "--device", "cpu", "--model", "nft_core.testing.toy:SmallCNN", "--checkpoint",
                str(ckpt), "--val", str(tmp_path / "val.npz"), "--test", str(tmp_path / f"test-{name}.npz"),
                "--poisoned", str(tmp_path / f"poisoned-{name}.npz"), "--target", "0", "--out", str(out)]
        if defense != "nft":
            argv += ["--defense", defense]
        assert main([*argv, "--cfg-options", *opts]) == 0
        weights[name] = load_file(out / "purified.safetensors")
        reports[name] = json.loads((out / "report.json").read_text())
    assert reports["a"]["before"] != reports["b"]["before"]  # the test sets did differ
    a, b = weights["a"], weights["b"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
