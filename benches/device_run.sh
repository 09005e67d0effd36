#!/usr/bin/env bash
# Runs on a device machine, over the working tree and the .device/ bundle that
# benches/device_bundle.sh made: unpacks glassbox, brings the Vulkan loader if the machine lacks
# it, points the loader at NVIDIA's driver where the image keeps it apart, then runs
# benches/gpu_check.sh with the models that have a weight file as their randomised twins, and
# copies its output to $OUT/gpu_check.txt when $OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=.device
[ -f "$bundle/glassbox.xz" ] || { echo "no $bundle/glassbox.xz: run benches/device_bundle.sh and carry .device" >&2; exit 2; }
if command -v xz >/dev/null; then
  xz -dc "$bundle/glassbox.xz" >"$bundle/glassbox"
else
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$bundle/glassbox.xz" "$bundle/glassbox"
fi
chmod +x "$bundle/glassbox"
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in "$bundle"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
# NVIDIA's Vulkan driver manifest: where the loader looks by default, else where this
# workplace's images mount the driver (/usr/local/nvidia, read-only), else wherever one is.
if [ -z "${VK_DRIVER_FILES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  icd=$(find /usr/local/nvidia /usr/share /etc /opt -name 'nvidia_icd*.json' 2>/dev/null | head -n 1 || true)
  [ -z "$icd" ] || export VK_DRIVER_FILES=$icd
fi
echo "vulkan: $(ldconfig -p | grep -c 'libvulkan.so.1 ') loader(s); driver manifest ${VK_DRIVER_FILES:-from the default search path}"
echo "glassbox built with --features $(cat "$bundle/features" 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
export GLASSBOX_CHECK_BIN=$PWD/$bundle/glassbox
export GLASSBOX_TWIN=${GLASSBOX_TWIN:-googlenet-tv,googlenet,alexnet-tv,alexnet}
if [ -n "${OUT:-}" ]; then
  benches/gpu_check.sh 2>&1 | tee "$OUT/gpu_check.txt"
else
  benches/gpu_check.sh
fi
