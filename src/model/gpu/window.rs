//! glassbox's own GPU kernels for the sliding-window layers: depthwise convolution and max
//! pooling, written in CubeCL.
//!
//! Each workgroup computes a tile of 16 × 16 outputs of one channel of one image. Its
//! invocations first copy the input patch the tile's windows cover (the halo included, padding
//! read as 0 for a convolution and as −∞ for pooling) into workgroup memory, once, then each
//! computes its output from there: a 3×3 window at stride 1 reads every input value nine
//! times, but from workgroup memory, and global memory once. A depthwise convolution applies
//! its bias and activation (Relu, Relu6's clamp) as it stores. Tensors are f32 or f16 (read and
//! written as such; sums and maxima in f32). A NaN in a window comes out as NaN, as on the CPU. Window size and stride are compile-time constants
//! of the kernel, so each model compiles a handful of variants; there is nothing to autotune.

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use cubecl::prelude::*;

use super::cube::{
    Strides, StridesLaunch, cube_tensor, elem_type, into_tensor, launch_checked, strides,
};
use super::tiled::bias_activation;
use crate::model::cpu::{Activation, conv_output_size, padding, pool_output_size};

/// Outputs per workgroup along each axis (one per invocation).
const TILE: u32 = 16;
/// The largest input patch staged in workgroup memory, in values (16 KiB of f32).
const MAX_PATCH: u32 = 4096;

/// Windows run by these kernels in this process so far.
static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many depthwise convolutions and max poolings these kernels have run in this process.
pub fn launches() -> u64 {
    LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The window kernel: `op` 0 is max pooling, 1 a depthwise convolution with weights `w`
/// (`[c, 1, kh, kw]`, strides `ws`) and `bias`.
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
    #[define(E)] _dtype: ElemType,
) {
    let patch_h = comptime!((TILE - 1) * sh + kh);
    let patch_w = comptime!((TILE - 1) * sw + kw);
    let patch_len = comptime!(patch_h * patch_w);
    let threads = comptime!(TILE * TILE);
    let mut patch = Shared::<[f32]>::new_slice(comptime!(patch_len as usize));

    let plane = CUBE_POS_Z * 65535u32 + CUBE_POS_Y;
    let plane_in = plane < planes;
    let plane_c = select(plane_in, plane, 0u32);
    let n = plane_c / c;
    let ch = plane_c % c;
    let oy0 = (CUBE_POS_X / tiles_x) * TILE;
    let ox0 = (CUBE_POS_X % tiles_x) * TILE;
    let iy0 = (oy0 * sh) as i32 - pt as i32;
    let ix0 = (ox0 * sw) as i32 - pl as i32;
    let base = n * xs.n + ch * xs.c;
    let tid = UNIT_POS_Y * TILE + UNIT_POS_X;

    let mut pad = 0.0f32;
    if comptime!(op == 0) {
        pad = f32::min_value();
    }
    let mut i = tid;
    while i < patch_len {
        let iy = iy0 + (i / patch_w) as i32;
        let ix = ix0 + (i % patch_w) as i32;
        let mut v = pad;
        if plane_in && iy >= 0 && ix >= 0 && (iy as u32) < h && (ix as u32) < wd {
            v = f32::cast_from(x[(base + (iy as u32) * xs.h + (ix as u32) * xs.w) as usize]);
        }
        patch[i as usize] = v;
        i += threads;
    }
    sync_cube();

    let oy = oy0 + UNIT_POS_Y;
    let ox = ox0 + UNIT_POS_X;
    if plane_in && oy < ho && ox < wo {
        let mut acc = pad;
        #[unroll]
        for ky in 0..kh {
            #[unroll]
            for kx in 0..kw {
                let v = patch[((UNIT_POS_Y * sh + ky) * patch_w + UNIT_POS_X * sw + kx) as usize];
                if comptime!(op == 0) {
                    // A NaN in the window comes out (as the CPU kernels have it); once the
                    // maximum is NaN, nothing compares above it.
                    if v > acc || v.is_nan() {
                        acc = v;
                    }
                } else {
                    acc += v * f32::cast_from(w[(ch * ws.n + ky * ws.h + kx * ws.w) as usize]);
                }
            }
        }
        if comptime!(op == 1) {
            acc = bias_activation::<E>(acc, bias, ch, lo, hi, has_bias, act);
        }
        out[((plane * ho + oy) * wo + ox) as usize] = E::cast_from(acc);
    }
}

/// A window layer to run: the input and its geometry, the output size, and for a depthwise
/// convolution its weights, bias and activation.
struct Window<'a> {
    x: &'a Tensor<4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    out: [usize; 2],
    conv: Option<(&'a Conv2d, Activation)>,
}

impl Window<'_> {
    /// Launches the kernel, or `None` where it does not apply or its variant failed here.
    fn run(self) -> Option<Tensor<4>> {
        let [n, c, h, wd] = self.x.dims();
        let ([kh, kw], [sh, sw], [ho, wo]) = (self.kernel, self.stride, self.out);
        let dtype = self.x.dtype();
        let elem = elem_type(dtype)?;
        let u = |v: usize| v as u32;
        let patch = ((TILE as usize - 1) * sh + kh) * ((TILE as usize - 1) * sw + kw);
        let tiles_x = wo.div_ceil(TILE as usize);
        let tiles = ho.div_ceil(TILE as usize) * tiles_x;
        let planes = n * c;
        if patch > MAX_PATCH as usize
            || tiles > 65_535
            || planes.div_ceil(65_535) > 65_535
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
        let variant = format!("window {op} {kh}x{kw}/{sh}x{sw} {dtype:?} {has_bias} {act}");
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
                    CubeCount::Static(u(tiles), u(planes.min(65_535)), u(planes.div_ceil(65_535))),
                    CubeDim::new_2d(TILE, TILE),
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
    }
    .run()
}

/// `pool` applied to `x` by the window kernel (padding read as −∞, ceil mode as PyTorch's), or
/// `None` where it does not apply (dilation, an input patch over 16 KiB, a dtype other than f32
/// and f16, a device that is not a CubeCL GPU).
pub fn max_pool2d(pool: &MaxPool2d, x: &Tensor<4>) -> Option<Tensor<4>> {
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
    }
    .run()
}
