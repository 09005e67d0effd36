#!/usr/bin/env python3
"""The Python peer of `glassbox explain --method arbitrary` (measurement only): 10x10 occlusion
with onnxruntime, batched, on the graph build.rs prepared, as a whole process.

What a Python user would write: decode and preprocess the photo as the model wants (Pillow,
numpy), build the unoccluded view and one variant per cell of a 10x10 grid (the cell black,
i.e. RGB 0 through the preprocessing), classify them all with onnxruntime in batches, rank the
cells by p(class) and black out the first 70 % (the report's arbitrary rule), and save the mask.
Time the whole process with the shell, as glassbox's:

    /usr/bin/time -f %e python3 benches/occlusion_python.py --model googlenet-tv tests/data/chelsea.png
    /usr/bin/time -f %e target/release/glassbox explain --model googlenet-tv --method arbitrary \\
        --device cpu --steps 0 tests/data/chelsea.png

(`--steps 0`: glassbox's faithfulness curves, which this script does not draw.) Needs numpy,
Pillow and onnxruntime; the preprocessing is read from `glassbox models --json`.
"""
import argparse
import glob
import json
import os
import subprocess
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def preprocess(photo, pre):
    """glassbox's view: torchvision's resize of the shorter side and centre crop, or a stretch."""
    w, h = photo.size
    size = 224
    if pre["resize"].startswith("shorter side"):
        shorter = int(pre["resize"].split()[2].rstrip(","))
        scale = shorter / min(w, h)
        photo = photo.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
        w, h = photo.size
        left, top = (w - size) // 2, (h - size) // 2
        photo = photo.crop((left, top, left + size, top + size))
    else:
        photo = photo.resize((size, size), Image.BILINEAR)
    rgb = np.asarray(photo, dtype=np.float32)
    if pre["channels"] == "BGR":
        rgb = rgb[:, :, ::-1]
    mean = np.array(pre["mean"], dtype=np.float32)
    std = np.array(pre["std"], dtype=np.float32)
    x = (rgb * pre["scale"] - mean) / std
    black = (0.0 * pre["scale"] - mean) / std
    return x.transpose(2, 0, 1).copy(), black.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo")
    ap.add_argument("--model", default="googlenet-tv")
    ap.add_argument("--grid", type=int, default=10)
    ap.add_argument("--batch", type=int, default=101, help="images per onnxruntime call")
    ap.add_argument("--prepared", help="folder of build.rs's prepared graphs")
    ap.add_argument("--out", default="/tmp/occlusion_python_mask.png")
    args = ap.parse_args()
    t0 = time.perf_counter()
    prepared = args.prepared or max(
        glob.glob(os.path.join(ROOT, "target", "release", "build", "glassbox-*", "out", "prepared")),
        key=lambda d: max((os.path.getmtime(os.path.join(d, f)) for f in os.listdir(d)), default=0),
    )
    models = json.loads(subprocess.run([os.path.join(ROOT, "target", "release", "glassbox"), "models", "--json"], check=True, capture_output=True).stdout)
    info = next(m for m in models if m["id"] == args.model)
    session = ort.InferenceSession(os.path.join(prepared, args.model.replace("-", "_") + ".onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    view, black = preprocess(Image.open(args.photo).convert("RGB"), info["preprocess"])
    side = -(-224 // args.grid)
    cells = [(y, x) for y in range(0, 224, side) for x in range(0, 224, side)]
    variants = np.repeat(view[None], len(cells) + 1, axis=0)
    for i, (y, x) in enumerate(cells):
        variants[i + 1, :, y : y + side, x : x + side] = black[:, None, None]
    outputs = []
    for start in range(0, len(variants), args.batch):
        outputs.append(session.run(None, {name: variants[start : start + args.batch]})[0])
    logits = np.concatenate(outputs)
    if info["output"] == "logits":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
    else:
        probs = logits
    cls = int(np.argmax(probs[0]))
    p = probs[1:, cls]
    ranking = np.argsort(-p, kind="stable")  # least important first: p stays highest without it
    blacked = ranking[: round(0.7 * len(cells))]
    mask = np.ones((224, 224), dtype=np.uint8) * 255
    for i in blacked:
        y, x = cells[i]
        mask[y : y + side, x : x + side] = 0
    Image.fromarray(mask).save(args.out)
    print(f"{args.model}: class {cls} p={probs[0, cls]:.4f}, {len(variants)} variants, {time.perf_counter() - t0:.2f} s in the script (onnxruntime {ort.__version__}, batch {args.batch})")


if __name__ == "__main__":
    main()
