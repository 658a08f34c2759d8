"""The surrogate trigger on clips (B, T, C, H, W) and its video config name (docs/method.md)."""

import pytest
import torch

from nft_core import SurrogateTrigger


def test_clips_get_one_static_patch_on_every_frame_and_video_builds_it():
    from nft_video.config import VideoConfig
    from nft_video.workflow import build_augmentation as build_video_augmentation

    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 3, 8, 8, generator=g) * 0.5  # (B, T, C, H, W)
    y = torch.arange(12) % 3
    model = torch.nn.Sequential(torch.nn.Flatten(2), torch.nn.Linear(3 * 8 * 8, 3))
    clip_model = torch.nn.Sequential()
    clip_model.forward = lambda v: model(v).mean(1)  # frame logits averaged over time
    clip_model.add_module("m", model)
    aug = SurrogateTrigger(steps=20).bind(clip_model)
    xb, target, *_ = aug((x, y), torch.Generator().manual_seed(0))
    assert aug.mask.shape == (1, 1, 1, 8, 8) and aug.pattern.shape == (1, 1, 3, 8, 8)
    xt = xb[12:]
    # the same mask and pattern on every frame of every clip
    expected = (1 - aug.mask) * x + aug.mask * aug.pattern
    assert xb.shape == (24, 3, 3, 8, 8) and torch.allclose(xt, expected) and torch.equal(target.a[12:], y)
    cfg = VideoConfig()
    cfg.augmentation.name, cfg.augmentation.options = "surrogate", {"kind": "l2", "eps": 1.0}
    built = build_video_augmentation(cfg)
    assert isinstance(built, SurrogateTrigger) and "VideoMixUp" in repr(built.base) and built.eps == 1.0


def test_the_default_recipe_is_the_per_class_surrogate_and_auto_follows_the_recipe():
    """``defense.recipe=surrogate`` (the default) resolves to the paper's NFT + every masked bias +
    averaging + 120 epochs, and ``augmentation.name=auto`` to the per-class surrogate with a disjoint second
    patch; under ``nft+`` and ``paper`` auto means video MixUp, and options merge over the defaults."""
    from nft_core.errors import ConfigError
    from nft_video.augment import VideoMixUp
    from nft_video.config import VideoConfig
    from nft_video.workflow import build_augmentation as build_video_augmentation

    cfg = VideoConfig()
    opts = cfg.defense.resolved_options()
    assert opts["tune_bias"] is True and opts["average"] == 0.3 and opts["epochs"] == 120 and "shrink" not in opts
    aug = build_video_augmentation(cfg)
    assert isinstance(aug, SurrogateTrigger) and aug.search == "per_class" and aug.steps == 200
    assert aug.disjoint == "alone" and aug.disjoint_count == 3 and aug.clean_fraction == 0.5 and isinstance(aug.base, VideoMixUp)
    cfg.augmentation.options = {"steps": 30}
    assert build_video_augmentation(cfg).steps == 30 and build_video_augmentation(cfg).search == "per_class"
    cfg.augmentation.options = {"kind": "l2"}  # the patch-only defaults (per-class search, disjoint) drop out
    l2 = build_video_augmentation(cfg)
    assert l2.kind == "l2" and l2.search == "untargeted" and l2.disjoint == "off" and l2.clean_fraction == 0.5
    cfg.augmentation.options = {}
    for recipe in ("nft+", "paper"):
        cfg.defense.recipe = recipe
        assert isinstance(build_video_augmentation(cfg), VideoMixUp)
        assert "tune_bias" not in cfg.defense.resolved_options()
    cfg.defense.recipe = "best"
    with pytest.raises(ConfigError, match="surrogate"):
        cfg.defense.resolved_options()


def test_oracle_benchmark_measures_how_much_of_each_kept_patch_lies_on_the_real_trigger():
    """``benchmarks/video_oracle.py``'s diagnosis: the area of every kept patch and its part on the pixels the
    patch attack overwrites (none for the blend, which overwrites nothing)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from video_oracle import mask_in_trigger

    from nft_video.attacks import BlendTrigger, PatchTrigger

    aug = SurrogateTrigger(kind="patch", disjoint="alone")
    assert mask_in_trigger(aug, PatchTrigger()) is None  # nothing searched yet
    aug.mask = torch.zeros(1, 1, 1, 32, 32)
    aug.mask[..., 27:29, 27:31] = 1.0  # half of the 4×4 checkerboard at rows/cols 27–30
    aug.mask[..., 0, 0] = 0.5
    aug.mask2 = torch.zeros(1, 1, 1, 32, 32)
    aug.mask2[..., 29:31, 27:31] = 0.5
    rows = mask_in_trigger(aug, PatchTrigger())
    assert rows == [{"which": "patch", "area": 8.5, "in_trigger": 8.0, "trigger_px": 16},
                    {"which": "disjoint", "area": 4.0, "in_trigger": 4.0, "trigger_px": 16}]
    assert mask_in_trigger(aug, BlendTrigger())[0]["trigger_px"] == 0


def test_temporal_jitter_on_top_of_the_surrogate_passes_on_nft_hooks():
    """``augmentation.jitter`` wraps the augmentation in ``Compose``, which must not hide the surrogate's
    ``bind`` from NFT (else the first step raises "call bind(model) first"): ``Compose`` hands ``bind``, the
    ``distill`` reference and the search's stats through."""
    import copy

    from nft_video.augment import Compose
    from nft_video.config import VideoConfig
    from nft_video.workflow import build_augmentation as build_video_augmentation

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 3, 3, 8, 8, generator=g) * 0.5, torch.arange(12) % 3
    model = torch.nn.Sequential(torch.nn.Flatten(2), torch.nn.Linear(3 * 8 * 8, 3))
    clip_model = torch.nn.Sequential()
    clip_model.forward = lambda v: model(v).mean(1)
    clip_model.add_module("m", model)
    cfg = VideoConfig()  # the default recipe: augmentation "auto" -> the per-class surrogate
    cfg.augmentation.jitter = 1
    cfg.augmentation.options = {"steps": 5, "distill": 0.5, "disjoint": "off"}
    aug = build_video_augmentation(cfg)
    assert isinstance(aug, Compose) and isinstance(aug.augs[1], SurrogateTrigger)
    assert aug.wants_reference and aug.stats == {} and aug.requested_guard is None and aug.requested_shrink == 0.0
    aug.bind(clip_model)  # what NFT does before its first step
    reference = copy.deepcopy(clip_model)
    aug.set_reference(reference)
    assert aug.augs[1].model is clip_model and aug.augs[1].reference is reference
    xb, target, *_ = aug((x, y), torch.Generator().manual_seed(0))
    assert xb.shape[0] > x.shape[0]  # triggered and clean copies were appended
    assert set(aug.stats["mask_l1_per_class"]) == {0, 1, 2}  # the per-class search ran
    aug.augs[1].requested_guard, aug.augs[1].requested_shrink = 2.0, 0.02
    assert aug.requested_guard == 2.0 and aug.requested_shrink == 0.02
