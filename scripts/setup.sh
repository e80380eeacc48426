#!/usr/bin/env bash
# Set up dgviz on a fresh machine: a virtual environment with everything installed.
#   bash scripts/setup.sh            # .venv: dgviz on the newest transformers (enough for `dgviz demo`
#                                    #   and every notebook)
#   bash scripts/setup.sh test       # .venv + the test extras and, as root on Debian, chromium
#   bash scripts/setup.sh diffusers  # .venv-diffusers: the test extras + diffusers' pipeline path,
#                                    #   on the transformers releases diffusers supports (< 5.24)
# Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${DGVIZ_PYTHON:-python3}
# A bare `torch` requirement can pull a multi-GB CUDA build; install the CPU build first.
# Override with DGVIZ_TORCH_SPEC (e.g. "torch" on a GPU machine).
TORCH_SPEC=${DGVIZ_TORCH_SPEC:-torch==2.13.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1
mode=${1:-}
case "$mode" in
  "") venv=.venv; extras="" ;;
  test) venv=.venv; extras="[test]" ;;
  diffusers) venv=.venv-diffusers; extras="[test,diffusers]" ;;
  *) echo "usage: bash scripts/setup.sh [test|diffusers]" >&2; exit 2 ;;
esac

apt_pid=""
if [ -n "$mode" ] && ! command -v chromium >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  # chromium drives the browser tests and plotly's static export; install it while pip runs
  ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ) \
    > .apt-chromium.log 2>&1 &
  apt_pid=$!
fi

[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
# an explicit DGVIZ_TORCH_SPEC is always installed, a torch already there notwithstanding
if [ -n "${DGVIZ_TORCH_SPEC:-}" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  "$venv/bin/pip" install -q "$TORCH_SPEC"
fi
"$venv/bin/pip" install -q -e ".$extras"

if [ -n "$apt_pid" ]; then
  if ! wait "$apt_pid"; then
    cat .apt-chromium.log >&2
    echo "setup: installing chromium failed (browser tests need /usr/bin/chromium)" >&2
    exit 1
  fi
fi
echo "setup: done in $venv ($("$venv/bin/python" -m dgviz info --short))"
