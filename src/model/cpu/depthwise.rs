//! Depthwise convolutions (one input channel per group) as flat multiply-adds over phase
//! planes, a block of outputs held in registers through every kernel tap.

use super::phases::{PhasePlanes, Phases, plane_tasks};
use super::{Activation, Params, flex_tensor, padding, values};
use crate::model::simd;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use std::mem::MaybeUninit;

/// Depthwise convolution with bias and activation, or `None` where this kernel does not apply
/// (dilation, or a channel multiplier other than one).
pub(super) fn depthwise(conv: &Conv2d, x: &Tensor<4>, activation: Activation) -> Option<Tensor<4>> {
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
