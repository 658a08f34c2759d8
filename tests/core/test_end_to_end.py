"""End to end: a small CNN backdoored on generated data with a 3×3 patch trigger, purified by NFT on CPU."""

import pytest

from nft_core import NFT, ClassificationAdapter
from nft_core.testing import make_toy_backdoor


@pytest.fixture(scope="module")
def toy():
    return make_toy_backdoor(seed=0)


def test_nft_purifies_the_toy_backdoor(toy):
    """Timing is measured by `nft demo` (README), not asserted here: CI machines are noisy."""
    adapter = ClassificationAdapter()
    before = adapter.evaluate(toy.model, toy.test)
    assert before["asr"] >= 90 and before["acc"] >= 90
    result = NFT(shrink=0.02, guard=1.0, seed=0).purify(toy.model, toy.val, adapter)
    after = adapter.evaluate(result.model, toy.test)
    assert after["asr"] <= 10, after
    assert before["acc"] - after["acc"] <= 5, (before, after)
