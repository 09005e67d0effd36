//! BatchNormalization folded into the Conv or Gemm before it, so that burn never runs it.

use std::collections::{HashMap, HashSet};

use onnx_ir::ModelProto;

use crate::tensors::{drop_unread_initializers, float_initializer, float_tensor, set_float_values};

/// Folds every inference BatchNormalization that directly follows a Gemm (see
/// [`fold_into_gemm`]) or a Conv (and is that Conv's only consumer) into the Conv's weights and
/// bias: `W' = W·s`, `b' = (b − mean)·s + β` with
/// `s = γ / sqrt(var + ε)` per output channel. burn runs each BatchNorm as four full-tensor
/// passes; folded, it costs nothing. Returns the number folded.
pub(crate) fn fold_batch_norms(proto: &mut ModelProto) -> Result<usize, String> {
    let graph = proto.graph.as_mut().ok_or("no graph")?;
    let outputs: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut uses: HashMap<String, usize> = HashMap::new();
    for node in &graph.node {
        for input in &node.input {
            *uses.entry(input.clone()).or_default() += 1;
        }
    }
    let mut folded = 0;
    let mut i = 0;
    while i < graph.node.len() {
        let bn = &graph.node[i];
        if bn.op_type != "BatchNormalization" || bn.input.len() != 5 || bn.output.len() != 1 {
            i += 1;
            continue;
        }
        if let Some(gemm_at) = graph
            .node
            .iter()
            .position(|n| n.op_type == "Gemm" && n.output.first() == Some(&bn.input[0]))
        {
            if fold_into_gemm(graph, i, gemm_at, &uses, &outputs) {
                folded += 1;
            } else {
                i += 1;
            }
            continue;
        }
        let Some(conv_at) = graph
            .node
            .iter()
            .position(|n| n.op_type == "Conv" && n.output.first() == Some(&bn.input[0]))
        else {
            i += 1;
            continue;
        };
        let conv = &graph.node[conv_at];
        let single_use = uses.get(&bn.input[0]) == Some(&1) && !outputs.contains(&bn.input[0]);
        let weight_shared = uses.get(&conv.input[1]).copied().unwrap_or(0) != 1;
        let params: Option<Vec<Vec<f32>>> = bn.input[1..5]
            .iter()
            .map(|n| float_initializer(graph, n))
            .collect();
        let (Some(params), Some(weight)) = (params, float_initializer(graph, &conv.input[1]))
        else {
            i += 1;
            continue;
        };
        let channels = params[0].len();
        if !single_use
            || weight_shared
            || channels == 0
            || weight.len() % channels != 0
            || params.iter().any(|p| p.len() != channels)
        {
            i += 1;
            continue;
        }
        let scale = batch_norm_scale(bn, &params);
        let (beta, mean) = (&params[1], &params[2]);
        let per = weight.len() / channels;
        let new_weight: Vec<f32> = weight
            .iter()
            .enumerate()
            .map(|(k, w)| (*w as f64 * scale[k / per]) as f32)
            .collect();
        let old_bias = conv
            .input
            .get(2)
            .filter(|n| !n.is_empty())
            .and_then(|n| float_initializer(graph, n));
        let new_bias: Vec<f32> = (0..channels)
            .map(|c| {
                ((old_bias.as_ref().map_or(0.0, |b| b[c] as f64) - mean[c] as f64) * scale[c]
                    + beta[c] as f64) as f32
            })
            .collect();
        install_fold(graph, conv_at, i, &new_weight, &new_bias);
        folded += 1;
    }
    // The BatchNorm parameters and replaced biases are read by nothing any more.
    drop_unread_initializers(graph);
    Ok(folded)
}

/// Folds the BatchNormalization at `bn_at` into the Gemm at `gemm_at` that feeds it, when the
/// Gemm's output, weights and bias are read by nothing else: `Y = α·A·B + β·C` normalised per
/// output column `j` is `α·A·(B·s) + ((β·C − mean)·s + bn_β)` with `s_j = γ_j / sqrt(var_j + ε)`,
/// so B's column `j` (its row with `transB`) is scaled and the bias replaced. Returns whether
/// it folded (the BatchNorm node is then removed).
fn fold_into_gemm(
    graph: &mut onnx_ir::GraphProto,
    bn_at: usize,
    gemm_at: usize,
    uses: &HashMap<String, usize>,
    outputs: &HashSet<String>,
) -> bool {
    let (bn, gemm) = (&graph.node[bn_at], &graph.node[gemm_at]);
    let float_attr = |name: &str, default: f32| {
        gemm.attribute
            .iter()
            .find(|a| a.name == name)
            .map_or(default, |a| a.f)
    };
    let trans_b = gemm
        .attribute
        .iter()
        .any(|a| a.name == "transB" && a.i != 0);
    let beta_gemm = float_attr("beta", 1.0) as f64;
    let only_here = |name: &str| uses.get(name) == Some(&1) && !outputs.contains(name);
    if gemm.input.len() < 2 || !only_here(&bn.input[0]) || !only_here(&gemm.input[1]) {
        return false;
    }
    let Some(b_tensor) = graph.initializer.iter().find(|t| t.name == gemm.input[1]) else {
        return false;
    };
    let params: Option<Vec<Vec<f32>>> = bn.input[1..5]
        .iter()
        .map(|n| float_initializer(graph, n))
        .collect();
    let (Some(params), Some(weight)) = (params, float_initializer(graph, &gemm.input[1])) else {
        return false;
    };
    let m = params[0].len();
    let dims = b_tensor.dims.clone();
    let columns_of_b = if trans_b { dims.first() } else { dims.get(1) };
    if dims.len() != 2 || columns_of_b != Some(&(m as i64)) || params.iter().any(|p| p.len() != m) {
        return false;
    }
    // The bias: absent, a scalar, or one value per output column.
    let bias_name = gemm.input.get(2).filter(|n| !n.is_empty()).cloned();
    let old_bias: Vec<f64> = match &bias_name {
        None => vec![0.0; m],
        Some(name) => {
            let Some(c) = float_initializer(graph, name).filter(|_| only_here(name)) else {
                return false;
            };
            match c.len() {
                1 => vec![c[0] as f64; m],
                n if n == m => c.iter().map(|&v| v as f64).collect(),
                _ => return false,
            }
        }
    };
    let scale = batch_norm_scale(bn, &params);
    let (beta, mean) = (&params[1], &params[2]);
    let new_weight: Vec<f32> = weight
        .iter()
        .enumerate()
        .map(|(k, w)| {
            let j = if trans_b {
                k / (weight.len() / m)
            } else {
                k % m
            };
            (*w as f64 * scale[j]) as f32
        })
        .collect();
    let new_bias: Vec<f32> = (0..m)
        .map(|j| ((beta_gemm * old_bias[j] - mean[j] as f64) * scale[j] + beta[j] as f64) as f32)
        .collect();
    // The new bias already carries the old one's β.
    graph.node[gemm_at].attribute.retain(|a| a.name != "beta");
    install_fold(graph, gemm_at, bn_at, &new_weight, &new_bias);
    true
}

/// `s = γ / sqrt(var + ε)` per channel of a BatchNormalization whose parameters are
/// `[γ, β, mean, var]`.
fn batch_norm_scale(bn: &onnx_ir::NodeProto, params: &[Vec<f32>]) -> Vec<f64> {
    let eps = bn
        .attribute
        .iter()
        .find(|a| a.name == "epsilon")
        .map_or(1e-5, |a| a.f) as f64;
    let (gamma, var) = (&params[0], &params[3]);
    (0..gamma.len())
        .map(|c| gamma[c] as f64 / (var[c] as f64 + eps).sqrt())
        .collect()
}

/// Writes a BatchNormalization folded into the node at `at` (a Conv or Gemm): the node's
/// weights (input 1) become `weight`, a new initializer `bias` replaces its bias, it takes over
/// the BatchNorm's output, and the BatchNorm node at `bn_at` is removed.
fn install_fold(
    graph: &mut onnx_ir::GraphProto,
    at: usize,
    bn_at: usize,
    weight: &[f32],
    bias: &[f32],
) {
    let (weight_name, bn_out) = (
        graph.node[at].input[1].clone(),
        graph.node[bn_at].output[0].clone(),
    );
    for t in graph
        .initializer
        .iter_mut()
        .filter(|t| t.name == weight_name)
    {
        set_float_values(t, weight);
    }
    let bias_name = format!("{bn_out}__folded_bias");
    graph.initializer.push(float_tensor(
        bias_name.clone(),
        vec![bias.len() as i64],
        bias,
    ));
    let node = &mut graph.node[at];
    node.input.truncate(2);
    node.input.push(bias_name);
    node.output[0] = bn_out;
    graph.node.remove(bn_at);
}
