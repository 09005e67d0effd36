#!/usr/bin/env python3
"""Build folded_constants.onnx: a tiny classifier whose weights are computed by the graph itself,
from Constant nodes, through every operator build.rs folds (Mul with a scalar, Reshape, Unsqueeze,
Squeeze, Sub, Div, Add), whose data path runs through Identity and Dropout, and whose Gemm
(transB, β = 0.5) is followed by a BatchNormalization.

    m = mean(input);  g = m @ W + 0.5 bias,  W = reshape([[2, -1]] * 3, [1, 2]) = [[6, -3]],
    bias = squeeze(unsqueeze([0.5, 0.25])) + ([1, 2] - [0.5, 1]) / 2 = [0.75, 0.75],
    logits = (g - mean) * gamma / sqrt(var + eps) + beta  (per class)

glassbox's build folds all of it into one Gemm's two initializers and drops Identity and
Dropout; the parity test checks the result against onnxruntime on this original graph.
Deterministic.

Usage: python3 tests/models/make_folded_constants.py   (needs onnx, numpy)
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def constant(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value), name + "_value"))


nodes = [
    constant("a", np.array([[2.0, -1.0]], dtype=np.float32)),
    constant("k", np.array(3.0, dtype=np.float32)),
    constant("shape", np.array([1, -1], dtype=np.int64)),
    constant("c", np.array([0.5, 0.25], dtype=np.float32)),
    constant("axis", np.array([0], dtype=np.int64)),
    constant("x", np.array([1.0, 2.0], dtype=np.float32)),
    constant("y", np.array([0.5, 1.0], dtype=np.float32)),
    constant("two", np.array(2.0, dtype=np.float32)),
    helper.make_node("Mul", ["a", "k"], ["ak"]),
    helper.make_node("Reshape", ["ak", "shape"], ["W"]),
    helper.make_node("Unsqueeze", ["c", "axis"], ["c2"]),
    helper.make_node("Squeeze", ["c2", "axis"], ["c1"]),
    helper.make_node("Sub", ["x", "y"], ["xy"]),
    helper.make_node("Div", ["xy", "two"], ["half"]),
    helper.make_node("Add", ["c1", "half"], ["bias"]),
    helper.make_node("ReduceMean", ["input"], ["mean4"], axes=[1, 2, 3], keepdims=1),
    helper.make_node("Flatten", ["mean4"], ["mean"], axis=1),
    helper.make_node("Identity", ["mean"], ["same"]),
    helper.make_node("Dropout", ["same"], ["kept"]),
    helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]),
    helper.make_node("Gemm", ["kept", "Wt", "bias"], ["scores"], transB=1, beta=0.5),
    helper.make_node("BatchNormalization", ["scores", "gamma", "beta", "bn_mean", "bn_var"], ["logits"], epsilon=1e-3),
]
bn = {
    "gamma": np.array([1.5, -0.5], dtype=np.float32),
    "beta": np.array([0.1, 0.2], dtype=np.float32),
    "bn_mean": np.array([1.0, -1.0], dtype=np.float32),
    "bn_var": np.array([4.0, 0.25], dtype=np.float32),
}
graph = helper.make_graph(
    nodes,
    "folded_constants",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
    initializer=[numpy_helper.from_array(v, k) for k, v in bn.items()],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 7
onnx.checker.check_model(model)
onnx.save(model, os.path.join(HERE, "folded_constants.onnx"))

import onnxruntime as ort  # noqa: E402  (verification)

s = ort.InferenceSession(os.path.join(HERE, "folded_constants.onnx"))
x = np.full((1, 3, 224, 224), 0.5, np.float32)
got = s.run(None, {"input": x})[0]
scores = np.array([0.5 * 6 + 0.5 * 0.75, 0.5 * -3 + 0.5 * 0.75])
want = (scores - bn["bn_mean"]) * bn["gamma"] / np.sqrt(bn["bn_var"] + 1e-3) + bn["beta"]
assert np.allclose(got, [want]), (got, want)
print("folded_constants.onnx:", got)
