//! `glassbox study`: explainers compared over a folder of images (resumable, shardable), and
//! `study merge`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use glassbox::output;

use super::args::{StudyArgs, StudyCommand, parse_spec};
use super::progress::{Bar, report_refusals};
use super::{load_models, precision_note, select_device};

pub fn study(args: &StudyArgs) -> glassbox::Result<ExitCode> {
    use glassbox::study::{Shard, Spec, Study, StudyConfig};
    let bad = glassbox::Error::InvalidArgument;
    if let Some(StudyCommand::Merge { inputs, out }) = &args.command {
        output::prepare_dir(out)?;
        let report = glassbox::study::merge(inputs, out)?;
        print_report(&report, out);
        return Ok(ExitCode::SUCCESS);
    }
    let dir = args
        .dir
        .as_ref()
        .ok_or_else(|| bad("study needs a folder of images (or: study merge OUT...)".into()))?;
    if args.pairs.is_empty() {
        return Err(bad(
            "give at least one --pairs MODEL:METHOD,MODEL:METHOD".into()
        ));
    }
    if let Some(sigma) = args.blur
        && !(sigma > 0.0 && sigma <= 100.0)
    {
        return Err(bad(format!("--blur {sigma} must be in (0, 100]")));
    }
    if args.limit == Some(0) {
        return Err(bad("--limit must be at least 1".into()));
    }
    let shard = args
        .shard
        .as_deref()
        .map(Shard::parse)
        .transpose()?
        .unwrap_or(Shard::ALL);
    let mut specs: Vec<Spec> = Vec::new();
    let mut pairs = Vec::new();
    for pair in &args.pairs {
        let parts: Vec<&str> = pair.split(',').collect();
        let ok = parts.len() == 2 || (parts.len() == 1 && args.blur.is_some());
        if !ok {
            return Err(bad(format!(
                "--pairs '{pair}' must be A,B (each MODEL:METHOD){}",
                if args.blur.is_some() {
                    " or, with --blur, one MODEL:METHOD"
                } else {
                    ""
                }
            )));
        }
        let mut index = Vec::new();
        for part in &parts {
            let (name, model, explainer) = parse_spec(part, &args.params, args.seed)?;
            let i = match specs.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    specs.push(Spec {
                        name,
                        model,
                        explainer,
                    });
                    specs.len() - 1
                }
            };
            index.push(i);
        }
        pairs.push((index[0], *index.last().unwrap_or(&index[0])));
    }
    let dir = std::fs::canonicalize(dir).map_err(|source| glassbox::Error::Io {
        path: dir.clone(),
        source,
    })?;
    let faithfulness = args
        .params
        .faithfulness()
        .ok_or_else(|| bad("a study measures faithfulness: --steps must be at least 1".into()))?;
    let config = StudyConfig {
        dir,
        comparisons: StudyConfig::comparisons_for(&pairs, args.blur.is_some()),
        specs,
        one_per_category: args.one_per_category,
        seed: args.seed as u64,
        limit: args.limit,
        blur: args.blur,
        faithfulness,
        precision: args.device.precision.into(),
        target: args.params.target.parse()?,
    };
    output::prepare_dir(&args.out)?;
    let mut study = Study::open(config, shard, &args.out)?;
    let total = study.items().count();
    if study.resumed() > 0 {
        eprintln!(
            "glassbox: resuming {}: {} of {total} images already done",
            study.log_path().display(),
            study.resumed()
        );
    }
    let compute = select_device(args.device.device.into())?;
    // The study draws its own progress bar.
    let classifiers = load_models(study.models(), &compute, &args.device, &args.params, false)?;
    eprintln!(
        "glassbox: study of {total} images{} on {compute}{}",
        if shard.count > 1 {
            format!(" (shard {}/{})", shard.index, shard.count)
        } else {
            String::new()
        },
        precision_note(args.device.precision.into())
    );
    let mut bar = Bar::new();
    study.run(&classifiers, |p| bar.update(&p))?;
    bar.finish();
    classifiers.values().for_each(report_refusals);
    let report = study.report(&args.out)?;
    print_report(&report, &args.out);
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub fn print_report(report: &glassbox::study::Report, out: &Path) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{} of {} images studied{}",
        report.studied,
        report.images,
        if report.missing > 0 {
            format!(", {} missing", report.missing)
        } else {
            String::new()
        }
    );
    for t in &report.comparisons {
        let _ = writeln!(
            stdout,
            "{}: mean Jaccard {:.3} over {} images; {} prediction changes",
            t.comparison,
            t.mean_jaccard,
            t.images,
            t.prediction_changes.len()
        );
    }
    for e in &report.explainers {
        let _ = writeln!(
            stdout,
            "  {}: deletion AUC {:.3}, insertion AUC {:.3}, {:.3} s per explanation",
            e.name, e.mean_deletion_auc, e.mean_insertion_auc, e.mean_seconds
        );
    }
    for f in &report.files {
        let _ = writeln!(stdout, "wrote {}", out.join(f).display());
    }
}
