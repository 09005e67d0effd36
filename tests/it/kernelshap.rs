//! KernelSHAP: the coalition sampler, the constrained solve against exact Shapley values (on
//! additive games from sampled coalitions, on any game from every coalition), the planted model
//! against a brute-force enumeration through the same Perturber, determinism, and the command
//! line.

use glassbox::explain::kernelshap::{
    Coalitions, KernelShapOptions, Samples, coalitions, kernel_shap, solve,
};
use glassbox::explain::lime::Segmenter;
use glassbox::perturb::{Fill, KeepMatrix, Perturber};
use glassbox::view::View;
use glassbox::{Classifier, Compute, ModelInfo};
use serde_json::Value;

use crate::common::{data, error_lines, glassbox, scratch, text};

/// Exact Shapley values of the game `v` over `n` players (coalitions as bit sets), by the
/// definition: φᵢ = Σ_{S ∌ i} |S|! (n − |S| − 1)! / n! · (v(S ∪ i) − v(S)).
fn exact_shapley(n: usize, v: impl Fn(u32) -> f64) -> Vec<f64> {
    let fact = |k: usize| (1..=k).map(|x| x as f64).product::<f64>();
    (0..n)
        .map(|i| {
            (0u32..1 << n)
                .filter(|s| s & (1 << i) == 0)
                .map(|s| {
                    let k = s.count_ones() as usize;
                    fact(k) * fact(n - k - 1) / fact(n) * (v(s | 1 << i) - v(s))
                })
                .sum()
        })
        .collect()
}

fn bits(row: &[u8]) -> u32 {
    row.iter()
        .enumerate()
        .map(|(j, b)| u32::from(*b) << j)
        .sum()
}

fn values(c: &Coalitions, v: impl Fn(&[u8]) -> f64) -> Vec<f64> {
    (0..c.len()).map(|i| v(c.row(i))).collect()
}

#[test]
fn a_budget_of_every_coalition_enumerates_each_once() {
    for s in [2, 3, 4, 7, 8, 9] {
        let budget = Samples::Count(100_000).resolve(s);
        assert_eq!(budget, (1 << s) - 2, "capped at 2^S − 2 for S = {s}");
        let c = coalitions(0, s, budget);
        assert!(c.exact, "S = {s}");
        assert_eq!(c.len(), budget);
        assert_eq!(c.enumerated, budget);
        let mut seen: Vec<u32> = (0..c.len()).map(|i| bits(c.row(i))).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), budget, "every coalition once");
        assert!(!seen.contains(&0) && !seen.contains(&((1 << s) - 1)));
        let total: f64 = c.weights.iter().sum();
        assert!((total - 1.0).abs() < 1e-12, "weights sum to {total}");
    }
    assert_eq!(Samples::Auto.resolve(40), 2 * 40 + 2048);
    assert_eq!(Samples::Auto.resolve(9), 510);
}

#[test]
fn sampled_coalitions_come_with_their_complements_and_are_seeded() {
    let (s, budget) = (40, Samples::Auto.resolve(40));
    let a = coalitions(7, s, budget);
    assert!(!a.exact);
    assert_eq!(a.len(), budget);
    assert!(a.enumerated > 0 && a.enumerated < budget);
    let total: f64 = a.weights.iter().sum();
    assert!((total - 1.0).abs() < 1e-9, "weights sum to {total}");
    // After the enumerated sizes, random coalitions of paired sizes come in complement pairs.
    let mut i = a.enumerated;
    let mut pairs = 0;
    while i + 1 < a.len() {
        let (x, y) = (a.row(i), a.row(i + 1));
        if x.iter().zip(y).all(|(p, q)| p + q == 1) {
            pairs += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    assert!(
        pairs * 2 >= (a.len() - a.enumerated) * 9 / 10,
        "{pairs} pairs"
    );
    assert_eq!(a, coalitions(7, s, budget), "same seed, same coalitions");
    assert_ne!(a.rows, coalitions(8, s, budget).rows, "another seed");
}

/// `tests/data/kernelshap_fixture.json` (made by `make_kernelshap_fixture.py` with Python shap's
/// KernelExplainer after `np.random.seed(seed)`): the same seed draws the same coalitions, in the
/// same order, with the same weights.
#[test]
fn the_coalitions_are_those_python_shap_draws_for_the_seed() {
    let fx: Value =
        serde_json::from_slice(&std::fs::read(data("kernelshap_fixture.json")).expect("fixture"))
            .expect("JSON");
    let cases = fx["cases"].as_array().expect("cases");
    assert!(cases.len() >= 4);
    for case in cases {
        let number = |k: &str| case[k].as_u64().expect("number") as usize;
        let (s, n, seed) = (number("segments"), number("nsamples"), number("seed"));
        let c = coalitions(seed as u32, s, Samples::Count(n).resolve(s));
        let rows: Vec<Vec<u8>> = case["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .map(|b| b.as_u64().expect("bit") as u8)
                    .collect()
            })
            .collect();
        assert_eq!(c.len(), rows.len(), "S = {s}, nsamples {n}, seed {seed}");
        for (i, want) in rows.iter().enumerate() {
            assert_eq!(c.row(i), want.as_slice(), "S = {s}, seed {seed}, row {i}");
        }
        for (i, w) in case["weights"]
            .as_array()
            .expect("weights")
            .iter()
            .enumerate()
        {
            let w = w.as_f64().expect("weight");
            assert!(
                (c.weights[i] - w).abs() < 1e-12,
                "S = {s}, weight {i}: {} vs {w}",
                c.weights[i]
            );
        }
    }
}

#[test]
fn additive_games_get_their_exact_shapley_values_from_sampled_coalitions() {
    for (s, samples) in [
        (60, Samples::Auto),
        (25, Samples::Count(300)),
        (12, Samples::Count(200)),
    ] {
        let c = coalitions(3, s, samples.resolve(s));
        assert!(!c.exact, "S = {s} is sampled, not enumerated");
        let a: Vec<f64> = (0..s)
            .map(|j| ((j * 37 % 11) as f64 - 5.0) / 17.0)
            .collect();
        let base = 0.25;
        let v = |z: &[u8]| base + z.iter().zip(&a).map(|(z, a)| *z as f64 * a).sum::<f64>();
        let fx = base + a.iter().sum::<f64>();
        let (phi, _) = solve(&c, &values(&c, v), fx, base).expect("solve");
        for (j, (p, want)) in phi.iter().zip(&a).enumerate() {
            assert!(
                (p - want).abs() < 1e-9,
                "S = {s}, φ[{j}] = {p}, exact {want}"
            );
        }
    }
}

#[test]
fn every_coalition_gives_exact_shapley_values_of_any_game() {
    // A game with interactions: an additive part, a square and a pairwise product.
    for s in [5, 6, 9] {
        let a: Vec<f64> = (0..s).map(|j| (j as f64 + 1.0) / 10.0).collect();
        let v = |set: u32| {
            let sum: f64 = (0..s).filter(|j| set & (1 << j) != 0).map(|j| a[j]).sum();
            let pair = f64::from((set & 0b11 == 0b11) as u8);
            0.1 + sum * sum - 0.7 * pair
        };
        let c = coalitions(0, s, Samples::Auto.resolve(s));
        assert!(c.exact);
        let (phi, _) =
            solve(&c, &values(&c, |z| v(bits(z))), v((1 << s) - 1), v(0)).expect("solve");
        let want = exact_shapley(s, v);
        for (j, (p, w)) in phi.iter().zip(&want).enumerate() {
            assert!((p - w).abs() < 1e-9, "S = {s}, φ[{j}] = {p}, exact {w}");
        }
    }
}

#[test]
fn on_the_planted_model_every_coalition_gives_the_enumerated_shapley_values() {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let photo = glassbox::view::load_photo(&data("coffee.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let options = KernelShapOptions {
        samples: Samples::Count(1000),
        segmenter: Segmenter::Grid(3),
        ..KernelShapOptions::default()
    };
    let e = kernel_shap(&classifier, &view, &options).expect("kernelshap");
    let s = e.segmentation.count();
    assert_eq!(s, 9);
    assert!(e.exact, "1000 ≥ 2^9 − 2: every coalition");
    assert_eq!(e.samples, 510);
    assert_eq!(e.class, 0, "the planted class wins on coffee.png");

    // Brute force: all 512 coalitions through the same Perturber.
    let perturber =
        Perturber::new(&classifier, &view.rgb, &e.segmentation, Fill::Black).expect("perturber");
    let mut keep = KeepMatrix::new(s);
    for set in 0u32..1 << s {
        keep.push_row(&(0..s).map(|j| set & (1 << j) != 0).collect::<Vec<_>>());
    }
    let p = perturber.run_columns(&keep, Some(&[0])).expect("classify");
    let v = |set: u32| p.row(set as usize)[0] as f64;
    // p = σ(20·m − 2) is not additive over the segments: the test could fail.
    let singles: f64 = (0..s).map(|j| v(1 << j) - v(0)).sum();
    let full = v((1 << s) - 1) - v(0);
    assert!(
        (full - singles).abs() > 1e-2,
        "interaction {}",
        full - singles
    );
    let want = exact_shapley(s, v);
    for (j, (got, w)) in e.phi.iter().zip(&want).enumerate() {
        assert!((got - w).abs() < 1e-4, "φ[{j}] = {got}, exact {w}");
    }
    // The window (view rows and columns 69..138) lies in cells 0, 1, 3, 4 of the 3×3 grid.
    for j in [2, 5, 6, 7, 8] {
        assert!(
            e.phi[j].abs() < 1e-4,
            "φ[{j}] = {} outside the window",
            e.phi[j]
        );
    }
    assert!(want[4] > 0.05, "the central cell matters: {}", want[4]);
    let difference = e.probability as f64 - e.base_value as f64;
    assert!((e.phi_sum() - difference).abs() < 1e-5);
}

#[test]
fn sampled_kernelshap_is_reproducible_efficient_and_finds_the_planted_window() {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let photo = glassbox::view::load_photo(&data("coffee.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let options = KernelShapOptions {
        segmenter: Segmenter::Grid(10),
        seed: 5,
        ..KernelShapOptions::default()
    };
    let a = kernel_shap(&classifier, &view, &options).expect("kernelshap");
    assert_eq!(a.segmentation.count(), 100);
    assert!(!a.exact);
    assert_eq!(a.samples, 2 * 100 + 2048, "auto");
    let difference = a.probability as f64 - a.base_value as f64;
    assert!(
        (a.phi_sum() - difference).abs() < 1e-5,
        "Σφ {} against f(x) − f(fill) {difference}",
        a.phi_sum()
    );
    let b = kernel_shap(&classifier, &view, &options).expect("kernelshap");
    assert_eq!(a.phi, b.phi, "same seed, same φ");
    assert_eq!(a.kept, b.kept);
    let c = kernel_shap(
        &classifier,
        &view,
        &KernelShapOptions { seed: 6, ..options },
    )
    .expect("kernelshap");
    assert_ne!(a.phi, c.phi, "another seed, another sample");
    assert!((c.phi_sum() - difference).abs() < 1e-5);
    let window = crate::common::planted_centre_cells();
    let top = glassbox::explain::kernelshap::positive(&a.phi, 5);
    assert_eq!(top.len(), 5);
    for s in &top {
        assert!(
            window.contains(s),
            "segment {s} outside the window (top {top:?})"
        );
    }
}

#[test]
fn kernelshap_from_the_command_line_and_its_bad_flags() {
    let out = scratch("kernelshap_cli");
    let image = data("coffee.png");
    let image = image.to_str().expect("utf-8");
    let run = glassbox(&[
        "explain",
        "--device",
        "cpu",
        "--out",
        out.to_str().expect("utf-8"),
        "--method",
        "kernelshap",
        "--model",
        "planted-centre",
        "--segments",
        "grid",
        "--grid",
        "4",
        "--samples",
        "100",
        "--seed",
        "2",
        image,
    ]);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("Σφ"), "{stderr}");
    for suffix in [
        "masked.png",
        "mask.png",
        "heatmap.png",
        "faithfulness.png",
        "json",
    ] {
        assert!(
            out.join(format!("coffee.planted-centre.kernelshap.{suffix}"))
                .exists(),
            "{suffix}"
        );
    }
    let doc: Value = serde_json::from_slice(
        &std::fs::read(out.join("coffee.planted-centre.kernelshap.json")).expect("json"),
    )
    .expect("JSON");
    assert_eq!(doc["method"], "kernelshap");
    assert_eq!(doc["parameters"]["samples"], "100");
    assert_eq!(doc["parameters"]["seed"], 2);
    assert_eq!(doc["samples_used"], 100);
    assert_eq!(doc["phi"].as_array().expect("phi").len(), 16);
    let sum = doc["phi_sum"].as_f64().expect("sum");
    let difference = doc["fx_minus_base"].as_f64().expect("difference");
    assert!((sum - difference).abs() < 1e-5);
    assert!(doc["faithfulness"].is_object(), "faithfulness measured");
    assert!(doc["timings_s"]["perturb_classify"].as_f64().expect("time") > 0.0);

    for (flags, part) in [
        (
            vec!["--method", "kernelshap", "--samples", "0"],
            "--samples 0",
        ),
        (
            vec!["--method", "kernelshap", "--fill", "grey"],
            "black or mean",
        ),
        (
            vec!["--method", "elbow", "--samples", "auto"],
            "--samples auto",
        ),
        (
            vec!["--method", "rise", "--samples", "auto"],
            "--samples auto",
        ),
        (
            vec![
                "--method",
                "lime",
                "--samples",
                "auto",
                "--max-samples",
                "1",
            ],
            "--max-samples 1",
        ),
    ] {
        let mut args = vec![
            "explain",
            "--device",
            "cpu",
            "--out",
            out.to_str().expect("utf-8"),
        ];
        args.extend(flags.iter().copied());
        args.push(image);
        let run = glassbox(&args);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{flags:?}: {stderr}");
        let errors = error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{flags:?}: {stderr}");
        assert!(errors[0].contains(part), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn kernelshap_in_compare() {
    let out = scratch("kernelshap_compare");
    let image = data("coffee.png");
    let run = glassbox(&[
        "compare",
        "--device",
        "cpu",
        "--out",
        out.to_str().expect("utf-8"),
        "--a",
        "planted-centre:kernelshap",
        "--b",
        "planted-centre:elbow",
        "--segments",
        "grid",
        "--samples",
        "64",
        image.to_str().expect("utf-8"),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let doc: Value = serde_json::from_slice(
        &std::fs::read(out.join("coffee.planted-centre-kernelshap.vs.planted-centre-elbow.json"))
            .expect("json"),
    )
    .expect("JSON");
    assert!(doc.to_string().contains("kernelshap"));
}
