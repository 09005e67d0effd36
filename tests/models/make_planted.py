#!/usr/bin/env python3
"""Build tiny "planted-region" ONNX classifiers for testing explainers honestly.

Each model's winning logit depends ONLY on the mean of one known rectangular
window of the input, so a correct explainer must keep exactly that window (and
may drop everything else without changing the logits at all).

Graph (opset 13, IR version 7), input ``input`` float32 [N,3,224,224]:

    Slice(input, starts, ends, axes=[2,3])    -> [N,3,h,w]   the window
    ReduceMean(axes=[1,2,3], keepdims=1)      -> [N,1,1,1]   m = window mean
    Flatten(axis=1)                           -> [N,1]
    Gemm(m, W=[[20,0]], C=[0,2])              -> [N,2]       output ``logits``

so ``logit0 = 20*m`` and ``logit1 = 2``: class 0 ("planted region") wins when
the window's mean input exceeds 0.1.  Intended preprocessing: input = pixel/255
(RGB, no mean/std), so black pixels are 0 and a uniform grey (128) image gives
m = 0.502, logit0 = 10.04.

Windows are aligned to a 10x10 grid of 23-px cells (the last row/column of
cells is clipped to 17 px since 224 = 9*23 + 17):

    planted_centre.onnx  rows  69..138, cols  69..138  = cells (3..5, 3..5)
    planted_corner.onnx  rows   0..46,  cols 184..224  = cells (0..1, 8..9)

Also writes ``planted_labels.txt`` (``planted region``, ``elsewhere``).

Usage:  python3 tests/models/make_planted.py [--out-dir DIR] [--skip-verify]

Needs ``onnx`` and ``numpy``; the verification step (on by default) also needs
``onnxruntime``.  Output is deterministic.
"""

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 7
SIZE = 224
CELL = 23
LABELS = ["planted region", "elsewhere"]

# name -> ((row0, row1), (col0, col1)), half-open pixel ranges.
WINDOWS = {
    "planted_centre": ((69, 138), (69, 138)),
    "planted_corner": ((0, 46), (184, 224)),
}

W = np.array([[20.0, 0.0]], dtype=np.float32)  # [1,2]
C = np.array([0.0, 2.0], dtype=np.float32)  # [2]


def build(name, window):
    """Return the checked, shape-inferred ModelProto for one planted window."""
    (r0, r1), (c0, c1) = window
    inits = [
        numpy_helper.from_array(np.array([r0, c0], dtype=np.int64), "win_starts"),
        numpy_helper.from_array(np.array([r1, c1], dtype=np.int64), "win_ends"),
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "win_axes"),
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(C, "C"),
    ]
    nodes = [
        helper.make_node("Slice", ["input", "win_starts", "win_ends", "win_axes"],
                         ["window"], name="slice_window"),
        helper.make_node("ReduceMean", ["window"], ["window_mean4"],
                         name="window_mean", axes=[1, 2, 3], keepdims=1),
        helper.make_node("Flatten", ["window_mean4"], ["window_mean"],
                         name="flatten", axis=1),
        helper.make_node("Gemm", ["window_mean", "W", "C"], ["logits"],
                         name="gemm"),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=inits,
        doc_string=(f"logit0 = 20*mean(input[:, :, {r0}:{r1}, {c0}:{c1}]), "
                    "logit1 = 2; classes: planted region, elsewhere"),
    )
    model = helper.make_model(
        graph,
        producer_name="glassbox make_planted.py",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    model = onnx.shape_inference.infer_shapes(model, check_type=True,
                                              strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def cells():
    """Yield (row_cell, col_cell, (r0, r1), (c0, c1)) for the 10x10 grid."""
    n = -(-SIZE // CELL)
    for i in range(n):
        for j in range(n):
            yield i, j, (i * CELL, min((i + 1) * CELL, SIZE)), \
                (j * CELL, min((j + 1) * CELL, SIZE))


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def verify(path, window):
    """Check one model with onnxruntime and a numpy reference; print results."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    run = lambda x: sess.run(["logits"], {"input": x})[0]  # noqa: E731
    (r0, r1), (c0, c1) = window
    name = os.path.basename(path)
    print(f"== {name}: window rows {r0}..{r1}, cols {c0}..{c1}")
    for node in onnx.load(path).graph.node:
        print(f"   op {node.op_type}")

    grey = np.full((1, 3, SIZE, SIZE), 128 / 255, dtype=np.float32)
    base = run(grey)
    ref = 20.0 * grey[:, :, r0:r1, c0:c1].mean(dtype=np.float64)
    p = softmax(base.astype(np.float64))
    print(f"   grey 128     logits {base[0]}  p0 {p[0, 0]:.6f}  "
          f"(numpy logit0 {ref:.6f})")
    assert base.argmax() == 0 and abs(base[0, 0] - ref) < 5e-4
    assert base[0, 1] == 2.0

    x = grey.copy()
    x[:, :, r0:r1, c0:c1] = 0
    out = run(x)
    print(f"   window black logits {out[0]}  p0 {softmax(out)[0, 0]:.6f}")
    assert out.argmax() == 1

    inside = outside = 0
    for i, j, rows, cols in cells():
        x = grey.copy()
        x[:, :, rows[0]:rows[1], cols[0]:cols[1]] = 0
        out = run(x)
        if overlaps(rows, (r0, r1)) and overlaps(cols, (c0, c1)):
            inside += 1
            p0 = softmax(out.astype(np.float64))[0, 0]
            print(f"   cell ({i},{j}) black  logits {out[0]}  p0 {p0:.6f}")
            assert p0 < p[0, 0], (i, j)
        else:
            outside += 1
            assert np.array_equal(out, base), (i, j)
    print(f"   {inside} cells inside lower p0; {outside} cells outside leave "
          "logits bit-identical")

    rng = np.random.default_rng(0)
    batch = rng.random((3, 3, SIZE, SIZE), dtype=np.float32)
    batch[1, :, r0:r1, c0:c1] = 0
    outb = run(batch)
    singles = np.concatenate([run(batch[k:k + 1]) for k in range(3)])
    ref = np.array([[20.0 * b[:, r0:r1, c0:c1].mean(dtype=np.float64), 2.0]
                    for b in batch])
    diff = np.abs(outb - singles).max()
    print(f"   batch 3      logits {outb.tolist()}  argmax {outb.argmax(1)}")
    print(f"                max |batched - one-by-one| {diff:.2e}, "
          f"max |ort - numpy| {np.abs(outb - ref).max():.2e}")
    # Summation order inside ReduceMean may differ with batch size, so rows
    # are compared to float32 rounding rather than bit-for-bit.
    assert outb.shape == (3, 2) and diff < 1e-5
    assert np.abs(outb - ref).max() < 5e-4
    assert list(outb.argmax(1)) == [0, 1, 0]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=here,
                    help="output directory (default: tests/models/)")
    ap.add_argument("--skip-verify", action="store_true",
                    help="do not run the onnxruntime checks")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    paths = {}
    for name, window in WINDOWS.items():
        model = build(name, window)
        paths[name] = os.path.join(args.out_dir, name + ".onnx")
        onnx.save(model, paths[name])
        out_shape = [d.dim_param or d.dim_value
                     for d in model.graph.output[0].type.tensor_type.shape.dim]
        print(f"wrote {paths[name]}  logits {out_shape}")
    labels = os.path.join(args.out_dir, "planted_labels.txt")
    with open(labels, "w", encoding="utf-8") as f:
        f.write("\n".join(LABELS) + "\n")
    print(f"wrote {labels}")

    if not args.skip_verify:
        for name, window in WINDOWS.items():
            verify(paths[name], window)
        print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
