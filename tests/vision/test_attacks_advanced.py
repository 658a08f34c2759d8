"""The attacks with learned or composite triggers: CLB, Dynamic, ISSBA, LIRA, BPPA, FBA, CBA (tiny, fast), plus
real-strength checks on the digits default behind ``-m slow``."""

import json
import time

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from nft_core.data import TensorData
from nft_core.init import seeded_init_
from nft_vision import ATTACKS, BPPA, CBA, CLB, FBA, ISSBA, LIRA, Dynamic, SmallCNN, load_digits_default
from nft_vision.train import train_classifier

NEW = [CLB, Dynamic, ISSBA, LIRA, BPPA, FBA, CBA]
LEARNED = [Dynamic, LIRA]  # trained jointly with the classifier
PREPARED = [ISSBA, FBA]  # learned in prepare(), before poisoning


def _data(n=40, c=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.rand(n, 3, size, size, generator=g), torch.arange(n) % c)


def _make(cls, **kw):
    if cls is CLB:
        kw.setdefault("steps", 2)
        kw.setdefault("surrogate_epochs", 1)
    if cls in LEARNED or cls in PREPARED:
        kw.setdefault("width", 4)
        kw.setdefault("depth", 1)
    if cls is Dynamic:
        kw.setdefault("mask_epochs", 1)
    if cls is ISSBA:
        kw.setdefault("encoder_epochs", 1)
    if cls is FBA:
        kw.setdefault("style_epochs", 1)
    return cls(**kw)


def _tiny_model(seed=0, c=4):
    return seeded_init_(SmallCNN(c, width=4), torch.Generator().manual_seed(seed))


def test_registered():
    for cls in NEW:
        assert ATTACKS[cls.name] is cls
    assert [c.requires_model_training for c in NEW] == [False, True, False, True, False, False, False]


@pytest.mark.parametrize("cls", NEW)
def test_deterministic_shapes_range(cls):
    data = _data()
    x = data.tensors[0]
    a, b = _make(cls, target=3, seed=3), _make(cls, target=3, seed=3)
    out = a.apply(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 and not torch.equal(out, x)
    assert torch.equal(out, b.apply(x)) and torch.equal(a.trigger((3, 8, 8)), b.trigger((3, 8, 8)))
    cfg = a.config()  # constructor arguments; learned state travels separately (state_dict)
    json.dumps(cfg)
    assert cfg["target"] == 3 and cfg["seed"] == 3
    assert torch.equal(cls(**cfg).trigger((3, 8, 8)), a.trigger((3, 8, 8)))
    state = torch.random.get_rng_state()
    p1, i1 = a.poison_train(data, torch.Generator().manual_seed(0))
    p2, i2 = b.poison_train(data, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(i1, i2) and all(torch.equal(s, t) for s, t in zip(p1.tensors, p2.tensors))
    assert p1.tensors[0].shape == x.shape and p1.tensors[0].min() >= 0 and p1.tensors[0].max() <= 1
    assert torch.equal(data.tensors[0], _data().tensors[0])  # input untouched


@pytest.mark.parametrize("cls", [Dynamic, ISSBA, LIRA, BPPA, FBA])
def test_dirty_label_counts(cls):
    data = _data()
    atk = _make(cls, target=2, poison_rate=0.25)
    p, idx = atk.poison_train(data, torch.Generator().manual_seed(0))
    assert len(idx) == 10 and (p.tensors[1][idx] == 2).all()
    others = torch.ones(40, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(p.tensors[1][others], data.tensors[1][others])
    changed = (p.tensors[0] != data.tensors[0]).flatten(1).any(1)
    assert changed[idx].all()
    extra = {Dynamic: 20, ISSBA: 0, LIRA: 0, BPPA: 2, FBA: 0}[cls]  # cross-trigger / negative samples, labels kept
    assert changed[others].sum() == extra


@pytest.mark.parametrize("cls", [Dynamic, ISSBA, LIRA, BPPA, FBA])
def test_all2all(cls):
    data = _data()
    atk = _make(cls, mode="all2all", num_classes=4, poison_rate=0.25)
    t = atk.poison_test(data)
    assert len(t) == 40 and torch.equal(t.tensors[2], (data.tensors[1] + 1) % 4)
    p, idx = atk.poison_train(data, torch.Generator().manual_seed(1))
    assert torch.equal(p.tensors[1][idx], (data.tensors[1][idx] + 1) % 4)


def test_clb_clean_label():
    data = _data()
    atk = _make(CLB, target=1)
    p, idx = atk.poison_train(data, torch.Generator().manual_seed(0))
    assert len(idx) == 8 and (data.tensors[1][idx] == 1).all()  # 80% of the 10 target images
    assert torch.equal(p.tensors[1], data.tensors[1])
    changed = (p.tensors[0] != data.tensors[0]).flatten(1).any(1)
    assert changed[idx].all() and changed.sum() == 8
    inner = atk.mask((3, 8, 8)) == 0  # outside the corners only the PGD perturbation, within eps
    diff = (p.tensors[0][idx] - data.tensors[0][idx])[..., inner]
    assert diff.abs().max() <= atk.eps + 1e-6 and diff.abs().max() > 0
    corners = p.tensors[0][idx][..., ~inner]
    assert ((corners == 0) | (corners == 1)).all()
    with pytest.raises(ValueError):
        CLB(mode="all2all", num_classes=4)
    # a caller-supplied surrogate is used as is (no training), and its training flag is restored
    sur = _tiny_model().train()
    atk2 = _make(CLB, target=1, surrogate=sur)
    atk2.poison_train(data, torch.Generator().manual_seed(0))
    assert atk2.surrogate is sur and sur.training


def test_cba_composites_and_negatives():
    data = _data()
    atk = CBA(target=0, sources=(1, 2), poison_rate=0.1)
    p, idx = atk.poison_train(data, torch.Generator().manual_seed(0))
    x, y = p.tensors
    assert len(idx) == 4 and (y[idx] == 0).all()
    src = data.tensors[0]
    a, b = src[data.tensors[1] == 1], src[data.tensors[1] == 2]
    for i in idx:  # left half from a class-1 image, right half from a class-2 image
        assert any(torch.equal(x[i, ..., :4], s[..., :4]) for s in a)
        assert any(torch.equal(x[i, ..., 4:], s[..., 4:]) for s in b)
    others = torch.ones(40, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(y[others], data.tensors[1][others])
    neg = torch.nonzero(others & (x != src).flatten(1).any(1)).flatten()
    assert len(neg) <= 4 and len(neg) >= 3  # a same-class partner can be the image itself
    for i in neg:  # right half from an image of the same class, label kept
        same = src[data.tensors[1] == data.tensors[1][i]]
        assert torch.equal(x[i, ..., :4], src[i, ..., :4])
        assert any(torch.equal(x[i, ..., 4:], s[..., 4:]) for s in same)
    t = atk.poison_test(data)
    assert len(t) == 30 and (t.tensors[1] == 1).all() and (t.tensors[2] == 0).all()
    with pytest.raises(ValueError):
        CBA(sources=(0, 1))
    with pytest.raises(ValueError):
        CBA(mode="all2all", num_classes=4)


def test_bppa_quantisation():
    x = _data(4).tensors[0]
    atk = BPPA(bits=3)
    out = atk.apply(x)
    assert torch.allclose(out * 7, (out * 7).round(), atol=1e-5)
    assert (out - x).abs().mean() < 1 / 7  # dithering keeps local averages close
    plain = BPPA(bits=3, dither=False).apply(x)
    assert not torch.equal(out, plain) and (plain - x).abs().max() <= 0.5 / 7 + 1e-6


@pytest.mark.parametrize("cls", LEARNED)
def test_train_backdoor_deterministic_and_state_roundtrip(cls):
    data = _data(24)
    runs = []
    for _ in range(2):
        atk = _make(cls, target=1, poison_rate=0.25)
        model = _tiny_model().eval()
        state = torch.random.get_rng_state()
        out = atk.train_backdoor(model, data, epochs=1, lr=0.05, batch_size=8,
                                 generator=torch.Generator().manual_seed(0))
        assert out is model and not model.training
        assert torch.equal(state, torch.random.get_rng_state())
        runs.append((atk, model))
    (a1, m1), (a2, m2) = runs
    sd = a1.state_dict()
    assert sd and all(isinstance(v, torch.Tensor) for v in sd.values())
    assert all(torch.equal(sd[k], v) for k, v in a2.state_dict().items())
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))
    fresh = _make(cls, target=1, seed=99)
    x = data.tensors[0]
    assert not torch.equal(fresh.apply(x), a1.apply(x)) and not torch.equal(a1.apply(x), _make(cls).apply(x))
    fresh.load_state_dict(st_load(st_save(sd)))  # through safetensors, as the CLI stores it
    assert torch.equal(fresh.apply(x), a1.apply(x))
    if cls is LIRA:
        assert (a1.apply(x) - x).abs().max() <= a1.eps + 1e-6


def test_fixed_triggers_have_empty_state():
    for cls in (CLB, BPPA, CBA):
        atk = cls()
        assert atk.state_dict() == {}
        atk.load_state_dict({})
        with pytest.raises(NotImplementedError):
            atk.train_backdoor(None, _data(), epochs=1, lr=0.1, batch_size=4, generator=torch.Generator())


@pytest.mark.parametrize("cls", PREPARED)
def test_prepared_state_roundtrip(cls):
    data = _data(24)
    a = _make(cls, target=1)
    b = _make(cls, target=1)
    x = data.tensors[0]
    before = a.apply(x)
    state = torch.random.get_rng_state()
    a.prepare(data, torch.Generator().manual_seed(0))
    b.prepare(data, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(a.apply(x), b.apply(x)) and not torch.equal(a.apply(x), before)
    sd = a.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    fresh = _make(cls, target=1, seed=7)
    assert not torch.equal(fresh.apply(x), a.apply(x))
    fresh.load_state_dict(st_load(st_save(sd)))  # through safetensors, as the CLI stores it
    assert torch.equal(fresh.apply(x), a.apply(x))
    # a prepared (or reloaded) attack does not learn again: poisoning consumes the generator identically
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    p1, i1 = a.poison_train(data, g1)
    p2, i2 = fresh.poison_train(data, g2)
    assert torch.equal(i1, i2) and torch.equal(p1.tensors[0], p2.tensors[0])
    if cls is ISSBA:
        assert (a.apply(x) - x).abs().max() <= a.eps + 1e-6 and a.decode(x).shape == (24, a.bits)


# -- real strength on the digits default ---------------------------------------------------------------------
EPOCHS, BATCH, LR, WIDTH = 10, 64, 0.05, 16


def _eval(model, atk, test):
    model.eval()
    with torch.no_grad():
        acc = (model(test.tensors[0]).argmax(1) == test.tensors[1]).float().mean().item()
        pt = atk.poison_test(test)
        asr = (model(pt.tensors[0]).argmax(1) == pt.tensors[2]).float().mean().item()
    return acc, asr


@pytest.fixture(scope="module")
def digits_clean():
    train, test = load_digits_default()
    g = torch.Generator().manual_seed(0)
    model = seeded_init_(SmallCNN(10, width=WIDTH), g)
    train_classifier(model, train, epochs=EPOCHS, lr=LR, batch_size=BATCH, generator=g)
    with torch.no_grad():
        acc = (model(test.tensors[0]).argmax(1) == test.tensors[1]).float().mean().item()
    return train, test, acc


_CLB_XFAIL = pytest.mark.xfail(reason="measured ASR ~0% on digits with a SmallCNN surrogate (plain or fast-AT, "
                                       "eps 8/255..32/255): the victim fits the perturbed target images without "
                                       "the corner trigger", strict=False)
_ALL2ALL_XFAIL = pytest.mark.xfail(reason="measured ASR ~2% after 10 epochs at the default 10% per batch",
                                   strict=False)


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", [
    ("bppa", {}), ("cba", {}), ("dynamic", {}), ("lira", {}), ("issba", {}), ("fba", {}),
    pytest.param("clb", {}, marks=_CLB_XFAIL),
    pytest.param("dynamic", {"mode": "all2all", "num_classes": 10}, marks=_ALL2ALL_XFAIL),
])
def test_strength_on_digits(digits_clean, name, kw):
    train, test, clean_acc = digits_clean
    t0 = time.time()
    atk = ATTACKS[name](target=0, **kw)
    g = torch.Generator().manual_seed(0)
    model = seeded_init_(SmallCNN(10, width=WIDTH), g)
    if atk.requires_model_training:
        atk.train_backdoor(model, train, epochs=EPOCHS, lr=LR, batch_size=BATCH, generator=g)
    else:
        ptrain, _ = atk.poison_train(train, g)
        train_classifier(model, ptrain, epochs=EPOCHS, lr=LR, batch_size=BATCH, generator=g)
    acc, asr = _eval(model, atk, test)
    print(f"\n{name} {kw}: ACC {acc:.4f} (clean {clean_acc:.4f}) ASR {asr:.4f} in {time.time() - t0:.1f}s")
    assert asr >= 0.9, f"ASR {asr:.3f}"
    assert acc >= clean_acc - 0.03, f"ACC {acc:.3f} vs clean {clean_acc:.3f}"
