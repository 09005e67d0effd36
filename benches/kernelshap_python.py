#!/usr/bin/env python3
"""Python shap's KernelExplainer with onnxruntime on the game glassbox explains (measurement and
cross-check only).

Reads a `glassbox explain --method kernelshap` JSON document (its segmentation, class, seed and
sample count), rebuilds the same game in Python (players = segments, a hidden segment is black,
f = softmax p(class) of the graph build.rs prepared, run by onnxruntime) and explains it with
`shap.KernelExplainer(f, zeros((1, S))).shap_values(ones((1, S)), nsamples=N, l1_reg=False)`
after `np.random.seed(SEED)`. Prints shap's time split (model calls against the rest) and the
largest difference between shap's values and glassbox's.

Use a photo already at the model's input size (224x224: the view is then the photo itself on
both sides), e.g.:

    glassbox explain tests/data/chelsea_224.png --method kernelshap --device cpu --out out
    pip install shap onnxruntime pillow
    python3 benches/kernelshap_python.py out/chelsea_224.efficientnet-lite0.kernelshap.json \\
        --photo tests/data/chelsea_224.png
"""
import argparse
import glob
import json
import os
import time
import tomllib

import numpy as np
import onnxruntime as ort
import shap
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="glassbox's kernelshap JSON document")
    ap.add_argument("--photo", default=os.path.join(ROOT, "tests", "data", "chelsea_224.png"))
    ap.add_argument("--batch", type=int, default=100, help="images per onnxruntime call")
    ap.add_argument("--prepared", help="folder of build.rs's prepared graphs")
    args = ap.parse_args()
    with open(args.json) as f:
        doc = json.load(f)
    model = doc["model"]["id"] if isinstance(doc.get("model"), dict) else doc["model"]
    if doc["parameters"]["fill"] != "black":
        raise SystemExit("only --fill black is rebuilt here")
    prepared = args.prepared or max(
        glob.glob(os.path.join(ROOT, "target", "release", "build", "glassbox-*", "out", "prepared")),
        key=lambda d: max((os.path.getmtime(os.path.join(d, f)) for f in os.listdir(d)), default=0),
    )
    with open(os.path.join(ROOT, "onnx", model + ".toml"), "rb") as f:
        desc = tomllib.load(f)
    pre = desc["preprocess"]
    seg = doc["segmentation"]
    w, h = seg["width"], seg["height"]
    labels = np.asarray(seg["labels"], dtype=np.int64).reshape(h, w)
    s = seg["count"]
    view = np.asarray(Image.open(args.photo).convert("RGB"), dtype=np.uint8)
    if view.shape[:2] != (h, w):
        raise SystemExit(f"the photo must be {w}x{h} already (it is {view.shape[1]}x{view.shape[0]})")
    cls = doc["class"]["index"]
    session = ort.InferenceSession(os.path.join(prepared, model.replace("-", "_") + ".onnx"),
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    order = [0, 1, 2] if pre["channels"] == "rgb" else [2, 1, 0]
    scale = np.float32(pre["scale"])
    mean = np.asarray(pre["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pre["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    timer = {"model": 0.0, "calls": 0, "rows": 0}

    def f(z):
        t = time.perf_counter()
        out = []
        for start in range(0, len(z), args.batch):
            keep = z[start:start + args.batch][:, labels]  # [n, h, w]
            images = view[None] * keep[..., None].astype(np.uint8)
            x = images[..., order].astype(np.float32).transpose(0, 3, 1, 2)
            x = np.ascontiguousarray((x * scale - mean) / std)
            (logits,) = session.run(None, {name: x})
            if desc["output"] == "logits":
                p = np.exp(logits - logits.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
            else:
                p = logits
            out.append(p[:, cls])
        timer["model"] += time.perf_counter() - t
        timer["calls"] += 1
        timer["rows"] += len(z)
        return np.concatenate(out)

    samples = doc["parameters"]["samples"]
    nsamples = "auto" if samples == "auto" else int(samples)
    t = time.perf_counter()
    explainer = shap.KernelExplainer(f, np.zeros((1, s)))
    np.random.seed(doc["parameters"]["seed"])
    phi = explainer.shap_values(np.ones((1, s)), nsamples=nsamples, l1_reg=False, silent=True)
    total = time.perf_counter() - t
    phi = np.asarray(phi).reshape(-1)
    ours = np.asarray(doc["phi"])
    print(f"shap {shap.__version__}, onnxruntime {ort.__version__}, {os.cpu_count()} cores; {model}, "
          f"{s} segments, nsamples {nsamples}, seed {doc['parameters']['seed']}, class {cls}")
    print(f"shap: {total:.3f} s, of which model calls {timer['model']:.3f} s ({timer['rows']} rows in "
          f"{timer['calls']} calls), the rest {total - timer['model']:.3f} s "
          f"({100 * (total - timer['model']) / total:.1f} %)")
    print(f"base value shap {float(np.ravel(explainer.expected_value)[0]):.6f}, glassbox {doc['base_value']:.6f}; "
          f"sum shap {phi.sum():.6f}, glassbox {ours.sum():.6f}")
    print(f"max |phi_shap - phi_glassbox| = {np.abs(phi - ours).max():.3e} "
          f"(largest |phi| {np.abs(ours).max():.3e}); top 5 shap {list(np.argsort(-phi, kind='stable')[:5])}, "
          f"glassbox {doc['positive']}")


if __name__ == "__main__":
    main()
