#!/usr/bin/env bash
# Set up dgviz on a fresh machine: a virtual environment in .venv with everything installed.
#   bash scripts/setup.sh        # the package and its runtime dependencies (enough for `dgviz demo`)
#   bash scripts/setup.sh test   # + test dependencies and, as root on Debian, chromium for browser tests
# Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${DGVIZ_PYTHON:-python3}
# A bare `torch` requirement can pull a multi-GB CUDA build; install the CPU build first.
# Override with DGVIZ_TORCH_SPEC (e.g. "torch" on a GPU machine).
TORCH_SPEC=${DGVIZ_TORCH_SPEC:-torch==2.13.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1

apt_pid=""
if [ "${1:-}" = "test" ] && ! command -v chromium >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  # chromium drives the browser tests and plotly's static export; install it while pip runs
  ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ) \
    > .apt-chromium.log 2>&1 &
  apt_pid=$!
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "$TORCH_SPEC"
if [ "${1:-}" = "test" ]; then
  .venv/bin/pip install -q -e ".[test]"
else
  .venv/bin/pip install -q -e .
fi

if [ -n "$apt_pid" ]; then
  if ! wait "$apt_pid"; then
    cat .apt-chromium.log >&2
    echo "setup: installing chromium failed (browser tests need /usr/bin/chromium)" >&2
    exit 1
  fi
fi
echo "setup: done ($(.venv/bin/python -c 'import dgviz, torch, transformers; print("dgviz", dgviz.__version__, "torch", torch.__version__, "transformers", transformers.__version__)'))"
