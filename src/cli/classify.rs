//! `glassbox classify`: the top classes of each image, as text or one JSON document.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use glassbox::output;
use glassbox::view::to_input;
use serde_json::json;

use super::args::DeviceArg;
use super::{pick_model, precision_note, print_notes, select_device};

pub fn classify(
    images: &[PathBuf],
    model: Option<&str>,
    top: usize,
    device: &DeviceArg,
    json: bool,
) -> glassbox::Result<ExitCode> {
    if top == 0 {
        return Err(glassbox::Error::InvalidArgument(
            "--top must be at least 1".into(),
        ));
    }
    let info = pick_model(model)?;
    let compute = select_device(device.device.into())?;
    let classifier = device.load(info, &compute, false)?;
    if !json {
        eprintln!(
            "glassbox: {} on {}{}",
            info.id(),
            compute,
            precision_note(classifier.precision())
        );
    }
    let pre = info.preprocess();

    // Decode every image first (a bad one is reported and skipped), then classify all views
    // as one batch.
    let mut failed = false;
    let mut ok = Vec::new();
    let mut results = Vec::new();
    for path in images {
        match output::open(path, pre) {
            Ok((photo, view)) => {
                print_notes(path, &photo);
                ok.push((path, to_input(&view.rgb, pre)));
            }
            Err(e) => {
                failed = true;
                eprintln!("glassbox: error: {e}");
                results.push(json!({ "image": path, "error": e.to_string() }));
            }
        }
    }
    let inputs: Vec<f32> = ok.iter().flat_map(|(_, x)| x.iter().copied()).collect();
    let probs = if ok.is_empty() {
        None
    } else {
        let probabilities = classifier.classify(&inputs);
        super::print_kernel_notices();
        Some(probabilities?)
    };

    let mut stdout = std::io::stdout().lock();
    for (row, (path, _)) in ok.iter().enumerate() {
        let Some(probs) = &probs else { break };
        let preds = probs.top(row, top.min(info.classes()));
        if json {
            let top: Vec<_> = preds
                .iter()
                .map(|p| p.to_json(info.label(p.class)))
                .collect();
            results.push(json!({ "image": path, "top": top }));
        } else {
            let _ = writeln!(stdout, "{}", path.display());
            for (rank, p) in preds.iter().enumerate() {
                let _ = writeln!(
                    stdout,
                    "  {}. {:>7.4}  {} ({})",
                    rank + 1,
                    p.probability,
                    info.label(p.class).unwrap_or("?"),
                    p.class
                );
            }
        }
    }
    if json {
        let doc = json!({
            "model": info.id(),
            "synthetic": info.synthetic(),
            "device": compute.to_string(),
            "precision": classifier.precision().to_string(),
            "results": results,
        });
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
