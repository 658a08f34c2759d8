"""Video attacks: trigger on every frame, poisoning rates and labels, the clean-label attack's pieces."""

import torch

from nft_core.data import TensorData
from nft_core.init import seeded_init_
from nft_video.attacks import BlendTrigger, CleanLabelVideo, PatchTrigger
from nft_video.models import SmallCNNLSTM


def _data(n=20, classes=4):
    g = torch.Generator().manual_seed(0)
    return TensorData(torch.rand(n, 4, 3, 16, 16, generator=g), torch.arange(n) % classes)


def test_patch_on_every_frame_and_poison_label():
    data = _data()
    atk = PatchTrigger(target=1, poison_rate=0.25)
    x = atk.apply(data.tensors[0])
    diff = (x != data.tensors[0]).any(dim=2)  # (N, T, H, W)
    assert diff.any(dim=(2, 3)).all()  # every frame of every clip carries the patch
    assert not diff[..., :8, :].any()  # only the bottom-right corner changes
    poisoned, idx = atk.poison_train(data, torch.Generator().manual_seed(0))
    assert len(idx) == 5 and (poisoned.tensors[1][idx] == 1).all()
    test = atk.poison_test(data)
    assert len(test) == 15 and (test.tensors[2] == 1).all() and (test.tensors[1] != 1).all()


def test_blend_same_noise_every_frame():
    data = _data()
    x = BlendTrigger(alpha=0.2, seed=3).apply(data.tensors[0])
    k = (x - 0.8 * data.tensors[0]) / 0.2
    assert torch.allclose(k[0, 0], k[5, 3], atol=1e-5)
    assert not torch.allclose(BlendTrigger(seed=4).apply(data.tensors[0]), x)


def test_clean_label_attack_learns_trigger_and_keeps_labels():
    data = _data()
    model = seeded_init_(SmallCNNLSTM(4, width=4, hidden=8), torch.Generator().manual_seed(0))
    atk = CleanLabelVideo(target=0, poison_rate=0.6, pgd_steps=2, trigger_steps=3, eps=8 / 255)
    poisoned, idx = atk.poison_train(data, torch.Generator().manual_seed(0), model_fn=lambda: model)
    assert torch.equal(poisoned.tensors[1], data.tensors[1])  # clean label
    assert len(idx) == 3 and (data.tensors[1][idx] == 0).all()
    changed = (poisoned.tensors[0] != data.tensors[0]).flatten(1).any(1)
    assert changed[idx].all() and changed.sum() == 3
    pat = atk.state_dict()["pattern"]
    assert pat.shape == (3, 3, 3) and 0 <= pat.min() and pat.max() <= 1
    again = CleanLabelVideo(target=0)
    again.load_state_dict(atk.state_dict())
    assert torch.equal(again.apply(data.tensors[0]), atk.apply(data.tensors[0]))
    assert all(p.requires_grad for p in model.parameters())  # surrogate restored
