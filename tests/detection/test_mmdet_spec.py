"""The parts of the optional mmdet backend that need no mmdet (these run everywhere, CI included): telling an
mmdet config from an nft-detect config, the ``mmdet:`` spec's errors (exit 2, one line, no run directory),
the mmdet checkpoint writer and the backbone/neck/head split of mmdet module names. The backend itself is
tested in test_mmdet_backend.py whenever mmdet imports."""

import json

import pytest
import torch

from nft_detection import mmdet_backend
from nft_detection.cli import DetectCLI, main
from nft_detection.mmdet_backend import (
    BUNDLED_CONFIGS,
    TINY_FCOS_CONFIG,
    is_mmdet_config,
    is_mmdet_spec,
    mmdet_checkpoint_writer,
    mmdet_config_path,
    save_mmdet_checkpoint,
)
from nft_detection.models import detector_part

CONFIGS = TINY_FCOS_CONFIG.parent.parent


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NFT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_mmdet_config_told_apart_from_nft_detect_configs(tmp_path):
    assert all(is_mmdet_config(p) for p in BUNDLED_CONFIGS.values())
    for name in ("voc07.py", "coco.py", "scenes_detector.py"):
        assert not is_mmdet_config(CONFIGS / name), name
    broken = tmp_path / "broken.py"
    broken.write_text("model = dict(type='FCOS'\n")
    assert not is_mmdet_config(broken)
    assert is_mmdet_spec("mmdet:x.py") and not is_mmdet_spec("tiny_fcos") and not is_mmdet_spec(None)
    assert mmdet_config_path("mmdet:tiny_fcos") == TINY_FCOS_CONFIG
    assert mmdet_config_path("mmdet:tiny_faster_rcnn").name == "tiny_faster_rcnn_scenes.py"


def test_mmdet_config_given_as_cfg_becomes_the_model():
    cli = DetectCLI()
    cfg = cli.load(cli.parser().parse_args(["purify", "--cfg", str(TINY_FCOS_CONFIG), "--cfg-options",
                                            "defense.nft_epochs=3"]))
    assert cfg.model.spec == f"mmdet:{TINY_FCOS_CONFIG}" and cfg.model.family == "detector"
    assert cfg.defense.nft_epochs == 3 and cfg.attack.mode == "disappear"  # the detector defaults underneath
    cfg = cli.load(cli.parser().parse_args(["purify", "--model", "mmdet:tiny_fcos"]))
    assert cfg.model.family == "detector" and cfg.model.kwargs == {}


@pytest.mark.parametrize("case", ["not_installed", "multilabel", "cfg_and_model", "missing_config"])
def test_mmdet_spec_bad_input_exit_2_one_line_no_run_dir(cache, capsys, monkeypatch, case):
    monkeypatch.setattr(mmdet_backend, "mmdet_available", lambda: False)  # as on a machine without mmdet
    if case == "not_installed":
        args, expect = ["--model", "mmdet:tiny_fcos"], "scripts/install_mmdet.sh"
    elif case == "multilabel":
        args, expect = ["--family", "multilabel", "--model", "mmdet:tiny_fcos"], "add --family detector"
    elif case == "cfg_and_model":
        args, expect = ["--cfg", str(TINY_FCOS_CONFIG), "--model", "tiny_fcos"], "do not also give --model"
    else:
        args, expect = ["--model", "mmdet:/nonexistent/cfg.py"], "mmdet config file /nonexistent/cfg.py not found"
    out = cache / "run"
    code = main(["purify", "--quiet", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not out.exists() and not list(cache.glob(".run*"))


def test_mmdet_checkpoint_writer_strips_the_wrapper_prefix_and_loads_without_pickle(tmp_path):
    from nft_core.checkpoint import save_state_dict

    state = {"mm.backbone.conv1.weight": torch.randn(4, 3, 3, 3), "mm.bbox_head.conv_cls.bias": torch.randn(6)}
    save_state_dict(state, tmp_path / "purified.safetensors")
    mmdet_checkpoint_writer(["a", "b"])(tmp_path / "purified_mmdet.pth")
    ck = torch.load(tmp_path / "purified_mmdet.pth", weights_only=True)  # no pickled objects
    assert set(ck["state_dict"]) == {"backbone.conv1.weight", "bbox_head.conv_cls.bias"}
    assert torch.equal(ck["state_dict"]["backbone.conv1.weight"], state["mm.backbone.conv1.weight"])
    assert ck["meta"]["dataset_meta"]["classes"] == ["a", "b"]
    save_mmdet_checkpoint({"neck.w": torch.ones(2)}, tmp_path / "plain.pth", extra_meta={"note": "x"})
    ck = torch.load(tmp_path / "plain.pth", weights_only=True)
    assert set(ck["state_dict"]) == {"neck.w"} and ck["meta"]["note"] == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.pth", "purified.safetensors", "purified_mmdet.pth"]


def test_mmdet_module_names_split_into_backbone_neck_head():
    assert detector_part("mm.backbone.layer1.0.conv1") == "backbone"
    assert detector_part("mm.neck.lateral_convs.0.conv") == "neck"
    assert detector_part("mm.bbox_head.cls_convs.0.gn") == "head"
    assert detector_part("mm.rpn_head.rpn_conv") == "head" and detector_part("mm.roi_head.bbox_head.fc_cls") == "head"
    assert detector_part("backbone.fpn.inner_blocks.0") == "neck"  # torchvision names unchanged
    assert json.dumps(detector_part("head.classification_head.conv.0")) == '"head"'
