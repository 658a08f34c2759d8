#!/usr/bin/env bash
# Optional fairseq backend of nft-nlg (`--model fairseq:PATH`): installs the community fairseq-fixed build
# (fairseq 0.12.2 does not import on Python 3.11) into the project's .venv. It compiles C++ extensions:
# about 4.5 minutes on 2 CPU cores. A later `uv sync` (e.g. after uv.lock changes) removes it: run this
# script again then. tests/nlg/test_fairseq_backend.py uses fairseq whenever it imports.
set -euo pipefail
cd "$(dirname "$0")/.."
make setup
UV=$(command -v uv 2>/dev/null || echo "python3 -m uv")
$UV pip install fairseq-fixed==0.12.3.1
$UV run --frozen --no-sync python -c "import fairseq; print('fairseq', fairseq.__version__, 'imports')"
