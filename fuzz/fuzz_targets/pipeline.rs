//! Arbitrary bytes through decode → view → segmentation → perturbation → a tiny model.
//!
//! The first two bytes steer the run (segmenter, fill, grid); the rest is the image file. Every
//! step must either refuse the input with an error or produce well-formed results: no panic, no
//! hang, no unbounded allocation, no non-finite probability.

#![no_main]

use glassbox::perturb::{Fill, KeepMatrix, Perturber};
use glassbox::segment::Segmentation;
use glassbox::segment::quickshift::Quickshift;
use glassbox::segment::slic::Slic;
use glassbox::view::{View, decode_bytes};
use glassbox::{Classifier, Compute, ModelInfo};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static MODEL: Classifier = {
        let info = ModelInfo::find("planted-centre").expect("the planted fixture is built in");
        Classifier::load(info, &Compute::cpu()).expect("the fixture loads")
    };
}

fuzz_target!(|data: &[u8]| {
    let [a, b, image @ ..] = data else {
        return;
    };
    let Ok(photo) = decode_bytes(image) else {
        return;
    };
    let (w, h) = photo.rgb.dimensions();
    assert!(w > 0 && h > 0, "decoded an empty image");

    // Superpixels of the photo itself, when small enough to be quick.
    if u64::from(w) * u64::from(h) <= 48 * 48 {
        let labels = if a % 2 == 0 {
            Quickshift::default().segment(&photo.rgb)
        } else {
            Slic::default().segment(&photo.rgb)
        };
        let segmentation = Segmentation::from_labels(w, h, labels).expect("labels are 0..S-1");
        assert!(segmentation.count() >= 1);
    }

    let info = ModelInfo::find("planted-centre").expect("fixture");
    let view = View::new(&photo.rgb, info.preprocess());
    let (vw, vh) = view.rgb.dimensions();
    let grid = 1 + u32::from(*b) % 30;
    let segmentation = Segmentation::grid(vw, vh, grid).expect("a grid fits the view");
    let fill = match (a / 2) % 4 {
        0 => Fill::Black,
        1 => Fill::Grey,
        2 => Fill::Mean,
        _ => Fill::Blur(0.5 + f32::from(b % 8)),
    };
    MODEL.with(|classifier| {
        let perturber = Perturber::new(classifier, &view.rgb, &segmentation, fill)
            .expect("view, segmentation and model agree");
        let mut keep = KeepMatrix::new(segmentation.count());
        keep.push_all();
        keep.push_hiding(&[usize::from(*b) % segmentation.count()]);
        let probs = perturber.run(&keep).expect("classify");
        assert_eq!(probs.rows(), 2);
        assert!(probs.as_slice().iter().all(|p| p.is_finite() && *p >= 0.0));
    });
});
