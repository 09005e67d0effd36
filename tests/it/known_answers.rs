//! The real default model recognises the committed photos.

use glassbox::view::{View, load_photo, to_input};
use glassbox::{Classifier, Compute, ModelInfo};

use crate::common::data;

fn top1(image: &str) -> (usize, f32) {
    let info = ModelInfo::default_model();
    let photo = load_photo(&data(image)).expect("decode");
    let view = View::new(&photo.rgb, info.preprocess());
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let probs = classifier
        .classify(&to_input(&view.rgb, info.preprocess()))
        .expect("classify");
    let p = probs.top(0, 1)[0];
    (p.class, p.probability)
}

#[test]
fn default_model_is_real_efficientnet_lite0() {
    let info = ModelInfo::default_model();
    assert_eq!(info.id(), "efficientnet-lite0");
    assert!(!info.synthetic());
    assert!(info.embedded());
    assert_eq!(info.label(281), Some("tabby, tabby cat"));
    assert_eq!(info.class_index("espresso").expect("espresso"), 967);
    assert!(info.class_index("1000").is_err());
    assert!(info.class_index("no such thing").is_err());
}

#[test]
fn chelsea_is_a_cat() {
    let (class, p) = top1("chelsea.png");
    // tabby, tiger cat, Egyptian cat
    assert!(
        [281, 282, 285].contains(&class),
        "chelsea.png → class {class} ({p})"
    );
}

#[test]
fn coffee_is_espresso() {
    let (class, p) = top1("coffee.png");
    assert_eq!(class, 967, "coffee.png → class {class} ({p})");
    assert!(p > 0.5, "espresso with probability {p}");
}
