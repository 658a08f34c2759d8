"""Every defense on someone else's CNN+LSTM (a plain ``nn.LSTM`` called directly in its forward): on CUDA, cuDNN
cannot differentiate an LSTM in eval mode, and ANP, AWM, I-BAU, RNP, NFT's masks and the surrogate search all
take such gradients. ``nft_core.rnn.native_rnns`` switches cuDNN off around exactly those LSTM calls. The ``gpu``
test is the real check; the CPU test pins what the LSTM sees while each defense runs, with the CUDA condition
stood in for (on the CPU there is no cuDNN to switch)."""

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_mod

from nft_core import NFT, ClassificationAdapter, SurrogateTrigger, TensorData
from nft_core import rnn as rnn_mod
from nft_core.defenses import DEFENSES
from nft_core.init import seeded_init_

from .test_defenses import TINY


class _ClipLSTM(nn.Module):
    """A third party's action model: per-frame conv + BatchNorm encoder, then an ``nn.LSTM`` called directly."""

    def __init__(self, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.lstm = nn.LSTM(8, 10, num_layers=2, dropout=0.3, batch_first=True)
        self.fc = nn.Linear(10, classes)

    def forward(self, x):
        b, t = x.shape[:2]
        f = torch.relu(self.conv2(torch.relu(self.bn(self.conv(x.flatten(0, 1))))))
        return self.fc(self.lstm(f.mean((2, 3)).view(b, t, -1))[0][:, -1])


def _data(device="cpu", n=24):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 4, 3, 8, 8, generator=g)
    return TensorData(x.to(device), (torch.arange(n) % 3).to(device))


def _model(device="cpu"):
    return seeded_init_(_ClipLSTM(), torch.Generator().manual_seed(0)).to(device).eval()


def _nft():
    # the LSTM left unmasked: NFT's own RNN mask handler does not cover it, only native_rnns does
    aug = SurrogateTrigger(kind="patch", steps=4, clean_fraction=0.5)
    return NFT(epochs=2, batch_size=12, exclude=["lstm"], augmentation=aug)


def _defenses():
    return [(name, lambda name=name: DEFENSES[name](**TINY[name])) for name in TINY] + [("nft", _nft)]


@pytest.mark.parametrize("name,make", _defenses(), ids=[n for n, _ in _defenses()])
def test_every_lstm_call_a_defense_differentiates_in_eval_mode_runs_without_cudnn(monkeypatch, name, make):
    # what needs_native_rnn says on CUDA (there the weights' device is "cuda")
    monkeypatch.setattr(rnn_mod, "needs_native_rnn",
                        lambda rnn: not rnn.training and torch.is_grad_enabled() and torch.backends.cudnn.enabled)
    model = _model()
    seen = []
    model.lstm.register_forward_pre_hook(
        lambda m, a: seen.append((m.training, torch.is_grad_enabled(), torch.backends.cudnn.enabled)))
    hooks_before = (len(module_mod._global_forward_pre_hooks), len(module_mod._global_forward_hooks))
    result = make().purify(model, _data(), ClassificationAdapter(3))
    assert seen, "the defense never ran the LSTM"
    # cuDNN off exactly where it could not differentiate, on everywhere else
    assert all(cudnn == (training or not grad) for training, grad, cudnn in seen), (name, seen)
    assert torch.backends.cudnn.enabled and not model.training
    assert (len(module_mod._global_forward_pre_hooks), len(module_mod._global_forward_hooks)) == hooks_before
    out = result.model(_data().tensors[0][:2])
    assert out.shape == (2, 3) and torch.backends.cudnn.enabled
    if name in ("anp", "awm", "ibau", "rnp", "nft"):  # these take gradients of the model in eval mode
        assert any(not training and grad for training, grad, _ in seen), (name, seen)


def test_native_rnns_installs_nothing_for_a_model_without_an_rnn_and_restores_after_an_error(monkeypatch):
    hooks = (len(module_mod._global_forward_pre_hooks), len(module_mod._global_forward_hooks))
    with rnn_mod.native_rnns(nn.Linear(2, 2)):
        assert (len(module_mod._global_forward_pre_hooks), len(module_mod._global_forward_hooks)) == hooks
    monkeypatch.setattr(rnn_mod, "needs_native_rnn", lambda rnn: True)

    class Boom(nn.LSTM):
        def forward(self, *a, **k):
            assert not torch.backends.cudnn.enabled
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), rnn_mod.native_rnns(None):
        Boom(2, 2)(torch.rand(1, 2, 2))
    assert torch.backends.cudnn.enabled and not rnn_mod._switched
    assert (len(module_mod._global_forward_pre_hooks), len(module_mod._global_forward_hooks)) == hooks


@pytest.mark.gpu
@pytest.mark.parametrize("name,make", _defenses(), ids=[n for n, _ in _defenses()])
def test_cuda_every_defense_on_a_third_party_lstm(name, make):
    model = _model("cuda")
    result = make().purify(model, _data("cuda"), ClassificationAdapter(3))
    assert next(result.model.parameters()).device.type == "cuda"
    assert torch.backends.cudnn.enabled and not model.training
