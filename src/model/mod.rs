//! Built-in models: burn code generated at build time from `onnx/*.toml` descriptors, their
//! preprocessing, and a fallible weight loader.

use std::path::PathBuf;

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::store::{BurnpackStore, ChainAdapter, FloatCastAdapter};
use burn::tensor::{FloatDType, Tensor};

use crate::device::Compute;
use crate::target::Target;
use crate::{Error, Result};

/// How the photo becomes the model's input view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resize {
    /// Resize to the input size, ignoring the aspect ratio (the Caffe zoo models).
    Stretch,
    /// Resize the shorter side to this many pixels, then crop the centre (torchvision).
    ShorterSide(u32),
    /// Crop the largest centred square, then resize it to the input size.
    CentreSquare,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (Caffe).
    Bgr,
}

/// What the model's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Unnormalised scores; glassbox applies a softmax.
    Logits,
    /// Already a probability distribution.
    Probabilities,
}

/// A model's preprocessing: `value = (pixel * scale - mean[c]) / std[c]`, in model channel order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Input width.
    pub width: u32,
    /// Input height.
    pub height: u32,
    /// How the photo is fitted to the input.
    pub resize: Resize,
    /// Channel order of the input tensor.
    pub channels: ChannelOrder,
    /// Multiplies raw 0..255 values first.
    pub scale: f32,
    /// Per model channel.
    pub mean: [f32; 3],
    /// Per model channel.
    pub std: [f32; 3],
}

/// The floating-point format a model computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats, as the ONNX files store the weights: the reference.
    #[default]
    F32,
    /// 16-bit floats on a GPU whose shaders support them ([`Compute::supports_f16`]): weights and
    /// activations are rounded to 11 significant bits, which halves the memory every layer reads
    /// and writes. Probabilities are computed from the logits in f32 and come back as f32; they
    /// differ from the f32 ones by about 1e-3 (see the README), so explanations built on them
    /// can differ in ties and near-ties.
    F16,
}

impl Precision {
    /// Bytes per value.
    pub fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(Error::InvalidArgument(format!(
                "unknown precision '{other}' (f32, f16)"
            ))),
        }
    }
}

/// Where a model's weights are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WeightSource {
    /// Compiled into the binary.
    Embedded(&'static [u8]),
    /// A burnpack file, searched in `$GLASSBOX_WEIGHTS`, beside the executable, then where the
    /// build wrote it.
    File {
        file_name: &'static str,
        built_at: &'static str,
    },
}

/// A built-in model's descriptor as compiled in.
#[derive(Debug)]
pub(crate) struct ModelSpec {
    pub id: &'static str,
    pub name: &'static str,
    pub is_default: bool,
    pub fixture: bool,
    pub synthetic: bool,
    pub file: &'static str,
    pub source: &'static str,
    pub licence: &'static str,
    pub classes: usize,
    pub output: OutputKind,
    pub labels: &'static str,
    pub preprocess: Preprocess,
    pub max_elems_per_sample: u64,
    pub weights: WeightSource,
}

#[repr(C, align(256))]
pub(crate) struct Aligned<const N: usize>(pub [u8; N]);

pub mod cpu;
pub mod gpu;
pub mod incremental;

/// Sets the process's kernel switches from the environment, as the `glassbox` tool and
/// `glassbox profile` do: `GLASSBOX_GPU_CONV=burn|taps|im2col|tiled` picks [`gpu::ConvPath`]
/// (`GLASSBOX_GPU_TILE=auto|small|large|huge` the tiled kernel's tile), and
/// `GLASSBOX_BURN_KERNELS` (any value) then runs every layer through burn's own kernels, CPU
/// and GPU, as a baseline for timing. Like [`crate::device::tune_allocator`], the library never
/// calls it by itself.
pub fn kernels_from_env() -> Result<()> {
    if let Ok(path) = std::env::var("GLASSBOX_GPU_CONV") {
        let path = path.parse().map_err(|e| match e {
            Error::InvalidArgument(why) => {
                Error::InvalidArgument(format!("GLASSBOX_GPU_CONV: {why}"))
            }
            other => other,
        })?;
        gpu::set_path(path);
    }
    #[cfg(feature = "gpu")]
    if let Ok(tile) = std::env::var("GLASSBOX_GPU_TILE") {
        gpu::tiled::set_tile(gpu::tiled::parse_tile(&tile).map_err(|e| match e {
            Error::InvalidArgument(why) => {
                Error::InvalidArgument(format!("GLASSBOX_GPU_TILE: {why}"))
            }
            other => other,
        })?);
    }
    if std::env::var_os("GLASSBOX_BURN_KERNELS").is_some() {
        cpu::set_enabled(false);
        gpu::set_path(gpu::ConvPath::Burn);
    }
    Ok(())
}
#[cfg(feature = "layer-profile")]
pub mod layers;
pub mod simd;
mod twin;

mod generated {
    use super::*;
    include!(concat!(env!("OUT_DIR"), "/models.rs"));
}
use generated::{Net, SPECS};

/// Public description of a built-in model.
#[derive(Debug, Clone, Copy)]
pub struct ModelInfo {
    spec: &'static ModelSpec,
}

impl ModelInfo {
    /// The model's input and output in words: how a photo is resized, its channel order
    /// (`RGB`, `BGR`), and what the network outputs (`logits`, `probabilities`).
    pub fn describe_io(&self) -> (String, &'static str, &'static str) {
        let pre = self.preprocess();
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
        let output = if self.output() == OutputKind::Logits {
            "logits"
        } else {
            "probabilities"
        };
        (resize, channels, output)
    }

    /// The document `glassbox models --json` lists.
    pub fn to_json(&self) -> serde_json::Value {
        let (resize, channels, output) = self.describe_io();
        let pre = self.preprocess();
        serde_json::json!({
            "id": self.id(), "name": self.name(), "default": self.is_default(), "synthetic": self.synthetic(), "fixture": self.fixture(),
            "file": self.file(), "embedded": self.embedded(), "classes": self.classes(), "output": output,
            "preprocess": { "resize": resize, "channels": channels, "scale": pre.scale, "mean": pre.mean, "std": pre.std },
            "source": self.source(), "licence": self.licence(),
        })
    }

    /// Every built-in model.
    pub fn all() -> impl Iterator<Item = ModelInfo> {
        SPECS.iter().map(|spec| ModelInfo { spec })
    }

    /// The model used when none is named.
    pub fn default_model() -> ModelInfo {
        // build.rs guarantees exactly one default.
        let spec = SPECS.iter().find(|s| s.is_default).unwrap_or(&SPECS[0]);
        ModelInfo { spec }
    }

    /// Looks a model up by id.
    pub fn find(id: &str) -> Result<ModelInfo> {
        SPECS
            .iter()
            .find(|s| s.id == id)
            .map(|spec| ModelInfo { spec })
            .ok_or_else(|| Error::UnknownModel {
                name: id.to_string(),
                available: SPECS.iter().map(|s| s.id).collect::<Vec<_>>().join(", "),
            })
    }

    /// Short id, e.g. `efficientnet-lite0`.
    pub fn id(&self) -> &'static str {
        self.spec.id
    }
    /// Human-readable name.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }
    /// Whether this is the default model.
    pub fn is_default(&self) -> bool {
        self.spec.is_default
    }
    /// A test fixture (a planted-region model from tests/models), not a real classifier.
    pub fn fixture(&self) -> bool {
        self.spec.fixture
    }
    /// True when the real weights were absent at build time and the network carries
    /// deterministic synthetic weights: its predictions mean nothing.
    pub fn synthetic(&self) -> bool {
        self.spec.synthetic
    }
    /// The real ONNX file name in `onnx/`.
    pub fn file(&self) -> &'static str {
        self.spec.file
    }
    /// Provenance of graph and weights.
    pub fn source(&self) -> &'static str {
        self.spec.source
    }
    /// Licence of the weights.
    pub fn licence(&self) -> &'static str {
        self.spec.licence
    }
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.spec.classes
    }
    /// Logits or probabilities.
    pub fn output(&self) -> OutputKind {
        self.spec.output
    }
    /// Preprocessing.
    pub fn preprocess(&self) -> &'static Preprocess {
        &self.spec.preprocess
    }
    /// Whether the weights are compiled into the binary.
    pub fn embedded(&self) -> bool {
        matches!(self.spec.weights, WeightSource::Embedded(_))
    }
    /// The largest buffer one sample needs in the forward pass, in f32 values.
    pub fn max_elems_per_sample(&self) -> u64 {
        self.spec.max_elems_per_sample
    }
    /// Class `index`'s name (the first synonym of the label line), if it exists.
    pub fn label(&self, index: usize) -> Option<&'static str> {
        self.labels().nth(index)
    }
    /// All class names in index order.
    pub fn labels(&self) -> impl Iterator<Item = &'static str> {
        self.spec
            .labels
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(clean_label)
    }
    /// Resolves a class given as an index or as a (case-insensitive) label.
    pub fn class_index(&self, class: &str) -> Result<usize> {
        let unknown = || Error::UnknownClass {
            model: self.id().to_string(),
            class: class.to_string(),
        };
        if let Ok(i) = class.parse::<usize>() {
            return if i < self.classes() {
                Ok(i)
            } else {
                Err(unknown())
            };
        }
        let wanted = class.trim().to_lowercase();
        self.labels()
            .position(|l| {
                l.to_lowercase() == wanted
                    || l.split(',').any(|syn| syn.trim().to_lowercase() == wanted)
            })
            .ok_or_else(unknown)
    }
}

/// Drops a leading WordNet id (`n01440764 tench, Tinca tinca` → `tench, Tinca tinca`).
fn clean_label(line: &str) -> &str {
    let line = line.trim();
    match line.split_once(' ') {
        Some((first, rest))
            if first.len() == 9
                && first.starts_with('n')
                && first[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest.trim()
        }
        _ => line,
    }
}

/// Which weights a [`Classifier`] loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// The model's own: trained, or the build's synthetic ones when its file was absent at build
    /// time ([`ModelInfo::synthetic`]).
    #[default]
    Own,
    /// Its randomised twin's, for the model-randomisation sanity check.
    Randomised,
}

/// What a [`Classifier`] calls after every chunk: rows done, rows asked for.
type ProgressFn = dyn Fn(usize, usize) + Send + Sync;

/// A model loaded on a device, ready to classify batches.
#[derive(Debug)]
pub struct Classifier {
    info: ModelInfo,
    pub(crate) net: Net,
    compute: Compute,
    precision: Precision,
    weights: Weights,
    /// What explanations explain: the outputs it hands back follow it.
    target: Target,
    /// Whether incremental inference may run on a GPU ([`Classifier::set_incremental_on_gpu`]).
    incremental_gpu: bool,
    /// Samples per forward pass; lowered for good when the device refuses a chunk.
    chunk: AtomicUsize,
    /// Chunks the device refused so far.
    refused: AtomicUsize,
    progress: Option<Progress>,
}

/// The progress callback, opaque to `Debug`.
struct Progress(Box<ProgressFn>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

impl Classifier {
    /// Builds the network of `info` on `compute` and loads its weights, in f32.
    pub fn load(info: ModelInfo, compute: &Compute) -> Result<Self> {
        Self::load_with(info, compute, Precision::F32)
    }

    /// As [`Classifier::load`], computing in `precision`. [`Precision::F16`] needs a GPU whose
    /// shaders support it ([`Compute::supports_f16`]); anywhere else it is refused.
    pub fn load_with(info: ModelInfo, compute: &Compute, precision: Precision) -> Result<Self> {
        Self::load_weights(info, compute, precision, Weights::Own)
    }

    /// As [`Classifier::load_with`], with the model's own weights or its randomised twin's: the
    /// same network under deterministic synthetic weights, drawn as the build draws them for a
    /// weight-free skeleton and put in place of the trained ones as they load.
    pub fn load_weights(
        info: ModelInfo,
        compute: &Compute,
        precision: Precision,
        weights: Weights,
    ) -> Result<Self> {
        if precision == Precision::F16 && !compute.supports_f16() {
            return Err(Error::InvalidArgument(format!(
                "precision f16 needs a GPU with 16-bit float shaders; {compute} computes in f32 only"
            )));
        }
        let index = SPECS
            .iter()
            .position(|s| std::ptr::eq(s, info.spec))
            .ok_or_else(|| Error::UnknownModel {
                name: info.id().to_string(),
                available: String::new(),
            })?;
        let mut net = Net::new(index, compute.device()).ok_or_else(|| Error::ModelLoad {
            model: info.id().to_string(),
            reason: "no generated network".into(),
        })?;
        let mut store = match (weights, info.spec.weights) {
            (Weights::Randomised, _) => skeleton(index, info.id())?,
            (Weights::Own, WeightSource::Embedded(bytes)) => BurnpackStore::from_static(bytes),
            (
                Weights::Own,
                WeightSource::File {
                    file_name,
                    built_at,
                },
            ) => BurnpackStore::from_file(find_weights(info.id(), file_name, built_at)?),
        };
        // Converted on the host as they load, so no f32 copy of a weight ever reaches the
        // device (AlexNet's 151 MB fc6 matrix is over lavapipe's 128 MiB binding limit, and a
        // cast kernel would have to bind it).
        let cast = FloatCastAdapter::to(precision.dtype().into());
        let twin = twin::SyntheticWeights { model: info.id() };
        store = match (weights, precision) {
            (Weights::Own, Precision::F32) => store,
            (Weights::Own, _) => store.with_from_adapter(cast),
            (Weights::Randomised, Precision::F32) => store.with_from_adapter(twin),
            (Weights::Randomised, _) => store.with_from_adapter(ChainAdapter::new(twin, cast)),
        };
        net.load(&mut store).map_err(|reason| Error::ModelLoad {
            model: info.id().to_string(),
            reason,
        })?;
        // Inputs reach the device in f32 and are cast there, so their buffer counts at 4 bytes.
        let pre = info.preprocess();
        let input = 3 * u64::from(pre.width) * u64::from(pre.height);
        let chunk = compute
            .chunk_for_values(info.max_elems_per_sample(), precision.bytes())
            .min(compute.chunk_for(input));
        Ok(Self {
            info,
            net,
            compute: compute.clone(),
            precision,
            weights,
            target: Target::Probability,
            incremental_gpu: false,
            chunk: AtomicUsize::new(chunk.max(1)),
            refused: AtomicUsize::new(0),
            progress: None,
        })
    }

    /// The model's description.
    pub fn info(&self) -> ModelInfo {
        self.info
    }

    /// What explanations explain ([`Target`]). With [`Target::Logit`] the outputs are the
    /// model's logits instead of probabilities; with a group they gain one column after the
    /// classes, the group's summed probability, which explainers explain as class
    /// [`Classifier::group_index`].
    ///
    /// # Errors
    /// Logits of a model that outputs probabilities, or a group with a class the model lacks.
    pub fn set_target(&mut self, target: Target) -> Result<()> {
        target.check(&self.info)?;
        self.target = target;
        Ok(())
    }

    /// What explanations explain.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The index explainers explain a group target as (the class count), if the target is a
    /// group.
    pub fn group_index(&self) -> Option<usize> {
        matches!(self.target, Target::Group { .. }).then_some(self.info.classes())
    }

    /// Columns of every output row: the classes, and a group's column.
    pub fn outputs(&self) -> usize {
        self.info.classes() + usize::from(self.group_index().is_some())
    }

    /// The label of output column `index`: a class's, or the group's name.
    pub fn label(&self, index: usize) -> Option<&'static str> {
        match &self.target {
            Target::Group { name, .. } if index == self.info.classes() => Some(name),
            _ => self.info.label(index),
        }
    }

    /// What is explained for output column `index`, e.g. `p(Egyptian cat)`, `logit(tabby)`,
    /// `p(group cat)`.
    pub fn quantity(&self, index: usize) -> String {
        self.target.quantity(self.label(index).unwrap_or("?"))
    }

    /// An error naming the model when `class` is not one of its output columns.
    pub fn check_class(&self, class: Option<usize>) -> Result<()> {
        match class {
            Some(c) if c >= self.outputs() => Err(Error::UnknownClass {
                model: self.info.id().into(),
                class: c.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The device it runs on.
    pub fn compute(&self) -> &Compute {
        &self.compute
    }

    /// The floating-point format it computes in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whose weights it computes with.
    pub fn weights(&self) -> Weights {
        self.weights
    }

    /// Samples per forward pass, derived from the device's limits and the model's buffer sizes,
    /// and halved for good each time the device refuses a chunk.
    pub fn chunk_size(&self) -> usize {
        self.chunk.load(Ordering::Relaxed)
    }

    /// Overrides the chunk size (at least 1). Results do not depend on it.
    pub fn set_chunk_size(&mut self, chunk: usize) {
        self.chunk.store(chunk.max(1), Ordering::Relaxed);
    }

    /// Calls `report(0, total)` when a batch of `total` rows starts and `report(done, total)`
    /// after each of its chunks: `done` rows are classified (`done == total` ends the batch).
    /// For progress displays during long explanations (LIME's 1000 variants take seconds on a
    /// CPU), and for telling a user why a first chunk is slow (a GPU's first run of a model
    /// tunes and compiles its kernels).
    pub fn set_progress(&mut self, report: impl Fn(usize, usize) + Send + Sync + 'static) {
        self.progress = Some(Progress(Box::new(report)));
    }

    /// Reports progress, if a callback is set.
    pub(crate) fn report_progress(&self, done: usize, total: usize) {
        if let Some(Progress(report)) = &self.progress {
            report(done, total);
        }
    }

    /// How many chunks the device has refused (each one retried in halves).
    pub fn refused_chunks(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// Records a refused chunk and keeps the halved size for the following batches.
    pub(crate) fn refused_chunk(&self, halved: usize) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.chunk.store(halved.max(1), Ordering::Relaxed);
    }

    /// Whether [`Classifier::classify_rects`] runs: in f32, on the CPU, and on a GPU where
    /// [`Classifier::set_incremental_on_gpu`] allowed it.
    pub fn incremental(&self) -> bool {
        self.precision == Precision::F32 && (!self.compute.is_gpu() || self.incremental_gpu)
    }

    /// Lets occlusion methods run incremental inference on a GPU as well (off by default). On
    /// the CPU the crops are pasted with memory copies; on a GPU each layer's windows are one
    /// `select` through burn, which gives the same probabilities (`tests/it/gpu.rs`, on
    /// lavapipe) but has not been timed against full inference on a hardware GPU yet, where a
    /// batch of full variants is already cheap. The tool turns it on with
    /// `GLASSBOX_INCREMENTAL_GPU=1`.
    pub fn set_incremental_on_gpu(&mut self, on: bool) {
        self.incremental_gpu = on;
    }

    /// The raw forward pass of one chunk: `[n, 3, H, W]` → `[n, classes]` as the model outputs,
    /// in f32 whatever the precision (inputs are cast to it on the device).
    pub(crate) fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        match self.precision {
            Precision::F32 => self.net.forward(input),
            other => self
                .net
                .forward(input.cast(other.dtype()))
                .cast(FloatDType::F32),
        }
    }
}

/// The parameters of network `index` as the network builds them (burn's initialisers), as a
/// store to load from. The randomised twin's values are drawn from each parameter's name and
/// shape alone, so it loads from these rather than from the weight file: the twin needs no file
/// (a machine without the model's weights can still run its architecture, e.g. for timing).
/// Built on the CPU, where no buffer limit applies.
fn skeleton(index: usize, model: &str) -> Result<BurnpackStore> {
    let failed = |reason: String| Error::ModelLoad {
        model: model.to_string(),
        reason,
    };
    let net = Net::new(index, &burn::tensor::Device::flex())
        .ok_or_else(|| failed("no generated network".into()))?;
    let mut written = BurnpackStore::from_bytes(None);
    net.save(&mut written).map_err(failed)?;
    let bytes = written.get_bytes().map_err(|e| failed(e.to_string()))?;
    Ok(BurnpackStore::from_bytes(Some(bytes)))
}

fn find_weights(model: &str, file_name: &str, built_at: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("GLASSBOX_WEIGHTS") {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
    {
        dirs.push(dir);
    }
    if let Some(dir) = PathBuf::from(built_at).parent() {
        dirs.push(dir.to_path_buf());
    }
    dirs.iter()
        .map(|d| d.join(file_name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::WeightsNotFound {
            model: model.to_string(),
            file_name: file_name.to_string(),
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
