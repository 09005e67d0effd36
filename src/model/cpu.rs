//! glassbox's own CPU kernels for the layers burn-flex runs slowest.
//!
//! `examples/layers.rs` showed where the CPU forward pass goes: GoogLeNet spent 55 % of it in
//! max pooling, EfficientNet-Lite0 42 % in depthwise convolutions and 27 % in the ReLU6 clamps
//! after its convolutions (each a separate, single-threaded pass over a large tensor). The
//! generated `forward` of every model calls [`conv2d`], [`max_pool2d`] and [`lrn`] instead of the
//! burn modules (`build.rs` rewrites the calls, and folds a `Relu` or `Clip` that only consumes a
//! convolution's output into that call). On the CPU device these run:
//!
//! - depthwise convolutions (one input channel per group, no dilation, explicit or no padding,
//!   any stride) and max pooling as flat passes over phase planes ([`Phases`]): every kernel tap
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
//! chosen when they run ([`simd`]).
//!
//! Everything else (and the few convolutions none of these take, whose activation then runs
//! in place on every core), and every tensor on a GPU, goes to burn unchanged. The results equal
//! burn's own kernels to float rounding (`tests/it/cpu_kernels.rs`) and whole models still
//! match onnxruntime (`tests/it/parity.rs`).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use super::simd;
use std::mem::MaybeUninit;
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

    /// The activation on a vector (NaN kept, as in [`Activation::apply`]).
    #[inline(always)]
    fn apply_vector<V: simd::Vector>(self, x: V) -> V {
        match self {
            Activation::None => x,
            Activation::Relu => V::at_least(x, V::splat(0.0)),
            Activation::Clamp(lo, hi) => V::at_most(V::at_least(x, V::splat(lo)), V::splat(hi)),
        }
    }

    fn apply_all(self, values: &mut [f32]) {
        if self != Activation::None {
            simd::run(BiasActivation {
                values,
                bias: None,
                activation: self,
            });
        }
    }
}

/// `values[i] = activation(values[i] + bias)`, a vector at a time.
struct BiasActivation<'a> {
    values: &'a mut [f32],
    bias: Option<f32>,
    activation: Activation,
}

impl simd::Kernel for BiasActivation<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: simd::Vector>(self) {
        let mut chunks = self.values.chunks_exact_mut(V::LANES);
        match self.bias {
            Some(bias) => {
                // 1 × v + b: one exact product, so the sum is rounded once, as a plain add.
                let (one, b) = (V::splat(1.0), V::splat(bias));
                for chunk in &mut chunks {
                    let v = V::mul_add(one, V::load(chunk), b);
                    self.activation.apply_vector(v).store(chunk);
                }
                for x in chunks.into_remainder() {
                    *x = self.activation.apply(*x + bias);
                }
            }
            None => {
                for chunk in &mut chunks {
                    self.activation.apply_vector(V::load(chunk)).store(chunk);
                }
                for x in chunks.into_remainder() {
                    *x = self.activation.apply(*x);
                }
            }
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
///
/// A model running in f16 (on a GPU) gets its LRN in f32: the zoo models feed LRN activations of
/// a 0–255 input scale, whose squares pass f16's largest value (65504) from 256 up, and an
/// infinite sum would silently zero the output. With `k ≥ 1` (the zoo models' 1) the result is
/// no larger than the input, so it fits f16 again.
pub fn lrn(x: Tensor<4>, size: usize, alpha: f64, beta: f64, k: f64) -> Tensor<4> {
    let burn = |x: Tensor<4>| {
        let lrn = burn::nn::LocalResponseNormConfig::new(size)
            .with_alpha(alpha)
            .with_beta(beta)
            .with_k(k)
            .init();
        let half = match x.dtype() {
            DType::F16 => FloatDType::F16,
            DType::BF16 => FloatDType::BF16,
            _ => return lrn.forward(x),
        };
        lrn.forward(x.cast(FloatDType::F32)).cast(half)
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
    // SAFETY: the images cover the buffer, and every value of each is written below.
    let out = unsafe {
        written(n * c * plane, |out| {
            lrn_images(out, input, c, plane, (before, after), scale, beta, k)
        })
    };
    Some(flex_tensor(out, [n, c, height, width]))
}

/// LRN of every image of `input` into `out`, one image per core, writing every value.
#[allow(clippy::too_many_arguments)]
fn lrn_images(
    out: &mut [MaybeUninit<f32>],
    input: &[f32],
    c: usize,
    plane: usize,
    (before, after): (usize, usize),
    scale: f32,
    beta: f32,
    k: f32,
) {
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
                    o.write(v / power);
                }
            }
        });
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

/// A buffer of `len` floats that `fill` writes, not zeroed first: zeroing tens of megabytes
/// per layer costs as much as a fast kernel's own work.
///
/// # Safety
/// `fill` must write every one of the `len` elements it is given.
unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    fill(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: the capacity is `len`, and the caller's `fill` initialised all of it.
    unsafe { values.set_len(len) };
    values
}

/// Padding `(top, left, bottom, right)` of an explicit or absent padding.
pub(crate) fn padding(p: &PaddingConfig2d) -> Option<[usize; 4]> {
    match p {
        PaddingConfig2d::Valid => Some([0; 4]),
        PaddingConfig2d::Explicit(t, l, b, r) => Some([*t, *l, *b, *r]),
        PaddingConfig2d::Same => None,
    }
}

/// Depthwise convolution with bias and activation, or `None` where this kernel does not apply
/// (dilation, or a channel multiplier other than one).
fn depthwise(conv: &Conv2d, x: &Tensor<4>, activation: Activation) -> Option<Tensor<4>> {
    let weight = conv.weight.val();
    let [channels, per_group, kh, kw] = weight.dims();
    let [n, c, height, width] = x.dims();
    if per_group != 1 || conv.groups != c || channels != c || conv.dilation != [1, 1] {
        return None;
    }
    let [top, left, bottom, right] = padding(&conv.padding)?;
    let geometry = Phases::new(
        [height, width],
        [kh, kw],
        conv.stride,
        [top, left, bottom, right],
    )?;
    let params = Params::of(conv)?;
    let (weights, bias) = (params.weights(), params.bias());
    let (t, start, end) = values(x)?;
    // SAFETY: DepthwisePlanes writes every value of its planes.
    let out = unsafe {
        plane_tasks(
            &t.storage::<f32>()[start..end],
            n * c,
            &geometry,
            |first_plane, input, out, scratch| {
                simd::run(DepthwisePlanes {
                    geometry: &geometry,
                    input,
                    out,
                    first_plane,
                    channels: c,
                    weights,
                    bias,
                    activation,
                    scratch,
                })
            },
        )
    };
    Some(flex_tensor(
        out,
        [n, c, geometry.out_height, geometry.out_width],
    ))
}

/// Runs `task(first_plane, inputs, outputs, scratch)` over runs of consecutive planes of
/// `input`, each run on a core, into a new buffer of `geometry`'s output planes. `inputs`
/// starts at the run's first plane and goes on to the end of `input`, so that the run's last
/// plane can prefetch the next one (the next run is usually the same core's). A run has
/// enough planes that rayon's hand-over costs little next to the work (a 7x7 plane of a 5x5
/// kernel is only 1,225 multiply-adds), few enough that every core gets at least two runs.
///
/// # Safety
/// `task` must write every value of the output planes it is given.
unsafe fn plane_tasks(
    input: &[f32],
    planes: usize,
    geometry: &Phases,
    task: impl Fn(usize, &[f32], &mut [MaybeUninit<f32>], &mut Vec<f32>) + Sync,
) -> Vec<f32> {
    let plane_in = geometry.height * geometry.width;
    let plane_out = geometry.out_height * geometry.out_width;
    let work = plane_out * geometry.taps.len();
    let per_task = (1usize << 16)
        .div_ceil(work.max(1))
        .clamp(1, planes.div_ceil(2 * rayon::current_num_threads()).max(1));
    // SAFETY: the runs cover the buffer, and `task` writes all of each (the caller's contract).
    unsafe {
        written(planes * plane_out, |out| {
            out.par_chunks_mut(plane_out * per_task)
                .enumerate()
                .for_each_init(Vec::new, |scratch, (run, out)| {
                    let first = run * per_task;
                    task(first, &input[first * plane_in..], out, scratch)
                })
        })
    }
}

/// The most floats a vector has ([`simd::Vector::LANES`]): the slack every flat buffer gets so
/// that its last vector may run past the outputs kept.
const MAX_LANES: usize = 16;

/// Vectors a pass holds in registers through all kernel taps: 8 independent chains of
/// multiply-adds hide their latency on two FMA units.
const PASS_VECTORS: usize = 8;

/// The geometry of a depthwise convolution computed as flat multiply-adds over phase planes.
///
/// The zero-padded input plane of stride `(sh, sw)` is split into `sh × sw` phase planes of
/// `hq × wq` values, phase `(py, px)` holding the padded rows `py, py + sh, ...` and columns
/// `px, px + sw, ...`. Output `(oy, ox)` at kernel tap `(ky, kx)` then reads phase
/// `(ky % sh, kx % sw)` at row `oy + ky / sh` and column `ox + kx / sw`: if output `(oy, ox)` is
/// stored at `oy × wq + ox` of a flat buffer, every tap is one contiguous multiply-add over
/// the whole plane, shifted by a fixed offset, whatever the stride and however small the plane
/// (the `wq - out_width` values between output rows are computed and dropped).
#[derive(Debug, Clone)]
struct Phases {
    height: usize,
    width: usize,
    stride: [usize; 2],
    /// Top and left padding.
    pad: [usize; 2],
    hq: usize,
    wq: usize,
    out_height: usize,
    out_width: usize,
    /// Where tap `ky × kw + kx` starts reading, from the first phase plane's start (one per
    /// kernel tap).
    taps: Vec<usize>,
    /// Length of the flat output, up to and including the last output kept.
    len: usize,
}

impl Phases {
    fn new(
        [height, width]: [usize; 2],
        [kh, kw]: [usize; 2],
        [sh, sw]: [usize; 2],
        [top, left, bottom, right]: [usize; 4],
    ) -> Option<Self> {
        let (hp, wp) = (height + top + bottom, width + left + right);
        if hp < kh || wp < kw || sh == 0 || sw == 0 || kh == 0 || kw == 0 {
            return None;
        }
        let (hq, wq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        let (out_height, out_width) = ((hp - kh) / sh + 1, (wp - kw) / sw + 1);
        let taps = (0..kh * kw)
            .map(|t| {
                let (ky, kx) = (t / kw, t % kw);
                ((ky % sh) * sw + kx % sw) * hq * wq + (ky / sh) * wq + kx / sw
            })
            .collect();
        let len = (out_height - 1) * wq + out_width;
        Some(Self {
            height,
            width,
            stride: [sh, sw],
            pad: [top, left],
            hq,
            wq,
            out_height,
            out_width,
            taps,
            len,
        })
    }

    /// Floats of the phase planes, with room for the last vector to read past the flat
    /// output's end (values only dropped outputs use).
    fn phase_floats(&self) -> usize {
        self.stride[0] * self.stride[1] * self.hq * self.wq + MAX_LANES
    }

    /// Writes one input plane into the inner part of the phase planes `phases`, the part
    /// that is not padding (which the caller fills with `pad` once for all planes).
    #[inline(always)]
    fn split<V: simd::Vector>(&self, input: &[f32], phases: &mut [f32], pad: f32) {
        let [sh, sw] = self.stride;
        let [top, left] = self.pad;
        let (hq, wq, width) = (self.hq, self.wq, self.width);
        if sw == 2 {
            // Each padded row, deinterleaved into its even and odd columns a vector at a time.
            let (mut py, mut i) = (top % sh, top / sh);
            for row in input.chunks_exact(width) {
                let at = (py * 2 * hq + i) * wq;
                let (even, odd) = phases[at..].split_at_mut(hq * wq);
                deinterleave_row::<V>(row, left, pad, even, odd, wq);
                (py, i) = next_phase_row(py, i, sh);
            }
            return;
        }
        // Input row y is padded row y + top: phase row (y + top) / sh of phase (y + top) % sh,
        // counted up without dividing for every row.
        let (mut py, mut i) = (top % sh, top / sh);
        if sw == 1 {
            let copied = width.min(wq - left);
            for row in input.chunks_exact(width) {
                let at = (py * hq + i) * wq + left;
                simd::copy::<V>(&row[..copied], &mut phases[at..at + copied]);
                (py, i) = next_phase_row(py, i, sh);
            }
            return;
        }
        for row in input.chunks_exact(width) {
            for px in 0..sw {
                // Phase columns j whose input column j * sw + px - left lies inside the row.
                let lo = left.saturating_sub(px).div_ceil(sw);
                let hi = (width + left).saturating_sub(px).div_ceil(sw).clamp(lo, wq);
                let at = ((py * sw + px) * hq + i) * wq;
                for (j, d) in (lo..hi).zip(&mut phases[at + lo..at + hi]) {
                    *d = row[j * sw + px - left];
                }
            }
            (py, i) = next_phase_row(py, i, sh);
        }
    }
}

/// Phase `py` and row `i` in it of the padded row after the one in row `i` of phase `py`, at
/// vertical stride `sh`: rows are counted up instead of divided for every row.
#[inline(always)]
fn next_phase_row(py: usize, i: usize, sh: usize) -> (usize, usize) {
    if py + 1 == sh {
        (0, i + 1)
    } else {
        (py + 1, i)
    }
}

/// Splits the padded row (`left` values of `pad`, then `row`, then `pad` again) into its even
/// columns `even[..n]` and its odd ones `odd[..n]`, a vector at a time, reading `row` in
/// place: a copy into a padded buffer would be read back before its (masked) stores retire,
/// which stalls every load.
#[inline(always)]
fn deinterleave_row<V: simd::Vector>(
    row: &[f32],
    left: usize,
    pad: f32,
    even: &mut [f32],
    odd: &mut [f32],
    n: usize,
) {
    let lanes = V::LANES;
    for j in (0..n).step_by(lanes) {
        let start = (2 * j) as isize - left as isize;
        let (e, o) = V::deinterleave(
            V::load_window(row, start, pad),
            V::load_window(row, start + lanes as isize, pad),
        );
        let (even, odd) = (&mut even[j..n], &mut odd[j..n]);
        let count = (n - j).min(lanes);
        // SAFETY: even and odd hold at least `count` floats from here.
        unsafe {
            e.store_first(even.as_mut_ptr(), count);
            o.store_first(odd.as_mut_ptr(), count);
        }
    }
}

/// Depthwise convolution of the consecutive planes `first_plane..` of one task (see
/// [`Phases`]), one block of outputs at a time held in registers through every tap.
struct DepthwisePlanes<'a> {
    geometry: &'a Phases,
    /// The input from the task's first plane on.
    input: &'a [f32],
    /// Whole output planes, every value of which is written.
    out: &'a mut [MaybeUninit<f32>],
    first_plane: usize,
    channels: usize,
    weights: &'a [f32],
    bias: Option<&'a [f32]>,
    activation: Activation,
    scratch: &'a mut Vec<f32>,
}

impl simd::Kernel for DepthwisePlanes<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: simd::Vector>(self) {
        let taps = self.geometry.taps.len();
        let (weights, bias, channels) = (self.weights, self.bias, self.channels);
        PhasePlanes::new::<V>(self.geometry, self.scratch, 0.0).compute_all::<V>(
            self.input,
            self.out,
            |k| {
                let ch = (self.first_plane + k) % channels;
                let kernel = &weights[ch * taps..(ch + 1) * taps];
                (Some(kernel), bias.map_or(0.0, |b| b[ch]))
            },
            self.activation,
        );
    }
}

/// The scratch of a task of [`Phases`] planes: the phase planes, whose padding is written once
/// for all the task's planes, and the flat output.
struct PhasePlanes<'a> {
    geometry: &'a Phases,
    phases: &'a mut [f32],
    flat: &'a mut [f32],
    pad: f32,
}

impl<'a> PhasePlanes<'a> {
    /// Scratch from `scratch`, the padding filled with `pad`.
    #[inline(always)]
    fn new<V: simd::Vector>(geometry: &'a Phases, scratch: &'a mut Vec<f32>, pad: f32) -> Self {
        let phase_floats = geometry.phase_floats();
        let flat_floats = geometry.len.next_multiple_of(V::LANES);
        // Every plane writes the same inner part of the phase planes, so their padding keeps
        // this value.
        scratch.clear();
        scratch.resize(phase_floats + flat_floats, pad);
        let (phases, flat) = scratch.split_at_mut(phase_floats);
        Self {
            geometry,
            phases,
            flat,
            pad,
        }
    }

    /// Every plane of `out` from the same plane of `input`, plane `k` with
    /// `plane(k) = (weights, init)` (see [`PhasePlanes::compute`]), each prefetching the next
    /// plane of `input`, if there is one.
    #[inline(always)]
    fn compute_all<'w, V: simd::Vector>(
        &mut self,
        input: &[f32],
        out: &mut [MaybeUninit<f32>],
        plane: impl Fn(usize) -> (Option<&'w [f32]>, f32),
        activation: Activation,
    ) {
        let g = self.geometry;
        let plane_in = g.height * g.width;
        for (k, out) in out.chunks_exact_mut(g.out_height * g.out_width).enumerate() {
            let next = input
                .get((k + 1) * plane_in..(k + 2) * plane_in)
                .unwrap_or(&[]);
            let (weights, init) = plane(k);
            self.compute::<V>(
                &input[k * plane_in..(k + 1) * plane_in],
                next,
                out,
                weights,
                init,
                activation,
            );
        }
    }

    /// One plane: `out = activation(init + Σ weights[tap] × tap)` over the kernel's taps, or,
    /// without weights, `out = max(init, max over taps)`, NaN if any tap is NaN.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn compute<V: simd::Vector>(
        &mut self,
        input: &[f32],
        next: &[f32],
        out: &mut [MaybeUninit<f32>],
        weights: Option<&[f32]>,
        init: f32,
        activation: Activation,
    ) {
        let g = self.geometry;
        g.split::<V>(input, self.phases, self.pad);
        let vectors = g.len.div_ceil(V::LANES);
        // The next plane is asked for from memory a little after each pass, so that it is in
        // cache when split: planes are read once, too briefly for the hardware to prefetch them.
        let lines_per_pass = next
            .len()
            .div_ceil(16)
            .div_ceil(vectors.div_ceil(PASS_VECTORS));
        let mut done = 0;
        let mut line = 0;
        while done < vectors {
            for _ in 0..lines_per_pass {
                simd::prefetch(next.get(line * 16..).unwrap_or(&[]));
                line += 1;
            }
            let step = (vectors - done).min(PASS_VECTORS);
            let pass = Pass {
                phases: self.phases,
                taps: &g.taps,
                weights,
                init: V::splat(init),
                activation,
                at: done * V::LANES,
            };
            let flat = &mut *self.flat;
            match step {
                1 => pass.run::<1>(flat),
                2 => pass.run::<2>(flat),
                3 => pass.run::<3>(flat),
                4 => pass.run::<4>(flat),
                5 => pass.run::<5>(flat),
                6 => pass.run::<6>(flat),
                7 => pass.run::<7>(flat),
                _ => pass.run::<PASS_VECTORS>(flat),
            }
            done += step;
        }
        let wo = g.out_width;
        for (oy, row) in out.chunks_exact_mut(wo).enumerate() {
            simd::copy_uninit::<V>(&self.flat[oy * g.wq..oy * g.wq + wo], row);
        }
    }
}

/// `N` vectors of a [`Phases`] plane's flat output from `at` on, each reduced over every kernel
/// tap in a register: a weighted sum plus `init` and then the activation, or, without weights,
/// the maximum of `init` and the taps.
struct Pass<'a, V> {
    phases: &'a [f32],
    taps: &'a [usize],
    weights: Option<&'a [f32]>,
    init: V,
    activation: Activation,
    at: usize,
}

impl<V: simd::Vector> Pass<'_, V> {
    #[inline(always)]
    fn run<const N: usize>(&self, flat: &mut [f32]) {
        let lanes = V::LANES;
        let mut acc = [self.init; N];
        let block = |tap: usize| &self.phases[tap + self.at..tap + self.at + N * lanes];
        match self.weights {
            Some(weights) => {
                for (&w, &tap) in weights.iter().zip(self.taps) {
                    let (w, src) = (V::splat(w), block(tap));
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = V::mul_add(w, V::load(&src[j * lanes..]), *a);
                    }
                }
            }
            None => {
                for &tap in self.taps {
                    let src = block(tap);
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = V::max_nan(*a, V::load(&src[j * lanes..]));
                    }
                }
            }
        }
        let dst = &mut flat[self.at..self.at + N * lanes];
        for (j, a) in acc.iter().enumerate() {
            self.activation
                .apply_vector(*a)
                .store(&mut dst[j * lanes..]);
        }
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
    let (out_height, out_width) = (
        out_len(height, top, bottom, kh, sh)?,
        out_len(width, left, right, kw, sw)?,
    );
    // The padding the windows actually read on the bottom and right: in ceil mode the last
    // windows may hang past the explicit padding (that part is -inf as well), and windows that
    // would start in the padding are not computed.
    let (bottom, right) = (
        ((out_height - 1) * sh + kh).saturating_sub(top + height),
        ((out_width - 1) * sw + kw).saturating_sub(left + width),
    );
    let geometry = Phases::new(
        [height, width],
        [kh, kw],
        [sh, sw],
        [top, left, bottom, right],
    )?;
    if (geometry.out_height, geometry.out_width) != (out_height, out_width) {
        return None;
    }
    let [n, c, _, _] = x.dims();
    let (t, start, end) = values(x)?;
    // SAFETY: MaxPoolPlanes writes every value of its planes.
    let out = unsafe {
        plane_tasks(
            &t.storage::<f32>()[start..end],
            n * c,
            &geometry,
            |_, input, out, scratch| {
                simd::run(MaxPoolPlanes {
                    geometry: &geometry,
                    input,
                    out,
                    scratch,
                })
            },
        )
    };
    Some(flex_tensor(out, [n, c, out_height, out_width]))
}

/// Max pooling of consecutive planes as [`Phases`] planes padded with `-inf`: every output
/// vector is the maximum of one contiguous load per kernel tap, at any stride.
struct MaxPoolPlanes<'a> {
    geometry: &'a Phases,
    /// The input from the task's first plane on.
    input: &'a [f32],
    /// The planes' outputs, every value of which is written.
    out: &'a mut [MaybeUninit<f32>],
    scratch: &'a mut Vec<f32>,
}

impl simd::Kernel for MaxPoolPlanes<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: simd::Vector>(self) {
        PhasePlanes::new::<V>(self.geometry, self.scratch, f32::NEG_INFINITY).compute_all::<V>(
            self.input,
            self.out,
            |_| (None, f32::NEG_INFINITY),
            Activation::None,
        );
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
/// already the `[cout/groups, cin/groups × kh × kw]` matrix the gemm wants, and bias and
/// activation are applied while the band is still in cache.
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
    if pointwise && groups == 1 && n > 1 && plane_out < MIN_COLS {
        let out = pointwise_gathered(input, weights, bias, activation, [n, cin, cout, plane_out]);
        return Some(flex_tensor(out, [n, cout, ho, wo]));
    }
    // Bands of at least MIN_COLS pixels: a thinner gemm spends more on packing than on work.
    let band = (TILE_FLOATS / k.max(cout_g))
        .max(MIN_COLS)
        .div_ceil(wo)
        .clamp(1, ho);
    let bands = ho.div_ceil(band);
    let len = n * cout * plane_out;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let shared = SharedOut(out.spare_capacity_mut().as_mut_ptr().cast::<f32>());
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
                    if sw == 2 && dw == 1 {
                        simd::run(Im2colStride2 {
                            input: x_group,
                            col,
                            size: [height, width],
                            kernel: [kh, kw],
                            row_step: [sh, dh],
                            pad: [top, left],
                            wo,
                            rows: rows.clone(),
                        });
                    } else {
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
                    }
                    (col.as_ptr(), cols)
                };
                let first_out = (image * cout + g * cout_g) * plane_out + p0;
                // The rows of this band and group, one slice per output channel, once the gemm
                // has written them.
                // SAFETY: job (image, band) and group g own channels g*cout_g.. of that image
                // and columns p0..p0+cols of their planes; no other job touches them, and
                // `out`'s buffer lives until the loop ends.
                let row = |co: usize| unsafe {
                    std::slice::from_raw_parts_mut(shared.at(first_out + co * plane_out), cols)
                };
                // SAFETY: lhs is the group's [cout_g, k] row-major weights, rhs the [k, cols]
                // block (row stride rhs_rs), dst the [cout_g, cols] block (row stride
                // plane_out), all inside their buffers; dst is this job's own region, written
                // whole and not read (read_dst is false).
                unsafe {
                    gemm::gemm(
                        cout_g,
                        cols,
                        k,
                        shared.at(first_out),
                        1,
                        plane_out as isize,
                        false,
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
                    // Still in cache from the gemm.
                    simd::run(BiasActivation {
                        values: row(co),
                        bias: bias.map(|b| b[g * cout_g + co]),
                        activation,
                    });
                }
            }
        });
    // SAFETY: the jobs' bands cover every row of every output channel of every image, and
    // the gemm wrote each of them.
    unsafe { out.set_len(len) };
    Some(flex_tensor(out, [n, cout, ho, wo]))
}

/// A pointwise convolution of planes smaller than a band (EfficientNet's 7x7 stage): one gemm
/// per image would be thinner than [`MIN_COLS`], repack the whole weight matrix (up to 1.6 MB)
/// for every image, and leave a core idle when the images do not divide evenly. Instead the
/// planes of all images are laid side by side, `[cin, n × plane]`, the gemm's columns are split
/// evenly over the cores, and the product is scattered back to NCHW with bias and activation.
fn pointwise_gathered(
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    [n, cin, cout, plane]: [usize; 4],
) -> Vec<f32> {
    let total = n * plane;
    let mut gathered = vec![0.0f32; cin * total];
    gathered
        .par_chunks_mut(total)
        .enumerate()
        .for_each(|(ci, row)| {
            for (image, dst) in row.chunks_exact_mut(plane).enumerate() {
                dst.copy_from_slice(&input[(image * cin + ci) * plane..][..plane]);
            }
        });
    let mut product = vec![0.0f32; cout * total];
    let jobs = (total / MIN_COLS).clamp(1, rayon::current_num_threads());
    let per_job = total.div_ceil(jobs);
    let shared = SharedOut(product.as_mut_ptr());
    (0..jobs).into_par_iter().for_each(|job| {
        let first = job * per_job;
        let cols = per_job.min(total.saturating_sub(first));
        if cols == 0 {
            return;
        }
        // SAFETY: lhs is the [cout, cin] weights, rhs columns first.. of the [cin, total]
        // block, dst the same columns of the [cout, total] product: every job writes its own
        // columns, all inside the buffers, which outlive the loop.
        unsafe {
            gemm::gemm(
                cout,
                cols,
                cin,
                shared.at(first),
                1,
                total as isize,
                false,
                weights.as_ptr(),
                1,
                cin as isize,
                gathered[first..].as_ptr(),
                1,
                total as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    });
    // SAFETY: every image's channels are written below, from the product's rows.
    unsafe {
        written(n * cout * plane, |out| {
            out.par_chunks_mut(cout * plane)
                .enumerate()
                .for_each(|(image, out)| {
                    for (co, dst) in out.chunks_exact_mut(plane).enumerate() {
                        let values = dst
                            .write_copy_of_slice(&product[co * total + image * plane..][..plane]);
                        simd::run(BiasActivation {
                            values,
                            bias: bias.map(|b| b[co]),
                            activation,
                        });
                    }
                })
        })
    }
}

/// [`im2col`] for a horizontal stride of 2 without dilation (GoogLeNet's 7x7 and Lite0's 3x3
/// stems): each input row under the band, padded, is split into its even and odd columns a
/// vector at a time, and every kernel column `kx` then copies a contiguous run of one of them,
/// instead of gathering every other value.
struct Im2colStride2<'a> {
    input: &'a [f32],
    col: &'a mut [f32],
    size: [usize; 2],
    kernel: [usize; 2],
    /// Vertical stride and dilation.
    row_step: [usize; 2],
    /// Top and left padding.
    pad: [usize; 2],
    wo: usize,
    rows: std::ops::Range<usize>,
}

impl simd::Kernel for Im2colStride2<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: simd::Vector>(self) {
        let ([height, width], [kh, kw]) = (self.size, self.kernel);
        let ([sh, dh], [top, left], wo) = (self.row_step, self.pad, self.wo);
        let cols = self.rows.len() * wo;
        // Output column ox at kernel column kx reads padded column 2 ox + kx: phase kx % 2 at
        // ox + kx / 2.
        let half = wo + kw / 2;
        let mut phases = vec![0.0f32; 2 * half];
        let (even, odd) = phases.split_at_mut(half);
        for ci in 0..self.input.len() / (height * width) {
            let plane = &self.input[ci * height * width..][..height * width];
            for ky in 0..kh {
                let first = (ci * kh + ky) * kw;
                for (i, oy) in self.rows.clone().enumerate() {
                    let y = (oy * sh + ky * dh).checked_sub(top).filter(|&y| y < height);
                    let Some(y) = y else {
                        for kx in 0..kw {
                            self.col[(first + kx) * cols + i * wo..][..wo].fill(0.0);
                        }
                        continue;
                    };
                    deinterleave_row::<V>(&plane[y * width..][..width], left, 0.0, even, odd, half);
                    for kx in 0..kw {
                        let phase = if kx % 2 == 0 { &*even } else { &*odd };
                        simd::copy::<V>(
                            &phase[kx / 2..kx / 2 + wo],
                            &mut self.col[(first + kx) * cols + i * wo..][..wo],
                        );
                    }
                }
            }
        }
    }
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
