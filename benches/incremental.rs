//! Incremental occlusion inference against full inference, in the same run, on the CPU: the
//! single-cell scores of a 10×10 and a 20×20 grid, and sliding-window occlusion (32-px windows
//! every 16 px), per model. Each configuration prints once the share of full inference's
//! convolution work that incremental inference computed.
//!
//! `cargo bench --bench incremental`; narrow with `GLASSBOX_BENCH_MODELS=googlenet-tv` and
//! `GLASSBOX_BENCH_JOBS=10x10,sliding`; `GLASSBOX_BENCH_SIMD=avx2` caps glassbox's own kernels
//! at AVX2 (gemm still picks its own level).

use std::time::Duration;

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use glassbox::explain::cell_scores_given;
use glassbox::explain::sliding::{SlidingOptions, sliding};
use glassbox::model::simd::{self, Level};
use glassbox::perturb::Fill;
use glassbox::view::View;
use glassbox::{Compute, ModelInfo};
use support::{list, load, photo};

fn incremental(c: &mut Criterion) {
    glassbox::device::tune_allocator();
    if std::env::var("GLASSBOX_BENCH_SIMD").as_deref() == Ok("avx2") {
        simd::limit(Some(Level::Avx2));
    }
    eprintln!("glassbox kernels at {:?}", simd::level());
    let photo = photo("chelsea.png");
    let compute = Compute::cpu();
    for model in list(
        "GLASSBOX_BENCH_MODELS",
        "googlenet-tv,googlenet,efficientnet-lite0",
    ) {
        let Some((info, classifier)) = load(&model, "cpu", &compute) else {
            continue;
        };
        let info: ModelInfo = info;
        let view = View::new(&photo.rgb, info.preprocess());
        let mut group = c.benchmark_group(format!("incremental/cpu/{model}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(15));
        for job in list("GLASSBOX_BENCH_JOBS", "10x10,20x20,sliding") {
            for on in [false, true] {
                let path = if on { "incremental" } else { "full" };
                match job.as_str() {
                    "10x10" | "20x20" => {
                        let grid = if job == "10x10" { 10 } else { 20 };
                        let run = || {
                            cell_scores_given(&classifier, &view, grid, Fill::Black, on, None)
                                .expect("scores")
                        };
                        let scores = run();
                        if let Some(m) = scores.inference.macs {
                            eprintln!(
                                "{model}/{job}: incremental inference computes {:.1} % of full inference's convolution work ({:.2} of {:.2} GMAC per variant)",
                                100.0 * m.computed as f64 / m.full as f64,
                                m.computed as f64 / 1e9 / scores.probabilities.rows() as f64,
                                m.full as f64 / 1e9 / scores.probabilities.rows() as f64,
                            );
                        }
                        group.throughput(Throughput::Elements(scores.probabilities.rows() as u64));
                        group.bench_function(format!("{job}/{path}"), |b| b.iter(run));
                    }
                    "sliding" => {
                        let options = SlidingOptions {
                            incremental: on,
                            ..SlidingOptions::default()
                        };
                        let run = || sliding(&classifier, &view, &options).expect("sliding");
                        let e = run();
                        if let Some(m) = e.inference.macs {
                            eprintln!(
                                "{model}/sliding 32/16: incremental inference computes {:.1} % of full inference's convolution work",
                                100.0 * m.computed as f64 / m.full as f64
                            );
                        }
                        group.throughput(Throughput::Elements(e.windows.len() as u64 + 1));
                        group.bench_function(format!("sliding-32-16/{path}"), |b| b.iter(run));
                    }
                    other => eprintln!("unknown job {other}"),
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, incremental);
criterion_main!(benches);
