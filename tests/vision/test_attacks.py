import pytest
import torch
import torch.nn.functional as F

from nft_core.data import TensorData
from nft_core.errors import DataError
from nft_core.init import seeded_init_
from nft_vision import ATTACKS, SIG, BadNets, Blend, SmallCNN, Trojan, WaNet, load_digits_default


def _data(n=200, c=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.rand(n, 3, 32, 32, generator=g), torch.arange(n) % c)


@pytest.mark.parametrize("cls", list(ATTACKS.values()))
def test_trigger_deterministic(cls):
    x = _data(8).tensors[0]
    a, b = cls(seed=3), cls(seed=3)
    assert torch.equal(a.trigger((3, 32, 32)), b.trigger((3, 32, 32)))
    assert torch.equal(a.apply(x), b.apply(x))
    out = a.apply(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 and not torch.equal(out, x)
    if cls in (Blend, Trojan, WaNet):  # seeded patterns
        assert not torch.equal(a.trigger((3, 32, 32)), cls(seed=4).trigger((3, 32, 32)))


@pytest.mark.parametrize("cls", [BadNets, Blend, Trojan, WaNet])
def test_dirty_label_poison_counts(cls):
    data = _data()
    atk = cls(target=2, poison_rate=0.1)
    state = torch.random.get_rng_state()
    p1, idx = atk.poison_train(data, torch.Generator().manual_seed(0))
    p2, idx2 = atk.poison_train(data, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(idx, idx2) and torch.equal(p1.tensors[0], p2.tensors[0])
    assert len(idx) == 20 and (p1.tensors[1][idx] == 2).all()
    others = torch.ones(200, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(p1.tensors[1][others], data.tensors[1][others])
    changed = (p1.tensors[0] != data.tensors[0]).flatten(1).any(1)
    assert changed[idx].all()
    # WaNet's noise mode touches cross_ratio × as many extra samples, labels kept
    assert changed[others].sum() == (40 if cls is WaNet else 0)
    assert torch.equal(data.tensors[0], _data().tensors[0])  # input untouched


def test_sig_clean_label_counts():
    data = _data()
    atk = SIG(target=1)
    p, idx = atk.poison_train(data, torch.Generator().manual_seed(0))
    assert len(idx) == 16 and (data.tensors[1][idx] == 1).all()  # 80% of the 20 target images
    assert torch.equal(p.tensors[1], data.tensors[1])
    amp = atk.trigger((3, 32, 32)).abs().max()
    assert 0.18 < amp <= 0.2  # the NFT paper's Delta = 0.2
    with pytest.raises(ValueError):
        SIG(mode="all2all", num_classes=10)


@pytest.mark.parametrize("cls", list(ATTACKS.values()))
def test_poison_test_excludes_target(cls):
    data = _data(50)
    t = cls(target=3).poison_test(data)
    x, y, yt = t.tensors
    assert len(t) == 45 and (y != 3).all() and (yt == 3).all()


@pytest.mark.parametrize("cls", [BadNets, Blend, Trojan, WaNet])
def test_all2all(cls):
    data = _data(50)
    atk = cls(mode="all2all", num_classes=10, poison_rate=0.2)
    t = atk.poison_test(data)
    assert len(t) == 50 and torch.equal(t.tensors[2], (data.tensors[1] + 1) % 10)
    p, idx = atk.poison_train(data, torch.Generator().manual_seed(1))
    assert len(idx) == 10 and torch.equal(p.tensors[1][idx], (data.tensors[1][idx] + 1) % 10)
    with pytest.raises(ValueError, match="num_classes"):
        cls(mode="all2all")


def test_badnets_patch_bottom_right():
    x = torch.full((1, 3, 32, 32), 0.5)
    out = BadNets().apply(x)
    diff = (out != x).any(1)[0]
    assert diff[-3:, -3:].any() and not diff[:-3].any() and not diff[:, :-3].any()
    assert BadNets().trigger((3, 64, 64)).shape == (3, 6, 6)


def test_attacks_reject_uint8():
    with pytest.raises(DataError, match="float images"):
        BadNets().poison_test(TensorData(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2).long()))


def test_badnets_backdoor_on_digits():
    """A small CNN trained ~15 s on poisoned digits learns the BadNets backdoor."""
    train, test = load_digits_default()
    g = torch.Generator().manual_seed(0)
    atk = BadNets(target=0, poison_rate=0.1)
    ptrain, _ = atk.poison_train(train, g)
    model = seeded_init_(SmallCNN(10, width=8), g)
    epochs, n, bs = 6, len(ptrain), 64
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=epochs * -(-n // bs))
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, bs):
            x, y = ptrain.take(perm[s : s + bs])
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(test.tensors[0]).argmax(1) == test.tensors[1]).float().mean().item()
        pt = atk.poison_test(test)
        asr = (model(pt.tensors[0]).argmax(1) == pt.tensors[2]).float().mean().item()
    assert asr >= 0.9, f"ASR {asr:.3f}"
    assert acc >= 0.85, f"ACC {acc:.3f}"
