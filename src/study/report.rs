//! A study's summary: per-comparison Jaccard tables, per-explainer means, the contact sheets of
//! FLOP 5 / TOP 5 overlays, and the Markdown and JSON it is written as.

use std::collections::BTreeMap;
use std::path::Path;

use image::RgbImage;
use serde::Serialize;
use serde_json::Value;

use super::{Log, Outcome, Record, Row, Shard};
use crate::model::ModelInfo;
use crate::render;
use crate::view::{View, load_photo};
use crate::{Error, Result};

/// One comparison's table over a study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonTable {
    /// `A vs B`.
    pub comparison: String,
    /// Images compared.
    pub images: usize,
    /// Mean Jaccard index.
    pub mean_jaccard: f64,
    /// The five lowest Jaccard indices (worst agreement first).
    pub flop: Vec<Entry>,
    /// The five highest (best first).
    pub top: Vec<Entry>,
    /// Images where A and B predicted different classes.
    pub prediction_changes: Vec<Entry>,
}

/// One image of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Image index.
    pub index: usize,
    /// Image path relative to the study folder.
    pub image: String,
    /// Jaccard index.
    pub jaccard: f64,
    /// A's predicted label.
    pub a: String,
    /// B's predicted label.
    pub b: String,
}

/// One explainer's means over a study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainerTable {
    /// `model:method` (and ` (blurred)`).
    pub name: String,
    /// Images explained.
    pub images: usize,
    /// Mean deletion AUC.
    pub mean_deletion_auc: f64,
    /// Mean insertion AUC.
    pub mean_insertion_auc: f64,
    /// Mean fraction of the view kept.
    pub mean_kept_fraction: f64,
    /// Mean seconds per explanation (not deterministic).
    pub mean_seconds: f64,
    /// Mean seconds of its faithfulness curves (not deterministic).
    pub mean_faithfulness_seconds: f64,
}

/// A study's summary, as written to `summary*.json` and `summary*.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The configuration.
    pub config: Value,
    /// Shards the rows came from.
    pub shards: Vec<Shard>,
    /// Images of the study.
    pub images: usize,
    /// Images with results.
    pub studied: usize,
    /// Images that could not be studied, with the reason.
    pub errors: Vec<(String, String)>,
    /// Images of the study absent from every log (a shard not run or not finished).
    pub missing: usize,
    /// Per comparison.
    pub comparisons: Vec<ComparisonTable>,
    /// Per explainer.
    pub explainers: Vec<ExplainerTable>,
    /// Mean wall-clock seconds per studied image (not deterministic).
    pub mean_seconds_per_image: f64,
    /// Files written.
    pub files: Vec<String>,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Joins logs of one study (shards, possibly repeated) into a report written into `out` with
/// the given file-name `suffix`: `summary{suffix}.md`, `summary{suffix}.json` and one contact
/// sheet PNG per comparison (its FLOP 5 and TOP 5 overlays). Logs of different studies are
/// refused.
pub fn write_report(logs: &[Log], out: &Path, suffix: &str) -> Result<Report> {
    let first = logs
        .first()
        .ok_or_else(|| Error::InvalidArgument("no study log to report on".into()))?;
    let mut rows: BTreeMap<usize, &Row> = BTreeMap::new();
    let mut shards = Vec::new();
    for log in logs {
        if log.header.key != first.header.key {
            return Err(Error::InvalidArgument(
                "the logs come from studies with different settings".into(),
            ));
        }
        if !shards.contains(&log.header.shard) {
            shards.push(log.header.shard);
        }
        for (i, row) in &log.rows {
            rows.entry(*i).or_insert(row);
        }
    }
    shards.sort_by_key(|s| (s.count, s.index));
    let config = first.header.config.clone();
    let images = config["images"].as_u64().unwrap_or(0) as usize;
    let errors: Vec<(String, String)> = rows
        .values()
        .filter_map(|r| r.error.as_ref().map(|e| (r.image.clone(), e.clone())))
        .collect();
    let good: Vec<&Row> = rows
        .values()
        .copied()
        .filter(|r| r.error.is_none())
        .collect();

    let names: Vec<String> = config["comparisons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let entry = |r: &Row, o: &Outcome| Entry {
        index: r.index,
        image: r.image.clone(),
        jaccard: o.jaccard,
        a: o.a.label.clone(),
        b: o.b.label.clone(),
    };
    let mut comparisons = Vec::new();
    let mut explainer_names: Vec<String> = Vec::new();
    for name in &names {
        let mut entries: Vec<(Entry, &Row, &Outcome)> = good
            .iter()
            .flat_map(|r| {
                r.outcomes
                    .iter()
                    .filter(|o| &o.comparison == name)
                    .map(move |o| (entry(r, o), *r, o))
            })
            .collect();
        entries.sort_by(|x, y| {
            x.0.jaccard
                .total_cmp(&y.0.jaccard)
                .then(x.0.index.cmp(&y.0.index))
        });
        for (_, _, o) in entries.iter().take(1) {
            for n in [&o.a.name, &o.b.name] {
                if !explainer_names.contains(n) {
                    explainer_names.push(n.clone());
                }
            }
        }
        let flop: Vec<Entry> = entries.iter().take(5).map(|e| e.0.clone()).collect();
        let mut top: Vec<Entry> = entries.iter().rev().take(5).map(|e| e.0.clone()).collect();
        top.sort_by(|x, y| y.jaccard.total_cmp(&x.jaccard).then(x.index.cmp(&y.index)));
        comparisons.push(ComparisonTable {
            comparison: name.clone(),
            images: entries.len(),
            mean_jaccard: mean(entries.iter().map(|e| e.0.jaccard)),
            flop,
            top,
            prediction_changes: entries
                .iter()
                .filter(|(_, _, o)| o.a.label != o.b.label)
                .map(|e| e.0.clone())
                .collect(),
        });
    }
    for table in &mut comparisons {
        table.prediction_changes.sort_by_key(|e| e.index);
    }
    let explainers: Vec<ExplainerTable> = explainer_names
        .iter()
        .map(|name| {
            // Each explanation once per image, whichever comparisons it appears in.
            let seen: Vec<&Record> = good
                .iter()
                .filter_map(|r| {
                    r.outcomes
                        .iter()
                        .flat_map(|o| [&o.a, &o.b])
                        .find(|e| &e.name == name)
                })
                .collect();
            ExplainerTable {
                name: name.clone(),
                images: seen.len(),
                mean_deletion_auc: mean(seen.iter().map(|e| e.deletion_auc)),
                mean_insertion_auc: mean(seen.iter().map(|e| e.insertion_auc)),
                mean_kept_fraction: mean(seen.iter().map(|e| e.kept_fraction)),
                mean_seconds: mean(seen.iter().map(|e| e.seconds)),
                mean_faithfulness_seconds: mean(seen.iter().map(|e| e.faithfulness_seconds)),
            }
        })
        .collect();

    let mut report = Report {
        config,
        shards,
        images,
        studied: good.len(),
        errors,
        missing: images.saturating_sub(rows.len()),
        comparisons,
        explainers,
        mean_seconds_per_image: mean(good.iter().map(|r| r.seconds)),
        files: Vec::new(),
    };

    for (k, table) in report.comparisons.iter().enumerate() {
        let pick = |entries: &[Entry]| -> Vec<(RgbImage, Vec<String>)> {
            entries
                .iter()
                .filter_map(|e| {
                    let row = rows.get(&e.index)?;
                    let o = row
                        .outcomes
                        .iter()
                        .find(|o| o.comparison == table.comparison)?;
                    Some((
                        outcome_overlay(row, o).unwrap_or_else(|_| missing_tile()),
                        vec![
                            format!("{}  J = {:.2}", short(&row.image, 26), o.jaccard),
                            short(&format!("{} / {}", o.a.label, o.b.label), 34),
                        ],
                    ))
                })
                .collect()
        };
        let sheet = render::contact_sheet(
            &[
                render::SheetRow {
                    title: "FLOP 5: lowest Jaccard".into(),
                    tiles: pick(&table.flop),
                },
                render::SheetRow {
                    title: "TOP 5: highest Jaccard".into(),
                    tiles: pick(&table.top),
                },
            ],
            &format!(
                "{}: mean Jaccard {:.3} over {} images (red: only A, green: only B, yellow: both)",
                table.comparison, table.mean_jaccard, table.images
            ),
        )?;
        let name = format!("contact-sheet{suffix}.{}.png", k + 1);
        render::save_png(&sheet, &out.join(&name))?;
        report.files.push(name);
    }
    let md = format!("summary{suffix}.md");
    let js = format!("summary{suffix}.json");
    report.files.push(md.clone());
    report.files.push(js.clone());
    render::write_atomic(&out.join(&md), markdown(&report).as_bytes())?;
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    render::write_atomic(&out.join(&js), text.as_bytes())?;
    Ok(report)
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

fn missing_tile() -> RgbImage {
    RgbImage::from_pixel(224, 224, image::Rgb([200, 200, 200]))
}

/// The colour superposition of one outcome, redrawn from the photo and the logged masks.
fn outcome_overlay(row: &Row, outcome: &Outcome) -> Result<RgbImage> {
    let photo = load_photo(&row.path)?.rgb;
    let view = |e: &Record| -> Result<View> {
        let model = e.name.split(':').next().unwrap_or_default();
        let info = ModelInfo::find(model)?;
        Ok(View::new(&photo, info.preprocess()))
    };
    let (va, vb) = (view(&outcome.a)?, view(&outcome.b)?);
    let (ka, kb) = (outcome.a.kept(), outcome.b.kept());
    Ok(render::superpose(&photo, (&va, &ka), (&vb, &kb), 240))
}

/// The report in Markdown: the report's FLOP 5 / TOP 5 / MEAN table per comparison, the
/// faithfulness and timing table per explainer, prediction changes, errors.
pub fn markdown(report: &Report) -> String {
    let mut s = String::new();
    let dir = report.config["dir"].as_str().unwrap_or("?");
    s += &format!("# glassbox study of `{dir}`\n\n");
    s += &format!("{} of {} images studied", report.studied, report.images);
    if !report.errors.is_empty() {
        s += &format!(", {} could not be read", report.errors.len());
    }
    if report.missing > 0 {
        s += &format!(
            ", **{} missing** (a shard not run or not finished)",
            report.missing
        );
    }
    let shards: Vec<String> = report
        .shards
        .iter()
        .map(|sh| format!("{}/{}", sh.index, sh.count))
        .collect();
    s += &format!("; shards {}.\n\n", shards.join(", "));
    if let Some(blur) = report.config["blur"].as_f64() {
        s += &format!(
            "Blur study: each explainer on the photo against the same explainer on its Gaussian-blurred copy (sigma {blur} px at a 224-px shorter side).\n\n"
        );
    }
    let synthetic: Vec<&str> = report.config["explainers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["synthetic"].as_bool() == Some(true))
                .filter_map(|e| e["model"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if !synthetic.is_empty() {
        s += &format!(
            "**Warning:** {} ran with SYNTHETIC weights; their explanations mean nothing.\n\n",
            synthetic.join(", ")
        );
    }
    s += "## Jaccard index of the kept regions\n\n";
    s += "| comparison | images | MEAN | FLOP 5 (lowest) | TOP 5 (highest) |\n|---|---|---|---|---|\n";
    let list = |entries: &[Entry]| {
        entries
            .iter()
            .map(|e| format!("{} ({:.2})", e.image, e.jaccard))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    for t in &report.comparisons {
        s += &format!(
            "| {} | {} | {:.3} | {} | {} |\n",
            t.comparison,
            t.images,
            t.mean_jaccard,
            list(&t.flop),
            list(&t.top)
        );
    }
    s += "\n## Faithfulness and time per explainer\n\n";
    s += "Deletion AUC: p(class) as the most important pixels are hidden first (lower = more faithful). Insertion AUC: p(class) as they are revealed over a blurred copy (higher = more faithful).\n\n";
    s += "| explainer | images | deletion AUC | insertion AUC | kept | s / explanation | s / faithfulness |\n|---|---|---|---|---|---|---|\n";
    for e in &report.explainers {
        s += &format!(
            "| {} | {} | {:.3} | {:.3} | {:.0} % | {:.3} | {:.3} |\n",
            e.name,
            e.images,
            e.mean_deletion_auc,
            e.mean_insertion_auc,
            e.mean_kept_fraction * 100.0,
            e.mean_seconds,
            e.mean_faithfulness_seconds
        );
    }
    s += &format!(
        "\nMean wall-clock time per image, every explanation and curve included: {:.3} s.\n",
        report.mean_seconds_per_image
    );
    s += "\n## Prediction changes\n\n";
    let mut any = false;
    for t in &report.comparisons {
        for e in &t.prediction_changes {
            any = true;
            s += &format!("- {} ({}): {} → {}\n", e.image, t.comparison, e.a, e.b);
        }
    }
    if !any {
        s += "None: every comparison's two sides predicted the same class.\n";
    }
    if !report.errors.is_empty() {
        s += "\n## Images that could not be studied\n\n";
        for (image, error) in &report.errors {
            s += &format!("- {image}: {error}\n");
        }
    }
    let sheets: Vec<&String> = report
        .files
        .iter()
        .filter(|f| f.ends_with(".png"))
        .collect();
    if !sheets.is_empty() {
        s += "\n## Contact sheets (FLOP 5 and TOP 5 overlays)\n\n";
        for (f, t) in sheets.iter().zip(&report.comparisons) {
            s += &format!("![{}]({f})\n\n", t.comparison);
        }
    }
    s
}
