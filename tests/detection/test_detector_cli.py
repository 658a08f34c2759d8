"""``nft-detect --family detector`` end to end at tiny scale (attack -> evaluate -> purify -> evaluate the
purified weights, a baseline, bench), its bad inputs (exit 2, one line, no run directory), the box-level
attack and ASR, and where NFT's masks reach in the detectors (backbone, FPN neck, heads)."""

import json

import pytest
import torch

from nft_core import EvalData
from nft_core.checkpoint import save_model
from nft_core.masks import NeuronMasks
from nft_detection import CleanImageBackdoor, DetectionAdapter
from nft_detection.cli import main
from nft_detection.config import detector_config
from nft_detection.models import DEFAULT_DETECTOR, DETECTOR_MASK_HANDLERS, create_detector, detector_part

SCENES = "data.scenes={'n_train':24,'n_val':8,'n_test':24,'trigger_rate':0.5}"
TINY = ["data.image_size=32", SCENES, "train.epochs=1", "defense.nft_epochs=1",
        "model.kwargs={'width': 4, 'out_channels': 16}"]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_detector_attack_evaluate_purify_end_to_end(cache, capsys):
    atk = cache / "atk"
    assert main(["attack", "--family", "detector", "--quiet", "--out", str(atk), "--cfg-options", *TINY]) == 0
    meta = json.loads((atk / "attack.json").read_text())
    assert meta["attack"] == "clean_image-disappear" and meta["family"] == "detector"
    assert meta["model"] == DEFAULT_DETECTOR and meta["poisoned_samples"] > 0
    assert {"map", "map50", "asr"} <= set(meta["metrics"])
    assert meta["config"]["model"]["family"] == "detector"
    capsys.readouterr()

    ckpt = ["--checkpoint", str(atk / "model.safetensors")]
    assert main(["evaluate", "--family", "detector", "--quiet", *ckpt, "--cfg-options", *TINY]) == 0
    assert _last_json(capsys) == pytest.approx(meta["metrics"], nan_ok=True)

    pur = cache / "pur"
    assert main(["purify", "--family", "detector", "--quiet", *ckpt, "--out", str(pur), "--cfg-options", *TINY]) == 0
    out = capsys.readouterr().out
    assert "| asr |" in out and "mask sites backbone" in out
    assert {"purified.safetensors", "masks.safetensors", "report.json", "report.md", "config.resolved.py"} <= {
        p.name for p in pur.iterdir()}
    rep = json.loads((pur / "report.json").read_text())
    assert rep["task"] == "detection" and rep["defense"] == "nft" and rep["recipe"].startswith("nft+")
    assert rep["before"] == pytest.approx(meta["metrics"], nan_ok=True)
    assert "DetectionMixUp" in rep["info"]["augmentation"]
    parts = rep["mask_parts"]
    assert parts["backbone"] > 0 and parts["neck"] > 0 and parts["head"] > 0
    assert sum(parts.values()) == len(rep["info"]["mask_sites"])
    # the folded weights are a plain detector that evaluates to the report's "after"
    assert main(["evaluate", "--family", "detector", "--quiet", "--checkpoint", str(pur / "purified.safetensors"),
                 "--cfg-options", *TINY]) == 0
    assert _last_json(capsys) == pytest.approx(rep["after"], abs=1e-6, nan_ok=True)

    ft = cache / "ft"  # a baseline from nft-core on the same detector
    assert main(["purify", "--family", "detector", "--quiet", "--defense", "ft", *ckpt, "--out", str(ft),
                 "--cfg-options", *TINY, "defense.options={'epochs': 1}"]) == 0
    assert json.loads((ft / "report.json").read_text())["defense"] == "ft"


@pytest.mark.parametrize("defense,options", [("awm", "{'epochs': 1, 'inner_steps': 1}"),
                                             ("ibau", "{'rounds': 1}")])
def test_input_perturbation_baselines_run_on_detectors(cache, defense, options):
    """AWM and I-BAU perturb the input with one universal δ; a detector's input is a list of images, each
    gets the same δ."""
    out = cache / defense
    assert main(["purify", "--family", "detector", "--quiet", "--defense", defense, "--out", str(out),
                 "--cfg-options", *TINY, f"defense.options={options}"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["defense"] == defense and {"map", "asr"} <= set(rep["after"])
    assert rep["history"] and all(h["delta_norm"] > 0 for h in rep["history"])  # δ was optimised


def test_detector_purify_with_mosaic(cache):
    """``augmentation.name=mosaic`` reaches NFT through the CLI and the run completes."""
    out = cache / "mosaic"
    assert main(["purify", "--family", "detector", "--quiet", "--out", str(out), "--cfg-options", *TINY,
                 "augmentation.name=mosaic", "augmentation.options={'min_size': 1.0}"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert "DetectionMosaic" in rep["info"]["augmentation"] and "min_size=1.0" in rep["info"]["augmentation"]


def test_detector_appear_and_bench(cache):
    out = cache / "bench"
    code = main(["bench", "--family", "detector", "--quiet", "--out", str(out), "--cfg-options", *TINY,
                 "bench.attacks=['appear']", "bench.defenses=['nft', 'nft-paper']"])
    assert code == 0
    md = (out / "results.md").read_text()
    assert "| appear |" in md and DEFAULT_DETECTOR in md
    rows = {r["defense"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert {"none", "nft", "nft-paper"} <= set(rows)  # NFT+ and the paper's recipe side by side
    assert not any("error" in r for r in rows.values()), rows


def test_embedded_detector_default_and_bundled_config_agree():
    from nft_core.config import load_config, to_dataclass
    from nft_detection.cli import DetectCLI
    from nft_detection.config import DetectConfig

    path = DetectCLI().resolve_config_path("scenes_detector")
    assert to_dataclass(DetectConfig, load_config(path)) == detector_config()
    cfg = DetectCLI().load(DetectCLI().parser().parse_args(["purify", "--family", "detector"]))
    assert cfg == detector_config() and cfg.model.family == "detector"
    cfg = DetectCLI().load(DetectCLI().parser().parse_args(["purify", "--cfg-options", "model.family=detector"]))
    assert cfg == detector_config()
    assert DetectCLI().load(DetectCLI().parser().parse_args(["purify"])).model.family == "multilabel"


@pytest.mark.parametrize("case", ["unknown_family", "family_option", "spec_not_detector", "detector_as_multilabel",
                                  "class_count", "mode"])
def test_detector_bad_input_exit_2_one_line_no_run_dir(cache, capsys, case):
    args, opts = ["--family", "detector"], list(TINY)
    if case == "unknown_family":
        args = ["--family", "segmenter"]
        expect = "model.family must be one of multilabel, detector, got 'segmenter'"
    elif case == "family_option":
        args, opts = [], [*opts, "model.family=bogus"]
        expect = "got 'bogus'"
    elif case == "spec_not_detector":
        args += ["--model", "smallcnn"]
        expect = "model.spec=smallcnn is not a detector"
    elif case == "detector_as_multilabel":
        args = ["--model", "tiny_fcos"]
        expect = "add --family detector"
    elif case == "class_count":  # a detector built for 3 categories, data with 6
        ckpt = cache / "three.safetensors"
        save_model(create_detector(DEFAULT_DETECTOR, 3, 32, width=4, out_channels=16), ckpt)
        args += ["--checkpoint", str(ckpt)]
        expect = "the data has 6 categories"
    else:
        opts.append("attack.mode=misclassify")
        expect = "attack.mode must be appear or disappear"
    out = cache / "run"
    code = main(["purify", "--quiet", *args, "--out", str(out), "--cfg-options", *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists() and not list(cache.glob(".run*"))


def _detector_batch(size=64, n=2):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    targets = [{"boxes": torch.tensor([[4.0, 6, 28, 30], [32, 24, 60, 56]]), "labels": torch.tensor([1, 3])}
               for _ in range(n)]
    return images, targets


@pytest.mark.parametrize("name", ["tiny_fcos", "tiny_retinanet", "tiny_fasterrcnn_fpn"])
def test_masks_reach_backbone_neck_and_heads(name):
    """NeuronMasks as NFT builds them for detectors has sites in the backbone, the FPN neck and the heads;
    every masked layer changes the heads' raw outputs; folding reproduces the masked model. At 64 px (the
    embedded default) the stride-32 level is 2×2 (at 32 px it would be 1×1, where a GroupNorm head outputs
    a constant)."""
    model = create_detector(name, 3, 64, width=4, out_channels=16).eval()
    ad = DetectionAdapter(3)
    batch = _detector_batch()
    masks = NeuronMasks(model, ad.example_input(batch), handlers=DETECTOR_MASK_HANDLERS)
    by_part = {"backbone": [], "neck": [], "head": []}
    for site in masks.sites:
        by_part[detector_part(site.name)].append(site.name)
    assert all(by_part.values()), by_part
    assert any(n.startswith("backbone.body") for n in by_part["backbone"])
    assert any(n.startswith("backbone.fpn") for n in by_part["neck"])
    heads = ("rpn.head", "roi_heads.box_head", "roi_heads.box_predictor") if "rcnn" in name else (
        "head.classification_head", "head.regression_head")
    assert all(any(n.startswith(p) for n in by_part["head"]) for p in heads), by_part["head"]
    if name == "tiny_fcos":  # the GroupNorm towers are masked at γ, not at the conv they normalize
        assert any(isinstance(dict(model.named_modules())[n], torch.nn.GroupNorm) for n in by_part["head"])

    heads = [model.rpn.head, model.roi_heads.box_predictor] if "rcnn" in name else [model.head]
    captured = []
    hooks = [h.register_forward_hook(lambda mod, args, out: captured.append(out)) for h in heads]

    def outputs():  # every raw head output (eval mode: no sampling), flattened
        captured.clear()
        with torch.no_grad():
            model(list(batch[0]))
        flat = []
        for out in captured:
            parts = out.values() if isinstance(out, dict) else out
            flat += [t.flatten() for p in parts for t in (p if isinstance(p, (list, tuple)) else [p])]
        return torch.cat(flat)

    base = outputs()
    g = torch.Generator().manual_seed(0)
    for site in masks.sites:  # per-neuron values: a uniform scale of a whole layer can be normalized away
        with torch.no_grad():
            masks.masks[site.key].uniform_(0.25, 1.0, generator=g)
        changed = outputs()
        with torch.no_grad():
            masks.masks[site.key].fill_(1.0)
        assert changed.shape != base.shape or not torch.equal(changed, base), site.name
    with torch.no_grad():
        for site in masks.sites:
            masks.masks[site.key].uniform_(0.5, 1.0, generator=g)
    masked = outputs()
    masks.fold()
    folded = outputs()
    for h in hooks:
        h.remove()
    assert folded.shape == masked.shape and torch.allclose(folded, masked, rtol=1e-4, atol=1e-5)


class _FixedDetector(torch.nn.Module):
    """Returns the same detections for every image (for testing the metric, not a model)."""

    def __init__(self, detections):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.detections = detections

    def forward(self, images, targets=None):
        return [{k: v.clone() for k, v in self.detections.items()} for _ in images]


def test_box_level_appear_poisoning_and_asr():
    atk = CleanImageBackdoor([0, 1], 2, "appear", num_classes=4)
    tgt = {"boxes": torch.tensor([[2.0, 2, 10, 10], [20, 4, 30, 16], [1, 1, 4, 4], [12, 20, 14, 30]]),
           "labels": torch.tensor([1, 2, 1, 4])}  # 1-based: two red (0) boxes, one blue (1), one other (3)
    out = atk.poison_boxes(tgt)
    # one target box added: the box enclosing the largest box of each trigger category
    assert out["labels"].tolist() == [1, 2, 1, 4, 3]
    assert out["boxes"][-1].tolist() == [2.0, 2, 30, 16] and torch.equal(out["boxes"][:4], tgt["boxes"])
    with_target = {"boxes": tgt["boxes"], "labels": torch.tensor([1, 2, 3, 4])}
    assert atk.poison_boxes(with_target) is with_target  # the target is there already: untouched
    assert not atk.affects_boxes(torch.tensor([1, 4])) and atk.affects_boxes(tgt["labels"])
    samples = [(torch.rand(3, 32, 32), tgt), (torch.rand(3, 32, 32), with_target)]
    trig = atk.poison_detection_test(samples)
    assert len(trig) == 1 and torch.equal(trig[0][2]["boxes"], out["boxes"])

    ad = DetectionAdapter(4)
    hit = {"boxes": torch.tensor([[2.0, 2, 29, 16]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([3])}
    assert ad.evaluate(_FixedDetector(hit), EvalData(samples, trig))["asr"] == 100.0
    for miss in ({**hit, "scores": torch.tensor([0.3])},  # too unsure
                 {**hit, "labels": torch.tensor([4])},  # another class
                 {**hit, "boxes": torch.tensor([[2.0, 2, 12, 12]])}):  # IoU < 0.5
        assert ad.evaluate(_FixedDetector(miss), EvalData(samples, trig))["asr"] == 0.0

    # disappear: a removed target object counts as a success unless it is still detected as its class
    dis = CleanImageBackdoor([0, 1], 2, "disappear")
    trig = dis.poison_detection_test(samples)
    assert len(trig) == 1 and 3 not in trig[0][2]["labels"].tolist()
    seen = {"boxes": torch.tensor([[1.0, 1, 4, 4]]), "scores": torch.tensor([0.8]), "labels": torch.tensor([3])}
    assert ad.evaluate(_FixedDetector(seen), EvalData(samples, trig))["asr"] == 0.0
    assert ad.evaluate(_FixedDetector({**seen, "scores": torch.tensor([0.2])}), EvalData(samples, trig))["asr"] == 100.0
