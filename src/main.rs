//! `glassbox`: the command line over the glassbox library. Parses, validates, calls the
//! library, prints. Errors end as one line on stderr and exit code 2.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use glassbox::explain::lime::{LimeOptions, Segmenter};
use glassbox::explain::{Cut, Method, OcclusionOptions};
use glassbox::model::{ChannelOrder, OutputKind, Preprocess, Resize};
use glassbox::perturb::Fill;
use glassbox::render;
use glassbox::segment::quickshift::Quickshift;
use glassbox::segment::slic::Slic;
use glassbox::view::{Photo, View, load_photo, to_input};
use glassbox::{Classifier, Compute, DeviceRequest, ModelInfo};
use image::ImageEncoder;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "glassbox",
    version,
    about = "Explains what an image classifier looked at."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Top-K classes of each image, with the model's own preprocessing.
    Classify {
        /// Image files (PNG, JPEG, GIF, WebP, TIFF, BMP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Model id (see `glassbox models`); the default model when omitted.
        #[arg(long)]
        model: Option<String>,
        /// How many classes to show.
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[command(flatten)]
        device: DeviceArg,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Explain each image's prediction with an occlusion method: pictures, curve and JSON.
    Explain(ExplainArgs),
    /// The built-in models: real or synthetic, preprocessing, provenance.
    Models {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also list the test fixtures (planted-region models).
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Model id; the default model when omitted.
    #[arg(long)]
    model: Option<String>,
    /// The occlusion rule.
    #[arg(long, value_enum, default_value_t = MethodOpt::Arbitrary)]
    method: MethodOpt,
    /// Cells along the longer side of the view.
    #[arg(long, default_value_t = 10)]
    grid: u32,
    /// arbitrary: fraction of the ranked cells blacked out.
    #[arg(long, default_value_t = 0.7)]
    keep_fraction: f64,
    /// statistical, double-division, elbow's fallback: black out cells with p > mean - k*std.
    #[arg(long, default_value_t = 1.0)]
    k: f64,
    /// What occluded cells become: black, grey, mean (segment mean colour) or blur[:SIGMA].
    #[arg(long, default_value = "black")]
    fill: String,
    /// Explain this class (index or label) instead of the top prediction.
    #[arg(long)]
    class: Option<String>,
    #[command(flatten)]
    device: DeviceArg,
    /// Output folder (created if missing).
    #[arg(long, default_value = "glassbox-out")]
    out: PathBuf,
    /// lime: perturbed samples, the original included.
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// lime: seed of the sample (lime's random_state: the same seed gives lime's own sample).
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// lime: interpretable features: quickshift (lime's), slic, or the occlusion grid (--grid).
    #[arg(long, value_enum, default_value_t = SegmentsOpt::Quickshift)]
    segments: SegmentsOpt,
    /// lime: segments shown in the mask.
    #[arg(long, default_value_t = 5)]
    features: usize,
    /// lime: show the top positive segments only, the rest black (lime's default picture).
    #[arg(long, conflicts_with = "signed")]
    positive_only: bool,
    /// lime: show the top segments by |weight|, green for positive and red for negative.
    #[arg(long)]
    signed: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SegmentsOpt {
    Quickshift,
    Slic,
    Grid,
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodOpt {
    Arbitrary,
    Statistical,
    DoubleDivision,
    Elbow,
    Lime,
}

#[derive(clap::Args)]
struct DeviceArg {
    /// Where to run: a hardware GPU if any (auto), any wgpu adapter (gpu), or the CPU.
    #[arg(long, value_enum, default_value_t = DeviceOpt::Auto)]
    device: DeviceOpt,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceOpt {
    Auto,
    Gpu,
    Cpu,
}

impl From<DeviceOpt> for DeviceRequest {
    fn from(d: DeviceOpt) -> Self {
        match d {
            DeviceOpt::Auto => DeviceRequest::Auto,
            DeviceOpt::Gpu => DeviceRequest::Gpu,
            DeviceOpt::Cpu => DeviceRequest::Cpu,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify {
            images,
            model,
            top,
            device,
            json,
        } => classify(&images, model.as_deref(), top, device.device.into(), json),
        Command::Explain(args) => explain(&args),
        Command::Models { json, all } => models(json, all),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("glassbox: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn pick_model(model: Option<&str>) -> glassbox::Result<ModelInfo> {
    let info = model.map_or_else(|| Ok(ModelInfo::default_model()), ModelInfo::find)?;
    if info.synthetic() {
        eprintln!(
            "glassbox: warning: model '{}' has SYNTHETIC weights (onnx/{} was absent at build time): its predictions are meaningless; run onnx/fetch.sh and rebuild",
            info.id(),
            info.file()
        );
    }
    Ok(info)
}

fn select_device(request: DeviceRequest) -> glassbox::Result<Compute> {
    let (compute, notice) = Compute::select(request)?;
    if let Some(notice) = notice {
        eprintln!("glassbox: {notice}");
    }
    Ok(compute)
}

fn classify(
    images: &[PathBuf],
    model: Option<&str>,
    top: usize,
    device: DeviceRequest,
    json: bool,
) -> glassbox::Result<ExitCode> {
    if top == 0 {
        return Err(glassbox::Error::InvalidArgument(
            "--top must be at least 1".into(),
        ));
    }
    let info = pick_model(model)?;
    let compute = select_device(device)?;
    if !json {
        eprintln!("glassbox: {} on {}", info.id(), compute);
    }
    let classifier = Classifier::load(info, &compute)?;
    let pre = info.preprocess();

    // Decode every image first (a bad one is reported and skipped), then classify all views
    // as one batch.
    let mut failed = false;
    let mut ok = Vec::new();
    let mut results = Vec::new();
    for path in images {
        match open_view(path, pre) {
            Ok((_, view)) => ok.push((path, to_input(&view.rgb, pre))),
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
        Some(classifier.classify(&inputs)?)
    };

    let mut stdout = std::io::stdout().lock();
    for (row, (path, _)) in ok.iter().enumerate() {
        let Some(probs) = &probs else { break };
        let preds = probs.top(row, top.min(info.classes()));
        if json {
            let top: Vec<_> = preds
                .iter()
                .map(|p| json!({ "index": p.class, "label": info.label(p.class), "probability": p.probability }))
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

fn models(json: bool, all: bool) -> glassbox::Result<ExitCode> {
    let listed = || ModelInfo::all().filter(move |m| all || !m.fixture());
    let mut stdout = std::io::stdout().lock();
    let describe = |info: &ModelInfo| {
        let pre = info.preprocess();
        let resize = match pre.resize {
            Resize::Stretch => format!("stretch to {}x{}", pre.width, pre.height),
            Resize::ShorterSide(s) => {
                format!("shorter side {s}, centre crop {}x{}", pre.width, pre.height)
            }
            Resize::CentreSquare => {
                format!("centre square, resize to {}x{}", pre.width, pre.height)
            }
        };
        let channels = if pre.channels == ChannelOrder::Bgr {
            "BGR"
        } else {
            "RGB"
        };
        let output = if info.output() == OutputKind::Logits {
            "logits"
        } else {
            "probabilities"
        };
        (resize, channels, output)
    };
    if json {
        let list: Vec<_> = listed()
            .map(|info| {
                let (resize, channels, output) = describe(&info);
                let pre = info.preprocess();
                json!({
                    "id": info.id(), "name": info.name(), "default": info.is_default(), "synthetic": info.synthetic(), "fixture": info.fixture(),
                    "file": info.file(), "embedded": info.embedded(), "classes": info.classes(), "output": output,
                    "preprocess": { "resize": resize, "channels": channels, "scale": pre.scale, "mean": pre.mean, "std": pre.std },
                    "source": info.source(), "licence": info.licence(),
                })
            })
            .collect();
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for info in listed() {
        let (resize, channels, output) = describe(&info);
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
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_fill(fill: &str) -> glassbox::Result<Fill> {
    let bad = || {
        glassbox::Error::InvalidArgument(format!(
            "unknown fill '{fill}' (black, grey, mean, blur or blur:SIGMA)"
        ))
    };
    match fill {
        "black" => Ok(Fill::Black),
        "grey" | "gray" => Ok(Fill::Grey),
        "mean" => Ok(Fill::Mean),
        "blur" => Ok(Fill::Blur(5.0)),
        other => match other.strip_prefix("blur:").map(str::parse::<f32>) {
            Some(Ok(sigma)) if sigma > 0.0 && sigma <= 100.0 => Ok(Fill::Blur(sigma)),
            _ => Err(bad()),
        },
    }
}

/// Creates `dir` if needed and proves it writable before any work starts.
fn prepare_out_dir(dir: &Path) -> glassbox::Result<()> {
    let io = |source| glassbox::Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let probe = dir.join(format!(".glassbox-write-test.{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(io)?;
    std::fs::remove_file(&probe).map_err(io)
}

fn explain(args: &ExplainArgs) -> glassbox::Result<ExitCode> {
    let method = match args.method {
        MethodOpt::Arbitrary => Explainer::Occlusion(Method::Arbitrary {
            fraction: args.keep_fraction,
        }),
        MethodOpt::Statistical => Explainer::Occlusion(Method::Statistical { k: args.k }),
        MethodOpt::DoubleDivision => Explainer::Occlusion(Method::DoubleDivision { k: args.k }),
        MethodOpt::Elbow => Explainer::Occlusion(Method::Elbow { k: args.k }),
        MethodOpt::Lime => Explainer::Lime,
    };
    if !(0.0..=1.0).contains(&args.keep_fraction) {
        return Err(glassbox::Error::InvalidArgument(format!(
            "--keep-fraction {} must be between 0 and 1",
            args.keep_fraction
        )));
    }
    if !args.k.is_finite() {
        return Err(glassbox::Error::InvalidArgument(
            "--k must be a finite number".into(),
        ));
    }
    let fill = parse_fill(&args.fill)?;
    let info = pick_model(args.model.as_deref())?;
    let pre = info.preprocess();
    if args.grid == 0 || args.grid > pre.width.max(pre.height) {
        return Err(glassbox::Error::InvalidArgument(format!(
            "--grid {} must be between 1 and {}",
            args.grid,
            pre.width.max(pre.height)
        )));
    }
    let class = args
        .class
        .as_deref()
        .map(|c| info.class_index(c))
        .transpose()?;
    if matches!(method, Explainer::Lime) {
        if !matches!(fill, Fill::Black | Fill::Mean) {
            return Err(glassbox::Error::InvalidArgument(
                "lime's --fill is black or mean".into(),
            ));
        }
        if !(2..=1_000_000).contains(&args.samples) {
            return Err(glassbox::Error::InvalidArgument(format!(
                "--samples {} must be between 2 and 1000000",
                args.samples
            )));
        }
        if args.features == 0 {
            return Err(glassbox::Error::InvalidArgument(
                "--features must be at least 1".into(),
            ));
        }
    }
    prepare_out_dir(&args.out)?;
    let compute = select_device(args.device.device.into())?;
    let method_name = match method {
        Explainer::Occlusion(m) => m.name(),
        Explainer::Lime => "lime",
    };
    eprintln!(
        "glassbox: {} on {}, {method_name} ({})",
        info.id(),
        compute,
        args.fill
    );
    let classifier = Classifier::load(info, &compute)?;
    let options = OcclusionOptions {
        grid: args.grid,
        fill,
        class,
    };
    let lime_options = LimeOptions {
        samples: args.samples,
        seed: args.seed,
        segmenter: match args.segments {
            SegmentsOpt::Quickshift => Segmenter::Quickshift(Quickshift::default()),
            SegmentsOpt::Slic => Segmenter::Slic(Slic::default()),
            SegmentsOpt::Grid => Segmenter::Grid(args.grid),
        },
        fill,
        features: args.features,
        class,
        ..LimeOptions::default()
    };

    let mut failed = false;
    let total = args.images.len();
    for (n, path) in args.images.iter().enumerate() {
        let started = Instant::now();
        let result = match method {
            Explainer::Occlusion(method) => {
                explain_one(&classifier, path, method, &options, &args.out)
            }
            // --positive-only is lime's default picture; clap refuses it together with --signed.
            Explainer::Lime => explain_lime(
                &classifier,
                path,
                &lime_options,
                args.signed && !args.positive_only,
                &args.out,
            ),
        };
        match result {
            Ok(summary) => eprintln!(
                "[{}/{total}] {} ({:.2} s)",
                n + 1,
                summary,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                failed = true;
                eprintln!("glassbox: error: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn explain_one(
    classifier: &Classifier,
    path: &Path,
    method: Method,
    options: &OcclusionOptions,
    out: &Path,
) -> glassbox::Result<String> {
    let info = classifier.info();
    let t = Instant::now();
    let (photo, view) = open_view(path, info.preprocess())?;
    let decode = t.elapsed().as_secs_f64();
    let mut explanation = glassbox::explain::occlusion(classifier, &view, method, options)?;
    explanation.timings.preprocess += decode;
    for note in &explanation.notes {
        eprintln!("glassbox: {}: {note}", path.display());
    }

    let t = Instant::now();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let base = format!("{stem}.{}.{}", info.id(), method.name());
    let name = |suffix: &str| out.join(format!("{base}.{suffix}"));
    let label = info.label(explanation.class).unwrap_or("?");
    render::save_png(
        &render::masked(&photo.rgb, &view, &explanation.kept),
        &name("masked.png"),
    )?;
    let (vw, vh) = explanation.size;
    write_mask(&explanation.kept, vw, vh, &name("mask.png"))?;
    let drops = drop_map(&explanation);
    let title = format!("drop in p({label})");
    render::save_png(
        &render::heatmap(&photo.rgb, &view, &drops, &title)?,
        &name("heatmap.png"),
    )?;
    let last = explanation
        .phases
        .last()
        .ok_or_else(|| glassbox::Error::InvalidArgument("no phase".into()))?;
    let values: Vec<f32> = last.ranking.iter().map(|&i| last.p[i]).collect();
    let (cut_after, threshold) = match last.cut {
        Cut::Count(n) => (Some(n), None),
        Cut::Knee(i) => (Some(i + 1), None),
        Cut::Threshold(t) | Cut::NoKnee(t) => (None, Some(t)),
    };
    let curve_title = format!(
        "{} · {} · {}: p({label}) per occluded cell",
        stem,
        info.id(),
        method.name()
    );
    let curve = render::Curve {
        values: &values,
        base: explanation.probability,
        cut_after,
        threshold,
        title: &curve_title,
    };
    render::save_png(&curve.draw()?, &name("curve.png"))?;
    explanation.timings.render = t.elapsed().as_secs_f64();

    let mut doc = explanation.to_json(|i| info.label(i));
    if let Some(obj) = add_context(&mut doc, path, &photo.rgb, &view, classifier) {
        let files: Vec<String> = ["masked.png", "mask.png", "heatmap.png", "curve.png"]
            .iter()
            .map(|s| format!("{base}.{s}"))
            .collect();
        obj.insert("outputs".into(), json!(files));
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    render::write_atomic(&name("json"), text.as_bytes())?;
    Ok(format!(
        "{}: {label} ({}) p={:.4}; kept {:.0}% with {} variants → {}",
        path.display(),
        explanation.class,
        explanation.probability,
        explanation.kept_fraction() * 100.0,
        explanation.variants,
        name("*").display()
    ))
}

/// Per view pixel, the drop in p[c*] when its cell (the finest cell covering it) was occluded.
fn drop_map(e: &glassbox::explain::Explanation) -> Vec<f32> {
    let (w, h) = e.size;
    let mut values = vec![0.0; (w * h) as usize];
    for phase in &e.phases {
        for (cell, p) in phase.cells.iter().zip(&phase.p) {
            cell.fill(&mut values, w, e.probability - p);
        }
    }
    values
}

#[derive(Clone, Copy)]
enum Explainer {
    Occlusion(Method),
    Lime,
}

fn explain_lime(
    classifier: &Classifier,
    path: &Path,
    options: &LimeOptions,
    signed: bool,
    out: &Path,
) -> glassbox::Result<String> {
    let info = classifier.info();
    let (photo, view) = open_view(path, info.preprocess())?;
    let mut e = glassbox::explain::lime::lime(classifier, &view, options)?;

    let t = Instant::now();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let base = format!("{stem}.{}.lime", info.id());
    let name = |suffix: &str| out.join(format!("{base}.{suffix}"));
    let label = info.label(e.class).unwrap_or("?");
    let picture = if signed {
        let model = e
            .models
            .iter()
            .find(|m| m.class == e.class)
            .ok_or_else(|| glassbox::Error::InvalidArgument("no local model".into()))?;
        render::signed(
            &photo.rgb,
            &view,
            e.segmentation.labels(),
            &model.signed(options.features),
        )
    } else {
        render::masked(&photo.rgb, &view, &e.kept)
    };
    render::save_png(&picture, &name("masked.png"))?;
    write_mask(
        &e.kept,
        e.segmentation.width(),
        e.segmentation.height(),
        &name("mask.png"),
    )?;
    let title = format!("LIME weight for {label}");
    render::save_png(
        &render::heatmap(&photo.rgb, &view, &e.weight_map(e.class), &title)?,
        &name("heatmap.png"),
    )?;
    e.timings.render = t.elapsed().as_secs_f64();

    let mut doc = e.to_json(|i| info.label(i));
    if let Some(obj) = add_context(&mut doc, path, &photo.rgb, &view, classifier) {
        obj.insert(
            "picture".into(),
            json!(if signed { "signed" } else { "positive-only" }),
        );
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    render::write_atomic(&name("json"), text.as_bytes())?;
    let t = e.timings;
    Ok(format!(
        "{}: {label} ({}); {} segments, {} samples: segmentation {:.2} s, perturb+classify {:.2} s, regression {:.3} s → {}",
        path.display(),
        e.class,
        e.segmentation.count(),
        options.samples,
        t.segmentation,
        t.perturb_classify,
        t.regression,
        name("*").display()
    ))
}

/// Decodes `path`, tells the user what decoding noted (first GIF frame, EXIF rotation), and
/// fits the photo to the model's input view.
fn open_view(path: &Path, pre: &Preprocess) -> glassbox::Result<(Photo, View)> {
    let photo = load_photo(path)?;
    for note in &photo.notes {
        eprintln!("glassbox: {}: {note}", path.display());
    }
    let view = View::new(&photo.rgb, pre);
    Ok((photo, view))
}

/// The kept mask over the view as a PNG (white = kept).
fn write_mask(kept: &[bool], w: u32, h: u32, path: &Path) -> glassbox::Result<()> {
    let mask = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if kept[(y * w + x) as usize] { 255 } else { 0 }])
    });
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(mask.as_raw(), w, h, image::ExtendedColorType::L8)
        .map_err(|e| glassbox::Error::InvalidArgument(format!("PNG encoding failed: {e}")))?;
    render::write_atomic(path, &png)
}

/// Adds what every explanation document carries about its input and its run: the image, the
/// photo's size, the view's crop, the model (and whether it is synthetic) and the device.
/// Returns the object for the caller's own fields.
fn add_context<'a>(
    doc: &'a mut serde_json::Value,
    path: &Path,
    photo: &image::RgbImage,
    view: &View,
    classifier: &Classifier,
) -> Option<&'a mut serde_json::Map<String, serde_json::Value>> {
    let info = classifier.info();
    let obj = doc.as_object_mut()?;
    obj.insert("image".into(), json!(path));
    obj.insert("photo_size".into(), json!([photo.width(), photo.height()]));
    obj.insert("view_crop_in_photo".into(), json!(view.crop));
    obj.insert(
        "model".into(),
        json!({ "id": info.id(), "synthetic": info.synthetic() }),
    );
    obj.insert("device".into(), json!(classifier.compute().to_string()));
    Some(obj)
}
