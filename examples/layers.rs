//! Where a forward pass spends its time, per kind of layer and per layer.
//!
//! ```sh
//! cargo run --release --features layer-profile --example layers -- efficientnet-lite0 16 5
//! GLASSBOX_LAYERS_DEVICE=gpu GLASSBOX_LAYERS_PRECISION=f16 \
//!     cargo run --release --features layer-profile --example layers -- googlenet-tv 256 3
//! ```
//!
//! Arguments: model id (default: the default model), batch size (16), timed passes (5, after one
//! untimed warm-up). Environment: `GLASSBOX_LAYERS_DEVICE` `cpu` (default), `gpu` or `auto`,
//! `GLASSBOX_LAYERS_PRECISION` `f32` (default) or `f16`, `GLASSBOX_LAYERS_TOP` (statements
//! listed, 15), `GLASSBOX_LAYERS_CHECK` (set: after the profile, one more pass that checks
//! every layer glassbox's GPU kernels run against burn's f32 kernel on the same values, and
//! prints the worst; `glassbox::model::gpu::set_layer_checks`), and the tool's own
//! `GLASSBOX_GPU_CONV` and `GLASSBOX_BURN_KERNELS` (`glassbox::model::kernels_from_env`).
//!
//! On the CPU backend each operation finishes before the next statement. On a GPU the example
//! first times free-running passes (the real throughput; the warm-up pays for autotuning), then
//! profiles passes that wait for the device after every statement (see
//! `glassbox::model::layers`), which cost more than free-running ones because burn cannot fuse
//! across statements: read the table for where the time goes, the first line for how much.

use std::collections::BTreeMap;
use std::time::Instant;

use glassbox::model::Precision;
use glassbox::model::layers::{self, LayerTime};
use glassbox::view::to_input;
use glassbox::{Classifier, Compute, DeviceRequest, ModelInfo};
use image::RgbImage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let info = match args.first() {
        Some(id) => ModelInfo::find(id)?,
        None => ModelInfo::default_model(),
    };
    let batch: usize = args.get(1).map_or(Ok(16), |b| b.parse())?;
    let runs: usize = args.get(2).map_or(Ok(5), |r| r.parse())?;
    let device: DeviceRequest =
        std::env::var("GLASSBOX_LAYERS_DEVICE").map_or(Ok(DeviceRequest::Cpu), |d| d.parse())?;
    let precision: Precision =
        std::env::var("GLASSBOX_LAYERS_PRECISION").map_or(Ok(Precision::F32), |p| p.parse())?;
    glassbox::device::tune_allocator();
    glassbox::model::kernels_from_env()?;
    let compute = Compute::select(device)?.0;
    let gpu = compute.is_gpu();
    let mut classifier = Classifier::load_with(info, &compute, precision)?;
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
    let t = Instant::now();
    classifier.classify(&inputs)?;
    let warm_up = t.elapsed().as_secs_f64();
    let per_pass = |s: f64| s / runs as f64 * 1e3;
    let precision_note = match precision {
        Precision::F32 => String::new(),
        other => format!(", {other}"),
    };
    if gpu {
        // `classify` reads the probabilities back, so each pass has finished when it returns.
        let t = Instant::now();
        for _ in 0..runs {
            classifier.classify(&inputs)?;
        }
        let free = t.elapsed().as_secs_f64();
        println!(
            "{} on {}{precision_note}, batch {batch}: warm-up pass {:.2} s; {runs} free-running passes: {:.1} ms per pass, {:.0} images/s",
            info.id(),
            classifier.compute(),
            warm_up,
            per_pass(free),
            (batch * runs) as f64 / free
        );
    }

    let mut all: Vec<LayerTime> = Vec::new();
    let mut wall = 0.0;
    // On a GPU, one more untimed pass: synced statements fuse differently, so their kernels are
    // compiled (and tuned) anew the first time.
    for run in 0..runs + usize::from(gpu) {
        if gpu {
            let compute = compute.clone();
            layers::start_synced(move || {
                let _ = compute.sync();
            });
        } else {
            layers::start();
        }
        let t = Instant::now();
        classifier.classify(&inputs)?;
        let (seconds, marks) = (t.elapsed().as_secs_f64(), layers::take());
        if gpu && run == 0 {
            continue;
        }
        wall += seconds;
        all.extend(marks);
    }
    let marked: f64 = all.iter().map(|l| l.seconds).sum();
    println!(
        "{} on {}{precision_note}, batch {batch}, {runs} {}passes: {:.1} ms per pass, {:.1} ms of it in the {} statements of forward ({:.0} %)",
        info.id(),
        classifier.compute(),
        if gpu { "synced " } else { "" },
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

    if std::env::var_os("GLASSBOX_LAYERS_CHECK").is_some() {
        use glassbox::model::gpu;
        gpu::take_layer_checks();
        gpu::set_layer_checks(true);
        let checked = classifier.classify(&inputs);
        gpu::set_layer_checks(false);
        checked?;
        let checks = gpu::take_layer_checks();
        match checks.iter().max_by(|a, b| a.worst.total_cmp(&b.worst)) {
            Some(worst) => println!(
                "\nchecked {} layers run by glassbox's kernels against burn's f32 kernel on the same values: worst {:.1e} of the layer's scale ({} on {:?})",
                checks.len(),
                worst.worst,
                worst.layer,
                worst.input
            ),
            None => println!("\nno layer ran on glassbox's kernels: nothing to check"),
        }
    }
    Ok(())
}
