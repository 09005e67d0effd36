//! What is explained (`--target`): the class's probability, its logit, or a group's summed
//! probability, for every method.

use glassbox::explain::{self, Explainer, Method, OcclusionOptions, ViewCache};
use glassbox::target::GROUPS;
use glassbox::view::{View, load_photo};
use glassbox::{Classifier, Compute, ModelInfo, Target};
use serde_json::Value;

use crate::common::{data, error_lines, glassbox, path_str, scratch, text};

fn lite0() -> (Classifier, View) {
    let info = ModelInfo::find("efficientnet-lite0").expect("lite0");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let photo = load_photo(&data("chelsea.png")).expect("decode");
    let view = View::new(&photo.rgb, info.preprocess());
    (classifier, view)
}

fn input(classifier: &Classifier, view: &View) -> Vec<f32> {
    glassbox::view::to_input(&view.rgb, classifier.info().preprocess())
}

#[test]
fn targets_parse_from_the_command_lines_spelling() {
    assert_eq!(
        "probability".parse::<Target>().ok(),
        Some(Target::Probability)
    );
    assert_eq!("logit".parse::<Target>().ok(), Some(Target::Logit));
    let Ok(Target::Group { name, classes }) = "group:cat".parse::<Target>() else {
        panic!("group:cat")
    };
    assert_eq!((name, classes), ("cat", vec![281, 282, 283, 284, 285]));
    let Ok(Target::Group { classes, .. }) = "group:9,3,3".parse::<Target>() else {
        panic!("indices")
    };
    assert_eq!(classes, vec![3, 9]);
    for bad in ["", "prob", "group:", "group:cats", "group:1,x", "group:-1"] {
        assert!(bad.parse::<Target>().is_err(), "{bad}");
    }
    // Every built-in group is a set of ImageNet classes, each named by its synset.
    for (name, synset, ranges) in GROUPS {
        assert!(synset.ends_with(".n.01"), "{name}");
        assert!(
            ranges
                .iter()
                .all(|r| *r.end() < 1000 && r.start() <= r.end()),
            "{name}"
        );
    }
}

#[test]
fn a_group_is_one_more_column_holding_its_members_summed_probability() {
    let (mut classifier, view) = lite0();
    let x = input(&classifier, &view);
    let plain = classifier.classify(&x).expect("classify");
    classifier
        .set_target("group:cat".parse().expect("target"))
        .expect("set");
    assert_eq!(classifier.outputs(), 1001);
    assert_eq!(classifier.group_index(), Some(1000));
    assert_eq!(classifier.label(1000), Some("cat"));
    assert_eq!(classifier.quantity(1000), "p(group cat)");
    let grouped = classifier.classify(&x).expect("classify");
    assert_eq!(grouped.classes(), 1001);
    let sum: f64 = (281..=285).map(|c| plain.row(0)[c] as f64).sum();
    assert!((grouped.row(0)[1000] as f64 - sum).abs() < 1e-6);
    assert_eq!(&grouped.row(0)[..1000], plain.row(0));
    // Rankings stay over the model's classes.
    assert_eq!(grouped.argmax(0), plain.argmax(0));
    assert!(grouped.top(0, 1000).iter().all(|p| p.class < 1000));
}

#[test]
fn the_logit_target_hands_back_the_models_logits() {
    let (mut classifier, view) = lite0();
    let x = input(&classifier, &view);
    let probabilities = classifier.classify(&x).expect("classify");
    classifier.set_target(Target::Logit).expect("set");
    let logits = classifier.classify(&x).expect("classify");
    let row = logits.row(0);
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let total: f64 = row.iter().map(|v| (*v as f64 - max).exp()).sum();
    for (l, p) in row.iter().zip(probabilities.row(0)) {
        let softmax = (*l as f64 - max).exp() / total;
        assert!((softmax - *p as f64).abs() < 1e-6, "{softmax} vs {p}");
    }
    // A model that outputs probabilities has no logits.
    for model in
        ModelInfo::all().filter(|m| m.output() == glassbox::model::OutputKind::Probabilities)
    {
        let mut c = Classifier::load(model, &Compute::cpu()).expect("load");
        assert!(c.set_target(Target::Logit).is_err(), "{}", model.id());
    }
}

#[test]
fn every_method_explains_a_group() {
    let (mut classifier, view) = lite0();
    classifier
        .set_target("group:cat".parse().expect("target"))
        .expect("set");
    let occlusion = OcclusionOptions {
        class: Some(1000),
        ..OcclusionOptions::default()
    };
    let explainers = [
        Explainer::Occlusion {
            method: Method::Arbitrary { fraction: 0.7 },
            options: occlusion,
        },
        Explainer::Sliding(glassbox::explain::sliding::SlidingOptions {
            class: Some(1000),
            ..Default::default()
        }),
        Explainer::Lime(glassbox::explain::lime::LimeOptions {
            samples: 60,
            class: Some(1000),
            ..Default::default()
        }),
        Explainer::Rise(glassbox::explain::rise::RiseOptions {
            masks: 40,
            class: Some(1000),
            ..Default::default()
        }),
    ];
    let mut cache = ViewCache::default();
    for explainer in &explainers {
        let e = explain::run(&classifier, &view, explainer, &mut cache).expect("explain");
        assert_eq!(e.class(), 1000, "{}", explainer.name());
        let a = e.attribution();
        assert!(
            a.probability > 0.8,
            "{}: p(group cat) {}",
            explainer.name(),
            a.probability
        );
    }
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = glassbox(args);
    (out.status.code(), text(&out.stderr))
}

#[test]
fn target_flags_refuse_bad_input_with_one_line() {
    let out = scratch("target_bad_flags");
    let image = data("chelsea.png");
    for (flags, part) in [
        (vec!["--target", "prob"], "--target prob"),
        (vec!["--target", "group:cats"], "unknown group"),
        (vec!["--target", "group:281,1000"], "class 1000"),
        (vec!["--target", "group:cat", "--class", "3"], "--class"),
        (
            vec!["--target", "logit", "--model", "googlenet"],
            "outputs probabilities",
        ),
    ] {
        let mut args = vec!["explain", "--device", "cpu", "--out", path_str(&out)];
        args.extend(&flags);
        args.push(path_str(&image));
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(2), "{flags:?}: {stderr}");
        assert_eq!(error_lines(&stderr).len(), 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(part), "{flags:?}: {stderr}");
    }
}

#[test]
fn explain_records_its_target_and_explains_the_group() {
    let out = scratch("target_cli");
    let image = data("chelsea.png");
    let explain = |dir: &str, extra: &[&str]| -> Value {
        let dir = out.join(dir);
        let mut args = vec![
            "explain", "--device", "cpu", "--method", "elbow", "--steps", "4",
        ];
        args.extend(extra);
        args.extend(["--out", path_str(&dir), path_str(&image)]);
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(0), "{stderr}");
        let file = dir.join("chelsea.efficientnet-lite0.elbow.json");
        serde_json::from_slice(&std::fs::read(file).expect("json")).expect("JSON")
    };
    let plain = explain("plain", &[]);
    let group = explain("group", &["--target", "group:cat"]);
    let logit = explain("logit", &["--target", "logit"]);
    assert!(plain.get("target").is_none());
    assert_eq!(group["target"]["kind"], "group");
    assert_eq!(
        group["target"]["classes"],
        serde_json::json!([281, 282, 283, 284, 285])
    );
    assert_eq!(group["class"]["index"], 1000);
    assert_eq!(group["class"]["label"], "cat");
    // p(group cat) is the sum of the five cats' probabilities of the unoccluded view.
    let p = |doc: &Value, i: usize| doc["base_top"][i]["probability"].as_f64().expect("p");
    let top3: f64 = (0..3).map(|i| p(&plain, i)).sum();
    let group_p = group["class"]["probability"].as_f64().expect("p");
    assert!(group_p > top3 && group_p <= 1.0, "{group_p} vs {top3}");
    // The same class, its logit: larger than any probability.
    assert_eq!(logit["target"]["kind"], "logit");
    assert_eq!(logit["class"]["index"], plain["class"]["index"]);
    assert!(logit["class"]["probability"].as_f64().expect("logit") > 1.0);
    // The group's explanation is a different one: hiding the eyes no longer helps.
    assert_ne!(group["mask"], plain["mask"]);
}
