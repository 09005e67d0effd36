//! Max pooling as maxima over phase planes padded with `-inf`.

use super::phases::{PhasePlanes, Phases, plane_tasks};
use super::{Activation, enabled_on, flex_tensor, padding, values};
use crate::model::{gpu, simd};
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use std::mem::MaybeUninit;

/// `pool` applied to `x`.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    if !enabled_on(&x) {
        if x.device() != burn::tensor::Device::flex()
            && let Some(y) = gpu::max_pool2d(pool, &x)
        {
            return y;
        }
        return pool.forward(x);
    }
    max_pool_flex(pool, &x).unwrap_or_else(|| pool.forward(x))
}

/// The output height and width of `pool` over a `height` × `width` input, PyTorch's rule
/// (ceil mode: the last window must start inside the input or its leading padding), or `None`
/// where glassbox's kernels do not take the pool (dilation, a zero stride or kernel, leading
/// padding of a whole kernel or more) or a window does not fit.
pub(crate) fn pool_output_size(
    pool: &MaxPool2d,
    height: usize,
    width: usize,
) -> Option<[usize; 2]> {
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
        if pool.ceil_mode && (out - 1) * s >= size + pad_lo {
            out -= 1;
        }
        Some(out)
    };
    Some([
        out_len(height, top, bottom, kh, sh)?,
        out_len(width, left, right, kw, sw)?,
    ])
}

/// Max pooling (padding ignored, as `-inf`), or `None` where this kernel does not apply.
fn max_pool_flex(pool: &MaxPool2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let [_, _, height, width] = x.dims();
    let [kh, kw] = pool.kernel_size;
    let [sh, sw] = pool.stride;
    let [top, left, _, _] = padding(&pool.padding)?;
    let [out_height, out_width] = pool_output_size(pool, height, width)?;
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
