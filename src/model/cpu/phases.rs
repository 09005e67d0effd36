//! Phase planes ([`Phases`]): the layout that makes every kernel tap of a depthwise
//! convolution or a max pooling one contiguous pass over a plane, and the runner that spreads
//! the planes over the cores.

use super::{Activation, written};
use crate::model::simd;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Runs `task(first_plane, inputs, outputs, scratch)` over runs of consecutive planes of
/// `input`, each run on a core, into a new buffer of `geometry`'s output planes. `inputs`
/// starts at the run's first plane and goes on to the end of `input`, so that the run's last
/// plane can prefetch the next one (the next run is usually the same core's). A run has
/// enough planes that rayon's hand-over costs little next to the work (a 7x7 plane of a 5x5
/// kernel is only 1,225 multiply-adds), few enough that every core gets at least two runs.
///
/// # Safety
/// `task` must write every value of the output planes it is given.
pub(super) unsafe fn plane_tasks(
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
pub(super) struct Phases {
    height: usize,
    width: usize,
    stride: [usize; 2],
    /// Top and left padding.
    pad: [usize; 2],
    hq: usize,
    wq: usize,
    pub(super) out_height: usize,
    pub(super) out_width: usize,
    /// Where tap `ky × kw + kx` starts reading, from the first phase plane's start (one per
    /// kernel tap).
    pub(super) taps: Vec<usize>,
    /// Length of the flat output, up to and including the last output kept.
    len: usize,
}

impl Phases {
    pub(super) fn new(
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
pub(super) fn deinterleave_row<V: simd::Vector>(
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

/// The scratch of a task of [`Phases`] planes: the phase planes, whose padding is written once
/// for all the task's planes, and the flat output.
pub(super) struct PhasePlanes<'a> {
    geometry: &'a Phases,
    phases: &'a mut [f32],
    flat: &'a mut [f32],
    pad: f32,
}

impl<'a> PhasePlanes<'a> {
    /// Scratch from `scratch`, the padding filled with `pad`.
    #[inline(always)]
    pub(super) fn new<V: simd::Vector>(
        geometry: &'a Phases,
        scratch: &'a mut Vec<f32>,
        pad: f32,
    ) -> Self {
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
    pub(super) fn compute_all<'w, V: simd::Vector>(
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
