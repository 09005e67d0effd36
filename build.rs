//! Build script: turns every model described in `onnx/*.toml` into Rust code with burn-onnx.
//!
//! For each descriptor it
//! 1. picks the real ONNX file when present (checking its SHA-256 when the descriptor gives one),
//!    and otherwise the committed weight-free skeleton, whose `ConstantOfShape` weights are
//!    replaced by deterministic synthetic values (the model is then flagged `synthetic`);
//! 2. rewrites the graph to take any batch (input dim 0 and `[1, K]` reshapes);
//! 3. checks that the input is `[N, 3, H, W]` with the descriptor's size and the output `[N, classes]`,
//!    failing with a message that names the file instead of panicking inside code generation;
//! 4. estimates the largest per-sample buffer of the forward pass (activations and conv im2col),
//!    which the runtime uses to size chunks from the device's limits;
//! 5. runs burn-onnx (weights as a burnpack beside the code, loaded by glassbox's own fallible
//!    loader) and writes `models.rs`, the registry the library includes.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use burn_onnx::{LoadStrategy, ModelGen};
use onnx_ir::{Message, ModelProto, NodeType, OnnxGraphBuilder, TensorProto};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A model descriptor, `onnx/<id>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Descriptor {
    /// Human-readable name.
    name: String,
    /// Whether this is the model used when none is named (exactly one must be).
    #[serde(default)]
    default: bool,
    /// The real ONNX file, relative to `onnx/`.
    file: String,
    /// Expected SHA-256 of `file` (hex), for files fetched from elsewhere.
    sha256: Option<String>,
    /// Weight-free skeleton used when `file` is absent.
    skeleton: Option<String>,
    /// Compile the weights into the binary (otherwise they are read from disk at load time).
    #[serde(default)]
    embed: bool,
    /// A test fixture (tests/models), hidden from `glassbox models` unless asked for.
    #[serde(default)]
    fixture: bool,
    /// Class names, one per line, relative to `onnx/`.
    labels: String,
    /// `logits` or `probabilities`.
    output: String,
    /// Where the graph and weights come from.
    source: String,
    /// Licence of the weights.
    licence: String,
    preprocess: Preprocess,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Preprocess {
    /// Model input `[width, height]`.
    size: [u32; 2],
    /// `stretch`, `shorter-side` or `centre-square`.
    resize: String,
    /// For `shorter-side`: the shorter side before the centre crop.
    resize_shorter: Option<u32>,
    /// `rgb` or `bgr`.
    channels: String,
    /// Raw 0..255 values are multiplied by this first.
    scale: f32,
    /// Subtracted after scaling, per model channel.
    mean: [f32; 3],
    /// Divides after the mean, per model channel.
    std: [f32; 3],
}

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dirs = [manifest.join("onnx"), manifest.join("tests").join("models")];
    for dir in &dirs {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    if let Err(message) = run(&dirs) {
        // One clear line per problem, then stop the build.
        for line in message.lines() {
            println!("cargo::error={line}");
        }
        std::process::exit(1);
    }
}

struct Prepared {
    id: String,
    ident: String,
    desc: Descriptor,
    synthetic: bool,
    weights_path: PathBuf,
    weights_len: u64,
    classes: usize,
    max_elems_per_sample: u64,
    onnx_used: PathBuf,
    labels_path: PathBuf,
}

fn run(dirs: &[PathBuf]) -> Result<(), String> {
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let prepared_dir = out_dir.join("prepared");
    fs::create_dir_all(&prepared_dir).map_err(|e| format!("{}: {e}", prepared_dir.display()))?;

    let mut descriptors: Vec<(String, PathBuf)> = Vec::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        descriptors.extend(
            entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p))),
        );
    }
    descriptors.sort();
    if descriptors.is_empty() {
        return Err("no model descriptors (onnx/*.toml)".to_string());
    }
    for pair in descriptors.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(format!(
                "two descriptors for model '{}': {} and {}",
                pair[0].0,
                pair[0].1.display(),
                pair[1].1.display()
            ));
        }
    }

    let mut models = Vec::new();
    for (id, path) in &descriptors {
        println!("cargo:rerun-if-changed={}", path.display());
        let dir = path.parent().ok_or("descriptor without a folder")?;
        let model = prepare(id, path, dir, &prepared_dir)
            .map_err(|e| format!("model '{id}' ({}): {e}", path.display()))?;
        models.push(model);
    }

    if let Some(m) = models.iter().find(|m| m.desc.fixture && m.desc.default) {
        return Err(format!(
            "model '{}': a test fixture cannot be the default",
            m.id
        ));
    }
    let defaults: Vec<_> = models
        .iter()
        .filter(|m| m.desc.default)
        .map(|m| m.id.as_str())
        .collect();
    if defaults.len() != 1 {
        return Err(format!(
            "exactly one descriptor must say `default = true`; found {defaults:?}"
        ));
    }

    for model in &models {
        ModelGen::new()
            .input(model.onnx_used.to_str().ok_or("non-UTF-8 path")?)
            .out_dir("model/")
            .load_strategy(LoadStrategy::None)
            .run_from_script();
        let bpk = out_dir.join("model").join(format!("{}.bpk", model.ident));
        if !bpk.exists() {
            return Err(format!(
                "model '{}': burn-onnx wrote no weights file {}",
                model.id,
                bpk.display()
            ));
        }
    }

    let profile = env::var_os("CARGO_FEATURE_LAYER_PROFILE").is_some();
    for model in &models {
        let rs = out_dir.join("model").join(format!("{}.rs", model.ident));
        let source = fs::read_to_string(&rs).map_err(|e| format!("{}: {e}", rs.display()))?;
        let mut source = use_cpu_kernels(&source);
        if profile {
            source = instrument(&source);
        }
        fs::write(&rs, source).map_err(|e| format!("{}: {e}", rs.display()))?;
    }

    for model in &mut models {
        model.weights_path = out_dir.join("model").join(format!("{}.bpk", model.ident));
        model.weights_len = fs::metadata(&model.weights_path)
            .map_err(|e| e.to_string())?
            .len();
    }
    let registry = registry_source(&models)?;
    fs::write(out_dir.join("models.rs"), registry).map_err(|e| e.to_string())?;
    Ok(())
}

fn prepare(
    id: &str,
    desc_path: &Path,
    onnx_dir: &Path,
    prepared_dir: &Path,
) -> Result<Prepared, String> {
    let text = fs::read_to_string(desc_path).map_err(|e| e.to_string())?;
    let desc: Descriptor = toml::from_str(&text)
        .map_err(|e| format!("malformed descriptor: {}", e.to_string().replace('\n', " ")))?;
    check_descriptor(&desc)?;

    let real = onnx_dir.join(&desc.file);
    println!("cargo:rerun-if-changed={}", real.display());
    let (source_path, synthetic) = if real.exists() {
        (real, false)
    } else if let Some(skeleton) = &desc.skeleton {
        let skeleton = onnx_dir.join(skeleton);
        if !skeleton.exists() {
            return Err(format!(
                "neither the real file {} nor the skeleton {} exists",
                desc.file,
                skeleton.display()
            ));
        }
        println!(
            "cargo:warning=glassbox: {} is absent; building '{id}' from {} with SYNTHETIC weights (onnx/fetch.sh or onnx/export_torchvision.py get the real file)",
            desc.file,
            skeleton.file_name().and_then(|s| s.to_str()).unwrap_or("?")
        );
        (skeleton, true)
    } else {
        return Err(format!(
            "{} is missing and the descriptor names no skeleton",
            real.display()
        ));
    };

    let bytes = fs::read(&source_path).map_err(|e| format!("{}: {e}", source_path.display()))?;
    if !synthetic && let Some(expected) = &desc.sha256 {
        let actual = hex(&Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(format!(
                "{}: SHA-256 is {actual}, the descriptor expects {expected} (a corrupt or different download?)",
                source_path.display()
            ));
        }
    }
    let mut proto = ModelProto::parse_from_bytes(&bytes)
        .map_err(|e| format!("{}: not a valid ONNX protobuf: {e}", source_path.display()))?;
    if proto.graph.is_none() {
        return Err(format!(
            "{}: the ONNX file has no graph",
            source_path.display()
        ));
    }
    if synthetic {
        synthesise_weights(id, &mut proto)?;
    }
    let ident = id.replace('-', "_");
    if synthetic {
        // The synthetic graph before any rewrite: tests/data/make_parity.py checks the
        // prepared graph against it, as it checks a real model against its original file.
        let original = prepared_dir.join(format!("{ident}.original.onnx"));
        let out = proto.write_to_bytes().map_err(|e| e.to_string())?;
        fs::write(&original, out).map_err(|e| format!("{}: {e}", original.display()))?;
    }
    // Constants folded first, so that weights computed from constants are initializers
    // BatchNorm folding can rewrite.
    simplify(&mut proto).map_err(|e| format!("{}: {e}", source_path.display()))?;
    fold_batch_norms(&mut proto).map_err(|e| format!("{}: {e}", source_path.display()))?;
    let classes = batch_and_check(&mut proto, &desc)
        .map_err(|e| format!("{}: {e}", source_path.display()))?;

    let onnx_used = prepared_dir.join(format!("{ident}.onnx"));
    let out = proto.write_to_bytes().map_err(|e| e.to_string())?;
    fs::write(&onnx_used, out).map_err(|e| format!("{}: {e}", onnx_used.display()))?;

    // burn-onnx's static shapes stop at some operators (torchvision's GoogLeNet starts with
    // Gather + Unsqueeze): the sizes propagated here from the input cover those graphs.
    let max_elems_per_sample = largest_buffer_per_sample(&onnx_used)
        .map_err(|e| format!("{}: {e}", source_path.display()))?
        .max(largest_buffer_propagated(&proto, desc.preprocess.size));

    let labels_path = onnx_dir.join(&desc.labels);
    println!("cargo:rerun-if-changed={}", labels_path.display());
    let labels = fs::read_to_string(&labels_path)
        .map_err(|e| format!("labels {}: {e}", labels_path.display()))?;
    let n_labels = labels.lines().filter(|l| !l.trim().is_empty()).count();
    if n_labels != classes {
        return Err(format!(
            "{} has {n_labels} labels but the model outputs {classes} classes",
            labels_path.display()
        ));
    }

    Ok(Prepared {
        id: id.to_string(),
        ident,
        desc,
        synthetic,
        weights_path: PathBuf::new(),
        weights_len: 0,
        classes,
        max_elems_per_sample,
        onnx_used,
        labels_path,
    })
}

fn check_descriptor(desc: &Descriptor) -> Result<(), String> {
    match desc.preprocess.resize.as_str() {
        "stretch" | "centre-square" => {}
        "shorter-side" => {
            let shorter = desc
                .preprocess
                .resize_shorter
                .ok_or("resize = \"shorter-side\" needs resize_shorter")?;
            let [w, h] = desc.preprocess.size;
            if shorter < w.min(h) {
                return Err(format!(
                    "resize_shorter {shorter} is smaller than the crop {w}x{h}"
                ));
            }
        }
        other => {
            return Err(format!(
                "unknown resize policy '{other}' (stretch, shorter-side, centre-square)"
            ));
        }
    }
    if !matches!(desc.preprocess.channels.as_str(), "rgb" | "bgr") {
        return Err(format!(
            "unknown channel order '{}' (rgb, bgr)",
            desc.preprocess.channels
        ));
    }
    if !matches!(desc.output.as_str(), "logits" | "probabilities") {
        return Err(format!(
            "unknown output kind '{}' (logits, probabilities)",
            desc.output
        ));
    }
    if desc
        .preprocess
        .std
        .iter()
        .any(|s| *s == 0.0 || !s.is_finite())
        || !desc.preprocess.scale.is_finite()
    {
        return Err("preprocess std must be finite and non-zero, scale finite".into());
    }
    let [w, h] = desc.preprocess.size;
    if w == 0 || h == 0 || w > 4096 || h > 4096 {
        return Err(format!("input size {w}x{h} is out of range"));
    }
    Ok(())
}

/// Replaces every `ConstantOfShape` whose shape is an initializer by an initializer of
/// deterministic synthetic values, scaled by the consuming operator's role so that the network's
/// activations stay in a sane range (He-uniform weights, small biases, BatchNorm near identity).
fn synthesise_weights(model_id: &str, proto: &mut ModelProto) -> Result<(), String> {
    let graph = proto.graph.as_mut().ok_or("no graph")?;
    let shapes: HashMap<String, Vec<i64>> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == 7) // INT64
        .map(|t| (t.name.clone(), int64_values(t)))
        .collect();
    // Who consumes each value, and at which input position.
    let mut consumers: HashMap<String, (String, usize)> = HashMap::new();
    for node in &graph.node {
        for (i, input) in node.input.iter().enumerate() {
            consumers
                .entry(input.clone())
                .or_insert((node.op_type.clone(), i));
        }
    }
    let mut new_inits = Vec::new();
    let mut kept = Vec::new();
    for node in graph.node.drain(..) {
        let shape = (node.op_type == "ConstantOfShape")
            .then(|| node.input.first().and_then(|s| shapes.get(s)))
            .flatten();
        match (shape, node.output.first()) {
            (Some(dims), Some(name)) => {
                let role = consumers.get(name).cloned().unwrap_or_default();
                new_inits.push(synthetic_tensor(model_id, name, dims, &role)?);
            }
            _ => kept.push(node),
        }
    }
    graph.node = kept;
    graph.initializer.extend(new_inits);
    drop_unread_initializers(graph);
    Ok(())
}

/// Folds every inference BatchNormalization that directly follows a Gemm (see
/// [`fold_into_gemm`]) or a Conv (and is that Conv's only consumer) into the Conv's weights and
/// bias: `W' = W·s`, `b' = (b − mean)·s + β` with
/// `s = γ / sqrt(var + ε)` per output channel. burn runs each BatchNorm as four full-tensor
/// passes; folded, it costs nothing. Returns the number folded.
fn fold_batch_norms(proto: &mut ModelProto) -> Result<usize, String> {
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

/// Inference-time simplifications, each exact: `Identity` and `Dropout` nodes are bypassed
/// (at inference both pass their input through; burn would still run them), `Constant` nodes
/// become initializers, and nodes whose inputs are all initializers are computed here when
/// they only reshape (`Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`, `Transpose`) or do float arithmetic
/// (`Add`, `Sub`, `Mul`, `Div` on equal shapes or with a scalar). The zoo GoogLeNet, for one,
/// reshapes its classifier's weights from `[1, 1, 1000, 1024]` on every forward pass.
/// Returns the number of nodes removed.
fn simplify(proto: &mut ModelProto) -> Result<usize, String> {
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
    drop_unread_initializers(graph);
    Ok(before - graph.node.len())
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

/// The values of an f32 tensor.
fn float_values(t: &TensorProto) -> Vec<f32> {
    if !t.float_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// Replaces an f32 tensor's values with `values`, stored as raw little-endian bytes.
fn set_float_values(t: &mut TensorProto, values: &[f32]) {
    t.float_data.clear();
    t.raw_data = values
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<u8>>()
        .into();
}

/// An f32 tensor named `name` of shape `dims` holding `values`.
fn float_tensor(name: String, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name;
    t.dims = dims;
    t.data_type = 1;
    set_float_values(&mut t, values);
    t
}

/// The f32 values of initializer `name`, if it is one.
fn float_initializer(graph: &onnx_ir::GraphProto, name: &str) -> Option<Vec<f32>> {
    graph
        .initializer
        .iter()
        .find(|t| t.name == name && t.data_type == 1)
        .map(float_values)
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

/// Removes the initializers no node reads, and their entries among the graph inputs (old-IR
/// graphs list every initializer as an input too).
fn drop_unread_initializers(graph: &mut onnx_ir::GraphProto) {
    let read: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    let dropped: HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| !read.contains(&t.name))
        .map(|t| t.name.clone())
        .collect();
    graph.initializer.retain(|t| !dropped.contains(&t.name));
    graph.input.retain(|i| !dropped.contains(&i.name));
}

fn synthetic_tensor(
    model_id: &str,
    name: &str,
    dims: &[i64],
    role: &(String, usize),
) -> Result<TensorProto, String> {
    if dims.iter().any(|d| *d < 0) {
        return Err(format!("weight {name} has a negative dimension {dims:?}"));
    }
    let len: usize = dims.iter().map(|d| *d as usize).product();
    // Leading unit dims are layout (the zoo stores a Gemm weight as [1, 1, out, in]).
    let core: Vec<usize> = dims
        .iter()
        .map(|d| *d as usize)
        .skip_while(|d| *d == 1)
        .collect();
    let fan_in: usize = core.iter().skip(1).product::<usize>().max(1);
    let (lo, hi) = match (role.0.as_str(), role.1) {
        ("BatchNormalization", 1) => (0.8, 1.2),  // scale
        ("BatchNormalization", 4) => (0.8, 1.2),  // variance
        ("BatchNormalization", _) => (-0.1, 0.1), // bias, mean
        (_, _) if core.len() >= 2 => {
            let a = (6.0 / fan_in as f64).sqrt();
            (-a, a)
        }
        _ => (-0.01, 0.01),
    };
    let mut rng = SplitMix64(fnv1a(&format!("{model_id}/{name}")));
    let mut raw = Vec::with_capacity(len * 4);
    for _ in 0..len {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        raw.extend_from_slice(&((lo + (hi - lo) * u) as f32).to_le_bytes());
    }
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.to_vec();
    t.data_type = 1; // FLOAT
    t.raw_data = raw.into();
    Ok(t)
}

struct SplitMix64(u64);
impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn int64_values(t: &TensorProto) -> Vec<i64> {
    if !t.int64_data.is_empty() {
        t.int64_data.clone()
    } else {
        t.raw_data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect()
    }
}

fn set_int64_values(t: &mut TensorProto, values: &[i64]) {
    if !t.int64_data.is_empty() {
        t.int64_data = values.to_vec();
    } else {
        t.raw_data = values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into();
    }
}

/// Makes dim 0 of the input and output symbolic, turns `[1, K]` reshapes of activations into
/// `[-1, K]`, drops initializers listed as graph inputs (old IR), and checks the I/O shapes.
/// Returns the number of classes.
fn batch_and_check(proto: &mut ModelProto, desc: &Descriptor) -> Result<usize, String> {
    let graph = proto.graph.as_mut().ok_or("no graph")?;
    let init_names: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    graph.input.retain(|i| !init_names.contains(&i.name));
    let const_outputs: HashSet<String> = graph
        .node
        .iter()
        .filter(|n| matches!(n.op_type.as_str(), "Constant" | "ConstantOfShape"))
        .flat_map(|n| n.output.iter().cloned())
        .collect();
    if graph.input.len() != 1 {
        let names: Vec<_> = graph.input.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "expected one image input, found {} ({names:?})",
            names.len()
        ));
    }
    if graph.output.len() != 1 {
        return Err(format!("expected one output, found {}", graph.output.len()));
    }

    // Reshapes whose target is [1, K] on an activation become [-1, K].
    let reshape_shapes: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Reshape" && n.input.len() == 2)
        .filter(|n| !init_names.contains(&n.input[0]) && !const_outputs.contains(&n.input[0]))
        .map(|n| n.input[1].clone())
        .collect();
    for t in graph
        .initializer
        .iter_mut()
        .filter(|t| reshape_shapes.contains(&t.name))
    {
        let v = int64_values(t);
        if v.len() == 2 && v[0] == 1 {
            set_int64_values(t, &[-1, v[1]]);
        }
    }

    let dims = |vi: &onnx_ir::ValueInfoProto| -> Vec<Option<i64>> {
        vi.type_
            .tensor_type()
            .shape
            .dim
            .iter()
            .map(|d| {
                if d.has_dim_value() {
                    Some(d.dim_value())
                } else {
                    None
                }
            })
            .collect()
    };
    let input = &mut graph.input[0];
    let in_dims = dims(input);
    let [w, h] = desc.preprocess.size;
    if in_dims.len() != 4 || in_dims[1] != Some(3) {
        return Err(format!(
            "input '{}' must be [N, 3, H, W], found {}",
            input.name,
            show_dims(&in_dims)
        ));
    }
    if in_dims[2].is_some_and(|d| d != h as i64) || in_dims[3].is_some_and(|d| d != w as i64) {
        return Err(format!(
            "input '{}' is {} but the descriptor says {w}x{h}",
            input.name,
            show_dims(&in_dims)
        ));
    }
    let tensor = input.type_.mut_or_insert_default().mut_tensor_type();
    let shape = tensor.shape.mut_or_insert_default();
    shape.dim[0].set_dim_param("N".into());
    for (i, size) in [(2, h), (3, w)] {
        shape.dim[i].set_dim_value(size as i64);
    }

    let output = &mut graph.output[0];
    let out_dims = dims(output);
    if out_dims.len() != 2 {
        return Err(format!(
            "output '{}' must be [N, classes], found {}",
            output.name,
            show_dims(&out_dims)
        ));
    }
    let classes =
        out_dims[1].ok_or_else(|| format!("output '{}' has no static class count", output.name))?;
    if classes < 2 {
        return Err(format!("output '{}' has {classes} classes", output.name));
    }
    let tensor = output.type_.mut_or_insert_default().mut_tensor_type();
    tensor.shape.mut_or_insert_default().dim[0].set_dim_param("N".into());
    graph.value_info.clear();
    Ok(classes as usize)
}

fn show_dims(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The largest buffer one sample needs anywhere in the forward pass, in f32 elements: every
/// activation, and for convolutions the im2col matrix a GPU kernel may build.
/// The largest per-sample buffer (in f32 values) of a graph of image layers, by propagating each
/// tensor's `[C, H, W]` from the `[3, height, width]` input through Conv, pooling, Concat,
/// element-wise operators and torchvision's channel Gather + Unsqueeze. Tensors it cannot follow
/// (after Flatten, say) are skipped: they are small there. (glassbox's CPU convolutions build
/// their im2col blocks per band of rows, never for a whole batch.)
fn largest_buffer_propagated(proto: &ModelProto, [width, height]: [u32; 2]) -> u64 {
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

fn largest_buffer_per_sample(path: &Path) -> Result<u64, String> {
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

/// Routes the generated `forward`'s convolutions and max pools through `crate::model::cpu`
/// (glassbox's CPU kernels, burn's elsewhere), folding into a convolution the `Relu` or `Clip`
/// on the next line when that is the only use of its output.
fn use_cpu_kernels(source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let Some(start) = lines
        .iter()
        .position(|l| l.trim_start().starts_with("pub fn forward("))
    else {
        return source.to_string();
    };
    let end = lines[start..]
        .iter()
        .position(|l| l.starts_with("    }"))
        .map_or(lines.len(), |i| start + i);
    let body = lines[start..end].join("\n");
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    let mut i = start;
    while i < end {
        let line = lines[i];
        i += 1;
        if line.contains(" = LocalResponseNormConfig::new(") {
            let last = lines[i - 1..end]
                .iter()
                .position(|l| l.trim_end().ends_with(';'))
                .map_or(end, |p| i + p);
            if let Some(call) = lrn_call(&lines[i - 1..last]) {
                out.push(call);
                i = last;
                continue;
            }
        }
        if let Some((name, field, arg)) = module_call(line, "maxpool2d") {
            out.push(format!(
                "        let {name} = crate::model::cpu::max_pool2d(&self.{field}, {arg});"
            ));
            continue;
        }
        let Some((name, field, arg)) = module_call(line, "conv2d") else {
            out.push(line.to_string());
            continue;
        };
        let activation = lines
            .get(i)
            .filter(|_| i < end && uses(&body, &name) == 2)
            .and_then(|next| activation_of(next, &name));
        let (name, activation) = match activation {
            Some((fused, activation)) => {
                i += 1;
                (fused, activation)
            }
            None => (name, "None".to_string()),
        };
        out.push(format!(
            "        let {name} = crate::model::cpu::conv2d(&self.{field}, {arg}, crate::model::cpu::Activation::{activation});"
        ));
    }
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    out.join("\n") + "\n"
}

/// `let NAME = self.FIELD.forward(ARG);` with FIELD starting with `kind`.
fn module_call(line: &str, kind: &str) -> Option<(String, String, String)> {
    let rest = line.trim().strip_prefix("let ")?;
    let (name, rest) = rest.split_once(" = self.")?;
    let (field, rest) = rest.split_once(".forward(")?;
    let arg = rest.strip_suffix(");")?;
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    let input = arg.strip_suffix(".clone()").unwrap_or(arg);
    (field.starts_with(kind) && plain(name) && plain(field) && plain(input))
        .then(|| (name.to_string(), field.to_string(), arg.to_string()))
}

/// A `LocalResponseNormConfig::new(SIZE)…init().forward(ARG);` statement spanning `lines`:
/// `let NAME = crate::model::cpu::lrn(ARG, SIZE, ALPHA, BETA, K);`, burn's defaults where the
/// generated code sets none.
fn lrn_call(lines: &[&str]) -> Option<String> {
    let first = lines.first()?.trim().strip_prefix("let ")?;
    let (name, rest) = first.split_once(" = LocalResponseNormConfig::new(")?;
    let size = rest.strip_suffix(')')?.trim_end_matches(" as usize");
    let mut params = [
        ("with_alpha", "0.0001f64".to_string()),
        ("with_beta", "0.75f64".to_string()),
        ("with_k", "1.0f64".to_string()),
    ];
    let mut arg = None;
    for line in &lines[1..] {
        let line = line.trim();
        if let Some(a) = line
            .strip_prefix(".forward(")
            .and_then(|a| a.strip_suffix(");"))
        {
            arg = Some(a);
            continue;
        }
        for (method, value) in &mut params {
            if let Some(v) = line
                .strip_prefix(&format!(".{method}("))
                .and_then(|v| v.strip_suffix(')'))
            {
                *value = v.to_string();
            }
        }
    }
    let [(_, alpha), (_, beta), (_, k)] = params;
    Some(format!(
        "        let {name} = crate::model::cpu::lrn({arg}, {size}, {alpha}, {beta}, {k});",
        arg = arg?
    ))
}

/// `let NAME = burn::tensor::activation::relu(INPUT);` or `let NAME = INPUT.clamp(LO, HI);`:
/// NAME and the activation's variant.
fn activation_of(line: &str, input: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix("let ")?;
    let (name, call) = rest.split_once(" = ")?;
    if call == format!("burn::tensor::activation::relu({input});") {
        return Some((name.to_string(), "Relu".to_string()));
    }
    let bounds = call
        .strip_prefix(&format!("{input}.clamp("))?
        .strip_suffix(");")?;
    let (lo, hi) = bounds.split_once(", ")?;
    let number = |s: &str| s.strip_suffix("f64").and_then(|n| n.parse::<f64>().ok());
    let (lo, hi) = (number(lo)?, number(hi)?);
    Some((name.to_string(), format!("Clamp({lo:?}, {hi:?})")))
}

/// How many times `ident` occurs in `text` as a whole identifier.
fn uses(text: &str, ident: &str) -> usize {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(ident)
        .filter(|(at, _)| {
            let before = text[..*at].chars().next_back();
            let after = text[at + ident.len()..].chars().next();
            !before.is_some_and(word) && !after.is_some_and(word)
        })
        .count()
}

/// Feature `layer-profile`: a `mark` after every statement of the generated `forward`, so that
/// `glassbox::model::layers` can charge each one its time. Convolutions are marked with their
/// module, whose kernel size and groups name the kind of work.
fn instrument(source: &str) -> String {
    let mut out = String::with_capacity(source.len() * 2);
    let mut in_forward = false;
    let mut pending: Option<(String, Option<String>)> = None;
    for line in source.lines() {
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim_start();
        if trimmed.starts_with("pub fn forward(") {
            in_forward = true;
            continue;
        }
        if !in_forward {
            continue;
        }
        if line.starts_with("    }") {
            in_forward = false;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("let ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let conv = rest.split_once("self.conv2d").map(|(_, call)| {
                let digits: String = call.chars().take_while(char::is_ascii_digit).collect();
                format!("conv2d{digits}")
            });
            if !name.is_empty() {
                pending = Some((name, conv));
            }
        }
        if trimmed.ends_with(';')
            && let Some((name, conv)) = pending.take()
        {
            match conv {
                Some(field) => writeln!(
                    out,
                    "        crate::model::layers::mark_conv({name:?}, &self.{field});"
                ),
                None => writeln!(out, "        crate::model::layers::mark({name:?});"),
            }
            .ok();
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `models.rs`: one module per generated model, its descriptor as a `ModelSpec`, and the `Net`
/// enum that dispatches `forward`.
fn registry_source(models: &[Prepared]) -> Result<String, String> {
    let mut s = String::from("// Generated by build.rs from onnx/*.toml. Do not edit.\n\n");
    for m in models {
        let rs = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?)
            .join("model")
            .join(format!("{}.rs", m.ident));
        writeln!(
            s,
            "#[allow(clippy::all, clippy::pedantic, unused, missing_docs)]\npub(crate) mod {ident} {{ include!({rs:?}); }}",
            ident = m.ident
        )
        .ok();
        if m.desc.embed {
            writeln!(
                s,
                "static WEIGHTS_{up}: &Aligned<{len}> = &Aligned(*include_bytes!({path:?}));",
                up = m.ident.to_uppercase(),
                len = m.weights_len,
                path = m.weights_path
            )
            .ok();
        }
    }
    s.push_str("\n/// Every model built into this binary, in name order.\npub(crate) static SPECS: &[ModelSpec] = &[\n");
    for m in models {
        let p = &m.desc.preprocess;
        let resize = match p.resize.as_str() {
            "stretch" => "Resize::Stretch".to_string(),
            "centre-square" => "Resize::CentreSquare".to_string(),
            _ => format!("Resize::ShorterSide({})", p.resize_shorter.unwrap_or(0)),
        };
        let channels = if p.channels == "bgr" {
            "ChannelOrder::Bgr"
        } else {
            "ChannelOrder::Rgb"
        };
        let output = if m.desc.output == "logits" {
            "OutputKind::Logits"
        } else {
            "OutputKind::Probabilities"
        };
        let weights = if m.desc.embed {
            format!(
                "WeightSource::Embedded(&WEIGHTS_{}.0)",
                m.ident.to_uppercase()
            )
        } else {
            format!(
                "WeightSource::File {{ file_name: {:?}, built_at: {:?} }}",
                format!("{}.bpk", m.ident),
                m.weights_path
            )
        };
        writeln!(
            s,
            "    ModelSpec {{ id: {id:?}, name: {name:?}, is_default: {def}, fixture: {fixture}, synthetic: {syn}, file: {file:?}, source: {src:?}, licence: {lic:?},\n      \
             classes: {classes}, output: {output}, labels: include_str!({labels:?}),\n      \
             preprocess: Preprocess {{ width: {w}, height: {h}, resize: {resize}, channels: {channels}, scale: {scale:?}, mean: {mean:?}, std: {std:?} }},\n      \
             max_elems_per_sample: {elems}, weights: {weights} }},",
            id = m.id,
            name = m.desc.name,
            def = m.desc.default,
            fixture = m.desc.fixture,
            syn = m.synthetic,
            file = m.desc.file,
            src = m.desc.source,
            lic = m.desc.licence,
            classes = m.classes,
            labels = m.labels_path,
            w = p.size[0],
            h = p.size[1],
            scale = p.scale,
            mean = p.mean,
            std = p.std,
            elems = m.max_elems_per_sample,
        )
        .ok();
    }
    s.push_str("];\n\n/// A loaded network of any built-in architecture (one per process: size differences do not matter).\n#[derive(Debug)]\n#[allow(clippy::large_enum_variant)]\npub(crate) enum Net {\n");
    for m in models {
        writeln!(
            s,
            "    {v}({ident}::Model),",
            v = variant(&m.ident),
            ident = m.ident
        )
        .ok();
    }
    s.push_str("}\n\nimpl Net {\n    /// The uninitialised network of spec `index` in `SPECS` (weights are loaded after).\n    pub(crate) fn new(index: usize, device: &burn::tensor::Device) -> Option<Self> {\n        match index {\n");
    for (i, m) in models.iter().enumerate() {
        writeln!(
            s,
            "            {i} => Some(Net::{v}({ident}::Model::new(device))),",
            v = variant(&m.ident),
            ident = m.ident
        )
        .ok();
    }
    s.push_str("            _ => None,\n        }\n    }\n\n    /// `[N, 3, H, W]` in, `[N, classes]` out (logits or probabilities, as the spec says).\n    pub(crate) fn forward(&self, input: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<2> {\n        match self {\n");
    for m in models {
        writeln!(
            s,
            "            Net::{v}(m) => m.forward(input),",
            v = variant(&m.ident)
        )
        .ok();
    }
    s.push_str("        }\n    }\n\n    /// Loads burnpack weights into the network, failing on any missing or mismatched tensor.\n    pub(crate) fn load(&mut self, store: &mut burn::store::BurnpackStore) -> Result<(), String> {\n        use burn::store::ModuleSnapshot;\n        let result = match self {\n");
    for m in models {
        writeln!(
            s,
            "            Net::{v}(m) => m.load_from(store),",
            v = variant(&m.ident)
        )
        .ok();
    }
    s.push_str("        };\n        result.map(|_| ()).map_err(|e| e.to_string())\n    }\n}\n");
    Ok(s)
}

fn variant(ident: &str) -> String {
    ident
        .split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
