#!/usr/bin/env bash
# The GPU figures of README's "Performance" section in one run, for a machine with a GPU: LIME
# (1000 samples, quickshift) and a 20×20 occlusion of each model, for every combination of
# precision (f32, f16) and dense-convolution path (burn's kernels, glassbox's tap sums).
#
#   benches/gpu.sh [BINARY]          BINARY defaults to target/release/glassbox
#   GLASSBOX_GPU_MODELS="googlenet-tv" benches/gpu.sh
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

"$bin" models | head -n 20 >&2
for model in $models; do
  for precision in f32 f16; do
    for conv in burn taps; do
      for method in lime elbow; do
        args=(explain "$img" "$img" "$img" "$img" --model "$model" --device gpu
          --precision "$precision" --steps 0 --out "$out" --method "$method")
        [ "$method" = elbow ] && args+=(--grid 20)
        if [ "$conv" = taps ]; then
          log=$(GLASSBOX_GPU_CONV=taps "$bin" "${args[@]}" 2>&1) || true
        else
          log=$("$bin" "${args[@]}" 2>&1) || true
        fi
        # "[2/4] photo: ... (0.41 s)": the seconds of each image, in order.
        times=$(grep -E '^\[[0-9]+/4\]' <<<"$log" | sed -E 's/.*\(([0-9.]+) s\)$/\1/')
        if [ "$(wc -l <<<"$times")" -ne 4 ] || [ -z "$times" ]; then
          echo "$model $precision $conv $method: FAILED: $(tail -n 1 <<<"$log")"
          continue
        fi
        first=$(head -n 1 <<<"$times")
        warm=$(tail -n 3 <<<"$times" | awk '{ s += $1 } END { printf "%.3f", s / NR }')
        split=$(grep -E '^\[4/4\]' <<<"$log" | grep -oE '(segmentation|perturb\+classify|regression|[0-9]+ variants?)[^,;→]*' | tr '\n' ' ')
        echo "$model $precision $conv $method: first ${first} s, warm ${warm} s; ${split}"
      done
    done
  done
done
