//! The generated models' GPU paths other than burn's own kernels (opt-in): dense convolutions
//! as matrix products on burn's matmul (per kernel tap, or over an im2col block), or
//! glassbox's own CubeCL kernels for convolutions, fully connected layers and max pooling.
//!
//! burn's wgpu backend runs a dense 3×3 or 5×5 convolution with its direct kernel unless the
//! adapter offers cooperative-matrix (tensor core) instructions, which WGSL does not: GoogLeNet
//! ran at about 760 images/s on an H100 that way. Two paths run it on burn's tuned matmul:
//!
//! - [`ConvPath::Taps`]: a convolution is the sum over its kernel taps `(ky, kx)` of a 1×1
//!   convolution of the input shifted by that tap, i.e. of the matrix product
//!   `W[:, :, ky, kx] × x_shifted`. Every buffer stays the size of the input or output, so chunk
//!   sizing is unchanged, but the output is written and read back once per tap.
//!   Measured on an NVIDIA H200 (Vulkan), same binary and machine: a warm GoogLeNet
//!   (torchvision) LIME takes 1.11 s instead of 1.32 s, a 20×20 occlusion 0.41 s instead of
//!   0.49 s, and GPU and CPU probabilities agree to 9.4e-7. But the first image of a process
//!   with an empty autotune cache took 107 s instead of about 21 s (every matmul shape is tuned).
//! - [`ConvPath::Im2col`]: the `kh × kw` shifted copies of the input are laid side by side,
//!   `[n, kh·kw·cin, ho·wo]`, and multiplied by the weights `[cout, kh·kw·cin]` in one product
//!   whose inner dimension is `kh·kw` times larger: fewer, larger kernels, and the output is
//!   written once, at the price of a block `kh·kw` times the input. The batch is split so that
//!   no block exceeds the GPU's buffer limit. Not yet timed on a hardware GPU.
//!
//! And one on glassbox's own kernels:
//!
//! - [`ConvPath::Tiled`]: glassbox's own kernels: `tiled`, an implicit GEMM tiled through
//!   workgroup memory with a register block per invocation and the bias and activation applied
//!   at the store (no im2col buffer, one launch per convolution, and no autotuning: a fixed
//!   tile chosen from the layer's shape), for every dense convolution, 1×1 included, and every
//!   fully connected layer; and
//!   `window`, for depthwise convolutions and max pooling, from input patches staged in
//!   workgroup memory. Checked against burn's kernels on lavapipe; not yet timed on a hardware
//!   GPU. (Both need the default `gpu` cargo feature.)
//!
//! All are off by default: [`set_path`] chooses for the whole process, `GLASSBOX_GPU_CONV=taps`,
//! `=im2col` or `=tiled` for the command-line tool.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::ops::PadMode;
use burn::tensor::{Tensor, s};

use crate::model::cpu::Activation;
use crate::{Error, Result};

#[cfg(feature = "gpu")]
mod cube;
#[cfg(feature = "gpu")]
pub mod tiled;
#[cfg(feature = "gpu")]
pub mod window;
#[cfg(feature = "gpu")]
pub use cube::take_notices;

/// How the generated models run dense convolutions on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvPath {
    /// burn's own kernels (the default).
    #[default]
    Burn,
    /// A sum of per-tap matrix products ([`conv2d_taps`]).
    Taps,
    /// One matrix product over an im2col block ([`conv2d_im2col`]).
    Im2col,
    /// glassbox's own kernels: `tiled` for dense convolutions and fully connected layers,
    /// `window` for depthwise convolutions and max pooling (builds with the `gpu` feature).
    Tiled,
}

impl std::str::FromStr for ConvPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "burn" => Ok(Self::Burn),
            "taps" => Ok(Self::Taps),
            "im2col" => Ok(Self::Im2col),
            "tiled" => Ok(Self::Tiled),
            other => Err(Error::InvalidArgument(format!(
                "unknown GPU convolution path '{other}' (burn, taps, im2col, tiled)"
            ))),
        }
    }
}

static PATH: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// This thread's choice, over the process's ([`with_path`]).
    static THREAD_PATH: std::cell::Cell<Option<ConvPath>> = const { std::cell::Cell::new(None) };
}

/// Chooses the GPU convolution path for the whole process.
pub fn set_path(path: ConvPath) {
    PATH.store(path as u8, Ordering::Relaxed);
}

/// Runs `f` with this thread's convolutions on `path`, whatever the process's choice, and
/// restores the previous choice after (also when `f` panics). For comparing paths inside one
/// process: the generated models pick the path on the thread that calls them.
pub fn with_path<T>(path: ConvPath, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<ConvPath>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_PATH.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(THREAD_PATH.with(|p| p.replace(Some(path))));
    f()
}

/// The GPU convolution path in use on this thread.
pub fn path() -> ConvPath {
    if let Some(path) = THREAD_PATH.with(|p| p.get()) {
        return path;
    }
    match PATH.load(Ordering::Relaxed) {
        1 => ConvPath::Taps,
        2 => ConvPath::Im2col,
        3 => ConvPath::Tiled,
        _ => ConvPath::Burn,
    }
}

/// [`ConvPath::Taps`] when `enabled`, else [`ConvPath::Burn`].
pub fn set_enabled(enabled: bool) {
    set_path(if enabled {
        ConvPath::Taps
    } else {
        ConvPath::Burn
    });
}

/// Whether the generated models route GPU convolutions through [`conv2d`].
pub fn enabled() -> bool {
    path() != ConvPath::Burn
}

/// The buffer limit im2col blocks keep under where the GPU was not started through
/// [`crate::Compute::select`] (a device the application made itself): 128 MiB, the smallest
/// limit met so far (lavapipe's).
const FALLBACK_BUFFER_LIMIT: u64 = 128 << 20;

/// `conv` then `activation` applied to `x` by the process's [`path`], or `None` where burn's
/// kernel is kept.
pub fn conv2d(conv: &Conv2d, x: &Tensor<4>, activation: Activation) -> Option<Tensor<4>> {
    let y = match path() {
        ConvPath::Burn => None,
        ConvPath::Taps => conv2d_taps(conv, x),
        ConvPath::Im2col => conv2d_im2col(
            conv,
            x,
            crate::device::gpu_buffer_limit().unwrap_or(FALLBACK_BUFFER_LIMIT),
        ),
        #[cfg(feature = "gpu")]
        ConvPath::Tiled => {
            let y = tiled::conv2d(conv, x, activation)
                .or_else(|| window::depthwise(conv, x, activation))?;
            check_conv(&y, conv, x, activation, "");
            return Some(y);
        }
        #[cfg(not(feature = "gpu"))]
        ConvPath::Tiled => None,
    };
    y.map(|y| activation.burn(y))
}

/// `linear` then `activation` applied to `x` (`[n, in]`) by glassbox's tiled kernel where the
/// process's [`path`] is [`ConvPath::Tiled`], or `None` where burn's matrix product is kept.
pub fn linear(linear: &Linear, x: &Tensor<2>, activation: Activation) -> Option<Tensor<2>> {
    match path() {
        #[cfg(feature = "gpu")]
        ConvPath::Tiled => {
            let y = tiled::linear(linear, x, activation)?;
            check_layer(&y, || {
                let what = format!("linear ->{} {activation:?}", y.dims()[1]);
                // Not where the f32 weights would be over the adapter's buffer limit (AlexNet's
                // first fully connected layer on lavapipe, which runs it in f16 only).
                let f32_bytes = linear.weight.val().shape().num_elements() as u64 * 4;
                (f32_bytes <= crate::device::gpu_buffer_limit().unwrap_or(FALLBACK_BUFFER_LIMIT))
                    .then(|| {
                        let want = linear_f32(linear).forward(f32_of(x));
                        (what, x.clone(), activation.burn(want))
                    })
            });
            Some(y)
        }
        _ => {
            let _ = (linear, x, activation);
            None
        }
    }
}

/// `pool` applied to `x` by glassbox's window kernel where the process's [`path`] is
/// [`ConvPath::Tiled`], or `None` where burn's kernel is kept.
pub fn max_pool2d(pool: &MaxPool2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    match path() {
        #[cfg(feature = "gpu")]
        ConvPath::Tiled => {
            let y = window::max_pool2d(pool, x)?;
            check_layer(&y, || {
                let what = format!("max pool {:?} /{:?}", pool.kernel_size, pool.stride);
                Some((what, x.clone(), pool.forward(f32_of(x))))
            });
            Some(y)
        }
        _ => {
            let _ = (pool, x);
            None
        }
    }
}

/// Whether every layer glassbox's kernels run is also run by burn's, for [`take_layer_checks`].
static LAYER_CHECKS_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The layers checked since the last [`take_layer_checks`].
static LAYER_CHECKS: std::sync::Mutex<Vec<LayerCheck>> = std::sync::Mutex::new(Vec::new());

/// One layer run by glassbox's kernels and by burn's f32 kernel on the same values
/// ([`set_layer_checks`]).
#[derive(Debug, Clone)]
pub struct LayerCheck {
    /// The layer: its kind, kernel, stride, output channels and activation.
    pub layer: String,
    /// Its input's shape.
    pub input: Vec<usize>,
    /// Its output's dtype.
    pub dtype: burn::tensor::DType,
    /// The largest `|glassbox − burn|` over its outputs, relative to `1 + max |burn|` (the
    /// layer's scale: two orders of summation differ by rounding relative to the size of the
    /// terms summed, not to an output that cancels to near zero).
    pub worst: f32,
}

/// Turns on (or off) checking every layer that glassbox's kernels run against burn's kernel on
/// the same input, for tests (it runs each such layer twice and waits for the device):
/// [`take_layer_checks`] returns what was seen.
pub fn set_layer_checks(on: bool) {
    LAYER_CHECKS_ON.store(on, Ordering::Relaxed);
}

/// Whether layers are being checked ([`set_layer_checks`]).
#[cfg(feature = "gpu")]
pub(crate) fn layer_checks_on() -> bool {
    LAYER_CHECKS_ON.load(Ordering::Relaxed)
}

/// The layers checked since the last call ([`set_layer_checks`]).
pub fn take_layer_checks() -> Vec<LayerCheck> {
    std::mem::take(&mut *LAYER_CHECKS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// [`check_layer`] for `y`, `conv` then `activation` applied to `x`; `note` follows the
/// layer's name.
#[cfg(feature = "gpu")]
pub(crate) fn check_conv(
    y: &Tensor<4>,
    conv: &Conv2d,
    x: &Tensor<4>,
    activation: Activation,
    note: &str,
) {
    check_layer(y, || {
        let [cout, _, kh, kw] = conv.weight.dims();
        let what = format!(
            "conv {kh}x{kw} /{:?} ->{cout} {activation:?}{note}",
            conv.stride
        );
        let want = conv_f32(conv).forward(f32_of(x));
        Some((what, x.clone(), activation.burn(want)))
    });
}

/// `x` in f32 (f16 values widened exactly).
#[cfg(feature = "gpu")]
fn f32_of<const D: usize>(x: &Tensor<D>) -> Tensor<D> {
    x.clone().cast(burn::tensor::DType::F32)
}

/// `conv` with its weights and bias in f32 (f16 values widened exactly): burn's f32 kernel on
/// the same values is the reference for an f16 layer, which glassbox's kernels sum in f32.
#[cfg(feature = "gpu")]
fn conv_f32(conv: &Conv2d) -> Conv2d {
    let mut wide = conv.clone();
    wide.weight = burn::module::Param::from_tensor(f32_of(&conv.weight.val()));
    wide.bias = conv
        .bias
        .as_ref()
        .map(|b| burn::module::Param::from_tensor(f32_of(&b.val())));
    wide
}

/// As [`conv_f32`], for a fully connected layer.
#[cfg(feature = "gpu")]
fn linear_f32(linear: &Linear) -> Linear {
    let mut wide = linear.clone();
    wide.weight = burn::module::Param::from_tensor(f32_of(&linear.weight.val()));
    wide.bias = linear
        .bias
        .as_ref()
        .map(|b| burn::module::Param::from_tensor(f32_of(&b.val())));
    wide
}

/// Records how far `got` is from burn's f32 result on the same values where checks are on:
/// `burn` gives the layer's name, its input and burn's output, or `None` where burn cannot
/// run it.
#[cfg(feature = "gpu")]
pub(crate) fn check_layer<const D: usize, const I: usize>(
    got: &Tensor<D>,
    burn: impl FnOnce() -> Option<(String, Tensor<I>, Tensor<D>)>,
) {
    if !layer_checks_on() {
        return;
    }
    let Some((layer, input, want)) = burn() else {
        return;
    };
    let f32s = |t: Tensor<D>| t.cast(burn::tensor::DType::F32);
    let want = f32s(want);
    let scale = want.clone().abs().max().into_scalar::<f32>() + 1.0;
    let worst = (f32s(got.clone()) - want).abs().max().into_scalar::<f32>() / scale;
    LAYER_CHECKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(LayerCheck {
            layer,
            input: input.dims().to_vec(),
            dtype: got.dtype(),
            worst,
        });
}

/// Fewest input channels for which the matrix products are used: each product's inner
/// dimension grows with the channel count, and a thin one (a stem over RGB) leaves the matmul
/// idle.
const MIN_CHANNELS: usize = 16;

/// The shape of a convolution that the matrix-product paths take.
struct Geometry {
    cin: usize,
    cout: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    out: [usize; 2],
}

impl Geometry {
    /// The geometry and the zero-padded input, or `None` where burn's kernel is kept (1×1,
    /// grouped, dilated or `Same`-padded convolutions, few input channels).
    fn of(conv: &Conv2d, x: &Tensor<4>) -> Option<(Self, Tensor<4>)> {
        let [cout, cin, kh, kw] = conv.weight.val().dims();
        let [_, channels, height, width] = x.dims();
        let [sh, sw] = conv.stride;
        if conv.groups != 1
            || channels != cin
            || cin < MIN_CHANNELS
            || kh * kw <= 1
            || conv.dilation != [1, 1]
            || sh == 0
            || sw == 0
        {
            return None;
        }
        let [top, left, bottom, right] = super::cpu::padding(&conv.padding)?;
        let out = super::cpu::conv_output_size(
            [height, width],
            [kh, kw],
            [sh, sw],
            [top, left, bottom, right],
        )?;
        let padded = if top + left + bottom + right > 0 {
            x.clone()
                .pad([(top, bottom), (left, right)], PadMode::Constant(0.0))
        } else {
            x.clone()
        };
        let geometry = Self {
            cin,
            cout,
            kernel: [kh, kw],
            stride: [sh, sw],
            out,
        };
        Some((geometry, padded))
    }

    /// Tap `(ky, kx)` of every output pixel, `[n, cin, ho·wo]`, from the padded input.
    fn shifted(&self, padded: &Tensor<4>, ky: usize, kx: usize) -> Tensor<3> {
        let ([ho, wo], [sh, sw]) = (self.out, self.stride);
        let (y_end, x_end) = (ky + (ho - 1) * sh + 1, kx + (wo - 1) * sw + 1);
        let n = padded.dims()[0];
        padded
            .clone()
            .slice(s![.., .., ky..y_end;sh as isize, kx..x_end;sw as isize])
            .reshape([n, self.cin, ho * wo])
    }

    /// The products `[n, cout, ho·wo]` plus the bias, as NCHW.
    fn finish(&self, conv: &Conv2d, y: Tensor<3>) -> Tensor<4> {
        let [ho, wo] = self.out;
        let y = match &conv.bias {
            Some(bias) => y + bias.val().reshape([1, self.cout, 1]),
            None => y,
        };
        let n = y.dims()[0];
        y.reshape([n, self.cout, ho, wo])
    }
}

/// `conv` applied to `x` (on any device) as a sum of per-tap matrix products, or `None` where
/// burn's kernel is kept (1×1, grouped, dilated or `Same`-padded convolutions, few input channels).
pub fn conv2d_taps(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let (g, padded) = Geometry::of(conv, x)?;
    let [kh, kw] = g.kernel;
    // [kh, kw, cout, cin]: tap (ky, kx)'s weights are one contiguous [cout, cin] matrix.
    let taps = conv.weight.val().permute([2, 3, 0, 1]);
    let mut sum: Option<Tensor<3>> = None;
    for ky in 0..kh {
        for kx in 0..kw {
            let w = taps
                .clone()
                .slice(s![ky..ky + 1, kx..kx + 1, .., ..])
                .reshape([1, g.cout, g.cin]);
            let product = w.matmul(g.shifted(&padded, ky, kx));
            sum = Some(match sum {
                Some(acc) => acc + product,
                None => product,
            });
        }
    }
    Some(g.finish(conv, sum?))
}

/// `conv` applied to `x` (on any device) as one matrix product per block of images over their
/// im2col block `[images, kh·kw·cin, ho·wo]` (tap-major rows), each block at most three quarters
/// of `buffer_limit` bytes; `None` where burn's kernel is kept (as for [`conv2d_taps`]).
pub fn conv2d_im2col(conv: &Conv2d, x: &Tensor<4>, buffer_limit: u64) -> Option<Tensor<4>> {
    let (g, padded) = Geometry::of(conv, x)?;
    let ([kh, kw], [ho, wo]) = (g.kernel, g.out);
    let k = kh * kw * g.cin;
    // [cout, kh, kw, cin] flattened: column (ky·kw + kx)·cin + c, as the block's rows.
    let w = conv
        .weight
        .val()
        .permute([0, 2, 3, 1])
        .reshape([1, g.cout, k]);
    let n = x.dims()[0];
    let per_image = (k * ho * wo * x.dtype().size()) as u64;
    let images = ((buffer_limit / 4 * 3) / per_image.max(1)).clamp(1, n as u64) as usize;
    let parts: Vec<Tensor<4>> = (0..n)
        .step_by(images)
        .map(|start| {
            let end = (start + images).min(n);
            let part = if images < n {
                padded.clone().slice(s![start..end, .., .., ..])
            } else {
                padded.clone()
            };
            let rows: Vec<Tensor<3>> = (0..kh * kw)
                .map(|t| g.shifted(&part, t / kw, t % kw))
                .collect();
            g.finish(conv, w.clone().matmul(Tensor::cat(rows, 1)))
        })
        .collect();
    Some(if parts.len() == 1 {
        parts.into_iter().next()?
    } else {
        Tensor::cat(parts, 0)
    })
}
