//! Helpers shared by the benches.

#![allow(dead_code)]

use std::path::PathBuf;

use glassbox::device::Backend;
use glassbox::model::Precision;
use glassbox::view::{Photo, View, load_photo};
use glassbox::{Classifier, Compute, DeviceRequest, ModelInfo};

/// A comma-separated list from environment variable `var`, or `default`.
pub fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A photo from `tests/data`, or from `$GLASSBOX_BENCH_DATA` where the bench binary was copied
/// to another machine without its source tree.
pub fn photo(name: &str) -> Photo {
    let dir = std::env::var_os("GLASSBOX_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")));
    let path = dir.join(name);
    load_photo(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The hardware wgpu adapter, if one exists. Software adapters (lavapipe, ~20x slower than the
/// CPU backend) only with `GLASSBOX_BENCH_SOFTWARE_GPU=1`.
pub fn gpu() -> Option<Compute> {
    let (gpu, _) = Compute::select(DeviceRequest::Gpu).ok()?;
    let software = matches!(gpu.backend(), Backend::Gpu { software: true, .. });
    (!software || std::env::var_os("GLASSBOX_BENCH_SOFTWARE_GPU").is_some()).then_some(gpu)
}

/// `("cpu", cpu)` and, where a hardware adapter exists, `("gpu", gpu)` and, where its shaders
/// support f16, `("gpu-f16", gpu)` (models loaded in f16, see [`load`]);
/// `GLASSBOX_BENCH_DEVICES` (e.g. `gpu,gpu-f16`) narrows them.
pub fn devices() -> Vec<(String, Compute)> {
    let wanted = list("GLASSBOX_BENCH_DEVICES", "cpu,gpu,gpu-f16");
    let wants = |name: &str| wanted.iter().any(|d| d == name);
    let mut out = Vec::new();
    if wants("cpu") {
        out.push(("cpu".to_string(), Compute::cpu()));
    }
    if let Some(gpu) = gpu() {
        if wants("gpu") {
            out.push(("gpu".to_string(), gpu.clone()));
        }
        if wants("gpu-f16") && gpu.supports_f16() {
            out.push(("gpu-f16".to_string(), gpu));
        }
    }
    out
}

/// Model `model` loaded on `compute` (in f16 where `device_name` ends in `-f16`), or `None`:
/// silently for a model this build lacks, with a line saying why when the device cannot load it.
pub fn load(model: &str, device_name: &str, compute: &Compute) -> Option<(ModelInfo, Classifier)> {
    let info = ModelInfo::find(model).ok()?;
    let precision = if device_name.ends_with("-f16") {
        Precision::F16
    } else {
        Precision::F32
    };
    match Classifier::load_with(info, compute, precision) {
        Ok(classifier) => Some((info, classifier)),
        Err(e) => {
            eprintln!("skipping {model} on {device_name}: {e}");
            None
        }
    }
}

/// Runs `bench(device_name, model, classifier, view)` for every model of
/// `GLASSBOX_BENCH_MODELS` (default: Lite0 and GoogLeNet) that loads on every bench device, with
/// `photo` in that model's input view.
pub fn each_model(photo: &Photo, mut bench: impl FnMut(&str, &str, &Classifier, &View)) {
    for (device_name, compute) in devices() {
        for model in list("GLASSBOX_BENCH_MODELS", "efficientnet-lite0,googlenet") {
            let Some((info, classifier)) = load(&model, &device_name, &compute) else {
                continue;
            };
            let view = View::new(&photo.rgb, info.preprocess());
            bench(&device_name, &model, &classifier, &view);
        }
    }
}
