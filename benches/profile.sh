#!/usr/bin/env bash
# Where the CPU time of a forward pass goes: `perf record` on `glassbox classify` (batches of 16)
# and the samples grouped by kind of work. Measurement only; needs Linux perf.
#   benches/profile.sh [MODEL] [IMAGES]     (default: efficientnet-lite0, 96 images = 6 batches)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-efficientnet-lite0}
n=${2:-96}
cargo build --release --quiet
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
images=()
for _ in $(seq "$n"); do images+=(tests/data/chelsea.png); done
perf record -F 999 -g -o "$data/perf.data" -- \
  ./target/release/glassbox classify --device cpu --model "$model" "${images[@]}" >/dev/null 2>&1
perf report -i "$data/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
  awk -v model="$model" '
    /^ +[0-9.]+%/ {
      pct = $1; sub("%", "", pct); sym = $0
      kind = "other"
      if (sym ~ /gemm/) kind = "gemm (convolutions as im2col + matrix products)"
      else if (sym ~ /macerator/) kind = "vectorised element-wise and depthwise kernels (macerator)"
      else if (sym ~ /unary_op/) kind = "scalar unary kernels (burn_flex::ops::unary)"
      else if (sym ~ /memmove|memcpy|memset/) kind = "copies and fills"
      else if (sym ~ /\[k\]/) kind = "kernel: page faults, TLB shootdowns, syscalls"
      else if (sym ~ /png|fdeflate|imageops|jpeg|zune/) kind = "image decoding and resizing"
      total[kind] += pct
      if (!(sym in seen) && n < 12) { top[++n] = sprintf("%6.2f%%  %s", pct, substr(sym, index(sym, "]") + 2, 90)); seen[sym] = 1 }
    }
    END {
      printf "%s: share of CPU samples by kind of work\n", model
      for (k in total) printf "%6.1f%%  %s\n", total[k], k | "sort -rn"
      close("sort -rn")
      print "\ntop symbols:"
      for (i = 1; i <= n; i++) print top[i]
    }'
