//! Estimates of the largest per-sample buffer of a forward pass, which the runtime uses to size
//! its chunks from the device's limits.

use std::collections::HashMap;
use std::path::Path;

use onnx_ir::{ModelProto, NodeType, OnnxGraphBuilder};

/// The largest buffer one sample needs anywhere in the forward pass, in f32 elements: every
/// activation, and for convolutions the im2col matrix a GPU kernel may build.
/// The largest per-sample buffer (in f32 values) of a graph of image layers, by propagating each
/// tensor's `[C, H, W]` from the `[3, height, width]` input through Conv, pooling, Concat,
/// element-wise operators and torchvision's channel Gather + Unsqueeze. Tensors it cannot follow
/// (after Flatten, say) are skipped: they are small there. (glassbox's CPU convolutions build
/// their im2col blocks per band of rows, never for a whole batch.)
pub(crate) fn largest_buffer_propagated(proto: &ModelProto, [width, height]: [u32; 2]) -> u64 {
    let Some(graph) = proto.graph.as_ref() else {
        return 0;
    };
    let mut shapes: HashMap<String, Vec<i64>> = HashMap::new();
    if let Some(input) = graph.input.first() {
        shapes.insert(input.name.clone(), vec![3, height as i64, width as i64]);
    }
    let weights: HashMap<&str, &Vec<i64>> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), &t.dims))
        .collect();
    let ints = |node: &onnx_ir::NodeProto, name: &str, default: Vec<i64>| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .map_or(default, |a| a.ints.clone())
    };
    let mut largest = 0u64;
    for node in &graph.node {
        let first = node.input.first().and_then(|n| shapes.get(n)).cloned();
        // Output size of a window of `k` at stride `s` with padding `lo + hi` (dilation `d`).
        let window = |size: i64, k: i64, s: i64, lo: i64, hi: i64, d: i64, ceil: bool| {
            let span = size + lo + hi - (d * (k - 1) + 1);
            if span < 0 || s <= 0 {
                return None;
            }
            Some(if ceil {
                (span + s - 1) / s + 1
            } else {
                span / s + 1
            })
        };
        let out: Option<Vec<i64>> = match node.op_type.as_str() {
            "Conv" | "MaxPool" | "AveragePool" => (|| {
                let [c, h, w] = <[i64; 3]>::try_from(first?).ok()?;
                let conv = node.op_type == "Conv";
                let kernel = if conv {
                    let dims = weights.get(node.input.get(1)?.as_str())?;
                    vec![*dims.get(2)?, *dims.get(3)?]
                } else {
                    ints(node, "kernel_shape", vec![])
                };
                let (kh, kw) = (*kernel.first()?, *kernel.get(1)?);
                let s = ints(node, "strides", vec![1, 1]);
                let p = ints(node, "pads", vec![0; 4]);
                let d = ints(node, "dilations", vec![1, 1]);
                let ceil = node
                    .attribute
                    .iter()
                    .any(|a| a.name == "ceil_mode" && a.i != 0);
                let ho = window(
                    h,
                    kh,
                    *s.first()?,
                    *p.first()?,
                    *p.get(2)?,
                    *d.first()?,
                    ceil,
                )?;
                let wo = window(w, kw, *s.get(1)?, *p.get(1)?, *p.get(3)?, *d.get(1)?, ceil)?;
                let channels = if conv {
                    weights.get(node.input.get(1)?.as_str())?[0]
                } else {
                    c
                };
                Some(vec![channels, ho, wo])
            })(),
            "Concat" => node
                .input
                .iter()
                .map(|n| shapes.get(n).filter(|s| s.len() == 3))
                .collect::<Option<Vec<_>>>()
                .map(|all| vec![all.iter().map(|s| s[0]).sum(), all[0][1], all[0][2]]),
            // torchvision's transform_input: one channel gathered, then unsqueezed back.
            "Gather" => first.filter(|s| s.len() == 3).map(|s| vec![s[1], s[2]]),
            "Unsqueeze" => first.filter(|s| s.len() == 2).map(|s| vec![1, s[0], s[1]]),
            "GlobalAveragePool" => first.filter(|s| s.len() == 3).map(|s| vec![s[0], 1, 1]),
            "Relu" | "Clip" | "LRN" | "BatchNormalization" | "Dropout" | "Identity" | "Add"
            | "Mul" | "Sub" | "Div" | "Sigmoid" | "LeakyRelu" => node
                .input
                .iter()
                .filter_map(|n| shapes.get(n))
                .max_by_key(|s| s.iter().product::<i64>())
                .cloned(),
            _ => None,
        };
        if let Some(out) = out {
            largest = largest.max(out.iter().product::<i64>().max(0) as u64);
            if let Some(name) = node.output.first() {
                shapes.insert(name.clone(), out);
            }
        }
    }
    largest
}

pub(crate) fn largest_buffer_per_sample(path: &Path) -> Result<u64, String> {
    let graph = OnnxGraphBuilder::new()
        .parse_file(path)
        .map_err(|e| format!("burn-onnx cannot read the graph: {e}"))?;
    let static_dims = |arg: &onnx_ir::Argument| -> Option<Vec<Option<usize>>> {
        match &arg.ty {
            onnx_ir::ArgType::Tensor(t) => t.static_shape.clone(),
            _ => None,
        }
    };
    let per_sample = |dims: &[Option<usize>]| -> u64 {
        dims.iter().skip(1).map(|d| d.unwrap_or(1) as u64).product()
    };
    let mut largest = 3 * 224 * 224;
    for node in &graph.nodes {
        for out in node.outputs() {
            if let Some(d) = static_dims(out) {
                largest = largest.max(per_sample(d.as_slice()));
            }
        }
        if node.node_type() == NodeType::Conv2d {
            let weight = node.inputs().get(1).and_then(static_dims);
            let out = node.outputs().first().and_then(static_dims);
            if let (Some(w), Some(o)) = (weight, out)
                && w.len() == 4
                && o.len() == 4
            {
                let cols: u64 = w[1..].iter().map(|d| d.unwrap_or(1) as u64).product();
                let pixels = o[2].unwrap_or(1) as u64 * o[3].unwrap_or(1) as u64;
                largest = largest.max(cols * pixels);
            }
        }
    }
    Ok(largest)
}
