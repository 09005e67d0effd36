#!/usr/bin/env bash
# Download the ONNX model zoo classifiers that glassbox imports at build time
# into this directory (onnx/), verifying size and SHA-256 of each file.
#
#   googlenet-7.onnx     (28 MB)   ONNX model zoo GoogLeNet (Caffe BVLC, opset 7)
#   bvlcalexnet-8.onnx   (244 MB)  ONNX model zoo AlexNet (Caffe BVLC, opset 8)
#
# Usage: onnx/fetch.sh            # both models
#        onnx/fetch.sh googlenet  # just one (googlenet | alexnet)
#
# A file already present with the right size and hash is kept. Needs curl or
# wget, and sha256sum or shasum.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base="https://github.com/onnx/models/raw/main/validated/vision/classification"

# name|url|sha256|bytes
models=(
  "googlenet-7.onnx|${base}/inception_and_googlenet/googlenet/model/googlenet-7.onnx|5725ccfd90845735ce5897faf7843c3f9b13acda3c4f3bff82cb21c9337c9de8|28020232"
  "bvlcalexnet-8.onnx|${base}/alexnet/model/bvlcalexnet-8.onnx|9a4dc22fd706a19462aaec3b08e027e0ef89daf63d123824f20b59b6de9a727b|243863542"
)

die() { echo "fetch.sh: error: $*" >&2; exit 1; }

if command -v curl >/dev/null 2>&1; then
  download() { curl -fL --retry 3 --retry-delay 2 --progress-bar -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  download() { wget -q --show-progress --tries=3 -O "$2" "$1"; }
else
  die "neither curl nor wget is installed"
fi

if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  die "neither sha256sum nor shasum is installed"
fi

filesize() { wc -c <"$1" | tr -d ' '; }

# Returns 0 when $1 has size $3 and SHA-256 $2; prints why not otherwise.
verify() {
  local file="$1" want_sha="$2" want_size="$3" size sha
  size="$(filesize "$file")"
  if [[ "$size" != "$want_size" ]]; then
    echo "  size mismatch: got ${size} bytes, expected ${want_size}" >&2
    return 1
  fi
  sha="$(sha256 "$file")"
  if [[ "$sha" != "$want_sha" ]]; then
    echo "  sha256 mismatch: got ${sha}, expected ${want_sha}" >&2
    return 1
  fi
}

want="${1:-all}"
case "$want" in
  all|googlenet|alexnet) ;;
  *) die "unknown model '${want}' (expected: googlenet, alexnet, or nothing for both)" ;;
esac

tmp=""
cleanup() { if [[ -n "$tmp" && -e "$tmp" ]]; then rm -f -- "$tmp"; fi; }
trap cleanup EXIT

for entry in "${models[@]}"; do
  IFS='|' read -r name url sha size <<<"$entry"
  case "$want" in
    googlenet) [[ "$name" == googlenet-* ]] || continue ;;
    alexnet) [[ "$name" == bvlcalexnet-* ]] || continue ;;
  esac
  dest="${here}/${name}"

  if [[ -f "$dest" ]]; then
    if verify "$dest" "$sha" "$size" 2>/dev/null; then
      echo "${name}: already present and verified"
      continue
    fi
    echo "${name}: existing file fails verification; downloading again"
  fi

  echo "${name}: downloading ${url}"
  tmp="$(mktemp "${here}/.${name}.XXXXXX.part")"
  download "$url" "$tmp" || die "download of ${name} failed (${url})"

  if ! verify "$tmp" "$sha" "$size"; then
    if head -c 200 "$tmp" | grep -q "git-lfs"; then
      echo "  (the server returned a Git LFS pointer instead of the model)" >&2
    fi
    die "${name} failed verification; nothing was written to ${dest}"
  fi

  chmod 644 "$tmp"  # mktemp creates files 0600
  mv -f -- "$tmp" "$dest"
  tmp=""
  echo "${name}: ok (${size} bytes, sha256 ${sha})"
done

echo "done; rebuild glassbox (cargo build) to import the real weights"
