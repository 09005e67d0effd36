#!/usr/bin/env python3
"""Build nan_output.onnx: a tiny classifier whose outputs are NaN on dark images.

    m = mean(input) over channels and pixels; logits = [log(m - 0.25), 1] @ Gemm

so any image whose mean pixel is below 0.25 of full scale (64/255) gives NaN logits (log of a
negative number). glassbox must refuse to explain it with a clear error naming the model,
rather than draw a garbage explanation. Output is deterministic.

Usage: python3 tests/models/make_nan_model.py   (needs onnx, numpy)
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))

inits = [
    numpy_helper.from_array(np.array(0.25, dtype=np.float32), "offset"),
    numpy_helper.from_array(np.array([[1.0, 0.0]], dtype=np.float32), "W"),
    numpy_helper.from_array(np.array([0.0, 1.0], dtype=np.float32), "C"),
]
nodes = [
    helper.make_node("ReduceMean", ["input"], ["mean4"], axes=[1, 2, 3], keepdims=1),
    helper.make_node("Flatten", ["mean4"], ["mean"], axis=1),
    helper.make_node("Sub", ["mean", "offset"], ["shifted"]),
    helper.make_node("Log", ["shifted"], ["log"]),
    helper.make_node("Gemm", ["log", "W", "C"], ["logits"]),
]
graph = helper.make_graph(
    nodes,
    "nan_output",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
    initializer=inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 7
onnx.checker.check_model(model)
onnx.save(model, os.path.join(HERE, "nan_output.onnx"))

import onnxruntime as ort  # noqa: E402  (verification)

s = ort.InferenceSession(os.path.join(HERE, "nan_output.onnx"))
dark = np.zeros((1, 3, 224, 224), np.float32)
light = np.full((1, 3, 224, 224), 0.5, np.float32)
assert np.isnan(s.run(None, {"input": dark})[0]).all()
assert np.isfinite(s.run(None, {"input": light})[0]).all()
print("nan_output.onnx: NaN on dark images, finite on light ones")
