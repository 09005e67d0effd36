//! glassbox's own dense convolution kernel for GPUs: an implicit GEMM tiled through workgroup
//! memory, written in CubeCL (so one source compiles to WGSL, SPIR-V and MSL).
//!
//! A convolution is the matrix product `out[m, co] = Σ_k A[m, k] · W[k, co]` where `m` runs over
//! the output pixels of the whole batch (`n·ho·wo`), `co` over output channels and `k` over the
//! window (`cin·kh·kw`). `A` is never built (no im2col buffer): each workgroup owns a tile of
//! [`Tile::m`] pixels × [`Tile::n`] channels, and walks `k` in slices of [`Tile::k`], staging
//! that slice of the input windows and of the weights in workgroup memory, from which each
//! invocation accumulates a register block of [`Tile::rows`] × [`Tile::cols`] outputs. The
//! slices are software-pipelined: an invocation issues its global loads of the next slice into
//! registers before it computes the current one from workgroup memory, so their latency hides
//! behind the arithmetic (one workgroup-memory copy of each slice, two barriers per slice, as
//! without). Where a slice's window positions read is worked out once, one slice ahead, in
//! workgroup memory; a pointwise
//! (1×1, unpadded) convolution reads its channel directly. Padding is read as zeros at the load,
//! bias and the activation (Relu, or a clamp such as Relu6) are applied at the store. Three
//! tiles ([`Tile::SMALL`], [`Tile::LARGE`], [`Tile::HUGE`]) are chosen by the layer's size, not
//! tuned: a first image pays for compiling the kernel only.
//!
//! Layout: the input and output are read and written through their strides, so NCHW and the
//! channels-last views burn produces both work; the output is a new NCHW tensor, or a channel
//! slice of a concatenation ([`Concat`]: an inception block's branches write straight into
//! it). Invocation `x` of a workgroup takes pixels `x, x + threads_x, …` so that neighbouring
//! invocations load and store neighbouring pixels (coalesced on NCHW) and read workgroup memory
//! without bank conflicts. The weights are read as a row-major `[cin·kh·kw, cout]` matrix
//! (a convolution's are reordered once per call, at most one pass over them against the
//! `m / Tile::m` passes the tiles make; a fully connected layer's already are that matrix),
//! four output channels per load (a 128-bit load in f32) where `cout` is a multiple of four,
//! as in every built-in model. A pointwise convolution at stride 1 whose planes hold a multiple
//! of four pixels (every 1×1 layer of Lite0 and GoogLeNet but those on 7×7 maps) reads its
//! input four neighbouring pixels per load too, NCHW's contiguous axis; channels are not
//! contiguous in NCHW, so no load runs along them.
//!
//! Tensors are f32 or f16 (`--precision f16`: half the bytes read and written); the kernel
//! always sums in f32, in a different order from burn's direct kernel, so the two agree to
//! rounding (`tests/it/gpu.rs` checks every dense convolution shape of every
//! built-in model on lavapipe, within 1e-5 relative).

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::cube::{Strides, cube_tensor, elem_type, into_tensor, launch_checked, strides};
use crate::model::cpu::conv_output_size;

use crate::model::cpu::Activation;

/// Convolutions run by the kernel in this process so far.
static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many convolutions and fully connected layers the kernel has run in this process (for
/// tests and profiles: a path that silently fell back to burn's kernels would leave it
/// unchanged).
pub fn launches() -> u64 {
    LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Products whose inputs the kernel read four pixels per load, in this process so far.
static PIXEL_VECTORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many products (a grouped convolution makes one per group) the kernel has run reading
/// its inputs four pixels per load (for tests and profiles).
pub fn pixel_vector_launches() -> u64 {
    PIXEL_VECTORS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A workgroup's tile and each invocation's register block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Invocations along the pixel axis.
    pub threads_x: u32,
    /// Invocations along the channel axis.
    pub threads_y: u32,
    /// Pixels each invocation computes.
    pub rows: u32,
    /// Output channels each invocation computes.
    pub cols: u32,
    /// Depth of the reduction slice staged in workgroup memory.
    pub k: u32,
}

impl Tile {
    /// 64 pixels × 64 channels, 256 invocations of 4×4, slices of 16: 8 KiB of workgroup
    /// memory, within every adapter's limits (WebGPU's minimum is 16 KiB and 256 invocations).
    pub const LARGE: Tile = Tile {
        threads_x: 16,
        threads_y: 16,
        rows: 4,
        cols: 4,
        k: 16,
    };
    /// 32 pixels × 32 channels, 64 invocations of 4×4, for layers too small to fill an
    /// adapter with [`Tile::LARGE`] workgroups.
    pub const SMALL: Tile = Tile {
        threads_x: 8,
        threads_y: 8,
        rows: 4,
        cols: 4,
        k: 16,
    };

    /// 128 pixels × 128 channels, 256 invocations of 8×8, slices of 8 (8 KiB of workgroup
    /// memory): twice [`Tile::LARGE`]'s products per value read from workgroup memory, for the
    /// large layers of a large batch.
    pub const HUGE: Tile = Tile {
        threads_x: 16,
        threads_y: 16,
        rows: 8,
        cols: 8,
        k: 8,
    };

    /// Pixels per workgroup.
    pub fn m(self) -> u32 {
        self.threads_x * self.rows
    }

    /// Output channels per workgroup.
    pub fn n(self) -> u32 {
        self.threads_y * self.cols
    }

    fn threads(self) -> u32 {
        self.threads_x * self.threads_y
    }

    /// Whether each invocation's share of the tile loads is a whole number, with the pixel it
    /// loads fixed across the slices, for weights read `vector` channels at a time (what the
    /// kernel relies on).
    fn valid(self, vector: u32) -> bool {
        let t = self.threads();
        t.is_multiple_of(self.m())
            && t.is_multiple_of(self.k)
            && (self.k * self.m()).is_multiple_of(t)
            && self.n().is_multiple_of(vector)
            && (self.k * self.n()).is_multiple_of(t * vector)
    }

    /// Whether the tile's input loads split into whole vectors of `vector` pixels per
    /// invocation.
    fn loads_pixels_by(self, vector: u32) -> bool {
        self.m().is_multiple_of(vector)
            && (self.k * self.m()).is_multiple_of(self.threads() * vector)
    }

    /// Workgroups of this tile for a product of `m` pixels × `cout` channels.
    fn groups(self, m: usize, cout: usize) -> usize {
        m.div_ceil(self.m() as usize) * cout.div_ceil(self.n() as usize)
    }

    /// The tile for a product of `m` pixels × `cout` channels (unless [`set_tile`] forces one):
    /// the largest that still gives the GPU many workgroups: [`Tile::HUGE`] from 1,024 of them,
    /// [`Tile::LARGE`] from 256, else [`Tile::SMALL`].
    pub fn for_shape(m: usize, cout: usize) -> Tile {
        if let Some(forced) = forced_tile() {
            return forced;
        }
        if Tile::HUGE.groups(m, cout) >= 1024 {
            Tile::HUGE
        } else if Tile::LARGE.groups(m, cout) >= 256 {
            Tile::LARGE
        } else {
            Tile::SMALL
        }
    }
}

/// The tile every convolution takes, or 0 for [`Tile::for_shape`]'s choice.
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Forces one tile on every convolution of the process (`None`: chosen per layer), for
/// measuring the tiles against each other; `GLASSBOX_GPU_TILE=small|large|huge|auto` for the
/// tool.
pub fn set_tile(tile: Option<Tile>) {
    let code = match tile {
        None => 0,
        Some(Tile::SMALL) => 1,
        Some(Tile::LARGE) => 2,
        Some(_) => 3,
    };
    FORCED.store(code, std::sync::atomic::Ordering::Relaxed);
}

fn forced_tile() -> Option<Tile> {
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Some(Tile::SMALL),
        2 => Some(Tile::LARGE),
        3 => Some(Tile::HUGE),
        _ => None,
    }
}

/// A tile by name: `small`, `large`, `huge`, or `auto` (`None`: chosen per layer).
pub fn parse_tile(name: &str) -> crate::Result<Option<Tile>> {
    match name {
        "auto" => Ok(None),
        "small" => Ok(Some(Tile::SMALL)),
        "large" => Ok(Some(Tile::LARGE)),
        "huge" => Ok(Some(Tile::HUGE)),
        other => Err(crate::Error::InvalidArgument(format!(
            "unknown tile '{other}' (auto, small, large, huge)"
        ))),
    }
}

/// What the kernel applies at the store: 0 nothing, 1 Relu, 2 a clamp to `[lo, hi]`.
pub(super) fn activation_code(activation: Activation) -> (u32, f32, f32) {
    match activation {
        Activation::None => (0, 0.0, 0.0),
        Activation::Relu => (1, 0.0, 0.0),
        Activation::Clamp(lo, hi) => (2, lo, hi),
    }
}

/// The implicit-GEMM convolution. `w` is the weights as a `[k_total, cout]` row-major matrix
/// (row `k = (ci·kh + ky)·kw + kx`), read `N` output channels per load (`cout` a multiple of
/// `N`). Scalars: the strides of `x` and of `out`; where in `x` the
/// first input channel read is (`x_off`, non-zero for a group of a grouped convolution) and
/// where in `out` the first output channel goes (`o_off`, non-zero for a group, or for a
/// channel slice of a concatenation); sizes; stride and leading padding; `m_total = n·ho·wo`,
/// `k_total = cin·kh·kw`.
#[cube(launch_unchecked)]
// `div_ceil` is not a CubeCL operation.
#[allow(
    clippy::too_many_arguments,
    clippy::collapsible_if,
    clippy::manual_div_ceil
)]
fn conv2d_gemm_kernel<E: Float, N: Size, NX: Size>(
    x: &[Vector<E, NX>],
    w: &[Vector<E, N>],
    bias: &[E],
    out: &mut [E],
    xs: Strides,
    x_off: u32,
    os: Strides,
    o_off: u32,
    h: u32,
    wd: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    m_total: u32,
    k_total: u32,
    lo: f32,
    hi: f32,
    #[comptime] tx_n: u32,
    #[comptime] ty_n: u32,
    #[comptime] tm: u32,
    #[comptime] tn: u32,
    #[comptime] bk: u32,
    #[comptime] has_bias: bool,
    #[comptime] act: u32,
    #[comptime] pointwise: bool,
    #[define(E)] _dtype: ElemType,
) {
    let bm = comptime!(tx_n * tm);
    let bn = comptime!(ty_n * tn);
    let threads = comptime!(tx_n * ty_n);
    let b_row = comptime!(bn + 1);
    let a_loads = comptime!(bk * bm / threads);
    let vector_size = N::value();
    let vn = comptime!(vector_size as u32);
    let b_loads = comptime!(bk * bn / (vn * threads));
    let b_vectors_per_row = comptime!(bn / vn);
    let a_step = comptime!(threads / bm);
    // Inputs read `NX` neighbouring pixels of a channel per load (a pointwise convolution at
    // stride 1 over planes of a multiple of `NX` pixels), else one value.
    let x_size = NX::value();
    let xv = comptime!(x_size as u32);
    let a_vectors_per_row = comptime!(bm / xv);
    let a_vector_loads = comptime!(bk * bm / (xv * threads));

    let tx = UNIT_POS_X;
    let ty = UNIT_POS_Y;
    let tid = ty * tx_n + tx;
    let m0 = CUBE_POS_X * bm;
    let n0 = CUBE_POS_Y * bn;

    let mut a_s = Shared::<[f32]>::new_slice(comptime!((bk * bm) as usize));
    let mut b_s = Shared::<[f32]>::new_slice(comptime!((bk * (bn + 1)) as usize));
    let mut acc = Array::<f32>::new(comptime!((tm * tn) as usize));
    #[unroll]
    for i in 0..comptime!(tm * tn) {
        acc[i as usize] = 0.0f32;
    }

    // The pixel this invocation loads is the same in every slice.
    let a_mm = tid % bm;
    let a_kk0 = tid / bm;
    let am = m0 + a_mm;
    let a_in = am < m_total;
    let am_c = select(a_in, am, 0u32);
    let a_ox = am_c % wo;
    let a_t = am_c / wo;
    let a_oy = a_t % ho;
    let a_n = a_t / ho;
    let a_iy0 = (a_oy * sh) as i32 - ph as i32;
    let a_ix0 = (a_ox * sw) as i32 - pw as i32;
    let a_base = x_off + a_n * xs.n;
    let khw = kh * kw;

    let cout_v = cout / vn;
    let slices = (k_total + bk - 1) / bk;
    // Where each of a slice's `bk` window positions reads, worked out once per slice by the
    // first `bk` invocations (three integer divisions each) rather than by every load: the
    // input channel's offset, and the tap's row and column. Two tables, one slice ahead: slice
    // `i`'s is at `(i % 2)·bk`.
    let mut k_c = Shared::<[u32]>::new_slice(comptime!((2 * bk) as usize));
    let mut k_y = Shared::<[u32]>::new_slice(comptime!((2 * bk) as usize));
    let mut k_x = Shared::<[u32]>::new_slice(comptime!((2 * bk) as usize));
    // A pointwise convolution reads channel `k` of its pixel: no table, no bounds.
    let a_pixel = a_base + (a_oy * sh) * xs.h + (a_ox * sw) * xs.w;
    // With vector loads, where each of this invocation's vectors starts (channel 0), and
    // whether it is in the product (`m_total` is a multiple of `NX`: all of it or none).
    let plane = ho * wo;
    let mut a_vector_at = Array::<u32>::new(comptime!(a_vector_loads as usize));
    let mut a_vector_in = Array::<u32>::new(comptime!(a_vector_loads as usize));
    if comptime!(xv > 1) {
        #[unroll]
        for r in 0..a_vector_loads {
            let m = m0 + ((tid + r * threads) % a_vectors_per_row) * xv;
            let inside = m < m_total;
            let m = select(inside, m, 0u32);
            a_vector_at[r as usize] = x_off + (m / plane) * xs.n + m % plane;
            a_vector_in[r as usize] = select(inside, 1u32, 0u32);
        }
    }
    if comptime!(!pointwise) {
        if tid < bk {
            let k = select(tid < k_total, tid, k_total - 1);
            let rest = k % khw;
            k_c[tid as usize] = (k / khw) * xs.c;
            k_y[tid as usize] = rest / kw;
            k_x[tid as usize] = rest % kw;
        }
        sync_cube();
    }

    // Software pipelining: each step issues the global loads of slice `i` into registers,
    // computes slice `i − 1` from workgroup memory while they are in flight, then stages slice
    // `i` (and the next slice's window table). The sums run in the same order as slice by slice.
    let mut a_next = Array::<f32>::new(comptime!(a_loads as usize));
    let mut b_next = Array::<f32>::new(comptime!((b_loads * vn) as usize));
    let mut slice = 0u32;
    while slice <= slices {
        let k0 = slice * bk;
        let table = (slice % 2) * bk;
        if slice < slices {
            if comptime!(xv > 1) {
                #[unroll]
                for r in 0..a_vector_loads {
                    let k = k0 + (tid + r * threads) / a_vectors_per_row;
                    let mut vals = Vector::<f32, NX>::new(0.0f32);
                    if a_vector_in[r as usize] == 1 && k < k_total {
                        let at = a_vector_at[r as usize] + k * xs.c;
                        vals = Vector::<f32, NX>::cast_from(x[(at / xv) as usize]);
                    }
                    #[unroll]
                    for j in 0..NX::value() {
                        a_next[(r * xv + j as u32) as usize] = vals.extract(j);
                    }
                }
            } else {
                #[unroll]
                for r in 0..a_loads {
                    let kk = a_kk0 + r * a_step;
                    let k = k0 + kk;
                    let mut v = 0.0f32;
                    if a_in && k < k_total {
                        let mut at = a_pixel + k * xs.c;
                        let mut inside = true;
                        if comptime!(!pointwise) {
                            let t = (table + kk) as usize;
                            let iy = a_iy0 + k_y[t] as i32;
                            let ix = a_ix0 + k_x[t] as i32;
                            inside = iy >= 0 && ix >= 0 && (iy as u32) < h && (ix as u32) < wd;
                            at = a_base
                                + k_c[t]
                                + select(inside, (iy as u32) * xs.h + (ix as u32) * xs.w, 0u32);
                        }
                        if inside {
                            v = Vector::<f32, NX>::cast_from(x[at as usize]).extract(0usize);
                        }
                    }
                    a_next[r as usize] = v;
                }
            }
            // The weights: `N` neighbouring output channels of one row per load, neighbouring
            // invocations on neighbouring vectors of the row.
            #[unroll]
            for r in 0..b_loads {
                let v = tid + r * threads;
                let k = k0 + v / b_vectors_per_row;
                let cv = n0 / vn + v % b_vectors_per_row;
                let mut vals = Vector::<f32, N>::new(0.0f32);
                if k < k_total && cv < cout_v {
                    vals = Vector::<f32, N>::cast_from(w[(k * cout_v + cv) as usize]);
                }
                #[unroll]
                for j in 0..N::value() {
                    b_next[(r * vn + j as u32) as usize] = vals.extract(j);
                }
            }
        }

        if slice > 0 {
            #[unroll]
            for kk in 0..bk {
                let mut a = Array::<f32>::new(comptime!(tm as usize));
                let mut b = Array::<f32>::new(comptime!(tn as usize));
                #[unroll]
                for i in 0..tm {
                    a[i as usize] = a_s[(kk * bm + tx + i * tx_n) as usize];
                }
                #[unroll]
                for j in 0..tn {
                    b[j as usize] = b_s[(kk * b_row + ty + j * ty_n) as usize];
                }
                #[unroll]
                for i in 0..tm {
                    #[unroll]
                    for j in 0..tn {
                        acc[(i * tn + j) as usize] += a[i as usize] * b[j as usize];
                    }
                }
            }
        }
        sync_cube();

        if slice < slices {
            // One value a load is the same walk with groups of one: row `a_kk0 + r·a_step`,
            // column `a_mm`.
            stage(
                &mut a_s,
                &a_next,
                tid,
                threads,
                a_vector_loads,
                a_vectors_per_row,
                bm,
                xv,
            );
            stage(
                &mut b_s,
                &b_next,
                tid,
                threads,
                b_loads,
                b_vectors_per_row,
                b_row,
                vn,
            );
            if comptime!(!pointwise) {
                if tid < bk {
                    let next = k0 + bk + tid;
                    let k = select(next < k_total, next, k_total - 1);
                    let rest = k % khw;
                    let t = (((slice + 1) % 2) * bk + tid) as usize;
                    k_c[t] = (k / khw) * xs.c;
                    k_y[t] = rest / kw;
                    k_x[t] = rest % kw;
                }
            }
        }
        sync_cube();
        slice += 1;
    }

    #[unroll]
    for i in 0..tm {
        let m = m0 + tx + i * tx_n;
        if m < m_total {
            let ox = m % wo;
            let t = m / wo;
            let oy = t % ho;
            let n = t / ho;
            let base = o_off + n * os.n + oy * os.h + ox * os.w;
            #[unroll]
            for j in 0..tn {
                let co = n0 + ty + j * ty_n;
                if co < cout {
                    let v = acc[(i * tn + j) as usize];
                    let v = bias_activation::<E>(v, bias, co, lo, hi, has_bias, act);
                    out[(base + co * os.c) as usize] = E::cast_from(v);
                }
            }
        }
    }
}

/// Stores an invocation's `loads` groups of `width` loaded values into a row-major tile of
/// workgroup memory, `row` values a row and `per_row` groups in each: its group `r` is number
/// `tid + r·threads` of the tile, so that neighbouring invocations fill neighbouring groups.
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage(
    tile: &mut Shared<[f32]>,
    values: &Array<f32>,
    tid: u32,
    #[comptime] threads: u32,
    #[comptime] loads: u32,
    #[comptime] per_row: u32,
    #[comptime] row: u32,
    #[comptime] width: u32,
) {
    #[unroll]
    for r in 0..loads {
        let group = tid + r * threads;
        let at = (group / per_row) * row + (group % per_row) * width;
        #[unroll]
        for j in 0..width {
            tile[(at + j) as usize] = values[(r * width + j) as usize];
        }
    }
}

/// The bias and the activation the kernels apply as they store an output of channel
/// `channel`: `act` 0 is none, 1 Relu, 2 a clamp to `[lo, hi]`. A NaN stays NaN (no comparison
/// holds for it), as on the CPU.
#[cube]
#[allow(clippy::collapsible_if)]
pub(super) fn bias_activation<E: Float>(
    value: f32,
    bias: &[E],
    channel: u32,
    lo: f32,
    hi: f32,
    #[comptime] has_bias: bool,
    #[comptime] act: u32,
) -> f32 {
    let mut v = value;
    if comptime!(has_bias) {
        v += f32::cast_from(bias[channel as usize]);
    }
    if comptime!(act == 1) {
        if v < 0.0f32 {
            v = 0.0f32;
        }
    }
    if comptime!(act == 2) {
        if v < lo {
            v = lo;
        }
        if v > hi {
            v = hi;
        }
    }
    v
}

/// `conv` applied to `x` with `activation`, by the implicit-GEMM kernel, or `None` where the
/// kernel does not apply (depthwise convolutions, which are the window kernel's, dilated ones,
/// `Same` padding, a dtype other than f32 and f16, a device that is not a CubeCL GPU, or a
/// grid over 65,535 workgroups along an axis). A grouped convolution runs as one product per
/// group, each writing its channels of the output. f16 tensors are read and written in f16
/// and summed in f32.
pub fn conv2d(conv: &Conv2d, x: &Tensor<4>, activation: Activation) -> Option<Tensor<4>> {
    conv2d_with_tile(conv, x, activation, None)
}

/// [`conv2d`] on the given tile (`None`: [`Tile::for_shape`]'s choice).
pub fn conv2d_with_tile(
    conv: &Conv2d,
    x: &Tensor<4>,
    activation: Activation,
    tile: Option<Tile>,
) -> Option<Tensor<4>> {
    let out = launch_all(Gemm::of(conv, x, activation)?, tile, None)?;
    into_tensor(out, x)
}

/// Launches the products of a convolution ([`Gemm::of`]) into a new tensor, or, with `into =
/// (target, channel)`, into `target`'s channels from `channel` on; `None` where the kernel
/// declines one of them (what it wrote is then overwritten by whoever runs the layer).
fn launch_all(
    products: Vec<(usize, Gemm<'_>)>,
    tile: Option<Tile>,
    into: Option<(&CubeTensor, usize)>,
) -> Option<CubeTensor> {
    let (target, channel) = match into {
        Some((target, channel)) => (target.clone(), channel),
        None if products.len() == 1 => {
            let (_, product) = products.into_iter().next()?;
            let out = product.launch(tile, None)?;
            LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Some(out);
        }
        None => {
            let (_, first) = products.first()?;
            let cout = products.iter().map(|(_, p)| p.weight.dims()[1]).sum();
            let [n, ho, wo] = first.output_size()?;
            (empty_like(first.x, [n, cout, ho, wo])?, 0)
        }
    };
    for (offset, product) in products {
        product.launch(tile, Some((&target, channel + offset)))?;
    }
    LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(target)
}

/// `linear` then `activation` applied to `x` (`[n, in]`) by the kernel, as a 1×1 convolution
/// over `[n, in, 1, 1]` that reads burn's `[in, out]` weights as they are (no copy),
/// or `None` where the kernel does not apply (as for [`conv2d`]).
pub fn linear(linear: &Linear, x: &Tensor<2>, activation: Activation) -> Option<Tensor<2>> {
    let [n, din] = x.dims();
    // burn's `[in, out]` weights already are the kernel's `[k, cout]` matrix.
    let weight = linear.weight.val();
    let [_, dout] = weight.dims();
    let x = x.clone().reshape([n, din, 1, 1]);
    let y = Gemm {
        x: &x,
        x_channel: 0,
        weight,
        kernel: [1, 1],
        bias: linear.bias.as_ref().map(|b| b.val()),
        stride: [1, 1],
        padding: [0; 4],
        activation,
        layer: "fully connected layer",
    }
    .launch(None, None)?;
    LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(into_tensor(y, &x)?.reshape([n, dout]))
}

/// An uninitialised NCHW tensor of `shape` on `x`'s device, in `x`'s dtype.
fn empty_like(x: &Tensor<4>, shape: [usize; 4]) -> Option<CubeTensor> {
    let xt = cube_tensor(x)?;
    Some(burn_cubecl::ops::numeric::empty_device_contiguous_dtype(
        xt.client.clone(),
        xt.device.clone(),
        shape.into(),
        x.dtype(),
    ))
}

/// Convolutions the kernel wrote straight into their channels of a concatenation.
static IN_PLACE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many convolutions the kernel has written straight into their slice of a concatenation
/// in this process so far ([`Concat`]; for tests and profiles).
pub fn in_place_writes() -> u64 {
    IN_PLACE.load(std::sync::atomic::Ordering::Relaxed)
}

/// A concatenation along channels, `[n, Σ parts, ho, wo]`, whose parts are convolutions that
/// the kernel writes straight into their channels: an inception block's branches without the
/// copy `cat` makes of them (build.rs's routing finds such concatenations; see
/// [`crate::model::cpu::Concat`]).
pub struct Concat {
    /// The concatenation, on the fusion stream (registered when allocated: the kernels write
    /// into its buffer before anything reads it).
    full: Tensor<4>,
    /// The same buffer, for the kernels to write.
    target: CubeTensor,
    /// Each part's first channel.
    starts: Vec<usize>,
}

impl Concat {
    /// The concatenation of parts of `channels` each, shaped as `conv` applied to `x` (all of
    /// a concatenation's parts have the same image size), uninitialised; `None` where the
    /// kernel does not run `conv` (as for [`conv2d`]: this part, and so the whole
    /// concatenation, goes through `cat`).
    pub fn new(conv: &Conv2d, x: &Tensor<4>, channels: &[usize]) -> Option<Self> {
        // The shape only: the products (and their reordered weights) are each part's to make.
        let [_, _, kh, kw] = conv.weight.dims();
        if !Gemm::takes(conv) {
            return None;
        }
        let padding = super::super::cpu::padding(&conv.padding)?;
        let [n, _, height, width] = x.dims();
        let [ho, wo] = conv_output_size([height, width], [kh, kw], conv.stride, padding)?;
        elem_type(x.dtype())?;
        let total = channels.iter().sum::<usize>();
        let target = empty_like(x, [n, total, ho, wo])?;
        let full = into_tensor(target.clone(), x)?;
        let starts = channels
            .iter()
            .scan(0, |start, c| {
                *start += c;
                Some(*start - c)
            })
            .collect();
        Some(Self {
            full,
            target,
            starts,
        })
    }

    /// Writes `conv` then `activation` applied to `x` into part `part`'s channels: `false`
    /// where the kernel does not run it (it is then the caller's to [`Concat::finish`] with).
    pub fn conv2d(
        &self,
        part: usize,
        conv: &Conv2d,
        x: &Tensor<4>,
        activation: Activation,
    ) -> bool {
        let written = self.starts.get(part).is_some_and(|&start| {
            Gemm::of(conv, x, activation)
                .and_then(|products| launch_all(products, None, Some((&self.target, start))))
                .is_some()
        });
        if written {
            IN_PLACE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        written
    }

    /// Part `part`'s `channels` channels of the concatenation (as written so far).
    pub fn part(&self, part: usize, channels: usize) -> Tensor<4> {
        let start = self.starts[part];
        self.full
            .clone()
            .slice(burn::tensor::s![.., start..start + channels, .., ..])
    }

    /// The concatenation, with the parts the kernel did not write (`(part, tensor)`) copied
    /// into their channels.
    pub fn finish(self, rest: impl IntoIterator<Item = (usize, Tensor<4>)>) -> Tensor<4> {
        let mut full = self.full;
        for (part, y) in rest {
            let start = self.starts[part];
            let end = start + y.dims()[1];
            full = full.slice_assign(burn::tensor::s![.., start..end, .., ..], y);
        }
        full
    }
}

/// One product for the kernel: the input, weights as a `[cin·kh·kw, cout]` matrix (any strides),
/// the kernel size `[kh, kw]`, bias, stride, padding `[top, left, bottom, right]`, activation,
/// and what the layer is (for a notice).
struct Gemm<'a> {
    x: &'a Tensor<4>,
    /// The first of `x`'s channels the product reads (a group's).
    x_channel: usize,
    weight: Tensor<2>,
    kernel: [usize; 2],
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 4],
    activation: Activation,
    layer: &'static str,
}

impl<'a> Gemm<'a> {
    /// `conv` applied to `x` as one product per group (one for a dense convolution, two for
    /// AlexNet's grouped ones), each with the first output channel it writes; `None` for
    /// depthwise convolutions (the window kernel's), dilated ones and `Same` padding.
    fn of(conv: &Conv2d, x: &'a Tensor<4>, activation: Activation) -> Option<Vec<(usize, Self)>> {
        if !Self::takes(conv) {
            return None;
        }
        let weight = conv.weight.val();
        let [cout, cin, kh, kw] = weight.dims();
        let groups = conv.groups;
        let padding = super::super::cpu::padding(&conv.padding)?;
        let per_group = cout / groups;
        let products = (0..groups).map(|g| {
            let rows = g * per_group..(g + 1) * per_group;
            let weight = match groups {
                1 => weight.clone(),
                _ => weight
                    .clone()
                    .slice(burn::tensor::s![rows.clone(), .., .., ..]),
            };
            let product = Gemm {
                x,
                x_channel: g * cin,
                // [cin, kh, kw, cout]: row (ci·kh + ky)·kw + kx, as the kernel walks the window.
                weight: weight
                    .permute([1, 2, 3, 0])
                    .reshape([cin * kh * kw, per_group]),
                kernel: [kh, kw],
                bias: conv.bias.as_ref().map(|b| match groups {
                    1 => b.val(),
                    _ => b.val().slice(burn::tensor::s![rows]),
                }),
                stride: conv.stride,
                padding,
                activation,
                layer: "convolution",
            };
            (g * per_group, product)
        });
        Some(products.collect())
    }

    /// Whether the kernel runs `conv` (as [`Gemm::of`] says, `Same` padding aside).
    fn takes(conv: &Conv2d) -> bool {
        let [cout, cin, _, _] = conv.weight.dims();
        let groups = conv.groups;
        conv.dilation == [1, 1]
            && groups > 0
            && !(groups > 1 && cin == 1)
            && cout.is_multiple_of(groups)
    }

    /// `[n, ho, wo]` of the product's output.
    fn output_size(&self) -> Option<[usize; 3]> {
        let [n, _, height, width] = self.x.dims();
        let [ho, wo] = conv_output_size([height, width], self.kernel, self.stride, self.padding)?;
        Some([n, ho, wo])
    }

    /// Launches the kernel on a new NCHW tensor, which it returns, or, with `into =
    /// (target, channel)`, on channels `channel..channel + cout` of `target` (any strides), which it
    /// returns; `None` where the kernel does not apply or `target` is not this product's shape.
    fn launch(self, tile: Option<Tile>, into: Option<(&CubeTensor, usize)>) -> Option<CubeTensor> {
        let Gemm {
            x,
            x_channel,
            weight,
            kernel: [kh, kw],
            bias,
            stride,
            padding,
            activation,
            layer,
        } = self;
        let [k_total, cout] = weight.dims();
        let [n, channels, height, width] = x.dims();
        let cin = k_total / (kh * kw).max(1);
        let [sh, sw] = stride;
        if k_total != cin * kh * kw
            || x_channel + cin > channels
            || sh == 0
            || sw == 0
            || weight.dtype() != x.dtype()
        {
            return None;
        }
        let dtype = x.dtype();
        let elem = elem_type(dtype)?;
        let [top, left, _, _] = padding;
        let [ho, wo] = conv_output_size([height, width], [kh, kw], stride, padding)?;
        if let Some((target, channel)) = into {
            let [tn, tc, th, tw] = target.meta.shape().dims::<4>();
            if [tn, th, tw] != [n, ho, wo] || channel + cout > tc || target.dtype != dtype {
                return None;
            }
        }
        let m_total = n * ho * wo;
        let tile = tile.unwrap_or_else(|| Tile::for_shape(m_total, cout));
        // Weights are read four output channels at a time where the layer has a multiple of
        // four (every built-in model's convolutions and fully connected layers), else one.
        let vector = if cout.is_multiple_of(4) && tile.valid(4) {
            4
        } else {
            1
        };
        if !tile.valid(vector) {
            return None;
        }
        let groups = [
            m_total.div_ceil(tile.m() as usize),
            cout.div_ceil(tile.n() as usize),
        ];
        if groups.iter().any(|&g| g > 65_535) || m_total > u32::MAX as usize / 2 {
            return None;
        }

        let (has_bias, pointwise) = (bias.is_some(), kh == 1 && kw == 1 && top == 0 && left == 0);
        let (act, lo, hi) = activation_code(activation);
        let xt = cube_tensor(x)?;
        let xs = xt.meta.strides().clone();
        // Inputs are read four pixels at a time where a pointwise convolution at stride 1 reads
        // whole planes of a multiple of four pixels, laid out row after row, from an aligned
        // buffer (Lite0's and GoogLeNet's 1×1 layers but those on 7×7 maps), else one value.
        let x_vector = if pointwise
            && stride == [1, 1]
            && xs[3] == 1
            && xs[2] == width
            && (height * width).is_multiple_of(4)
            && xs[1].is_multiple_of(4)
            && xs[0].is_multiple_of(4)
            && (x_channel * xs[1]).is_multiple_of(4)
            && (xt.handle.offset_start.unwrap_or(0) as usize).is_multiple_of(4 * dtype.size())
            && tile.loads_pixels_by(4)
        {
            4
        } else {
            1
        };
        let variant =
            format!("conv {tile:?} {dtype:?} {has_bias} {act} {pointwise} {vector} {x_vector}");
        // Row-major, as the kernel reads it (a copy unless it already is: a convolution's
        // weights are reordered, a fully connected layer's `[in, out]` weights are not).
        let wt = burn_cubecl::kernel::into_contiguous(cube_tensor(&weight)?);
        let bias = match bias {
            Some(b) => Some(cube_tensor(&b.reshape([1, 1, 1, cout]))?),
            None => None,
        };
        let client = xt.client.clone();
        let u = |v: usize| v as u32;
        // Without a bias the kernel never reads the buffer; bind the weights in its place.
        let bias = bias.unwrap_or_else(|| wt.clone());
        let launch = || {
            let (out, channel) = match into {
                Some((target, channel)) => (target.clone(), channel),
                None => (
                    burn_cubecl::ops::numeric::empty_device_contiguous_dtype(
                        client.clone(),
                        xt.device.clone(),
                        [n, cout, ho, wo].into(),
                        dtype,
                    ),
                    0,
                ),
            };
            let os = out.meta.strides().clone();
            // SAFETY: every index the kernel forms is checked against the sizes passed with it
            // (pixels against `m_total`, channels against `cout`, the window against the input's
            // extent and `k_total`), and the strides are the tensors' own.
            unsafe {
                conv2d_gemm_kernel::launch_unchecked(
                    &client,
                    CubeCount::Static(u(groups[0]), u(groups[1]), 1),
                    CubeDim::new_2d(tile.threads_x, tile.threads_y),
                    vector as usize,
                    x_vector as usize,
                    xt.clone().into_buffer_arg(),
                    wt.clone().into_buffer_arg(),
                    bias.clone().into_buffer_arg(),
                    out.clone().into_buffer_arg(),
                    strides(&xt),
                    u(x_channel * xs[1]),
                    strides(&out),
                    u(channel * os[1]),
                    u(height),
                    u(width),
                    u(cout),
                    u(ho),
                    u(wo),
                    u(kh),
                    u(kw),
                    u(sh),
                    u(sw),
                    u(top),
                    u(left),
                    u(m_total),
                    u(k_total),
                    lo,
                    hi,
                    tile.threads_x,
                    tile.threads_y,
                    tile.rows,
                    tile.cols,
                    tile.k,
                    has_bias,
                    act,
                    pointwise,
                    elem,
                );
            }
            out
        };
        let what = format!(
            "glassbox's tiled convolution kernel ({}x{} tile, {dtype:?})",
            tile.m(),
            tile.n()
        );
        let out = launch_checked(variant, &client, &[&xt, &wt, &bias], launch, &what, || {
            format!("a {cin}->{cout} {kh}x{kw} {layer}")
        })?;
        if x_vector > 1 {
            PIXEL_VECTORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Some(out)
    }
}
