//! The wgpu path for real: parity with onnxruntime on whatever adapter exists (lavapipe in CI).
//!
//! Where no adapter exists these tests skip, except under CI (`CI` set), where a missing
//! adapter is a failure: a skipped GPU test proves nothing.

use glassbox::{Classifier, Compute, DeviceRequest, ModelInfo};

use crate::parity::{assert_matches, expected_probabilities, parity_inputs};

/// Held by the tests that make the device fail on purpose (a buffer over the limit, a kernel
/// over the adapter's resources) and by those that need glassbox's kernels to launch: a
/// failure of other work in flight can show in a kernel's first-launch check, which would then
/// hand that kernel to burn for the rest of the process (slower, never wrong) and fail a test
/// that expects it to run.
pub static DEVICE_FAILURES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn device_failures() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_FAILURES.lock().unwrap_or_else(|e| e.into_inner())
}

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
    let _serial = device_failures();
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

/// Dense convolutions as matrix products (`glassbox::model::gpu`), as sums of per-tap products
/// and over im2col blocks, equal burn's own GPU kernel: GoogLeNet's 3×3 shapes, a strided and
/// asymmetrically padded one, a 5×5, with and without bias. The im2col path also runs with a
/// buffer limit that fits one image's block only, so that it splits the batch.
#[test]
fn matrix_product_convolutions_equal_burns_kernel_on_the_gpu() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Tensor, TensorData};
    use glassbox::model::gpu::{conv2d_im2col, conv2d_taps};
    let Some(compute) = gpu() else { return };
    let device = compute.device();
    let cases = [
        ([16, 8], [3, 3], 1, [1, 1, 1, 1], true, [2, 16, 12, 12]),
        ([24, 5], [3, 3], 2, [1, 0, 2, 1], true, [3, 24, 11, 9]),
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
        let want = conv.forward(x.clone());
        // One image's im2col block: kh·kw·cin values per output pixel, 4 bytes each.
        let [_, _, ho, wo] = want.dims();
        let one_block = (kernel[0] * kernel[1] * cin * ho * wo * 4) as u64;
        let paths = [
            ("taps", conv2d_taps(&conv, &x)),
            ("im2col", conv2d_im2col(&conv, &x, 1 << 30)),
            (
                "im2col, one image per block",
                conv2d_im2col(&conv, &x, one_block / 3 * 4),
            ),
        ];
        let want_dims = want.dims();
        let want: Vec<f32> = want.into_data().try_to_vec().expect("f32");
        for (path, got) in paths {
            let got = got.unwrap_or_else(|| panic!("{path} applies"));
            assert_eq!(got.dims(), want_dims, "{path}");
            let got: Vec<f32> = got.into_data().try_to_vec().expect("f32");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{path}: {cin}->{cout} {kernel:?} stride {stride}: element {i}: {a} vs {b}"
                );
            }
        }
    }
    // Where burn's kernel is kept: a 1×1 convolution, and a stem over 3 channels.
    for ([cin, cout], kernel) in [([16, 8], [1, 1]), ([3, 8], [3, 3])] {
        let conv = Conv2dConfig::new([cin, cout], kernel).init(device);
        let x = Tensor::<4>::zeros([1, cin, 8, 8], device);
        assert!(conv2d_taps(&conv, &x).is_none() && conv2d_im2col(&conv, &x, 1 << 30).is_none());
    }
}

/// The adapter, when its shaders compute in f16 (lavapipe's do); under CI an adapter without
/// them is a failure, as a missing adapter is.
/// `conv` with its weights and bias cast to `dtype` (rounded, for f16).
fn conv_as(conv: &burn::nn::conv::Conv2d, dtype: burn::tensor::DType) -> burn::nn::conv::Conv2d {
    let mut cast = conv.clone();
    cast.weight = burn::module::Param::from_tensor(conv.weight.val().cast(dtype));
    cast.bias = conv
        .bias
        .as_ref()
        .map(|b| burn::module::Param::from_tensor(b.val().cast(dtype)));
    cast
}

/// `linear` with its weights and bias cast to `dtype`.
fn linear_as(linear: &burn::nn::Linear, dtype: burn::tensor::DType) -> burn::nn::Linear {
    let mut cast = linear.clone();
    cast.weight = burn::module::Param::from_tensor(linear.weight.val().cast(dtype));
    cast.bias = linear
        .bias
        .as_ref()
        .map(|b| burn::module::Param::from_tensor(b.val().cast(dtype)));
    cast
}

fn gpu_with_f16() -> Option<Compute> {
    let compute = gpu()?;
    if compute.supports_f16() {
        return Some(compute);
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI's adapter must support f16 shaders: {compute}");
    }
    eprintln!("SKIPPED: {compute} has no f16 shaders");
    None
}

/// In f16 the default model stays within 5e-3 of onnxruntime's f32 probabilities and ranks the
/// same five classes first; and it does compute in f16: its probabilities are not the f32 pass's.
#[test]
fn efficientnet_lite0_in_f16_on_wgpu_stays_close_to_onnxruntime() {
    use glassbox::model::Precision;
    let Some(compute) = gpu_with_f16() else {
        return;
    };
    let info = ModelInfo::default_model();
    let inputs = parity_inputs(&info, 2);
    let f16 = Classifier::load_with(info, &compute, Precision::F16).expect("load in f16");
    assert_eq!(f16.precision(), Precision::F16);
    let half = f16.classify(&inputs).expect("classify in f16");
    let full = Classifier::load(info, &compute)
        .expect("load in f32")
        .classify(&inputs)
        .expect("classify in f32");
    let expected = expected_probabilities(info.id());
    let mut largest_change = 0f32;
    for (i, want) in expected.iter().enumerate() {
        let got = half.row(i);
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (*g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 5e-3, "row {i}: max |diff| {worst:e}");
        let mut order: Vec<usize> = (0..want.len()).collect();
        order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
        let top: Vec<usize> = half.top(i, 5).iter().map(|p| p.class).collect();
        assert_eq!(top, order[..5], "row {i}: top 5 classes");
        for (a, b) in got.iter().zip(full.row(i)) {
            largest_change = largest_change.max((a - b).abs());
        }
    }
    assert!(
        largest_change > 1e-6,
        "the f16 pass gave the f32 probabilities ({largest_change:e}): it did not run in f16"
    );
}

/// f16 halves the bytes per value, so a model whose chunks the buffer limit caps gets twice
/// as many samples per chunk (up to the cap).
#[test]
fn f16_chunks_are_sized_for_two_bytes_per_value() {
    use glassbox::model::Precision;
    let Some(compute) = gpu_with_f16() else {
        return;
    };
    let info = ModelInfo::find("googlenet").expect("googlenet");
    let small = compute.clone().with_buffer_limit(64 << 20);
    let f16 = Classifier::load_with(info, &small, Precision::F16).expect("load");
    let f32 = Classifier::load(info, &small).expect("load");
    assert_eq!(
        f16.chunk_size(),
        small.chunk_for_values(info.max_elems_per_sample(), 2)
    );
    assert!(f32.chunk_size() < 128, "not capped: {}", f32.chunk_size());
    assert!(
        f16.chunk_size() >= 2 * f32.chunk_size(),
        "{} vs {}",
        f16.chunk_size(),
        f32.chunk_size()
    );
    // Inputs arrive in f32 and are cast on the device: where the input is the largest buffer
    // (the planted fixtures), its f32 size bounds the chunk.
    let planted = ModelInfo::find("planted-centre").expect("fixture");
    let input = 3 * 224 * 224;
    assert_eq!(planted.max_elems_per_sample(), input);
    let f16 = Classifier::load_with(planted, &small, Precision::F16).expect("load");
    assert_eq!(f16.chunk_size(), small.chunk_for(input));
    assert!(f16.chunk_size() as u64 * input * 4 <= small.max_buffer_bytes());
}

/// LIME in f16 on the GPU finds the planted region, with weights close to the f32 run's.
#[test]
fn lime_in_f16_finds_the_planted_region_as_f32_does() {
    use glassbox::explain::lime::{LimeOptions, Segmenter, lime};
    use glassbox::model::Precision;
    use glassbox::view::View;
    let Some(compute) = gpu_with_f16() else {
        return;
    };
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let photo = glassbox::view::load_photo(&crate::common::data("coffee.png")).expect("photo");
    let view = View::new(&photo.rgb, info.preprocess());
    let options = LimeOptions {
        samples: 300,
        segmenter: Segmenter::Grid(10),
        seed: 3,
        ..LimeOptions::default()
    };
    let run = |precision| {
        let classifier = Classifier::load_with(info, &compute, precision).expect("load");
        lime(&classifier, &view, &options).expect("lime")
    };
    let (half, full) = (run(Precision::F16), run(Precision::F32));
    assert_eq!(half.class, full.class);
    let window = crate::common::planted_centre_cells();
    let top = half.models[0].positive(5);
    assert!(!top.is_empty());
    assert!(
        top.iter().all(|s| window.contains(s)),
        "f16 positive segments {top:?} outside the window"
    );
    let scale = full.models[0]
        .weights
        .iter()
        .fold(0f64, |m, w| m.max(w.abs()));
    for (s, (a, b)) in half.models[0]
        .weights
        .iter()
        .zip(&full.models[0].weights)
        .enumerate()
    {
        assert!(
            (a - b).abs() <= 0.02 * scale,
            "segment {s}: f16 weight {a} vs f32 {b}"
        );
    }
}

/// AlexNet's fc6 matrix (151 MB in f32) is over lavapipe's 128 MiB binding limit: in f32 the
/// failure is one line that names the limit; in f16 the weights are converted on the host as
/// they load, so no f32 copy reaches the device and the model runs. Needs an adapter with a
/// limit that small (lavapipe in CI).
#[test]
fn a_weight_over_the_buffer_limit_fails_in_one_line_and_runs_in_f16() {
    let _serial = device_failures();
    use glassbox::model::Precision;
    let Some(compute) = gpu_with_f16() else {
        return;
    };
    if compute.max_buffer_bytes() >= 150_994_944 {
        eprintln!("SKIPPED: the adapter binds AlexNet's fc6 matrix");
        return;
    }
    let info = ModelInfo::find("alexnet").expect("alexnet");
    let inputs = parity_inputs(&info, 1);
    let err = Classifier::load(info, &compute)
        .expect("loading only uploads")
        .classify(&inputs)
        .expect_err("f32 fc6 is over the limit");
    let message = err.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("largest buffer is 128 MiB"), "{message}");
    let half = Classifier::load_with(info, &compute, Precision::F16).expect("load in f16");
    let probs = half.classify(&inputs).expect("f16 fits");
    assert_eq!(probs.rows(), 1);
    let cpu = Classifier::load(info, &Compute::cpu())
        .expect("cpu")
        .classify(&inputs)
        .expect("cpu classify");
    assert_eq!(
        probs.argmax(0),
        cpu.argmax(0),
        "same class as the CPU in f32"
    );
}

/// LRN of f16 activations at the zoo models' scale (hundreds; squares past f16's 65504) equals
/// the f32 result to f16's precision instead of collapsing to zero under an infinite sum.
#[test]
fn lrn_of_large_f16_activations_matches_f32() {
    use burn::tensor::{FloatDType, Tensor, TensorData};
    let Some(compute) = gpu_with_f16() else {
        return;
    };
    let device = compute.device();
    let shape = [2, 8, 5, 6];
    let len: usize = shape.iter().product();
    let values: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32) * 9.0).collect();
    let x = Tensor::<4>::from_data(TensorData::new(values, shape), device);
    let lrn = |x| glassbox::model::cpu::lrn(x, 5, 1e-4, 0.75, 1.0);
    let want: Vec<f32> = lrn(x.clone()).into_data().try_to_vec().expect("f32");
    let got: Vec<f32> = lrn(x.cast(FloatDType::F16))
        .cast(FloatDType::F32)
        .into_data()
        .try_to_vec()
        .expect("f32");
    assert!(
        want.iter().any(|v| *v > 100.0),
        "the case has large outputs"
    );
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            (a - b).abs() <= 2e-3 * b.abs() + 1e-3,
            "element {i}: f16 {a} vs f32 {b}"
        );
    }
}

/// The CLI tells the user once per process why a GPU's first chunk is slow (kernels being tuned
/// and compiled), never on the CPU, and not when chunks are quick. The notice's delay is set to
/// 0 s here so that it fires without a slow device; by default it is 10 s, far more than the
/// planted model's chunks take on lavapipe.
#[test]
fn the_cli_explains_a_slow_first_gpu_chunk_once() {
    if gpu().is_none() {
        return;
    }
    let image = crate::common::data("coffee.png");
    let run = |device: &str, notice_after: Option<&str>| {
        let out = crate::common::scratch(&format!(
            "first_chunk_{device}_{}",
            notice_after.unwrap_or("default")
        ));
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_glassbox"));
        command.args([
            "explain",
            "--model",
            "planted-centre",
            "--device",
            device,
            "--out",
            crate::common::path_str(&out),
            crate::common::path_str(&image),
            crate::common::path_str(&image),
        ]);
        if let Some(seconds) = notice_after {
            command.env("GLASSBOX_FIRST_CHUNK_NOTICE_S", seconds);
        } else {
            command.env_remove("GLASSBOX_FIRST_CHUNK_NOTICE_S");
        }
        let output = command.output().expect("run glassbox");
        assert!(output.status.success(), "{output:?}");
        crate::common::text(&output.stderr)
            .matches("tunes and compiles its kernels")
            .count()
    };
    assert_eq!(
        run("gpu", Some("0")),
        1,
        "two images, many batches, one notice"
    );
    assert_eq!(run("cpu", Some("0")), 0, "never on the CPU");
    assert_eq!(run("gpu", None), 0, "quick chunks: no notice");
}

/// Incremental inference through burn's tensor ops (each layer's windows one `select`) on the
/// adapter gives full inference's probabilities on the CPU: a corner, an edge and a centre
/// rectangle, and a row that hides nothing, in one batch.
#[test]
fn incremental_inference_on_wgpu_matches_full_inference_on_the_cpu() {
    use glassbox::perturb::{Fill, Perturber};
    use glassbox::segment::{Rect, Segmentation};
    let Some(compute) = gpu() else { return };
    let info = ModelInfo::find("efficientnet-lite0").expect("lite0");
    let photo = glassbox::view::load_photo(&crate::common::data("chelsea.png")).expect("photo");
    let view = glassbox::View::new(&photo.rgb, info.preprocess());
    let (w, h) = view.rgb.dimensions();
    let whole = Segmentation::grid(w, h, 1).expect("segmentation");
    let rects = [
        None,
        Some(Rect {
            x: 0,
            y: 0,
            w: 23,
            h: 23,
        }),
        Some(Rect {
            x: 201,
            y: 90,
            w: 23,
            h: 17,
        }),
        Some(Rect {
            x: 100,
            y: 101,
            w: 23,
            h: 23,
        }),
    ];
    let mut on_gpu = Classifier::load(info, &compute).expect("load");
    on_gpu.set_incremental_on_gpu(true);
    assert!(on_gpu.incremental());
    let perturber = Perturber::new(&on_gpu, &view.rgb, &whole, Fill::Black)
        .expect("perturber")
        .with_incremental(true);
    let incremental = perturber.run_rects(&rects, None).expect("gpu");
    assert!(perturber.macs().is_some(), "ran in full");
    let cpu = Classifier::load(info, &Compute::cpu()).expect("load");
    let full = Perturber::new(&cpu, &view.rgb, &whole, Fill::Black)
        .expect("perturber")
        .run_rects(&rects, None)
        .expect("cpu");
    let worst = incremental
        .as_slice()
        .iter()
        .zip(full.as_slice())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-5, "wgpu incremental vs CPU full: {worst}");
}

/// glassbox's implicit-GEMM kernel (`glassbox::model::gpu::tiled`) equals burn's convolution
/// followed by the activation, on the adapter: stems over 3 channels (7×7 stride 2, AlexNet's
/// 11×11 stride 4), 3×3 and 5×5 windows, 1×1 products over many channels, Lite0's asymmetric
/// TF-SAME padding at stride 2, with and without bias, each activation, pixel and channel counts
/// that leave partial tiles, and each tile (as chosen by shape and forced); in f32 and in f16. Grouped and dilated
/// convolutions and other float types are declined.
#[test]
fn the_tiled_convolution_kernel_equals_burns_on_the_gpu() {
    let _serial = device_failures();
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{DType, Tensor, TensorData};
    use glassbox::model::cpu::Activation;
    use glassbox::model::gpu::tiled::{self, Tile};
    let Some(compute) = gpu_with_f16() else {
        return;
    };
    let device = compute.device();
    let act = |y: Tensor<4>, activation| match activation {
        Activation::None => y,
        Activation::Relu => burn::tensor::activation::relu(y),
        Activation::Clamp(lo, hi) => y.clamp(lo, hi),
    };
    let relu = Activation::Relu;
    let relu6 = Activation::Clamp(0.0, 6.0);
    let none = Activation::None;
    let cases = [
        ([3, 64], [7, 7], 2, [3, 3, 3, 3], true, relu, [2, 3, 40, 36]),
        (
            [3, 64],
            [11, 11],
            4,
            [2, 2, 2, 2],
            true,
            relu,
            [1, 3, 67, 67],
        ),
        (
            [64, 192],
            [3, 3],
            1,
            [1, 1, 1, 1],
            true,
            relu,
            [2, 64, 14, 13],
        ),
        (
            [48, 70],
            [5, 5],
            1,
            [2, 2, 2, 2],
            false,
            none,
            [1, 48, 9, 11],
        ),
        (
            [32, 16],
            [1, 1],
            1,
            [0, 0, 0, 0],
            true,
            relu6,
            [3, 32, 7, 7],
        ),
        (
            [24, 40],
            [3, 3],
            2,
            [0, 0, 1, 1],
            true,
            relu6,
            [2, 24, 17, 17],
        ),
        (
            [832, 128],
            [1, 1],
            1,
            [0, 0, 0, 0],
            true,
            relu,
            [4, 832, 7, 7],
        ),
        (
            [32, 130],
            [3, 3],
            1,
            [1, 1, 1, 1],
            true,
            none,
            [24, 32, 23, 21],
        ),
        (
            [16, 24],
            [3, 3],
            1,
            [1, 1, 1, 1],
            true,
            relu,
            [32, 16, 64, 65],
        ),
        // Pointwise at stride 1 on planes of a multiple of four pixels: inputs read four
        // pixels per load (a partial last tile at 2·196 pixels); at stride 2, one by one.
        (
            [24, 40],
            [1, 1],
            1,
            [0, 0, 0, 0],
            true,
            relu6,
            [2, 24, 14, 14],
        ),
        (
            [40, 8],
            [1, 1],
            1,
            [0, 0, 0, 0],
            false,
            none,
            [3, 40, 28, 28],
        ),
        (
            [16, 24],
            [1, 1],
            2,
            [0, 0, 0, 0],
            true,
            relu,
            [2, 16, 14, 14],
        ),
    ];
    let mut tiles = std::collections::HashSet::new();
    for ([cin, cout], kernel, stride, [t, l, b, r], bias, activation, shape) in cases {
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
        let want = act(conv.forward(x.clone()), activation);
        let [n, _, ho, wo] = want.dims();
        tiles.insert(Tile::for_shape(n * ho * wo, cout));
        let want_dims = want.dims();
        let want: Vec<f32> = want.into_data().try_to_vec().expect("f32");
        let pixel_vectors = kernel == [1, 1] && stride == 1 && (shape[2] * shape[3]) % 4 == 0;
        for tile in [None, Some(Tile::SMALL), Some(Tile::LARGE), Some(Tile::HUGE)] {
            let before = tiled::pixel_vector_launches();
            let case = format!(
                "{cin}->{cout} {kernel:?} stride {stride} {activation:?} {shape:?} {tile:?}"
            );
            let got = tiled::conv2d_with_tile(&conv, &x, activation, tile)
                .unwrap_or_else(|| panic!("{case}: applies"));
            assert_eq!(got.dims(), want_dims, "{case}");
            assert_eq!(
                tiled::pixel_vector_launches() > before,
                pixel_vectors,
                "{case}: inputs read four pixels per load"
            );
            let got: Vec<f32> = got.into_data().try_to_vec().expect("f32");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{case}: element {i}: {a} vs {b}"
                );
            }
        }
        let case = format!("{cin}->{cout} {kernel:?} stride {stride} {activation:?} {shape:?}");
        // In f16: read and written in f16, summed in f32, against burn's f32 convolution of the
        // same f16-rounded values, within 2e-3 relative.
        let half = conv_as(&conv, DType::F16);
        let x16 = x.cast(DType::F16);
        let rounded = conv_as(&half, DType::F32);
        let want = act(rounded.forward(x16.clone().cast(DType::F32)), activation);
        let got = tiled::conv2d(&half, &x16, activation)
            .unwrap_or_else(|| panic!("{case}, f16: applies"));
        assert_eq!(got.dtype(), DType::F16, "{case}");
        let got: Vec<f32> = got.cast(DType::F32).into_data().try_to_vec().expect("f32");
        let want: Vec<f32> = want.into_data().try_to_vec().expect("f32");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 2e-3 * (1.0 + b.abs()),
                "{case}, f16: element {i}: {a} vs {b}"
            );
        }
    }
    assert_eq!(tiles.len(), 3, "each tile chosen by shape: {tiles:?}");
    let x = Tensor::<4>::zeros([1, 16, 8, 8], device);
    // A float type the kernel does not handle is declined.
    let conv = Conv2dConfig::new([16, 16], [3, 3]).init(device);
    let wide = conv_as(&conv, DType::F64);
    if let Some(y) = tiled::conv2d(&wide, &x.clone().cast(DType::F64), none) {
        panic!("f64 ran: {:?}", y.dtype());
    }
    let grouped = Conv2dConfig::new([16, 16], [3, 3])
        .with_groups(16)
        .init(device);
    let dilated = Conv2dConfig::new([16, 16], [3, 3])
        .with_dilation([2, 2])
        .init(device);
    // A tile over the adapter's limits (1,024 invocations and 33 KiB of workgroup memory) fails
    // to compile or launch: declined, with a one-line notice naming the adapter and the layer,
    // and the next request for it is declined without trying.
    let oversized = Tile {
        threads_x: 32,
        threads_y: 32,
        rows: 8,
        cols: 8,
        k: 16,
    };
    let conv = Conv2dConfig::new([16, 8], [3, 3]).init(device);
    glassbox::model::gpu::take_notices();
    assert!(tiled::conv2d_with_tile(&conv, &x, none, Some(oversized)).is_none());
    let notices = glassbox::model::gpu::take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    eprintln!("notice: {}", notices[0]);
    assert!(
        notices[0].contains("failed on")
            && notices[0].contains("16->8 3x3")
            && !notices[0].contains('\n'),
        "{}",
        notices[0]
    );
    assert!(tiled::conv2d_with_tile(&conv, &x, none, Some(oversized)).is_none());
    assert!(glassbox::model::gpu::take_notices().is_empty());
    assert!(tiled::conv2d(&grouped, &x, none).is_none(), "depthwise");
    // A grouped convolution (AlexNet's two groups) runs one product per group.
    let pair = Conv2dConfig::new([16, 24], [5, 5])
        .with_groups(2)
        .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
        .init(device);
    let x = Tensor::<4>::from_data(
        TensorData::new(
            (0..2 * 16 * 9 * 10)
                .map(|i| ((i * 7919 % 1009) as f32) / 504.5 - 1.0)
                .collect::<Vec<f32>>(),
            [2, 16, 9, 10],
        ),
        device,
    );
    let want: Vec<f32> = act(pair.forward(x.clone()), relu)
        .into_data()
        .try_to_vec()
        .expect("f32");
    let got: Vec<f32> = tiled::conv2d(&pair, &x, relu)
        .expect("grouped applies")
        .into_data()
        .try_to_vec()
        .expect("f32");
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "grouped: element {i}: {a} vs {b}"
        );
    }
    assert!(tiled::conv2d(&dilated, &x, none).is_none());
}

/// Every built-in model, its dense convolutions and fully connected layers on glassbox's tiled
/// kernel and its depthwise convolutions and max pooling on its window kernel on the adapter:
/// - layer by layer, every convolution, pooling and fully connected layer the kernels ran (so
///   every such shape of every built-in model) equals burn's f32 kernel on the same values,
///   in f32 within 1e-5 and in f16 within 2e-3 of the layer's scale;
/// - the probabilities equal the CPU's within 1e-5 (and in f16 burn's f16 probabilities within
///   5e-3);
/// - the kernels did run (on every model that is not a test fixture), and GoogLeNet's
///   inception branches were written in place.
///
/// A model with a weight over the adapter's buffer limit (AlexNet's 151 MB first fully
/// connected layer on lavapipe's 128 MiB) cannot run in f32 there on any path: its layers are
/// checked in f16 only (that one without burn's f32 reference), and at least the other three
/// are compared in f32.
#[test]
fn every_model_on_the_tiled_kernel_matches_the_cpu() {
    let _serial = device_failures();
    use glassbox::model::Precision;
    use glassbox::model::gpu::{self, ConvPath, tiled};
    let Some(compute) = gpu() else { return };
    // `classify` on glassbox's kernels with every layer checked: its result, the checks, and
    // whether the tiled and the window kernels ran every checked layer and wrote in place.
    let run = |classifier: &Classifier, inputs: &[f32]| {
        let launches = || (tiled::launches(), gpu::window::launches());
        let (before, in_place) = (launches(), tiled::in_place_writes());
        let vectors = tiled::pixel_vector_launches();
        gpu::take_layer_checks();
        gpu::set_layer_checks(true);
        let got = gpu::with_path(ConvPath::Tiled, || classifier.classify(inputs));
        gpu::set_layer_checks(false);
        let checks = gpu::take_layer_checks();
        let after = launches();
        let ran = (after.0 - before.0, after.1 - before.1);
        let vectors = tiled::pixel_vector_launches() - vectors;
        (
            got,
            checks,
            ran,
            tiled::in_place_writes() - in_place,
            vectors,
        )
    };
    let mut compared = 0;
    for info in ModelInfo::all() {
        let id = info.id();
        let inputs = parity_inputs(&info, 2);
        let cpu = Classifier::load(info, &Compute::cpu())
            .expect("load on the CPU")
            .classify(&inputs)
            .expect("classify on the CPU");
        let on_gpu = Classifier::load(info, &compute).expect("load on wgpu");
        let (got, checks, (tiled_ran, window_ran), in_place, vectors) = run(&on_gpu, &inputs);
        let in_f32 = match got {
            Err(glassbox::Error::Device { reason, .. }) if reason.contains("largest buffer") => {
                eprintln!("SKIPPED {id} in f32: {reason}");
                false
            }
            got => {
                let got = got.expect("wgpu");
                assert_eq!(
                    checks.len() as u64,
                    tiled_ran + window_ran,
                    "{id}: every launch checked"
                );
                layers_match_burn(id, &checks, 1e-5);
                // The test fixtures are small graphs, some without a dense convolution.
                assert!(
                    tiled_ran > 0 || info.fixture(),
                    "{id}: the kernel never ran"
                );
                // Lite0's depthwise convolutions and GoogLeNet's max pooling.
                assert!(
                    window_ran > 0 || info.fixture(),
                    "{id}: the window kernel never ran"
                );
                if id.starts_with("googlenet") {
                    assert!(in_place > 0, "{id}: no branch was written in place");
                }
                // Their 1×1 layers on maps of 14×14 and more read four pixels per load.
                if id.starts_with("googlenet") || id == "efficientnet-lite0" {
                    assert!(vectors > 0, "{id}: no input read four pixels per load");
                }
                let worst = largest_difference(&got, &cpu);
                assert!(worst <= 1e-5, "{id}: tiled on wgpu vs CPU: {worst}");
                eprintln!("{id}: tiled on wgpu vs CPU: {worst:.1e}");
                compared += 1;
                true
            }
        };
        // In f16, against the same model in f16 on burn's kernels.
        if !compute.supports_f16() {
            continue;
        }
        let half = Classifier::load_with(info, &compute, Precision::F16).expect("load in f16");
        let (tiled_f16, checks, (tiled_ran, _), _, _) = run(&half, &inputs);
        let tiled_f16 = tiled_f16.expect("f16");
        layers_match_burn(id, &checks, 2e-3);
        assert!(tiled_ran > 0 || info.fixture(), "{id}: f16 never ran");
        // End to end only where f32 ran: the AlexNets' synthetic weights on a 0–255 input give
        // logits in the thousands, where f16's steps alone move the probabilities by up to 0.1
        // between any two f16 pipelines (glassbox's, burn's, against the CPU's f32: 0.11 and
        // 0.0014 on the zoo AlexNet, 6e-4 and 0.014 on torchvision's); their layers are checked.
        if !in_f32 {
            continue;
        }
        let burn_f16 = gpu::with_path(ConvPath::Burn, || half.classify(&inputs)).expect("f16");
        let worst = largest_difference(&tiled_f16, &burn_f16);
        assert!(worst <= 5e-3, "{id}: f16, tiled vs burn's: {worst}");
        eprintln!("{id}: f16, tiled vs burn's kernels: {worst:.1e}");
    }
    assert!(compared >= 3, "only {compared} models compared");
}

/// The largest difference between two sets of probabilities.
fn largest_difference(a: &glassbox::Probabilities, b: &glassbox::Probabilities) -> f32 {
    a.as_slice()
        .iter()
        .zip(b.as_slice())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

/// Every layer check within `tolerance` (relative), and a summary of them printed.
fn layers_match_burn(model: &str, checks: &[glassbox::model::gpu::LayerCheck], tolerance: f32) {
    let mut shapes = std::collections::HashSet::new();
    let mut worst = 0f32;
    for check in checks {
        assert!(
            check.worst <= tolerance,
            "{model}: {} on {:?} ({:?}): {} against burn's kernel",
            check.layer,
            check.input,
            check.dtype,
            check.worst
        );
        shapes.insert((check.layer.clone(), check.input.clone()));
        worst = worst.max(check.worst);
    }
    if let Some(first) = checks.first() {
        eprintln!(
            "{model} ({:?}): {} layers ({} shapes) equal burn's kernels within {worst:.1e}",
            first.dtype,
            checks.len(),
            shapes.len()
        );
    }
}

/// A concatenation of convolutions (`glassbox::model::cpu::Concat`, as the routing writes an
/// inception block) equals burn's convolutions concatenated by `cat`, on the GPU with the
/// dense parts written straight into their channels (at channel offsets that are not a
/// multiple of anything) and a depthwise part, which the tiled kernel does not take, copied in
/// after, in f32 within 1e-5 and in f16 within 2e-3 relative; and on the CPU exactly.
#[test]
fn a_concatenation_of_convolutions_is_written_in_place_on_the_gpu() {
    let _serial = device_failures();
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::{Conv2d, Conv2dConfig};
    use burn::tensor::{DType, Device, Tensor, TensorData};
    use glassbox::model::cpu::{Activation, Concat, Part};
    use glassbox::model::gpu::{self, ConvPath, tiled};
    let Some(compute) = gpu_with_f16() else {
        return;
    };
    let run = |device: &Device, dtype: DType, path: ConvPath| {
        let convs: [Conv2d; 3] = [
            Conv2dConfig::new([8, 5], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            Conv2dConfig::new([8, 8], [3, 3])
                .with_groups(8)
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            Conv2dConfig::new([8, 3], [1, 1]),
        ]
        .map(|c| conv_as(&c.init(device), dtype));
        let len = 2 * 8 * 9 * 11;
        let values: Vec<f32> = (0..len)
            .map(|i| ((i * 7919 % 1009) as f32) / 504.5 - 1.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [2, 8, 9, 11]), device).cast(dtype);
        let acts = [
            Activation::Relu,
            Activation::None,
            Activation::Clamp(0.0, 0.5),
        ];
        gpu::with_path(path, || {
            let concat = Concat::new([&convs[0], &convs[1], &convs[2]]);
            let parts: Vec<Part> = (0..3)
                .map(|i| concat.conv2d(i, &convs[i], x.clone(), acts[i]))
                .collect();
            let written: Vec<bool> = parts.iter().map(Part::is_written).collect();
            let [a, b, c] = <[Part; 3]>::try_from(parts).ok().expect("three parts");
            let y = concat.finish([a, b, c]);
            let want = Tensor::cat(
                (0..3)
                    .map(|i| {
                        // In f32, from the same (for f16, rounded) values.
                        let conv = conv_as(&convs[i], DType::F32);
                        let y = conv.forward(x.clone().cast(DType::F32));
                        match acts[i] {
                            Activation::Relu => burn::tensor::activation::relu(y),
                            Activation::Clamp(lo, hi) => y.clamp(lo, hi),
                            Activation::None => y,
                        }
                    })
                    .collect(),
                1,
            );
            let f32s = |t: Tensor<4>| -> Vec<f32> {
                t.cast(DType::F32).into_data().try_to_vec().expect("f32")
            };
            assert_eq!(y.dims(), [2, 16, 9, 11]);
            (f32s(y), f32s(want), written)
        })
    };
    let worst = |(got, want, _): &(Vec<f32>, Vec<f32>, Vec<bool>)| {
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0f32, f32::max)
    };
    let device = compute.device();
    let before = tiled::in_place_writes();
    let f32_run = run(device, DType::F32, ConvPath::Tiled);
    assert_eq!(
        f32_run.2,
        [true, false, true],
        "which parts were written in place"
    );
    assert_eq!(tiled::in_place_writes() - before, 2);
    assert!(worst(&f32_run) <= 1e-5, "f32: {}", worst(&f32_run));
    let f16_run = run(device, DType::F16, ConvPath::Tiled);
    assert_eq!(f16_run.2, [true, false, true]);
    assert!(worst(&f16_run) <= 2e-3, "f16: {}", worst(&f16_run));
    // burn's kernels: every part a tensor, concatenated as before, exactly; the CPU: every part
    // a tensor from glassbox's CPU kernels.
    let burn_run = run(device, DType::F32, ConvPath::Burn);
    assert_eq!(burn_run.2, [false; 3]);
    assert_eq!(burn_run.0, burn_run.1);
    let cpu_run = run(&Device::flex(), DType::F32, ConvPath::Tiled);
    assert_eq!(cpu_run.2, [false; 3]);
    assert!(worst(&cpu_run) <= 1e-5, "CPU: {}", worst(&cpu_run));
}

/// glassbox's window kernels (`glassbox::model::gpu::window`) equal burn's on the adapter:
/// depthwise convolutions as EfficientNet-Lite0 has them (3×3 and 5×5, strides 1 and 2, its
/// asymmetric TF-SAME padding, Relu6's clamp, with and without bias) and max pooling as
/// GoogLeNet and AlexNet have it (3×3 at stride 2 in ceil mode and without, 3×3 at stride 1
/// padded by 1), over planes that leave partial tiles; in f32 within 1e-5 relative and in f16
/// (against burn's f32 on the same rounded values) within 2e-3.
#[test]
fn the_window_kernels_equal_burns_on_the_gpu() {
    let _serial = device_failures();
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::{DType, Tensor, TensorData};
    use glassbox::model::cpu::Activation;
    use glassbox::model::gpu::window;
    let Some(compute) = gpu_with_f16() else {
        return;
    };
    let device = compute.device();
    let input = |shape: [usize; 4]| {
        let len: usize = shape.iter().product();
        let values: Vec<f32> = (0..len)
            .map(|i| ((i * 7919 % 1009) as f32) / 504.5 - 1.0)
            .collect();
        Tensor::<4>::from_data(TensorData::new(values, shape), device)
    };
    let close = |got: Tensor<4>, want: Tensor<4>, tolerance: f32, case: &str| {
        assert_eq!(got.dims(), want.dims(), "{case}");
        let got: Vec<f32> = got.cast(DType::F32).into_data().try_to_vec().expect("f32");
        let want: Vec<f32> = want.cast(DType::F32).into_data().try_to_vec().expect("f32");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= tolerance * (1.0 + b.abs()),
                "{case}: element {i}: {a} vs {b}"
            );
        }
    };
    // The layouts each case runs on: the one chosen for its shape, then each of them forced.
    let layouts = || std::iter::once(None).chain(window::Layout::ALL.map(Some));
    let mut ran = std::collections::HashSet::new();
    let relu6 = Activation::Clamp(0.0, 6.0);
    let depthwise = [
        (32, 3, 1, [1, 1, 1, 1], true, relu6, [2, 32, 23, 21]),
        // Lite0's large maps (2×2 blocks), a strided one (1×2 blocks), and 7×7 maps (planes
        // packed four to a workgroup, 6 planes: a partial group).
        (8, 3, 1, [1, 1, 1, 1], true, relu6, [1, 8, 40, 36]),
        (4, 3, 2, [0, 0, 1, 1], true, relu6, [1, 4, 70, 66]),
        (6, 5, 1, [2, 2, 2, 2], true, relu6, [1, 6, 7, 7]),
        (16, 3, 2, [0, 0, 1, 1], true, relu6, [3, 16, 35, 34]),
        (
            24,
            5,
            1,
            [2, 2, 2, 2],
            false,
            Activation::None,
            [1, 24, 17, 19],
        ),
        (
            40,
            5,
            2,
            [1, 1, 2, 2],
            true,
            Activation::Relu,
            [2, 40, 28, 28],
        ),
    ];
    for (c, k, stride, [t, l, b, r], bias, activation, shape) in depthwise {
        let conv = Conv2dConfig::new([c, c], [k, k])
            .with_groups(c)
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(t, l, b, r))
            .with_bias(bias)
            .init(device);
        let x = input(shape);
        let case = format!("depthwise {c} {k}x{k} stride {stride} {activation:?} {shape:?}");
        let act = |y: Tensor<4>| match activation {
            Activation::None => y,
            Activation::Relu => burn::tensor::activation::relu(y),
            Activation::Clamp(lo, hi) => y.clamp(lo, hi),
        };
        let half = conv_as(&conv, DType::F16);
        let rounded = conv_as(&half, DType::F32);
        let x16 = x.clone().cast(DType::F16);
        let want = act(conv.forward(x.clone()));
        let want16 = act(rounded.forward(x16.clone().cast(DType::F32)));
        // The layout chosen for the shape must run; each forced one wherever its patch fits.
        for layout in layouts() {
            let case = format!("{case} on {layout:?}");
            let Some(got) = window::depthwise_with(&conv, &x, activation, layout) else {
                assert!(layout.is_some(), "{case}: the chosen layout declined");
                continue;
            };
            ran.insert(layout);
            close(got, want.clone(), 1e-5, &case);
            let got = window::depthwise_with(&half, &x16, activation, layout).expect("in f16");
            assert_eq!(got.dtype(), DType::F16);
            close(got, want16.clone(), 2e-3, &format!("{case}, f16"));
        }
    }
    let pools = [
        (3, 2, [0, 0, 0, 0], true, [2, 64, 112, 112]),
        (3, 2, [0, 0, 0, 0], false, [2, 48, 27, 27]),
        (3, 1, [1, 1, 1, 1], false, [3, 32, 14, 13]),
        (3, 2, [0, 0, 1, 1], false, [1, 16, 56, 57]),
        (3, 1, [1, 1, 1, 1], false, [2, 5, 7, 7]),
        (3, 1, [1, 1, 1, 1], false, [1, 3, 40, 40]),
    ];
    for (k, stride, [t, l, b, r], ceil, shape) in pools {
        let pool = MaxPool2dConfig::new([k, k])
            .with_strides([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(t, l, b, r))
            .with_ceil_mode(ceil)
            .init();
        let x = input(shape);
        let case = format!("max pool {k}x{k} stride {stride} ceil {ceil} {shape:?}");
        let x16 = x.clone().cast(DType::F16);
        for layout in layouts() {
            let case = format!("{case} on {layout:?}");
            let Some(got) = window::max_pool2d_with(&pool, &x, layout) else {
                assert!(layout.is_some(), "{case}: the chosen layout declined");
                continue;
            };
            ran.insert(layout);
            close(got, pool.forward(x.clone()), 0.0, &case);
            let got = window::max_pool2d_with(&pool, &x16, layout).expect("in f16");
            close(got, pool.forward(x16.clone()), 0.0, &format!("{case}, f16"));
        }
    }
    assert_eq!(
        ran.len(),
        1 + window::Layout::ALL.len(),
        "every layout ran: {ran:?}"
    );
    // The layout each of the built-in models' map sizes gets.
    use window::Layout;
    for (out, kernel, stride, want) in [
        ([112, 112], [3, 3], [1, 1], Layout::BLOCK),
        ([56, 56], [3, 3], [2, 2], Layout::WIDE),
        ([56, 56], [5, 5], [2, 2], Layout::WIDE),
        ([28, 28], [3, 3], [1, 1], Layout::SINGLE),
        ([14, 14], [5, 5], [1, 1], Layout::SINGLE),
        ([7, 7], [3, 3], [1, 1], Layout::PLANES),
    ] {
        assert_eq!(
            Layout::for_shape(out, kernel, stride),
            want,
            "{out:?} {kernel:?}"
        );
    }
    // A NaN in a pooling window comes out as NaN (as the CPU kernel has it), and only there.
    let pool = MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init();
    let mut values = vec![0.5f32; 2 * 9 * 9];
    values[9 * 4 + 4] = f32::NAN;
    let x = Tensor::<4>::from_data(TensorData::new(values, [1, 2, 9, 9]), device);
    for layout in layouts() {
        let Some(got) = window::max_pool2d_with(&pool, &x, layout) else {
            assert!(layout.is_some(), "the chosen layout declined");
            continue;
        };
        let got: Vec<f32> = got.into_data().try_to_vec().expect("f32");
        let nan: Vec<usize> = (0..got.len()).filter(|&i| got[i].is_nan()).collect();
        // Output 4×4 per channel; input (4, 4) lies in the windows of outputs (1..=2, 1..=2).
        assert_eq!(nan, vec![5, 6, 9, 10], "{layout:?}: {got:?}");
    }
    // A dense convolution is not the depthwise kernel's.
    let dense = Conv2dConfig::new([8, 8], [3, 3]).init(device);
    assert!(window::depthwise(&dense, &input([1, 8, 8, 8]), Activation::None).is_none());
}

/// Fully connected layers on glassbox's tiled kernel (as 1×1 convolutions reading burn's
/// `[in, out]` weights through their strides) equal burn's matrix product on the adapter, with
/// and without bias and Relu, in f32 (1e-5 relative) and f16 (2e-3).
#[test]
fn fully_connected_layers_on_the_tiled_kernel_equal_burns_on_the_gpu() {
    let _serial = device_failures();
    use burn::nn::LinearConfig;
    use burn::tensor::{DType, Tensor, TensorData};
    use glassbox::model::cpu::Activation;
    use glassbox::model::gpu::tiled;
    let Some(compute) = gpu_with_f16() else {
        return;
    };
    let device = compute.device();
    for (din, dout, bias, activation, n) in [
        (1024, 1000, true, Activation::None, 3),
        (2304, 512, true, Activation::Relu, 2),
        (1280, 1000, false, Activation::None, 5),
    ] {
        let linear = LinearConfig::new(din, dout).with_bias(bias).init(device);
        let values: Vec<f32> = (0..n * din)
            .map(|i| ((i * 7919 % 1009) as f32) / 504.5 - 1.0)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(values, [n, din]), device);
        let act = |y: Tensor<2>| match activation {
            Activation::Relu => burn::tensor::activation::relu(y),
            _ => y,
        };
        let case = format!("{din}->{dout} bias {bias} {activation:?} batch {n}");
        let check = |got: Tensor<2>, want: Tensor<2>, tolerance: f32, case: &str| {
            assert_eq!(got.dims(), want.dims(), "{case}");
            let got: Vec<f32> = got.cast(DType::F32).into_data().try_to_vec().expect("f32");
            let want: Vec<f32> = want.into_data().try_to_vec().expect("f32");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= tolerance * (1.0 + b.abs()),
                    "{case}: element {i}: {a} vs {b}"
                );
            }
        };
        let got = tiled::linear(&linear, &x, activation).expect("applies");
        check(got, act(linear.forward(x.clone())), 1e-5, &case);
        let half = linear_as(&linear, DType::F16);
        let rounded = linear_as(&half, DType::F32);
        let x16 = x.cast(DType::F16);
        let got = tiled::linear(&half, &x16, activation).expect("applies in f16");
        assert_eq!(got.dtype(), DType::F16);
        check(
            got,
            act(rounded.forward(x16.cast(DType::F32))),
            2e-3,
            &format!("{case}, f16"),
        );
    }
}
