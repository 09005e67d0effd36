//! `glassbox sanity`: the model-randomisation sanity check, each image explained with the model
//! and with its randomised twin, the two heatmaps side by side.

use std::path::Path;
use std::process::ExitCode;

use glassbox::Classifier;
use glassbox::explain::Explainer;
use glassbox::metrics::sanity_check;
use glassbox::model::Weights;
use glassbox::output::{self, Source};

use super::args::SanityArgs;
use super::progress::report_refusals;
use super::{each_image, pick_model, precision_note, print_notes, select_device};

pub fn sanity(args: &SanityArgs) -> glassbox::Result<ExitCode> {
    let info = pick_model(args.model.as_deref())?;
    if info.synthetic() {
        return Err(glassbox::Error::InvalidArgument(format!(
            "model '{}' has synthetic weights already: its randomised twin is no test of the explainer (run onnx/fetch.sh and rebuild for its real weights)",
            info.id()
        )));
    }
    let explainer = args.params.explainer(args.method, &info, args.seed, None)?;
    output::prepare_dir(&args.out)?;
    let compute = select_device(args.device.device.into())?;
    let target = args.params.target_for(&info)?;
    let mut model = args.device.load(info, &compute, true)?;
    model.set_target(target.clone())?;
    let mut twin = args
        .device
        .load_weights(info, &compute, true, Weights::Randomised)?;
    twin.set_target(target)?;
    eprintln!(
        "glassbox: {} and its randomised twin on {compute}{}, {}",
        info.id(),
        precision_note(model.precision()),
        explainer.name()
    );
    let code = each_image(&args.images, |path| {
        check_one(&model, &twin, path, &explainer, &args.out)
    });
    report_refusals(&model);
    report_refusals(&twin);
    Ok(code)
}

/// Checks one image and writes its files; returns the summary line.
fn check_one(
    model: &Classifier,
    twin: &Classifier,
    path: &Path,
    explainer: &Explainer,
    out: &Path,
) -> glassbox::Result<String> {
    let (photo, view) = output::open(path, model.info().preprocess())?;
    print_notes(path, &photo);
    let check = sanity_check(model, twin, &view, explainer)?;
    let source = Source {
        image: path,
        photo: &photo.rgb,
        view: &view,
    };
    let written = output::write_sanity(model, &source, &check, out)?;
    let label = model.label(check.model.class()).unwrap_or("?");
    Ok(format!(
        "{}: {label} ({}): model vs randomised twin: Spearman {:.3}, Jaccard {:.3} → {}",
        path.display(),
        check.model.class(),
        check.sanity.correlation,
        check.sanity.jaccard,
        written.pattern().display()
    ))
}
