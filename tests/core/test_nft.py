import copy

import pytest
import torch
from torch import nn

from nft_core import NFT, ClassificationAdapter, NoAugmentation, PurifyResult, Schedule, TensorData
from nft_core.defenses import DEFENSES
from nft_core.errors import CheckpointError
from nft_core.testing import check_determinism

from .models import ConvNet


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, 2, 6, 6, generator=g), torch.arange(n) % 3)


def _model():
    torch.manual_seed(0)
    return ConvNet(2)


def test_purify_returns_plain_model_and_leaves_input_alone():
    model = _model().train()
    snapshot = copy.deepcopy(model.state_dict())
    res = NFT(epochs=3, batch_size=16).purify(model, _data(), ClassificationAdapter())
    assert isinstance(res, PurifyResult) and type(res.model) is type(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in snapshot.items())
    assert model.training and res.model.training  # training flag of the original kept
    assert set(res.model.state_dict()) == set(snapshot)
    assert len(res.history) == 3 and res.wall_time > 0
    assert set(res.masks) == set(res.info["mask_sites"])
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in res.model.modules())


def test_bounds_hold_after_training_and_first_layer_biases_untouched():
    model = _model()
    sched = Schedule("constant", 0.6)
    res = NFT(epochs=5, batch_size=16, lr=5.0, schedule=sched, placement="weight").purify(
        model, _data(), ClassificationAdapter()
    )
    for name, m in res.masks.items():
        assert m.min() >= 0.6 - 1e-6 and m.max() <= 1.0 + 1e-6, name
    assert any(m.min() < 0.999 for m in res.masks.values())  # masks did move
    new, old = res.model.state_dict(), model.state_dict()
    for k in old:
        if k.startswith("c1.") or k.endswith(".bias") or "running" in k:
            assert torch.equal(new[k], old[k]), k


def test_ten_samples_still_work():
    res = NFT(epochs=2, batch_size=128).purify(_model(), _data(n=10), ClassificationAdapter())
    assert res.info["steps"] == 2  # one step per epoch, batches of 128 drawn with replacement


def test_steps_override_and_history_fields():
    res = NFT(steps=7, batch_size=16).purify(_model(), _data(), ClassificationAdapter())
    assert res.info["steps"] == 7
    assert {"epoch", "loss", "reg", "lr", "mask_mean", "mask_min"} <= set(res.history[-1])
    assert res.history[-1]["lr"] == pytest.approx(0.02, abs=2e-3)  # cosine decay to lr_min


def test_determinism_bitwise():
    def run():
        return NFT(epochs=3, batch_size=16, seed=7).purify(_model(), _data(), ClassificationAdapter()).model.state_dict()

    check_determinism(run)


def test_different_seeds_differ():
    a = NFT(epochs=3, batch_size=16, seed=1).purify(_model(), _data(), ClassificationAdapter()).masks
    b = NFT(epochs=3, batch_size=16, seed=2).purify(_model(), _data(), ClassificationAdapter()).masks
    assert any(not torch.equal(a[k], b[k]) for k in a)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("kw", [{}, {"shrink": 0.02, "shrink_fraction": 0.5, "guard": 1.0}])
def test_resume_after_interruption_gives_identical_masks(tmp_path, kw):
    full = NFT(epochs=6, batch_size=16, **kw).purify(_model(), _data(), ClassificationAdapter())

    def boom(epoch, row, nft):
        if epoch == 3:
            raise _Stop

    with pytest.raises(_Stop):
        NFT(epochs=6, batch_size=16, checkpoint_dir=str(tmp_path), checkpoint_every=2, callbacks=[boom], **kw).purify(
            _model(), _data(), ClassificationAdapter()
        )
    resumed = NFT(epochs=6, batch_size=16, checkpoint_dir=str(tmp_path), checkpoint_every=2, resume=True, **kw).purify(
        _model(), _data(), ClassificationAdapter()
    )
    for k in full.masks:
        assert torch.equal(full.masks[k], resumed.masks[k]), k
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]


def test_resume_refuses_state_from_other_settings(tmp_path):
    NFT(epochs=2, batch_size=16, checkpoint_dir=str(tmp_path), checkpoint_every=1).purify(
        _model(), _data(), ClassificationAdapter()
    )
    with pytest.raises(CheckpointError, match="other settings"):
        NFT(epochs=2, batch_size=16, lr=0.1, checkpoint_dir=str(tmp_path), resume=True).purify(
            _model(), _data(), ClassificationAdapter()
        )


def test_eval_every_and_callbacks_and_options():
    seen = []
    from nft_core import EvalData

    d = _data()
    res = NFT(
        epochs=2, batch_size=16, eval_every=1, callbacks=[lambda e, r, n: seen.append(e)],
        augmentation=NoAugmentation(), eval_data=EvalData(clean=d),
    ).purify(_model(), d, ClassificationAdapter())
    assert seen == [0, 1] and "acc" in res.history[0]
    with pytest.raises(TypeError, match="unknown option"):
        NFT(epoch=3)
    with pytest.raises(ValueError):
        NFT(placement="gamma")


def test_amp_runs_on_cpu():
    res = NFT(epochs=1, batch_size=8, amp=True).purify(_model(), _data(), ClassificationAdapter())
    assert torch.isfinite(torch.tensor(res.history[0]["loss"]))


def test_amp_auto_follows_the_cpus_native_bfloat16(monkeypatch):
    import nft_core.nft as nft_module

    kw = dict(epochs=2, batch_size=16, seed=1)
    masks = {}
    for native in (True, False):  # the hardware query is what varies between machines
        monkeypatch.setattr(nft_module, "_cpu_has_native_bf16", lambda native=native: native)
        res = NFT(amp="auto", **kw).purify(_model(), _data(), ClassificationAdapter())
        assert res.info["amp"] is native
        masks[native] = res.masks
    plain = NFT(amp=False, **kw).purify(_model(), _data(), ClassificationAdapter()).masks
    assert all(torch.equal(plain[k], v) for k, v in masks[False].items())  # off: exactly the float32 run
    assert any(not torch.equal(plain[k], v) for k, v in masks[True].items())  # on: bfloat16 really ran
    with pytest.raises(ValueError, match="amp"):
        NFT(amp="bf16")


def test_defense_table_lists_nft():
    assert DEFENSES["nft"] is NFT


def test_works_on_recurrent_and_attention_models():
    from .models import AttentionNet, RecurrentNet

    class SeqAdapter(ClassificationAdapter):
        pass

    x = torch.randn(12, 5, 3)
    y = torch.arange(12) % 2
    res = NFT(epochs=2, batch_size=4).purify(RecurrentNet("lstm"), TensorData(x, y), SeqAdapter())
    assert any(name == "rnn" for name in res.masks)
    tok = torch.randint(11, (12, 5))
    res = NFT(epochs=2, batch_size=4, augmentation=NoAugmentation()).purify(
        AttentionNet(), TensorData(tok, torch.arange(12) % 3), SeqAdapter()
    )
    assert "attn" in res.masks and res.masks["attn"].numel() == 4 * 8


@pytest.mark.parametrize("model_mode", ["eval", "train"])
def test_model_mode(model_mode):
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    model(torch.randn(2, 2, 6, 6))
    rm = model[1].running_mean.clone()
    res = NFT(epochs=2, batch_size=8, model_mode=model_mode, skip_first=False).purify(
        model, _data(), ClassificationAdapter()
    )
    changed = not torch.equal(res.model[1].running_mean, rm)
    assert changed == (model_mode == "train")


def test_pipeline_writes_a_complete_run_directory(tmp_path):
    from nft_core import EvalData
    from nft_core.checkpoint import load_checkpoint_into, load_state_dict
    from nft_core.config import load_config
    from nft_core.errors import NFTInputError
    from nft_core.pipeline import build_defense, purify_and_report

    d = _data()
    defense = build_defense("nft", {"epochs": 2, "batch_size": 16, "schedule": {"alpha": 0.7}})
    rep = purify_and_report(task="toy", model=_model(), val_data=d, eval_data=EvalData(clean=d),
                            adapter=ClassificationAdapter(), defense=defense, out=tmp_path / "run",
                            config={"epochs": 2})
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"purified.safetensors", "masks.safetensors", "report.json", "report.md", "mask_heatmap.png",
            "history.png", "config.resolved.py"} <= files
    assert rep["recipe"] is None and "acc" in rep["after"]
    load_checkpoint_into(_model(), tmp_path / "run" / "purified.safetensors")
    assert set(load_state_dict(tmp_path / "run" / "masks.safetensors")) == set(rep["info"]["mask_sites"])
    assert load_config(tmp_path / "run" / "config.resolved.py")["epochs"] == 2
    with pytest.raises(NFTInputError, match="unknown defense 'nope'"):
        build_defense("nope")


class _ViewNet(nn.Module):
    """A classic CIFAR-style head: ``x.view(n, -1)`` on a 6×6 feature map, which the channels-last layout
    cannot view."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2, self.b2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))
        return self.fc(x.view(x.size(0), -1))


def test_channels_last_auto_on_cpu_matches_the_standard_layout():
    kw = dict(epochs=3, batch_size=16, seed=3)
    std = NFT(channels_last=False, **kw).purify(_model(), _data(), ClassificationAdapter())
    auto = NFT(**kw).purify(_model(), _data(), ClassificationAdapter())
    assert std.info["channels_last"] is False and auto.info["channels_last"] is True
    for k, m in std.masks.items():  # only the summation order differs
        assert torch.allclose(auto.masks[k], m, atol=1e-4), k
    assert any((m < 0.999).any() for m in auto.masks.values())  # the masks moved, so the comparison means something
    for name, p in [*auto.model.named_parameters(), *auto.model.named_buffers()]:
        assert p.is_contiguous(), name  # given back in the standard layout (safetensors needs it)


def test_channels_last_auto_falls_back_when_the_model_needs_the_standard_layout():
    torch.manual_seed(0)
    model = _ViewNet()
    res = NFT(epochs=2, batch_size=16).purify(model, _data(), ClassificationAdapter())
    assert res.info["channels_last"] is False
    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="view"):  # forcing it fails as the model's own forward would
        NFT(epochs=2, batch_size=16, channels_last=True).purify(_ViewNet(), _data(), ClassificationAdapter())
    with pytest.raises(ValueError, match="channels_last"):
        NFT(channels_last="yes")


class _AskShrink:
    """MixUp(1) that, from its first call on, asks NFT for the shrink pull (as SurrogateTrigger's fallback)."""

    def __init__(self, weight):
        from nft_core import MixUp

        self.base, self.weight, self.requested_shrink = MixUp(1.0), weight, 0.0

    def __call__(self, batch, generator):
        self.requested_shrink = self.weight
        return self.base(batch, generator)


def test_an_augmentation_can_ask_for_the_shrink_pull():
    from nft_core import MixUp

    kw = dict(epochs=4, batch_size=16)
    plain = NFT(augmentation=MixUp(1.0), **kw).purify(_model(), _data(), ClassificationAdapter())
    shrink = NFT(augmentation=MixUp(1.0), shrink=0.05, **kw).purify(_model(), _data(), ClassificationAdapter())
    asked = NFT(augmentation=_AskShrink(0.05), **kw).purify(_model(), _data(), ClassificationAdapter())
    for k in shrink.masks:  # the same computation as NFT's own shrink from the first step
        assert torch.equal(shrink.masks[k], asked.masks[k]), k
    mean = {n: sum(float(m.sum()) for m in r.masks.values()) for n, r in (("plain", plain), ("asked", asked))}
    assert mean["asked"] < mean["plain"] - 1.0, mean
