//! `glassbox compare`: two explainers on each image, their Jaccard index, overlay and
//! faithfulness, written by the library.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use glassbox::Classifier;
use glassbox::compare::{self, Compared, Contender};
use glassbox::explain::Explainer;
use glassbox::metrics::FaithfulnessOptions;
use glassbox::model::ModelInfo;
use glassbox::output;
use glassbox::view::load_photo;

use super::args::{CompareArgs, parse_spec};
use super::progress::report_refusals;
use super::{each_image, load_models, precision_note, print_notes, select_device};

pub fn compare_images(args: &CompareArgs) -> glassbox::Result<ExitCode> {
    let a = parse_spec(&args.a, &args.params, args.seed)?;
    let b = parse_spec(&args.b, &args.params, args.seed)?;
    let faithfulness = args.params.faithfulness();
    output::prepare_dir(&args.out)?;
    let compute = select_device(args.device.device.into())?;
    let classifiers = load_models([a.1, b.1], &compute, &args.device, &args.params, true)?;
    eprintln!(
        "glassbox: {} vs {} on {compute}{}",
        a.0,
        b.0,
        precision_note(args.device.precision.into())
    );
    let code = each_image(&args.images, |path| {
        compare_one(&classifiers, path, &a, &b, faithfulness.as_ref(), &args.out)
    });
    classifiers.values().for_each(report_refusals);
    Ok(code)
}

/// Compares the two explainers on one image and writes the comparison's files; returns the
/// summary line.
fn compare_one(
    classifiers: &HashMap<&'static str, Classifier>,
    path: &Path,
    a: &(String, ModelInfo, Explainer),
    b: &(String, ModelInfo, Explainer),
    faithfulness: Option<&FaithfulnessOptions>,
    out: &Path,
) -> glassbox::Result<String> {
    let photo = load_photo(path)?;
    print_notes(path, &photo);
    let comparison = compare::compare(
        &photo.rgb,
        contender(classifiers, a)?,
        contender(classifiers, b)?,
        faithfulness,
    )?;
    let written = output::write_comparison(path, &photo.rgb, &comparison, out)?;
    Ok(format!(
        "{}: Jaccard {:.3} | A {} | B {} → {}",
        path.display(),
        comparison.jaccard,
        summary(&comparison.a),
        summary(&comparison.b),
        written.pattern().display()
    ))
}

/// A `MODEL:METHOD` spec with its loaded model.
fn contender<'a>(
    classifiers: &'a HashMap<&'static str, Classifier>,
    (name, info, explainer): &'a (String, ModelInfo, Explainer),
) -> glassbox::Result<Contender<'a>> {
    let classifier = classifiers.get(info.id()).ok_or_else(|| {
        glassbox::Error::InvalidArgument(format!("model '{}' not loaded", info.id()))
    })?;
    Ok(Contender {
        name,
        classifier,
        explainer,
    })
}

/// One side's part of the summary line.
fn summary(side: &Compared) -> String {
    let f = side.faithfulness.as_ref().map_or(String::new(), |f| {
        format!(
            ", deletion {:.3}, insertion {:.3}",
            f.deletion_auc, f.insertion_auc
        )
    });
    format!(
        "{}: {} p={:.3} kept {:.0}%{f}",
        side.name,
        side.label(),
        side.attribution.probability,
        side.attribution.kept_fraction() * 100.0
    )
}
