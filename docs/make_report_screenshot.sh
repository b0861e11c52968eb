#!/usr/bin/env bash
# Rebuilds docs/report-photo-prices.png: the demo's photo-prices run, its report rendered by
# Debian's headless Chromium with the flags of the browser test. Needs `make demo` done once.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/photo-prices}
[ -f "$out/report.html" ] || "${CARGO_TARGET_DIR:-target}"/debug/ocellus run examples/local/photo-prices.yaml --out "$out" --gbm-seconds 20
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1200,3600 \
  --screenshot="$PWD/docs/report-photo-prices.png" "file://$PWD/$out/report.html"
