#!/usr/bin/env bash
# The hardware figures of the GPU-kernel issue in one run, for a machine with a GPU (sized to
# finish in under 8 minutes on an H100; every run has its own timeout, so it cannot overrun by
# much). It needs a glassbox built with the per-statement marks of `glassbox profile`:
#
#   cargo build --release --features layer-profile
#   benches/gpu_check.sh
#
# A device machine has no Rust toolchain and no network, and takes at most 64 MiB of files:
# benches/device_bundle.sh packs that one binary (and the Vulkan loader) to carry there, and
# prints the command that runs this script with it (GLASSBOX_CHECK_BIN; GoogLeNet's weight file
# stays behind, so it runs as its randomised twin, GLASSBOX_TWIN: the same layers and shapes,
# so the same timings).
#
# What it prints, in order (one line per figure, "FAILED (why)" where a run failed or timed out):
#  1. the adapter, and each model's convolution work per image (`glassbox models --macs`, full
#     inference, on the CPU);
#  2. cold start: seconds of a process that classifies one image with empty caches (no autotune
#     results, no compiled kernels), GoogLeNet (torchvision), burn's kernels against glassbox's
#     tiled kernel, f32;
#  3. throughput at batch 256 (`glassbox profile`): images/s and the convolutions' achieved
#     TFLOP/s for GoogLeNet (torchvision) and EfficientNet-Lite0, burn's kernels and glassbox's
#     tiled kernel, f32 and f16, then (GoogLeNet, f32) the tiled kernel with its large and its
#     huge tile forced on every layer, and burn's matmul through tap sums and im2col;
#     then the per-kind profile and the slowest statements of each GoogLeNet f32 run; every run
#     on glassbox's kernels ends with one pass that checks each layer they ran against burn's
#     f32 kernel on the same values, on this adapter (a "checked … worst …" line after its
#     figure; f32 should stay within 1e-5 of the layer's scale, f16 within 2e-3);
#  4. warm end to end, GoogLeNet (torchvision): LIME (1000 samples), 10×10 and 20×20 occlusion,
#     burn's kernels against the tiled kernel, f32 and f16, and (f32) the occlusions again by
#     incremental inference on the GPU (GLASSBOX_INCREMENTAL_GPU=1, off by default until these
#     figures exist): first image and the mean of three warm ones, in one process each.
#
# burn's cooperative-matrix (tensor core) convolutions need kernels compiled to SPIR-V, a build of
# its own: with GLASSBOX_SPIRV_BIN (a glassbox built with `--features spirv,layer-profile`),
# sections 3 and 4 also run burn's kernels from it in f16, marked "spirv". On a device machine,
# where a call carries one binary, the spirv build runs the script as GLASSBOX_CHECK_BIN itself
# (benches/device_bundle.sh --spirv): its "burn" lines are then burn's SPIR-V kernels.
#
# Environment: GLASSBOX_CHECK_BIN (the glassbox to run; default target/release/glassbox),
# GLASSBOX_CHECK_SECTIONS (default "1 2 3 4"; a device check that must be split runs
# "1 2 3" and "4" as two calls), GLASSBOX_CHECK_TIMEOUT seconds per run (default 90; a cold
# start gets three times as long), GLASSBOX_CHECK_BATCH (256), GLASSBOX_CHECK_MODELS (default
# "googlenet-tv efficientnet-lite0"; the first one is used in sections 2 and 4). burn's first
# pass of a shape autotunes its kernels (tens of seconds on an H100; the tap-sum and im2col runs,
# last in section 3, the longest): a run cut by its timeout says so. On lavapipe, `GLASSBOX_CHECK_BATCH=4 GLASSBOX_CHECK_MODELS=efficientnet-lite0`
# runs the whole script in a few minutes, as a check of the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=${GLASSBOX_CHECK_BIN:-$root/target/release/glassbox}
img=$root/tests/data/chelsea.png
limit=${GLASSBOX_CHECK_TIMEOUT:-90}
sections=" ${GLASSBOX_CHECK_SECTIONS:-1 2 3 4} "
batch=${GLASSBOX_CHECK_BATCH:-256}
read -ra models <<<"${GLASSBOX_CHECK_MODELS:-googlenet-tv efficientnet-lite0}"
main=${models[0]}
[ -x "$bin" ] || { echo "missing $bin: build it first (see the top of $0)" >&2; exit 2; }
"$bin" profile --help >/dev/null 2>&1 ||
  { echo "$bin has no 'profile' command: build it with --features layer-profile" >&2; exit 2; }
[ -z "${GLASSBOX_TWIN:-}" ] || echo "weights: randomised twins for $GLASSBOX_TWIN (GLASSBOX_TWIN; same layers, same timings)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
started=$SECONDS
# Why a run failed: its timeout, or its last line (without the Vulkan loader's XDG noise).
why() {
  if [ "$1" = 124 ]; then echo "over its ${2} s timeout"; else grep -v XDG_RUNTIME_DIR "$3" | tail -n 1; fi
}

declare -A gmac
while read -r id value; do gmac[$id]=$value; done < <(
  "$bin" models --macs 2>/dev/null | awk '/^[a-z0-9-]+ / { id = $1 } /GMAC of convolutions/ { for (i = 1; i <= NF; i++) if ($i == "->") print id, $(i - 1) }'
)
if [[ $sections == *" 1 "* ]]; then
echo "== 1. adapter and convolution work"
"$bin" classify "$img" --device gpu --top 1 2>&1 | grep -m1 ' on ' || true
for m in "${models[@]}"; do echo "$m: ${gmac[$m]:-?} GMAC of convolutions per image (full inference)"; done
fi

if [[ $sections == *" 2 "* ]]; then
echo "== 2. cold start: one image, empty caches, $main, f32"
for conv in burn tiled; do
  # Outside any Cargo project and with a fresh cache home, nothing is cached (README, "The
  # first GPU run of a model is slow").
  dir=$scratch/cold-$conv
  mkdir -p "$dir"
  t0=$(date +%s.%N) rc=0
  (cd "$dir" && XDG_CACHE_HOME=$dir HOME=$dir GLASSBOX_GPU_CONV=$conv timeout "$((limit * 3))" \
    "$bin" classify "$img" --model "$main" --device gpu --top 1 >/dev/null 2>"$dir/log") || rc=$?
  if [ "$rc" = 0 ]; then
    awk -v c="$conv" -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%s: first image with empty caches %.1f s\n", c, b - a }'
  else
    echo "$conv: FAILED ($(why "$rc" "$((limit * 3))" "$dir/log"))"
  fi
done
fi

if [[ $sections == *" 3 "* ]]; then
echo "== 3. throughput at batch $batch (glassbox profile; 3 timed passes after a warm-up)"
runs=()
for m in "${models[@]}"; do
  for conv in burn tiled; do
    for precision in f32 f16; do runs+=("$m $conv $precision auto"); done
  done
done
# The tiled kernel with one tile forced on every layer, then burn's matmul paths.
runs+=("$main tiled f32 large" "$main tiled f32 huge" "$main taps f32 auto" "$main im2col f32 auto")
[ -z "${GLASSBOX_SPIRV_BIN:-}" ] || for m in "${models[@]}"; do runs+=("$m spirv f16 auto"); done
for run in "${runs[@]}"; do
  read -r m conv precision tile <<<"$run"
  log=$scratch/layers-$m-$conv-$precision rc=0 program=$bin path=$conv
  [ "$conv" != spirv ] || program=$GLASSBOX_SPIRV_BIN path=burn
  [ "$tile" = auto ] || { log=$log-$tile conv_name="$conv ($tile tiles)"; }
  [ "$tile" != auto ] || conv_name=$conv
  GLASSBOX_GPU_CONV=$path GLASSBOX_GPU_TILE=$tile timeout "$limit" "$program" profile --model "$m" \
    --device gpu --batch "$batch" --precision "$precision" --runs 3 --top 10 --check >"$log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    ips=$(grep -oE '[0-9]+ images/s' "$log" | head -n 1 | cut -d' ' -f1)
    tflops=$(awk -v g="${gmac[$m]:-}" -v r="$ips" 'BEGIN { if (g == "") print "?"; else printf "%.2f", 2 * g * r / 1000 }')
    echo "$m $conv_name $precision: ${ips} images/s, convolutions at ${tflops} TFLOP/s"
    [ "$conv" != tiled ] || grep -E '^checked ' "$log" | sed 's/^/  /' || true
  else
    echo "$m $conv_name $precision: FAILED ($(why "$rc" "$limit" "$log"))"
  fi
done
for conv in burn tiled; do
  echo "-- profile: $main $conv f32"
  grep -v -e '^$' -e XDG_RUNTIME_DIR -e '^glassbox: ' "$scratch/layers-$main-$conv-f32" 2>/dev/null | sed -n '2,$p' || true
done
fi

if [[ $sections == *" 4 "* ]]; then
echo "== 4. warm end to end, $main: first image, then the mean of three warm ones"
convs=(burn tiled)
[ -z "${GLASSBOX_SPIRV_BIN:-}" ] || convs+=(spirv)
for precision in f32 f16; do
  for conv in "${convs[@]}"; do
    [ "$conv" != spirv ] || [ "$precision" = f16 ] || continue
    program=$bin path=$conv
    [ "$conv" != spirv ] || program=$GLASSBOX_SPIRV_BIN path=burn
    for job in "lime" "arbitrary --grid 10" "arbitrary --grid 20" "incremental arbitrary --grid 10" "incremental arbitrary --grid 20"; do
      read -ra how <<<"$job"
      # GLASSBOX_INCREMENTAL_GPU turns incremental inference on whatever its value: set or not.
      envs=("GLASSBOX_GPU_CONV=$path")
      if [ "${how[0]}" = incremental ]; then
        [ "$precision" = f32 ] || continue # f16 runs in full
        envs+=(GLASSBOX_INCREMENTAL_GPU=1) how=("${how[@]:1}")
      fi
      log=$scratch/explain.log rc=0
      env -u GLASSBOX_INCREMENTAL_GPU "${envs[@]}" timeout "$limit" "$program" explain "$img" "$img" "$img" "$img" \
        --model "$main" --device gpu --precision "$precision" --steps 0 --out "$scratch/out" \
        --method "${how[@]}" >"$log" 2>&1 || rc=$?
      if [ "$rc" = 0 ]; then
        times=$(grep -E '^\[[0-9]+/4\]' "$log" | sed -E 's/.*\(([0-9.]+) s\)$/\1/')
        first=$(head -n 1 <<<"$times")
        warm=$(tail -n 3 <<<"$times" | awk '{ s += $1 } END { printf "%.3f", s / NR }')
        echo "$precision $conv ${job}: first ${first} s, warm ${warm} s"
      else
        echo "$precision $conv ${job}: FAILED ($(why "$rc" "$limit" "$log"))"
      fi
    done
  done
done
fi
echo "== done in $((SECONDS - started)) s"
