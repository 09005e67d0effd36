//! Occlusion explainers end to end, next to a plain batched forward of the same number of
//! images, per model (issue: everything that is not the forward pass must cost < 10 %).
//!
//! Each configuration also prints its stage split once (preprocess, perturb+classify, rule) from
//! the explanation's own timings. `cargo bench --bench explain`; narrow with
//! `GLASSBOX_BENCH_MODELS=efficientnet-lite0` and `GLASSBOX_BENCH_METHODS=arbitrary,elbow`.

use std::time::Duration;

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use glassbox::explain::{Method, OcclusionOptions, occlusion};
use glassbox::perturb::{Fill, KeepMatrix, Perturber};
use glassbox::segment::Segmentation;
use glassbox::view::to_input;
use support::{list, photo};

fn method(name: &str) -> Option<Method> {
    Some(match name {
        "arbitrary" => Method::Arbitrary { fraction: 0.7 },
        "statistical" => Method::Statistical { k: 1.0 },
        "double-division" => Method::DoubleDivision { k: 1.0 },
        "elbow" => Method::Elbow { k: 1.0 },
        _ => return None,
    })
}

fn explain(c: &mut Criterion) {
    glassbox::device::tune_allocator();
    support::each_model(
        &photo("chelsea.png"),
        |device_name, model, classifier, view| {
            let info = classifier.info();
            let mut group = c.benchmark_group(format!("explain/{device_name}/{model}"));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(20));
            let options = OcclusionOptions::default();

            // The baseline: one batched forward of 101 copies of the view (a 10x10 grid + base).
            let one = to_input(&view.rgb, info.preprocess());
            let batch: Vec<f32> = std::iter::repeat_n(one.as_slice(), 101)
                .flatten()
                .copied()
                .collect();
            group.throughput(Throughput::Elements(101));
            // Building the same 101 variants without classifying them (read back to force them).
            let segmentation =
                Segmentation::grid(view.rgb.width(), view.rgb.height(), 10).expect("grid");
            let mut keep = KeepMatrix::new(segmentation.count());
            keep.push_all();
            for i in 0..segmentation.count() {
                keep.push_hiding(&[i]);
            }
            group.bench_function("build-variants-101", |b| {
                b.iter(|| {
                    let perturber =
                        Perturber::new(classifier, &view.rgb, &segmentation, Fill::Black)
                            .expect("perturber");
                    let mut start = 0;
                    while start < keep.rows() {
                        let end = (start + classifier.chunk_size()).min(keep.rows());
                        let _ = perturber.variants(&keep, start..end).into_data();
                        start = end;
                    }
                })
            });
            group.bench_function("forward-101", |b| {
                b.iter(|| classifier.classify(&batch).expect("classify"))
            });

            for name in list(
                "GLASSBOX_BENCH_METHODS",
                "arbitrary,statistical,double-division,elbow",
            ) {
                let Some(m) = method(&name) else { continue };
                // The first run compiles and autotunes the device's kernels: report the second.
                let _ = occlusion(classifier, view, m, &options).expect("explain");
                let e = occlusion(classifier, view, m, &options).expect("explain");
                let t = e.timings;
                let total = t.preprocess + t.perturb_classify + t.rule;
                eprintln!(
                    "{device_name}/{model}/{name}: {} variants, preprocess {:.1} ms, perturb+classify {:.1} ms, rule {:.2} ms: {:.2} % outside perturb+classify",
                    e.variants,
                    t.preprocess * 1e3,
                    t.perturb_classify * 1e3,
                    t.rule * 1e3,
                    100.0 * (t.preprocess + t.rule) / total
                );
                group.throughput(Throughput::Elements(e.variants as u64));
                group.bench_function(name.as_str(), |b| {
                    b.iter(|| occlusion(classifier, view, m, &options).expect("explain"))
                });
            }
            group.finish();
        },
    );
}

criterion_group!(benches, explain);
criterion_main!(benches);
