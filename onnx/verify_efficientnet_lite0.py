#!/usr/bin/env python3
"""Check onnx/efficientnet_lite0.onnx with onnxruntime on the committed test photos.

Preprocessing (the one glassbox uses): centre-crop to a square, resize to 224x224
with PIL bilinear, RGB, (pixel - 127) / 128, NCHW float32.  The alternative
"resize shorter side to 256, centre-crop 224" is printed for comparison.

Expected: tests/data/chelsea.png -> a cat class (281 tabby, 282 tiger cat or
285 Egyptian cat); tests/data/coffee.png -> 967 espresso.  A batch of 3 must give
the same logits per row as single-image runs (dynamic batch dimension).

Usage::

    python3 onnx/verify_efficientnet_lite0.py [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZE = 224
EXPECTED = {"chelsea.png": {281, 282, 285}, "coffee.png": {967}}


def centre_crop_resize(img: Image.Image) -> Image.Image:
    """Centre-crop to the largest square, then resize to SIZE x SIZE (bilinear)."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((SIZE, SIZE), Image.BILINEAR)


def resize256_crop224(img: Image.Image) -> Image.Image:
    """Resize the shorter side to 256 (bilinear), then centre-crop SIZE x SIZE."""
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = img.size
    left, top = (w - SIZE) // 2, (h - SIZE) // 2
    return img.crop((left, top, left + SIZE, top + SIZE))


def to_tensor(img: Image.Image) -> np.ndarray:
    x = (np.asarray(img.convert("RGB"), dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)[None]  # 1x3xHxW


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(HERE, "efficientnet_lite0.onnx"))
    ap.add_argument("--labels", default=os.path.join(HERE, "imagenet_labels.txt"))
    ap.add_argument("--data", default=os.path.join(ROOT, "tests", "data"))
    args = ap.parse_args(argv)

    labels = open(args.labels, encoding="utf-8").read().splitlines()
    assert len(labels) == 1000, len(labels)
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    print(f"input  {inp.name} {inp.shape} {inp.type}")
    print(f"output {out.name} {out.shape} {out.type}")

    ok = True
    singles = []
    for prep in (centre_crop_resize, resize256_crop224):
        print(f"\n== {prep.__name__}")
        for name, want in EXPECTED.items():
            x = to_tensor(prep(Image.open(os.path.join(args.data, name))))
            logits = sess.run([out.name], {inp.name: x})[0]
            p = softmax(logits)[0]
            top5 = np.argsort(-p)[:5]
            print(f"{name}:")
            for i in top5:
                print(f"  {i:4d} {p[i]:.4f} {labels[i]}")
            if prep is centre_crop_resize:
                singles.append((x, logits))
                if top5[0] not in want:
                    print(f"  FAIL: expected one of {sorted(want)}")
                    ok = False

    # Dynamic batch: [chelsea, coffee, chelsea flipped] in one run == three single runs.
    flipped = singles[0][0][..., ::-1].copy()
    batch = np.concatenate([singles[0][0], singles[1][0], flipped])
    got = sess.run([out.name], {inp.name: batch})[0]
    want = np.concatenate([singles[0][1], singles[1][1], sess.run([out.name], {inp.name: flipped})[0]])
    err = float(np.abs(got - want).max())
    same_top1 = bool((got.argmax(1) == want.argmax(1)).all())
    print(f"\nbatch of 3: output {got.shape}, max |batch - single| = {err:.2e}, top-1 equal: {same_top1}")
    ok &= got.shape == (3, 1000) and err < 1e-3 and same_top1
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
