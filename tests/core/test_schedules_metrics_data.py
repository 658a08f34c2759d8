import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nft_core import Schedule, TensorData, stratified_split
from nft_core.errors import DataError
from nft_core.metrics import accuracy, attack_success_rate, label_correction_rate
from nft_core.schedules import SCHEDULES


def test_exponential_is_the_papers_default():
    s = Schedule()
    assert (s.family, s.alpha, s.beta) == ("exponential", 0.8, 0.5)
    assert s.bounds(3) == pytest.approx([0.8 * math.exp(-0.5 * l) for l in (1, 2, 3)])


@pytest.mark.parametrize("family", sorted(SCHEDULES))
@given(n=st.integers(1, 60), alpha=st.floats(0, 1), beta=st.floats(0.01, 2))
def test_every_family_is_bounded_and_non_increasing(family, n, alpha, beta):
    b = Schedule(family, alpha, beta).bounds(n)
    assert len(b) == n
    assert all(0 <= v <= 1 for v in b)
    assert all(b[i] >= b[i + 1] - 1e-12 for i in range(n - 1))
    assert b[0] <= alpha + 1e-12


def test_bad_schedule():
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule("quadratic")
    with pytest.raises(ValueError):
        Schedule(alpha=1.5)


def test_metrics_all2one_and_all2all():
    true = torch.tensor([0, 1, 2, 3])
    # all2one target 0: sample with true class 0 is not counted
    pred = torch.tensor([0, 0, 2, 0])
    assert attack_success_rate(pred, true, 0) == pytest.approx(200 / 3)
    assert label_correction_rate(pred, true, 0) == pytest.approx(100 / 3)
    # all2all target (y+1) mod 4
    tgt = (true + 1) % 4
    pred = torch.tensor([1, 2, 2, 3])
    assert attack_success_rate(pred, true, tgt) == 50.0
    assert label_correction_rate(pred, true, tgt) == 50.0
    assert accuracy(pred, true) == 50.0
    assert math.isnan(accuracy(torch.tensor([]), torch.tensor([])))


@given(n_per=st.lists(st.integers(1, 30), min_size=2, max_size=6), ratio=st.floats(0.01, 0.9))
def test_stratified_split_ratio(n_per, ratio):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per)])
    val, rest = stratified_split(labels, ratio=ratio, generator=torch.Generator().manual_seed(0))
    assert len(set(val.tolist()) & set(rest.tolist())) == 0
    assert len(val) + len(rest) == len(labels)
    assert set(labels[val].tolist()) == set(range(len(n_per)))  # every class present


def test_stratified_split_per_class_and_seed():
    labels = torch.arange(10).repeat(5)
    v1, _ = stratified_split(labels, per_class=1, generator=torch.Generator().manual_seed(3))
    v2, _ = stratified_split(labels, per_class=1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(v1, v2) and sorted(labels[v1].tolist()) == list(range(10))
    with pytest.raises(DataError, match="class 0 has 5 samples"):
        stratified_split(labels, per_class=6)


def test_tensor_data_checks():
    with pytest.raises(DataError, match="tensor 1 has 3 samples"):
        TensorData(torch.zeros(4, 2), torch.zeros(3))
    d = TensorData(torch.arange(6.0).view(3, 2), torch.tensor([0, 1, 0]))
    assert len(d) == 3 and d[1][1] == 1 and len(d.subset([0, 2])) == 2
