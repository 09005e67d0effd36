#!/usr/bin/env python3
"""onnxruntime's classification throughput on the same graphs glassbox runs (measurement only).

Uses the graphs build.rs prepared (OUT_DIR/prepared/<model>.onnx), the same batch sizes as
benches/classify.rs, and the default session options (all cores). Prints the median time per
batch and images per second, for comparison with `cargo bench --bench classify` in one session.

    python3 benches/ort_classify.py [--models efficientnet-lite0,googlenet] [--batches 1,16,64,100]
"""
import argparse
import glob
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="efficientnet-lite0,googlenet")
    ap.add_argument("--batches", default="1,16,64,100")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--prepared", help="folder of build.rs's prepared graphs")
    args = ap.parse_args()
    prepared = args.prepared or max(
        glob.glob(os.path.join(ROOT, "target", "release", "build", "glassbox-*", "out", "prepared")), key=lambda d: max((os.path.getmtime(os.path.join(d, f)) for f in os.listdir(d)), default=0)
    )
    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} cores")
    for model in args.models.split(","):
        session = ort.InferenceSession(os.path.join(prepared, model.replace("-", "_") + ".onnx"), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for batch in [int(b) for b in args.batches.split(",")]:
            x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
            session.run(None, {name: x})  # warm-up
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                session.run(None, {name: x})
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            print(f"{model:20s} batch {batch:4d}: {med * 1e3:9.1f} ms  {batch / med:7.1f} img/s")


if __name__ == "__main__":
    main()
