"""The clean test confusion matrix of a cached backdoored video model (rows: true class, columns: predicted),
and its accuracy on the validation clips: where NFT's ACC cost falls (docs/results/video.md):

    uv run python benchmarks/video_confusion.py seed=1
    NFT_CACHE_DIR=/path/to/other/cache uv run python benchmarks/video_confusion.py
"""

from __future__ import annotations

import sys

import torch

from nft_core.config import load_config, to_dataclass
from nft_video.adapter import VideoAdapter
from nft_video.config import VideoConfig
from nft_video.workflow import backdoor


def main() -> None:
    torch.set_num_threads(1)
    cfg = to_dataclass(VideoConfig, load_config(None, sys.argv[1:]))
    run = backdoor(cfg)
    ad = VideoAdapter(run.num_classes)
    pred, (y,) = ad.predict(run.model, run.eval_data.clean)
    conf = torch.zeros(run.num_classes, run.num_classes, dtype=torch.long)
    for t, p in zip(y.tolist(), pred.tolist()):
        conf[t, p] += 1
    print("test confusion (rows: true class, columns: predicted):")
    print(conf)
    pv, (yv,) = ad.predict(run.model, run.val)
    print(f"validation accuracy {100 * float((pv == yv).float().mean()):.2f} on {len(yv)} clips")


if __name__ == "__main__":
    main()
