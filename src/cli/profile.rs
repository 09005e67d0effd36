//! `glassbox profile` (built with `--features layer-profile`): where a forward pass spends its
//! time, per kind of layer and per statement of the generated network.
//!
//! ```sh
//! cargo build --release --features layer-profile
//! glassbox profile --model efficientnet-lite0 --device cpu --batch 16 --runs 5
//! GLASSBOX_GPU_CONV=tiled glassbox profile --model googlenet-tv --device gpu --batch 256 \
//!     --runs 3 --precision f16 --check
//! ```
//!
//! The inputs are synthetic pictures at the model's view size (the timing does not depend on
//! what they show). On the CPU backend each operation finishes before the next statement. On a
//! GPU the command first times free-running passes (the real throughput; the untimed warm-up
//! pays for compiling and autotuning), then profiles passes that wait for the device after
//! every statement (see `glassbox::model::layers`), which cost more than free-running ones
//! because burn cannot fuse across statements: read the table for where the time goes, the
//! first line for how much. `--check` adds one pass that checks every layer glassbox's GPU
//! kernels run against burn's f32 kernel on the same values, and prints the worst.
//!
//! The instrumented build charges one lock per statement to a pass that is not being profiled,
//! so the same binary also serves every other command (one binary for a GPU check's machine).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use glassbox::model::layers::{self, LayerTime};
use glassbox::model::{Precision, gpu};
use glassbox::view::to_input;
use image::RgbImage;

use super::args::DeviceArg;
use super::{pick_model, select_device};

/// What `glassbox profile` was asked for.
pub struct ProfileArgs<'a> {
    pub model: Option<&'a str>,
    pub runs: usize,
    pub top: usize,
    pub check: bool,
    pub device: &'a DeviceArg,
}

pub fn profile(args: &ProfileArgs<'_>) -> glassbox::Result<ExitCode> {
    let ProfileArgs {
        model,
        runs,
        top,
        check,
        device,
    } = *args;
    if runs == 0 {
        return Err(glassbox::Error::InvalidArgument(
            "--runs must be at least 1".into(),
        ));
    }
    let info = pick_model(model)?;
    let compute = select_device(device.device.into())?;
    let gpu = compute.is_gpu();
    let batch = device.batch.unwrap_or(16);
    let mut classifier = device.load(info, &compute, false)?;
    classifier.set_chunk_size(batch);
    let precision = classifier.precision();

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
        let classified = classifier.classify(&inputs);
        let (seconds, marks) = (t.elapsed().as_secs_f64(), layers::take());
        classified?;
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
        all.len() / runs,
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
            n / runs
        );
    }

    let mut statements: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for l in &all {
        *statements.entry((l.name, l.kind.as_str())).or_default() += l.seconds;
    }
    let mut statements: Vec<_> = statements.into_iter().collect();
    statements.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "\n{:<28} {:<16} {:>10} {:>7}",
        "slowest statements", "kind", "ms/pass", "share"
    );
    for ((name, kind), s) in statements.iter().take(top) {
        println!(
            "{name:<28} {kind:<16} {:>10.2} {:>6.1}%",
            per_pass(*s),
            100.0 * s / marked
        );
    }

    if check {
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
    Ok(ExitCode::SUCCESS)
}
