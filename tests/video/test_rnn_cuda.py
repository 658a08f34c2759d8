"""Gradients through an LSTM in eval mode (nft_core.rnn): cuDNN cannot differentiate an RNN outside
training mode, and NFT, the surrogate search, PGD and the clean-label attack all need exactly that. The
``gpu`` tests are the real check (they failed on an H200 before the fix: "cudnn RNN backward can only be
called in training mode"); the CPU tests pin the flag handling around it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nft_core import NeuronMasks
from nft_core import rnn as rnn_mod
from nft_core.init import seeded_init_
from nft_core.rnn import native_rnn, needs_native_rnn, rnn_forward
from nft_video.attacks import CleanLabelVideo
from nft_video.models import SmallCNNLSTM


def _clips(n=3, t=4, size=16, device="cpu"):
    return torch.rand(n, t, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)


class _ThirdPartyLSTM(nn.Module):
    """Someone else's model: a plain nn.LSTM called directly (no nft_core helper in its forward)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 8, num_layers=2, dropout=0.5, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


def test_no_switch_on_the_cpu_or_without_gradients():
    lstm = nn.LSTM(4, 5, batch_first=True).eval()
    x = torch.rand(2, 3, 4)
    assert not needs_native_rnn(lstm)
    torch.testing.assert_close(rnn_forward(lstm, x)[0], lstm(x)[0])
    assert torch.backends.cudnn.enabled


def test_native_rnn_restores_cudnn_after_an_error(monkeypatch):
    monkeypatch.setattr(rnn_mod, "needs_native_rnn", lambda rnn: True)  # what a CUDA eval-mode call sees
    lstm = nn.LSTM(4, 5)
    with pytest.raises(RuntimeError, match="boom"):
        with native_rnn(lstm):
            assert not torch.backends.cudnn.enabled
            raise RuntimeError("boom")
    assert torch.backends.cudnn.enabled


def _grad_of_input(model, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long, device=x.device)), x)
    return g


@pytest.mark.gpu
def test_cuda_input_gradient_through_the_video_model_in_eval_mode():
    model = seeded_init_(SmallCNNLSTM(num_classes=4, width=4, hidden=8), torch.Generator().manual_seed(0)).eval()
    x = _clips()
    g_cpu = _grad_of_input(model, x)
    g_cuda = _grad_of_input(model.cuda(), x.cuda())
    torch.testing.assert_close(g_cuda.cpu(), g_cpu, rtol=1e-3, atol=1e-4)
    assert torch.backends.cudnn.enabled
    with torch.no_grad():  # without gradients cuDNN still runs it, and computes the same function
        torch.testing.assert_close(model(x.cuda()).cpu(), model.cpu()(x), rtol=1e-3, atol=1e-3)  # TF32 convs


@pytest.mark.gpu
def test_cuda_mask_gradients_reach_a_third_party_lstm_in_eval_mode():
    model = seeded_init_(_ThirdPartyLSTM(), torch.Generator().manual_seed(0)).eval().cuda()
    masks = NeuronMasks(model, torch.rand(2, 5, 6, device="cuda"), skip_first=False)
    x = torch.rand(4, 5, 6, device="cuda")
    loss = F.cross_entropy(model(x), torch.zeros(4, dtype=torch.long, device="cuda"))
    loss.backward()
    lstm_site = next(s for s in masks.sites if isinstance(s.module, nn.LSTM))
    grad = masks.masks[lstm_site.key].grad  # one gate row per mask: every one of them gets a gradient
    assert grad is not None and (grad != 0).float().mean() > 0.9
    assert torch.backends.cudnn.enabled and not model.training


@pytest.mark.gpu
def test_cuda_clean_label_trigger_learning():
    model = seeded_init_(SmallCNNLSTM(num_classes=3, width=4, hidden=8), torch.Generator().manual_seed(0)).eval()
    attack = CleanLabelVideo(target=0, trigger_steps=3, pgd_steps=2)
    x, y = _clips(n=6).cpu(), torch.tensor([0, 1, 2, 0, 1, 2])
    pattern = attack.learn_trigger(model.cuda(), x, y, torch.Generator().manual_seed(0))
    assert pattern.shape[0] == 3 and 0 <= pattern.min() and pattern.max() <= 1
    adv = attack.perturb(model, x, y)
    assert adv.shape == x.shape and (adv - x).abs().max() <= attack.eps + 1e-6
