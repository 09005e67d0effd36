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

/// A real refusal by the adapter: variants whose chunk exceeds the adapter's storage-buffer limit
/// (lavapipe: 128 MiB) are retried in halves and give the CPU's result. Runs where the limit is
/// small enough to exceed cheaply (lavapipe in CI); a large GPU would need gigabytes.
#[test]
fn a_chunk_over_the_adapters_buffer_limit_is_retried_in_halves() {
    use glassbox::perturb::{Fill, KeepMatrix, Perturber};
    use glassbox::segment::Segmentation;
    use glassbox::view::View;
    let Some(compute) = gpu() else { return };
    let per_sample = 3 * 224 * 224 * 4u64;
    if compute.max_buffer_bytes() > 512 << 20 {
        eprintln!(
            "SKIPPED: the adapter's {} MiB buffer limit is too large to exceed cheaply",
            compute.max_buffer_bytes() >> 20
        );
        return;
    }
    let rows = (2 * compute.max_buffer_bytes() / per_sample + 1) as usize;
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let photo = crate::common::pattern(3, 224, 224);
    let view = View::new(&photo, info.preprocess());
    let segmentation = Segmentation::grid(224, 224, 10).expect("grid");
    let mut keep = KeepMatrix::new(100);
    for r in 0..rows {
        keep.push_hiding(&[r % 100, (r * 7) % 100]);
    }
    let cpu = Classifier::load(info, &Compute::cpu()).expect("cpu");
    let expected = Perturber::new(&cpu, &view.rgb, &segmentation, Fill::Black)
        .expect("cpu perturber")
        .run(&keep)
        .expect("cpu run");
    let mut gpu = Classifier::load(info, &compute).expect("gpu");
    gpu.set_chunk_size(rows);
    let got = Perturber::new(&gpu, &view.rgb, &segmentation, Fill::Black)
        .expect("gpu perturber")
        .run(&keep)
        .expect("halved until the adapter accepts the chunk");
    assert_eq!(got.rows(), rows);
    assert!(
        gpu.refused_chunks() >= 1,
        "the adapter accepted {rows} rows over its limit"
    );
    assert!(gpu.chunk_size() < rows);
    for r in 0..rows {
        for (a, b) in got.row(r).iter().zip(expected.row(r)) {
            assert!((a - b).abs() < 1e-4, "row {r}: {a} vs {b}");
        }
    }
}

/// Dense convolutions as sums of per-tap matrix products (`glassbox::model::gpu`) equal burn's
/// own GPU kernel: GoogLeNet's 3×3 shapes, a strided and asymmetrically padded one, with and
/// without bias.
#[test]
fn tap_sum_convolutions_equal_burns_kernel_on_the_gpu() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Tensor, TensorData};
    let Some(compute) = gpu() else { return };
    let device = compute.device();
    let cases = [
        ([16, 8], [3, 3], 1, [1, 1, 1, 1], true, [2, 16, 12, 12]),
        ([24, 5], [3, 3], 2, [1, 0, 2, 1], true, [1, 24, 11, 9]),
        ([16, 4], [5, 5], 1, [2, 2, 2, 2], false, [2, 16, 7, 8]),
        ([32, 6], [3, 3], 1, [0, 0, 0, 0], true, [1, 32, 6, 6]),
    ];
    for ([cin, cout], kernel, stride, [t, l, b, r], bias, shape) in cases {
        let conv = Conv2dConfig::new([cin, cout], kernel)
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(t, l, b, r))
            .with_bias(bias)
            .init(device);
        let len: usize = shape.iter().product();
        let values: Vec<f32> = (0..len)
            .map(|i| ((i * 7919 % 1009) as f32) / 504.5 - 1.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, shape), device);
        let got = glassbox::model::gpu::conv2d(&conv, &x).expect("the tap sum applies");
        let want = conv.forward(x);
        assert_eq!(got.dims(), want.dims());
        let got: Vec<f32> = got.into_data().try_to_vec().expect("f32");
        let want: Vec<f32> = want.into_data().try_to_vec().expect("f32");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{cin}->{cout} {kernel:?} stride {stride}: element {i}: {a} vs {b}"
            );
        }
    }
}
