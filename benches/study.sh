#!/usr/bin/env bash
# Measures a 10-image study on the default model (issue: "a study of N images costs
# N x (sum of its explanations) plus a small constant"). Measurement only; needs python3 for
# reading the summary. Usage: benches/study.sh [--device cpu|gpu|auto] [extra study flags]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/images"
# Ten committed photos and drawings: two photos at two sizes, six study fixtures.
cp tests/data/chelsea.png tests/data/coffee.png "$work/images/"
cp tests/data/chelsea_224.png tests/data/coffee_224.png "$work/images/"
for f in tests/data/study/*/*.png; do
  cp "$f" "$work/images/$(basename "$(dirname "$f")")-$(basename "$f")"
done
device=${1:-cpu}
[ "$device" = "--device" ] && { device=$2; shift 2; } || { [ $# -gt 0 ] && shift || true; }
start=$(date +%s.%N)
./target/release/glassbox study "$work/images" --device "$device" --out "$work/out" \
  --pairs efficientnet-lite0:arbitrary,efficientnet-lite0:elbow \
  --pairs efficientnet-lite0:arbitrary,efficientnet-lite0:double-division "$@" >/dev/null
end=$(date +%s.%N)
python3 - "$work/out" "$start" "$end" <<'PY'
import json, sys
out, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = [json.loads(l) for l in open(out + "/study.jsonl")][1:]
n = len(rows)
wall = end - start
per_image = sum(r["seconds"] for r in rows) / n
# Each explanation once per image (an explainer may appear in several pairs).
explained = []
for r in rows:
    seen = {}
    for o in r["outcomes"]:
        for side in (o["a"], o["b"]):
            seen[side["name"]] = side["seconds"] + side["faithfulness_seconds"]
    explained.append(seen)
names = list(explained[0])
print(f"{n} images, process wall {wall:.2f} s (model load, report and contact sheets included)")
print(f"per image: {per_image:.3f} s wall")
for name in names:
    m = sum(e[name] for e in explained) / n
    print(f"  {name}: {m:.3f} s per image (explanation as if alone + faithfulness)")
alone = sum(sum(e.values()) for e in explained) / n
print(f"sum of the explanations run alone: {alone:.3f} s per image; "
      f"study/alone = {per_image / alone:.2f} (below 1: shared occlusion variants)")
print(f"constant: {wall - per_image * n:.2f} s per run")
PY
