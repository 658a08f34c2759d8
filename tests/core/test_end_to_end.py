"""End to end: a small CNN backdoored on generated data with a 3×3 patch trigger, purified by NFT on CPU."""

import pytest
import torch

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


class _AskFor:
    """MixUp(1) that asks NFT for a shrink pull and, optionally, its safety net (as SurrogateTrigger's fallback)."""

    def __init__(self, shrink, guard=None):
        from nft_core import MixUp

        self.base, self.shrink, self.guard = MixUp(1.0), shrink, guard
        self.requested_shrink, self.requested_guard = 0.0, None

    def __call__(self, batch, generator):
        self.requested_shrink, self.requested_guard = self.shrink, self.guard
        return self.base(batch, generator)


def test_a_requested_guard_reverts_masks_that_lost_too_much(toy):
    """A pull far too strong (shrink 1.0) collapses the model; the augmentation's guard puts back the last
    epoch within it. A guard the final masks meet changes nothing."""
    ad = ClassificationAdapter()
    ref = ad.evaluate(toy.model, toy.val)["acc"]
    kw = dict(epochs=4, seed=0, average=0.5)
    bare = NFT(augmentation=_AskFor(1.0), **kw).purify(toy.model, toy.val, ad)
    assert ref - ad.evaluate(bare.model, toy.val)["acc"] > 5  # the collapse the guard is for
    guarded = NFT(augmentation=_AskFor(1.0, guard=1.0), **kw).purify(toy.model, toy.val, ad)
    info = guarded.info
    assert info["guard_requested"] and info["guard_reverted"] and info["guard_reference"] == ref, info
    assert info["selected_epoch"] < 4 and ref - ad.evaluate(guarded.model, toy.val)["acc"] <= 1.0
    assert len([h for h in guarded.history if "val_acc" in h]) == 4
    loose = NFT(augmentation=_AskFor(1.0, guard=100.0), **kw).purify(toy.model, toy.val, ad)
    assert not loose.info["guard_reverted"] and loose.info["selected_epoch"] == 4
    for k in bare.masks:  # measuring changes nothing: the same masks as without the guard
        assert torch.equal(bare.masks[k], loose.masks[k]), k
    # NFT's own safety_guard is the same net, set in the config instead of by the augmentation
    from nft_core import MixUp

    own = NFT(augmentation=MixUp(1.0), shrink=1.0, safety_guard=1.0, **kw).purify(toy.model, toy.val, ad)
    assert own.info["guard_net"] and not own.info["guard_requested"] and own.info["guard_reverted"]
    for k in guarded.masks:
        assert torch.equal(guarded.masks[k], own.masks[k]), k
    for bad in ({"safety_guard": -1.0}, {"safety_guard": 1.0, "guard": 1.0}):
        with pytest.raises(ValueError, match="safety_guard"):
            NFT(**bad).purify(toy.model, toy.val, ad)


def test_a_guard_that_keeps_nothing_says_so_in_the_report(toy, tmp_path):
    """Where every epoch loses more than the safety guard allows, the model comes back unchanged (as at
    paper scale on an H200): the report and report.md say so, with the option that undoes it."""
    from nft_core import MixUp
    from nft_core.pipeline import purify_and_report

    ad = ClassificationAdapter()
    nft = NFT(augmentation=MixUp(1.0), shrink=50.0, safety_guard=0.5, epochs=2, seed=0)
    report = purify_and_report(task="toy", model=toy.model, val_data=toy.val, eval_data=toy.test, adapter=ad,
                               defense=nft, out=tmp_path / "run")
    info = report["info"]
    assert info["guard_reverted"] and info["returned_original"] and info["selected_epoch"] == 0, info
    assert report["after"] == report["before"]  # really the original model
    assert len(report["notes"]) == 1 and "ORIGINAL model unchanged" in report["notes"][0]
    assert "defense.options.safety_guard=None" in report["notes"][0]
    assert "ORIGINAL model unchanged" in (tmp_path / "run" / "report.md").read_text()
    kept = purify_and_report(task="toy", model=toy.model, val_data=toy.val, eval_data=toy.test, adapter=ad,
                             defense=NFT(augmentation=MixUp(1.0), epochs=2, seed=0, safety_guard=100.0), out=None)
    assert not kept["info"]["returned_original"] and kept["notes"] == []


def test_a_grid_marks_the_cells_where_the_guard_kept_nothing(toy):
    """``nft-* bench`` grids: such a cell shows the backdoored model's figures, so the table names it."""
    from nft_core import MixUp
    from nft_core.bench import results_markdown, run_cells

    ad = ClassificationAdapter()
    rows = run_cells({"patch": lambda: (toy.model, toy.val, toy.test, ad)},
                     {"nft-guarded": lambda: NFT(augmentation=MixUp(1.0), shrink=50.0, safety_guard=0.5, epochs=2,
                                                 seed=0),
                      "nft": lambda: NFT(augmentation=MixUp(1.0), epochs=2, seed=0)})
    by = {r["defense"]: r for r in rows}
    assert by["nft-guarded"].get("returned_original") and "returned_original" not in by["nft"]
    assert by["nft-guarded"]["asr"] == by["none"]["asr"]
    md = results_markdown(rows)
    assert "safety guard returned the original model" in md and "- patch × nft-guarded" in md
    assert "- patch × nft\n" not in md + "\n"
