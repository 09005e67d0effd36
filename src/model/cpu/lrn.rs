//! Local response normalisation across channels, one image per core.

use super::{enabled_on, flex_tensor, values, written};
use burn::tensor::{DType, FloatDType, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

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
