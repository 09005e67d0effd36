//! An explanation → its files: the pictures, the mask, the JSON document and the faithfulness
//! chart, named `<image>.<model>.<method>.*` (a comparison: `<image>.<a>.vs.<b>.*`) and each
//! written atomically, so that an interrupted run never leaves a half-written file.
//!
//! The command line writes exactly these files; a library user gets the same with one call
//! (the crate's README shows it).

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use serde_json::{Map, Value, json};

use crate::compare::Comparison;
use crate::explain::{Cut, Explained, Explanation};
use crate::metrics::{Faithfulness, SanityCheck};
use crate::model::{Classifier, Preprocess};
use crate::render;
use crate::target::Target;
use crate::view::{Photo, View, load_photo};
use crate::{Error, Result};

/// The photo an explanation is of, and the model's view of it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The image file (its stem names the outputs; the documents record its path).
    pub image: &'a Path,
    /// The decoded photo.
    pub photo: &'a RgbImage,
    /// The model's input view of it.
    pub view: &'a View,
}

impl Source<'_> {
    /// The image's file stem, `image` when it has none.
    fn stem(&self) -> &str {
        self.image
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("image")
    }
}

/// LIME's picture: the kept segments on black (lime's default), or the chosen segments tinted
/// green (for) and red (against) over the photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Picture {
    /// The positive segments kept, the rest black.
    #[default]
    PositiveOnly,
    /// Positive and negative segments tinted.
    Signed,
}

/// The files one call wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The output folder.
    pub dir: PathBuf,
    /// The name every file starts with (`<image>.<model>.<method>`).
    pub base: String,
    /// The files' names, in the folder, in the order they were written.
    pub files: Vec<String>,
}

impl Written {
    /// `dir/base.*`: how to name every file at once.
    pub fn pattern(&self) -> PathBuf {
        self.dir.join(format!("{}.*", self.base))
    }
}

/// Creates `dir` if needed and proves it writable before any work starts.
///
/// # Errors
/// When the folder cannot be created or written to.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let probe = dir.join(format!(".glassbox-write-test.{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(io)?;
    std::fs::remove_file(&probe).map_err(io)
}

/// Decodes `path` and fits the photo to a model's input view. What decoding noted (first GIF
/// frame, EXIF rotation) is in the photo's `notes`, for the caller to show.
///
/// # Errors
/// When the file cannot be read or decoded.
pub fn open(path: &Path, pre: &Preprocess) -> Result<(Photo, View)> {
    let photo = load_photo(path)?;
    let view = View::new(&photo.rgb, pre);
    Ok((photo, view))
}

/// Writes one explanation's files into `out` (which must exist; see [`prepare_dir`]):
/// `masked.png`, `mask.png`, `heatmap.png`, for occlusion `curve.png`, with `faithfulness`
/// `faithfulness.png`, and last the `json` document. The time the pictures took is recorded in
/// the explanation's timings.
///
/// # Errors
/// When a picture cannot be drawn or a file cannot be written.
pub fn write_explanation(
    classifier: &Classifier,
    source: &Source<'_>,
    explained: &mut Explained,
    picture: Picture,
    faithfulness: Option<&Faithfulness>,
    out: &Path,
) -> Result<Written> {
    let info = classifier.info();
    let t = Instant::now();
    let stem = source.stem();
    let written = Written {
        dir: out.to_path_buf(),
        base: format!("{stem}.{}.{}", info.id(), explained.name()),
        files: Vec::new(),
    };
    let name = |suffix: &str| out.join(format!("{}.{suffix}", written.base));
    let label = classifier.label(explained.class()).unwrap_or("?");
    let quantity = classifier.quantity(explained.class());
    let (photo, view) = (source.photo, source.view);
    let mut files = vec!["masked.png", "mask.png", "heatmap.png"];
    match &*explained {
        Explained::Occlusion(e) => {
            render::save_png(&render::masked(photo, view, &e.kept), &name("masked.png"))?;
            render::write_atomic(&name("mask.png"), &e.kept.to_png()?)?;
            let title = format!(
                "{stem} · {} · {}: {quantity} per occluded cell",
                info.id(),
                e.method.name()
            );
            let (values, cut_after, threshold) = ranking_curve(e)?;
            let curve = render::Curve {
                values: &values,
                base: e.probability,
                cut_after,
                threshold,
                title: &title,
            };
            render::save_png(&curve.draw()?, &name("curve.png"))?;
            files.push("curve.png");
        }
        Explained::Lime(e) => {
            let masked = match picture {
                Picture::Signed => {
                    let model = e
                        .models
                        .iter()
                        .find(|m| m.class == e.class)
                        .ok_or_else(|| Error::InvalidArgument("no local model".into()))?;
                    render::signed(
                        photo,
                        view,
                        e.segmentation.labels(),
                        &model.signed(e.options.features),
                    )
                }
                Picture::PositiveOnly => render::masked(photo, view, &e.kept),
            };
            render::save_png(&masked, &name("masked.png"))?;
            render::write_atomic(&name("mask.png"), &e.kept.to_png()?)?;
            if let Some(stability) = &e.stability {
                let std = e.segmentation.spread(&stability.std);
                let title = format!(
                    "std of LIME weight for {label} over {} seeds",
                    stability.seeds.len()
                );
                render::save_png(
                    &render::heatmap(photo, view, &std, &title)?,
                    &name("stability.png"),
                )?;
                files.push("stability.png");
            }
        }
        Explained::KernelShap(e) => {
            let masked = match picture {
                Picture::Signed => render::signed(
                    photo,
                    view,
                    e.segmentation.labels(),
                    &crate::explain::kernelshap::signed(&e.phi, e.options.features),
                ),
                Picture::PositiveOnly => render::masked(photo, view, &e.kept),
            };
            render::save_png(&masked, &name("masked.png"))?;
            render::write_atomic(&name("mask.png"), &e.kept.to_png()?)?;
        }
        Explained::Rise(e) => {
            render::save_png(&render::masked(photo, view, &e.kept), &name("masked.png"))?;
            render::write_atomic(&name("mask.png"), &e.kept.to_png()?)?;
        }
        Explained::Sliding(e) => {
            render::save_png(&render::masked(photo, view, &e.kept), &name("masked.png"))?;
            render::write_atomic(&name("mask.png"), &e.kept.to_png()?)?;
        }
    }
    let heat = Heat::of(explained, label, &quantity);
    render::save_png(&heat.draw(source, &heat.title)?, &name("heatmap.png"))?;
    explained.set_render_seconds(t.elapsed().as_secs_f64());
    if let Some(f) = faithfulness {
        let curves = quantity.clone();
        let title = format!(
            "{stem} · {} · {}: faithfulness",
            info.id(),
            explained.name()
        );
        save_faithfulness_chart(&[(curves.as_str(), f)], &title, &name("faithfulness.png"))?;
        files.push("faithfulness.png");
    }

    let mut files: Vec<String> = files
        .iter()
        .map(|s| format!("{}.{s}", written.base))
        .collect();
    let mut doc = explained.to_json(|i| classifier.label(i));
    if let Some(obj) = add_context(&mut doc, source, classifier) {
        if let Some(f) = faithfulness {
            insert_faithfulness(obj, &f.to_json());
        }
        // Occlusion and RISE documents list their pictures; segment explainers say which
        // picture `masked.png` is (the golden files pin both forms).
        if let Explained::Occlusion(_) | Explained::Rise(_) | Explained::Sliding(_) = explained {
            obj.insert("outputs".into(), json!(files));
        } else {
            let picture = match picture {
                Picture::Signed => "signed",
                Picture::PositiveOnly => "positive-only",
            };
            obj.insert("picture".into(), json!(picture));
        }
    }
    write_json(&name("json"), &doc)?;
    files.push(format!("{}.json", written.base));
    Ok(Written { files, ..written })
}

/// Writes a comparison's files into `out`: `overlay.png` (red: kept by A only, green: by B
/// only, yellow: by both), `faithfulness.png` when either side measured it, and the `json`
/// document.
///
/// # Errors
/// When a picture cannot be drawn or a file cannot be written.
pub fn write_comparison(
    image: &Path,
    photo: &RgbImage,
    comparison: &Comparison,
    out: &Path,
) -> Result<Written> {
    let (a, b) = (&comparison.a, &comparison.b);
    let stem = image
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("image");
    let slug = |n: &str| n.replace(':', "-");
    let base = format!("{stem}.{}.vs.{}", slug(&a.name), slug(&b.name));
    let name = |suffix: &str| out.join(format!("{base}.{suffix}"));
    let jaccard = comparison.jaccard;
    render::save_png(
        &render::overlay(
            photo,
            (&a.view, &a.attribution.kept),
            (&b.view, &b.attribution.kept),
            (&a.name, &b.name),
            &format!("{stem}: Jaccard {jaccard:.3}"),
        )?,
        &name("overlay.png"),
    )?;
    let mut files = vec![format!("{base}.overlay.png")];
    let curves: Vec<(String, &Faithfulness)> = [a, b]
        .iter()
        .filter_map(|s| {
            Some((
                format!("{}: {}", s.name, s.quantity),
                s.faithfulness.as_ref()?,
            ))
        })
        .collect();
    if !curves.is_empty() {
        let curves: Vec<(&str, &Faithfulness)> =
            curves.iter().map(|(n, f)| (n.as_str(), *f)).collect();
        save_faithfulness_chart(
            &curves,
            &format!("{stem}: faithfulness"),
            &name("faithfulness.png"),
        )?;
        files.push(format!("{base}.faithfulness.png"));
    }
    files.push(format!("{base}.json"));
    let doc = json!({
        "image": image, "photo_size": [photo.width(), photo.height()],
        "device": a.device, "precision": a.precision.to_string(),
        "a": a.to_json(), "b": b.to_json(),
        "jaccard": jaccard,
        "same_prediction": comparison.same_prediction(),
        "outputs": files,
    });
    write_json(&name("json"), &doc)?;
    Ok(Written {
        dir: out.to_path_buf(),
        base,
        files,
    })
}

/// Writes a sanity check's files into `out`: `<image>.<model>.<method>.sanity.png`, the model's
/// and its randomised twin's heatmaps side by side, and the `json` document with both
/// explanations and their rank correlation and Jaccard index.
///
/// # Errors
/// When a picture cannot be drawn or a file cannot be written.
pub fn write_sanity(
    classifier: &Classifier,
    source: &Source<'_>,
    check: &SanityCheck,
    out: &Path,
) -> Result<Written> {
    let info = classifier.info();
    let base = format!(
        "{}.{}.{}.sanity",
        source.stem(),
        info.id(),
        check.model.name()
    );
    let name = |suffix: &str| out.join(format!("{base}.{suffix}"));
    let label = classifier.label(check.model.class()).unwrap_or("?");
    let quantity = classifier.quantity(check.model.class());
    let model = Heat::of(&check.model, label, &quantity);
    let left = model.draw(source, &format!("model: {}", model.title))?;
    let twin = Heat::of(&check.twin, label, &quantity);
    let s = &check.sanity;
    // The left title says what both show; this one has room for the figures.
    let title = format!(
        "randomised twin: Spearman {:.2}, Jaccard {:.2} with the model's",
        s.correlation, s.jaccard
    );
    let right = twin.draw(source, &title)?;
    let gap = 12;
    let mut both = RgbImage::from_pixel(
        left.width() + gap + right.width(),
        left.height().max(right.height()),
        image::Rgb([255, 255, 255]),
    );
    image::imageops::replace(&mut both, &left, 0, 0);
    image::imageops::replace(&mut both, &right, i64::from(left.width() + gap), 0);
    render::save_png(&both, &name("png"))?;
    let files = vec![format!("{base}.png"), format!("{base}.json")];
    let mut doc = json!({
        "method": check.model.name(),
        "class": { "index": check.model.class(), "label": label },
        "sanity": s.to_json(),
        "explanation": check.model.to_json(|i| classifier.label(i)),
        "twin_explanation": check.twin.to_json(|i| classifier.label(i)),
        "twin_weights": "deterministic synthetic weights (He-uniform by fan-in), the build's generator seeded by model id and parameter path",
        "outputs": files,
    });
    add_context(&mut doc, source, classifier);
    write_json(&name("json"), &doc)?;
    Ok(Written {
        dir: out.to_path_buf(),
        base,
        files,
    })
}

/// A document as pretty JSON, written atomically.
fn write_json(path: &Path, doc: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(doc).unwrap_or_default();
    render::write_atomic(path, text.as_bytes())
}

/// The deletion and insertion chart of named curves.
fn save_faithfulness_chart(
    curves: &[(&str, &Faithfulness)],
    title: &str,
    path: &Path,
) -> Result<()> {
    let curves: Vec<render::FaithfulnessCurves<'_>> = curves
        .iter()
        .map(|(name, f)| render::FaithfulnessCurves {
            name,
            deletion: &f.deletion,
            insertion: &f.insertion,
            deletion_auc: f.deletion_auc,
            insertion_auc: f.insertion_auc,
        })
        .collect();
    render::save_png(&render::faithfulness_chart(&curves, title)?, path)
}

/// The report's "courbe" of an occlusion explanation: `p[c*]` of the last phase's cells in
/// ranking order, and the rule's cut as a position or a threshold.
fn ranking_curve(e: &Explanation) -> Result<(Vec<f32>, Option<usize>, Option<f64>)> {
    let last = e
        .phases
        .last()
        .ok_or_else(|| Error::InvalidArgument("no phase".into()))?;
    let values: Vec<f32> = last.ranking.iter().map(|&i| last.p[i]).collect();
    let (cut_after, threshold) = match last.cut {
        Cut::Count(n) => (Some(n), None),
        Cut::Knee(i) => (Some(i + 1), None),
        Cut::Threshold(t) | Cut::NoKnee(t) => (None, Some(t)),
    };
    Ok((values, cut_after, threshold))
}

/// What a heatmap shows of an explanation: a value per view pixel, its title, and whether the
/// values are smooth (RISE: no region outlines, which would cover the picture).
struct Heat {
    values: Vec<f32>,
    title: String,
    smooth: bool,
}

impl Heat {
    fn of(explained: &Explained, label: &str, quantity: &str) -> Self {
        let (values, title, smooth) = match explained {
            Explained::Occlusion(e) => (drop_map(e), format!("drop in {quantity}"), false),
            Explained::Lime(e) => (
                e.weight_map(e.class),
                format!("LIME weight for {label}"),
                false,
            ),
            Explained::KernelShap(e) => (e.phi_map(), format!("SHAP value for {label}"), false),
            // The saliency about its mean: red above (more important than average), blue below.
            Explained::Rise(e) => {
                let (_, _, mean) = e.summary();
                let centred = e.saliency.iter().map(|v| v - mean as f32).collect();
                let title = format!("RISE saliency of {quantity} minus its mean {mean:.3}");
                (centred, title, true)
            }
            Explained::Sliding(e) => (
                e.attribution.clone(),
                format!(
                    "mean drop in {quantity}, {0}x{0} windows every {1} px",
                    e.options.window, e.options.stride
                ),
                false,
            ),
        };
        Self {
            values,
            title,
            smooth,
        }
    }

    fn draw(&self, source: &Source<'_>, title: &str) -> Result<RgbImage> {
        let draw = if self.smooth {
            render::smooth_heatmap
        } else {
            render::heatmap
        };
        draw(source.photo, source.view, &self.values, title)
    }
}

/// Per view pixel, the drop in p[c*] when its cell (the finest cell covering it) was occluded.
fn drop_map(e: &Explanation) -> Vec<f32> {
    let (w, h) = e.kept.size();
    let mut values = vec![0.0; (w * h) as usize];
    for phase in &e.phases {
        for (cell, p) in phase.cells.iter().zip(&phase.p) {
            cell.fill(&mut values, w, e.probability - p);
        }
    }
    values
}

/// Adds faithfulness to an explanation document, its time with the other stages' times.
fn insert_faithfulness(obj: &mut Map<String, Value>, faithfulness: &Value) {
    let mut faithfulness = faithfulness.clone();
    let seconds = faithfulness
        .as_object_mut()
        .and_then(|f| f.remove("seconds"));
    if let (Some(seconds), Some(timings)) = (
        seconds,
        obj.get_mut("timings_s").and_then(|t| t.as_object_mut()),
    ) {
        timings.insert("faithfulness".into(), seconds);
    }
    obj.insert("faithfulness".into(), faithfulness);
}

/// Adds what every explanation document carries about its input and its run: the image, the
/// photo's size, the view's crop, the model (and whether it is synthetic) and the device.
/// Returns the object for the caller's own fields.
fn add_context<'a>(
    doc: &'a mut Value,
    source: &Source<'_>,
    classifier: &Classifier,
) -> Option<&'a mut Map<String, Value>> {
    let info = classifier.info();
    let obj = doc.as_object_mut()?;
    obj.insert("image".into(), json!(source.image));
    obj.insert(
        "photo_size".into(),
        json!([source.photo.width(), source.photo.height()]),
    );
    obj.insert("view_crop_in_photo".into(), json!(source.view.crop));
    obj.insert(
        "model".into(),
        json!({ "id": info.id(), "synthetic": info.synthetic() }),
    );
    obj.insert("device".into(), json!(classifier.compute().to_string()));
    obj.insert(
        "precision".into(),
        json!(classifier.precision().to_string()),
    );
    // Only when not the report's p(class), so that documents of the default stay as they were.
    if *classifier.target() != Target::Probability {
        obj.insert("target".into(), classifier.target().to_json());
    }
    Some(obj)
}
