#!/usr/bin/env python3
"""Tiny ONNX graphs that glassbox's build must refuse, with one clear line (tests/it/build.rs).

  wrong-channels.onnx  input [N, 1, 224, 224] (a greyscale model): not [N, 3, H, W]
  wrong-output.onnx    output [N, 1, 1, 1]: not [N, classes]
  wrong-size.onnx      input [N, 3, 100, 100] where the descriptor will say 224x224

Each is otherwise a valid planted-region-style classifier (ReduceMean -> Flatten -> Gemm).
Usage: python3 tests/data/bad-models/make_bad_models.py   (needs onnx, numpy; deterministic)
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def model(name, channels, size, flatten=True):
    inits = [
        numpy_helper.from_array(np.array([[20.0, 0.0]], dtype=np.float32), "W"),
        numpy_helper.from_array(np.array([0.0, 2.0], dtype=np.float32), "C"),
    ]
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean4"], axes=[1, 2, 3], keepdims=1)]
    if flatten:
        nodes += [
            helper.make_node("Flatten", ["mean4"], ["mean"], axis=1),
            helper.make_node("Gemm", ["mean", "W", "C"], ["logits"]),
        ]
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])
    else:
        inits = []
        nodes[0].output[0] = "logits"
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1, 1, 1])
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])
    graph = helper.make_graph(nodes, name, [inp], [out], initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(HERE, name + ".onnx"))


if __name__ == "__main__":
    model("wrong-channels", 1, 224)
    model("wrong-output", 3, 224, flatten=False)
    model("wrong-size", 3, 100)
