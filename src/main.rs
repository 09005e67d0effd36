//! `glassbox`: the command line over the glassbox library. Parses, validates, calls the
//! library, prints. Errors end as one line on stderr and exit code 2.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use glassbox::compare::{self, Attribution, Explainer, FaithfulnessOptions};
use glassbox::explain::lime::{LimeOptions, Segmenter};
use glassbox::explain::{Cut, Method, OcclusionOptions};
use glassbox::model::{ChannelOrder, OutputKind, Precision, Preprocess, Resize};
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
    /// Two explanations of each image: their Jaccard index, colour overlay and faithfulness.
    Compare(CompareArgs),
    /// Compare explainers over a folder of images (resumable, shardable), with the report's
    /// FLOP 5 / TOP 5 / MEAN tables, timings and contact sheets.
    Study(StudyArgs),
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

/// Explainer parameters shared by `explain`, `compare` and `study`.
#[derive(clap::Args)]
struct ParamArgs {
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
    /// lime: perturbed samples, the original included.
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// lime: interpretable features: quickshift (lime's), slic, or the occlusion grid (--grid).
    #[arg(long, value_enum, default_value_t = SegmentsOpt::Quickshift)]
    segments: SegmentsOpt,
    /// lime: segments shown in the mask.
    #[arg(long, default_value_t = 5)]
    features: usize,
    /// Faithfulness: pixel steps of the deletion and insertion curves (0: do not measure).
    #[arg(long, default_value_t = 20)]
    steps: usize,
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
    #[command(flatten)]
    params: ParamArgs,
    /// Explain this class (index or label) instead of the top prediction.
    #[arg(long)]
    class: Option<String>,
    #[command(flatten)]
    device: DeviceArg,
    /// Output folder (created if missing).
    #[arg(long, default_value = "glassbox-out")]
    out: PathBuf,
    /// lime: seed of the sample (lime's random_state: the same seed gives lime's own sample).
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// lime: show the top positive segments only, the rest black (lime's default picture).
    #[arg(long, conflicts_with = "signed")]
    positive_only: bool,
    /// lime: show the top segments by |weight|, green for positive and red for negative.
    #[arg(long)]
    signed: bool,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Explainer A as MODEL:METHOD (e.g. googlenet:arbitrary, efficientnet-lite0:lime).
    #[arg(long)]
    a: String,
    /// Explainer B as MODEL:METHOD.
    #[arg(long)]
    b: String,
    #[command(flatten)]
    params: ParamArgs,
    /// lime's seed.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    #[command(flatten)]
    device: DeviceArg,
    /// Output folder (created if missing).
    #[arg(long, default_value = "glassbox-out")]
    out: PathBuf,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct StudyArgs {
    #[command(subcommand)]
    command: Option<StudyCommand>,
    /// Image folder: one sub-folder per category (Caltech-256) or images directly.
    dir: Option<PathBuf>,
    /// Two explainers to compare on every image, as MODEL:METHOD,MODEL:METHOD (repeatable).
    /// With --blur, each explainer is compared with itself on the blurred copy.
    #[arg(long, value_name = "A,B")]
    pairs: Vec<String>,
    /// One image per category, chosen with --seed.
    #[arg(long)]
    one_per_category: bool,
    /// Seed of the per-category choice, and lime's seed.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Study the first N images (after the per-category choice).
    #[arg(long)]
    limit: Option<usize>,
    /// Compare each image with its Gaussian-blurred copy (sigma in pixels at a 224-px shorter
    /// side) under the same model and method.
    #[arg(long, value_name = "SIGMA")]
    blur: Option<f32>,
    /// Run part I of N (0 <= I < N); `glassbox study merge` joins the parts.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    #[command(flatten)]
    params: ParamArgs,
    #[command(flatten)]
    device: DeviceArg,
    /// Output folder (created if missing); a log there is resumed.
    #[arg(long, default_value = "glassbox-study")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum StudyCommand {
    /// Join shard outputs (folders or study*.jsonl files) into one log and report.
    Merge {
        /// Shard output folders or logs.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder of the merged report.
        #[arg(long, default_value = "glassbox-study")]
        out: PathBuf,
    },
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
    /// Images per forward pass [default: from the device's buffer limit, at most 256 on a GPU
    /// and 16 on the CPU]. Results do not depend on it; a chunk the device refuses is retried
    /// in halves.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch: Option<usize>,
    /// Floating-point format of the models: f32 (the reference), or f16 on a GPU whose shaders
    /// support it (half the memory traffic; probabilities within about 1e-3 of f32's)
    #[arg(long, value_enum, default_value_t = PrecisionOpt::F32)]
    precision: PrecisionOpt,
}

impl DeviceArg {
    /// Loads `info` onto `compute` with this batch size and precision, and shows its batches'
    /// progress (see [`watch_batches`]; `counter`: the variant counter on a terminal).
    fn load(
        &self,
        info: ModelInfo,
        compute: &Compute,
        counter: bool,
    ) -> glassbox::Result<Classifier> {
        let mut classifier = Classifier::load_with(info, compute, self.precision.into())?;
        if let Some(batch) = self.batch {
            classifier.set_chunk_size(batch);
        }
        watch_batches(&mut classifier, counter);
        Ok(classifier)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionOpt {
    F32,
    F16,
}

impl From<PrecisionOpt> for Precision {
    fn from(p: PrecisionOpt) -> Self {
        match p {
            PrecisionOpt::F32 => Precision::F32,
            PrecisionOpt::F16 => Precision::F16,
        }
    }
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
    glassbox::device::tune_allocator();
    // Opt-in GPU convolutions (see glassbox::model::gpu), and a baseline for timing comparisons
    // that runs every layer through burn's own kernels.
    if let Err(e) = glassbox::model::kernels_from_env() {
        eprintln!("glassbox: error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Classify {
            images,
            model,
            top,
            device,
            json,
        } => classify(&images, model.as_deref(), top, &device, json),
        Command::Explain(args) => explain(&args),
        Command::Compare(args) => compare_images(&args),
        Command::Study(args) => study(&args),
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

impl ParamArgs {
    /// Validates the parameters for `method` on `info` and builds the explainer.
    fn explainer(
        &self,
        method: MethodOpt,
        info: &ModelInfo,
        seed: u32,
        class: Option<usize>,
    ) -> glassbox::Result<Explainer> {
        let bad = glassbox::Error::InvalidArgument;
        if !(0.0..=1.0).contains(&self.keep_fraction) {
            return Err(bad(format!(
                "--keep-fraction {} must be between 0 and 1",
                self.keep_fraction
            )));
        }
        if !self.k.is_finite() {
            return Err(bad("--k must be a finite number".into()));
        }
        let fill = parse_fill(&self.fill)?;
        let pre = info.preprocess();
        if self.grid == 0 || self.grid > pre.width.max(pre.height) {
            return Err(bad(format!(
                "--grid {} must be between 1 and {}",
                self.grid,
                pre.width.max(pre.height)
            )));
        }
        if self.steps > (pre.width * pre.height) as usize {
            return Err(bad(format!(
                "--steps {} exceeds the view's {} pixels",
                self.steps,
                pre.width * pre.height
            )));
        }
        let options = OcclusionOptions {
            grid: self.grid,
            fill,
            class,
        };
        let occlusion = |method| Ok(Explainer::Occlusion { method, options });
        match method {
            MethodOpt::Arbitrary => occlusion(Method::Arbitrary {
                fraction: self.keep_fraction,
            }),
            MethodOpt::Statistical => occlusion(Method::Statistical { k: self.k }),
            MethodOpt::DoubleDivision => occlusion(Method::DoubleDivision { k: self.k }),
            MethodOpt::Elbow => occlusion(Method::Elbow { k: self.k }),
            MethodOpt::Lime => {
                if !matches!(fill, Fill::Black | Fill::Mean) {
                    return Err(bad("lime's --fill is black or mean".into()));
                }
                if !(2..=1_000_000).contains(&self.samples) {
                    return Err(bad(format!(
                        "--samples {} must be between 2 and 1000000",
                        self.samples
                    )));
                }
                if self.features == 0 {
                    return Err(bad("--features must be at least 1".into()));
                }
                Ok(Explainer::Lime(LimeOptions {
                    samples: self.samples,
                    seed,
                    segmenter: match self.segments {
                        SegmentsOpt::Quickshift => Segmenter::Quickshift(Quickshift::default()),
                        SegmentsOpt::Slic => Segmenter::Slic(Slic::default()),
                        SegmentsOpt::Grid => Segmenter::Grid(self.grid),
                    },
                    fill,
                    features: self.features,
                    class,
                    ..LimeOptions::default()
                }))
            }
        }
    }

    /// How faithfulness is measured; `None` with `--steps 0`.
    fn faithfulness(&self) -> Option<FaithfulnessOptions> {
        (self.steps > 0).then(|| FaithfulnessOptions {
            steps: self.steps,
            ..FaithfulnessOptions::default()
        })
    }
}

fn explain(args: &ExplainArgs) -> glassbox::Result<ExitCode> {
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
    prepare_out_dir(&args.out)?;
    let compute = select_device(args.device.device.into())?;
    let classifier = args.device.load(info, &compute, true)?;
    eprintln!(
        "glassbox: {} on {}{}, {} ({})",
        info.id(),
        compute,
        precision_note(classifier.precision()),
        explainer.name(),
        args.params.fill
    );

    let mut failed = false;
    let total = args.images.len();
    for (n, path) in args.images.iter().enumerate() {
        let started = Instant::now();
        let result = match &explainer {
            Explainer::Occlusion { method, options } => explain_one(
                &classifier,
                path,
                *method,
                options,
                faithfulness.as_ref(),
                &args.out,
            ),
            // --positive-only is lime's default picture; clap refuses it together with --signed.
            Explainer::Lime(options) => explain_lime(
                &classifier,
                path,
                options,
                args.signed && !args.positive_only,
                faithfulness.as_ref(),
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
    report_refusals(&classifier);
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// What the user sees of a classifier's batches:
/// - with `counter`, on a terminal, a line that counts the variants of each batch of at least
///   64 as they are classified, and erases itself when the batch is done;
/// - on a GPU, once per process, a notice when the first chunk of a batch has run for
///   [`first_chunk_notice_after`]: a model's first run there tunes and compiles its kernels,
///   which took from 20 s to nearly two minutes on an H100 and an H200, with nothing to show.
fn watch_batches(classifier: &mut Classifier, counter: bool) {
    use std::io::IsTerminal;
    let line = counter && std::io::stderr().is_terminal();
    let gpu = classifier
        .compute()
        .is_gpu()
        .then(|| (classifier.compute().to_string(), first_chunk_notice_after()));
    if !line && gpu.is_none() {
        return;
    }
    classifier.set_progress(move |done, total| {
        if let Some((device, after)) = &gpu {
            first_chunk_watch(done, device, *after);
        }
        if !line || total < 64 {
            return;
        }
        if done < total {
            eprint!("\r\x1b[K  classified {done}/{total} variants");
        } else {
            eprint!("\r\x1b[K");
        }
    });
}

/// When the batch in flight started, while its first chunk runs; shared by every classifier
/// of the process and the thread that watches it.
static FIRST_CHUNK_SINCE: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// How long a first chunk may run on a GPU before the notice: 10 s, or
/// `GLASSBOX_FIRST_CHUNK_NOTICE_S` seconds (0: as soon as the first batch starts, which the
/// tests use to see the notice without a slow device).
fn first_chunk_notice_after() -> std::time::Duration {
    std::env::var("GLASSBOX_FIRST_CHUNK_NOTICE_S")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(std::time::Duration::from_secs(10), |s| {
            std::time::Duration::from_secs_f64(s)
        })
}

/// Progress callback part of [`watch_batches`] on a GPU: a batch start (`done == 0`) arms the
/// watch, any finished chunk disarms it. The first arming starts the watching thread, which
/// speaks once a first chunk has run for `after`.
fn first_chunk_watch(done: usize, device: &str, after: std::time::Duration) {
    static WATCHER: std::sync::Once = std::sync::Once::new();
    if done == 0 && after.is_zero() {
        WATCHER.call_once(|| first_chunk_notice(device, after));
        return;
    }
    *FIRST_CHUNK_SINCE.lock().unwrap_or_else(|e| e.into_inner()) = (done == 0).then(Instant::now);
    if done == 0 {
        let device = device.to_string();
        WATCHER.call_once(move || {
            // Polls a few times a second until it has spoken once; it never keeps the process
            // alive (Rust does not wait for spawned threads at exit).
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    let since = *FIRST_CHUNK_SINCE.lock().unwrap_or_else(|e| e.into_inner());
                    if since.is_some_and(|t| t.elapsed() >= after) {
                        first_chunk_notice(&device, after);
                        return;
                    }
                }
            });
        });
    }
}

fn first_chunk_notice(device: &str, after: std::time::Duration) {
    use std::io::IsTerminal;
    // Over the variant counter, if one is drawn.
    let erase = if std::io::stderr().is_terminal() {
        "\r\x1b[K"
    } else {
        ""
    };
    eprintln!(
        "{erase}glassbox: the first chunk on {device} has run for {:.0} s: a model's first run on a GPU tunes and compiles its kernels, which can take minutes; later runs reuse them from the on-disk cache",
        after.as_secs_f64()
    );
}

/// `, f16` after the device in a banner when the model computes in f16; nothing in f32.
fn precision_note(precision: Precision) -> String {
    match precision {
        Precision::F32 => String::new(),
        other => format!(", {other}"),
    }
}

/// Says so when the device refused chunks (each retried in halves), so users can size batches.
fn report_refusals(classifier: &Classifier) {
    let refused = classifier.refused_chunks();
    if refused > 0 {
        eprintln!(
            "glassbox: note: {} refused {refused} chunk(s) of '{}' (retried in halves); it now runs {} variants per chunk",
            classifier.compute(),
            classifier.info().id(),
            classifier.chunk_size()
        );
    }
}

fn explain_one(
    classifier: &Classifier,
    path: &Path,
    method: Method,
    options: &OcclusionOptions,
    faithfulness: Option<&FaithfulnessOptions>,
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
    let faith = measure_faithfulness(
        classifier,
        &view,
        &Attribution::from(&explanation),
        faithfulness,
        &format!("{stem} · {} · {}", info.id(), method.name()),
        &name("faithfulness.png"),
    )?;

    let mut doc = explanation.to_json(|i| info.label(i));
    if let Some(obj) = add_context(&mut doc, path, &photo.rgb, &view, classifier) {
        let mut files = vec!["masked.png", "mask.png", "heatmap.png", "curve.png"];
        if let Some((json, _)) = &faith {
            insert_faithfulness(obj, json);
            files.push("faithfulness.png");
        }
        let files: Vec<String> = files.iter().map(|s| format!("{base}.{s}")).collect();
        obj.insert("outputs".into(), json!(files));
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    render::write_atomic(&name("json"), text.as_bytes())?;
    Ok(format!(
        "{}: {label} ({}) p={:.4}; kept {:.0}% with {} variants{} → {}",
        path.display(),
        explanation.class,
        explanation.probability,
        explanation.kept_fraction() * 100.0,
        explanation.variants,
        faith.map(|(_, s)| s).unwrap_or_default(),
        name("*").display()
    ))
}

/// Adds faithfulness to an explanation document, its time with the other stages' times.
fn insert_faithfulness(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    faithfulness: &serde_json::Value,
) {
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

/// Deletion and insertion of one explanation (unless `--steps 0`): its chart as `chart`, and
/// its JSON and a summary fragment.
fn measure_faithfulness(
    classifier: &Classifier,
    view: &View,
    attribution: &Attribution,
    options: Option<&FaithfulnessOptions>,
    title: &str,
    chart: &Path,
) -> glassbox::Result<Option<(serde_json::Value, String)>> {
    let Some(options) = options else {
        return Ok(None);
    };
    let f = compare::faithfulness(classifier, view, attribution, options)?;
    let label = classifier.info().label(attribution.class).unwrap_or("?");
    let name = format!("p({label})");
    let picture = render::faithfulness_chart(
        &[render::FaithfulnessCurves {
            name: &name,
            deletion: &f.deletion,
            insertion: &f.insertion,
            deletion_auc: f.deletion_auc,
            insertion_auc: f.insertion_auc,
        }],
        &format!("{title}: faithfulness"),
    )?;
    render::save_png(&picture, chart)?;
    let text = format!(
        "; deletion AUC {:.3}, insertion AUC {:.3}",
        f.deletion_auc, f.insertion_auc
    );
    Ok(Some((f.to_json(), text)))
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

fn explain_lime(
    classifier: &Classifier,
    path: &Path,
    options: &LimeOptions,
    signed: bool,
    faithfulness: Option<&FaithfulnessOptions>,
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
    let faith = measure_faithfulness(
        classifier,
        &view,
        &Attribution::from(&e),
        faithfulness,
        &format!("{stem} · {} · lime", info.id()),
        &name("faithfulness.png"),
    )?;

    let mut doc = e.to_json(|i| info.label(i));
    if let Some(obj) = add_context(&mut doc, path, &photo.rgb, &view, classifier) {
        obj.insert(
            "picture".into(),
            json!(if signed { "signed" } else { "positive-only" }),
        );
        if let Some((json, _)) = &faith {
            insert_faithfulness(obj, json);
        }
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    render::write_atomic(&name("json"), text.as_bytes())?;
    let t = e.timings;
    // LIME's own trust signal: how well the linear surrogate fits the model around this image
    // (weighted R²), and what it predicts for the unperturbed image against the model's p.
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
    Ok(format!(
        "{}: {label} ({}); {} segment{}, {} samples: segmentation {:.2} s, perturb+classify {:.2} s, regression {:.3} s{fit}{} → {}",
        path.display(),
        e.class,
        e.segmentation.count(),
        if e.segmentation.count() == 1 { "" } else { "s" },
        options.samples,
        t.segmentation,
        t.perturb_classify,
        t.regression,
        faith.map(|(_, s)| s).unwrap_or_default(),
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
    obj.insert(
        "precision".into(),
        json!(classifier.precision().to_string()),
    );
    Some(obj)
}

/// `model:method`, parsed and validated against the shared parameters.
fn parse_spec(
    text: &str,
    params: &ParamArgs,
    seed: u32,
) -> glassbox::Result<(String, ModelInfo, Explainer)> {
    let bad = glassbox::Error::InvalidArgument;
    let (model, method) = text.trim().split_once(':').ok_or_else(|| {
        bad(format!(
            "'{text}' must be MODEL:METHOD, e.g. googlenet:arbitrary"
        ))
    })?;
    let method = MethodOpt::from_str(method, true).map_err(|_| {
        bad(format!(
            "'{text}': unknown method '{method}' (arbitrary, statistical, double-division, elbow, lime)"
        ))
    })?;
    let info = ModelInfo::find(model)?;
    let explainer = params.explainer(method, &info, seed, None)?;
    Ok((
        format!("{}:{}", info.id(), explainer.name()),
        info,
        explainer,
    ))
}

/// Loads each model once (warning once about synthetic weights); `counter` as for
/// [`DeviceArg::load`].
fn load_models(
    models: impl IntoIterator<Item = ModelInfo>,
    compute: &Compute,
    device: &DeviceArg,
    counter: bool,
) -> glassbox::Result<HashMap<&'static str, Classifier>> {
    let mut loaded = HashMap::new();
    for info in models {
        if !loaded.contains_key(info.id()) {
            let info = pick_model(Some(info.id()))?;
            loaded.insert(info.id(), device.load(info, compute, counter)?);
        }
    }
    Ok(loaded)
}

fn compare_images(args: &CompareArgs) -> glassbox::Result<ExitCode> {
    let a = parse_spec(&args.a, &args.params, args.seed)?;
    let b = parse_spec(&args.b, &args.params, args.seed)?;
    let faithfulness = args.params.faithfulness();
    prepare_out_dir(&args.out)?;
    let compute = select_device(args.device.device.into())?;
    let classifiers = load_models([a.1, b.1], &compute, &args.device, true)?;
    eprintln!(
        "glassbox: {} vs {} on {compute}{}",
        a.0,
        b.0,
        precision_note(args.device.precision.into())
    );
    let mut failed = false;
    let total = args.images.len();
    for (n, path) in args.images.iter().enumerate() {
        let started = Instant::now();
        match compare_one(&classifiers, path, &a, &b, faithfulness.as_ref(), &args.out) {
            Ok(summary) => eprintln!(
                "[{}/{total}] {summary} ({:.2} s)",
                n + 1,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                failed = true;
                eprintln!("glassbox: error: {e}");
            }
        }
    }
    classifiers.values().for_each(report_refusals);
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// One explanation of a `compare`: who explained, and what came out.
struct Compared<'a> {
    name: &'a str,
    info: ModelInfo,
    explainer: &'a Explainer,
    attribution: Attribution,
    faithfulness: Option<compare::Faithfulness>,
}

impl Compared<'_> {
    fn label(&self) -> &'static str {
        self.info.label(self.attribution.class).unwrap_or("?")
    }

    fn to_json(&self) -> serde_json::Value {
        let attr = &self.attribution;
        json!({
            "name": self.name, "model": { "id": self.info.id(), "synthetic": self.info.synthetic() },
            "explainer": self.explainer.describe(),
            "class": { "index": attr.class, "label": self.label(), "probability": attr.probability },
            "kept_fraction": attr.kept_fraction(), "variants": attr.variants, "seconds": attr.seconds,
            "faithfulness": self.faithfulness.as_ref().map(compare::Faithfulness::to_json),
            "mask": { "width": attr.size.0, "height": attr.size.1, "runs": compare::mask_runs(&attr.kept) },
        })
    }

    fn summary(&self) -> String {
        let f = self.faithfulness.as_ref().map_or(String::new(), |f| {
            format!(
                ", deletion {:.3}, insertion {:.3}",
                f.deletion_auc, f.insertion_auc
            )
        });
        format!(
            "{}: {} p={:.3} kept {:.0}%{f}",
            self.name,
            self.label(),
            self.attribution.probability,
            self.attribution.kept_fraction() * 100.0
        )
    }
}

fn compare_one(
    classifiers: &HashMap<&'static str, Classifier>,
    path: &Path,
    a: &(String, ModelInfo, Explainer),
    b: &(String, ModelInfo, Explainer),
    faithfulness: Option<&FaithfulnessOptions>,
    out: &Path,
) -> glassbox::Result<String> {
    let photo = load_photo(path)?;
    for note in &photo.notes {
        eprintln!("glassbox: {}: {note}", path.display());
    }
    let loaded = |info: &ModelInfo| {
        classifiers.get(info.id()).ok_or_else(|| {
            glassbox::Error::InvalidArgument(format!("model '{}' not loaded", info.id()))
        })
    };
    // One view and one cache per model: two rules on one model share their variants.
    let mut views: HashMap<&str, (View, compare::ViewCache)> = HashMap::new();
    let mut sides = Vec::new();
    for (name, info, explainer) in [a, b] {
        let classifier = loaded(info)?;
        let (view, cache) = views.entry(info.id()).or_insert_with(|| {
            (
                View::new(&photo.rgb, info.preprocess()),
                compare::ViewCache::default(),
            )
        });
        let attribution = compare::run(classifier, view, explainer, cache)?;
        let faithfulness = faithfulness
            .map(|o| cache.curves.measure(classifier, view, &attribution, o))
            .transpose()?;
        sides.push(Compared {
            name,
            info: *info,
            explainer,
            attribution,
            faithfulness,
        });
    }
    let view = |side: &Compared<'_>| {
        views.get(side.info.id()).map(|(v, ..)| v).ok_or_else(|| {
            glassbox::Error::InvalidArgument(format!("no view for '{}'", side.info.id()))
        })
    };
    let (sa, sb) = (&sides[0], &sides[1]);
    let (va, vb) = (view(sa)?, view(sb)?);
    let (ka, kb) = (&sa.attribution.kept, &sb.attribution.kept);
    let jaccard = compare::jaccard_views(va, ka, vb, kb)?;

    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let slug = |n: &str| n.replace(':', "-");
    let base = format!("{stem}.{}.vs.{}", slug(sa.name), slug(sb.name));
    let name = |suffix: &str| out.join(format!("{base}.{suffix}"));
    render::save_png(
        &render::overlay(
            &photo.rgb,
            (va, ka),
            (vb, kb),
            (sa.name, sb.name),
            &format!("{stem}: Jaccard {jaccard:.3}"),
        )?,
        &name("overlay.png"),
    )?;
    let mut outputs = vec![format!("{base}.overlay.png")];
    let curves: Vec<(String, &compare::Faithfulness)> = sides
        .iter()
        .filter_map(|s| {
            let f = s.faithfulness.as_ref()?;
            Some((format!("{}: p({})", s.name, s.label()), f))
        })
        .collect();
    if !curves.is_empty() {
        let curves: Vec<render::FaithfulnessCurves<'_>> = curves
            .iter()
            .map(|(n, f)| render::FaithfulnessCurves {
                name: n,
                deletion: &f.deletion,
                insertion: &f.insertion,
                deletion_auc: f.deletion_auc,
                insertion_auc: f.insertion_auc,
            })
            .collect();
        render::save_png(
            &render::faithfulness_chart(&curves, &format!("{stem}: faithfulness"))?,
            &name("faithfulness.png"),
        )?;
        outputs.push(format!("{base}.faithfulness.png"));
    }
    outputs.push(format!("{base}.json"));
    let doc = json!({
        "image": path, "photo_size": [photo.rgb.width(), photo.rgb.height()],
        "device": loaded(&sa.info)?.compute().to_string(),
        "precision": loaded(&sa.info)?.precision().to_string(),
        "a": sa.to_json(), "b": sb.to_json(),
        "jaccard": jaccard,
        "same_prediction": sa.label() == sb.label(),
        "outputs": outputs,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    render::write_atomic(&name("json"), text.as_bytes())?;
    Ok(format!(
        "{}: Jaccard {jaccard:.3} | A {} | B {} → {}",
        path.display(),
        sa.summary(),
        sb.summary(),
        name("*").display()
    ))
}

fn study(args: &StudyArgs) -> glassbox::Result<ExitCode> {
    use glassbox::study::{Shard, Spec, Study, StudyConfig};
    let bad = glassbox::Error::InvalidArgument;
    if let Some(StudyCommand::Merge { inputs, out }) = &args.command {
        prepare_out_dir(out)?;
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
    };
    prepare_out_dir(&args.out)?;
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
    let classifiers = load_models(study.models(), &compute, &args.device, false)?;
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

fn print_report(report: &glassbox::study::Report, out: &Path) {
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

/// A progress bar with ETA on a terminal; one line per image otherwise (logs, CI).
struct Bar {
    tty: bool,
    started: Instant,
    processed: usize,
}

impl Bar {
    fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            processed: 0,
        }
    }

    fn update(&mut self, p: &glassbox::study::Progress<'_>) {
        self.processed += 1;
        let per = self.started.elapsed().as_secs_f64() / self.processed as f64;
        let left = p.total.saturating_sub(p.done);
        let eta = per * left as f64;
        let width = 24;
        let filled = (width * p.done).checked_div(p.total).unwrap_or(width);
        let line = format!(
            "[{}{}] {}/{} images, {per:.2} s/image, ETA {}",
            "=".repeat(filled),
            " ".repeat(width - filled.min(width)),
            p.done,
            p.total,
            if eta >= 60.0 {
                format!("{}m{:02}s", eta as u64 / 60, eta as u64 % 60)
            } else {
                format!("{eta:.0}s")
            }
        );
        if let Some(e) = &p.row.error {
            if self.tty {
                eprint!("\r\x1b[K");
            }
            eprintln!("glassbox: error: {e}");
        }
        let jaccards: Vec<String> = p
            .row
            .outcomes
            .iter()
            .map(|o| format!("J={:.2}", o.jaccard))
            .collect();
        if self.tty {
            eprint!("\r\x1b[K{line}  {}", p.row.image);
        } else {
            eprintln!("{line}  {} {}", p.row.image, jaccards.join(" "));
        }
    }

    fn finish(&self) {
        if self.tty && self.processed > 0 {
            eprintln!();
        }
    }
}
