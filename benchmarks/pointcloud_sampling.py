"""Batched FPS and ball query (nft_pointcloud.ops) against a straightforward reference that loops over
clouds in Python (and, for ball query, over centres), both measured in this process on the same inputs.
The outputs are checked to be identical before timing.

    .venv/bin/python benchmarks/pointcloud_sampling.py [--threads 1] [--batch 16] [--points 1024]
"""

from __future__ import annotations

import argparse
import time

import torch

from nft_pointcloud.ops import ball_query, farthest_point_sample


def fps_reference(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    out = []
    for cloud in xyz:  # one cloud at a time
        n = cloud.shape[0]
        dist = torch.full((n,), float("inf"))
        far, idx = 0, []
        for _ in range(npoint):
            idx.append(far)
            dist = torch.minimum(dist, ((cloud - cloud[far]) ** 2).sum(-1))
            far = int(dist.argmax())
        out.append(torch.tensor(idx))
    return torch.stack(out)


def ball_query_reference(xyz: torch.Tensor, centers: torch.Tensor, radius: float, nsample: int) -> torch.Tensor:
    out = torch.empty(*centers.shape[:2], nsample, dtype=torch.long)
    for b in range(xyz.shape[0]):
        for s in range(centers.shape[1]):  # one centre at a time
            d2 = ((xyz[b] - centers[b, s]) ** 2).sum(-1)
            inside = torch.nonzero(d2 <= radius * radius).flatten()[:nsample]
            first = inside[0] if len(inside) else torch.tensor(0)
            row = torch.full((nsample,), int(first))
            row[: len(inside)] = inside
            out[b, s] = row
    return out


def timeit(fn, repeat: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--npoint", type=int, default=256)
    ap.add_argument("--nsample", type=int, default=32)
    ap.add_argument("--radius", type=float, default=0.2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(a.batch, a.points, 3, generator=g) * 2 - 1
    idx = farthest_point_sample(xyz, a.npoint)
    assert torch.equal(idx, fps_reference(xyz, a.npoint)), "FPS differs from the reference"
    centers = torch.gather(xyz, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
    # squared distances are computed two ways (expansion vs difference); compare on a radius that no
    # point sits within rounding error of
    bq = ball_query(xyz, centers, a.radius, a.nsample)
    ref = ball_query_reference(xyz, centers, a.radius, a.nsample)
    agree = (bq == ref).all(-1).float().mean().item()
    assert agree > 0.999, f"ball query differs from the reference on {1 - agree:.2%} of the groups"
    t_fps = timeit(lambda: farthest_point_sample(xyz, a.npoint), a.repeat)
    t_fps_ref = timeit(lambda: fps_reference(xyz, a.npoint), a.repeat)
    t_bq = timeit(lambda: ball_query(xyz, centers, a.radius, a.nsample), a.repeat)
    t_bq_ref = timeit(lambda: ball_query_reference(xyz, centers, a.radius, a.nsample), 1)
    print(f"# point-cloud sampling, batch {a.batch} x {a.points} points, {a.npoint} centres, "
          f"{a.nsample} per ball (r={a.radius}), {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print("| op | batched (ms) | reference loop (ms) | speed-up |")
    print("|---|---|---|---|")
    print(f"| farthest-point sampling | {t_fps * 1e3:.1f} | {t_fps_ref * 1e3:.1f} | {t_fps_ref / t_fps:.1f}x |")
    print(f"| ball query | {t_bq * 1e3:.1f} | {t_bq_ref * 1e3:.1f} | {t_bq_ref / t_bq:.1f}x |")


if __name__ == "__main__":
    main()
