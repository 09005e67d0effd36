#!/usr/bin/env python3
"""Parity fixtures: onnxruntime's outputs for every built-in model on a deterministic input.

Runs onnxruntime on each model's original graph, so that the build's rewrites (batch, BatchNorm
folding, the removal of Dropout and Identity, constant folding) are checked too: a real model's
original ONNX file, or for a synthetic model the skeleton with the build's synthetic weights
before any rewrite (`OUT_DIR/prepared/<model>.original.onnx`). The input is a hashed pixel pattern that the Rust test rebuilds exactly, pushed
through each model's own preprocessing in float32 (as `glassbox::view::to_input` does).

    python3 tests/data/make_parity.py [--prepared target/release/build/glassbox-*/out/prepared]

Writes tests/data/parity.json. Needs numpy and onnxruntime (measurement only, never at run time).
"""
import argparse
import glob
import json
import os
import tomllib

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SAMPLES = 2


def pattern(sample, height, width):
    """Raw RGB pixels [H, W, 3] in 0..255: a multiplicative hash of (x, y, channel, sample)."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    key = (x * 7 + y * 13 + c * 101 + sample * 57).astype(np.uint64)
    return ((key * np.uint64(2654435761)) % np.uint64(1 << 32) >> np.uint64(24)).astype(np.uint8)


def to_input(rgb, pre):
    """Model input [3, H, W] in float32, exactly as view::to_input computes it."""
    order = [0, 1, 2] if pre["channels"] == "rgb" else [2, 1, 0]
    scale = np.float32(pre["scale"])
    out = np.empty((3,) + rgb.shape[:2], dtype=np.float32)
    for mc, src in enumerate(order):
        mean, std = np.float32(pre["mean"][mc]), np.float32(pre["std"][mc])
        out[mc] = (rgb[:, :, src].astype(np.float32) * scale - mean) / std
    return out


def newest_prepared():
    dirs = glob.glob(os.path.join(ROOT, "target", "release", "build", "glassbox-*", "out", "prepared"))
    if not dirs:
        raise SystemExit("no prepared graphs: run `cargo build --release` first or pass --prepared")
    return max(dirs, key=lambda d: max((os.path.getmtime(os.path.join(d, f)) for f in os.listdir(d)), default=0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", help="folder of build.rs's prepared ONNX graphs")
    ap.add_argument("--out", default=os.path.join(HERE, "parity.json"))
    args = ap.parse_args()
    prepared = args.prepared or newest_prepared()

    fixtures = {}
    descriptors = glob.glob(os.path.join(ROOT, "onnx", "*.toml")) + glob.glob(os.path.join(ROOT, "tests", "models", "*.toml"))
    for desc_path in sorted(descriptors, key=os.path.basename):
        model_id = os.path.basename(desc_path)[:-5]
        with open(desc_path, "rb") as f:
            desc = tomllib.load(f)
        pre = desc["preprocess"]
        width, height = pre["size"]
        original = os.path.join(os.path.dirname(desc_path), desc["file"])
        synthetic = not os.path.exists(original)
        # Every model is checked against its ORIGINAL graph, so the build's rewrites are covered
        # too; a synthetic one's is the skeleton with the build's weights, saved before them.
        ident = model_id.replace("-", "_")
        graph = os.path.join(prepared, ident + ".original.onnx") if synthetic else original
        if synthetic and not os.path.exists(graph):
            # Test models (tests/models) are built from their graph as it is.
            graph = os.path.join(prepared, ident + ".onnx")
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        # One sample at a time: an original zoo graph only takes batch 1.
        out = np.concatenate([session.run(None, {name: to_input(pattern(k, height, width), pre)[None]})[0] for k in range(SAMPLES)])
        fixtures[model_id] = {
            "output": desc["output"],
            "synthetic": synthetic,
            "values": [[float(v) for v in row] for row in out.astype(np.float64)],
        }
        print(f"{model_id}: {out.shape} top-1 {out.argmax(1).tolist()} synthetic={synthetic}")
    with open(args.out + ".tmp", "w") as f:
        json.dump({"samples": SAMPLES, "onnxruntime": ort.__version__, "models": fixtures}, f)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
