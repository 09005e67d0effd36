//! `glassbox`: the command line over the glassbox library. Parses, validates, calls the
//! library, prints. Errors end as one line on stderr and exit code 2.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use glassbox::model::{ChannelOrder, OutputKind, Resize};
use glassbox::view::{View, load_photo, to_input};
use glassbox::{Classifier, Compute, DeviceRequest, ModelInfo};
use serde_json::json;

#[derive(Parser)]
#[command(name = "glassbox", version, about = "Explains what an image classifier looked at.")]
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
        Command::Classify { images, model, top, device, json } => classify(&images, model.as_deref(), top, device.device.into(), json),
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

fn classify(images: &[PathBuf], model: Option<&str>, top: usize, device: DeviceRequest, json: bool) -> glassbox::Result<ExitCode> {
    if top == 0 {
        return Err(glassbox::Error::InvalidArgument("--top must be at least 1".into()));
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
        match load_photo(path) {
            Ok(photo) => {
                for note in &photo.notes {
                    eprintln!("glassbox: {}: {note}", path.display());
                }
                let view = View::new(&photo.rgb, pre);
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
    let probs = if ok.is_empty() { None } else { Some(classifier.classify(&inputs)?) };

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
                let _ = writeln!(stdout, "  {}. {:>7.4}  {} ({})", rank + 1, p.probability, info.label(p.class).unwrap_or("?"), p.class);
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
        let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    Ok(if failed { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

fn models(json: bool, all: bool) -> glassbox::Result<ExitCode> {
    let listed = || ModelInfo::all().filter(move |m| all || !m.fixture());
    let mut stdout = std::io::stdout().lock();
    let describe = |info: &ModelInfo| {
        let pre = info.preprocess();
        let resize = match pre.resize {
            Resize::Stretch => format!("stretch to {}x{}", pre.width, pre.height),
            Resize::ShorterSide(s) => format!("shorter side {s}, centre crop {}x{}", pre.width, pre.height),
            Resize::CentreSquare => format!("centre square, resize to {}x{}", pre.width, pre.height),
        };
        let channels = if pre.channels == ChannelOrder::Bgr { "BGR" } else { "RGB" };
        let output = if info.output() == OutputKind::Logits { "logits" } else { "probabilities" };
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
        let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&list).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    for info in listed() {
        let (resize, channels, output) = describe(&info);
        let pre = info.preprocess();
        let status = if info.synthetic() { "SYNTHETIC weights (real file absent at build time)" } else { "real weights" };
        let _ = writeln!(stdout, "{}{}  {}", info.id(), if info.is_default() { " (default)" } else { "" }, info.name());
        let _ = writeln!(stdout, "  weights:    {status}; {}", if info.embedded() { "compiled in" } else { "burnpack file beside the build" });
        let _ = writeln!(stdout, "  input:      {resize}, {channels}, (x*{} - {:?}) / {:?}", pre.scale, pre.mean, pre.std);
        let _ = writeln!(stdout, "  output:     {} classes, {output}", info.classes());
        let _ = writeln!(stdout, "  source:     {}", info.source());
        let _ = writeln!(stdout, "  licence:    {}", info.licence());
    }
    Ok(ExitCode::SUCCESS)
}
