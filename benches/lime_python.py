#!/usr/bin/env python3
"""Python lime 0.2.0.1 with onnxruntime as classifier_fn, on the graphs glassbox runs (measurement only).

Explains tests/data/chelsea.png with `lime_image.LimeImageExplainer(random_state=SEED)
.explain_instance(view, classifier_fn, top_labels=5, hide_color=0, num_samples=1000,
batch_size=B)` (lime's default quickshift segmentation) once per batch size, and prints the total
time split into segmentation (quickshift), classifier_fn (preprocessing + onnxruntime; the
onnxruntime share alone too), ridge fits (LimeBase.explain_instance_with_data) and the rest
(lime's per-sample masking and copying, distances). Uses the graph build.rs prepared
(OUT_DIR/prepared/<model>.onnx, the newest build) and onnxruntime's default session options
(all cores), as benches/ort_classify.py does.

Preprocessing as onnx/<model>.toml says, on lime's uint8 RGB view:
  efficientnet-lite0: view = centre-square crop + bilinear resize to 224; input (x - 127) / 128, RGB;
                      the graph outputs logits, softmaxed here (lime wants probabilities)
  googlenet:          view = stretch resize to 224x224; input BGR minus (103.939, 116.779, 123.68)

    pip install lime==0.2.0.1 scikit-learn
    python3 benches/lime_python.py --model efficientnet-lite0 [--batch-sizes 10,100] [--num-samples 1000]
"""
import argparse
import glob
import os
import time
import tomllib

os.environ.setdefault("TQDM_DISABLE", "1")  # lime wraps its sample loop in tqdm

import numpy as np
import onnxruntime as ort
from lime import lime_base, lime_image
from lime.wrappers.scikit_image import SegmentationAlgorithm
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 224


class Timers:
    def __init__(self):
        self.reset()

    def reset(self):
        self.seg = self.clf = self.ort = self.ridge = 0.0
        self.clf_calls = 0

    def wrap(self, fn, field):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(self, field, getattr(self, field) + time.perf_counter() - t)
        return timed


TIMERS = Timers()
SegmentationAlgorithm.__call__ = TIMERS.wrap(SegmentationAlgorithm.__call__, "seg")
lime_base.LimeBase.explain_instance_with_data = TIMERS.wrap(lime_base.LimeBase.explain_instance_with_data, "ridge")


def make_view(path, resize):
    img = Image.open(path).convert("RGB")
    if resize == "centre-square":
        w, h = img.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    elif resize != "stretch":
        raise SystemExit(f"resize policy {resize!r} not handled here")
    return np.asarray(img.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8)


def make_classifier(session, pre, logits):
    name = session.get_inputs()[0].name
    order = [0, 1, 2] if pre["channels"] == "rgb" else [2, 1, 0]
    scale = np.float32(pre["scale"])
    mean = np.asarray(pre["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pre["std"], dtype=np.float32).reshape(1, 3, 1, 1)

    def classifier_fn(images):
        t = time.perf_counter()
        x = np.asarray(images)[..., order].astype(np.float32).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray((x * scale - mean) / std)
        t_ort = time.perf_counter()
        (out,) = session.run(None, {name: x})
        TIMERS.ort += time.perf_counter() - t_ort
        if logits:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        TIMERS.clf += time.perf_counter() - t
        TIMERS.clf_calls += 1
        return out

    return classifier_fn


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet-lite0", choices=["efficientnet-lite0", "googlenet"])
    ap.add_argument("--photo", default=os.path.join(ROOT, "tests", "data", "chelsea.png"))
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--batch-sizes", default="10,100")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--prepared", help="folder of build.rs's prepared graphs")
    args = ap.parse_args()
    prepared = args.prepared or max(
        glob.glob(os.path.join(ROOT, "target", "release", "build", "glassbox-*", "out", "prepared")), key=lambda d: max((os.path.getmtime(os.path.join(d, f)) for f in os.listdir(d)), default=0)
    )
    with open(os.path.join(ROOT, "onnx", args.model + ".toml"), "rb") as f:
        desc = tomllib.load(f)
    pre = desc["preprocess"]
    graph = os.path.join(prepared, args.model.replace("-", "_") + ".onnx")
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    view = make_view(args.photo, pre["resize"])
    classifier_fn = make_classifier(session, pre, desc["output"] == "logits")
    classifier_fn(view[None])  # warm-up

    print(f"lime 0.2.0.1, onnxruntime {ort.__version__}, {os.cpu_count()} cores; {args.model} ({graph})")
    print(f"{os.path.basename(args.photo)}, num_samples {args.num_samples}, top_labels 5, hide_color 0, seed {args.seed}")
    print(f"{'batch':>5} {'total s':>8} {'segment':>8} {'clf_fn':>8} {'(ort)':>8} {'ridge':>8} {'rest':>8} {'segs':>5} {'top-1':>6}")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        TIMERS.reset()
        explainer = lime_image.LimeImageExplainer(random_state=args.seed)
        t = time.perf_counter()
        exp = explainer.explain_instance(view, classifier_fn, top_labels=5, hide_color=0,
                                         num_samples=args.num_samples, batch_size=batch)
        total = time.perf_counter() - t
        rest = total - TIMERS.seg - TIMERS.clf - TIMERS.ridge
        segs = int(exp.segments.max()) + 1
        print(f"{batch:5d} {total:8.2f} {TIMERS.seg:8.2f} {TIMERS.clf:8.2f} {TIMERS.ort:8.2f} {TIMERS.ridge:8.2f} "
              f"{rest:8.2f} {segs:5d} {exp.top_labels[0]:6d}")


if __name__ == "__main__":
    main()
