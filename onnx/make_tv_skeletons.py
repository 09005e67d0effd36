#!/usr/bin/env python3
"""Write weight-free ONNX skeletons of torchvision's GoogLeNet and AlexNet.

The skeletons replicate, node for node, the graphs that the TorchScript-based
``torch.onnx.export`` (the classic exporter, ``dynamo=False``) produces for

    torchvision.models.googlenet(weights=GoogLeNet_Weights.IMAGENET1K_V1).eval()
    torchvision.models.alexnet(weights=AlexNet_Weights.IMAGENET1K_V1).eval()

at opset 13, with input ``input`` [N,3,224,224] and output ``logits`` [N,1000]
(``N`` a dynamic batch axis); see ``export_torchvision.py`` for that export.

Every weight tensor is produced by a ``ConstantOfShape`` node whose input is an
int64 shape initializer named ``<weight>__SHAPE`` and whose ``value`` is a
1-element float tensor 0.02: the convention of the onnx wheel's light models
(onnx/backend/test/data/light). build.rs swaps these nodes for real
initializers. Non-weight constants (gather indices, unsqueeze axes, the
transform_input scalars) are ordinary initializers.

What torch.onnx.export does, and the skeletons therefore do:

* Dropout is dropped in eval mode.
* ``nn.Linear`` on a 2-D input becomes ``Gemm(alpha=1, beta=1, transB=1)``
  with the weight stored [out, in].
* ``torch.flatten(x, 1)`` becomes ``Flatten(axis=1)``.
* ``AdaptiveAvgPool2d((1, 1))`` (GoogLeNet) becomes ``GlobalAveragePool``.
* ``AdaptiveAvgPool2d((6, 6))`` (AlexNet) on the 6x6 map that a 224x224
  input produces becomes ``AveragePool(kernel_shape=[1,1], strides=[1,1],
  ceil_mode=0)``: torch's ``_adaptive_pool`` symbolic uses kernel = stride =
  input_size / output_size. It is an identity at 224x224; other input sizes
  need a re-export.
* Eval-mode export runs the ``_jit_pass_onnx_eval_peephole`` pass, which folds
  each ``BatchNormalization`` into the preceding ``Conv``. torchvision's
  GoogLeNet BasicConv2d (Conv without bias + BatchNorm(eps=0.001) + ReLU) is
  therefore exported as ``Conv`` (with bias) + ``Relu``. The skeleton does the
  same and names the folded tensors ``<block>.conv.weight`` and
  ``<block>.conv.bias`` (torch itself names them ``onnx::Conv_<n>``).
  ``--unfused-bn`` instead writes Conv(no bias) + BatchNormalization(eps=1e-3)
  with the state-dict names ``<block>.bn.{weight,bias,running_mean,running_var}``
  (a synthetic filler must then keep ``running_var`` positive).
* GoogLeNet's ``transform_input`` (True for the pretrained weights)::

      x_c = unsqueeze(x[:, c], 1) * (std_c / 0.5) + (mean_c - 0.5) / 0.5
      x   = cat((x_0, x_1, x_2), 1)

  becomes, per channel, ``Gather(axis=1, scalar index c)`` ->
  ``Unsqueeze(axes=[1])`` -> ``Mul(scalar)`` -> ``Add(scalar)``, then
  ``Concat(axis=1)``. torch would emit the index/axes/scalars as ``Constant``
  nodes; here they are initializers (same values).

Usage::

    python3 make_tv_skeletons.py            # write the two skeletons next to this file
    python3 make_tv_skeletons.py --check    # ... and verify them with onnxruntime
    python3 make_tv_skeletons.py --check-only [FILES]   # verify existing skeletons
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, checker, helper, numpy_helper, shape_inference

OPSET = 13
IR_VERSION = 8  # what torch 2.x writes; valid for opset 13
FILL_VALUE = 0.02
HERE = os.path.dirname(os.path.abspath(__file__))


class Builder:
    """Accumulates nodes and initializers of one graph, torch-style names."""

    def __init__(self) -> None:
        self.weight_nodes: list[onnx.NodeProto] = []  # ConstantOfShape, emitted first
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.names: set[str] = set()
        self.counter: collections.Counter[str] = collections.Counter()

    def _fresh(self, name: str) -> str:
        assert name not in self.names, f"duplicate tensor name {name}"
        self.names.add(name)
        return name

    def weight(self, name: str, shape: list[int]) -> str:
        """A float weight produced by ConstantOfShape(<name>__SHAPE), value 0.02."""
        shape_name = self._fresh(name + "__SHAPE")
        self.inits.append(numpy_helper.from_array(np.array(shape, dtype=np.int64), shape_name))
        value = helper.make_tensor("value", TensorProto.FLOAT, [1], [FILL_VALUE])
        self.weight_nodes.append(
            helper.make_node("ConstantOfShape", [shape_name], [self._fresh(name)], value=value)
        )
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, self._fresh(name)))
        return name

    def op(self, op_type: str, inputs: list[str], scope: str = "", **attrs) -> str:
        """Append a node; its name and output follow torch's '/scope/Op_k' style."""
        base = f"{scope}/{op_type}"
        k = self.counter[base]
        self.counter[base] += 1
        node_name = base if k == 0 else f"{base}_{k}"
        out = self._fresh(f"{node_name}_output_0")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=node_name, **attrs))
        return out

    def model(self, graph_name: str, x_name: str, out: str, out_name: str, doc: str) -> onnx.ModelProto:
        # Rename the last node's output to the graph output name.
        last = self.nodes[-1]
        assert last.output[0] == out
        last.output[0] = out_name
        x = helper.make_tensor_value_info(x_name, TensorProto.FLOAT, ["N", 3, 224, 224])
        y = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", 1000])
        graph = helper.make_graph(self.weight_nodes + self.nodes, graph_name, [x], [y], self.inits)
        graph.doc_string = doc
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="glassbox make_tv_skeletons.py",
            producer_version="1",
        )
        model.ir_version = IR_VERSION
        return model


def conv(b: Builder, x: str, scope: str, prefix: str, cin: int, cout: int, k: int,
         stride: int = 1, pad: int = 0, bias: bool = True) -> str:
    w = b.weight(f"{prefix}.weight", [cout, cin, k, k])
    inputs = [x, w]
    if bias:
        inputs.append(b.weight(f"{prefix}.bias", [cout]))
    return b.op("Conv", inputs, scope, dilations=[1, 1], group=1, kernel_shape=[k, k],
                pads=[pad] * 4, strides=[stride, stride])


def maxpool(b: Builder, x: str, scope: str, k: int, s: int, p: int = 0, ceil: bool = False) -> str:
    return b.op("MaxPool", [x], scope, ceil_mode=int(ceil), kernel_shape=[k, k],
                pads=[p] * 4, strides=[s, s])


def gemm(b: Builder, x: str, scope: str, prefix: str, fin: int, fout: int) -> str:
    w = b.weight(f"{prefix}.weight", [fout, fin])
    bias = b.weight(f"{prefix}.bias", [fout])
    return b.op("Gemm", [x, w, bias], scope, alpha=1.0, beta=1.0, transB=1)


# --------------------------------------------------------------------------- AlexNet

def build_alexnet() -> onnx.ModelProto:
    b = Builder()
    x = "input"
    # features
    x = conv(b, x, "/features/features.0", "features.0", 3, 64, 11, stride=4, pad=2)
    x = b.op("Relu", [x], "/features/features.1")
    x = maxpool(b, x, "/features/features.2", 3, 2)
    x = conv(b, x, "/features/features.3", "features.3", 64, 192, 5, pad=2)
    x = b.op("Relu", [x], "/features/features.4")
    x = maxpool(b, x, "/features/features.5", 3, 2)
    x = conv(b, x, "/features/features.6", "features.6", 192, 384, 3, pad=1)
    x = b.op("Relu", [x], "/features/features.7")
    x = conv(b, x, "/features/features.8", "features.8", 384, 256, 3, pad=1)
    x = b.op("Relu", [x], "/features/features.9")
    x = conv(b, x, "/features/features.10", "features.10", 256, 256, 3, pad=1)
    x = b.op("Relu", [x], "/features/features.11")
    x = maxpool(b, x, "/features/features.12", 3, 2)
    # AdaptiveAvgPool2d((6, 6)) on a 6x6 map: torch exports AveragePool k=s=1.
    x = b.op("AveragePool", [x], "/avgpool", ceil_mode=0, kernel_shape=[1, 1], strides=[1, 1])
    x = b.op("Flatten", [x], "", axis=1)
    # classifier (Dropouts vanish in eval export)
    x = gemm(b, x, "/classifier/classifier.1", "classifier.1", 256 * 6 * 6, 4096)
    x = b.op("Relu", [x], "/classifier/classifier.2")
    x = gemm(b, x, "/classifier/classifier.4", "classifier.4", 4096, 4096)
    x = b.op("Relu", [x], "/classifier/classifier.5")
    x = gemm(b, x, "/classifier/classifier.6", "classifier.6", 4096, 1000)
    return b.model("torchvision_alexnet", "input", x, "logits",
                   "Weight-free skeleton of torchvision alexnet (IMAGENET1K_V1) as exported by "
                   "torch.onnx.export at opset 13; weights are ConstantOfShape placeholders.")


# ------------------------------------------------------------------------- GoogLeNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name: (in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
INCEPTION = [
    ("inception3a", (192, 64, 96, 128, 16, 32, 32)),
    ("inception3b", (256, 128, 128, 192, 32, 96, 64)),
    ("maxpool3", None),
    ("inception4a", (480, 192, 96, 208, 16, 48, 64)),
    ("inception4b", (512, 160, 112, 224, 24, 64, 64)),
    ("inception4c", (512, 128, 128, 256, 24, 64, 64)),
    ("inception4d", (512, 112, 144, 288, 32, 64, 64)),
    ("inception4e", (528, 256, 160, 320, 32, 128, 128)),
    ("maxpool4", None),
    ("inception5a", (832, 256, 160, 320, 32, 128, 128)),
    ("inception5b", (832, 384, 192, 384, 48, 128, 128)),
]


def basic_conv(b: Builder, x: str, prefix: str, cin: int, cout: int, k: int,
               stride: int = 1, pad: int = 0, fuse_bn: bool = True) -> str:
    """torchvision BasicConv2d: Conv(bias=False) + BatchNorm(eps=0.001) + ReLU."""
    scope = "/" + prefix.replace(".", "/")
    if fuse_bn:
        # What the eval-mode exporter emits: BN folded into a biased Conv.
        x = conv(b, x, f"{scope}/conv", f"{prefix}.conv", cin, cout, k, stride, pad, bias=True)
    else:
        x = conv(b, x, f"{scope}/conv", f"{prefix}.conv", cin, cout, k, stride, pad, bias=False)
        params = [b.weight(f"{prefix}.bn.{p}", [cout])
                  for p in ("weight", "bias", "running_mean", "running_var")]
        x = b.op("BatchNormalization", [x, *params], f"{scope}/bn", epsilon=0.001, momentum=0.9)
    return b.op("Relu", [x], scope)


def transform_input(b: Builder, x: str) -> str:
    axes = b.const("transform_input.unsqueeze_axes", np.array([1], dtype=np.int64))
    chans = []
    for c, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
        idx = b.const(f"transform_input.index{c}", np.array(c, dtype=np.int64))
        scale = b.const(f"transform_input.scale{c}", np.array(std / 0.5, dtype=np.float32))
        shift = b.const(f"transform_input.shift{c}", np.array((mean - 0.5) / 0.5, dtype=np.float32))
        t = b.op("Gather", [x, idx], "", axis=1)
        t = b.op("Unsqueeze", [t, axes], "")
        t = b.op("Mul", [t, scale], "")
        t = b.op("Add", [t, shift], "")
        chans.append(t)
    return b.op("Concat", chans, "", axis=1)


def inception(b: Builder, x: str, name: str, cfg: tuple, fuse_bn: bool) -> str:
    cin, c1, c3r, c3, c5r, c5, pp = cfg
    b1 = basic_conv(b, x, f"{name}.branch1", cin, c1, 1, fuse_bn=fuse_bn)
    b2 = basic_conv(b, x, f"{name}.branch2.0", cin, c3r, 1, fuse_bn=fuse_bn)
    b2 = basic_conv(b, b2, f"{name}.branch2.1", c3r, c3, 3, pad=1, fuse_bn=fuse_bn)
    b3 = basic_conv(b, x, f"{name}.branch3.0", cin, c5r, 1, fuse_bn=fuse_bn)
    # torchvision's known quirk: kernel_size=3 (not 5) in the "5x5" branch.
    b3 = basic_conv(b, b3, f"{name}.branch3.1", c5r, c5, 3, pad=1, fuse_bn=fuse_bn)
    b4 = maxpool(b, x, f"/{name}/branch4/branch4.0", 3, 1, 1, ceil=True)
    b4 = basic_conv(b, b4, f"{name}.branch4.1", cin, pp, 1, fuse_bn=fuse_bn)
    return b.op("Concat", [b1, b2, b3, b4], f"/{name}", axis=1)


def build_googlenet(fuse_bn: bool = True) -> onnx.ModelProto:
    b = Builder()
    x = transform_input(b, "input")
    x = basic_conv(b, x, "conv1", 3, 64, 7, stride=2, pad=3, fuse_bn=fuse_bn)   # 112
    x = maxpool(b, x, "/maxpool1", 3, 2, ceil=True)                              # 56
    x = basic_conv(b, x, "conv2", 64, 64, 1, fuse_bn=fuse_bn)
    x = basic_conv(b, x, "conv3", 64, 192, 3, pad=1, fuse_bn=fuse_bn)
    x = maxpool(b, x, "/maxpool2", 3, 2, ceil=True)                              # 28
    for name, cfg in INCEPTION:
        if name == "maxpool3":
            x = maxpool(b, x, "/maxpool3", 3, 2, ceil=True)                      # 14
        elif name == "maxpool4":
            x = maxpool(b, x, "/maxpool4", 2, 2, ceil=True)                      # 7
        else:
            x = inception(b, x, name, cfg, fuse_bn)
    x = b.op("GlobalAveragePool", [x], "/avgpool")
    x = b.op("Flatten", [x], "", axis=1)
    # dropout(p=0.2) vanishes in eval export
    x = gemm(b, x, "/fc", "fc", 1024, 1000)
    bn = "Conv+BatchNorm folded (as the eval-mode exporter does)" if fuse_bn else "unfused BatchNorm"
    return b.model("torchvision_googlenet", "input", x, "logits",
                   "Weight-free skeleton of torchvision googlenet (IMAGENET1K_V1, transform_input=True, "
                   f"no aux heads; {bn}) as exported by torch.onnx.export at opset 13; "
                   "weights are ConstantOfShape placeholders.")


# ----------------------------------------------------------------------------- checks

def materialize(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """Replace each ConstantOfShape(<w>__SHAPE) by a random initializer <w>."""
    rng = np.random.default_rng(seed)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in g.initializer if t.name.endswith("__SHAPE")}
    keep, new_inits = [], []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in shapes:
            shape = [int(d) for d in shapes[n.input[0]]]
            name = n.output[0]
            if len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                w = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            elif name.endswith(("running_var", "bn.weight")):
                w = rng.uniform(0.5, 1.5, shape)
            else:
                w = rng.normal(0.0, 0.01, shape)
            new_inits.append(numpy_helper.from_array(w.astype(np.float32), name))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    old = [t for t in g.initializer if t.name not in shapes]
    del g.initializer[:]
    g.initializer.extend(old + new_inits)
    # IR < 4 (the light models) lists initializers as graph inputs too.
    inputs = [i for i in g.input if i.name not in shapes]
    del g.input[:]
    g.input.extend(inputs)
    if m.ir_version < 4:
        for t in new_inits:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m


def summarize(path: str) -> tuple[onnx.ModelProto, collections.Counter]:
    model = onnx.load(path)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    return model, ops


def check_file(path: str, batches: tuple[int, ...]) -> None:
    import onnxruntime as ort

    model, ops = summarize(path)
    checker.check_model(model, full_check=True)
    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    out_dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    shape_inits = {t.name for t in model.graph.initializer if t.name.endswith("__SHAPE")}
    n_cos = sum(1 for n in model.graph.node if n.op_type == "ConstantOfShape" and n.input[0] in shape_inits)
    n_params = sum(int(np.prod(numpy_helper.to_array(t))) for t in model.graph.initializer
                   if t.name in shape_inits)
    print(f"{os.path.basename(path)}: opset {[o.version for o in model.opset_import]}, "
          f"ir {model.ir_version}, {len(model.graph.node)} nodes")
    print(f"  ops: {dict(sorted(ops.items()))}")
    print(f"  ConstantOfShape weights: {n_cos} ({n_params:,} parameters); "
          f"inferred output shape {out_dims}")

    real = materialize(model)
    checker.check_model(real)
    sess = ort.InferenceSession(real.SerializeToString(), providers=["CPUExecutionProvider"])
    (inp,) = [i for i in sess.get_inputs() if i.name not in {t.name for t in real.graph.initializer}]
    out_name = sess.get_outputs()[0].name
    rng = np.random.default_rng(1)
    big = max(batches)
    x = rng.uniform(-2.0, 2.0, (big, 3, 224, 224)).astype(np.float32)
    singles = [sess.run([out_name], {inp.name: x[i:i + 1]})[0] for i in range(big)]
    for y in singles:
        assert y.shape == (1, 1000), y.shape
        assert np.all(np.isfinite(y))
    print(f"  onnxruntime batch 1: output {singles[0].shape}, |y| max {np.abs(singles[0]).max():.4g}")
    for n in batches:
        if n == 1:
            continue
        y = sess.run([out_name], {inp.name: x[:n]})[0]
        assert y.shape == (n, 1000), y.shape
        ref = np.concatenate(singles[:n])
        err = np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-12)
        assert err < 1e-4, f"batch {n} rows differ from batch-1 runs (rel err {err:.3g})"
        distinct = np.abs(y[0] - y[-1]).max()
        print(f"  onnxruntime batch {n}: output {y.shape}, rows match batch-1 runs "
              f"(max rel err {err:.2e}); row0 vs row{n - 1} differ by {distinct:.3g}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--unfused-bn", action="store_true",
                    help="keep GoogLeNet BatchNorms as separate nodes (not what torch exports)")
    ap.add_argument("--check", action="store_true", help="verify the written skeletons with onnxruntime")
    ap.add_argument("--check-only", nargs="*", metavar="FILE",
                    help="only verify these skeletons (default: all four in --out-dir)")
    args = ap.parse_args()

    if args.check_only is not None:
        files = args.check_only or [os.path.join(args.out_dir, f) for f in (
            "googlenet-tv.skeleton.onnx", "alexnet-tv.skeleton.onnx",
            "googlenet.skeleton.onnx", "alexnet.skeleton.onnx")]
        for f in files:
            g = onnx.load(f).graph
            inits = {t.name for t in g.initializer}
            (data,) = [i for i in g.input if i.name not in inits]
            # The light models hard-code batch 1 (input dims and Reshape targets).
            fixed_batch = data.type.tensor_type.shape.dim[0].dim_value == 1
            check_file(f, (1,) if fixed_batch else (1, 3))
        return 0

    written = []
    for name, model in (("googlenet-tv.skeleton.onnx", build_googlenet(fuse_bn=not args.unfused_bn)),
                        ("alexnet-tv.skeleton.onnx", build_alexnet())):
        checker.check_model(model, full_check=True)
        shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        path = os.path.join(args.out_dir, name)
        onnx.save(model, path)
        written.append(path)
        print(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    if args.check:
        for path in written:
            check_file(path, (1, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
