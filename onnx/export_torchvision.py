#!/usr/bin/env python3
"""Export torchvision's pretrained GoogLeNet and AlexNet to ONNX for glassbox.

Needs torch and torchvision (and internet access the first time, to download
the IMAGENET1K_V1 weights into the torch hub cache). Writes, next to this file:

    googlenet-tv.onnx   torchvision.models.googlenet(weights=IMAGENET1K_V1)
    alexnet-tv.onnx     torchvision.models.alexnet(weights=IMAGENET1K_V1)

Both: eval mode, opset 13, TorchScript-based exporter (dynamo=False), input
``input`` float32 [N,3,224,224], output ``logits`` [N,1000], N a dynamic batch
axis (dim_param "N"). Inputs are RGB in [0,1] normalised with the ImageNet
mean/std; GoogLeNet's pretrained weights enable ``transform_input``, which the
graph itself applies on top of that normalisation, exactly as in torchvision.

Afterwards each file is checked (onnx.checker; with onnxruntime installed also
torch-vs-onnxruntime agreement at batch 1 and 3), compared with the committed
weight-free skeleton (``*-tv.skeleton.onnx``, see make_tv_skeletons.py), and
its SHA-256 and size are printed.

Usage: python3 onnx/export_torchvision.py [googlenet] [alexnet]
"""

from __future__ import annotations

import collections
import hashlib
import inspect
import os
import sys

import torch
import torchvision
from torchvision.models import AlexNet_Weights, GoogLeNet_Weights, alexnet, googlenet

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 13

MODELS = {
    "googlenet": ("googlenet-tv.onnx", lambda: googlenet(weights=GoogLeNet_Weights.IMAGENET1K_V1)),
    "alexnet": ("alexnet-tv.onnx", lambda: alexnet(weights=AlexNet_Weights.IMAGENET1K_V1)),
}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(model: torch.nn.Module, path: str) -> None:
    model.eval()
    dummy = torch.randn(1, 3, 224, 224)
    kwargs = dict(
        export_params=True,
        opset_version=OPSET,
        do_constant_folding=True,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        training=torch.onnx.TrainingMode.EVAL,
    )
    # torch >= 2.9 defaults to the dynamo exporter (opset >= 18, different
    # graph); the skeletons replicate the classic TorchScript exporter.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with torch.no_grad():
        torch.onnx.export(model, (dummy,), path, **kwargs)


def verify(model: torch.nn.Module, path: str) -> None:
    import onnx

    m = onnx.load(path)
    onnx.checker.check_model(m)
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    inputs = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    assert [i.name for i in inputs] == ["input"], [i.name for i in inputs]
    assert [o.name for o in m.graph.output] == ["logits"], [o.name for o in m.graph.output]
    print(f"  input {dims(inputs[0])}, output {dims(m.graph.output[0])}, opset "
          f"{[o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')]}")
    ops = collections.Counter(n.op_type for n in m.graph.node)
    print(f"  ops: {dict(sorted(ops.items()))}")

    skel_path = path.replace(".onnx", ".skeleton.onnx")
    if os.path.exists(skel_path):
        s = onnx.load(skel_path)
        sops = collections.Counter(n.op_type for n in s.graph.node if n.op_type != "ConstantOfShape")
        # torch may keep small constants as Constant nodes; the skeleton uses initializers.
        ops_cmp = collections.Counter({k: v for k, v in ops.items() if k != "Constant"})
        if ops_cmp == sops:
            print(f"  op counts match {os.path.basename(skel_path)}")
        else:
            print(f"  WARNING: op counts differ from {os.path.basename(skel_path)}: "
                  f"export-only {dict(ops_cmp - sops)}, skeleton-only {dict(sops - ops_cmp)}")
        from onnx import numpy_helper
        shape_inits = {t.name: tuple(int(d) for d in numpy_helper.to_array(t))
                       for t in s.graph.initializer if t.name.endswith("__SHAPE")}
        skel_shapes = sorted(shape_inits.values())
        real_shapes = sorted(tuple(t.dims) for t in m.graph.initializer
                             if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 1
                             and int(torch.tensor(list(t.dims)).prod()) > 1)
        if skel_shapes == real_shapes:
            print(f"  weight shapes match the skeleton ({len(skel_shapes)} tensors)")
        else:
            print(f"  WARNING: weight shapes differ from the skeleton: "
                  f"{len(real_shapes)} exported vs {len(skel_shapes)} in the skeleton")

    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        print("  (onnxruntime not installed: skipping the numerical check)")
        return
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    with torch.no_grad():
        ref = model(x).numpy()
    for n in (1, 3):
        y = sess.run(["logits"], {"input": x[:n].numpy()})[0]
        assert y.shape == (n, 1000), y.shape
        err = float(np.abs(y - ref[:n]).max())
        print(f"  onnxruntime batch {n}: {y.shape}, max |onnx - torch| = {err:.2e}")
        assert err < 1e-3 * max(1.0, float(np.abs(ref).max())), "onnxruntime disagrees with torch"


def main(argv: list[str]) -> int:
    names = argv or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown model(s) {unknown}; choose from {list(MODELS)}", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")
    results = []
    for name in names:
        filename, ctor = MODELS[name]
        path = os.path.join(HERE, filename)
        print(f"{name}: building torchvision model (IMAGENET1K_V1)")
        model = ctor().eval()
        tmp = path + ".part"
        export(model, tmp)
        os.replace(tmp, path)
        print(f"{name}: wrote {path}")
        verify(model, path)
        results.append((filename, os.path.getsize(path), sha256(path)))
    print()
    for filename, size, digest in results:
        print(f"{digest}  {filename}  ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
