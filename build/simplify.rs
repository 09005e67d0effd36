//! Exact inference-time simplifications: pass-through nodes bypassed, `Constant` nodes made
//! initializers, and nodes of initializers only computed here.

use std::collections::HashSet;

use onnx_ir::{ModelProto, TensorProto};

use crate::tensors::{drop_unread_initializers, float_tensor, float_values, int64_values};

/// Inference-time simplifications, each exact: `Identity` and `Dropout` nodes are bypassed
/// (at inference both pass their input through; burn would still run them), `Constant` nodes
/// become initializers, and nodes whose inputs are all initializers are computed here when
/// they only reshape (`Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`, `Transpose`) or do float arithmetic
/// (`Add`, `Sub`, `Mul`, `Div` on equal shapes or with a scalar). The zoo GoogLeNet, for one,
/// reshapes its classifier's weights from `[1, 1, 1000, 1024]` on every forward pass. Last,
/// a fully connected `Gemm`'s default `alpha` and `beta` are written out, so that it is
/// imported as a `Linear` layer ([`explicit_gemm_defaults`]).
/// Returns the number of nodes removed.
pub(crate) fn simplify(proto: &mut ModelProto) -> Result<usize, String> {
    let graph = proto.graph.as_mut().ok_or("no graph")?;
    let outputs: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let before = graph.node.len();
    // Pass-through nodes: their consumers read the input instead.
    let mut i = 0;
    while i < graph.node.len() {
        let node = &graph.node[i];
        let passes_through =
            match node.op_type.as_str() {
                "Identity" => node.input.len() == 1,
                // Inputs 2 and 3 (ratio, training_mode) may only be absent: a graph that trains
                // at inference is left alone. The mask output must be unread.
                "Dropout" => {
                    node.input.iter().skip(1).all(|n| n.is_empty())
                        && node.output.iter().skip(1).all(|o| {
                            o.is_empty() || !graph.node.iter().any(|n| n.input.contains(o))
                        })
                }
                _ => false,
            };
        if !passes_through || node.output.is_empty() || outputs.contains(&node.output[0]) {
            i += 1;
            continue;
        }
        let (from, to) = (node.output[0].clone(), node.input[0].clone());
        graph.node.remove(i);
        for input in graph.node.iter_mut().flat_map(|n| n.input.iter_mut()) {
            if *input == from {
                input.clone_from(&to);
            }
        }
    }
    // Constants as initializers.
    let mut i = 0;
    while i < graph.node.len() {
        let node = &graph.node[i];
        let value = node
            .attribute
            .iter()
            .find(|a| a.name == "value")
            .and_then(|a| a.t.as_ref());
        match value {
            Some(t) if node.op_type == "Constant" && node.output.len() == 1 => {
                let mut t = t.clone();
                t.name = node.output[0].clone();
                graph.initializer.push(t);
                graph.node.remove(i);
            }
            _ => i += 1,
        }
    }
    // Nodes of initializers only, computed here.
    let mut i = 0;
    while i < graph.node.len() {
        let node = &graph.node[i];
        let inputs: Option<Vec<TensorProto>> = node
            .input
            .iter()
            .map(|n| graph.initializer.iter().find(|t| &t.name == n).cloned())
            .collect();
        let folded = match inputs {
            Some(inputs) if node.output.len() == 1 && !outputs.contains(&node.output[0]) => {
                fold_constant(&node.op_type, &node.attribute, &inputs)
            }
            _ => None,
        };
        match folded {
            Some(mut t) => {
                t.name = node.output[0].clone();
                graph.initializer.retain(|old| old.name != t.name);
                graph.initializer.push(t);
                graph.node.remove(i);
            }
            None => i += 1,
        }
    }
    explicit_gemm_defaults(graph);
    drop_unread_initializers(graph);
    Ok(before - graph.node.len())
}

/// Writes out the default `alpha = 1` and `beta = 1` of a `Gemm` that is a fully connected
/// layer (`transB = 1`, not `transA`, weights a 2-D initializer, bias absent or a 1-D
/// initializer of one value per output): burn-onnx imports a `Gemm` as a `Linear` layer only
/// when both are written, and otherwise as `x.matmul(w.transpose()) + b` (the zoo AlexNet's
/// and GoogLeNet's classifiers, exported without them). The same operation, so exact; a
/// `Linear` is what build.rs routes to glassbox's kernels.
fn explicit_gemm_defaults(graph: &mut onnx_ir::GraphProto) {
    let initializer = |name: &str| graph.initializer.iter().find(|t| t.name == name);
    let mut fully_connected = Vec::new();
    for (k, node) in graph.node.iter().enumerate() {
        let int = |name: &str, default: i64| {
            node.attribute
                .iter()
                .find(|a| a.name == name)
                .map_or(default, |a| a.i)
        };
        let Some(outputs) = node
            .input
            .get(1)
            .and_then(|b| initializer(b))
            .filter(|w| w.dims.len() == 2)
            .map(|w| w.dims[0])
        else {
            continue;
        };
        let bias_fits = match node.input.get(2).filter(|c| !c.is_empty()) {
            None => true,
            Some(c) => initializer(c).is_some_and(|c| c.dims == [outputs]),
        };
        if node.op_type == "Gemm" && int("transA", 0) == 0 && int("transB", 0) == 1 && bias_fits {
            fully_connected.push(k);
        }
    }
    for k in fully_connected {
        let node = &mut graph.node[k];
        for name in ["alpha", "beta"] {
            if !node.attribute.iter().any(|a| a.name == name) {
                node.attribute.push(onnx_ir::AttributeProto {
                    name: name.to_string(),
                    type_: onnx_ir::AttributeType::FLOAT.into(),
                    f: 1.0,
                    ..Default::default()
                });
            }
        }
    }
}

/// `op` computed on initializers, where [`simplify`] knows how; `None` otherwise.
fn fold_constant(
    op: &str,
    attributes: &[onnx_ir::AttributeProto],
    inputs: &[TensorProto],
) -> Option<TensorProto> {
    let attribute = |name: &str| attributes.iter().find(|a| a.name == name);
    let data = inputs.first()?;
    let dims = &data.dims;
    let reshaped = |new_dims: Vec<i64>| {
        let mut t = data.clone();
        t.dims = new_dims;
        t
    };
    match op {
        "Reshape" if inputs.len() == 2 && attribute("allowzero").is_none_or(|a| a.i == 0) => {
            let mut shape = int64_values(&inputs[1]);
            for (k, d) in shape.iter_mut().enumerate() {
                if *d == 0 {
                    *d = *dims.get(k)?;
                }
            }
            let known: i64 = shape.iter().filter(|&&d| d != -1).product();
            let total: i64 = dims.iter().product();
            match shape.iter().filter(|&&d| d == -1).count() {
                0 if known == total => {}
                1 if known > 0 && total % known == 0 => {
                    for d in shape.iter_mut().filter(|d| **d == -1) {
                        *d = total / known;
                    }
                }
                _ => return None,
            }
            Some(reshaped(shape))
        }
        "Flatten" if inputs.len() == 1 => {
            let rank = dims.len() as i64;
            let axis = attribute("axis").map_or(1, |a| a.i);
            let axis = if axis < 0 { axis + rank } else { axis };
            if !(0..=rank).contains(&axis) {
                return None;
            }
            let (outer, inner) = dims.split_at(axis as usize);
            Some(reshaped(vec![
                outer.iter().product(),
                inner.iter().product(),
            ]))
        }
        "Squeeze" | "Unsqueeze" => {
            // Axes from the second input (opset 13) or the attribute (before).
            let axes = match (inputs.get(1), attribute("axes")) {
                (Some(axes), _) => int64_values(axes),
                (None, Some(a)) => a.ints.clone(),
                (None, None) => return None,
            };
            let rank = dims.len() as i64
                + if op == "Unsqueeze" {
                    axes.len() as i64
                } else {
                    0
                };
            let mut axes: Vec<i64> = axes
                .iter()
                .map(|&a| if a < 0 { a + rank } else { a })
                .collect();
            axes.sort_unstable();
            if axes.iter().any(|&a| a < 0 || a >= rank) || axes.windows(2).any(|w| w[0] == w[1]) {
                return None;
            }
            if op == "Squeeze" {
                if axes.iter().any(|&a| dims[a as usize] != 1) {
                    return None;
                }
                Some(reshaped(
                    (0..dims.len() as i64)
                        .filter(|k| !axes.contains(k))
                        .map(|k| dims[k as usize])
                        .collect(),
                ))
            } else {
                let mut new_dims = dims.clone();
                for &a in &axes {
                    new_dims.insert(a as usize, 1);
                }
                Some(reshaped(new_dims))
            }
        }
        "Transpose" if inputs.len() == 1 && data.data_type == 1 => {
            let rank = dims.len();
            let perm: Vec<usize> = match attribute("perm") {
                Some(a) => a.ints.iter().map(|&p| p as usize).collect(),
                None => (0..rank).rev().collect(),
            };
            let mut seen = vec![false; rank];
            if perm.len() != rank
                || perm
                    .iter()
                    .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
            {
                return None;
            }
            let values = float_values(data);
            let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
            if values.len() != shape.iter().product::<usize>() {
                return None;
            }
            // Row-major strides of the input, read in the output's order.
            let mut strides = vec![1usize; rank];
            for k in (0..rank.saturating_sub(1)).rev() {
                strides[k] = strides[k + 1] * shape[k + 1];
            }
            let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            let mut index = vec![0usize; rank];
            let mut out = Vec::with_capacity(values.len());
            for _ in 0..values.len() {
                out.push(
                    values[(0..rank)
                        .map(|k| index[k] * strides[perm[k]])
                        .sum::<usize>()],
                );
                // The next output index, last axis fastest.
                for k in (0..rank).rev() {
                    index[k] += 1;
                    if index[k] < out_shape[k] {
                        break;
                    }
                    index[k] = 0;
                }
            }
            Some(float_tensor(
                String::new(),
                out_shape.iter().map(|&d| d as i64).collect(),
                &out,
            ))
        }
        "Add" | "Sub" | "Mul" | "Div" if inputs.len() == 2 => {
            let floats = |t: &TensorProto| (t.data_type == 1).then(|| float_values(t));
            let (a, b) = (floats(&inputs[0])?, floats(&inputs[1])?);
            if a.len() != b.len() && a.len() != 1 && b.len() != 1 {
                return None;
            }
            let scalar =
                |t: &TensorProto, v: &[f32]| v.len() == 1 && t.dims.iter().all(|&d| d == 1);
            let out_dims = if inputs[0].dims == inputs[1].dims
                || (scalar(&inputs[1], &b) && inputs[1].dims.len() <= inputs[0].dims.len())
            {
                inputs[0].dims.clone()
            } else if scalar(&inputs[0], &a) && inputs[0].dims.len() <= inputs[1].dims.len() {
                inputs[1].dims.clone()
            } else {
                return None;
            };
            let n = a.len().max(b.len());
            let at = |v: &[f32], k: usize| if v.len() == 1 { v[0] } else { v[k] };
            let values: Vec<f32> = (0..n)
                .map(|k| {
                    let (x, y) = (at(&a, k), at(&b, k));
                    match op {
                        "Add" => x + y,
                        "Sub" => x - y,
                        "Mul" => x * y,
                        _ => x / y,
                    }
                })
                .collect();
            Some(float_tensor(String::new(), out_dims, &values))
        }
        _ => None,
    }
}
