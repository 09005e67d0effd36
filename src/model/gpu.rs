//! Dense convolutions on a GPU as a sum of matrix products, one per kernel tap (opt-in).
//!
//! burn's wgpu backend runs a dense 3×3 or 5×5 convolution with its direct kernel unless the
//! adapter offers cooperative-matrix (tensor core) instructions, which WGSL does not: GoogLeNet
//! ran at about 760 images/s on an H100 that way. A convolution is also the sum over its kernel
//! taps `(ky, kx)` of a 1×1 convolution of the input shifted by that tap, i.e. of the matrix
//! product `W[:, :, ky, kx] × x_shifted`, which burn runs with its tuned matmul. Every buffer
//! stays the size of the input or output (no `kh × kw` times larger im2col block), so chunk
//! sizing is unchanged.
//!
//! Measured on an NVIDIA H200 (Vulkan), same binary and machine: a warm GoogLeNet (torchvision)
//! LIME takes 1.11 s instead of 1.32 s, a 20×20 occlusion 0.41 s instead of 0.49 s, and GPU and
//! CPU probabilities agree to 9.4e-7. But the first image of a process with an empty autotune
//! cache took 107 s instead of about 21 s (every matmul shape is tuned), so it is off by
//! default: [`set_enabled`] turns it on for a long-running process, `GLASSBOX_GPU_CONV=taps` for
//! the command-line tool.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::nn::conv::Conv2d;
use burn::tensor::ops::PadMode;
use burn::tensor::{Tensor, s};

static TAPS: AtomicBool = AtomicBool::new(false);

/// Turns the tap-sum convolution on or off (the default) for the whole process: off, every GPU
/// convolution runs burn's own kernel.
pub fn set_enabled(enabled: bool) {
    TAPS.store(enabled, Ordering::Relaxed);
}

/// Whether the generated models use [`conv2d`] on a GPU.
pub fn enabled() -> bool {
    TAPS.load(Ordering::Relaxed)
}

/// Fewest input channels for which the tap sum is used: each product's inner dimension is the
/// channel count, and a thinner one (a stem over RGB) leaves the matmul idle.
const MIN_CHANNELS: usize = 16;

/// `conv` applied to `x` (on any device) as a sum of per-tap matrix products, or `None` where
/// burn's kernel is kept (1×1, grouped, dilated or `Same`-padded convolutions, few input channels).
pub fn conv2d(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let weight = conv.weight.val();
    let [cout, cin, kh, kw] = weight.dims();
    let [n, channels, height, width] = x.dims();
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
    let (padded_h, padded_w) = (height + top + bottom, width + left + right);
    if padded_h < kh || padded_w < kw {
        return None;
    }
    let (ho, wo) = ((padded_h - kh) / sh + 1, (padded_w - kw) / sw + 1);
    let padded = if top + left + bottom + right > 0 {
        x.clone()
            .pad([(top, bottom), (left, right)], PadMode::Constant(0.0))
    } else {
        x.clone()
    };
    // [kh, kw, cout, cin]: tap (ky, kx)'s weights are one contiguous [cout, cin] matrix.
    let taps = weight.permute([2, 3, 0, 1]);
    let mut sum: Option<Tensor<3>> = None;
    for ky in 0..kh {
        for kx in 0..kw {
            let (y_end, x_end) = (ky + (ho - 1) * sh + 1, kx + (wo - 1) * sw + 1);
            let shifted = padded
                .clone()
                .slice(s![.., .., ky..y_end;sh as isize, kx..x_end;sw as isize])
                .reshape([n, cin, ho * wo]);
            let w = taps
                .clone()
                .slice(s![ky..ky + 1, kx..kx + 1, .., ..])
                .reshape([1, cout, cin]);
            let product = w.matmul(shifted);
            sum = Some(match sum {
                Some(acc) => acc + product,
                None => product,
            });
        }
    }
    let mut y = sum?;
    if let Some(bias) = &conv.bias {
        y = y + bias.val().reshape([1, cout, 1]);
    }
    Some(y.reshape([n, cout, ho, wo]))
}
