#!/usr/bin/env bash
# Optional mmdet 3.3 backend of nft-detection (`nft-detect purify --mmdet-config CFG --checkpoint CKPT`).
#
# mmdet 3.3 needs mmcv 2.x with its compiled ops (mmdet imports mmcv.ops for NMS and RoIAlign), and PyPI
# has no mmcv 2.1 wheel for torch 2.14 / Python 3.11, so this script builds mmcv 2.1.0 from its sdist:
#   * the sdist is fetched from PyPI and checked against its published sha256;
#   * its setup.py asks for C++14/17, but torch 2.14's headers need C++20, so the flags are switched;
#   * setuptools >= 81 dropped pkg_resources, which that setup.py imports: stdlib equivalents replace it;
#   * the build is CPU-only (FORCE_CUDA=0) and uses MAX_JOBS (default: every core).
# Measured cost on the 2-core build machine: see README ("mmdet backend"); about 14 minutes.
# A later `uv sync` (e.g. after uv.lock changes) removes mmcv/mmdet: run this script again then.
# tests/detection/test_mmdet_backend.py uses mmdet whenever it imports.
set -euo pipefail
cd "$(dirname "$0")/.."
make setup
UV=$(command -v uv 2>/dev/null || echo "python3 -m uv")
PY=.venv/bin/python

MMCV_VERSION=2.1.0
MMCV_URL=https://files.pythonhosted.org/packages/a7/19/f97f0fd4d432113a232e75f965335be6b7bb6557ae9faf8051e9a012cadd/mmcv-2.1.0.tar.gz
MMCV_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f

if $PY -c "import mmcv, mmcv.ops, mmdet; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
    echo "mmcv $MMCV_VERSION (with ops) and mmdet already import; nothing to do"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL --retry 3 -o "$work/mmcv.tar.gz" "$MMCV_URL"
echo "$MMCV_SHA256  $work/mmcv.tar.gz" | sha256sum -c -
tar xzf "$work/mmcv.tar.gz" -C "$work"
src="$work/mmcv-$MMCV_VERSION"
sed -i -E 's/std=c\+\+1[47]/std=c++20/g' "$src/setup.py"
# setuptools >= 81 has no pkg_resources; setup.py only uses it for three helpers with stdlib equivalents
sed -i 's/^from pkg_resources import DistributionNotFound, get_distribution, parse_version$/from importlib.metadata import PackageNotFoundError as DistributionNotFound, distribution as get_distribution\nfrom packaging.version import parse as parse_version/' "$src/setup.py"
if grep -q -E 'std=c\+\+1[47]|pkg_resources' "$src/setup.py"; then
    echo "install_mmdet.sh: could not patch mmcv's setup.py (C++20, pkg_resources)" >&2
    exit 1
fi

# build requirements of mmcv's setup.py, installed into the venv because the build is not isolated
$UV pip install --python "$PY" wheel ninja
MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    $UV pip install --python "$PY" --no-build-isolation "$src"
$UV pip install --python "$PY" "mmdet==3.3.0"
$PY -c "import mmcv, mmcv.ops, mmdet; print('mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'import with ops')"
