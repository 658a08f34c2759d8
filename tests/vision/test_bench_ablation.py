"""``nft-vision bench`` ablation columns (``bench.ablation``) and t-SNE views (``bench.tsne``), tiny scale."""

import csv
import json
from dataclasses import asdict

import pytest
import torch

from nft_core import NFT
from nft_core.bench import ValidationSubset, validation_subset_indices
from nft_core.config import load_config, to_dataclass
from nft_core.errors import ConfigError, DataError
from nft_vision.bench import ablation_variants, run_grid
from nft_vision.cli import main
from nft_vision.config import VisionConfig
from nft_vision.workflow import backdoor

TINY = ["train.epochs=2", "model.width=4", "defense.options.epochs=2", "data.image_size=16",
        "bench.attacks=['badnets']", "bench.defenses=[]", "bench.tsne=False"]


def _cfg(cache, *options) -> VisionConfig:
    cfg = to_dataclass(VisionConfig, load_config(None, [*TINY, *options], base=asdict(VisionConfig())))
    cfg.cache_dir = str(cache)
    return cfg


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One backdoored model (trained here, cached) for every grid of this module."""
    path = tmp_path_factory.mktemp("cache")
    backdoor(_cfg(path))
    return path


def _columns(out):
    with open(out / "results.csv") as f:
        return [r["defense"] for r in csv.DictReader(f)]


@pytest.fixture()
def spy(monkeypatch):
    """Records what every NFT run of a grid was given (its config, augmentation and validation data)."""
    calls = []
    purify = NFT.purify

    def recording(self, model, data, adapter):
        calls.append({"config": self.config, "augmentation": repr(self.augmentation), "n": len(data),
                      "per_class": torch.bincount(data.tensors[1]).tolist()})
        return purify(self, model, data, adapter)

    monkeypatch.setattr(NFT, "purify", recording)
    return calls


def test_ablation_syntax():
    assert ablation_variants({}) == []
    assert ablation_variants({"name": "eta", "values": [0, 1e-4, 1e-2]}) == [
        ("nft[eta=0]", {"eta": 0}), ("nft[eta=0.0001]", {"eta": 0.0001}), ("nft[eta=0.01]", {"eta": 0.01})]
    v = ablation_variants({"variants": [{}, {"augmentation": "none", "eta": 0}, {"label": "x", "tune_bias": True},
                                        {"schedule": {"family": "cosine", "alpha": 0.5}}]})
    assert [n for n, _ in v] == ["nft", "nft[augmentation=none,eta=0]", "x", "nft[schedule={family=cosine,alpha=0.5}]"]
    assert v[2][1] == {"tune_bias": True}
    with pytest.raises(ConfigError, match="did you mean 'eta'"):
        ablation_variants({"name": "etta", "values": [1]})
    with pytest.raises(ConfigError, match="both named"):
        ablation_variants({"name": "eta", "values": [0.001, 1e-3]})
    with pytest.raises(ConfigError, match="needs"):
        ablation_variants({"values": [1]})
    with pytest.raises(ConfigError, match="unknown key"):
        ablation_variants({"name": "eta", "values": [1], "extra": 2})


@pytest.mark.parametrize("ablation, message", [
    ({"name": "schedule", "values": ["nonsense"]}, "unknown schedule family 'nonsense'"),
    ({"name": "alpha", "values": [1.5]}, "alpha must be in"),
    ({"name": "augmentation", "values": ["randaug-not-here"]}, "unknown augmentation"),
    ({"name": "val_size", "values": [0]}, "val_size must be a positive integer"),
    ({"name": "lr", "values": ["fast"]}, "key 'lr' expects float"),
])
def test_bad_ablation_values_fail_before_any_training(tmp_path, ablation, message):
    cfg = _cfg(tmp_path / "cache", f"bench.ablation={ablation!r}")
    with pytest.raises(ConfigError, match=message) as err:
        run_grid(cfg, tmp_path / "out")
    assert str(err.value).count("bench.ablation") == 1
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_eta_grid_via_cli_one_column_per_value_and_tsne(cache, tmp_path, spy):
    out = tmp_path / "bench"
    code = main(["bench", "--quiet", "--out", str(out), "--cfg-options", *TINY, f"cache_dir={cache}",
                 "defense.recipe=paper", "defense.options.epochs=3", "defense.options.lr=0.5",
                 "bench.ablation={'name': 'eta', 'values': [0, 1e-2]}", "bench.tsne=True", "bench.tsne_points=60"])
    assert code == 0
    assert _columns(out) == ["none", "nft[eta=0]", "nft[eta=0.01]"]
    assert [c["config"].eta for c in spy] == [0, 1e-2]
    assert all(c["config"].shrink == 0 and c["config"].lr == 0.5 for c in spy)  # paper recipe + options kept
    rows = {r["defense"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["nft[eta=0]"]["metrics"] != rows["nft[eta=0.01]"]["metrics"]
    assert "| nft[eta=0] ASR |" in (out / "results.md").read_text()
    # t-SNE: the backdoored model vs the first column, 60 points of which 12 poisoned
    assert (out / "tsne_badnets.png").read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((out / "results.json").read_text())["tsne"]["badnets"]
    assert meta == {"defense": "nft[eta=0]", "points": 60, "poisoned_points": 12}


def test_val_size_columns_use_stratified_subsets(cache, tmp_path, spy):
    cfg = _cfg(cache, "defense.options.epochs=1", "bench.ablation={'name': 'val_size', 'values': [10, 30, 5000]}")
    run_grid(cfg, tmp_path / "out")
    assert _columns(tmp_path / "out") == ["none", "nft[val_size=10]", "nft[val_size=30]", "nft[val_size=5000]"]
    assert [(c["n"], c["per_class"]) for c in spy] == [(10, [1] * 10), (30, [3] * 10)]
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert "needs 500 samples per class" in rows[-1]["error"]  # too large: that cell fails, the grid goes on


def test_variants_reach_nft(cache, tmp_path, spy):
    variants = [{"schedule": "cosine", "alpha": 0.5}, {"augmentation": "none", "eta": 0},
                {"label": "cut", "augmentation": {"name": "cutout", "options": {"length": 4}}},
                {"tune_bias": True, "recipe": "paper"}, {"recipe": "nft+"}]
    cfg = _cfg(cache, "defense.options.epochs=1", f"bench.ablation={ {'variants': variants}!r}")
    run_grid(cfg, tmp_path / "out")
    assert _columns(tmp_path / "out") == ["none", "nft[schedule=cosine,alpha=0.5]", "nft[augmentation=none,eta=0]",
                                          "cut", "nft[tune_bias=True,recipe=paper]", "nft[recipe=nft+]"]
    sched = spy[0]["config"].schedule
    assert (sched.family, sched.alpha, sched.beta) == ("cosine", 0.5, 0.5)
    # the base is the default recipe (surrogate: output bias + averaging, and augmentation auto -> the trigger)
    assert spy[0]["augmentation"].startswith("SurrogateTrigger(kind=both") and spy[0]["config"].average == 0.3
    assert spy[0]["config"].tune_bias == "last" and spy[0]["config"].shrink == 0
    assert spy[1]["augmentation"] == "NoAugmentation()" and spy[1]["config"].eta == 0
    assert spy[2]["augmentation"] == "CutOut(length=4, fill=0.0)" and spy[2]["config"].tune_bias == "last"
    assert spy[3]["config"].tune_bias is True and spy[3]["config"].shrink == 0.0 and spy[3]["config"].average == 0
    assert spy[3]["augmentation"].startswith("MixUp")  # auto follows the variant's recipe: the paper's -> mixup
    assert spy[4]["augmentation"].startswith("MixUp") and spy[4]["config"].shrink == 0.02  # NFT+


def test_validation_subset_indices_are_stratified_nested_and_checked():
    labels = torch.arange(100) % 10
    small, big = validation_subset_indices(labels, 10, seed=3), validation_subset_indices(labels, 50, seed=3)
    assert torch.bincount(labels[small]).tolist() == [1] * 10 and torch.bincount(labels[big]).tolist() == [5] * 10
    assert set(small.tolist()) <= set(big.tolist())  # nested for one seed
    assert not torch.equal(small, validation_subset_indices(labels, 10, seed=4))
    with pytest.raises(DataError, match="multiple of the 10 classes"):
        validation_subset_indices(labels, 15)
    with pytest.raises(DataError, match="only 10"):
        validation_subset_indices(labels, 200)
    assert "size=10" in repr(ValidationSubset(NFT(), 10))


def test_tsne_view_missing_when_the_cell_ran_elsewhere(cache, tmp_path, monkeypatch):
    """Under ``bench --ray`` a cell's purified model never reaches this process: no png, a recorded reason."""
    import nft_vision.bench as vb

    monkeypatch.setattr(vb, "_Observed", lambda defense, observe: defense)  # the observer never runs here
    cfg = _cfg(cache, "defense.options.epochs=1", "bench.defenses=['nft']", "bench.tsne=True")
    run_grid(cfg, tmp_path / "out")
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "another process" in res["tsne_errors"]["badnets"]
    assert not (tmp_path / "out" / "tsne_badnets.png").exists()


def test_nft_recipe_columns(cache, tmp_path, spy):
    """bench columns nft / nft-paper / nft-surrogate: NFT+, the paper's NFT and vision's surrogate recipe, each
    with augmentation auto following its own recipe (mixup, mixup, the gated surrogate trigger)."""
    cfg = _cfg(cache, "defense.options.epochs=1", "bench.defenses=['nft', 'nft-paper', 'nft-surrogate']")
    run_grid(cfg, tmp_path / "out")
    assert _columns(tmp_path / "out") == ["none", "nft", "nft-paper", "nft-surrogate"]
    plus, paper, sur = spy
    assert plus["config"].shrink == 0.02 and plus["augmentation"].startswith("MixUp")
    assert paper["config"].shrink == 0 and paper["config"].average == 0 and paper["augmentation"].startswith("MixUp")
    assert sur["config"].tune_bias == "last" and sur["config"].average == 0.3
    assert sur["augmentation"].startswith("SurrogateTrigger(kind=both")
