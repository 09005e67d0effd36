//! Which vector instructions glassbox's CPU kernels are compiled for, chosen when they run.
//!
//! A Rust build targets the baseline x86-64 CPU unless told otherwise, so loops that the
//! compiler vectorises use 128-bit SSE2 and separate multiplies and adds: a quarter of what an
//! AVX-512 core does per instruction. Building for the build machine's CPU
//! (`-C target-cpu=native`) would make binaries that crash on older CPUs. Instead each kernel is
//! a [`Kernel`] whose body is written once, with plain loops over slices and fixed-size blocks,
//! and [`run`] calls a copy of it compiled for AVX-512, for AVX2 + FMA or for the baseline,
//! whichever is the best this CPU has (the same runtime dispatch the `gemm` crate does).
//!
//! The copies differ only in rounding: the AVX ones fuse `a * b + c` into one instruction (one
//! rounding instead of two), as burn's gemm-based convolution does.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction set the kernels have a copy for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// What every x86-64 (or other) CPU has: SSE2 on x86-64.
    Baseline = 1,
    /// AVX2 with fused multiply-add (x86-64-v3).
    Avx2 = 2,
    /// AVX-512 F/VL/DQ/BW on top of AVX2 + FMA (x86-64-v4).
    Avx512 = 3,
}

/// The highest level [`run`] may use; `u8::MAX` leaves it to the CPU.
static CAP: AtomicU8 = AtomicU8::new(u8::MAX);

/// The best level this CPU supports (detected once: [`run`] asks for every kernel call).
pub fn detected() -> Level {
    static DETECTED: OnceLock<Level> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// The level the kernels run at: the CPU's best, or lower where [`limit`] asked for less.
pub fn level() -> Level {
    let best = detected();
    match CAP.load(Ordering::Relaxed) {
        1 => Level::Baseline.min(best),
        2 => Level::Avx2.min(best),
        _ => best,
    }
}

/// Makes every kernel run at `level` or lower from now on, for the whole process (tests and
/// benchmarks compare the copies with it); `None` lifts the limit.
pub fn limit(level: Option<Level>) {
    CAP.store(level.map_or(u8::MAX, |l| l as u8), Ordering::Relaxed);
}

/// A vector of `LANES` floats in registers, with what the kernels do to it. Each level has its
/// own: AVX-512's 16 lanes, AVX2's 8, and four plain floats for the baseline (SSE2 on x86-64,
/// whatever the compiler makes of them elsewhere).
pub trait Vector: Copy {
    /// Floats per vector.
    const LANES: usize;
    /// Every lane `value`.
    fn splat(value: f32) -> Self;
    /// `LANES` floats from the start of `values` (which must hold that many; checked).
    fn load(values: &[f32]) -> Self;
    /// Writes the lanes to the start of `values` (which must hold that many; checked).
    fn store(self, values: &mut [f32]);
    /// Lane `i` is `row[start + i]` where that lies inside `row`, and `pad` elsewhere (before
    /// the row's start or past its end); memory outside the row is not touched.
    fn load_window(row: &[f32], start: isize, pad: f32) -> Self;
    /// Writes the first `n` lanes (`n <= LANES`) to `dst .. dst + n`, and nothing else.
    ///
    /// # Safety
    /// `dst .. dst + n` must be valid for writes.
    unsafe fn store_first(self, dst: *mut f32, n: usize);
    /// `a * b + c`, fused where the instruction set can.
    fn mul_add(a: Self, b: Self, c: Self) -> Self;
    /// The even lanes and the odd lanes of `a` followed by `b`.
    fn deinterleave(a: Self, b: Self) -> (Self, Self);
    /// Per lane, `bound` where `bound > x`, else `x` (so a NaN in `x` is kept).
    fn at_least(x: Self, bound: Self) -> Self;
    /// Per lane, `bound` where `bound < x`, else `x` (so a NaN in `x` is kept).
    fn at_most(x: Self, bound: Self) -> Self;
    /// Per lane, the larger of `acc` and `x`, NaN if either is (as max pooling wants).
    fn max_nan(acc: Self, x: Self) -> Self;
}

/// Four floats with a separate multiply and add (two roundings): the baseline, for CPUs
/// without FMA, where `f32::mul_add` would be a library call.
#[derive(Clone, Copy)]
pub struct Plain([f32; 4]);

impl Vector for Plain {
    const LANES: usize = 4;
    #[inline(always)]
    fn splat(value: f32) -> Self {
        Self([value; 4])
    }
    #[inline(always)]
    fn load(values: &[f32]) -> Self {
        Self([values[0], values[1], values[2], values[3]])
    }
    #[inline(always)]
    fn store(self, values: &mut [f32]) {
        values[..4].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn load_window(row: &[f32], start: isize, pad: f32) -> Self {
        Self(std::array::from_fn(|i| {
            usize::try_from(start + i as isize)
                .ok()
                .and_then(|k| row.get(k).copied())
                .unwrap_or(pad)
        }))
    }
    #[inline(always)]
    unsafe fn store_first(self, dst: *mut f32, n: usize) {
        for (i, v) in self.0.iter().take(n).enumerate() {
            // SAFETY: the caller's contract, i < n.
            unsafe { dst.add(i).write(*v) };
        }
    }
    #[inline(always)]
    fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|i| a.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    fn deinterleave(a: Self, b: Self) -> (Self, Self) {
        let (a, b) = (a.0, b.0);
        (
            Self([a[0], a[2], b[0], b[2]]),
            Self([a[1], a[3], b[1], b[3]]),
        )
    }
    #[inline(always)]
    fn at_least(x: Self, bound: Self) -> Self {
        Self(std::array::from_fn(|i| {
            if bound.0[i] > x.0[i] {
                bound.0[i]
            } else {
                x.0[i]
            }
        }))
    }
    #[inline(always)]
    fn at_most(x: Self, bound: Self) -> Self {
        Self(std::array::from_fn(|i| {
            if bound.0[i] < x.0[i] {
                bound.0[i]
            } else {
                x.0[i]
            }
        }))
    }
    #[inline(always)]
    fn max_nan(acc: Self, x: Self) -> Self {
        Self(std::array::from_fn(|i| {
            let (a, v) = (acc.0[i], x.0[i]);
            if v > a || v.is_nan() { v } else { a }
        }))
    }
}

/// The lanes `lo..hi` of a vector of `lanes` starting at `start` of a row of `len` values
/// whose positions lie inside the row.
#[inline(always)]
fn inside(start: isize, lanes: usize, len: usize) -> (usize, usize) {
    let lo = (-start).clamp(0, lanes as isize) as usize;
    let hi = (len as isize - start).clamp(lo as isize, lanes as isize) as usize;
    (lo, hi)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Vector, inside};
    use std::arch::x86_64::*;

    /// A mask of the first `min(n, 8)` of 8 lanes, for AVX2's masked loads and stores.
    #[inline(always)]
    fn first_lanes(n: usize) -> __m256i {
        // SAFETY: plain register arithmetic, inside the AVX2 copy only.
        unsafe {
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n.min(8) as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        }
    }

    /// Eight floats in an AVX register.
    #[derive(Clone, Copy)]
    pub struct Avx2(__m256);

    // SAFETY (every intrinsic below): a `Avx2` value only exists inside `run`'s AVX2 + FMA
    // copy, which is only called on CPUs that have those features; loads and stores are
    // unaligned ones, on slices whose length is checked first.
    impl Vector for Avx2 {
        const LANES: usize = 8;
        #[inline(always)]
        fn splat(value: f32) -> Self {
            Self(unsafe { _mm256_set1_ps(value) })
        }
        #[inline(always)]
        fn load(values: &[f32]) -> Self {
            assert!(values.len() >= 8);
            Self(unsafe { _mm256_loadu_ps(values.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, values: &mut [f32]) {
            assert!(values.len() >= 8);
            unsafe { _mm256_storeu_ps(values.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        unsafe fn store_first(self, dst: *mut f32, n: usize) {
            // SAFETY: the caller's contract; masked-off lanes are not written.
            unsafe { _mm256_maskstore_ps(dst, first_lanes(n), self.0) }
        }
        #[inline(always)]
        fn load_window(row: &[f32], start: isize, pad: f32) -> Self {
            let (lo, hi) = inside(start, 8, row.len());
            // Lanes lo..hi: the mask of the first hi lanes without the first lo. Only those
            // lanes are read, all inside the row (the pointer itself may lie outside it).
            unsafe {
                let mask = _mm256_andnot_si256(first_lanes(lo), first_lanes(hi));
                let values = _mm256_maskload_ps(row.as_ptr().wrapping_offset(start), mask);
                Self(_mm256_blendv_ps(
                    _mm256_set1_ps(pad),
                    values,
                    _mm256_castsi256_ps(mask),
                ))
            }
        }
        #[inline(always)]
        fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm256_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        fn deinterleave(a: Self, b: Self) -> (Self, Self) {
            // Within each 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs
            // reordered to [a0 a2 a4 a6 b0 b2 b4 b6]; the same for the odd lanes.
            unsafe {
                let even = _mm256_shuffle_ps::<0b10_00_10_00>(a.0, b.0);
                let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a.0, b.0);
                let order = |v: __m256| {
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
                };
                (Self(order(even)), Self(order(odd)))
            }
        }
        #[inline(always)]
        fn at_least(x: Self, bound: Self) -> Self {
            // max(a, b) is `a > b ? a : b`: b (x) whenever either is NaN.
            Self(unsafe { _mm256_max_ps(bound.0, x.0) })
        }
        #[inline(always)]
        fn at_most(x: Self, bound: Self) -> Self {
            Self(unsafe { _mm256_min_ps(bound.0, x.0) })
        }
        #[inline(always)]
        fn max_nan(acc: Self, x: Self) -> Self {
            // max(acc, x) is NaN where x is; where acc is NaN, acc is kept.
            unsafe {
                let max = _mm256_max_ps(acc.0, x.0);
                let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(acc.0, acc.0);
                Self(_mm256_blendv_ps(max, acc.0, nan))
            }
        }
    }

    /// Sixteen floats in an AVX-512 register.
    #[derive(Clone, Copy)]
    pub struct Avx512(__m512);

    // SAFETY (every intrinsic below): as for `Avx2`, inside the AVX-512 copy only.
    impl Vector for Avx512 {
        const LANES: usize = 16;
        #[inline(always)]
        fn splat(value: f32) -> Self {
            Self(unsafe { _mm512_set1_ps(value) })
        }
        #[inline(always)]
        fn load(values: &[f32]) -> Self {
            assert!(values.len() >= 16);
            Self(unsafe { _mm512_loadu_ps(values.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, values: &mut [f32]) {
            assert!(values.len() >= 16);
            unsafe { _mm512_storeu_ps(values.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn load_window(row: &[f32], start: isize, pad: f32) -> Self {
            let (lo, hi) = inside(start, 16, row.len());
            let mask = (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16;
            // Only the lanes in the mask are read, all inside the row (the pointer itself may
            // lie outside it); the others keep `pad`.
            unsafe {
                Self(_mm512_mask_loadu_ps(
                    _mm512_set1_ps(pad),
                    mask,
                    row.as_ptr().wrapping_offset(start),
                ))
            }
        }
        #[inline(always)]
        unsafe fn store_first(self, dst: *mut f32, n: usize) {
            let mask = (1u32 << n.min(16)).wrapping_sub(1) as __mmask16;
            // SAFETY: the caller's contract; masked-off lanes are not written.
            unsafe { _mm512_mask_storeu_ps(dst, mask, self.0) }
        }
        #[inline(always)]
        fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm512_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        fn deinterleave(a: Self, b: Self) -> (Self, Self) {
            // Index i < 16 picks a[i], i >= 16 picks b[i - 16].
            unsafe {
                let even =
                    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                let odd =
                    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
                (
                    Self(_mm512_permutex2var_ps(a.0, even, b.0)),
                    Self(_mm512_permutex2var_ps(a.0, odd, b.0)),
                )
            }
        }
        #[inline(always)]
        fn at_least(x: Self, bound: Self) -> Self {
            // max(a, b) is `a > b ? a : b`: b (x) whenever either is NaN.
            Self(unsafe { _mm512_max_ps(bound.0, x.0) })
        }
        #[inline(always)]
        fn at_most(x: Self, bound: Self) -> Self {
            Self(unsafe { _mm512_min_ps(bound.0, x.0) })
        }
        #[inline(always)]
        fn max_nan(acc: Self, x: Self) -> Self {
            // max(acc, x) is NaN where x is; where acc is NaN, acc is kept.
            unsafe {
                let max = _mm512_max_ps(acc.0, x.0);
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(acc.0, acc.0);
                Self(_mm512_mask_mov_ps(max, nan, acc.0))
            }
        }
    }
}

/// Copies `src` to `dst`, which must be as long, a vector at a time and the last one masked:
/// the rows of small planes are a few vectors long, where a `memcpy` call costs more than the
/// copy itself.
#[inline(always)]
pub fn copy<V: Vector>(src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    // SAFETY: dst holds src.len() floats.
    unsafe { copy_to::<V>(src, dst.as_mut_ptr()) }
}

/// [`copy`] into memory not yet written.
#[inline(always)]
pub fn copy_uninit<V: Vector>(src: &[f32], dst: &mut [std::mem::MaybeUninit<f32>]) {
    assert_eq!(src.len(), dst.len());
    // SAFETY: dst holds src.len() floats (MaybeUninit<f32> has f32's layout).
    unsafe { copy_to::<V>(src, dst.as_mut_ptr().cast::<f32>()) }
}

/// # Safety
/// `dst .. dst + src.len()` must be valid for writes.
#[inline(always)]
unsafe fn copy_to<V: Vector>(src: &[f32], dst: *mut f32) {
    let mut chunks = src.chunks_exact(V::LANES);
    let mut at = 0;
    for chunk in &mut chunks {
        // SAFETY: at + LANES <= src.len(): inside dst by the caller's contract.
        unsafe { V::load(chunk).store_first(dst.add(at), V::LANES) };
        at += V::LANES;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // SAFETY: as above, for the last rest.len() floats.
        unsafe { V::load_window(rest, 0, 0.0).store_first(dst.add(at), rest.len()) };
    }
}

/// Asks for the cache line holding `values[0]` to be brought into cache, without waiting for
/// it (nothing where the target has no such hint, or for an empty slice).
#[inline(always)]
pub fn prefetch(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = values.first() {
        // SAFETY: a prefetch is only a hint: it never faults, and the address is valid anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (v as *const f32).cast::<i8>(),
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// A piece of work with one body for every instruction set. `run` must be
/// `#[inline(always)]`, and so must every function it calls in its hot loops, so that the
/// whole body is compiled into each copy with that copy's instructions.
pub trait Kernel {
    /// What the work returns.
    type Output;
    /// Does the work with vectors `V`.
    fn run<V: Vector>(self) -> Self::Output;
}

/// Runs `kernel` compiled for the best instruction set allowed (see [`level`]).
pub fn run<K: Kernel>(kernel: K) -> K::Output {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level` only returns Avx512 when the CPU has every feature enabled here.
        Level::Avx512 => unsafe { avx512(kernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level` only returns Avx2 when the CPU has AVX2 and FMA.
        Level::Avx2 => unsafe { avx2(kernel) },
        _ => kernel.run::<Plain>(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
unsafe fn avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<x86::Avx512>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<x86::Avx2>()
}
