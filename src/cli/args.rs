//! The command line as typed (clap's definitions) and its validation into checked options: an
//! explainer and its parameters are refused here, before any model loads.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use glassbox::Target;
use glassbox::explain::kernelshap::{KernelShapOptions, Samples};
use glassbox::explain::lime::{Adaptive, LimeOptions, Segmenter};
use glassbox::explain::rise::RiseOptions;
use glassbox::explain::sliding::SlidingOptions;
use glassbox::explain::{Explainer, Method, OcclusionOptions};
use glassbox::metrics::FaithfulnessOptions;
use glassbox::model::{Precision, Weights};
use glassbox::perturb::Fill;
use glassbox::segment::quickshift::Quickshift;
use glassbox::segment::slic::Slic;
use glassbox::{Classifier, Compute, DeviceRequest, ModelInfo};

#[derive(Parser)]
#[command(
    name = "glassbox",
    version,
    about = "Explains what an image classifier looked at."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Model-randomisation sanity check: explain each image with the model and with its
    /// randomised twin (synthetic weights); a faithful explainer's two maps differ.
    Sanity(SanityArgs),
    /// Where a forward pass spends its time, per kind of layer and per statement, on synthetic
    /// pictures (this build has the per-statement marks of `--features layer-profile`).
    #[cfg(feature = "layer-profile")]
    Profile {
        /// Model id (see `glassbox models`); the default model when omitted.
        #[arg(long)]
        model: Option<String>,
        /// Timed passes, after one untimed warm-up.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Slowest statements listed.
        #[arg(long, default_value_t = 15)]
        top: usize,
        /// After the profile, one more pass that checks every layer glassbox's GPU kernels run
        /// against burn's f32 kernel on the same values, and prints the worst.
        #[arg(long)]
        check: bool,
        // Images per pass: `--batch` (default 16).
        #[command(flatten)]
        device: DeviceArg,
    },
    /// The built-in models: real or synthetic, preprocessing, provenance.
    Models {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also list the test fixtures (planted-region models).
        #[arg(long)]
        all: bool,
        /// Also measure what incremental occlusion inference saves for each model: its 10x10
        /// single-cell occlusions of a grey view on the CPU (seconds per model).
        #[arg(long)]
        macs: bool,
    },
}

/// Explainer parameters shared by `explain`, `compare` and `study`.
#[derive(clap::Args)]
pub struct ParamArgs {
    /// Cells along the longer side of the view.
    #[arg(long, default_value_t = 10)]
    pub grid: u32,
    /// arbitrary: fraction of the ranked cells blacked out [default: 0.7]; rise, sliding:
    /// fraction of the view's pixels kept, most important first [default: 0.3].
    #[arg(long)]
    pub keep_fraction: Option<f64>,
    /// statistical, double-division, elbow's fallback: black out cells with p > mean - k*std.
    #[arg(long, default_value_t = 1.0)]
    pub k: f64,
    /// What occluded cells become: black, grey, mean (segment mean colour) or blur[:SIGMA].
    #[arg(long, default_value = "black")]
    pub fill: String,
    /// lime: perturbed samples, the original included [default: 1000], or `auto` (rounds of 250
    /// until the top segments are stable); kernelshap: coalitions, `auto` (2·segments + 2048,
    /// shap's default) or a count [default: auto].
    #[arg(long, value_parser = parse_samples)]
    pub samples: Option<Samples>,
    /// lime with --samples auto: never more samples than this.
    #[arg(long, default_value_t = 10_000)]
    pub max_samples: usize,
    /// lime, kernelshap: interpretable features: quickshift (lime's), slic, or the occlusion grid
    /// (--grid).
    #[arg(long, value_enum, default_value_t = SegmentsOpt::Quickshift)]
    pub segments: SegmentsOpt,
    /// lime, kernelshap: segments shown in the mask.
    #[arg(long, default_value_t = 5)]
    pub features: usize,
    /// lime: run R times with seeds S..S+R-1 and report how stable the explanation is (each
    /// segment's weight mean and std, the masks' mean pairwise Jaccard).
    #[arg(long, value_name = "R")]
    pub stability: Option<usize>,
    /// sliding: side of the square window, in view pixels.
    #[arg(long, default_value_t = 32)]
    pub window: u32,
    /// sliding: step between windows, in view pixels.
    #[arg(long, default_value_t = 16)]
    pub stride: u32,
    /// rise: random masks.
    #[arg(long, default_value_t = 4000)]
    pub masks: usize,
    /// rise: cells per side of each mask's random grid.
    #[arg(long, default_value_t = 7)]
    pub cells: u32,
    /// rise: probability that a grid cell is kept (strictly between 0 and 1).
    #[arg(long, default_value_t = 0.5)]
    pub keep_prob: f64,
    /// Faithfulness: pixel steps of the deletion and insertion curves (0: do not measure).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// What is explained: probability (p(class), the report's), logit (the pre-softmax output,
    /// for models that output logits), or group:NAME / group:I,J,... (the summed probability
    /// of a group of classes; built-in: cat, big-cat, dog, bird, snake, car).
    #[arg(long, default_value = "probability")]
    pub target: String,
    /// Occlusion rules: classify every occluded variant by full inference. By default they run
    /// by incremental inference on the CPU (each layer computed only where the occluded cell
    /// changed it; the same probabilities to float rounding).
    #[arg(long)]
    pub no_incremental: bool,
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Model id; the default model when omitted.
    #[arg(long)]
    pub model: Option<String>,
    /// The occlusion rule.
    #[arg(long, value_enum, default_value_t = MethodOpt::Arbitrary)]
    pub method: MethodOpt,
    #[command(flatten)]
    pub params: ParamArgs,
    /// Explain this class (index or label) instead of the top prediction.
    #[arg(long)]
    pub class: Option<String>,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Output folder (created if missing).
    #[arg(long, default_value = "glassbox-out")]
    pub out: PathBuf,
    /// lime: seed of the sample (lime's random_state: the same seed gives lime's own sample);
    /// kernelshap: seed of the random coalitions.
    /// rise: seed of the masks (the reference code's masks after np.random.seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// lime: show the top positive segments only, the rest black (lime's default picture).
    #[arg(long, conflicts_with = "signed")]
    pub positive_only: bool,
    /// lime: show the top segments by |weight|, green for positive and red for negative.
    #[arg(long)]
    pub signed: bool,
}

#[derive(clap::Args)]
pub struct SanityArgs {
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Model id (one with real weights); the default model when omitted.
    #[arg(long)]
    pub model: Option<String>,
    /// The explainer.
    #[arg(long, value_enum, default_value_t = MethodOpt::Arbitrary)]
    pub method: MethodOpt,
    #[command(flatten)]
    pub params: ParamArgs,
    /// lime's, kernelshap's and rise's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Output folder (created if missing).
    #[arg(long, default_value = "glassbox-out")]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Explainer A as MODEL:METHOD (e.g. googlenet:arbitrary, efficientnet-lite0:lime).
    #[arg(long)]
    pub a: String,
    /// Explainer B as MODEL:METHOD.
    #[arg(long)]
    pub b: String,
    #[command(flatten)]
    pub params: ParamArgs,
    /// lime's, kernelshap's and rise's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Output folder (created if missing).
    #[arg(long, default_value = "glassbox-out")]
    pub out: PathBuf,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StudyArgs {
    #[command(subcommand)]
    pub command: Option<StudyCommand>,
    /// Image folder: one sub-folder per category (Caltech-256) or images directly.
    pub dir: Option<PathBuf>,
    /// Two explainers to compare on every image, as MODEL:METHOD,MODEL:METHOD (repeatable).
    /// With --blur, each explainer is compared with itself on the blurred copy.
    #[arg(long, value_name = "A,B")]
    pub pairs: Vec<String>,
    /// One image per category, chosen with --seed.
    #[arg(long)]
    pub one_per_category: bool,
    /// Seed of the per-category choice, and lime's, kernelshap's and rise's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Study the first N images (after the per-category choice).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Compare each image with its Gaussian-blurred copy (sigma in pixels at a 224-px shorter
    /// side) under the same model and method.
    #[arg(long, value_name = "SIGMA")]
    pub blur: Option<f32>,
    /// Run part I of N (0 <= I < N); `glassbox study merge` joins the parts.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub params: ParamArgs,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Output folder (created if missing); a log there is resumed.
    #[arg(long, default_value = "glassbox-study")]
    pub out: PathBuf,
}

#[derive(Subcommand)]
pub enum StudyCommand {
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
pub enum SegmentsOpt {
    Quickshift,
    Slic,
    Grid,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MethodOpt {
    Arbitrary,
    Statistical,
    DoubleDivision,
    Elbow,
    Lime,
    Kernelshap,
    Rise,
    Sliding,
}

/// `--samples`: `auto` or a count.
fn parse_samples(text: &str) -> Result<Samples, String> {
    text.parse().map_err(|e: glassbox::Error| e.to_string())
}

#[derive(clap::Args)]
pub struct DeviceArg {
    /// Where to run: a hardware GPU if any (auto), any wgpu adapter (gpu), or the CPU.
    #[arg(long, value_enum, default_value_t = DeviceOpt::Auto)]
    pub device: DeviceOpt,
    /// Images per forward pass [default: from the device's buffer limit, at most 256 on a GPU
    /// and 16 on the CPU]. Results do not depend on it; a chunk the device refuses is retried
    /// in halves.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: Option<usize>,
    /// Floating-point format of the models: f32 (the reference), or f16 on a GPU whose shaders
    /// support it (half the memory traffic; probabilities within about 1e-3 of f32's)
    #[arg(long, value_enum, default_value_t = PrecisionOpt::F32)]
    pub precision: PrecisionOpt,
}

impl DeviceArg {
    /// Loads `info` onto `compute` with this batch size and precision, and shows its batches'
    /// progress (see [`super::progress::watch_batches`]; `counter`: the variant counter on a terminal).
    pub fn load(
        &self,
        info: ModelInfo,
        compute: &Compute,
        counter: bool,
    ) -> glassbox::Result<Classifier> {
        self.load_weights(info, compute, counter, super::weights_for(info))
    }

    /// As [`DeviceArg::load`], with the model's own weights or its randomised twin's.
    pub fn load_weights(
        &self,
        info: ModelInfo,
        compute: &Compute,
        counter: bool,
        weights: Weights,
    ) -> glassbox::Result<Classifier> {
        let mut classifier =
            Classifier::load_weights(info, compute, self.precision.into(), weights)?;
        if let Some(batch) = self.batch {
            classifier.set_chunk_size(batch);
        }
        // Not yet timed on a hardware GPU: the tool's user opts in (README, "Incremental
        // occlusion inference").
        if std::env::var_os("GLASSBOX_INCREMENTAL_GPU").is_some() {
            classifier.set_incremental_on_gpu(true);
        }
        super::progress::watch_batches(&mut classifier, counter);
        Ok(classifier)
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PrecisionOpt {
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
pub enum DeviceOpt {
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

impl ParamArgs {
    /// `--target`, checked against `info`'s model.
    pub fn target_for(&self, info: &ModelInfo) -> glassbox::Result<Target> {
        let target: Target = self.target.parse()?;
        target.check(info)?;
        Ok(target)
    }

    /// Validates the parameters for `method` on `info` and builds the explainer.
    pub fn explainer(
        &self,
        method: MethodOpt,
        info: &ModelInfo,
        seed: u32,
        class: Option<usize>,
    ) -> glassbox::Result<Explainer> {
        let bad = glassbox::Error::InvalidArgument;
        // A group is explained as one more class after the model's own.
        let class = match self.target_for(info)? {
            Target::Group { name, .. } => {
                if class.is_some() {
                    return Err(bad(format!(
                        "--class and --target group:{name} name two things to explain; give one"
                    )));
                }
                Some(info.classes())
            }
            _ => class,
        };
        if let Some(f) = self.keep_fraction
            && !(0.0..=1.0).contains(&f)
        {
            return Err(bad(format!("--keep-fraction {f} must be between 0 and 1")));
        }
        if !self.k.is_finite() {
            return Err(bad("--k must be a finite number".into()));
        }
        let fill: Fill = self.fill.parse()?;
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
        if self.samples == Some(Samples::Auto)
            && !matches!(method, MethodOpt::Lime | MethodOpt::Kernelshap)
        {
            return Err(bad(
                "--samples auto applies to lime and kernelshap (the occlusion rules and rise take no samples)"
                    .into(),
            ));
        }
        let segmenter = match self.segments {
            SegmentsOpt::Quickshift => Segmenter::Quickshift(Quickshift::default()),
            SegmentsOpt::Slic => Segmenter::Slic(Slic::default()),
            SegmentsOpt::Grid => Segmenter::Grid(self.grid),
        };
        let options = OcclusionOptions {
            grid: self.grid,
            fill,
            class,
            incremental: !self.no_incremental,
        };
        if self.no_incremental
            && matches!(
                method,
                MethodOpt::Lime | MethodOpt::Kernelshap | MethodOpt::Rise
            )
        {
            return Err(bad(
                "--no-incremental applies to the occlusion methods (arbitrary, statistical, double-division, elbow, sliding)"
                    .into(),
            ));
        }
        if self.stability.is_some() && !matches!(method, MethodOpt::Lime) {
            return Err(bad(
                "--stability runs lime several times: use it with --method lime".into(),
            ));
        }
        let occlusion = |method| Ok(Explainer::Occlusion { method, options });
        match method {
            MethodOpt::Arbitrary => occlusion(Method::Arbitrary {
                fraction: self.keep_fraction.unwrap_or(0.7),
            }),
            MethodOpt::Statistical => occlusion(Method::Statistical { k: self.k }),
            MethodOpt::DoubleDivision => occlusion(Method::DoubleDivision { k: self.k }),
            MethodOpt::Elbow => occlusion(Method::Elbow { k: self.k }),
            MethodOpt::Lime => {
                if !matches!(fill, Fill::Black | Fill::Mean) {
                    return Err(bad("lime's --fill is black or mean".into()));
                }
                let (samples, adaptive) = match self.samples {
                    None => (LimeOptions::default().samples, None),
                    Some(Samples::Count(n)) => (n, None),
                    Some(Samples::Auto) => {
                        let adaptive = Adaptive {
                            max_samples: self.max_samples,
                            ..Adaptive::default()
                        };
                        (adaptive.max_samples, Some(adaptive))
                    }
                };
                if !(2..=1_000_000).contains(&samples) {
                    let flag = if adaptive.is_some() {
                        "--max-samples"
                    } else {
                        "--samples"
                    };
                    return Err(bad(format!(
                        "{flag} {samples} must be between 2 and 1000000"
                    )));
                }
                if self.features == 0 {
                    return Err(bad("--features must be at least 1".into()));
                }
                let runs = match self.stability {
                    None => 1,
                    Some(r) if (2..=100).contains(&r) => r,
                    Some(r) => {
                        return Err(bad(format!(
                            "--stability {r} must be between 2 and 100 (runs with seeds S..S+R-1)"
                        )));
                    }
                };
                Ok(Explainer::Lime(LimeOptions {
                    samples,
                    seed,
                    segmenter,
                    fill,
                    features: self.features,
                    class,
                    runs,
                    adaptive,
                    ..LimeOptions::default()
                }))
            }
            MethodOpt::Kernelshap => {
                if !matches!(fill, Fill::Black | Fill::Mean) {
                    return Err(bad("kernelshap's --fill is black or mean".into()));
                }
                let samples = self.samples.unwrap_or(Samples::Auto);
                if let Samples::Count(n) = samples
                    && !(1..=1_000_000).contains(&n)
                {
                    return Err(bad(format!(
                        "--samples {n} must be auto or between 1 and 1000000"
                    )));
                }
                if self.features == 0 {
                    return Err(bad("--features must be at least 1".into()));
                }
                Ok(Explainer::KernelShap(KernelShapOptions {
                    samples,
                    seed,
                    segmenter,
                    fill,
                    features: self.features,
                    class,
                }))
            }
            MethodOpt::Sliding => {
                let options = SlidingOptions {
                    window: self.window,
                    stride: self.stride,
                    fill,
                    keep_fraction: self
                        .keep_fraction
                        .unwrap_or(SlidingOptions::default().keep_fraction),
                    class,
                    incremental: !self.no_incremental,
                };
                options.validate(pre.width, pre.height)?;
                Ok(Explainer::Sliding(options))
            }
            MethodOpt::Rise => {
                let options = RiseOptions {
                    masks: self.masks,
                    cells: self.cells,
                    keep_prob: self.keep_prob,
                    seed,
                    fill,
                    keep_fraction: self
                        .keep_fraction
                        .unwrap_or(RiseOptions::default().keep_fraction),
                    class,
                };
                options.validate(pre.width, pre.height)?;
                Ok(Explainer::Rise(options))
            }
        }
    }

    /// How faithfulness is measured; `None` with `--steps 0`.
    pub fn faithfulness(&self) -> Option<FaithfulnessOptions> {
        (self.steps > 0).then(|| FaithfulnessOptions {
            steps: self.steps,
            ..FaithfulnessOptions::default()
        })
    }
}

/// `model:method`, parsed and validated against the shared parameters.
pub fn parse_spec(
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
            "'{text}': unknown method '{method}' ({})",
            Explainer::NAMES.join(", ")
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
