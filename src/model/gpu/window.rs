//! glassbox's own GPU kernels for the sliding-window layers: depthwise convolution and max
//! pooling, written in CubeCL.
//!
//! A workgroup computes a tile of outputs of one or more planes (a plane is one channel of one
//! image). Its invocations first copy the input patch the tile's windows cover (the halo
//! included, padding read as 0 for a convolution and as −∞ for pooling) into workgroup memory,
//! once; then each invocation computes a block of neighbouring outputs ([`Layout`]) from there.
//! It reads the block's window region from workgroup memory into registers once, and a
//! convolution's weights once: a 3×3 window at stride 1 over a 2×2 block reads 16 values
//! instead of 36. Small maps (GoogLeNet's and Lite0's 7×7) put four planes in a workgroup, so
//! that its invocations are not mostly idle. A depthwise convolution applies its bias and
//! activation (Relu, Relu6's clamp) as it stores. Tensors are f32 or f16 (read and written as
//! such; sums and maxima in f32, each output summed in the window's order, whatever the
//! layout). A NaN in a window comes out as NaN, as on the CPU. Window size, stride and layout
//! are compile-time constants of the kernel, so each model compiles a handful of variants;
//! there is nothing to autotune.

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use cubecl::prelude::*;

use super::cube::{
    Strides, StridesLaunch, cube_tensor, elem_type, into_tensor, launch_checked, strides,
};
use super::tiled::bias_activation;
use crate::model::cpu::{Activation, conv_output_size, padding, pool_output_size};

/// The largest input patch a workgroup stages in workgroup memory, in values (16 KiB of f32,
/// WebGPU's guaranteed minimum).
const MAX_PATCH: usize = 4096;

/// Windows run by these kernels in this process so far.
static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many depthwise convolutions and max poolings these kernels have run in this process.
pub fn launches() -> u64 {
    LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// How a workgroup covers its outputs: its invocations along a row, along a column and across
/// planes, and the block of outputs each invocation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Invocations along a row (`x`), along a column (`y`), and planes per workgroup (`z`).
    pub threads: [u32; 3],
    /// Outputs each invocation computes: rows, columns.
    pub block: [u32; 2],
}

impl Layout {
    /// 16 × 16 invocations of one output each, on one plane.
    pub const SINGLE: Layout = Layout {
        threads: [16, 16, 1],
        block: [1, 1],
    };
    /// 16 × 16 invocations of 2 × 2 outputs each: a 32 × 32 tile, for large maps.
    pub const BLOCK: Layout = Layout {
        threads: [16, 16, 1],
        block: [2, 2],
    };
    /// 16 × 16 invocations of 1 row × 2 columns each: a 16 × 32 tile, for large maps where
    /// [`Layout::BLOCK`]'s patch is over the limit (strided windows).
    pub const WIDE: Layout = Layout {
        threads: [16, 16, 1],
        block: [1, 2],
    };
    /// 8 × 8 invocations of one output each, on each of 4 planes: maps of at most 8 × 8.
    pub const PLANES: Layout = Layout {
        threads: [8, 8, 4],
        block: [1, 1],
    };
    /// Every layout, for tests and measurements.
    pub const ALL: [Layout; 4] = [Layout::SINGLE, Layout::BLOCK, Layout::WIDE, Layout::PLANES];

    /// Outputs per plane of a workgroup's tile: rows, columns.
    fn tile(self) -> [usize; 2] {
        [
            (self.threads[1] * self.block[0]) as usize,
            (self.threads[0] * self.block[1]) as usize,
        ]
    }

    /// Values of workgroup memory the tile's input patches take, for windows of `kernel` at
    /// `stride`.
    fn patch(self, kernel: [usize; 2], stride: [usize; 2]) -> usize {
        let [th, tw] = self.tile();
        ((th - 1) * stride[0] + kernel[0])
            * ((tw - 1) * stride[1] + kernel[1])
            * self.threads[2] as usize
    }

    /// The layout for a window layer of `kernel` at `stride` with `out` outputs per plane:
    /// [`Layout::PLANES`] for maps of at most 8 × 8, else the first of [`Layout::BLOCK`] and
    /// [`Layout::WIDE`] whose patch fits and whose tile the map fills at least once along a
    /// blocked axis, else [`Layout::SINGLE`].
    pub fn for_shape(out: [usize; 2], kernel: [usize; 2], stride: [usize; 2]) -> Layout {
        let [ho, wo] = out;
        if ho <= 8 && wo <= 8 {
            return Layout::PLANES;
        }
        [Layout::BLOCK, Layout::WIDE]
            .into_iter()
            .find(|l| {
                let [th, tw] = l.tile();
                l.patch(kernel, stride) <= MAX_PATCH
                    && (l.block[0] == 1 || ho >= th)
                    && (l.block[1] == 1 || wo >= tw)
            })
            .unwrap_or(Layout::SINGLE)
    }
}

/// The window kernel: `op` 0 is max pooling, 1 a depthwise convolution with weights `w`
/// (`[c, 1, kh, kw]`, strides `ws`) and `bias`. A workgroup of `bx × by × bz` invocations
/// computes `by·rows × bx·cols` outputs of each of `bz` planes; workgroup `(x, y, z)` takes
/// tile `x` (`tiles_x` tiles a row) of plane group `z·65535 + y`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
fn window_kernel<E: Float>(
    x: &[E],
    w: &[E],
    bias: &[E],
    out: &mut [E],
    xs: Strides,
    ws: Strides,
    c: u32,
    h: u32,
    wd: u32,
    ho: u32,
    wo: u32,
    pt: u32,
    pl: u32,
    tiles_x: u32,
    planes: u32,
    lo: f32,
    hi: f32,
    #[comptime] kh: u32,
    #[comptime] kw: u32,
    #[comptime] sh: u32,
    #[comptime] sw: u32,
    #[comptime] op: u32,
    #[comptime] has_bias: bool,
    #[comptime] act: u32,
    #[comptime] bx: u32,
    #[comptime] by: u32,
    #[comptime] bz: u32,
    #[comptime] rows: u32,
    #[comptime] cols: u32,
    #[define(E)] _dtype: ElemType,
) {
    let tile_h = comptime!(by * rows);
    let tile_w = comptime!(bx * cols);
    let patch_h = comptime!((tile_h - 1) * sh + kh);
    let patch_w = comptime!((tile_w - 1) * sw + kw);
    let patch_len = comptime!(patch_h * patch_w);
    let staged = comptime!(bz * patch_len);
    let threads = comptime!(bx * by * bz);
    // An invocation's window region: the inputs its block of outputs reads.
    let region_h = comptime!((rows - 1) * sh + kh);
    let region_w = comptime!((cols - 1) * sw + kw);
    let taps = comptime!(if op == 1 { kh * kw } else { 1 });
    let mut patch = Shared::<[f32]>::new_slice(comptime!(staged as usize));

    let first_plane = (CUBE_POS_Z * 65535u32 + CUBE_POS_Y) * bz;
    let oy0 = (CUBE_POS_X / tiles_x) * tile_h;
    let ox0 = (CUBE_POS_X % tiles_x) * tile_w;
    let iy0 = (oy0 * sh) as i32 - pt as i32;
    let ix0 = (ox0 * sw) as i32 - pl as i32;
    let tid = (UNIT_POS_Z * by + UNIT_POS_Y) * bx + UNIT_POS_X;

    let mut pad = 0.0f32;
    if comptime!(op == 0) {
        pad = f32::min_value();
    }
    let mut i = tid;
    while i < staged {
        let p = first_plane + i / patch_len;
        let j = i % patch_len;
        let iy = iy0 + (j / patch_w) as i32;
        let ix = ix0 + (j % patch_w) as i32;
        let mut v = pad;
        if p < planes && iy >= 0 && ix >= 0 && (iy as u32) < h && (ix as u32) < wd {
            let base = (p / c) * xs.n + (p % c) * xs.c;
            v = f32::cast_from(x[(base + (iy as u32) * xs.h + (ix as u32) * xs.w) as usize]);
        }
        patch[i as usize] = v;
        i += threads;
    }
    sync_cube();

    let plane = first_plane + UNIT_POS_Z;
    let ch = plane % c;
    let block_y = UNIT_POS_Y * rows;
    let block_x = UNIT_POS_X * cols;
    let oy = oy0 + block_y;
    let ox = ox0 + block_x;
    if plane < planes && oy < ho && ox < wo {
        let mut region = Array::<f32>::new(comptime!((region_h * region_w) as usize));
        let from = UNIT_POS_Z * patch_len + (block_y * sh) * patch_w + block_x * sw;
        #[unroll]
        for ry in 0..region_h {
            #[unroll]
            for rx in 0..region_w {
                region[(ry * region_w + rx) as usize] = patch[(from + ry * patch_w + rx) as usize];
            }
        }
        let mut weights = Array::<f32>::new(comptime!(taps as usize));
        if comptime!(op == 1) {
            #[unroll]
            for ky in 0..kh {
                #[unroll]
                for kx in 0..kw {
                    weights[(ky * kw + kx) as usize] =
                        f32::cast_from(w[(ch * ws.n + ky * ws.h + kx * ws.w) as usize]);
                }
            }
        }
        #[unroll]
        for a in 0..rows {
            #[unroll]
            for b in 0..cols {
                let mut acc = pad;
                #[unroll]
                for ky in 0..kh {
                    #[unroll]
                    for kx in 0..kw {
                        let v = region[((a * sh + ky) * region_w + b * sw + kx) as usize];
                        if comptime!(op == 0) {
                            // A NaN in the window comes out (as the CPU kernels have it); once
                            // the maximum is NaN, nothing compares above it.
                            if v > acc || v.is_nan() {
                                acc = v;
                            }
                        } else {
                            acc += v * weights[(ky * kw + kx) as usize];
                        }
                    }
                }
                if comptime!(op == 1) {
                    acc = bias_activation::<E>(acc, bias, ch, lo, hi, has_bias, act);
                }
                if oy + a < ho && ox + b < wo {
                    out[((plane * ho + oy + a) * wo + ox + b) as usize] = E::cast_from(acc);
                }
            }
        }
    }
}

/// A window layer to run: the input and its geometry, the output size, for a depthwise
/// convolution its weights, bias and activation, and the layout (`None`: [`Layout::for_shape`]'s).
struct Window<'a> {
    x: &'a Tensor<4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    out: [usize; 2],
    conv: Option<(&'a Conv2d, Activation)>,
    layout: Option<Layout>,
}

impl Window<'_> {
    /// Launches the kernel, or `None` where it does not apply or its variant failed here.
    fn run(self) -> Option<Tensor<4>> {
        let [n, c, h, wd] = self.x.dims();
        let ([kh, kw], [sh, sw], [ho, wo]) = (self.kernel, self.stride, self.out);
        let dtype = self.x.dtype();
        let elem = elem_type(dtype)?;
        let u = |v: usize| v as u32;
        let layout = self
            .layout
            .unwrap_or_else(|| Layout::for_shape([ho, wo], [kh, kw], [sh, sw]));
        let [tile_h, tile_w] = layout.tile();
        let tiles_x = wo.div_ceil(tile_w);
        let tiles = ho.div_ceil(tile_h) * tiles_x;
        let planes = n * c;
        let groups = planes.div_ceil(layout.threads[2] as usize);
        if layout.patch([kh, kw], [sh, sw]) > MAX_PATCH
            || tiles > 65_535
            || groups.div_ceil(65_535) > 65_535
            || n * c * h.max(ho) * wd.max(wo) > u32::MAX as usize / 2
        {
            return None;
        }
        let (op, what) = match self.conv {
            Some(_) => (1, "glassbox's depthwise convolution kernel"),
            None => (0, "glassbox's max pooling kernel"),
        };
        let (has_bias, (act, lo, hi)) = match self.conv {
            Some((conv, activation)) => (
                conv.bias.is_some(),
                super::tiled::activation_code(activation),
            ),
            None => (false, (0, 0.0, 0.0)),
        };
        let variant =
            format!("window {op} {kh}x{kw}/{sh}x{sw} {dtype:?} {has_bias} {act} {layout:?}");
        let xt = cube_tensor(self.x)?;
        let (wt, bias) = match self.conv {
            Some((conv, _)) => {
                let wt = cube_tensor(&conv.weight.val())?;
                let bias = match &conv.bias {
                    Some(b) => Some(cube_tensor(&b.val().reshape([1, 1, 1, c]))?),
                    None => None,
                };
                (Some(wt), bias)
            }
            None => (None, None),
        };
        let client = xt.client.clone();
        // Pooling reads no weights and no bias, and a convolution without a bias reads none:
        // bind the input in their place.
        let has_weights = wt.is_some();
        let wt = wt.unwrap_or_else(|| xt.clone());
        let bias = bias.unwrap_or_else(|| xt.clone());
        let launch = || {
            let out = burn_cubecl::ops::numeric::empty_device_contiguous_dtype(
                client.clone(),
                xt.device.clone(),
                [n, c, ho, wo].into(),
                dtype,
            );
            // SAFETY: every index the kernel forms is checked against the sizes passed with it
            // (planes, the input's extent, the output's), and the strides are the tensors' own.
            unsafe {
                window_kernel::launch_unchecked(
                    &client,
                    CubeCount::Static(u(tiles), u(groups.min(65_535)), u(groups.div_ceil(65_535))),
                    CubeDim::new_3d(layout.threads[0], layout.threads[1], layout.threads[2]),
                    xt.clone().into_buffer_arg(),
                    wt.clone().into_buffer_arg(),
                    bias.clone().into_buffer_arg(),
                    out.clone().into_buffer_arg(),
                    strides(&xt),
                    match has_weights {
                        true => strides(&wt),
                        false => StridesLaunch::new(0, 0, 0, 0),
                    },
                    u(c),
                    u(h),
                    u(wd),
                    u(ho),
                    u(wo),
                    u(self.pad[0]),
                    u(self.pad[1]),
                    u(tiles_x),
                    u(planes),
                    lo,
                    hi,
                    u(kh),
                    u(kw),
                    u(sh),
                    u(sw),
                    op,
                    has_bias,
                    act,
                    layout.threads[0],
                    layout.threads[1],
                    layout.threads[2],
                    layout.block[0],
                    layout.block[1],
                    elem,
                );
            }
            out
        };
        let out = launch_checked(variant, &client, &[&xt, &wt, &bias], launch, what, || {
            format!("a {kh}x{kw} window at stride {sh}x{sw} over {c} channels")
        })?;
        LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        into_tensor(out, self.x)
    }
}

/// `conv` (depthwise: one filter per channel) applied to `x` with `activation` by the window
/// kernel, or `None` where it does not apply (not depthwise, a channel multiplier, dilation,
/// `Same` padding, an input patch over 16 KiB, a dtype other than f32 and f16, a device that is
/// not a CubeCL GPU).
pub fn depthwise(conv: &Conv2d, x: &Tensor<4>, activation: Activation) -> Option<Tensor<4>> {
    depthwise_with(conv, x, activation, None)
}

/// [`depthwise`] on the given layout (`None`: [`Layout::for_shape`]'s; a layout whose input
/// patch is over the limit gives `None`).
pub fn depthwise_with(
    conv: &Conv2d,
    x: &Tensor<4>,
    activation: Activation,
    layout: Option<Layout>,
) -> Option<Tensor<4>> {
    let weight = conv.weight.val();
    let [cout, per_group, kh, kw] = weight.dims();
    let [_, c, h, wd] = x.dims();
    let [sh, sw] = conv.stride;
    if conv.groups != c
        || cout != c
        || per_group != 1
        || conv.dilation != [1, 1]
        || sh == 0
        || sw == 0
        || weight.dtype() != x.dtype()
    {
        return None;
    }
    let pad = padding(&conv.padding)?;
    Window {
        x,
        kernel: [kh, kw],
        stride: [sh, sw],
        pad: [pad[0], pad[1]],
        out: conv_output_size([h, wd], [kh, kw], [sh, sw], pad)?,
        conv: Some((conv, activation)),
        layout,
    }
    .run()
}

/// `pool` applied to `x` by the window kernel (padding read as −∞, ceil mode as PyTorch's), or
/// `None` where it does not apply (dilation, an input patch over 16 KiB, a dtype other than f32
/// and f16, a device that is not a CubeCL GPU).
pub fn max_pool2d(pool: &MaxPool2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    max_pool2d_with(pool, x, None)
}

/// [`max_pool2d`] on the given layout (as [`depthwise_with`]).
pub fn max_pool2d_with(
    pool: &MaxPool2d,
    x: &Tensor<4>,
    layout: Option<Layout>,
) -> Option<Tensor<4>> {
    let [_, _, h, wd] = x.dims();
    let out = pool_output_size(pool, h, wd)?;
    let [top, left, _, _] = padding(&pool.padding)?;
    Window {
        x,
        kernel: pool.kernel_size,
        stride: pool.stride,
        pad: [top, left],
        out,
        conv: None,
        layout,
    }
    .run()
}
