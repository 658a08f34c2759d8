"""Video augmentations: one λ for every frame of a clip, deterministic under a generator, no global RNG."""

import pytest
import torch

from nft_core.contracts import MixedTarget
from nft_core.testing import check_augmentation_consistent
from nft_video.augment import Compose, TemporalJitter, VideoCutMix, VideoMixUp


def _batch(b=6, t=5):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, t, 3, 8, 8, generator=g), torch.arange(b)  # labels = clip ids (recover the pairing)


def _frame_lams(x, out, perm, lam_of):
    """Solve λ per frame from out_t = λ x_i,t + (1-λ) x_j,t and check every frame of a clip agrees."""
    for i in range(x.shape[0]):
        j = int(perm[i])
        if j == i:
            continue
        for t in range(x.shape[1]):
            d = (x[i, t] - x[j, t]).flatten()
            lam_t = float(((out[i, t] - x[j, t]).flatten() @ d) / (d @ d))
            assert lam_t == pytest.approx(lam_of(i), abs=1e-4), f"clip {i} frame {t}: λ {lam_t} != {lam_of(i)}"


@pytest.mark.parametrize("per_clip", [False, True])
def test_video_mixup_same_lambda_on_every_frame(per_clip):
    def check(batch, aug):
        x, y = batch
        out, tgt = aug
        assert isinstance(tgt, MixedTarget) and torch.equal(tgt.a, y)
        lam = tgt.lam
        _frame_lams(x, out, tgt.b, (lambda i: float(lam[i])) if per_clip else (lambda i: lam))

    check_augmentation_consistent(VideoMixUp(1.0, per_clip=per_clip), _batch(), check)


def test_video_cutmix_same_box_on_every_frame():
    def check(batch, aug):
        x, y = batch
        out, tgt = aug
        changed = (out != x).any(dim=2)  # (B, T, H, W)
        box = changed.any(dim=(0, 1))
        for i in range(x.shape[0]):
            j = int(tgt.b[i])
            if j != i:
                assert torch.equal(out[i][..., box], x[j][..., box])  # every frame gets the same box
        assert tgt.lam == pytest.approx(1 - box.float().mean().item(), abs=0.05) or box.sum() == 0

    check_augmentation_consistent(VideoCutMix(1.0), _batch(), check, seed=3)


def test_temporal_jitter_and_compose():
    def check(batch, aug):
        x, y = batch
        out, yy = aug
        assert torch.equal(yy, y) and out.shape == x.shape
        for i in range(x.shape[0]):  # every output frame is one of the clip's own frames, in order
            src = [int(((x[i] - out[i, t]).abs().flatten(1).sum(1) == 0).nonzero()[0]) for t in range(x.shape[1])]
            assert src == sorted(src)

    check_augmentation_consistent(TemporalJitter(2), _batch(), check)
    out = Compose(TemporalJitter(1), VideoMixUp())(_batch(), torch.Generator().manual_seed(0))
    assert isinstance(out[1], MixedTarget)
