#!/usr/bin/env bash
# Packs what benches/gpu_check.sh needs on a device machine into .device/ (ignored by git), and
# prints the device call that runs it. Such a machine has a GPU but no Rust toolchain and no
# network, and receives the working tree plus carried paths, 64 MiB in all; a release glassbox
# is 145 MB. So:
#  - one binary: glassbox built with `--features layer-profile` (its `profile` command is the
#    throughput and per-layer run of section 3; the marks cost nothing when not profiling),
#    stripped and xz-compressed (about 35 MB);
#  - no weight file: GoogLeNet's 26 MB file stays behind, and the models with a file run as
#    their randomised twins (GLASSBOX_TWIN): the same layers and shapes, so the same timings and
#    the same per-layer checks; Lite0's weights are in the binary;
#  - the Vulkan loader's Debian packages, unpacked there only if the machine lacks the loader.
# benches/device_run.sh is what runs there.
#
#   benches/device_bundle.sh            # build (about 2 min after a release build), pack, check size
#   benches/device_bundle.sh --spirv    # the same with burn's kernels compiled to SPIR-V (cargo
#                                       # feature `spirv`: burn's cooperative-matrix f16
#                                       # convolutions; a 25-minute first build on 2 cores)
#
# Each bundle is one device call (a call carries one): the default one for the whole script,
# then, if device time is left, a `--spirv` one with GLASSBOX_CHECK_SECTIONS=3 for throughput
# and the per-layer profile on SPIR-V ("burn" runs are then burn's SPIR-V kernels, "tiled" ones
# glassbox's kernels compiled to SPIR-V). Building here replaces target/release/glassbox; a
# `cargo build --release` restores the plain one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device
limit=$((64 * 1024 * 1024))
features=layer-profile
case "${1:-}" in
  "") ;;
  --spirv) features=spirv,layer-profile ;;
  *) echo "usage: $0 [--spirv]" >&2; exit 2 ;;
esac
cargo build --release --features "$features" --bin glassbox
rm -rf "$out"
mkdir -p "$out/gl"
echo "$features" >"$out/features"
strip -o "$out/glassbox" target/release/glassbox
xz -T0 -6 "$out/glassbox"
# The loader and what it needs, as packages to unpack there (not installed here).
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
mkdir -p "$lists/partial"
apt-get "${apt[@]}" update >/dev/null
(cd "$out/gl" && apt-get "${apt[@]}" download libvulkan1 >/dev/null)
# What travels: the tracked files, the untracked ones git does not ignore, and the bundle.
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | awk 'END { print $1 }')
bundle=$(du -cb "$out" | awk 'END { print $1 }')
total=$((tree + bundle))
awk -v t="$tree" -v b="$bundle" -v s="$total" -v l="$limit" 'BEGIN {
  printf "bundle %.1f MiB + working tree %.1f MiB = %.1f MiB of the 64 MiB a device call carries\n", b / 2^20, t / 2^20, s / 2^20 }'
if [ "$total" -gt "$limit" ]; then
  echo "over the limit: the device call would be refused" >&2
  exit 1
fi
sections=""
[ "$features" = layer-profile ] || sections="GLASSBOX_CHECK_SECTIONS=3 "
cat <<CALL
device call (the run tool), for the glassbox built with --features $features:
  carry:     [".device"]
  command:   ${sections}bash benches/device_run.sh
  timeout_s: 560
It prints the figures of gpu_check.sh and leaves its output in \$OUT/gpu_check.txt.
CALL
