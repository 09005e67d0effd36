//! `glassbox explain`: each image explained, its files written by the library.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use glassbox::Classifier;
use glassbox::explain::{self, Explained, Explainer, ViewCache};
use glassbox::metrics::{self, FaithfulnessOptions};
use glassbox::output::{self, Picture, Source};

use super::args::ExplainArgs;
use super::progress::report_refusals;
use super::{each_image, pick_model, precision_note, print_notes, select_device};

pub fn explain(args: &ExplainArgs) -> glassbox::Result<ExitCode> {
    let info = pick_model(args.model.as_deref())?;
    let class = args
        .class
        .as_deref()
        .map(|c| info.class_index(c))
        .transpose()?;
    let explainer = args
        .params
        .explainer(args.method, &info, args.seed, class)?;
    let faithfulness = args.params.faithfulness();
    output::prepare_dir(&args.out)?;
    let compute = select_device(args.device.device.into())?;
    let mut classifier = args.device.load(info, &compute, true)?;
    classifier.set_target(args.params.target_for(&info)?)?;
    eprintln!(
        "glassbox: {} on {}{}, {} ({})",
        info.id(),
        compute,
        precision_note(classifier.precision()),
        explainer.name(),
        args.params.fill
    );
    match classifier.group_index() {
        Some(group) => eprintln!("glassbox: explaining {}", classifier.quantity(group)),
        None if *classifier.target() == glassbox::Target::Logit => {
            eprintln!("glassbox: explaining the class's logit, not its probability")
        }
        None => {}
    }

    // --positive-only is lime's default picture; clap refuses it together with --signed.
    let picture = if args.signed && !args.positive_only {
        Picture::Signed
    } else {
        Picture::PositiveOnly
    };
    let code = each_image(&args.images, |path| {
        explain_one(
            &classifier,
            path,
            &explainer,
            picture,
            faithfulness.as_ref(),
            &args.out,
        )
    });
    report_refusals(&classifier);
    Ok(code)
}

/// Explains one image and writes its files; returns the summary line.
fn explain_one(
    classifier: &Classifier,
    path: &Path,
    explainer: &Explainer,
    picture: Picture,
    faithfulness: Option<&FaithfulnessOptions>,
    out: &Path,
) -> glassbox::Result<String> {
    let t = Instant::now();
    let (photo, view) = output::open(path, classifier.info().preprocess())?;
    print_notes(path, &photo);
    let decode = t.elapsed().as_secs_f64();
    let mut explained = explain::run(classifier, &view, explainer, &mut ViewCache::default())?;
    if let Explained::Occlusion(e) = &mut explained {
        e.timings.preprocess += decode;
        for note in &e.notes {
            eprintln!("glassbox: {}: {note}", path.display());
        }
    }
    if let Explained::Sliding(e) = &mut explained {
        e.timings.preprocess += decode;
        for note in e.notes() {
            eprintln!("glassbox: {}: {note}", path.display());
        }
    }
    let faithfulness = faithfulness
        .map(|o| metrics::faithfulness(classifier, &view, &explained.attribution(), o))
        .transpose()?;
    let source = Source {
        image: path,
        photo: &photo.rgb,
        view: &view,
    };
    let written = output::write_explanation(
        classifier,
        &source,
        &mut explained,
        picture,
        faithfulness.as_ref(),
        out,
    )?;
    let faith = faithfulness.map_or(String::new(), |f| {
        format!(
            "; deletion AUC {:.3}, insertion AUC {:.3}",
            f.deletion_auc, f.insertion_auc
        )
    });
    let label = classifier.label(explained.class()).unwrap_or("?");
    // The explained value: a probability, or a logit with --target logit.
    let p = match classifier.target() {
        glassbox::Target::Logit => "logit",
        _ => "p",
    };
    Ok(match &explained {
        Explained::Occlusion(e) => format!(
            "{}: {label} ({}) {p}={:.4}; kept {:.0}% with {} variants{faith} → {}",
            path.display(),
            e.class,
            e.probability,
            e.kept_fraction() * 100.0,
            e.variants,
            written.pattern().display()
        ),
        Explained::Sliding(e) => {
            let o = &e.options;
            let work = e.inference.macs.map_or(String::new(), |m| {
                format!(
                    " (incremental: {:.0}% of full inference's convolution work)",
                    100.0 * m.computed as f64 / m.full.max(1) as f64
                )
            });
            format!(
                "{}: {label} ({}) {p}={:.4}; kept {:.0}% by mean drop over {} windows of {}x{} every {} px in {:.2} s{work}{faith} → {}",
                path.display(),
                e.class,
                e.probability,
                e.kept.kept_fraction() * 100.0,
                e.windows.len(),
                o.window,
                o.window,
                o.stride,
                e.timings.classify,
                written.pattern().display()
            )
        }
        Explained::Rise(e) => {
            let (o, t) = (&e.options, e.timings);
            format!(
                "{}: {label} ({}) {p}={:.4}; kept {:.0}% by RISE saliency over {} masks of {}x{} cells (keep-prob {}, seed {}): masks {:.2} s, classify {:.2} s, accumulate {:.3} s{faith} → {}",
                path.display(),
                e.class,
                e.probability,
                e.kept.kept_fraction() * 100.0,
                o.masks,
                o.cells,
                o.cells,
                o.keep_prob,
                o.seed,
                t.masks,
                t.classify,
                t.accumulate,
                written.pattern().display()
            )
        }
        Explained::Lime(e) => {
            let t = e.timings;
            // LIME's own trust signal: how well the linear surrogate fits the model around this
            // image (weighted R²), and what it predicts for the unperturbed image against the
            // model's p.
            let fit = e
                .models
                .iter()
                .find(|m| m.class == e.class)
                .map(|m| {
                    format!(
                        "; surrogate R² {:.2}, predicts {:.2} for p {:.2}",
                        m.score,
                        m.local_prediction,
                        e.original.get(e.class).copied().unwrap_or(f32::NAN)
                    )
                })
                .unwrap_or_default();
            let auto = e.adapted.as_ref().map_or(String::new(), |a| {
                format!(
                    " (auto: {} round{}, selection probability {:.2}{})",
                    a.rounds,
                    if a.rounds == 1 { "" } else { "s" },
                    a.probability,
                    if a.capped {
                        ", capped by --max-samples"
                    } else {
                        ""
                    }
                )
            });
            let stable = e.stability.as_ref().map_or(String::new(), |s| {
                format!(
                    "; over {} seeds: masks' mean Jaccard {:.2}",
                    s.seeds.len(),
                    s.mean_jaccard
                )
            });
            format!(
                "{}: {label} ({}); {} segment{}, {} samples{auto}: segmentation {:.2} s, perturb+classify {:.2} s, regression {:.3} s{fit}{stable}{faith} → {}",
                path.display(),
                e.class,
                e.segmentation.count(),
                if e.segmentation.count() == 1 { "" } else { "s" },
                e.options.samples,
                t.segmentation,
                t.perturb_classify,
                t.regression,
                written.pattern().display()
            )
        }
        Explained::KernelShap(e) => {
            let t = e.timings;
            let difference = e.probability as f64 - e.base_value as f64;
            let share = 100.0 * t.outside_forward() / t.total().max(f64::MIN_POSITIVE);
            format!(
                "{}: {label} ({}) {p}={:.4}; {} segment{}, {} samples{}{}: Σφ {:.6} vs f(x) − f(fill) {:.6} (|Δ| {:.1e}); segmentation {:.2} s, sampling {:.3} s, perturb+classify {:.2} s, solve {:.3} s ({share:.1} % outside the forward passes){faith} → {}",
                path.display(),
                e.class,
                e.probability,
                e.segmentation.count(),
                if e.segmentation.count() == 1 { "" } else { "s" },
                e.samples,
                if e.exact {
                    " (every coalition: exact)"
                } else {
                    ""
                },
                if e.solver == glassbox::explain::kernelshap::Solver::Svd {
                    " (fewer than the segments need: least-squares solve)"
                } else {
                    ""
                },
                e.phi_sum(),
                difference,
                (e.phi_sum() - difference).abs(),
                t.segmentation,
                t.sampling,
                t.perturb_classify,
                t.solve,
                written.pattern().display()
            )
        }
    })
}
