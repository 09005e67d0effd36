//! Incremental occlusion inference (`glassbox::model::incremental`) against full inference on
//! the same variants: every built-in model and fixture, cells at corners, edges and the centre,
//! odd and even sizes, one-pixel cells and strips, a row that hides nothing, with every fill.

use glassbox::Compute;
use glassbox::explain::sliding::{SlidingOptions, sliding, windows};
use glassbox::explain::{CellScores, Method, OcclusionOptions, cell_scores_given, occlusion_from};
use glassbox::model::{Classifier, ModelInfo};
use glassbox::perturb::{Fill, KeepMatrix, Perturber};
use glassbox::segment::{Rect, Segmentation};
use glassbox::view::{View, load_photo};

use crate::common::{data, error_lines, glassbox, path_str, scratch, text};

/// Tilings of a `w × h` view whose tiles are the cells under test: each is occluded alone.
fn tilings(w: u32, h: u32) -> Vec<(String, Vec<Rect>)> {
    let whole = Rect { x: 0, y: 0, w, h };
    let mut out = vec![
        ("10x10 grid".to_string(), whole.grid(10)),
        ("7x7 grid (odd cells)".to_string(), whole.grid(7)),
        ("3x3 grid".to_string(), whole.grid(3)),
    ];
    // Single pixels and thin strips at corners, edges and the centre, each a tile of its own,
    // the rest of the view one big tile that is never occluded alone (its row is skipped).
    let small = vec![
        Rect {
            x: 0,
            y: 0,
            w: 1,
            h: 1,
        },
        Rect {
            x: w - 1,
            y: h - 1,
            w: 1,
            h: 1,
        },
        Rect {
            x: w / 2,
            y: h / 2,
            w: 1,
            h: 1,
        },
        Rect {
            x: 0,
            y: h / 2 - 3,
            w: 5,
            h: 1,
        },
        Rect {
            x: w - 2,
            y: 1,
            w: 2,
            h: 17,
        },
        Rect {
            x: 37,
            y: h - 9,
            w: 23,
            h: 9,
        },
        Rect {
            x: 101,
            y: 60,
            w: 8,
            h: 8,
        },
    ];
    out.push(("pixels and strips".to_string(), small));
    out
}

/// The segmentation of `cells` plus, when they do not tile the view, one extra segment that
/// holds every other pixel (never occluded).
fn segmentation_of(w: u32, h: u32, cells: &[Rect]) -> (Segmentation, usize) {
    let mut covered = vec![false; (w * h) as usize];
    for c in cells {
        for y in c.y..c.y + c.h {
            for x in c.x..c.x + c.w {
                covered[(y * w + x) as usize] = true;
            }
        }
    }
    if covered.iter().all(|c| *c) {
        return (
            Segmentation::from_cells(w, h, cells.to_vec()).expect("tiling"),
            cells.len(),
        );
    }
    // Rows of the uncovered rest, as 1-pixel-high runs.
    let mut tiles = cells.to_vec();
    for y in 0..h {
        let mut x = 0;
        while x < w {
            if covered[(y * w + x) as usize] {
                x += 1;
                continue;
            }
            let start = x;
            while x < w && !covered[(y * w + x) as usize] {
                x += 1;
            }
            tiles.push(Rect {
                x: start,
                y,
                w: x - start,
                h: 1,
            });
        }
    }
    (
        Segmentation::from_cells(w, h, tiles).expect("tiling"),
        cells.len(),
    )
}

/// The largest difference between incremental and full inference over `tiling`'s single-cell
/// occlusions of `view` (and one row that hides nothing), and the share of convolution work
/// incremental inference computed.
fn compare(classifier: &Classifier, view: &View, cells: &[Rect], fill: Fill) -> (f32, f64) {
    let (w, h) = view.rgb.dimensions();
    let (segmentation, occluded) = segmentation_of(w, h, cells);
    let mut keep = KeepMatrix::new(segmentation.count());
    keep.push_all();
    for i in 0..occluded {
        keep.push_hiding(&[i]);
    }
    let full = Perturber::new(classifier, &view.rgb, &segmentation, fill)
        .expect("perturber")
        .run(&keep)
        .expect("full");
    let perturber = Perturber::new(classifier, &view.rgb, &segmentation, fill)
        .expect("perturber")
        .with_incremental(true);
    let incremental = perturber.run(&keep).expect("incremental");
    let macs = perturber.macs().expect("the batch ran incrementally");
    assert!(macs.computed <= macs.full, "{macs:?}");
    let worst = full
        .as_slice()
        .iter()
        .zip(incremental.as_slice())
        .map(|(a, b)| {
            if a.is_nan() != b.is_nan() {
                f32::INFINITY
            } else if a.is_nan() {
                0.0
            } else {
                (a - b).abs()
            }
        })
        .fold(0f32, f32::max);
    (worst, macs.computed as f64 / macs.full.max(1) as f64)
}

fn view_of(info: ModelInfo, photo: &str) -> View {
    let photo = load_photo(&data(photo)).expect("decode");
    View::new(&photo.rgb, info.preprocess())
}

#[test]
fn incremental_inference_equals_full_inference_on_every_model() {
    let compute = Compute::cpu();
    for info in ModelInfo::all() {
        let classifier = Classifier::load(info, &compute).expect("load");
        assert!(classifier.incremental());
        let view = view_of(info, "chelsea.png");
        let (w, h) = view.rgb.dimensions();
        for (name, cells) in tilings(w, h) {
            // The fixtures and AlexNet (244 MB of weights) get the first grid and the strips.
            let heavy = info.id().starts_with("alexnet") || info.fixture();
            if heavy && name != "10x10 grid" && name != "pixels and strips" {
                continue;
            }
            let (worst, share) = compare(&classifier, &view, &cells, Fill::Black);
            assert!(
                worst <= 1e-5,
                "{}: {name}: incremental differs from full inference by {worst}",
                info.id()
            );
            eprintln!(
                "{}: {name}: max |Δp| {worst:.1e}, {:.0} % of the convolutions' work",
                info.id(),
                share * 100.0
            );
        }
    }
}

#[test]
fn incremental_inference_is_exact_with_every_fill() {
    let compute = Compute::cpu();
    let info = ModelInfo::find("googlenet-tv").expect("googlenet-tv");
    let classifier = Classifier::load(info, &compute).expect("load");
    let view = view_of(info, "coffee.png");
    let (w, h) = view.rgb.dimensions();
    let cells = Rect { x: 0, y: 0, w, h }.grid(6);
    for fill in [Fill::Grey, Fill::Mean, Fill::Blur(5.0)] {
        let (worst, _) = compare(&classifier, &view, &cells, fill);
        assert!(worst <= 1e-5, "fill {}: {worst}", fill.name());
    }
}

#[test]
fn incremental_inference_saves_work_where_the_issue_says() {
    let compute = Compute::cpu();
    for (model, at_most) in [("googlenet-tv", 0.6), ("efficientnet-lite0", 0.8)] {
        let info = ModelInfo::find(model).expect("model");
        let classifier = Classifier::load(info, &compute).expect("load");
        let view = view_of(info, "chelsea.png");
        let (w, h) = view.rgb.dimensions();
        let cells = Rect { x: 0, y: 0, w, h }.grid(10);
        let (_, share) = compare(&classifier, &view, &cells, Fill::Black);
        assert!(
            share <= at_most,
            "{model}: incremental inference computed {:.0} % of full inference's convolution work",
            share * 100.0
        );
    }
}

/// Every built-in model with trained or synthetic weights (not the fixtures).
fn real_models() -> impl Iterator<Item = ModelInfo> {
    ModelInfo::all().filter(|m| !m.fixture())
}

#[test]
fn occlusion_explanations_are_identical_with_and_without_incremental_inference() {
    let compute = Compute::cpu();
    for info in real_models() {
        let classifier = Classifier::load(info, &compute).expect("load");
        for photo in ["chelsea.png", "coffee.png"] {
            let view = view_of(info, photo);
            // Single-cell scores of the 10x10 and 3x3 grids, full then incremental: each rule
            // reads them as `explain` would.
            let scores: Vec<Vec<CellScores>> = [false, true]
                .into_iter()
                .map(|incremental| {
                    [10, 3]
                        .into_iter()
                        .map(|grid| {
                            cell_scores_given(
                                &classifier,
                                &view,
                                grid,
                                Fill::Black,
                                incremental,
                                None,
                            )
                            .expect("scores")
                        })
                        .collect()
                })
                .collect();
            for method in [
                Method::Arbitrary { fraction: 0.7 },
                Method::Statistical { k: 1.0 },
                Method::DoubleDivision { k: 1.0 },
                Method::Elbow { k: 1.0 },
            ] {
                let run = |incremental| {
                    let options = OcclusionOptions {
                        incremental,
                        ..OcclusionOptions::default()
                    };
                    let scores = &scores[usize::from(incremental)]
                        [usize::from(matches!(method, Method::DoubleDivision { .. }))];
                    occlusion_from(&classifier, &view, scores, method, &options).expect("explain")
                };
                let (on, off) = (run(true), run(false));
                let what = format!("{} {photo} {}", info.id(), method.name());
                assert!(on.inference.macs.is_some(), "{what}: ran in full");
                assert!(off.inference.macs.is_none(), "{what}: ran incrementally");
                assert_eq!(on.class, off.class, "{what}");
                assert_eq!(on.kept, off.kept, "{what}: masks differ");
                for (a, b) in on.phases.iter().zip(&off.phases) {
                    assert_eq!(a.ranking, b.ranking, "{what}: rankings differ");
                    assert_eq!(a.blacked, b.blacked, "{what}");
                    for (p, q) in a.p.iter().zip(&b.p) {
                        assert!((p - q).abs() <= 1e-5, "{what}: p {p} vs {q}");
                    }
                }
            }
        }
    }
}

#[test]
fn sliding_windows_follow_captums_rule() {
    // 224 = 6 × 32 + 2 × 16: 13 starts per axis, the last window ending at the edge.
    let w = windows(224, 224, 32, 16);
    assert_eq!(w.len(), 13 * 13);
    assert_eq!(
        w[12],
        Rect {
            x: 192,
            y: 0,
            w: 32,
            h: 32
        }
    );
    // ⌈(224 − 30) / 16⌉ + 1 = 14 starts; the last (208) is cut to the 16 pixels left.
    let w = windows(224, 100, 30, 16);
    let xs: Vec<u32> = w.iter().filter(|r| r.y == 0).map(|r| r.x).collect();
    assert_eq!(xs.len(), 14);
    assert_eq!(
        w[13],
        Rect {
            x: 208,
            y: 0,
            w: 16,
            h: 30
        }
    );
    // ⌈(100 − 30) / 16⌉ + 1 = 6 rows of windows, the last at 80 cut to 20 rows.
    assert_eq!(w.last().map(|r| (r.y, r.h)), Some((80, 20)));
    // A window as large as the view: one window.
    assert_eq!(
        windows(10, 10, 10, 3),
        vec![Rect {
            x: 0,
            y: 0,
            w: 10,
            h: 10
        }]
    );
}

#[test]
fn sliding_attribution_is_the_mean_drop_over_covering_windows() {
    let compute = Compute::cpu();
    let info = ModelInfo::find("googlenet").expect("googlenet");
    let classifier = Classifier::load(info, &compute).expect("load");
    let view = view_of(info, "coffee.png");
    let options = SlidingOptions {
        window: 40,
        stride: 24,
        ..SlidingOptions::default()
    };
    let on = sliding(&classifier, &view, &options).expect("sliding");
    let off = sliding(
        &classifier,
        &view,
        &SlidingOptions {
            incremental: false,
            ..options
        },
    )
    .expect("sliding");
    assert!(on.inference.macs.is_some() && off.inference.macs.is_none());
    assert_eq!(on.kept, off.kept, "masks differ with incremental inference");
    for (a, b) in on.p.iter().zip(&off.p) {
        assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    }
    // Each window's p is the full-inference probability of the view with that window hidden.
    let (w, h) = view.rgb.dimensions();
    let whole = Segmentation::grid(w, h, 1).expect("segmentation");
    let perturber = Perturber::new(&classifier, &view.rgb, &whole, Fill::Black).expect("p");
    let picked = [0, 7, on.windows.len() - 1];
    let rects: Vec<Option<Rect>> = picked.iter().map(|&i| Some(on.windows[i])).collect();
    let probs = perturber.run_rects(&rects, Some(&[on.class])).expect("run");
    for (k, &i) in picked.iter().enumerate() {
        assert!((probs.row(k)[0] - off.p[i]).abs() <= 1e-6);
    }
    // Attribution of a few pixels, from the windows covering them.
    for (x, y) in [(0u32, 0u32), (30, 50), (223, 223), (112, 100)] {
        let covering: Vec<usize> = (0..on.windows.len())
            .filter(|&i| on.windows[i].contains(x, y))
            .collect();
        assert!(!covering.is_empty());
        let mean = covering
            .iter()
            .map(|&i| (on.probability - on.p[i]) as f64)
            .sum::<f64>()
            / covering.len() as f64;
        let got = on.attribution[(y * w + x) as usize] as f64;
        assert!((got - mean).abs() < 1e-6, "({x}, {y}): {got} vs {mean}");
    }
    assert_eq!(on.uncovered, 0);
    // A stride past the window leaves pixels under no window, attributed 0.
    let sparse = sliding(
        &classifier,
        &view,
        &SlidingOptions {
            window: 8,
            stride: 40,
            ..SlidingOptions::default()
        },
    )
    .expect("sparse");
    assert!(sparse.uncovered > 0);
    assert_eq!(sparse.attribution[(9 * w + 9) as usize], 0.0);
    assert!(!sparse.notes().is_empty());
    assert_eq!(h, 224);
}

#[test]
fn sliding_and_incremental_flags_refuse_bad_input_with_one_line() {
    let out = scratch("sliding_bad_flags");
    let image = data("chelsea.png");
    for (flags, part) in [
        (vec!["--method", "sliding", "--window", "0"], "--window 0"),
        (
            vec!["--method", "sliding", "--window", "225"],
            "--window 225",
        ),
        (vec!["--method", "sliding", "--stride", "0"], "--stride 0"),
        (
            vec!["--method", "sliding", "--stride", "300"],
            "--stride 300",
        ),
        (
            vec!["--method", "lime", "--no-incremental"],
            "--no-incremental",
        ),
        (
            vec!["--method", "rise", "--no-incremental"],
            "--no-incremental",
        ),
        (
            vec!["--method", "kernelshap", "--no-incremental"],
            "--no-incremental",
        ),
    ] {
        let mut args = vec!["explain", "--device", "cpu", "--out", path_str(&out)];
        args.extend(&flags);
        args.push(path_str(&image));
        let run = glassbox(&args);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: {stderr}");
        assert_eq!(error_lines(&stderr).len(), 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(part), "{flags:?}: {stderr}");
    }
}

#[test]
fn sliding_explains_from_the_command_line_and_records_its_path() {
    let out = scratch("sliding_cli");
    let image = data("chelsea.png");
    for (dir, extra) in [("on", vec![]), ("off", vec!["--no-incremental"])] {
        let dir = out.join(dir);
        let mut args = vec![
            "explain",
            "--device",
            "cpu",
            "--method",
            "sliding",
            "--steps",
            "4",
            "--out",
            path_str(&dir),
        ];
        args.extend(&extra);
        args.push(path_str(&image));
        let run = glassbox(&args);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
        for suffix in [
            "json",
            "heatmap.png",
            "mask.png",
            "masked.png",
            "faithfulness.png",
        ] {
            let file = dir.join(format!("chelsea.efficientnet-lite0.sliding.{suffix}"));
            assert!(file.exists(), "{}", file.display());
        }
    }
    let doc = |dir: &str| -> serde_json::Value {
        let file = out
            .join(dir)
            .join("chelsea.efficientnet-lite0.sliding.json");
        serde_json::from_slice(&std::fs::read(file).expect("json")).expect("JSON")
    };
    let (on, off) = (doc("on"), doc("off"));
    assert_eq!(on["inference"]["path"], "incremental");
    assert_eq!(off["inference"]["path"], "full");
    assert!(
        on["inference"]["conv_macs"].as_u64()
            < on["inference"]["conv_macs_full_inference"].as_u64()
    );
    assert_eq!(on["mask"], off["mask"]);
    assert_eq!(on["windows"].as_array().map(Vec::len), Some(169));
    assert_eq!(on["faithfulness"]["steps"], 4);
}
