//! Every built-in model matches onnxruntime on the same ONNX graph (fixtures by
//! `tests/data/make_parity.py`), on the CPU backend.

use glassbox::view::to_input;
use glassbox::{Classifier, Compute, ModelInfo, Probabilities};
use serde_json::Value;

use crate::common::{data, pattern};

fn fixtures() -> Value {
    let text = std::fs::read_to_string(data("parity.json"))
        .expect("tests/data/parity.json (run make_parity.py)");
    serde_json::from_str(&text).expect("parity.json is JSON")
}

/// onnxruntime's outputs for `model` as probabilities, row-major.
pub fn expected_probabilities(model: &str) -> Vec<Vec<f64>> {
    let fx = fixtures();
    let entry = &fx["models"][model];
    let rows = entry["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no fixture for {model}"));
    rows.iter()
        .map(|row| {
            let v: Vec<f64> = row
                .as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("number"))
                .collect();
            if entry["output"] == "logits" {
                let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = v.iter().map(|x| (x - max).exp()).sum();
                v.iter().map(|x| (x - max).exp() / sum).collect()
            } else {
                v
            }
        })
        .collect()
}

/// The parity inputs of `info`, `[samples, 3, H, W]`.
pub fn parity_inputs(info: &ModelInfo, samples: u64) -> Vec<f32> {
    let pre = info.preprocess();
    (0..samples)
        .flat_map(|k| to_input(&pattern(k, pre.width, pre.height), pre))
        .collect()
}

/// Asserts `probs` equal onnxruntime's within 1e-4 relative to the largest probability, and
/// log-probabilities within 1e-3 (sensitive to the logits even when the distribution is flat).
pub fn assert_matches(model: &str, probs: &Probabilities, expected: &[Vec<f64>]) {
    assert_eq!(probs.rows(), expected.len(), "{model}: rows");
    for (i, want) in expected.iter().enumerate() {
        let got = probs.row(i);
        assert_eq!(got.len(), want.len(), "{model}: classes");
        let scale = want.iter().cloned().fold(0.0, f64::max);
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (*g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-4 * scale,
            "{model} row {i}: max |diff| {worst:e} vs max prob {scale:e}"
        );
        let worst_log = got
            .iter()
            .zip(want)
            .map(|(g, w)| ((*g as f64).max(1e-30).ln() - w.max(1e-30).ln()).abs())
            .filter(|d| d.is_finite())
            .fold(0.0, f64::max);
        assert!(
            worst_log <= 1e-3,
            "{model} row {i}: max |log diff| {worst_log:e}"
        );
        let argmax = want
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(
            Some(probs.argmax(i)),
            argmax,
            "{model} row {i}: top-1 differs"
        );
    }
}

fn check(model: &str) {
    let info = ModelInfo::find(model).expect("built-in model");
    let fx = fixtures();
    assert_eq!(
        fx["models"][model]["synthetic"].as_bool(),
        Some(info.synthetic()),
        "{model}: fixture and build disagree on real vs synthetic weights; regenerate parity.json"
    );
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let probs = classifier
        .classify(&parity_inputs(&info, 2))
        .expect("classify");
    assert_matches(model, &probs, &expected_probabilities(model));
}

#[test]
fn efficientnet_lite0_matches_onnxruntime() {
    check("efficientnet-lite0");
}

#[test]
fn googlenet_matches_onnxruntime() {
    check("googlenet");
}

#[test]
fn alexnet_matches_onnxruntime() {
    check("alexnet");
}

#[test]
fn googlenet_tv_matches_onnxruntime() {
    check("googlenet-tv");
}

#[test]
fn alexnet_tv_matches_onnxruntime() {
    check("alexnet-tv");
}

#[test]
fn a_graph_computing_its_own_weights_matches_onnxruntime_once_folded() {
    check("folded-constants");
}

#[test]
fn every_model_has_a_fixture() {
    let fx = fixtures();
    for info in ModelInfo::all() {
        assert!(
            fx["models"][info.id()].is_object(),
            "no parity fixture for {}",
            info.id()
        );
    }
}

/// How many nodes of ONNX operator `op` the graph `bytes` holds: a node's `op_type` is protobuf
/// field 4, a length-delimited string (tag byte 0x22), so each is the bytes `0x22, len, op`.
fn nodes_of(bytes: &[u8], op: &str) -> usize {
    let mut needle = vec![0x22, op.len() as u8];
    needle.extend_from_slice(op.as_bytes());
    bytes.windows(needle.len()).filter(|w| *w == needle).count()
}

#[test]
fn the_build_drops_dropout_and_folds_constant_reshapes() {
    // The graphs build.rs prepared and burn imported (the parity tests above check that they
    // still compute what the original graphs do).
    let prepared = std::path::Path::new(env!("OUT_DIR")).join("prepared");
    let read = |name: &str| std::fs::read(prepared.join(name)).expect("prepared graph");
    for info in ModelInfo::all() {
        let graph = read(&format!("{}.onnx", info.id().replace('-', "_")));
        assert_eq!(
            nodes_of(&graph, "Dropout"),
            0,
            "{}: Dropout left",
            info.id()
        );
        assert_eq!(
            nodes_of(&graph, "Identity"),
            0,
            "{}: Identity left",
            info.id()
        );
        assert_eq!(nodes_of(&graph, "BatchNormalization"), 0, "{}", info.id());
    }
    // Everything the test model computes from constants is folded (see make_folded_constants.py).
    let folded = read("folded_constants.onnx");
    for op in [
        "Constant",
        "Mul",
        "Reshape",
        "Unsqueeze",
        "Squeeze",
        "Sub",
        "Div",
        "Add",
    ] {
        assert_eq!(nodes_of(&folded, op), 0, "folded-constants: {op} left");
    }
    assert_eq!(nodes_of(&folded, "Gemm"), 1);
    // The zoo GoogLeNet reshapes its classifier weights [1, 1, 1000, 1024] on every pass, and
    // its activations once; only the latter is left.
    assert_eq!(nodes_of(&read("googlenet.onnx"), "Reshape"), 1);
    // The originals had both, and Dropouts: the counts are of real nodes, not stray bytes. (The
    // build saves an original only for synthetic weights, as in CI; a real one is the zoo file.)
    let synthetic = |id: &str| ModelInfo::find(id).expect("built-in").synthetic();
    if synthetic("googlenet") {
        let original = read("googlenet.original.onnx");
        assert_eq!(
            (
                nodes_of(&original, "Reshape"),
                nodes_of(&original, "Dropout")
            ),
            (2, 1)
        );
    }
    if synthetic("alexnet") {
        assert_eq!(nodes_of(&read("alexnet.original.onnx"), "Dropout"), 2);
    }
}

#[test]
fn every_fully_connected_layer_is_imported_as_a_linear_layer() {
    // The zoo files write their Gemms without the default alpha and beta, which burn-onnx
    // imported as `matmul(w.transpose())`, past build.rs's routing to glassbox's kernels; the
    // build writes the defaults out (the parity tests check the result is unchanged).
    let generated = std::path::Path::new(env!("OUT_DIR")).join("model");
    for (id, layers) in [
        ("alexnet", 3),
        ("alexnet-tv", 3),
        ("googlenet", 1),
        ("googlenet-tv", 1),
        ("efficientnet-lite0", 1),
    ] {
        let code = std::fs::read_to_string(generated.join(format!("{}.rs", id.replace('-', "_"))))
            .expect("generated model");
        let forward = code
            .split("pub fn forward(")
            .nth(1)
            .expect("a forward pass");
        let forward = forward.split("pub fn ").next().unwrap_or(forward);
        assert_eq!(forward.matches("cpu::linear(").count(), layers, "{id}");
        assert!(!forward.contains(".matmul("), "{id}: a matmul left");
    }
}
