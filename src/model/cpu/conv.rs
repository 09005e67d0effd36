//! Convolutions: [`conv2d`] sends each to its kernel, and every one that is not depthwise runs
//! here as im2col + gemm over bands of output rows.

use super::activation::{BiasActivation, in_place};
use super::depthwise::depthwise;
use super::phases::deinterleave_row;
use super::{
    Activation, Params, conv_output_size, enabled_on, flex_tensor, padding, values, written,
};
use crate::model::{gpu, simd};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

/// `conv` applied to `x`, then `activation`.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    if !enabled_on(&x) || !activation.native() {
        if gpu::enabled()
            && x.device() != Device::flex()
            && let Some(y) = gpu::conv2d(conv, &x, activation)
        {
            return y;
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

/// Planes smaller than this (in output pixels) are convolved with the im2col blocks of all
/// images side by side and one gemm (see `gemm_conv`).
const GATHER_BELOW: usize = 400;

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
    let [ho, wo] = conv_output_size(
        [height, width],
        [span_h, span_w],
        [sh, sw],
        [top, left, bottom, right],
    )?;
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
    if !pointwise && groups == 1 && n > 1 && plane_out < GATHER_BELOW {
        // Small planes (GoogLeNet's 7x7 and 14x14 stages, incremental inference's crops): the
        // im2col blocks of all images side by side, `[k, n × plane]`, and one gemm over all
        // of them, split over the cores, instead of a thin gemm per image that repacks the
        // weights each time.
        let total = n * plane_out;
        let mut gathered = vec![0.0f32; k * total];
        gathered
            .par_chunks_mut(total)
            .enumerate()
            .for_each(|(r, row)| {
                let (ci, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
                for (image, block) in row.chunks_exact_mut(plane_out).enumerate() {
                    let plane = &input[(image * cin + ci) * plane_in..][..plane_in];
                    im2col_tap(
                        plane,
                        block,
                        [height, width],
                        [ky, kx],
                        [sh, sw],
                        [dh, dw],
                        [top, left],
                        wo,
                        0..ho,
                    );
                }
            });
        let out = gathered_gemm(
            &gathered,
            weights,
            bias,
            activation,
            [n, k, cout, plane_out],
        );
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
    gathered_gemm(&gathered, weights, bias, activation, [n, cin, cout, plane])
}

/// The product of `[cout, k]` weights and the `[k, n × plane]` block `gathered` (the planes of
/// `n` images side by side), its columns split evenly over the cores, scattered back to NCHW
/// with bias and activation.
fn gathered_gemm(
    gathered: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    [n, cin, cout, plane]: [usize; 4],
) -> Vec<f32> {
    let total = n * plane;
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
        im2col_tap(
            plane,
            block,
            [height, width],
            [ky, kx],
            [sh, sw],
            [dh, dw],
            [top, left],
            wo,
            rows.clone(),
        );
    }
}

/// One row of an im2col block: for each output pixel of `rows`, the value of `plane` under
/// kernel tap `(ky, kx)` (zero in the padding).
#[allow(clippy::too_many_arguments)]
fn im2col_tap(
    plane: &[f32],
    block: &mut [f32],
    [height, width]: [usize; 2],
    [ky, kx]: [usize; 2],
    [sh, sw]: [usize; 2],
    [dh, dw]: [usize; 2],
    [top, left]: [usize; 2],
    wo: usize,
    rows: std::ops::Range<usize>,
) {
    // Output columns whose input column ox * sw + kx * dw - left lies inside the row.
    let shift = kx * dw;
    let lo = left.saturating_sub(shift).div_ceil(sw).min(wo);
    let hi = (width + left)
        .saturating_sub(shift)
        .div_ceil(sw)
        .clamp(lo, wo);
    for (oy, dst) in rows.zip(block.chunks_mut(wo)) {
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
