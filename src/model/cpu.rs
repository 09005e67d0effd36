//! glassbox's own CPU kernels for the layers burn-flex runs slowest.
//!
//! `examples/layers.rs` showed where the CPU forward pass goes: GoogLeNet spent 55 % of it in
//! max pooling, EfficientNet-Lite0 42 % in depthwise convolutions and 27 % in the ReLU6 clamps
//! after its convolutions (each a separate, single-threaded pass over a large tensor). The
//! generated `forward` of every model calls [`conv2d`], [`max_pool2d`] and [`lrn`] instead of the
//! burn modules (`build.rs` rewrites the calls, and folds a `Relu` or `Clip` that only consumes a
//! convolution's output into that call). On the CPU device these run:
//!
//! - depthwise convolutions (one input channel per group, no dilation, explicit or no padding;
//!   strided ones up to 3x3) as direct kernels over NCHW planes, every plane on its own core
//!   (rayon), the activation applied while the output plane is still in cache;
//! - every other convolution with explicit or no padding as im2col + gemm over bands of output
//!   rows (the `gemm` crate burn-flex uses, on pre-laid-out weights: an NCHW convolution's
//!   weights already are the gemm's left matrix), bias and activation fused, the bands of all
//!   images spread over the cores;
//! - max pooling in two separable passes (across each row, then down the reduced rows);
//! - local response normalisation (GoogLeNet's zoo graph) across channels, one image per core.
//!
//! Everything else (and the few convolutions none of these take, whose activation then runs
//! in place on every core), and every tensor on a GPU, goes to burn unchanged. The results equal
//! burn's own kernels to float rounding (`tests/it/cpu_kernels.rs`) and whole models still
//! match onnxruntime (`tests/it/parity.rs`).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns glassbox's CPU kernels on (the default) or off for the whole process; off, every layer
/// runs through burn, as a baseline for measurements.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

fn enabled_on(x: &Tensor<4>) -> bool {
    ENABLED.load(Ordering::Relaxed) && x.device() == Device::flex()
}

/// The activation applied to a convolution's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// None.
    None,
    /// `max(x, 0)`, NaN kept.
    Relu,
    /// `x` clamped to `[min, max]` (ONNX `Clip`), NaN kept.
    Clamp(f32, f32),
}

impl Activation {
    /// Applies it as burn would (the fallback path).
    fn burn(self, y: Tensor<4>) -> Tensor<4> {
        match self {
            Activation::None => y,
            Activation::Relu => burn::tensor::activation::relu(y),
            Activation::Clamp(lo, hi) => y.clamp(lo, hi),
        }
    }

    /// Whether the in-place kernels can apply it (a clamp needs ordered, non-NaN bounds).
    fn native(self) -> bool {
        match self {
            Activation::Clamp(lo, hi) => lo <= hi,
            _ => true,
        }
    }

    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => {
                if x.is_nan() || x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            Activation::Clamp(lo, hi) => x.clamp(lo, hi),
        }
    }

    fn apply_all(self, values: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Relu => values
                .iter_mut()
                .for_each(|x| *x = Activation::Relu.apply(*x)),
            Activation::Clamp(lo, hi) => values.iter_mut().for_each(|x| *x = x.clamp(lo, hi)),
        }
    }
}

/// `conv` applied to `x`, then `activation`.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    if !enabled_on(&x) || !activation.native() {
        if super::gpu::enabled()
            && x.device() != Device::flex()
            && let Some(y) = super::gpu::conv2d(conv, &x)
        {
            return activation.burn(y);
        }
        return activation.burn(conv.forward(x));
    }
    if let Some(y) = depthwise(conv, &x, activation) {
        return y;
    }
    if let Some(y) = gemm_conv(conv, &x, activation) {
        return y;
    }
    in_place(conv.forward(x), activation)
}

/// `pool` applied to `x`.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    if !enabled_on(&x) {
        return pool.forward(x);
    }
    max_pool_flex(pool, &x).unwrap_or_else(|| pool.forward(x))
}

/// Local response normalisation across channels (ONNX `LRN`, burn's `LocalResponseNorm`):
/// `x / (k + alpha / size × Σ x²)^beta`, the sum over channels `c - (size-1)/2 ..= c + size/2`.
pub fn lrn(x: Tensor<4>, size: usize, alpha: f64, beta: f64, k: f64) -> Tensor<4> {
    let burn = |x: Tensor<4>| {
        burn::nn::LocalResponseNormConfig::new(size)
            .with_alpha(alpha)
            .with_beta(beta)
            .with_k(k)
            .init()
            .forward(x)
    };
    if !enabled_on(&x) || size == 0 {
        return burn(x);
    }
    lrn_flex(&x, size, alpha as f32, beta as f32, k as f32).unwrap_or_else(|| burn(x))
}

fn lrn_flex(x: &Tensor<4>, size: usize, alpha: f32, beta: f32, k: f32) -> Option<Tensor<4>> {
    let [n, c, height, width] = x.dims();
    let plane = height * width;
    let (t, start, end) = values(x)?;
    let input = &t.storage::<f32>()[start..end];
    let (before, after) = ((size - 1) / 2, size / 2);
    let scale = alpha / size as f32;
    let mut out = vec![0.0f32; n * c * plane];
    out.par_chunks_mut(c * plane)
        .zip(input.par_chunks(c * plane))
        .for_each(|(out, input)| {
            let squares: Vec<f32> = input.iter().map(|v| v * v).collect();
            let mut sum = vec![0.0f32; plane];
            for ch in 0..c {
                sum.fill(0.0);
                for other in ch.saturating_sub(before)..(ch + after + 1).min(c) {
                    for (s, q) in sum
                        .iter_mut()
                        .zip(&squares[other * plane..(other + 1) * plane])
                    {
                        *s += q;
                    }
                }
                let range = ch * plane..(ch + 1) * plane;
                for ((o, v), s) in out[range.clone()].iter_mut().zip(&input[range]).zip(&sum) {
                    let base = k + scale * s;
                    // x^0.75 as two square roots: exact enough and far cheaper than powf.
                    let power = if beta == 0.75 {
                        let root = base.sqrt();
                        root * root.sqrt()
                    } else {
                        base.powf(beta)
                    };
                    *o = v / power;
                }
            }
        });
    Some(flex_tensor(out, [n, c, height, width]))
}

/// Applies `activation` to a CPU tensor in place on every core, or through burn when the tensor
/// is shared or strided.
fn in_place(y: Tensor<4>, activation: Activation) -> Tensor<4> {
    if activation == Activation::None {
        return y;
    }
    let fallback = y.clone();
    let mut t = match y.try_into_primitive::<Flex>() {
        Ok(t) => t,
        Err(_) => return activation.burn(fallback),
    };
    // Only `t` may hold the storage now.
    drop(fallback);
    let n = t.layout().num_elements();
    let plain = t.dtype() == DType::F32
        && t.is_unique()
        && t.layout().is_contiguous()
        && t.layout().start_offset() == 0;
    match t.try_storage_mut::<f32>() {
        Some(values) if plain && values.len() >= n => {
            values[..n]
                .par_chunks_mut(1 << 14)
                .for_each(|chunk| activation.apply_all(chunk));
            Tensor::from_primitive::<Flex>(t)
        }
        _ => activation.burn(Tensor::from_primitive::<Flex>(t)),
    }
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

/// Runs `kernel(plane, input, output)` for every `(image, channel)` plane of `x`, each on its
/// own core, into a new tensor of `window`'s output size; `None` if `x` is not CPU f32.
fn per_plane(
    x: &Tensor<4>,
    window: &Window,
    kernel: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) -> Option<Tensor<4>> {
    let [n, c, _, _] = x.dims();
    let (t, start, end) = values(x)?;
    let input = &t.storage::<f32>()[start..end];
    let plane_in = window.height * window.width;
    let plane_out = window.out_height * window.out_width;
    let mut out = vec![0.0f32; n * c * plane_out];
    out.par_chunks_mut(plane_out)
        .enumerate()
        .for_each(|(plane, out)| {
            kernel(plane, &input[plane * plane_in..(plane + 1) * plane_in], out);
        });
    Some(flex_tensor(
        out,
        [n, c, window.out_height, window.out_width],
    ))
}

/// Padding `(top, left, bottom, right)` of an explicit or absent padding.
pub(crate) fn padding(p: &PaddingConfig2d) -> Option<[usize; 4]> {
    match p {
        PaddingConfig2d::Valid => Some([0; 4]),
        PaddingConfig2d::Explicit(t, l, b, r) => Some([*t, *l, *b, *r]),
        PaddingConfig2d::Same => None,
    }
}

/// A window operation over NCHW planes: geometry shared by depthwise convolution and pooling.
#[derive(Debug, Clone, Copy)]
struct Window {
    height: usize,
    width: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    /// Top and left padding.
    pad: [usize; 2],
    out_height: usize,
    out_width: usize,
}

impl Window {
    /// Output columns `ox` whose input column `ox * stride + kx - pad` lies inside the row.
    fn columns(&self, kx: usize) -> std::ops::Range<usize> {
        let (s, p) = (self.stride[1], self.pad[1]);
        // ox * s + kx >= p  and  ox * s + kx - p < width
        let lo = p.saturating_sub(kx).div_ceil(s);
        let hi = (self.width + p)
            .saturating_sub(kx)
            .div_ceil(s)
            .min(self.out_width);
        lo.min(hi)..hi
    }

    /// The input row read by output row `oy` at kernel row `ky`, if inside the plane.
    fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride[0] + ky)
            .checked_sub(self.pad[0])
            .filter(|&y| y < self.height)
    }
}

/// Depthwise convolution with bias and activation, or `None` where this kernel does not apply.
fn depthwise(conv: &Conv2d, x: &Tensor<4>, activation: Activation) -> Option<Tensor<4>> {
    let weight = conv.weight.val();
    let [channels, per_group, kh, kw] = weight.dims();
    let [_, c, height, width] = x.dims();
    // Measured on Lite0 at batch 16 (examples/layers.rs): the row kernel beats burn's on 3x3
    // layers but not on strided 5x5 ones, whose small planes favour burn's im2col + gemm; those
    // stay with burn (their activation still runs in place). Stride 1 uses the flat kernel.
    let strided = conv.stride != [1, 1];
    if per_group != 1
        || conv.groups != c
        || channels != c
        || conv.dilation != [1, 1]
        || (strided && kh * kw > 9)
    {
        return None;
    }
    let [top, left, bottom, right] = padding(&conv.padding)?;
    let [sh, sw] = conv.stride;
    let (padded_h, padded_w) = (height + top + bottom, width + left + right);
    if padded_h < kh || padded_w < kw || sh == 0 || sw == 0 {
        return None;
    }
    let window = Window {
        height,
        width,
        kernel: [kh, kw],
        stride: [sh, sw],
        pad: [top, left],
        out_height: (padded_h - kh) / sh + 1,
        out_width: (padded_w - kw) / sw + 1,
    };
    let params = Params::of(conv)?;
    let (weights, bias) = (params.weights(), params.bias());
    per_plane(x, &window, |plane, input, out| {
        let ch = plane % c;
        let bias = bias.map_or(0.0, |b| b[ch]);
        let kernel = &weights[ch * kh * kw..(ch + 1) * kh * kw];
        if strided {
            window_plane(&window, input, out, bias, |acc, ky, kx, src| {
                let w = kernel[ky * kw + kx];
                for (a, v) in acc.iter_mut().zip(src) {
                    *a += w * v;
                }
            });
        } else {
            flat_plane(
                &window,
                [top, left, bottom, right],
                input,
                out,
                kernel,
                bias,
            );
        }
        activation.apply_all(out);
    })
}

/// A stride-1 depthwise plane as one long multiply-add per kernel tap: the input is copied into
/// a zero-padded plane of width `wp`, and output `(oy, ox)` is accumulated at `oy * wp + ox`
/// of a flat buffer (the `wp - out_width` columns between rows are computed and dropped), so
/// every tap is a single contiguous loop however small the plane.
fn flat_plane(
    window: &Window,
    [top, left, bottom, right]: [usize; 4],
    input: &[f32],
    out: &mut [f32],
    kernel: &[f32],
    bias: f32,
) {
    let [kh, kw] = window.kernel;
    let (wp, hp) = (window.width + left + right, window.height + top + bottom);
    let mut padded = vec![0.0f32; hp * wp];
    for (y, row) in input.chunks(window.width).enumerate() {
        let at = (y + top) * wp + left;
        padded[at..at + window.width].copy_from_slice(row);
    }
    let (ho, wo) = (window.out_height, window.out_width);
    let len = (ho - 1) * wp + wo;
    let mut acc = vec![bias; len];
    for ky in 0..kh {
        for kx in 0..kw {
            let w = kernel[ky * kw + kx];
            let start = ky * wp + kx;
            for (a, v) in acc.iter_mut().zip(&padded[start..start + len]) {
                *a += w * v;
            }
        }
    }
    for (oy, row) in out.chunks_mut(wo).enumerate() {
        row.copy_from_slice(&acc[oy * wp..oy * wp + wo]);
    }
}

/// Max pooling (padding ignored, as `-inf`), or `None` where this kernel does not apply.
fn max_pool_flex(pool: &MaxPool2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let [_, _, height, width] = x.dims();
    let [kh, kw] = pool.kernel_size;
    let [sh, sw] = pool.stride;
    let [top, left, bottom, right] = padding(&pool.padding)?;
    // Padding of a whole kernel or more would make windows of padding only (PyTorch refuses it).
    if pool.dilation != [1, 1] || sh == 0 || sw == 0 || kh == 0 || kw == 0 || left >= kw {
        return None;
    }
    let out_len = |size: usize, pad_lo: usize, pad_hi: usize, k: usize, s: usize| {
        let span = (size + pad_lo + pad_hi).checked_sub(k)?;
        let mut out = if pool.ceil_mode {
            span.div_ceil(s) + 1
        } else {
            span / s + 1
        };
        // PyTorch's rule: the last window must start inside the input or its left padding.
        if pool.ceil_mode && (out - 1) * s >= size + pad_lo {
            out -= 1;
        }
        Some(out)
    };
    let window = Window {
        height,
        width,
        kernel: [kh, kw],
        stride: [sh, sw],
        pad: [top, left],
        out_height: out_len(height, top, bottom, kh, sh)?,
        out_width: out_len(width, left, right, kw, sw)?,
    };
    per_plane(x, &window, |_, input, out| {
        max_pool_plane(&window, input, out)
    })
}

/// The larger of `a` and `v`, NaN if either is (as PyTorch and onnxruntime pool); a select,
/// so loops over it vectorise.
#[inline(always)]
fn max_nan(a: f32, v: f32) -> f32 {
    if v > a || v.is_nan() { v } else { a }
}

/// Max pooling of one plane in two passes, since a rectangular window's maximum is the
/// maximum over its rows of each row's maximum: every input row is reduced across the kernel's
/// width (from a copy padded with `-inf`), then each output row takes the maximum of the
/// reduced rows under it, a contiguous, vectorised loop per kernel row.
fn max_pool_plane(window: &Window, input: &[f32], out: &mut [f32]) {
    let [kh, kw] = window.kernel;
    let [sw, left] = [window.stride[1], window.pad[1]];
    let (width, wo) = (window.width, window.out_width);
    let span = (wo - 1) * sw + kw;
    let mut scratch = vec![f32::NEG_INFINITY; span + window.height * wo];
    let (padded, reduced) = scratch.split_at_mut(span);
    let copied = width.min(span.saturating_sub(left));
    for (row, acc) in input.chunks(width).zip(reduced.chunks_mut(wo)) {
        // Only [left, left + copied) is ever written: the rest stays -inf.
        padded[left..left + copied].copy_from_slice(&row[..copied]);
        if sw == 1 {
            for kx in 0..kw {
                for (a, &v) in acc.iter_mut().zip(&padded[kx..kx + wo]) {
                    *a = max_nan(*a, v);
                }
            }
        } else {
            for (ox, a) in acc.iter_mut().enumerate() {
                for &v in &padded[ox * sw..ox * sw + kw] {
                    *a = max_nan(*a, v);
                }
            }
        }
    }
    for (oy, acc) in out.chunks_mut(wo).enumerate() {
        acc.fill(f32::NEG_INFINITY);
        for ky in 0..kh {
            if let Some(y) = window.row(oy, ky) {
                for (a, &v) in acc.iter_mut().zip(&reduced[y * wo..(y + 1) * wo]) {
                    *a = max_nan(*a, v);
                }
            }
        }
    }
}

/// Runs `combine(acc, ky, kx, inputs)` over every kernel tap of every output row of one plane,
/// where `acc` is the slice of output columns whose input column exists and `inputs` the input
/// values they read at that tap (contiguous for stride 1, gathered otherwise).
fn window_plane(
    window: &Window,
    input: &[f32],
    out: &mut [f32],
    init: f32,
    combine: impl Fn(&mut [f32], usize, usize, &[f32]),
) {
    let [kh, kw] = window.kernel;
    let [sw, left] = [window.stride[1], window.pad[1]];
    let mut gathered = vec![0.0f32; window.out_width];
    // The valid output columns of each kernel column, computed once per plane.
    let columns: Vec<std::ops::Range<usize>> = (0..kw).map(|kx| window.columns(kx)).collect();
    for (oy, row_out) in out.chunks_mut(window.out_width).enumerate() {
        row_out.fill(init);
        for ky in 0..kh {
            let Some(y) = window.row(oy, ky) else {
                continue;
            };
            let row_in = &input[y * window.width..(y + 1) * window.width];
            for (kx, cols) in columns.iter().enumerate() {
                if cols.is_empty() {
                    continue;
                }
                // Input column of output column `ox`: ox * sw + kx - left.
                let first = cols.start * sw + kx - left;
                let acc = &mut row_out[cols.clone()];
                if sw == 1 {
                    combine(acc, ky, kx, &row_in[first..first + cols.len()]);
                } else {
                    let src = &mut gathered[..cols.len()];
                    for (i, v) in src.iter_mut().enumerate() {
                        *v = row_in[first + i * sw];
                    }
                    combine(acc, ky, kx, src);
                }
            }
        }
    }
}

/// A raw pointer to an output buffer that several threads write, each to its own part.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the pointer is only used to write disjoint regions of one live buffer (see
// `gemm_conv`), which outlives every thread of the parallel loop.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer `offset` floats in (a method, so that closures capture the whole `Send +
    /// Sync` wrapper rather than its raw pointer field); only dereferenced by `gemm_conv`, which
    /// stays inside the buffer.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Floats that one tile's im2col block and output block may each hold: a tile stays in the
/// core's L2 cache from the gemm to the activation.
const TILE_FLOATS: usize = 48 << 10;

/// The fewest output pixels a tile has, however large its blocks.
const MIN_COLS: usize = 96;

/// A convolution (any kernel size, stride, dilation and group count; explicit or no padding) as
/// one gemm per tile of output rows, with bias and activation fused: for each image and each
/// band of output rows, the band's im2col block `[cin/groups × kh × kw, band]` is built from the
/// NCHW input (a 1×1 convolution reads the input in place), multiplied by the weights, which are
/// already the `[cout/groups, cin/groups × kh × kw]` matrix the gemm wants, into an output that
/// was filled with the bias, and the activation is applied while the band is still in cache.
/// Bands of every image are spread over all cores. Depthwise convolutions are left to
/// [`depthwise`] and burn: a one-row gemm per channel would waste the gemm.
fn gemm_conv(conv: &Conv2d, x: &Tensor<4>, activation: Activation) -> Option<Tensor<4>> {
    let weight = conv.weight.val();
    let [cout, cin_g, kh, kw] = weight.dims();
    let [n, cin, height, width] = x.dims();
    let groups = conv.groups;
    if groups == 0 || cin_g * groups != cin || cout % groups != 0 || (groups > 1 && cin_g == 1) {
        return None;
    }
    let [top, left, bottom, right] = padding(&conv.padding)?;
    let [sh, sw] = conv.stride;
    let [dh, dw] = conv.dilation;
    if sh == 0 || sw == 0 || dh == 0 || dw == 0 || kh == 0 || kw == 0 {
        return None;
    }
    let (span_h, span_w) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
    let (padded_h, padded_w) = (height + top + bottom, width + left + right);
    if padded_h < span_h || padded_w < span_w {
        return None;
    }
    let (ho, wo) = ((padded_h - span_h) / sh + 1, (padded_w - span_w) / sw + 1);
    let params = Params::of(conv)?;
    let (weights, bias) = (params.weights(), params.bias());
    let (xt, x_start, x_end) = values(x)?;
    let input = &xt.storage::<f32>()[x_start..x_end];

    let k = cin_g * kh * kw;
    let cout_g = cout / groups;
    let (plane_in, plane_out) = (height * width, ho * wo);
    let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && top + left + bottom + right == 0;
    // Bands of at least MIN_COLS pixels: a thinner gemm spends more on packing than on work.
    let band = (TILE_FLOATS / k.max(cout_g))
        .max(MIN_COLS)
        .div_ceil(wo)
        .clamp(1, ho);
    let bands = ho.div_ceil(band);
    let mut out = vec![0.0f32; n * cout * plane_out];
    let shared = SharedOut(out.as_mut_ptr());
    (0..n * bands)
        .into_par_iter()
        .for_each_init(Vec::new, |col: &mut Vec<f32>, job| {
            let (image, first_row) = (job / bands, job % bands * band);
            let rows = first_row..(first_row + band).min(ho);
            let (p0, cols) = (rows.start * wo, rows.len() * wo);
            for g in 0..groups {
                let x_group = &input[(image * cin + g * cin_g) * plane_in..][..cin_g * plane_in];
                let (rhs, rhs_rs) = if pointwise {
                    (x_group[p0..].as_ptr(), plane_in)
                } else {
                    col.resize(k * cols, 0.0);
                    im2col(
                        x_group,
                        col,
                        [height, width],
                        [kh, kw],
                        [sh, sw],
                        [dh, dw],
                        [top, left],
                        wo,
                        rows.clone(),
                    );
                    (col.as_ptr(), cols)
                };
                let first_out = (image * cout + g * cout_g) * plane_out + p0;
                // The rows of this band and group, one slice per output channel.
                // SAFETY: job (image, band) and group g own channels g*cout_g.. of that image
                // and columns p0..p0+cols of their planes; no other job touches them, and
                // `out` lives until the loop ends.
                let row = |co: usize| unsafe {
                    std::slice::from_raw_parts_mut(shared.at(first_out + co * plane_out), cols)
                };
                if let Some(bias) = bias {
                    for co in 0..cout_g {
                        row(co).fill(bias[g * cout_g + co]);
                    }
                }
                // SAFETY: lhs is the group's [cout_g, k] row-major weights, rhs the [k, cols]
                // block (row stride rhs_rs), dst the [cout_g, cols] block (row stride
                // plane_out), all inside their buffers; dst is this job's own region.
                unsafe {
                    gemm::gemm(
                        cout_g,
                        cols,
                        k,
                        shared.at(first_out),
                        1,
                        plane_out as isize,
                        bias.is_some(),
                        weights[g * cout_g * k..].as_ptr(),
                        1,
                        k as isize,
                        rhs,
                        1,
                        rhs_rs as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for co in 0..cout_g {
                    activation.apply_all(row(co));
                }
            }
        });
    Some(flex_tensor(out, [n, cout, ho, wo]))
}

/// Writes the im2col block of output rows `rows` of one group: row `(ci, ky, kx)` of `col`
/// holds, for each output pixel of the band, the input value under kernel tap `(ky, kx)` of
/// channel `ci` (zero in the padding).
#[allow(clippy::too_many_arguments)]
fn im2col(
    input: &[f32],
    col: &mut [f32],
    [height, width]: [usize; 2],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [dh, dw]: [usize; 2],
    [top, left]: [usize; 2],
    wo: usize,
    rows: std::ops::Range<usize>,
) {
    let cols = rows.len() * wo;
    for (r, block) in col.chunks_mut(cols).enumerate() {
        let (ci, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let plane = &input[ci * height * width..][..height * width];
        // Output columns whose input column ox * sw + kx * dw - left lies inside the row.
        let shift = kx * dw;
        let lo = left.saturating_sub(shift).div_ceil(sw).min(wo);
        let hi = (width + left)
            .saturating_sub(shift)
            .div_ceil(sw)
            .clamp(lo, wo);
        for (oy, dst) in rows.clone().zip(block.chunks_mut(wo)) {
            let y = (oy * sh + ky * dh).checked_sub(top).filter(|&y| y < height);
            let Some(y) = y else {
                dst.fill(0.0);
                continue;
            };
            let src = &plane[y * width..][..width];
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            let first = lo * sw + shift - left;
            if sw == 1 {
                dst[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
            } else {
                for (i, d) in dst[lo..hi].iter_mut().enumerate() {
                    *d = src[first + i * sw];
                }
            }
        }
    }
}
