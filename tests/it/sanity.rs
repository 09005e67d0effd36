//! The model-randomisation sanity check: Spearman's rank correlation against hand-computed
//! values, the randomised twin (deterministic, not the model), and the `sanity` command.

use glassbox::explain::{Explainer, Method, OcclusionOptions};
use glassbox::metrics::sanity::{sanity_check, similarity, spearman};
use glassbox::model::{Precision, Weights};
use glassbox::view::{View, load_photo};
use glassbox::{Classifier, Compute, ModelInfo};
use serde_json::Value;

use crate::common::{data, error_lines, glassbox, path_str, scratch, text};

#[test]
fn spearman_matches_hand_computed_ranks_with_ties() {
    // Ranks of b with the tie shared: [1, 2, 3.5, 5, 3.5]; Pearson of the ranks = 8 / √95
    // (scipy.stats.spearmanr gives 0.8207826816681233).
    let (a, b) = ([1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 6.0, 7.0, 8.0, 7.0]);
    let r = spearman(&a, &b).expect("same length");
    assert!((r - 8.0 / 95f64.sqrt()).abs() < 1e-12, "{r}");
    assert!((spearman(&a, &[9.0, 7.0, 5.0, 3.0, 1.0]).expect("ok") + 1.0).abs() < 1e-12);
    assert_eq!(spearman(&a, &[2.0; 5]).expect("ok"), 0.0, "a constant side");
    assert!(spearman(&a, &[1.0; 4]).is_err());
}

fn load(weights: Weights) -> Classifier {
    Classifier::load_weights(
        ModelInfo::default_model(),
        &Compute::cpu(),
        Precision::F32,
        weights,
    )
    .expect("load")
}

/// The twin is the same network under other weights: deterministic across loads, and not the
/// model (on chelsea the model is sure of a cat; the twin is not).
#[test]
fn the_randomised_twin_is_deterministic_and_not_the_model() {
    let info = ModelInfo::default_model();
    let photo = load_photo(&data("chelsea.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let input = glassbox::view::to_input(&view.rgb, info.preprocess());
    let model = load(Weights::Own).classify(&input).expect("model");
    let twin = load(Weights::Randomised);
    assert_eq!(twin.weights(), Weights::Randomised);
    let first = twin.classify(&input).expect("twin");
    let again = load(Weights::Randomised)
        .classify(&input)
        .expect("twin again");
    assert_eq!(first.row(0), again.row(0), "the same twin on every load");
    let top = model.argmax(0);
    assert!(model.row(0)[top] > 0.3, "the model sees the cat");
    let gap: f32 = model
        .row(0)
        .iter()
        .zip(first.row(0))
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(gap > 0.5, "the twin predicts otherwise (L1 gap {gap})");
}

/// Occlusion explains the model: with its weights randomised the explanation of the same class
/// changes, so the two maps are far from the same order; an explanation compared with itself
/// is identical.
#[test]
fn occlusion_passes_the_sanity_check_on_the_default_model() {
    let info = ModelInfo::default_model();
    let photo = load_photo(&data("chelsea.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let (model, twin) = (load(Weights::Own), load(Weights::Randomised));
    let explainer = Explainer::Occlusion {
        method: Method::Statistical { k: 1.0 },
        options: OcclusionOptions::default(),
    };
    let check = sanity_check(&model, &twin, &view, &explainer).expect("check");
    assert_eq!(check.model.class(), check.twin.class(), "the same class");
    let s = &check.sanity;
    assert!(s.correlation < 0.5, "Spearman {}", s.correlation);
    let itself = similarity(&check.model.attribution(), &check.model.attribution()).expect("same");
    assert_eq!((itself.correlation, itself.jaccard), (1.0, 1.0));
    assert!(
        sanity_check(&model, &model, &view, &explainer).is_err(),
        "needs the twin"
    );
}

#[test]
fn sanity_writes_both_heatmaps_and_refuses_synthetic_models() {
    let out = scratch("sanity-cli");
    let chelsea = data("chelsea.png");
    let run = glassbox(&[
        "sanity",
        path_str(&chelsea),
        "--device",
        "cpu",
        "--method",
        "statistical",
        "--out",
        path_str(&out),
    ]);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("Spearman"), "{stderr}");
    let base = "chelsea.efficientnet-lite0.statistical.sanity";
    let doc: Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{base}.json"))).expect("json"))
            .expect("parse");
    let r = doc["sanity"]["spearman"].as_f64().expect("spearman");
    assert!((-1.0..=1.0).contains(&r));
    assert_eq!(
        doc["explanation"]["class"]["index"],
        doc["twin_explanation"]["class"]["index"]
    );
    let png = image::open(out.join(format!("{base}.png"))).expect("png");
    assert!(png.width() > 2 * 224, "two heatmaps side by side");

    // The zoo and torchvision models are built with synthetic weights wherever their files
    // cannot be downloaded (CI included).
    if let Some(synthetic) = ModelInfo::all().find(|m| m.synthetic()) {
        let run = glassbox(&[
            "sanity",
            path_str(&chelsea),
            "--device",
            "cpu",
            "--model",
            synthetic.id(),
            "--out",
            path_str(&out),
        ]);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        let errors = error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains("synthetic weights already"), "{stderr}");
    }
}
