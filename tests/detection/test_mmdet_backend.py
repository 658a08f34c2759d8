"""The optional mmdet 3.3 backend (``model.spec = mmdet:CONFIG``): the wrapper predicts exactly what mmdet's
own ``inference_detector`` predicts, returns mmdet's losses in train mode, NFT's masks reach backbone, neck
and head with the core's conformance checks, and ``nft-detect`` attacks, purifies and evaluates an mmdet
detector end to end, writing a purified checkpoint mmdet loads.

Runs whenever mmdet and mmcv's compiled ops import (``bash scripts/install_mmdet.sh``); a fresh clone has
neither, so CI skips this module (tests/detection/test_mmdet_spec.py covers what needs no mmdet)."""

import json
import math

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv.ops")

from nft_core.masks import NeuronMasks  # noqa: E402
from nft_core.testing.conformance import check_fold_equivalence, check_identity_at_one  # noqa: E402
from nft_detection import DetectionAdapter  # noqa: E402
from nft_detection.cli import main  # noqa: E402
from nft_detection.mmdet_backend import (  # noqa: E402
    BUNDLED_CONFIGS,
    TINY_FCOS_CONFIG,
    MMDetDetector,
    build_mmdet_detector,
    load_mmdet_checkpoint,
    mmdet_reference_predict,
    save_mmdet_checkpoint,
)
from nft_detection.models import DETECTOR_MASK_HANDLERS, detector_part  # noqa: E402

SCENES = "data.scenes={'n_train':24,'n_val':8,'n_test':24,'trigger_rate':0.5}"
TINY = [SCENES, "train.epochs=1", "defense.nft_epochs=1"]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _seeded(spec="mmdet:tiny_fcos", seed=0) -> MMDetDetector:
    return build_mmdet_detector(spec, 6).init_weights_seeded(torch.Generator().manual_seed(seed)).eval()


def _batch(size=64, n=2):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 3, size, size, generator=g) * 255).round() / 255  # what a uint8 image holds
    targets = [{"boxes": torch.tensor([[4.0, 6, 28, 30], [32, 24, 60, 56]]), "labels": torch.tensor([1, 3])}
               for _ in range(n)]
    return images, targets


#: one-stage (FCOS: GroupNorm towers) and two-stage (Faster R-CNN: RPN, RoIAlign, FC box head)
KINDS = ["tiny_fcos", "tiny_faster_rcnn"]
LOSSES = {"tiny_fcos": {"loss_cls", "loss_bbox", "loss_centerness"},
          "tiny_faster_rcnn": {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"}}
HEADS = {"tiny_fcos": ("bbox_head",), "tiny_faster_rcnn": ("rpn_head", "roi_head")}


def _thr0(tmp_path, kind="tiny_fcos"):
    """A bundled config with score threshold 0, so a freshly initialised detector outputs boxes."""
    cfg = tmp_path / f"{kind}_thr0.py"
    base = BUNDLED_CONFIGS[kind].with_name("_scenes_test_pipeline.py")  # its `_base_`
    (tmp_path / base.name).write_text(base.read_text())
    text = BUNDLED_CONFIGS[kind].read_text()
    assert "score_thr=0.05" in text
    cfg.write_text(text.replace("score_thr=0.05", "score_thr=0.0"))
    return cfg


@pytest.mark.parametrize("kind", KINDS)
def test_wrapper_predicts_what_mmdet_inference_detector_predicts(tmp_path, kind):
    """Same weights, same image: the wrapper's RGB [0, 1] tensor path and mmdet's own BGR uint8 test pipeline
    give the same boxes, scores and labels."""
    cfg = _thr0(tmp_path, kind)
    model = _seeded(f"mmdet:{cfg}")
    ckpt = save_mmdet_checkpoint(model.state_dict(), tmp_path / "w.pth", [str(i) for i in range(6)])
    image = _batch(n=1)[0][0]
    with torch.no_grad():
        ours = model([image])[0]
    ref = mmdet_reference_predict(cfg, ckpt, image)
    assert len(ours["boxes"]) == len(ref["boxes"]) > 10
    assert torch.equal(ours["labels"], ref["labels"])
    assert torch.allclose(ours["scores"], ref["scores"], atol=1e-5)
    assert torch.allclose(ours["boxes"], ref["boxes"], atol=1e-3)
    # and the checkpoint round-trips into a fresh wrapper
    other = load_mmdet_checkpoint(_seeded(f"mmdet:{cfg}", seed=1), ckpt)
    with torch.no_grad():
        assert torch.equal(other([image])[0]["scores"], ours["scores"])


@pytest.mark.parametrize("kind", KINDS)
def test_train_mode_returns_mmdets_losses_and_gradients_reach_every_part(kind):
    model = _seeded(f"mmdet:{kind}").train()
    images, targets = _batch()
    losses = model(list(images), targets)
    assert set(losses) == LOSSES[kind]
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for part in ("backbone", "neck", *HEADS[kind]):
        grads = [p.grad for n, p in model.mm.named_parameters() if n.startswith(part)]
        assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), part
    with pytest.raises(Exception, match="needs targets"):
        model(list(images))
    model.eval()
    out = model(list(images))
    assert len(out) == 2 and set(out[0]) == {"boxes", "scores", "labels"}
    assert out[0]["labels"].min() >= 1 if len(out[0]["labels"]) else True  # 1-based, as torchvision's


@pytest.mark.parametrize("kind", KINDS)
def test_masks_reach_backbone_neck_and_head_with_core_conformance(tmp_path, kind):
    """NFT's mask sites in an mmdet detector sit in the backbone, the neck and the heads (FCOS's GroupNorm
    towers at γ); masks at 1 are the identity, each masked layer changes the heads' raw outputs, folding is
    exact."""
    model = _seeded(f"mmdet:{_thr0(tmp_path, kind)}")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # as after training: mmdet zero-initialises each residual branch's last BN γ
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
    ad = DetectionAdapter(6)
    batch = _batch()
    inputs = ad.example_input(batch)
    masks = NeuronMasks(model, inputs, handlers=DETECTOR_MASK_HANDLERS)
    parts = {"backbone": 0, "neck": 0, "head": 0}
    for site in masks.sites:
        parts[detector_part(site.name)] += 1
    assert all(parts.values()), parts
    named = dict(model.named_modules())
    for head in HEADS[kind]:
        assert any(s.name.startswith(f"mm.{head}") for s in masks.sites), head
    if kind == "tiny_fcos":
        assert any(isinstance(named[s.name], torch.nn.GroupNorm) for s in masks.sites if s.name.startswith("mm.bbox_head"))
    # the heads' raw outputs, before score threshold and NMS: FCOS's per-level maps; Faster R-CNN's RPN maps
    # and its box head's class scores and deltas for the proposals
    watched = [model.mm.bbox_head] if kind == "tiny_fcos" else [model.mm.rpn_head, model.mm.roi_head.bbox_head]
    captured = []
    hooks = [h.register_forward_hook(lambda mod, args, out: captured.append(out)) for h in watched]

    def flat(out):
        if isinstance(out, torch.Tensor):
            return [out.flatten()]
        return [t for o in (out or []) for t in flat(o)]

    def raw():
        captured.clear()
        with torch.no_grad():
            model(*inputs)
        return torch.cat([t for out in captured for t in flat(out)])

    base = raw()
    for site in masks.sites:
        with torch.no_grad():
            masks.masks[site.key].uniform_(0.25, 1.0, generator=g)
        changed = raw()
        with torch.no_grad():
            masks.masks[site.key].fill_(1.0)
        assert changed.shape != base.shape or not torch.equal(changed, base), site.name
    for h in hooks:
        h.remove()
    masks.remove()
    check_identity_at_one(model, inputs, handlers=DETECTOR_MASK_HANDLERS)
    check_fold_equivalence(model, inputs, atol=1e-4, low=0.7, handlers=DETECTOR_MASK_HANDLERS)


def test_cli_attack_purify_evaluate_an_mmdet_detector(cache, capsys):
    import numpy as np
    from mmdet.apis import inference_detector, init_detector

    atk = cache / "atk"
    assert main(["attack", "--model", "mmdet:tiny_fcos", "--quiet", "--out", str(atk), "--cfg-options", *TINY]) == 0
    meta = json.loads((atk / "attack.json").read_text())
    assert meta["model"] == "mmdet:tiny_fcos" and meta["family"] == "detector" and meta["poisoned_samples"] > 0
    assert {"model.safetensors", "model_mmdet.pth", "attack.json"} <= {p.name for p in atk.iterdir()}
    capsys.readouterr()

    # the user's way in: their mmdet config as --cfg, their mmdet checkpoint
    pur = cache / "pur"
    assert main(["purify", "--cfg", str(TINY_FCOS_CONFIG), "--checkpoint", str(atk / "model_mmdet.pth"), "--quiet",
                 "--out", str(pur), "--cfg-options", *TINY]) == 0
    assert "mask sites backbone" in capsys.readouterr().out
    rep = json.loads((pur / "report.json").read_text())
    assert rep["task"] == "detection" and rep["model"] == f"mmdet:{TINY_FCOS_CONFIG}"
    assert rep["before"] == pytest.approx(meta["metrics"], nan_ok=True)
    assert all(rep["mask_parts"][k] > 0 for k in ("backbone", "neck", "head")), rep["mask_parts"]
    assert {"purified.safetensors", "purified_mmdet.pth", "masks.safetensors"} <= {p.name for p in pur.iterdir()}

    # both purified files evaluate to the report's "after"
    for name in ("purified.safetensors", "purified_mmdet.pth"):
        assert main(["evaluate", "--model", "mmdet:tiny_fcos", "--quiet", "--checkpoint", str(pur / name),
                     "--cfg-options", *TINY]) == 0
        got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert got == pytest.approx(rep["after"], abs=1e-6, nan_ok=True), name
    # and mmdet's own API loads the purified checkpoint (weights only, the classes in its meta)
    det = init_detector(str(TINY_FCOS_CONFIG), str(pur / "purified_mmdet.pth"), device="cpu")
    assert list(det.dataset_meta["classes"]) == rep["classes"]
    inference_detector(det, np.zeros((64, 64, 3), np.uint8))

    ft = cache / "ft"  # a baseline from nft-core on the same mmdet detector
    assert main(["purify", "--model", "mmdet:tiny_fcos", "--defense", "ft", "--checkpoint",
                 str(atk / "model_mmdet.pth"), "--quiet", "--out", str(ft), "--cfg-options", *TINY,
                 "defense.options={'epochs': 1}"]) == 0
    assert json.loads((ft / "report.json").read_text())["defense"] == "ft"


@pytest.mark.parametrize("case", ["class_count", "checkpoint_class_count", "checkpoint_mismatch"])
def test_mmdet_bad_input_exit_2_one_line_no_run_dir(cache, capsys, case):
    five = cache / "five.py"
    five.write_text(TINY_FCOS_CONFIG.read_text().replace("num_classes=6", "num_classes=5")
                    .replace("./_scenes_test_pipeline.py", str(TINY_FCOS_CONFIG.with_name("_scenes_test_pipeline.py"))))
    if case == "class_count":
        args, expect = ["--model", f"mmdet:{five}"], "configured for 5 categories but the data has 6"
    elif case == "checkpoint_class_count":  # weights of a 5-category detector, the 6-category config
        ckpt = save_mmdet_checkpoint(build_mmdet_detector(f"mmdet:{five}", 5).state_dict(), cache / "five.pth")
        args, expect = ["--model", "mmdet:tiny_fcos", "--checkpoint", str(ckpt)], "the data has 6 categories"
    else:
        ckpt = cache / "other.pth"
        torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, ckpt)
        args, expect = ["--model", "mmdet:tiny_fcos", "--checkpoint", str(ckpt)], "does not fit the model"
    out = cache / "run"
    code = main(["purify", "--quiet", *args, "--out", str(out), "--cfg-options", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists() and not list(cache.glob(".run*"))


def test_seeded_init_is_reproducible_and_leaves_the_global_rng_alone():
    """The same generator seed gives the same weights whatever state the global RNG is in, another seed
    other weights; initialisation leaves the global RNG's state as it found it; mmdet's constants (the
    focal-loss prior on the class logits' bias) stay."""
    models = []
    for advance in (0, 7, 0):  # building draws from the global RNG (as any nn.Module); vary its state
        torch.rand(advance)
        models.append(build_mmdet_detector("mmdet:tiny_fcos", 6))
    torch.rand(3)
    out = []
    for m, seed in zip(models, (0, 0, 1)):
        state = torch.random.get_rng_state()
        out.append(m.init_weights_seeded(torch.Generator().manual_seed(seed)).state_dict())
        assert torch.equal(torch.random.get_rng_state(), state)
        torch.rand(5)
    a, b, c = out
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if k.endswith("conv.weight"))
    bias = a["mm.bbox_head.conv_cls.bias"]
    assert torch.allclose(bias, torch.full_like(bias, -math.log((1 - 0.01) / 0.01)), atol=1e-5)
