"""NFT speed on the paper's protocol, measured side by side in one process.

PreActResNet-18, 10 classes, 500 validation images at 32×32, 100 epochs of batch 128 (400 steps).
Prints (and with --out writes CSV + Markdown):
  1. step throughput: plain fine-tuning of all weights vs masked steps (NFT), fp32 and bf16 autocast,
     optionally channels-last;
  2. NFT's protocol run, wall time from model-on-device to purified (folded) model;
  3. evaluation throughput on 10k images;
  4. wall time of each baseline defense at its paper defaults on the same model and data, and NFT's ratio.

    uv run python benchmarks/nft_speed.py --device cuda --out benchmarks/results/gpu
    uv run python benchmarks/nft_speed.py --device cpu --quick          # CPU sanity / CPU step ratio
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nft_core import NFT, ClassificationAdapter, NeuronMasks, TensorData
from nft_core.defenses import DEFENSES
from nft_vision.models import PreActResNet18


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_throughput(model, x, y, device, *, masked: bool, amp: bool, steps: int, warmup: int) -> float:
    """Images/s of SGD steps at batch x.shape[0]: all weights (plain) or masks only (NFT)."""
    model = model.train(False)
    if masked:
        masks = NeuronMasks(model, x[:2])
        params = list(masks.parameters())
        for p in model.parameters():
            p.requires_grad_(False)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
        params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def one():
        with ctx:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if masked:
            masks.clip_()

    for _ in range(warmup):
        one()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    sync(device)
    dt_ = time.perf_counter() - t0
    if masked:
        masks.remove()
    return steps * x.shape[0] / dt_


@torch.no_grad()
def eval_throughput(model, x, device, batch: int, amp: bool) -> float:
    model.eval()
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def once():
        with ctx:
            for s in range(0, x.shape[0], batch):
                model(x[s : s + batch]).argmax(-1)

    once()  # warm-up: cudnn picks kernels for the full and the last partial batch shapes
    sync(device)
    t0 = time.perf_counter()
    once()
    sync(device)
    return x.shape[0] / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small settings (CPU sanity check)")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--baselines", nargs="*", default=["ft", "ftsam", "anp", "awm", "rnp", "ibau", "nad", "fp"])
    ap.add_argument("--out", help="folder for results.csv / results.md")
    ap.add_argument("--steps", type=int, help="timed steps per throughput figure (default 200, quick 5)")
    ap.add_argument("--width", type=int, help="PreActResNet-18 base width (default 64, quick 16)")
    ap.add_argument("--skip-protocol", action="store_true", help="only the step and evaluation figures")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    g = torch.Generator().manual_seed(0)
    width = args.width or (16 if args.quick else 64)
    steps, warmup = (5, 2) if args.quick else (200, 30)
    if args.steps:
        steps, warmup = args.steps, max(2, args.steps // 5)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    rows = []

    header = (f"# NFT speed — {name}, torch {torch.__version__}, {dt.date.today().isoformat()}"
              f"{' (quick settings)' if args.quick else ''}")

    def record(what, value, unit, note=""):
        rows.append({"measure": what, "value": round(value, 3), "unit": unit, "note": note})
        print(f"{what:55s} {value:12.2f} {unit} {note}", flush=True)
        if args.out:  # rewritten after every figure, so a run cut short keeps what it measured
            write(Path(args.out), header, rows, name)

    model = PreActResNet18(num_classes=10, width=width).to(device)
    x = torch.rand(128, 3, 32, 32, generator=g).to(device)
    y = torch.randint(10, (128,), generator=g).to(device)
    for amp in ([False] if device.type == "cpu" else [False, True]):
        for cl in ([False] if device.type == "cpu" else [False, True]):
            m = model.to(memory_format=torch.channels_last) if cl else model.to(memory_format=torch.contiguous_format)
            xx = x.to(memory_format=torch.channels_last) if cl else x
            tag = f"{'bf16' if amp else 'fp32'}{' channels_last' if cl else ''}"
            plain = step_throughput(m, xx, y, device, masked=False, amp=amp, steps=steps, warmup=warmup)
            masked = step_throughput(m, xx, y, device, masked=True, amp=amp, steps=steps, warmup=warmup)
            record(f"plain fine-tune step [{tag}]", plain, "img/s")
            record(f"masked (NFT) step [{tag}]", masked, "img/s", f"ratio {masked / plain:.3f}")
    model = model.to(memory_format=torch.contiguous_format)

    n_val = 100 if args.quick else 500
    val = TensorData(torch.rand(n_val, 3, 32, 32, generator=g), torch.arange(n_val) % 10)
    adapter = ClassificationAdapter(eval_batch_size=2048)
    nft_times = {}
    for amp in ([] if args.skip_protocol else [False] if device.type == "cpu" else [False, True]):
        epochs = 3 if args.quick else 100
        NFT(epochs=1, device=str(device), amp=amp).purify(model, val, adapter)  # warm-up (cudnn autotune)
        sync(device)
        t0 = time.perf_counter()
        res = NFT(epochs=epochs, device=str(device), amp=amp).purify(model, val, adapter)
        sync(device)
        wall = time.perf_counter() - t0
        nft_times[amp] = wall
        record(f"NFT protocol run ({epochs} epochs, {res.info['steps']} steps, {'bf16' if amp else 'fp32'})",
               wall, "s", "model on device -> folded model")

    n_eval = 1000 if args.quick else 10000
    xe = torch.rand(n_eval, 3, 32, 32, generator=g).to(device)
    for amp in ([False] if device.type == "cpu" else [False, True]):
        for cl in ([False] if device.type == "cpu" else [False, True]):
            m = model.to(memory_format=torch.channels_last) if cl else model.to(memory_format=torch.contiguous_format)
            xx = xe.to(memory_format=torch.channels_last) if cl else xe
            tag = f"{'bf16' if amp else 'fp32'}{' channels_last' if cl else ''}"
            record(f"evaluation, {n_eval} images [{tag}]", eval_throughput(m, xx, device, 2048, amp), "img/s")
    model = model.to(memory_format=torch.contiguous_format)

    if not args.skip_baselines and nft_times:
        best_nft = min(nft_times.values())
        for b in args.baselines:
            kw = {"device": str(device)}
            if args.quick:  # smallest settings, only to check the script runs
                kw.update({"ft": {"epochs": 1}, "ftsam": {"epochs": 1}, "nad": {"epochs": 1, "teacher_epochs": 1},
                           "anp": {"iterations": 5}, "awm": {"epochs": 1}, "rnp": {"unlearn_epochs": 1},
                           "ibau": {"rounds": 1}, "fp": {}, "mcr": {"curve_epochs": 1, "ft_epochs": 1}}[b])
            try:
                d = DEFENSES[b](**kw)
            except TypeError:
                d = DEFENSES[b]()
            sync(device)
            t0 = time.perf_counter()
            d.purify(model, val, adapter)
            sync(device)
            wall = time.perf_counter() - t0
            label = "tiny settings" if args.quick else "paper defaults"
            record(f"baseline {b} ({label})", wall, "s", f"NFT/{b} = {best_nft / wall:.3f}")

    print(header)


def write(out: Path, header: str, rows: list[dict], name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["measure", "value", "unit", "note"])
        w.writeheader()
        w.writerows(rows)
    md = [header, "", "| measure | value | unit | note |", "|---|---:|---|---|"]
    md += [f"| {r['measure']} | {r['value']} | {r['unit']} | {r['note']} |" for r in rows]
    (out / "results.md").write_text("\n".join(md) + "\n")
    (out / "meta.json").write_text(json.dumps({"device": name, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
