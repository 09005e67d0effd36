//! KernelSHAP end to end (auto samples: 2·S + 2048 coalitions, quickshift, 224²) per device and
//! model, with its stage split and the share of time outside the forward passes printed once.
//! `GLASSBOX_BENCH_MODELS` narrows the models (default: Lite0), `GLASSBOX_BENCH_DEVICES=gpu`
//! the devices (the GPU runs where a hardware adapter exists).

use std::time::Duration;

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use glassbox::explain::kernelshap::{KernelShapOptions, kernel_shap};
use glassbox::view::View;
use support::photo;

fn bench(c: &mut Criterion) {
    glassbox::device::tune_allocator();
    let photo = photo("chelsea.png");
    for (device_name, compute) in support::devices() {
        for model in support::list("GLASSBOX_BENCH_MODELS", "efficientnet-lite0") {
            let Some((info, classifier)) = support::load(&model, &device_name, &compute) else {
                continue;
            };
            let (classifier, view) = (&classifier, &View::new(&photo.rgb, info.preprocess()));
            let options = KernelShapOptions::default();
            // The first run compiles and autotunes the device's kernels: report the second.
            let _ = kernel_shap(classifier, view, &options).expect("kernelshap");
            let e = kernel_shap(classifier, view, &options).expect("kernelshap");
            let t = e.timings;
            eprintln!(
                "{device_name}/{model}: {} segments, {} samples ({} variants): segmentation {:.3} s, sampling {:.4} s, perturb+classify {:.3} s, solve {:.4} s; outside the forward passes {:.2} % of {:.3} s; Σφ {:.6} vs f(x) − f(fill) {:.6}",
                e.segmentation.count(),
                e.samples,
                e.variants,
                t.segmentation,
                t.sampling,
                t.perturb_classify,
                t.solve,
                100.0 * t.outside_forward() / t.total(),
                t.total(),
                e.phi_sum(),
                e.probability as f64 - e.base_value as f64,
            );
            let seconds = if classifier.compute().is_gpu() { 5 } else { 60 };
            let mut group = c.benchmark_group(format!("kernelshap/{device_name}/{model}"));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(seconds));
            group.bench_function("auto-samples", |b| {
                b.iter(|| kernel_shap(classifier, view, &options).expect("kernelshap"))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
