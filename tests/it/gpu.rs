//! The wgpu path for real: parity with onnxruntime on whatever adapter exists (lavapipe in CI).
//!
//! Where no adapter exists these tests skip, except under CI (`CI` set), where a missing
//! adapter is a failure: a skipped GPU test proves nothing.

use glassbox::{Classifier, Compute, DeviceRequest, ModelInfo};

use crate::parity::{assert_matches, expected_probabilities, parity_inputs};

pub fn gpu() -> Option<Compute> {
    match Compute::select(DeviceRequest::Gpu) {
        Ok((compute, _)) => Some(compute),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI must provide a wgpu adapter (lavapipe): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no wgpu adapter ({e})");
            None
        }
    }
}

#[test]
fn efficientnet_lite0_on_wgpu_matches_onnxruntime() {
    let Some(compute) = gpu() else { return };
    assert!(compute.is_gpu());
    let info = ModelInfo::default_model();
    let classifier = Classifier::load(info, &compute).expect("load on wgpu");
    let probs = classifier
        .classify(&parity_inputs(&info, 2))
        .expect("classify on wgpu");
    assert_matches(info.id(), &probs, &expected_probabilities(info.id()));
}

#[test]
fn wgpu_chunks_are_sized_from_the_adapter() {
    let Some(compute) = gpu() else { return };
    assert!(compute.max_buffer_bytes() > 0);
    let info = ModelInfo::find("googlenet").expect("googlenet");
    let classifier = Classifier::load(info, &compute).expect("load");
    assert_eq!(
        classifier.chunk_size(),
        compute.chunk_for(info.max_elems_per_sample())
    );
    assert!(
        classifier.chunk_size() as u64 * info.max_elems_per_sample() * 4
            <= compute.max_buffer_bytes()
    );
}
