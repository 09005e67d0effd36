//! Where the CPU forward pass spends its time, per kind of layer and per layer.
//!
//! ```sh
//! cargo run --release --features layer-profile --example layers -- efficientnet-lite0 16 5
//! ```
//!
//! Arguments: model id (default: the default model), batch size (16), timed passes (5, after one
//! untimed warm-up). Runs on the CPU backend, where each operation finishes before the next
//! statement (see `glassbox::model::layers`).

use std::collections::BTreeMap;
use std::time::Instant;

use glassbox::model::layers::{self, LayerTime};
use glassbox::view::to_input;
use glassbox::{Classifier, Compute, ModelInfo};
use image::RgbImage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let info = match args.first() {
        Some(id) => ModelInfo::find(id)?,
        None => ModelInfo::default_model(),
    };
    let batch: usize = args.get(1).map_or(Ok(16), |b| b.parse())?;
    let runs: usize = args.get(2).map_or(Ok(5), |r| r.parse())?;
    glassbox::device::tune_allocator();
    let mut classifier = Classifier::load(info, &Compute::cpu())?;
    classifier.set_chunk_size(batch);

    let pre = info.preprocess();
    let inputs: Vec<f32> = (0..batch)
        .flat_map(|k| {
            let img = RgbImage::from_fn(pre.width, pre.height, |x, y| {
                image::Rgb([(x * 3 + k as u32) as u8, (y * 5) as u8, (x ^ y) as u8])
            });
            to_input(&img, pre)
        })
        .collect();
    classifier.classify(&inputs)?;

    let mut all: Vec<LayerTime> = Vec::new();
    let mut wall = 0.0;
    for _ in 0..runs {
        layers::start();
        let t = Instant::now();
        classifier.classify(&inputs)?;
        wall += t.elapsed().as_secs_f64();
        all.extend(layers::take());
    }
    let per_pass = |s: f64| s / runs as f64 * 1e3;
    let marked: f64 = all.iter().map(|l| l.seconds).sum();
    println!(
        "{} on {}, batch {batch}, {runs} passes: {:.1} ms per pass, {:.1} ms of it in the {} statements of forward ({:.0} %)",
        info.id(),
        classifier.compute(),
        per_pass(wall),
        per_pass(marked),
        all.len() / runs.max(1),
        100.0 * marked / wall
    );

    let mut kinds: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for l in &all {
        let e = kinds.entry(l.kind.as_str()).or_default();
        e.0 += l.seconds;
        e.1 += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    println!(
        "\n{:<22} {:>10} {:>7} {:>6}",
        "kind", "ms/pass", "share", "count"
    );
    for (kind, (s, n)) in &kinds {
        println!(
            "{kind:<22} {:>10.2} {:>6.1}% {:>6}",
            per_pass(*s),
            100.0 * s / marked,
            n / runs.max(1)
        );
    }

    let mut layers: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for l in &all {
        *layers.entry((l.name, l.kind.as_str())).or_default() += l.seconds;
    }
    let mut layers: Vec<_> = layers.into_iter().collect();
    layers.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "\n{:<28} {:<16} {:>10} {:>7}",
        "slowest statements", "kind", "ms/pass", "share"
    );
    let top: usize = std::env::var("GLASSBOX_LAYERS_TOP").map_or(Ok(15), |v| v.parse())?;
    for ((name, kind), s) in layers.iter().take(top) {
        println!(
            "{name:<28} {kind:<16} {:>10.2} {:>6.1}%",
            per_pass(*s),
            100.0 * s / marked
        );
    }
    Ok(())
}
