#!/usr/bin/env bash
# Front end of the timeline widget: install the pinned JS toolchain, lint (eslint, 100 columns,
# no HTML from strings), type-check (tsc --noEmit over the JSDoc types), run the unit tests,
# rebuild the bundle and fail when the committed bundle (dgviz/static/) differs from the fresh
# build.
# Needs Node >= 20 and npm (the npm registry, or a warm npm cache).
set -euo pipefail
cd "$(dirname "$0")/../js"
echo "== js: npm ci (node $(node --version), npm $(npm --version))"
npm ci --no-audit --no-fund
echo "== js: lint (eslint)"
npm run lint
echo "== js: typecheck (tsc --noEmit)"
npm run typecheck
echo "== js: unit tests (vitest)"
npx vitest run
echo "== js: build"
npm run build
cd ..
if ! git diff --exit-code --stat -- dgviz/static; then
  echo "dgviz/static/ is out of date with js/src: run 'cd js && npm run build' and commit dgviz/static." >&2
  exit 1
fi
if [ -n "$(git ls-files --others --exclude-standard -- dgviz/static)" ]; then
  echo "The build wrote files under dgviz/static/ that are not committed:" >&2
  git ls-files --others --exclude-standard -- dgviz/static >&2
  exit 1
fi
echo "== js: ok (bundle up to date)"
