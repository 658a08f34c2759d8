#!/usr/bin/env bash
# One call on a lent GPU machine, two jobs side by side on the one GPU:
#   1. paper scale (procedural CIFAR-scale set, PreActResNet-18; benchmarks/paper_scale_variants.py): vision's
#      default NFT recipe (safety guard, round-2 margin, disjoint patch, fallbacks),
#      the same with kind='patch', FT-SAM and NAD at lr 0.01, on BadNets, Blend and WaNet;
#   2. the video default through the CLI on CUDA (`python3 -m nft_video.cli purify`): the patch attack with
#      seeds 0-3, then Blend and the clean-label attack (seed 0).
# Each job stops at LIMIT seconds; what finished is packed into $OUT/results.tgz. VISION=0 skips job 1;
# GPU_TESTS=1 first runs the tests marked `gpu` (tests/video/test_rnn_cuda.py, tests/core/test_rnn_defenses.py) on the device.
#
#   run on the device:  bash benchmarks/gpu_paper_scale_and_video.sh          (carry .whl: PyAV + mmengine wheels)
#   CPU plumbing check (starts both jobs, stops them at LIMIT): uv run env DEVICE=cpu LIMIT=60 QUICK=--quick OUT=/tmp/s16-out bash benchmarks/gpu_paper_scale_and_video.sh
set -u
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-470}
QUICK=${QUICK:-}
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/s16}
mkdir -p "$OUT" "$WORK"
if [ -d .whl ] && "$PY" -m pip --version > /dev/null 2>&1; then  # the GPU machine: PyAV + mmengine wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD/packages/nft-core/src:$PWD/packages/nft-vision/src:$PWD/packages/nft-video/src:/tmp/site
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
{ nvidia-smi -L 2>/dev/null; "$PY" -c "import torch, av, mmengine; print('torch', torch.__version__, 'av', av.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"; } > "$OUT/device.txt" 2>&1
if [ "${GPU_TESTS:-0}" = 1 ]; then
  "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/video/test_rnn_cuda.py tests/core/test_rnn_defenses.py > "$OUT/gpu-tests.log" 2>&1; echo "gpu tests: rc $?" >> "$OUT/gpu-tests.log"
fi
START=$SECONDS
left() { echo $(( LIMIT - (SECONDS - START) )); }

VARIANTS='[{"label": "nft-surrogate", "defense": "nft"},
 {"label": "nft-surrogate[patch]", "defense": "nft", "augmentation": {"name": "auto", "options": {"kind": "patch"}}},
 {"label": "ftsam", "defense": "ftsam"},
 {"label": "nad[lr=0.01]", "defense": "nad", "options": {"lr": 0.01, "teacher_lr": 0.01}}]'
[ "${VISION:-1}" = 1 ] && ( cd benchmarks && timeout "$LIMIT" "$PY" paper_scale_variants.py --device "$DEVICE" $QUICK --epochs 12 \
    --attacks badnets blend wanet --out "$WORK/psv" --variants "$VARIANTS" ) > "$OUT/vision.log" 2>&1 &

(
  export NFT_CACHE_DIR=$WORK/cache
  video() {  # NAME ARGS...: one CLI purify if time is left
    local name=$1; shift
    local t; t=$(left)
    if [ "$t" -le 5 ]; then echo "$name: no time left"; return; fi
    echo "== $name ($t s left)"
    local t0=$SECONDS
    timeout "$t" "$PY" -m nft_video.cli purify --quiet --device "$DEVICE" --out "$WORK/video/$name" "$@" 2>&1
    echo "$name: rc $? after $((SECONDS - t0)) s wall"
  }
  video patch-seed0 --seed 0
  video clean_label-seed0 --seed 0 --cfg-options attack.name=clean_label attack.poison_rate=0.8
  video blend-seed0 --seed 0 --cfg-options attack.name=blend
  for s in 1 2 3; do video "patch-seed$s" --seed "$s"; done
) > "$OUT/video.log" 2>&1 &
wait
files=$(cd "$WORK" && ls psv/*.json video/*/report.json video/*/report.md 2>/dev/null)
if [ -n "$files" ]; then (cd "$WORK" && tar czf "$OUT/results.tgz" $files); else echo "no run finished within $LIMIT s"; fi
echo "done after $((SECONDS - START)) s"; ls -la "$OUT"
