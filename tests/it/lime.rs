//! LIME: quickshift against scikit-image, the regression against Python lime's own numbers,
//! lime's sample for a seed, reproducibility, and a planted-region model.

use glassbox::explain::lime::{LimeOptions, Segmenter, kernel_weights, lime, ridge, sample};
use glassbox::segment::quickshift::Quickshift;
use glassbox::view::View;
use glassbox::{Classifier, Compute, ModelInfo};
use nalgebra::{DMatrix, DVector};
use serde_json::Value;

use crate::common::data;

fn json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(data(name)).expect("fixture")).expect("JSON")
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("int"))
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("float"))
        .collect()
}

/// Adjusted Rand index of two labelings (Hubert & Arabie 1985).
fn adjusted_rand(a: &[i64], b: &[i64]) -> f64 {
    use std::collections::HashMap;
    let mut pairs: HashMap<(i64, i64), u64> = HashMap::new();
    let (mut ra, mut rb): (HashMap<i64, u64>, HashMap<i64, u64>) = (HashMap::new(), HashMap::new());
    for (x, y) in a.iter().zip(b) {
        *pairs.entry((*x, *y)).or_default() += 1;
        *ra.entry(*x).or_default() += 1;
        *rb.entry(*y).or_default() += 1;
    }
    let c2 = |n: u64| (n * n.saturating_sub(1) / 2) as f64;
    let index: f64 = pairs.values().map(|n| c2(*n)).sum();
    let (sa, sb): (f64, f64) = (
        ra.values().map(|n| c2(*n)).sum(),
        rb.values().map(|n| c2(*n)).sum(),
    );
    let expected = sa * sb / c2(a.len() as u64);
    (index - expected) / ((sa + sb) / 2.0 - expected)
}

#[test]
fn quickshift_agrees_with_scikit_image() {
    let fx = json("quickshift_fixture.json");
    for name in ["chelsea_224.png", "coffee_224.png"] {
        let want = ints(&fx["images"][name]["labels"]);
        let img = image::open(data(name)).expect("view").to_rgb8();
        let got: Vec<i64> = Quickshift::default()
            .segment(&img)
            .into_iter()
            .map(i64::from)
            .collect();
        let ari = adjusted_rand(&got, &want);
        assert!(ari >= 0.95, "{name}: adjusted Rand index {ari}");
    }
}

/// The density pass runs in fixed row bands summed in band order, so one core and many give
/// the same segments, bit for bit.
#[test]
fn quickshift_gives_the_same_segments_on_any_number_of_threads() {
    let img = image::open(data("coffee_224.png")).expect("view").to_rgb8();
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| Quickshift::default().segment(&img))
    };
    let one = on(1);
    assert!(
        one.iter().max().copied().unwrap_or(0) > 10,
        "too few segments"
    );
    assert_eq!(one, on(3));
    assert_eq!(one, on(8));
}

#[test]
fn adjusted_rand_index_is_right_on_known_cases() {
    assert!((adjusted_rand(&[0, 0, 1, 1], &[5, 5, 7, 7]) - 1.0).abs() < 1e-12);
    assert!(adjusted_rand(&[0, 0, 1, 1], &[0, 1, 0, 1]) < 0.0);
}

#[test]
fn regression_matches_python_lime() {
    let fx = json("lime_fixture.json");
    let s = fx["n_features"].as_u64().expect("n_features") as usize;
    let n = fx["explain"]["num_samples"].as_u64().expect("num_samples") as usize;
    let data: Vec<u8> = ints(&fx["data"]).into_iter().map(|v| v as u8).collect();
    let classes = fx["num_classes"].as_u64().expect("num_classes") as usize;
    let labels = floats(&fx["labels"]);
    let weights = kernel_weights(&data, s, 0.25);
    let lime_distances = floats(&fx["distances"]);
    for (i, d) in lime_distances.iter().enumerate() {
        let w = (-(d * d) / 0.0625).exp().sqrt();
        assert!(
            (weights[i] - w).abs() <= 1e-9,
            "kernel weight {i}: {} vs {w}",
            weights[i]
        );
    }
    let x = DMatrix::from_fn(n, s, |i, j| data[i * s + j] as f64);
    for entry in fx["per_label"].as_array().expect("per_label") {
        let class = entry["label"].as_u64().expect("label") as usize;
        let y = DVector::from_fn(n, |i, _| labels[i * classes + class]);
        let (intercept, coef, score, local) = ridge(&x, &y, &weights, 1.0).expect("ridge");
        let close = |a: f64, b: f64, what: &str| {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                "class {class} {what}: {a} vs {b}"
            )
        };
        close(
            intercept,
            entry["intercept"].as_f64().expect("intercept"),
            "intercept",
        );
        close(score, entry["score"].as_f64().expect("score"), "score");
        close(
            local,
            entry["local_pred"].as_f64().expect("local_pred"),
            "local prediction",
        );
        for pair in entry["local_exp"].as_array().expect("local_exp") {
            let seg = pair[0].as_u64().expect("segment") as usize;
            close(
                coef[seg],
                pair[1].as_f64().expect("weight"),
                &format!("weight of segment {seg}"),
            );
        }
        // The positive-only mask of lime's get_image_and_mask(num_features=5).
        let model = glassbox::explain::lime::LocalModel {
            class,
            intercept,
            weights: coef,
            score,
            local_prediction: local,
        };
        let mut ours: Vec<usize> = model.positive(5);
        ours.sort_unstable();
        let segments = ints(&fx["segments"]);
        let mask = ints(&entry["masks"]["positive_only"]);
        let mut theirs: Vec<usize> = segments
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m == 1)
            .map(|(s, _)| *s as usize)
            .collect();
        theirs.sort_unstable();
        theirs.dedup();
        assert_eq!(ours, theirs, "class {class}: positive-only mask");
        // The signed mask (positive_only=False): the 5 largest |weight|, +1 or -1.
        let signed = ints(&entry["masks"]["signed"]);
        for (segment, weight) in model.signed(5) {
            let want = if weight > 0.0 { 1 } else { -1 };
            let pixels: Vec<i64> = segments
                .iter()
                .zip(&signed)
                .filter(|(s, _)| **s as usize == segment)
                .map(|(_, m)| *m)
                .collect();
            assert!(
                pixels.iter().all(|m| *m == want),
                "class {class}: segment {segment} should be {want} in the signed mask"
            );
        }
        let marked = signed.iter().filter(|m| **m != 0).count();
        let ours_marked: usize = model
            .signed(5)
            .iter()
            .map(|(s, _)| segments.iter().filter(|l| **l as usize == *s).count())
            .sum();
        assert_eq!(
            marked, ours_marked,
            "class {class}: signed mask covers other segments"
        );
    }
}

#[test]
fn sample_is_lime_s_own_for_the_same_seed() {
    let fx = json("lime_fixture.json");
    let s = fx["n_features"].as_u64().expect("n_features") as usize;
    let n = fx["explain"]["num_samples"].as_u64().expect("num_samples") as usize;
    let seed = fx["explainer"]["random_state"]
        .as_u64()
        .expect("random_state") as u32;
    let want: Vec<u8> = ints(&fx["data"]).into_iter().map(|v| v as u8).collect();
    assert_eq!(sample(seed, n, s), want);
    assert_ne!(sample(seed + 1, n, s), want, "another seed, another sample");
}

#[test]
fn lime_is_reproducible_and_finds_the_planted_region() {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let photo = glassbox::view::load_photo(&data("coffee.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let options = LimeOptions {
        samples: 400,
        segmenter: Segmenter::Grid(10),
        seed: 3,
        ..LimeOptions::default()
    };
    let a = lime(&classifier, &view, &options).expect("lime");
    let b = lime(&classifier, &view, &options).expect("lime");
    assert_eq!(a.models, b.models, "same seed, same explanation");
    assert_eq!(a.kept, b.kept);
    assert_eq!(a.class, 0, "the planted class wins on coffee.png");
    let window = crate::common::planted_centre_cells();
    let model = &a.models[0];
    let top = model.positive(5);
    assert!(!top.is_empty());
    for s in &top {
        assert!(
            window.contains(s),
            "positive segment {s} outside the window (top: {top:?})"
        );
    }
    assert!(
        window.contains(&model.ranked()[0]),
        "the top |weight| segment is in the window"
    );
    let c = lime(&classifier, &view, &LimeOptions { seed: 4, ..options }).expect("lime");
    assert_ne!(
        a.models[0].weights, c.models[0].weights,
        "another seed, another sample"
    );
}

#[test]
fn lime_with_quickshift_puts_its_top_segment_on_the_planted_window() {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let photo = glassbox::view::load_photo(&data("coffee.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let e = lime(
        &classifier,
        &view,
        &LimeOptions {
            samples: 500,
            ..LimeOptions::default()
        },
    )
    .expect("lime");
    let top = e.models[0].positive(1)[0] as u32;
    let (w, mut inside, mut total) = (e.segmentation.width(), 0, 0);
    for (i, l) in e.segmentation.labels().iter().enumerate() {
        if *l == top {
            total += 1;
            let (x, y) = (i as u32 % w, i as u32 / w);
            inside += ((69..138).contains(&x) && (69..138).contains(&y)) as u32;
        }
    }
    assert!(
        inside * 2 > total,
        "top segment has {inside} of {total} pixels in the window"
    );
}

#[test]
fn keeping_only_some_columns_gives_exactly_those_columns() {
    use glassbox::perturb::{Fill, KeepMatrix, Perturber};
    let info = ModelInfo::default_model();
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let photo = glassbox::view::load_photo(&data("coffee.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let seg = glassbox::segment::Segmentation::grid(224, 224, 4).expect("grid");
    let mut keep = KeepMatrix::new(seg.count());
    keep.push_all();
    keep.push_hiding(&[0, 5, 9]);
    keep.push_hiding(&[15]);
    let perturber = Perturber::new(&classifier, &view.rgb, &seg, Fill::Black).expect("perturber");
    let all = perturber.run(&keep).expect("all");
    let columns = [967, 3, 504];
    let some = perturber.run_columns(&keep, Some(&columns)).expect("some");
    assert_eq!(some.classes(), 3);
    for r in 0..keep.rows() {
        let want: Vec<f32> = columns.iter().map(|c| all.row(r)[*c]).collect();
        assert_eq!(some.row(r), want.as_slice(), "row {r}");
    }
    assert!(
        perturber.run_columns(&keep, Some(&[1000])).is_err(),
        "a column the model lacks"
    );
}

/// `runs` seeds: the first run is the single run's explanation, to the bit; the spread is
/// measured over all runs, each a different sample, and the mean weight is their mean.
#[test]
fn stability_over_seeds_keeps_the_first_run_and_measures_the_spread() {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let photo = glassbox::view::load_photo(&data("coffee.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let single = LimeOptions {
        samples: 200,
        segmenter: Segmenter::Grid(6),
        seed: 5,
        ..LimeOptions::default()
    };
    let one = lime(&classifier, &view, &single).expect("one run");
    assert!(one.stability.is_none());
    let three = lime(&classifier, &view, &LimeOptions { runs: 3, ..single }).expect("three");
    assert_eq!(three.models, one.models, "the first run is the single run");
    assert_eq!(three.kept, one.kept);
    let s = three.stability.as_ref().expect("stability");
    assert_eq!(s.seeds, vec![5, 6, 7]);
    let segments = one.models[0].weights.len();
    assert_eq!((s.mean.len(), s.std.len()), (segments, segments));
    // Each seed draws another sample, so some weight must move.
    assert!(s.std.iter().any(|v| *v > 0.0), "{:?}", s.std);
    assert!(s.std.iter().all(|v| v.is_finite() && *v >= 0.0));
    // The mean includes the first run's weights: seed 6 and 7 alone give the rest.
    let rest: Vec<Vec<f64>> = [6, 7]
        .iter()
        .map(|&seed| {
            let o = LimeOptions {
                seed,
                class: Some(one.class),
                ..single
            };
            let e = lime(&classifier, &view, &o).expect("run");
            let m = e
                .models
                .iter()
                .find(|m| m.class == one.class)
                .expect("model");
            m.weights.clone()
        })
        .collect();
    let first = &one
        .models
        .iter()
        .find(|m| m.class == one.class)
        .expect("m")
        .weights;
    for k in 0..segments {
        let mean = (first[k] + rest[0][k] + rest[1][k]) / 3.0;
        assert!((s.mean[k] - mean).abs() < 1e-12, "segment {k}");
    }
    assert!((0.0..=1.0).contains(&s.mean_jaccard));
}

/// `--samples auto` stops where the top segments are stable and the bootstrap agrees, and its
/// explanation is exactly lime's with that many samples (the sample is one stream for the
/// seed, so its first rows are the shorter sample).
#[test]
fn adaptive_samples_stop_when_stable_and_equal_lime_with_that_count() {
    use glassbox::explain::lime::Adaptive;
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let photo = glassbox::view::load_photo(&data("coffee.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let adaptive = Adaptive {
        max_samples: 5000,
        ..Adaptive::default()
    };
    let options = LimeOptions {
        segmenter: Segmenter::Grid(6),
        seed: 2,
        features: 1,
        adaptive: Some(adaptive),
        ..LimeOptions::default()
    };
    let auto = lime(&classifier, &view, &options).expect("auto");
    let a = auto.adapted.expect("adapted");
    assert!(
        !a.capped && a.samples < 5000,
        "stable before 5000 samples: {a:?}"
    );
    assert!(a.probability >= 0.95, "{a:?}");
    assert!(a.rounds >= 2, "two rounds at least agree: {a:?}");
    assert_eq!(a.samples, 1 + 250 * a.rounds, "{a:?}");
    assert_eq!(auto.options.samples, a.samples);
    let fixed = LimeOptions {
        samples: a.samples,
        adaptive: None,
        ..options
    };
    let plain = lime(&classifier, &view, &fixed).expect("plain");
    assert_eq!(
        auto.models, plain.models,
        "lime's explanation with that count"
    );
    assert_eq!(auto.kept, plain.kept);
    let again = lime(&classifier, &view, &options).expect("again");
    assert_eq!(again.adapted, auto.adapted, "reproducible");

    // A cap below one round stops there, capped.
    let capped = LimeOptions {
        adaptive: Some(Adaptive {
            max_samples: 100,
            ..adaptive
        }),
        ..options
    };
    let c = lime(&classifier, &view, &capped).expect("capped");
    let c = c.adapted.expect("adapted");
    assert!(c.capped);
    assert_eq!((c.samples, c.rounds), (100, 1));
}

/// A study's log key holds each explainer's description: LIME with `--samples auto` must not
/// read as LIME with its cap as a fixed count, or a log of one would resume as the other.
#[test]
fn adaptive_lime_describes_itself_apart_from_a_fixed_count() {
    use glassbox::explain::Explainer;
    use glassbox::explain::lime::Adaptive;
    let fixed = LimeOptions {
        samples: 10_000,
        ..LimeOptions::default()
    };
    let auto = LimeOptions {
        adaptive: Some(Adaptive::default()),
        ..fixed
    };
    let (df, da) = (
        Explainer::Lime(fixed).describe(),
        Explainer::Lime(auto).describe(),
    );
    assert_ne!(df, da);
    assert_eq!(da["samples"], "auto");
    assert_eq!(da["max_samples"], 10_000);
    assert_eq!(df["samples"], 10_000);
}
