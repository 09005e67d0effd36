//! LIME end to end (1000 samples, 224², quickshift) per device and model, with its stage split
//! printed once. Compare with `python3 benches/lime_python.py --model MODEL` (lime 0.2.0.1 +
//! onnxruntime on the same ONNX graph) in the same session. `GLASSBOX_BENCH_MODELS` narrows the
//! models, `GLASSBOX_BENCH_DEVICES=gpu` the devices (the GPU runs where a hardware adapter exists).

use std::time::Duration;

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use glassbox::explain::lime::{LimeOptions, lime};
use support::photo;

fn bench(c: &mut Criterion) {
    glassbox::device::tune_allocator();
    support::each_model(
        &photo("chelsea.png"),
        |device_name, model, classifier, view| {
            let options = LimeOptions::default();
            // The first run compiles and autotunes the device's kernels: report the second.
            let _ = lime(classifier, view, &options).expect("lime");
            let e = lime(classifier, view, &options).expect("lime");
            let t = e.timings;
            eprintln!(
                "{device_name}/{model}: {} segments, segmentation {:.3} s, perturb+classify {:.3} s, regression {:.3} s",
                e.segmentation.count(),
                t.segmentation,
                t.perturb_classify,
                t.regression
            );
            let seconds = if classifier.compute().is_gpu() { 5 } else { 30 };
            let mut group = c.benchmark_group(format!("lime/{device_name}/{model}"));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(seconds));
            group.bench_function("1000-samples", |b| {
                b.iter(|| lime(classifier, view, &options).expect("lime"))
            });
            group.finish();
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
