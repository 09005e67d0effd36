//! `glassbox models`: the built-in models, real or synthetic, with their preprocessing and
//! provenance.

use std::io::Write;
use std::process::ExitCode;

use glassbox::explain::cell_scores_given;
use glassbox::model::Precision;
use glassbox::perturb::Fill;
use glassbox::{Classifier, Compute, ModelInfo, View};
use serde_json::{Value, json};

/// Incremental inference's work for a model at the default grid: its 10×10 single-cell
/// occlusions of a mid-grey view, run on the CPU (a few seconds per model).
fn incremental_work(info: ModelInfo) -> glassbox::Result<Value> {
    let weights = super::weights_for(info);
    let classifier = Classifier::load_weights(info, &Compute::cpu(), Precision::F32, weights)?;
    let pre = info.preprocess();
    let grey = image::RgbImage::from_pixel(pre.width, pre.height, image::Rgb([128, 128, 128]));
    let view = View::new(&grey, pre);
    let scores = cell_scores_given(&classifier, &view, 10, Fill::Black, true, None)?;
    let variants = scores.probabilities.rows().max(1) as f64;
    Ok(match scores.inference.macs {
        Some(m) => json!({
            "grid": 10,
            "conv_gmac_per_variant_full": m.full as f64 / 1e9 / variants,
            "conv_gmac_per_variant_incremental": m.computed as f64 / 1e9 / variants,
            "conv_work_share": m.computed as f64 / m.full.max(1) as f64,
            "kept_activation_bytes": scores.inference.kept_bytes,
        }),
        None => json!(null),
    })
}

/// The line `models --macs` prints for `work`.
fn work_line(work: &Value) -> String {
    match (
        work["conv_gmac_per_variant_full"].as_f64(),
        work["conv_gmac_per_variant_incremental"].as_f64(),
        work["kept_activation_bytes"].as_u64(),
    ) {
        (Some(full), Some(inc), Some(bytes)) if full > 0.0 => format!(
            "10x10 cells: {full:.3} -> {inc:.3} GMAC of convolutions per variant ({:.0} % saved; {:.1} MB of activations kept per image)",
            100.0 * (1.0 - inc / full),
            bytes as f64 / 1e6
        ),
        _ => "no convolutions to save".to_string(),
    }
}

pub fn models(json: bool, all: bool, macs: bool) -> glassbox::Result<ExitCode> {
    let listed = || ModelInfo::all().filter(move |m| all || !m.fixture());
    let mut stdout = std::io::stdout().lock();
    if json {
        let mut list = Vec::new();
        for info in listed() {
            let mut doc = info.to_json();
            if macs && let Some(obj) = doc.as_object_mut() {
                obj.insert("incremental".into(), incremental_work(info)?);
            }
            list.push(doc);
        }
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for info in listed() {
        let (resize, channels, output) = info.describe_io();
        let pre = info.preprocess();
        let status = if info.synthetic() {
            "SYNTHETIC weights (real file absent at build time)"
        } else {
            "real weights"
        };
        let _ = writeln!(
            stdout,
            "{}{}  {}",
            info.id(),
            if info.is_default() { " (default)" } else { "" },
            info.name()
        );
        let _ = writeln!(
            stdout,
            "  weights:    {status}; {}",
            if info.embedded() {
                "compiled in"
            } else {
                "burnpack file beside the build"
            }
        );
        let _ = writeln!(
            stdout,
            "  input:      {resize}, {channels}, (x*{} - {:?}) / {:?}",
            pre.scale, pre.mean, pre.std
        );
        let _ = writeln!(stdout, "  output:     {} classes, {output}", info.classes());
        let _ = writeln!(stdout, "  source:     {}", info.source());
        let _ = writeln!(stdout, "  licence:    {}", info.licence());
        if macs {
            let work = incremental_work(info)?;
            let _ = writeln!(stdout, "  incremental: {}", work_line(&work));
        }
    }
    Ok(ExitCode::SUCCESS)
}
