#!/usr/bin/env bash
# The GPU figures of README's "Performance" section in one run, for a machine with a GPU: LIME
# (1000 samples, quickshift) and a 20×20 occlusion of each model, for every combination of
# precision (f32, f16) and dense-convolution path (burn's kernels, glassbox's tap sums, im2col
# products and its own tiled implicit-GEMM kernel, f32 only; see glassbox::model::gpu).
#
#   benches/gpu.sh [BINARY]          BINARY defaults to target/release/glassbox
#   GLASSBOX_GPU_MODELS="googlenet-tv" benches/gpu.sh
#   GLASSBOX_GPU_RUNS="f16/*/lime f32/burn/lime" benches/gpu.sh    only these runs
#   GLASSBOX_GPU_TIMEOUT=240 benches/gpu.sh                        seconds per run (default none)
#
# GLASSBOX_GPU_RUNS holds shell patterns over PRECISION/CONV/METHOD (default: every run), so that
# a device check fits the time it is lent for: a run's first image can take minutes of autotuning
# (107 s for GoogLeNet with tap sums on an H200, empty cache).
#
# Each run explains the same photo four times in one process: the first image pays for shader
# compilation and autotuning and is reported apart; "warm" is the mean of the other three. One
# line per run on stdout: model, precision, convolution path, method, first, warm, and the
# stage split of the last image. A combination the adapter refuses (f16 without 16-bit shaders)
# says so and the script goes on.
set -euo pipefail

bin=${1:-target/release/glassbox}
img=$(dirname "$0")/../tests/data/chelsea.png
models=${GLASSBOX_GPU_MODELS:-efficientnet-lite0 googlenet-tv}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Split on blanks without expanding the patterns against the current folder.
read -ra patterns <<<"${GLASSBOX_GPU_RUNS:-*}"
"$bin" models | head -n 20 >&2
for model in $models; do
  for precision in f32 f16; do
    for conv in burn taps im2col tiled; do
      for method in lime elbow; do
        run="$precision/$conv/$method" wanted=
        for pattern in "${patterns[@]}"; do
          # shellcheck disable=SC2053 # the pattern is meant to match as a glob
          if [[ $run == $pattern ]]; then wanted=1; fi
        done
        [ -n "$wanted" ] || continue
        args=(explain "$img" "$img" "$img" "$img" --model "$model" --device gpu
          --precision "$precision" --steps 0 --out "$out" --method "$method")
        [ "$method" = elbow ] && args+=(--grid 20)
        limit=()
        [ -n "${GLASSBOX_GPU_TIMEOUT:-}" ] && limit=(timeout "$GLASSBOX_GPU_TIMEOUT")
        log=$(GLASSBOX_GPU_CONV=$conv "${limit[@]}" "$bin" "${args[@]}" 2>&1) && rc=0 || rc=$?
        # "[2/4] photo: ... (0.41 s)": the seconds of each image, in order.
        times=$(grep -E '^\[[0-9]+/4\]' <<<"$log" | sed -E 's/.*\(([0-9.]+) s\)$/\1/' || true)
        if [ "$(wc -l <<<"$times")" -ne 4 ] || [ -z "$times" ]; then
          why=$(tail -n 1 <<<"$log")
          [ "$rc" = 124 ] && why="over GLASSBOX_GPU_TIMEOUT=${GLASSBOX_GPU_TIMEOUT} s; $why"
          echo "$model $precision $conv $method: FAILED (exit $rc): $why"
          continue
        fi
        first=$(head -n 1 <<<"$times")
        warm=$(tail -n 3 <<<"$times" | awk '{ s += $1 } END { printf "%.3f", s / NR }')
        split=$(grep -E '^\[4/4\]' <<<"$log" | grep -oE '(segmentation|perturb\+classify|regression|[0-9]+ variants?)[^,;→]*' | tr '\n' ' ' || true)
        echo "$model $precision $conv $method: first ${first} s, warm ${warm} s; ${split}"
      done
    done
  done
done
