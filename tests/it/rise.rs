//! RISE: the reference code's masks for a seed, the device-built masks against a plain CPU
//! upsample and crop, the running saliency sum, the planted window, reproducibility, bad input,
//! and `explain`, `compare` and `study` end to end.

use glassbox::explain::rise::{RiseOptions, SaliencySum, draw_masks, rise};
use glassbox::explain::{self, Explained, Explainer, ViewCache};
use glassbox::perturb::SoftMasks;
use glassbox::view::View;
use glassbox::{Classifier, Compute, ModelInfo};
use serde_json::Value;

use crate::common::{data, dim_window_photo, error_lines, glassbox, path_str, scratch, text};

/// Downloads device masks `[n, H, W]` to the host.
fn download(masks: &SoftMasks, range: std::ops::Range<usize>) -> Vec<f32> {
    masks
        .on_device(Compute::cpu().device(), range)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 masks")
}

/// A plain CPU version of the paper's mask, independent of the library's taps: the whole grid
/// resized to `(cells + 1) · cell` per axis as scikit-image's `resize(order=1, mode='reflect')`
/// does (pixel centres aligned, mirrored indices), then cropped at the shift.
fn reference_mask(masks: &SoftMasks, i: usize) -> Vec<f64> {
    let s = masks.cells();
    let (w, h) = masks.size();
    let cell = masks.cell();
    let up = [(s + 1) * cell[0], (s + 1) * cell[1]];
    let grid = masks.grid(i);
    let mirror = |k: i64| -> usize {
        if s == 1 {
            return 0;
        }
        let mut k = k;
        while k < 0 || k >= s as i64 {
            k = if k < 0 { -k } else { 2 * (s as i64 - 1) - k };
        }
        k as usize
    };
    let at = |r: i64, c: i64| grid[mirror(r) * s + mirror(c)] as f64;
    let full: Vec<f64> = (0..up[0] * up[1])
        .map(|k| {
            let (y, x) = (k / up[1], k % up[1]);
            let v = (y as f64 + 0.5) * s as f64 / up[0] as f64 - 0.5;
            let u = (x as f64 + 0.5) * s as f64 / up[1] as f64 - 0.5;
            let (r0, c0) = (v.floor() as i64, u.floor() as i64);
            let (fy, fx) = (v - r0 as f64, u - c0 as f64);
            (1.0 - fy) * ((1.0 - fx) * at(r0, c0) + fx * at(r0, c0 + 1))
                + fy * ((1.0 - fx) * at(r0 + 1, c0) + fx * at(r0 + 1, c0 + 1))
        })
        .collect();
    let [dy, dx] = masks.shift(i);
    (0..h * w)
        .map(|k| full[(k / w + dy) * up[1] + k % w + dx])
        .collect()
}

fn fixture() -> Value {
    serde_json::from_slice(&std::fs::read(data("rise_fixture.json")).expect("fixture"))
        .expect("JSON")
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as usize)
        .collect()
}

/// `tests/data/make_rise_fixture.py` runs the paper's `generate_masks` with numpy and
/// scikit-image: the same seed gives the same grids and shifts, and the device builds the same
/// masks to float rounding.
#[test]
fn masks_are_the_reference_codes_for_the_same_seed() {
    let fx = fixture();
    for case in fx["cases"].as_array().expect("cases") {
        let n = case["masks"].as_u64().expect("n") as usize;
        let (w, h) = (
            case["width"].as_u64().expect("w") as u32,
            case["height"].as_u64().expect("h") as u32,
        );
        let options = RiseOptions {
            masks: n,
            cells: case["cells"].as_u64().expect("cells") as u32,
            keep_prob: case["keep_prob"].as_f64().expect("p"),
            seed: case["seed"].as_u64().expect("seed") as u32,
            ..RiseOptions::default()
        };
        let masks = draw_masks(&options, w, h).expect("masks");
        let device = download(&masks, 0..n);
        let (rows, cols) = (usizes(&case["rows"]), usizes(&case["cols"]));
        let mut worst = 0.0f64;
        for i in 0..n {
            let grid: Vec<f32> = usizes(&case["grids"][i])
                .iter()
                .map(|v| *v as f32)
                .collect();
            assert_eq!(masks.grid(i), grid.as_slice(), "{options:?}: grid {i}");
            let shift = usizes(&case["shifts"][i]);
            assert_eq!(masks.shift(i).to_vec(), shift, "{options:?}: shift {i}");
            let want = case["values"][i].as_array().expect("values");
            let mask = &device[i * (w * h) as usize..(i + 1) * (w * h) as usize];
            let mut k = 0;
            for &y in &rows {
                for &x in &cols {
                    let want = want[k].as_f64().expect("value");
                    worst = worst.max((mask[y * w as usize + x] as f64 - want).abs());
                    k += 1;
                }
            }
        }
        assert!(worst < 1e-5, "{options:?}: off by {worst}");
    }
}

#[test]
fn device_masks_equal_a_plain_cpu_upsample_and_crop() {
    for (w, h, cells, n) in [
        (224, 224, 7, 12),
        (50, 37, 5, 9),
        (30, 30, 3, 6),
        (16, 9, 9, 4),
    ] {
        let options = RiseOptions {
            masks: n,
            cells,
            seed: 5,
            ..RiseOptions::default()
        };
        let masks = draw_masks(&options, w, h).expect("masks");
        // A chunk in the middle, as a classifier's chunking would ask for it.
        let range = 2..n - 1;
        let device = download(&masks, range.clone());
        let per = (w * h) as usize;
        let mut worst = 0.0f64;
        for (k, i) in range.enumerate() {
            let want = reference_mask(&masks, i);
            for (got, want) in device[k * per..(k + 1) * per].iter().zip(&want) {
                worst = worst.max((*got as f64 - want).abs());
            }
            assert!(want.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        assert!(worst < 1e-5, "{w}x{h}, {cells} cells: off by {worst}");
    }
}

/// The running sum over row-shift buckets equals `Σ pₙ · Mₙ` of the full masks.
#[test]
fn saliency_sum_equals_the_sum_of_full_masks() {
    let options = RiseOptions {
        masks: 40,
        seed: 9,
        ..RiseOptions::default()
    };
    let masks = draw_masks(&options, 224, 224).expect("masks");
    let p: Vec<f64> = (0..masks.len())
        .map(|i| ((i * 37 % 101) as f64) / 100.0)
        .collect();
    let mut sum = SaliencySum::new(&masks);
    let mut want = vec![0.0f64; 224 * 224];
    for (i, p) in p.iter().enumerate() {
        sum.add(&masks, i, *p);
        for (w, m) in want.iter_mut().zip(reference_mask(&masks, i)) {
            *w += p * m;
        }
    }
    assert_eq!(sum.added(), masks.len());
    let got = sum.total();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-9, "off by {worst}");
}

fn planted() -> (Classifier, View) {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let view = View::new(&dim_window_photo(), info.preprocess());
    (classifier, view)
}

fn in_window(i: usize) -> bool {
    let (x, y) = (i % 224, i / 224);
    (69..138).contains(&x) && (69..138).contains(&y)
}

/// planted-centre's class depends on the mean of view pixels 69..138 × 69..138 only: RISE's
/// saliency is higher there than anywhere else, and the 30 % mask covers the window.
#[test]
fn rise_finds_the_planted_window() {
    let (classifier, view) = planted();
    let options = RiseOptions {
        masks: 1000,
        seed: 1,
        ..RiseOptions::default()
    };
    let explainer = Explainer::Rise(options);
    let mut cache = ViewCache::default();
    let Explained::Rise(e) =
        explain::run(&classifier, &view, &explainer, &mut cache).expect("rise")
    else {
        panic!("not a RISE explanation");
    };
    assert_eq!(e.class, 0, "the planted class wins");
    assert!(cache.base().is_some(), "the view's prediction is cached");
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for (i, s) in e.saliency.iter().enumerate() {
        if in_window(i) {
            inside.push(*s as f64)
        } else {
            outside.push(*s as f64)
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mi, mo) = (mean(&inside), mean(&outside));
    let min_inside = inside.iter().copied().fold(f64::INFINITY, f64::min);
    let max_outside = outside.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let covered = (0..224 * 224)
        .filter(|&i| in_window(i) && e.kept[i])
        .count() as f64
        / inside.len() as f64;
    let kept = e.kept.iter().filter(|k| **k).count() as f64;
    let precision = (0..224 * 224)
        .filter(|&i| in_window(i) && e.kept[i])
        .count() as f64
        / kept;
    eprintln!(
        "planted window: saliency inside {mi:.4} (min {min_inside:.4}), outside {mo:.4} (max \
         {max_outside:.4}); the mask keeps {:.1} % of the view, covers {:.1} % of the window, \
         {:.1} % of it is in the window",
        100.0 * e.kept.kept_fraction(),
        100.0 * covered,
        100.0 * precision
    );
    // Seed 1: inside 0.460, outside 0.406 (the window mean beats every pixel outside, 0.457).
    assert!(mi > mo + 0.03, "inside {mi}, outside {mo}");
    assert!(covered > 0.95, "the mask covers {covered} of the window");
    // The window is 9.5 % of the view and the mask 30 %: at best 31.6 % of the mask is window.
    assert!(precision > 0.3, "{precision} of the mask in the window");
    assert!((e.kept.kept_fraction() - 0.3).abs() < 1e-4);
}

#[test]
fn rise_is_reproducible_with_a_seed_whatever_the_chunk_size() {
    let (mut classifier, view) = planted();
    let options = RiseOptions {
        masks: 300,
        seed: 4,
        ..RiseOptions::default()
    };
    let a = rise(&classifier, &view, &options).expect("a");
    let b = rise(&classifier, &view, &options).expect("b");
    assert_eq!(a.saliency, b.saliency, "same seed, same saliency");
    assert_eq!(a.kept, b.kept);
    classifier.set_chunk_size(7);
    let c = rise(&classifier, &view, &options).expect("c");
    assert_eq!(a.saliency, c.saliency, "the chunk size changes nothing");
    let d = rise(&classifier, &view, &RiseOptions { seed: 5, ..options }).expect("d");
    assert_ne!(a.saliency, d.saliency, "another seed, other masks");
}

#[test]
fn rise_refuses_bad_options_in_the_library() {
    let (classifier, view) = planted();
    for bad in [
        RiseOptions {
            masks: 0,
            ..RiseOptions::default()
        },
        RiseOptions {
            cells: 0,
            ..RiseOptions::default()
        },
        RiseOptions {
            cells: 225,
            ..RiseOptions::default()
        },
        RiseOptions {
            keep_prob: 1.0,
            ..RiseOptions::default()
        },
        RiseOptions {
            keep_prob: f64::NAN,
            ..RiseOptions::default()
        },
        RiseOptions {
            class: Some(2),
            ..RiseOptions::default()
        },
    ] {
        assert!(rise(&classifier, &view, &bad).is_err(), "{bad:?}");
    }
}

#[test]
fn rise_refuses_bad_flags_with_one_line() {
    let out = scratch("rise_bad_flags");
    let image = data("coffee.png");
    for (flags, part) in [
        (vec!["--masks", "0"], "--masks"),
        (vec!["--cells", "0"], "--cells 0"),
        (vec!["--cells", "225"], "--cells 225"),
        (vec!["--keep-prob", "0"], "--keep-prob"),
        (vec!["--keep-prob", "1"], "--keep-prob"),
        (vec!["--keep-prob=-0.5"], "--keep-prob"),
        (vec!["--keep-prob", "NaN"], "--keep-prob"),
        (vec!["--keep-fraction", "2"], "--keep-fraction"),
    ] {
        let mut args = vec![
            "explain",
            "--device",
            "cpu",
            "--model",
            "planted-centre",
            "--method",
            "rise",
            "--out",
            path_str(&out),
        ];
        args.extend(&flags);
        args.push(path_str(&image));
        let run = glassbox(&args);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: {stderr}");
        assert_eq!(error_lines(&stderr).len(), 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(part), "{flags:?}: {stderr}");
    }
    let spec = glassbox(&[
        "compare",
        path_str(&image),
        "--a",
        "planted-centre:rise",
        "--b",
        "planted-centre:arbitrary",
        "--masks",
        "0",
        "--out",
        path_str(&out),
    ]);
    assert_eq!(spec.status.code(), Some(2), "{}", text(&spec.stderr));
}

fn json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("json")).expect("JSON")
}

#[test]
fn rise_explains_compares_and_studies_from_the_command_line() {
    let out = scratch("rise_cli");
    let photos = out.join("photos");
    std::fs::create_dir_all(&photos).expect("photos");
    let photo = photos.join("window.png");
    dim_window_photo().save(&photo).expect("photo");
    let explain = |dir: &str, extra: &[&str]| {
        let dir = out.join(dir);
        let mut args = vec![
            "explain",
            "--device",
            "cpu",
            "--model",
            "planted-centre",
            "--method",
            "rise",
            "--masks",
            "200",
            "--seed",
            "3",
            "--out",
            path_str(&dir),
        ];
        args.extend(extra);
        args.push(path_str(&photo));
        let run = glassbox(&args);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(0), "{stderr}");
        (dir, stderr)
    };
    let (dir, stderr) = explain("a", &[]);
    assert!(
        stderr.contains("planted region (0) p=0.7") && stderr.contains("kept 30% by RISE"),
        "{stderr}"
    );
    for file in [
        "masked.png",
        "mask.png",
        "heatmap.png",
        "faithfulness.png",
        "json",
    ] {
        assert!(
            dir.join(format!("window.planted-centre.rise.{file}"))
                .is_file(),
            "{file}"
        );
    }
    let doc = json(&dir.join("window.planted-centre.rise.json"));
    assert_eq!(doc["method"], "rise");
    assert_eq!(doc["parameters"]["seed"], 3);
    assert_eq!(doc["parameters"]["masks"], 200);
    assert_eq!(doc["parameters"]["cells"], 7);
    assert_eq!(doc["parameters"]["keep_prob"], 0.5);
    assert_eq!(doc["variants"], 200);
    let s = &doc["saliency"];
    let (min, max, mean) = (
        s["min"].as_f64().expect("min"),
        s["max"].as_f64().expect("max"),
        s["mean"].as_f64().expect("mean"),
    );
    assert!(min < mean && mean < max, "{s}");
    for stage in [
        "draw",
        "masks",
        "classify",
        "accumulate",
        "saliency",
        "render",
    ] {
        assert!(doc["timings_s"][stage].is_number(), "{stage}");
    }
    assert!(doc["faithfulness"]["deletion_auc"].is_number());
    assert!((doc["kept_fraction"].as_f64().expect("kept") - 0.3).abs() < 1e-4);

    // The same seed writes the same document (times aside) and pictures.
    let (again, _) = explain("b", &[]);
    let strip = |mut v: Value| {
        v.as_object_mut().expect("object").remove("timings_s");
        v["faithfulness"]
            .as_object_mut()
            .expect("faithfulness")
            .remove("seconds");
        v
    };
    assert_eq!(
        strip(doc.clone()),
        strip(json(&again.join("window.planted-centre.rise.json")))
    );
    for file in ["masked.png", "mask.png", "heatmap.png"] {
        let name = format!("window.planted-centre.rise.{file}");
        assert_eq!(
            std::fs::read(dir.join(&name)).expect("a"),
            std::fs::read(again.join(&name)).expect("b"),
            "{file}"
        );
    }
    // An explicit --keep-fraction replaces RISE's 0.3.
    let (half, _) = explain("c", &["--keep-fraction", "0.5"]);
    let doc = json(&half.join("window.planted-centre.rise.json"));
    assert!((doc["kept_fraction"].as_f64().expect("kept") - 0.5).abs() < 1e-4);

    let compared = out.join("compare");
    let run = glassbox(&[
        "compare",
        path_str(&photo),
        "--a",
        "planted-centre:rise",
        "--b",
        "planted-centre:statistical",
        "--masks",
        "200",
        "--device",
        "cpu",
        "--out",
        path_str(&compared),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let doc = json(&compared.join("window.planted-centre-rise.vs.planted-centre-statistical.json"));
    assert_eq!(doc["a"]["explainer"]["method"], "rise", "{}", doc["a"]);
    assert!(doc["jaccard"].as_f64().expect("jaccard") > 0.0);

    let studied = out.join("study");
    let run = glassbox(&[
        "study",
        path_str(&photos),
        "--pairs",
        "planted-centre:rise,planted-centre:arbitrary",
        "--masks",
        "100",
        "--device",
        "cpu",
        "--out",
        path_str(&studied),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let log = std::fs::read_to_string(studied.join("study.jsonl")).expect("log");
    assert!(log.contains("planted-centre:rise"), "{log}");
}

/// On a wgpu adapter (lavapipe in CI) the masks are built by the same tensor operations: the
/// same masks, saliency and kept pixels as on the CPU, to float rounding.
#[test]
fn rise_on_wgpu_matches_the_cpu() {
    let Some(compute) = crate::gpu::gpu() else {
        return;
    };
    let options = RiseOptions {
        masks: 48,
        seed: 2,
        ..RiseOptions::default()
    };
    let masks = draw_masks(&options, 224, 224).expect("masks");
    let on_gpu: Vec<f32> = masks
        .on_device(compute.device(), 5..20)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32");
    let on_cpu = download(&masks, 5..20);
    let worst = on_gpu
        .iter()
        .zip(&on_cpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "masks differ by {worst}");

    let (cpu, view) = planted();
    let gpu = Classifier::load(cpu.info(), &compute).expect("load on wgpu");
    let a = rise(&cpu, &view, &options).expect("cpu");
    let b = rise(&gpu, &view, &options).expect("gpu");
    let worst = a
        .saliency
        .iter()
        .zip(&b.saliency)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "saliency differs by {worst}");
    assert_eq!(a.class, b.class);
    assert_eq!(a.kept, b.kept);
}
