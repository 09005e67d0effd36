//! Classification throughput per model, backend and batch size.
//!
//! Every timed iteration uploads the batch, runs the forward pass and reads the probabilities
//! back, which waits for the device: the numbers are end-to-end and device-synced.
//! Run with `cargo bench --bench classify`; `GLASSBOX_BENCH_MODELS=googlenet,alexnet` and
//! `GLASSBOX_BENCH_BATCHES=1,16` and `GLASSBOX_BENCH_DEVICES=gpu` narrow it (`gpu-f16`: the models
//! in f16, where the adapter's shaders support it). The GPU group runs
//! when a wgpu adapter exists (software adapters only with `GLASSBOX_BENCH_SOFTWARE_GPU=1`: lavapipe is ~20x slower).

use std::time::Duration;

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use glassbox::view::to_input;
use glassbox::{Compute, ModelInfo};
use image::RgbImage;
use support::list;

fn inputs(info: &ModelInfo, batch: usize) -> Vec<f32> {
    let pre = info.preprocess();
    (0..batch)
        .flat_map(|k| {
            let img = RgbImage::from_fn(pre.width, pre.height, |x, y| {
                image::Rgb([
                    (x * 3 + k as u32) as u8,
                    (y * 5) as u8,
                    ((x ^ y) + k as u32) as u8,
                ])
            });
            to_input(&img, pre)
        })
        .collect()
}

/// Devices to run on, in order. The CPU runs first with the C allocator as the process found it
/// (`cpu-untuned-malloc`, unless `GLASSBOX_BENCH_UNTUNED=0`), then after
/// `glassbox::device::tune_allocator()` with every layer through burn (`cpu-burn-kernels`, unless
/// `GLASSBOX_BENCH_BURN_KERNELS=0`), then as the binary runs (`cpu`): the same-process ratios
/// are the allocator tuning's and glassbox's CPU kernels' effects.
fn devices() -> Vec<(String, Compute)> {
    let mut out = Vec::new();
    if std::env::var("GLASSBOX_BENCH_UNTUNED").as_deref() != Ok("0") {
        out.push(("cpu-untuned-malloc".to_string(), Compute::cpu()));
    }
    if std::env::var("GLASSBOX_BENCH_BURN_KERNELS").as_deref() != Ok("0") {
        out.push(("cpu-burn-kernels".to_string(), Compute::cpu()));
    }
    out.push(("cpu".to_string(), Compute::cpu()));
    out.extend(
        support::devices()
            .into_iter()
            .filter(|(name, _)| name.starts_with("gpu")),
    );
    out
}

fn classify(c: &mut Criterion) {
    let models = list("GLASSBOX_BENCH_MODELS", "efficientnet-lite0,googlenet");
    let batches: Vec<usize> = list("GLASSBOX_BENCH_BATCHES", "1,16,64,100")
        .iter()
        .filter_map(|b| b.parse().ok())
        .collect();
    for (device_name, compute) in devices() {
        if device_name != "cpu-untuned-malloc" {
            glassbox::device::tune_allocator();
        }
        // Every layer through burn for the baseline, glassbox's CPU kernels for the rest.
        glassbox::model::cpu::set_enabled(device_name != "cpu-burn-kernels");
        for model in &models {
            let Some((info, classifier)) = support::load(model, &device_name, &compute) else {
                continue;
            };
            let mut group = c.benchmark_group(format!("classify/{device_name}/{model}"));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(10));
            for &batch in &batches {
                let x = inputs(&info, batch);
                // Warm-up outside the timing (autotune, kernel compilation, allocator).
                let _ = classifier.classify(&x);
                group.throughput(Throughput::Elements(batch as u64));
                group.bench_with_input(BenchmarkId::from_parameter(batch), &x, |b, x| {
                    b.iter(|| classifier.classify(x).expect("classify"));
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, classify);
criterion_main!(benches);
