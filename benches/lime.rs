//! LIME end to end (1000 samples, 224², quickshift) per model, with its stage split printed once.
//! Compare with `python3 benches/lime_python.py --model MODEL` (lime 0.2.0.1 + onnxruntime on
//! the same ONNX graph) in the same session. `GLASSBOX_BENCH_MODELS` narrows the models.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use glassbox::explain::lime::{LimeOptions, lime};
use glassbox::view::{View, load_photo};
use glassbox::{Classifier, Compute, ModelInfo};

fn bench(c: &mut Criterion) {
    glassbox::device::tune_allocator();
    let compute = Compute::cpu();
    let photo = load_photo(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/chelsea.png").as_ref())
        .expect("chelsea.png");
    let models = std::env::var("GLASSBOX_BENCH_MODELS")
        .unwrap_or_else(|_| "efficientnet-lite0,googlenet".into());
    for model in models.split(',') {
        let Ok(info) = ModelInfo::find(model.trim()) else {
            continue;
        };
        let classifier = Classifier::load(info, &compute).expect("load");
        let view = View::new(&photo.rgb, info.preprocess());
        let options = LimeOptions::default();
        let e = lime(&classifier, &view, &options).expect("lime");
        let t = e.timings;
        eprintln!(
            "{model}: {} segments, segmentation {:.3} s, perturb+classify {:.2} s, regression {:.3} s",
            e.segmentation.count(),
            t.segmentation,
            t.perturb_classify,
            t.regression
        );
        let mut group = c.benchmark_group(format!("lime/cpu/{model}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(30));
        group.bench_function("1000-samples", |b| {
            b.iter(|| lime(&classifier, &view, &options).expect("lime"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
