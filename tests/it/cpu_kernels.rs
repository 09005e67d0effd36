//! glassbox's CPU kernels (`glassbox::model::cpu`) against burn's own modules on the same
//! tensors: depthwise convolution with its activation, any other convolution with an activation
//! applied in place, and max pooling with and without ceil mode. Whole models are checked
//! against onnxruntime in `parity.rs`.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use glassbox::model::cpu::{self, Activation};

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
    let (gd, g) = values(got);
    let (wd, w) = values(want);
    assert_eq!(gd, wd, "{what}: shape");
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let same_nan = a.is_nan() && b.is_nan();
        assert!(
            same_nan || (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{what}: element {i}: {a} vs {b}"
        );
    }
}

fn depthwise(channels: usize, k: usize, stride: usize, pad: usize) -> Conv2d {
    let mut conv = Conv2dConfig::new([channels, channels], [k, k])
        .with_groups(channels)
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .init(&Device::flex());
    conv.weight = conv
        .weight
        .map(|_| tensor([channels, 1, k, k], 7 + k as u64));
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
    for (k, stride, pad, size) in [
        (3, 1, 1, 17),
        (3, 1, 0, 9),
        (5, 1, 2, 7),
        (5, 1, 2, 28),
        (3, 2, 1, 17),
        (3, 2, 0, 16),
        (5, 2, 2, 15),
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
}

#[test]
fn other_convolutions_get_their_activation_in_place() {
    let conv = Conv2dConfig::new([4, 5], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&Device::flex());
    let x = tensor([3, 4, 9, 9], 3);
    for activation in [Activation::Relu, Activation::Clamp(-0.25, 0.25)] {
        assert_close(
            cpu::conv2d(&conv, x.clone(), activation),
            reference(&conv, x.clone(), activation),
            &format!("3x3 conv {activation:?}"),
        );
    }
    // The input is still usable afterwards: only the convolution's own output was overwritten.
    assert_close(x.clone(), tensor([3, 4, 9, 9], 3), "input untouched");
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
    for (k, stride, pad, size) in [(3, 2, 0, 112), (3, 2, 0, 13), (3, 1, 1, 14), (2, 2, 0, 7)] {
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
