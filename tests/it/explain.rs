//! Occlusion explainers: planted-region models (the honest test), rule semantics, the
//! perturbation engine, determinism, CPU vs wgpu.

use std::collections::BTreeSet;

use burn::tensor::Tensor;
use glassbox::explain::rules::{arbitrary, kneedle, mean_std, rank, statistical};
use glassbox::explain::{Cut, Method, OcclusionOptions, occlusion};
use glassbox::perturb::{Fill, KeepMatrix, Perturber};
use glassbox::segment::{Rect, Segmentation};
use glassbox::view::{View, to_input};
use glassbox::{Classifier, Compute, ModelInfo};
use image::RgbImage;

use crate::common::pattern;

/// Grid cells (10×10 of 23 px) inside each planted window, as made by tests/models/make_planted.py.
fn window_cells(model: &str) -> BTreeSet<usize> {
    let (rows, cols) = match model {
        "planted-centre" => (3..6, 3..6),
        "planted-corner" => (0..2, 8..10),
        _ => unreachable!(),
    };
    rows.flat_map(|r| cols.clone().map(move |c| r * 10 + c))
        .collect()
}

fn grey_view(info: &ModelInfo) -> View {
    let pre = info.preprocess();
    View::new(
        &RgbImage::from_pixel(pre.width, pre.height, image::Rgb([128, 128, 128])),
        pre,
    )
}

fn explain(model: &str, method: Method, compute: &Compute) -> glassbox::explain::Explanation {
    let info = ModelInfo::find(model).expect("fixture model");
    let classifier = Classifier::load(info, compute).expect("load");
    occlusion(
        &classifier,
        &grey_view(&info),
        method,
        &OcclusionOptions::default(),
    )
    .expect("explain")
}

fn kept_cells(e: &glassbox::explain::Explanation) -> BTreeSet<usize> {
    let phase = &e.phases[0];
    (0..phase.cells.len())
        .filter(|i| !phase.blacked.contains(i))
        .collect()
}

#[test]
fn statistical_keeps_exactly_the_planted_window() {
    for model in ["planted-centre", "planted-corner"] {
        let e = explain(model, Method::Statistical { k: 1.0 }, &Compute::cpu());
        assert_eq!(e.class, 0, "{model}: the planted class wins on grey");
        assert_eq!(kept_cells(&e), window_cells(model), "{model}");
        assert_eq!(e.variants, 101);
        // Cells outside the window did not change the prediction at all.
        let ph = &e.phases[0];
        for i in (0..100).filter(|i| !window_cells(model).contains(i)) {
            assert!(
                (ph.p[i] - e.probability).abs() < 1e-6,
                "{model}: cell {i} moved p"
            );
        }
    }
}

#[test]
fn elbow_finds_the_knee_at_the_end_of_the_plateau() {
    for model in ["planted-centre", "planted-corner"] {
        let e = explain(model, Method::Elbow { k: 1.0 }, &Compute::cpu());
        let outside = 100 - window_cells(model).len();
        assert_eq!(e.phases[0].cut, Cut::Knee(outside - 1), "{model}");
        assert_eq!(kept_cells(&e), window_cells(model), "{model}");
        assert!(e.notes.is_empty());
    }
}

#[test]
fn arbitrary_blacks_out_70_percent_and_never_the_window() {
    for model in ["planted-centre", "planted-corner"] {
        let e = explain(model, Method::Arbitrary { fraction: 0.7 }, &Compute::cpu());
        assert_eq!(e.phases[0].blacked.len(), 70);
        assert_eq!(e.phases[0].cut, Cut::Count(70));
        let kept = kept_cells(&e);
        assert!(
            window_cells(model).is_subset(&kept),
            "{model}: window not kept"
        );
        // The window cells are the most important: the end of the ranking.
        let tail: BTreeSet<usize> = e.phases[0].ranking[100 - window_cells(model).len()..]
            .iter()
            .copied()
            .collect();
        assert_eq!(tail, window_cells(model), "{model}");
        // Tied unimportant cells are blacked out in index order.
        let blacked = &e.phases[0].blacked;
        assert!(
            blacked.windows(2).all(|w| w[0] < w[1]),
            "ties not by index: {blacked:?}"
        );
    }
}

#[test]
fn double_division_geometry_and_variant_count() {
    let e = explain(
        "planted-centre",
        Method::DoubleDivision { k: 1.0 },
        &Compute::cpu(),
    );
    let phase1 = &e.phases[0];
    assert_eq!(phase1.cells.len(), 9);
    assert_eq!(
        phase1.cells[0],
        Rect {
            x: 0,
            y: 0,
            w: 75,
            h: 75
        }
    );
    assert_eq!(
        phase1.cells[8],
        Rect {
            x: 150,
            y: 150,
            w: 74,
            h: 74
        }
    );
    let kept1: Vec<usize> = (0..9).filter(|i| !phase1.blacked.contains(i)).collect();
    assert!(!kept1.is_empty());
    let phase2 = &e.phases[1];
    assert_eq!(phase2.cells.len(), 9 * kept1.len());
    assert_eq!(e.variants, 1 + 9 + 9 * kept1.len());
    assert!(
        e.variants < 101,
        "double division must classify fewer variants than a 10x10 grid"
    );
    for (j, &i) in kept1.iter().enumerate() {
        assert_eq!(
            &phase2.cells[9 * j..9 * j + 9],
            phase1.cells[i].grid(3).as_slice()
        );
    }
    // What stays kept lies within phase-1 cells that overlap the planted window (69..138).
    let window = Rect {
        x: 69,
        y: 69,
        w: 69,
        h: 69,
    };
    let overlaps = |r: &Rect| {
        r.x < window.x + window.w
            && window.x < r.x + r.w
            && r.y < window.y + window.h
            && window.y < r.y + r.h
    };
    for &i in &kept1 {
        assert!(
            overlaps(&phase1.cells[i]),
            "kept phase-1 cell {i} misses the window"
        );
    }
    let kept_pixels = e.kept.iter().filter(|k| **k).count();
    assert!(kept_pixels > 0);
    let (w, _) = e.kept.size();
    for (p, k) in e.kept.iter().enumerate() {
        if *k {
            let (x, y) = (p as u32 % w, p as u32 / w);
            assert!(kept1.iter().any(|&i| phase1.cells[i].contains(x, y)));
        }
    }
}

#[test]
fn ranking_puts_changed_predictions_last_and_breaks_ties_by_index() {
    let p = [0.5, 0.9, 0.95, 0.2, 0.5];
    let argmax = [7, 7, 3, 7, 7];
    assert_eq!(rank(&p, &argmax, 7), vec![1, 0, 4, 3, 2]);
}

#[test]
fn arbitrary_count_is_rounded_fraction() {
    let ranking: Vec<usize> = (0..100).rev().collect();
    assert_eq!(arbitrary(&ranking, 0.7), ranking[..70].to_vec());
    assert_eq!(
        arbitrary(&ranking[..10], 0.25).len(),
        3,
        "2.5 rounds half away from zero"
    );
    assert!(arbitrary(&ranking, 0.0).is_empty());
    assert_eq!(arbitrary(&ranking, 1.0).len(), 100);
}

#[test]
fn statistical_threshold_is_mean_minus_k_std() {
    let p = [1.0, 1.0, 1.0, 0.0];
    let (mean, std) = mean_std(&p);
    assert!((mean - 0.75).abs() < 1e-12 && (std - 0.75f64.sqrt() / 2.0).abs() < 1e-12);
    let ranking = rank(&p, &[0, 0, 0, 0], 0);
    let (blacked, t) = statistical(&p, &ranking, 1.0);
    assert!((t - (mean - std)).abs() < 1e-12);
    assert_eq!(blacked, vec![0, 1, 2]);
    let (none, _) = statistical(&p, &ranking, -10.0);
    assert!(none.is_empty());
}

#[test]
fn kneedle_finds_known_knees_and_rejects_curves_without_one() {
    // Plateau of 10 then a linear fall: the knee is the plateau's last point.
    let mut curve = vec![1.0f32; 10];
    curve.extend((1..=10).map(|i| 1.0 - i as f32 / 10.0));
    assert_eq!(kneedle(&curve, 1.0), Some(9));
    // A gentler concave bend: y = 1 - x^4 has its knee near x = 0.67 (Kneedle on y=1-x^4).
    let bent: Vec<f32> = (0..101).map(|i| 1.0 - (i as f32 / 100.0).powi(4)).collect();
    let knee = kneedle(&bent, 1.0).expect("knee");
    assert!((60..=72).contains(&knee), "knee at {knee}");
    // Dropping fastest at the start (the report's "décroissance trop rapide"), a straight
    // line, a constant: no knee.
    let fast: Vec<f32> = (0..50).map(|i| (-(i as f32) / 5.0).exp()).collect();
    assert_eq!(kneedle(&fast, 1.0), None);
    let line: Vec<f32> = (0..50).map(|i| 1.0 - i as f32 / 49.0).collect();
    assert_eq!(kneedle(&line, 1.0), None);
    assert_eq!(kneedle(&[0.3; 20], 1.0), None);
}

#[test]
fn elbow_falls_back_to_statistical_and_says_so() {
    // On the real model, chelsea's curve is checked for a knee; whichever way it goes, the cut
    // and the note must agree.
    let info = ModelInfo::default_model();
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let photo = glassbox::view::load_photo(&crate::common::data("coffee.png")).expect("decode");
    let view = View::new(&photo.rgb, info.preprocess());
    let e = occlusion(
        &classifier,
        &view,
        Method::Elbow { k: 1.0 },
        &OcclusionOptions::default(),
    )
    .expect("explain");
    match e.phases[0].cut {
        Cut::Knee(_) => assert!(e.notes.is_empty()),
        Cut::NoKnee(_) => assert!(
            e.notes
                .iter()
                .any(|n| n.contains("fell back to the statistical rule"))
        ),
        ref other => panic!("unexpected cut {other:?}"),
    }
    assert_eq!(e.class, 967);
}

#[test]
fn grid_cells_are_square_with_partial_last_row_and_column() {
    let seg = Segmentation::grid(224, 224, 10).expect("grid");
    let cells = seg.cells().expect("cells");
    assert_eq!(cells.len(), 100);
    assert_eq!(
        cells[0],
        Rect {
            x: 0,
            y: 0,
            w: 23,
            h: 23
        }
    );
    assert_eq!(
        cells[9],
        Rect {
            x: 207,
            y: 0,
            w: 17,
            h: 23
        }
    );
    assert_eq!(
        cells[99],
        Rect {
            x: 207,
            y: 207,
            w: 17,
            h: 17
        }
    );
    assert_eq!(seg.label(223, 223), 99);
    let wide = Segmentation::grid(224, 100, 10).expect("grid");
    assert_eq!(wide.count(), 10 * 5);
    assert!(Segmentation::grid(224, 224, 0).is_err());
}

/// Every fill: the engine's device-built variants equal a plain CPU construction.
#[test]
fn perturbation_engine_equals_cpu_construction_for_every_fill() {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let pre = info.preprocess();
    let view = pattern(3, pre.width, pre.height);
    // An irregular segmentation: diagonal bands, 7 segments.
    let labels: Vec<u32> = (0..pre.width * pre.height)
        .map(|i| ((i % pre.width + i / pre.width) / 64) % 7)
        .collect();
    let seg = Segmentation::from_labels(pre.width, pre.height, labels).expect("labels");
    let mut keep = KeepMatrix::new(seg.count());
    keep.push_all();
    keep.push_hiding(&[0, 3]);
    keep.push_row(&[false; 7]);
    keep.push_hiding(&[6]);
    for fill in [Fill::Black, Fill::Grey, Fill::Mean, Fill::Blur(3.0)] {
        let perturber = Perturber::new(&classifier, &view, &seg, fill).expect("perturber");
        let got: Tensor<4> = perturber.variants(&keep, 0..keep.rows());
        let got = got.into_data().try_to_vec::<f32>().expect("f32");
        let base = to_input(&view, pre);
        let filler = to_input(&fill.image(&view, &seg), pre);
        let plane = (pre.width * pre.height) as usize;
        for r in 0..keep.rows() {
            for c in 0..3 {
                for px in 0..plane {
                    let m = keep.row(r)[seg.labels()[px] as usize];
                    let i = c * plane + px;
                    let want = if m == 1.0 { base[i] } else { filler[i] };
                    let have = got[(r * 3 + c) * plane + px];
                    assert!(
                        (have - want).abs() <= 1e-5,
                        "{fill:?} row {r} channel {c} pixel {px}: {have} vs {want}"
                    );
                }
            }
        }
    }
    // The mean fill really is each segment's mean colour.
    let mean = Fill::Mean.image(&view, &seg);
    let mut sum = [0u64; 3];
    let mut n = 0u64;
    for (px, l) in view.pixels().zip(seg.labels()) {
        if *l == 2 {
            (0..3).for_each(|c| sum[c] += px[c] as u64);
            n += 1;
        }
    }
    let first = (0..seg.labels().len())
        .find(|i| seg.labels()[*i] == 2)
        .expect("segment 2");
    let got = mean.get_pixel(first as u32 % pre.width, first as u32 / pre.width);
    for c in 0..3 {
        assert_eq!(got[c] as u64, (sum[c] + n / 2) / n);
    }
}

#[test]
fn cpu_and_wgpu_give_the_same_mask_on_a_planted_model() {
    let Some(gpu) = crate::gpu::gpu() else { return };
    let cpu = explain(
        "planted-corner",
        Method::Statistical { k: 1.0 },
        &Compute::cpu(),
    );
    let gpu = explain("planted-corner", Method::Statistical { k: 1.0 }, &gpu);
    assert_eq!(cpu.kept, gpu.kept);
    assert_eq!(cpu.phases[0].ranking, gpu.phases[0].ranking);
    assert_eq!(kept_cells(&gpu), window_cells("planted-corner"));
}
