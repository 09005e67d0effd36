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
//!
//! This file reads the descriptors and runs the steps, one module each: `descriptor` (what a
//! descriptor says, and its checks), `synthetic` (step 1's synthetic weights), `simplify` and
//! `fold` (exact rewrites before step 2: constants computed, BatchNorm folded), `batch` (steps 2
//! and 3), `sizes` (step 4), `codegen` (step 5) and `routing` (the generated code's calls routed
//! to glassbox's kernels). `tensors` holds the ONNX tensor helpers they share.

mod batch;
mod codegen;
mod descriptor;
mod fold;
mod incremental;
mod routing;
mod simplify;
mod sizes;
mod synthetic;
mod tensors;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use onnx_ir::{Message, ModelProto};
use sha2::{Digest, Sha256};

use crate::batch::batch_and_check;
use crate::codegen::registry_source;
use crate::descriptor::{Descriptor, check_descriptor};
use crate::fold::fold_batch_norms;
use crate::incremental::add_incremental_forward;
use crate::routing::{concat_in_place, instrument, use_cpu_kernels};
use crate::simplify::simplify;
use crate::sizes::{largest_buffer_per_sample, largest_buffer_propagated};
use crate::synthetic::synthesise_weights;

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

    codegen::generate(&models, &out_dir)?;

    let profile = env::var_os("CARGO_FEATURE_LAYER_PROFILE").is_some();
    for model in &models {
        let rs = out_dir.join("model").join(format!("{}.rs", model.ident));
        let source = fs::read_to_string(&rs).map_err(|e| format!("{}: {e}", rs.display()))?;
        let mut source = add_incremental_forward(&use_cpu_kernels(&source))
            .map_err(|e| format!("model '{}': {e}", model.id))?;
        source = concat_in_place(&source);
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
