//! glassbox's CPU kernels (`glassbox::model::cpu`) against burn's own modules on the same
//! tensors: depthwise convolution with its activation, every other convolution (im2col + gemm
//! with bias and activation fused), max pooling with and without ceil mode, and LRN. Whole
//! models are checked against onnxruntime in `parity.rs`.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use glassbox::model::cpu::{self, Activation};
use glassbox::model::simd::{self, Level};

/// Deterministic values in [-2, 2).
fn tensor(shape: [usize; 4], seed: u64) -> Tensor<4> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Device::flex())
}

fn values(t: Tensor<4>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    (dims, t.into_data().try_to_vec().expect("f32"))
}

fn assert_close(got: Tensor<4>, want: Tensor<4>, what: &str) {
    assert_within(got, want, 1e-5, what);
}

/// Equal within `tolerance × (1 + |want|)`, NaN where `want` is NaN.
fn assert_within(got: Tensor<4>, want: Tensor<4>, tolerance: f32, what: &str) {
    let (gd, g) = values(got);
    let (wd, w) = values(want);
    assert_eq!(gd, wd, "{what}: shape");
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let same_nan = a.is_nan() && b.is_nan();
        assert!(
            same_nan || (a - b).abs() <= tolerance * (1.0 + b.abs()),
            "{what}: element {i}: {a} vs {b}"
        );
    }
}

fn depthwise(channels: usize, k: usize, stride: usize, pad: usize) -> Conv2d {
    depthwise_with(channels, [k, k], [stride, stride], [pad; 4], true)
}

/// A depthwise convolution of any shape, stride and padding `[top, left, bottom, right]`.
fn depthwise_with(
    channels: usize,
    [kh, kw]: [usize; 2],
    stride: [usize; 2],
    [top, left, bottom, right]: [usize; 4],
    bias: bool,
) -> Conv2d {
    let mut conv = Conv2dConfig::new([channels, channels], [kh, kw])
        .with_groups(channels)
        .with_stride(stride)
        .with_padding(PaddingConfig2d::Explicit(top, left, bottom, right))
        .with_bias(bias)
        .init(&Device::flex());
    conv.weight = conv
        .weight
        .map(|_| tensor([channels, 1, kh, kw], 7 + (kh * kw) as u64));
    conv
}

fn reference(conv: &Conv2d, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    let y = conv.forward(x);
    match activation {
        Activation::None => y,
        Activation::Relu => burn::tensor::activation::relu(y),
        Activation::Clamp(lo, hi) => y.clamp(lo, hi),
    }
}

#[test]
fn depthwise_convolutions_equal_burns() {
    check_depthwise();
}

fn check_depthwise() {
    for (k, stride, pad, size) in [
        (3, 1, 1, 17),
        (3, 1, 0, 9),
        (5, 1, 2, 7),
        (5, 1, 2, 28),
        (3, 2, 1, 17),
        (3, 2, 0, 16),
        (5, 2, 2, 15),
        (5, 2, 2, 28),
        (3, 3, 1, 16),
        (7, 2, 3, 20),
    ] {
        let conv = depthwise(6, k, stride, pad);
        let x = tensor([2, 6, size, size], size as u64);
        for activation in [
            Activation::None,
            Activation::Relu,
            Activation::Clamp(0.0, 0.5),
        ] {
            assert_close(
                cpu::conv2d(&conv, x.clone(), activation),
                reference(&conv, x.clone(), activation),
                &format!("depthwise {k}x{k} stride {stride} pad {pad} {activation:?}"),
            );
        }
    }
    // Rectangular kernels and strides, asymmetric padding (TensorFlow's "same" on stride 2),
    // planes of every width against the vector length, many planes per task, no bias.
    let cases = [
        ([3, 3], [2, 2], [0, 0, 1, 1], [1, 5, 17, 17], true),
        ([5, 5], [1, 2], [2, 1, 2, 3], [2, 3, 13, 20], true),
        ([3, 3], [2, 1], [1; 4], [1, 20, 9, 33], false),
        ([3, 5], [2, 2], [1, 2, 1, 2], [1, 4, 30, 70], true),
        ([5, 5], [1, 1], [2; 4], [3, 40, 7, 7], true),
        ([5, 5], [1, 1], [2; 4], [1, 37, 14, 14], false),
        ([3, 3], [1, 1], [1; 4], [2, 3, 1, 1], true),
    ];
    for (kernel, stride, pad, shape, bias) in cases {
        let conv = depthwise_with(shape[1], kernel, stride, pad, bias);
        let x = tensor(shape, shape.iter().product::<usize>() as u64);
        for activation in [Activation::None, Activation::Clamp(0.0, 0.5)] {
            assert_close(
                cpu::conv2d(&conv, x.clone(), activation),
                reference(&conv, x.clone(), activation),
                &format!(
                    "depthwise {kernel:?} stride {stride:?} pad {pad:?} on {shape:?} {activation:?}"
                ),
            );
        }
    }
}

#[test]
fn a_nan_in_a_depthwise_window_stays_nan_through_the_activation() {
    check_depthwise_nan();
}

fn check_depthwise_nan() {
    let conv = depthwise(1, 3, 1, 1);
    let mut input = vec![0.5f32; 40 * 40];
    input[20 * 40 + 30] = f32::NAN;
    let x = Tensor::<4>::from_data(TensorData::new(input, [1, 1, 40, 40]), &Device::flex());
    for activation in [Activation::Relu, Activation::Clamp(0.0, 0.1)] {
        let (_, out) = values(cpu::conv2d(&conv, x.clone(), activation));
        for (i, v) in out.iter().enumerate() {
            let (y, x) = (i / 40, i % 40);
            let touches = y.abs_diff(20) <= 1 && x.abs_diff(30) <= 1;
            assert_eq!(v.is_nan(), touches, "{activation:?} at ({y}, {x}): {v}");
        }
    }
}

#[test]
fn every_instruction_set_gives_the_same_results() {
    // The kernels' copies for each instruction set this CPU has, one after another (the limit
    // is process-wide: other tests running meanwhile only run another copy).
    for level in [Level::Baseline, Level::Avx2, Level::Avx512] {
        if level > simd::detected() {
            continue;
        }
        simd::limit(Some(level));
        assert_eq!(simd::level(), level);
        check_depthwise();
        check_depthwise_nan();
        check_gemm();
        check_max_pool();
        check_pool_nan();
    }
    simd::limit(None);
    assert_eq!(simd::level(), simd::detected());
}

/// A convolution with deterministic weights and bias.
fn conv(
    [cin, cout]: [usize; 2],
    [kh, kw]: [usize; 2],
    stride: usize,
    [top, left, bottom, right]: [usize; 4],
    dilation: usize,
    groups: usize,
    bias: bool,
) -> Conv2d {
    let mut conv = Conv2dConfig::new([cin, cout], [kh, kw])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(top, left, bottom, right))
        .with_dilation([dilation, dilation])
        .with_groups(groups)
        .with_bias(bias)
        .init(&Device::flex());
    let seed = (cin * 31 + cout * 7 + kh * 3 + kw) as u64;
    conv.weight = conv
        .weight
        .map(|_| tensor([cout, cin / groups, kh, kw], seed));
    conv.bias = conv
        .bias
        .map(|b| b.map(|_| tensor([1, 1, 1, cout], seed + 1).reshape([cout])));
    conv
}

#[test]
fn gemm_convolutions_equal_burns() {
    check_gemm();
}

fn check_gemm() {
    // (name, conv, input shape)
    let cases = [
        (
            "3x3 pad 1",
            conv([4, 5], [3, 3], 1, [1; 4], 1, 1, true),
            [3, 4, 9, 9],
        ),
        (
            "1x1 pointwise",
            conv([16, 24], [1, 1], 1, [0; 4], 1, 1, true),
            [2, 16, 7, 11],
        ),
        (
            "1x1 stride 2",
            conv([8, 6], [1, 1], 2, [0; 4], 1, 1, false),
            [2, 8, 9, 9],
        ),
        (
            "7x7 stride 2 pad 3 (GoogLeNet stem)",
            conv([3, 8], [7, 7], 2, [3; 4], 1, 1, true),
            [2, 3, 23, 23],
        ),
        (
            "11x11 stride 4 (AlexNet stem)",
            conv([3, 4], [11, 11], 4, [0; 4], 1, 1, true),
            [1, 3, 35, 39],
        ),
        (
            "5x5 in 2 groups",
            conv([4, 6], [5, 5], 1, [2; 4], 1, 2, true),
            [2, 4, 8, 8],
        ),
        (
            "3x3 dilation 2",
            conv([3, 4], [3, 3], 1, [2; 4], 2, 1, true),
            [1, 3, 10, 10],
        ),
        (
            "3x2 asymmetric padding",
            conv([3, 4], [3, 2], 1, [1, 0, 2, 1], 1, 1, false),
            [1, 3, 6, 7],
        ),
        (
            "3x3 stride 2, padding only after (Lite0's stem)",
            conv([3, 8], [3, 3], 2, [0, 0, 1, 1], 1, 1, true),
            [2, 3, 37, 41],
        ),
        (
            "3x3 stride 2 dilation 2",
            conv([2, 3], [3, 3], 2, [2; 4], 2, 1, true),
            [1, 2, 15, 16],
        ),
        (
            "1x1 on 7x7 planes of 5 images: all images in one gemm",
            conv([48, 40], [1, 1], 1, [0; 4], 1, 1, true),
            [5, 48, 7, 7],
        ),
        (
            "1x1 on 3x3 planes without bias",
            conv([24, 12], [1, 1], 1, [0; 4], 1, 1, false),
            [3, 24, 3, 3],
        ),
        (
            "3x3 over 64 channels: many bands of rows",
            conv([64, 8], [3, 3], 1, [1; 4], 1, 1, true),
            [2, 64, 40, 40],
        ),
    ];
    for (name, conv, shape) in cases {
        let x = tensor(shape, shape.iter().sum::<usize>() as u64);
        for activation in [
            Activation::None,
            Activation::Relu,
            Activation::Clamp(-0.25, 0.25),
        ] {
            // Sums of up to 576 products of values up to 4, added in another order than burn's.
            assert_within(
                cpu::conv2d(&conv, x.clone(), activation),
                reference(&conv, x.clone(), activation),
                1e-4,
                &format!("{name} {activation:?}"),
            );
        }
        // The input is unchanged.
        assert_close(
            x,
            tensor(shape, shape.iter().sum::<usize>() as u64),
            "input",
        );
    }
}

fn pool(k: usize, stride: usize, pad: usize, ceil: bool) -> MaxPool2d {
    MaxPool2dConfig::new([k, k])
        .with_strides([stride, stride])
        .with_padding(if pad == 0 {
            PaddingConfig2d::Valid
        } else {
            PaddingConfig2d::Explicit(pad, pad, pad, pad)
        })
        .with_ceil_mode(ceil)
        .init()
}

#[test]
fn max_pools_equal_burns_with_and_without_ceil_mode() {
    check_max_pool();
}

fn check_max_pool() {
    for (k, stride, pad, size) in [
        (3, 2, 0, 112),
        (3, 2, 0, 13),
        (3, 1, 1, 14),
        (2, 2, 0, 7),
        (2, 2, 0, 13),
        (3, 3, 1, 20),
        (5, 1, 2, 9),
        (3, 1, 1, 40),
    ] {
        for ceil in [false, true] {
            let p = pool(k, stride, pad, ceil);
            let x = tensor([2, 3, size, size], (size + k) as u64);
            assert_close(
                cpu::max_pool2d(&p, x.clone()),
                p.forward(x),
                &format!("max pool {k}x{k} stride {stride} pad {pad} ceil {ceil}"),
            );
        }
    }
}

#[test]
fn a_nan_in_a_pooling_window_comes_out_as_nan() {
    check_pool_nan();
}

fn check_pool_nan() {
    let p = pool(3, 2, 0, true);
    let mut input = vec![0.5f32; 7 * 7];
    input[2 * 7 + 2] = f32::NAN;
    let x = Tensor::<4>::from_data(TensorData::new(input, [1, 1, 7, 7]), &Device::flex());
    let (dims, out) = values(cpu::max_pool2d(&p, x));
    assert_eq!(dims, [1, 1, 3, 3]);
    // Windows start at rows and columns 0, 2 and 4: row and column 2 lie in the first two.
    let nan: Vec<bool> = out.iter().map(|v| v.is_nan()).collect();
    assert_eq!(
        nan,
        [true, true, false, true, true, false, false, false, false],
        "{out:?}"
    );
    assert!(out.iter().all(|v| v.is_nan() || *v == 0.5));
}

#[test]
fn local_response_norm_equals_burns() {
    for (size, beta) in [(5, 0.75), (4, 0.75), (3, 0.6)] {
        let x = tensor([2, 7, 5, 6], size as u64);
        let want = burn::nn::LocalResponseNormConfig::new(size)
            .with_alpha(0.3)
            .with_beta(beta)
            .with_k(1.5)
            .init()
            .forward(x.clone());
        assert_close(
            cpu::lrn(x, size, 0.3, beta, 1.5),
            want,
            &format!("LRN size {size} beta {beta}"),
        );
    }
}
