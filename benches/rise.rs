//! RISE end to end on `chelsea.png` per device and model (default: Lite0 only; on the CPU
//! unless a hardware GPU exists), beside the forward passes alone: the same number of inputs
//! through the same classifier and chunking, already on the device, so that the difference is
//! everything RISE adds (drawing the grids, building masks and variants on the device, the
//! running saliency sum, the final expansion and the mask).
//!
//! The paper's 4000 masks take over a minute per run on a 2-core CPU, so criterion times
//! `GLASSBOX_BENCH_RISE_MASKS` masks (default 1000) ten times. First, RISE with
//! `GLASSBOX_BENCH_RISE_SPLIT_MASKS` masks (default the paper's 4000) and the same forward passes
//! alone are timed in turn `GLASSBOX_BENCH_RISE_ROUNDS` times (default 1), each RISE run's stage
//! split printed (`cargo bench --bench rise -- none` runs only these). `GLASSBOX_BENCH_MODELS` and `GLASSBOX_BENCH_DEVICES` narrow
//! the models and devices as in the other benches.

use std::time::{Duration, Instant};

mod support;

use burn::tensor::{Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use glassbox::explain::rise::{RiseOptions, rise};
use glassbox::view::{View, to_input};
use glassbox::{Classifier, Probabilities};
use support::photo;

/// `n` forward passes of the view itself, built on the device once per chunk as a repeat.
fn forward_only(classifier: &Classifier, view: &View, n: usize) -> Probabilities {
    let pre = classifier.info().preprocess();
    let (h, w) = (pre.height as usize, pre.width as usize);
    let one = Tensor::<4>::from_data(
        TensorData::new(to_input(&view.rgb, pre), [1, 3, h, w]),
        classifier.compute().device(),
    );
    classifier
        .classify_columns(n, Some(&[0]), |range| {
            one.clone().repeat_dim(0, range.len())
        })
        .expect("classify")
}

/// A count from environment variable `var`, or `default`.
fn env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench(c: &mut Criterion) {
    glassbox::device::tune_allocator();
    let masks = env("GLASSBOX_BENCH_RISE_MASKS", 1000);
    let models = support::list("GLASSBOX_BENCH_MODELS", "efficientnet-lite0").join(",");
    let photo = photo("chelsea.png");
    for (device_name, compute) in support::devices() {
        for model in models.split(',') {
            let Some((info, classifier)) = support::load(model, &device_name, &compute) else {
                continue;
            };
            let view = View::new(&photo.rgb, info.preprocess());
            let paper = RiseOptions {
                masks: env("GLASSBOX_BENCH_RISE_SPLIT_MASKS", 4000),
                ..RiseOptions::default()
            };
            // The first run compiles and autotunes a GPU's kernels: time the second there.
            if classifier.compute().is_gpu() {
                let _ = rise(&classifier, &view, &paper).expect("rise");
            }
            // RISE and the forward passes alone, alternated, so that a busy machine slows both.
            for _ in 0..env("GLASSBOX_BENCH_RISE_ROUNDS", 1) {
                let t = Instant::now();
                let e = rise(&classifier, &view, &paper).expect("rise");
                let total = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let _ = forward_only(&classifier, &view, paper.masks);
                let forward = t.elapsed().as_secs_f64();
                let s = e.timings;
                eprintln!(
                    "{device_name}/{model}, {} masks: RISE {total:.2} s (draw {:.3}, masks {:.3}, classify {:.2}, accumulate {:.3}, saliency {:.3}); the same forward passes alone {forward:.2} s: {:.1} % outside them",
                    paper.masks,
                    s.draw,
                    s.masks,
                    s.classify,
                    s.accumulate,
                    s.saliency,
                    100.0 * (total - forward) / total
                );
            }
            let options = RiseOptions { masks, ..paper };
            let mut group = c.benchmark_group(format!("rise/{device_name}/{model}"));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(10));
            group.bench_function(format!("{masks}-masks"), |b| {
                b.iter(|| rise(&classifier, &view, &options).expect("rise"))
            });
            group.bench_function(format!("{masks}-forward-passes-only"), |b| {
                b.iter(|| forward_only(&classifier, &view, masks))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
