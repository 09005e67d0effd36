//! The `glassbox` command line: flags validated into options ([`args`]), one module per
//! command, and what the terminal shows of long work ([`progress`]). The commands choose and
//! print; the library computes and writes every file.

pub mod args;
pub mod classify;
pub mod compare;
pub mod explain;
pub mod models;
#[cfg(feature = "layer-profile")]
pub mod profile;
pub mod progress;
pub mod sanity;
pub mod study;

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use glassbox::model::{Precision, Weights};
use glassbox::view::Photo;
use glassbox::{Classifier, Compute, DeviceRequest, ModelInfo};

use args::{DeviceArg, ParamArgs};

/// The weights a command loads `info` with: its randomised twin's where `GLASSBOX_TWIN` lists
/// its id (comma-separated) or says `all`, with a warning, else its own. For timing an
/// architecture where its weight file cannot go (README, "Weights"; benches/device_bundle.sh).
pub fn weights_for(info: ModelInfo) -> Weights {
    let twin = std::env::var("GLASSBOX_TWIN")
        .is_ok_and(|ids| ids == "all" || ids.split(',').any(|id| id.trim() == info.id()));
    if !twin {
        return Weights::Own;
    }
    eprintln!(
        "glassbox: {} runs as its randomised twin (GLASSBOX_TWIN): synthetic weights drawn at load time, no weight file read; its explanations explain nothing",
        info.id()
    );
    Weights::Randomised
}

pub fn pick_model(model: Option<&str>) -> glassbox::Result<ModelInfo> {
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

pub fn select_device(request: DeviceRequest) -> glassbox::Result<Compute> {
    let (compute, notice) = Compute::select(request)?;
    if let Some(notice) = notice {
        eprintln!("glassbox: {notice}");
    }
    Ok(compute)
}

/// Loads each model once (warning once about synthetic weights); `counter` as for
/// [`DeviceArg::load`].
pub fn load_models(
    models: impl IntoIterator<Item = ModelInfo>,
    compute: &Compute,
    device: &DeviceArg,
    params: &ParamArgs,
    counter: bool,
) -> glassbox::Result<HashMap<&'static str, Classifier>> {
    let mut loaded = HashMap::new();
    for info in models {
        if !loaded.contains_key(info.id()) {
            let info = pick_model(Some(info.id()))?;
            let mut classifier = device.load(info, compute, counter)?;
            classifier.set_target(params.target_for(&info)?)?;
            loaded.insert(info.id(), classifier);
        }
    }
    Ok(loaded)
}

/// `, f16` after the device in a banner when the model computes in f16; nothing in f32.
pub fn precision_note(precision: Precision) -> String {
    match precision {
        Precision::F32 => String::new(),
        other => format!(", {other}"),
    }
}

/// Tells the user what decoding `path` noted (first GIF frame, EXIF rotation).
pub fn print_notes(path: &Path, photo: &Photo) {
    for note in &photo.notes {
        eprintln!("glassbox: {}: {note}", path.display());
    }
}

/// Tells the user about glassbox GPU kernels that failed on this adapter (burn's kernels ran
/// those layers instead, so nothing was lost), once each.
pub fn print_kernel_notices() {
    #[cfg(feature = "gpu")]
    for notice in glassbox::model::gpu::take_notices() {
        eprintln!("glassbox: {notice}");
    }
}

/// Runs `one` on every image in turn, printing `[n/total] summary (seconds)` or the image's
/// one-line error, and goes on after a failed image: the exit code is 2 if any failed.
pub fn each_image(
    images: &[std::path::PathBuf],
    mut one: impl FnMut(&Path) -> glassbox::Result<String>,
) -> ExitCode {
    let mut failed = false;
    let total = images.len();
    for (n, path) in images.iter().enumerate() {
        let started = std::time::Instant::now();
        let result = one(path);
        print_kernel_notices();
        match result {
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
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
