#!/usr/bin/env bash
# Regenerates docs/timeline.png: a serial, a threads and a proc run of the
# built-in list against the built-in DELAY site, drawn by `flagmaster logs
# --timeline` on one time axis, then converted from SVG to PNG with
# rsvg-convert (librsvg2-bin, installed from Debian if missing).
#
#   scripts/timeline.sh [OUT.png]      # default: docs/timeline.png
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/timeline.png}"

if ! command -v rsvg-convert >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq librsvg2-bin >/dev/null
fi
cargo build --release --quiet
bin="$PWD/target/release/flagmaster"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# The log directories are named after the modes: the picture's headings say them.
for mode in serial threads proc; do
  echo "timeline: $mode run..." >&2
  "$bin" --mode "$mode" --server DELAY --dest "flags-$mode" --log-dir "$mode" --quiet >/dev/null
done
"$bin" logs serial threads proc --timeline timeline.svg --top 3
cd - >/dev/null
# 1200 px wide, as drawn; a white background, as a PNG viewer may show none.
rsvg-convert --background-color=white "$work/timeline.svg" -o "$out"
echo "timeline: written to $out" >&2
