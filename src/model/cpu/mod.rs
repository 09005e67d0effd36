//! glassbox's own CPU kernels for the layers burn-flex runs slowest.
//!
//! `glassbox profile` showed where the CPU forward pass goes: GoogLeNet spent 55 % of it in
//! max pooling, EfficientNet-Lite0 42 % in depthwise convolutions and 27 % in the ReLU6 clamps
//! after its convolutions (each a separate, single-threaded pass over a large tensor). The
//! generated `forward` of every model calls [`conv2d`], [`max_pool2d`] and [`lrn`] instead of the
//! burn modules (`build.rs` rewrites the calls, and folds a `Relu` or `Clip` that only consumes a
//! convolution's output into that call). On the CPU device these run:
//!
//! - depthwise convolutions (one input channel per group, no dilation, explicit or no padding,
//!   any stride) and max pooling as flat passes over phase planes ([`Phases`](phases::Phases)): every kernel tap
//!   is one contiguous multiply-add (or maximum) over the whole plane, a block of outputs held in
//!   registers through all taps, the activation applied before the store, several planes per
//!   core;
//! - every other convolution with explicit or no padding as im2col + gemm over bands of output
//!   rows (the `gemm` crate burn-flex uses, on pre-laid-out weights: an NCHW convolution's
//!   weights already are the gemm's left matrix), bias and activation applied while the band is
//!   in cache, the bands of all images spread over the cores;
//! - local response normalisation (GoogLeNet's zoo graph) across channels, one image per core.
//!
//! The vectorised kernels are compiled for AVX-512, AVX2 and the baseline, the best the CPU has
//! chosen when they run ([`simd`](super::simd)).
//!
//! Everything else (and the few convolutions none of these take, whose activation then runs
//! in place on every core), and every tensor on a GPU, goes to burn unchanged. The results equal
//! burn's own kernels to float rounding (`tests/it/cpu_kernels.rs`) and whole models still
//! match onnxruntime (`tests/it/parity.rs`).
//!
//! Where each lives: `conv.rs` sends a convolution to its kernel and holds im2col + gemm,
//! `depthwise.rs` and `pool.rs` the two kernels over phase planes, which `phases.rs` lays out
//! and spreads over the cores, `lrn.rs` the normalisation, and `activation.rs` the
//! activations fused into the convolutions. This file keeps the on/off switch and the reading
//! and making of CPU tensors that they all share.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

mod activation;
mod concat;
mod conv;
mod depthwise;
mod linear;
mod lrn;
mod phases;
mod pool;

pub use activation::Activation;
pub use concat::{Concat, Part};
pub use conv::conv2d;
pub use linear::linear;
pub use lrn::lrn;
pub use pool::max_pool2d;
#[cfg(feature = "gpu")]
pub(crate) use pool::pool_output_size;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns glassbox's CPU kernels on (the default) or off for the whole process; off, every layer
/// runs through burn, as a baseline for measurements.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

fn enabled_on(x: &Tensor<4>) -> bool {
    ENABLED.load(Ordering::Relaxed) && x.device() == Device::flex()
}

/// The tensor's f32 values in row-major order, if it lives on the CPU as f32.
fn values<const D: usize>(x: &Tensor<D>) -> Option<(FlexTensor, usize, usize)> {
    let t = x.clone().try_into_primitive::<Flex>().ok()?;
    if t.dtype() != DType::F32 {
        return None;
    }
    let (start, end) = t.layout().contiguous_offsets()?;
    Some((t, start, end))
}

/// A convolution's weights and bias as CPU f32 values, read in place from their tensors.
struct Params {
    weight: (FlexTensor, usize, usize),
    bias: Option<(FlexTensor, usize, usize)>,
}

impl Params {
    fn of(conv: &Conv2d) -> Option<Self> {
        Some(Self {
            weight: values(&conv.weight.val())?,
            bias: match &conv.bias {
                Some(b) => Some(values(&b.val())?),
                None => None,
            },
        })
    }

    /// `[cout, cin / groups, kh, kw]` in row-major order.
    fn weights(&self) -> &[f32] {
        let (t, start, end) = &self.weight;
        &t.storage::<f32>()[*start..*end]
    }

    fn bias(&self) -> Option<&[f32]> {
        let (t, start, end) = self.bias.as_ref()?;
        Some(&t.storage::<f32>()[*start..*end])
    }
}

/// A CPU tensor of shape `[n, c, h, w]` holding `values`.
fn flex_tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(values, shape)))
}

/// A buffer of `len` floats that `fill` writes, not zeroed first: zeroing tens of megabytes
/// per layer costs as much as a fast kernel's own work.
///
/// # Safety
/// `fill` must write every one of the `len` elements it is given.
pub(crate) unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    fill(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: the capacity is `len`, and the caller's `fill` initialised all of it.
    unsafe { values.set_len(len) };
    values
}

/// The output height and width of a window `span` (`[rows, columns]` the window covers, its
/// dilation included) moved by `stride` over a `size` input padded by `[top, left, bottom,
/// right]`, or `None` where the stride is 0 or the window is larger than the padded input.
pub(crate) fn conv_output_size(
    size: [usize; 2],
    span: [usize; 2],
    stride: [usize; 2],
    [top, left, bottom, right]: [usize; 4],
) -> Option<[usize; 2]> {
    let (padded_h, padded_w) = (size[0] + top + bottom, size[1] + left + right);
    if stride.contains(&0) || padded_h < span[0] || padded_w < span[1] {
        return None;
    }
    Some([
        (padded_h - span[0]) / stride[0] + 1,
        (padded_w - span[1]) / stride[1] + 1,
    ])
}

/// Padding `(top, left, bottom, right)` of an explicit or absent padding.
pub(crate) fn padding(p: &PaddingConfig2d) -> Option<[usize; 4]> {
    match p {
        PaddingConfig2d::Valid => Some([0; 4]),
        PaddingConfig2d::Explicit(t, l, b, r) => Some([*t, *l, *b, *r]),
        PaddingConfig2d::Same => None,
    }
}
