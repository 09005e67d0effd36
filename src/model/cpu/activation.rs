//! The activation fused into a convolution's output ([`Activation`]), applied a vector at a
//! time, or in place on every core where no kernel of ours ran the convolution.

use crate::model::simd;
use burn::tensor::{DType, Tensor};
use burn_flex::Flex;
use rayon::prelude::*;

/// The activation applied to a convolution's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// None.
    None,
    /// `max(x, 0)`, NaN kept.
    Relu,
    /// `x` clamped to `[min, max]` (ONNX `Clip`), NaN kept.
    Clamp(f32, f32),
}

impl Activation {
    /// Applies it as burn would (the fallback path).
    pub(crate) fn burn<const D: usize>(self, y: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::None => y,
            Activation::Relu => burn::tensor::activation::relu(y),
            Activation::Clamp(lo, hi) => y.clamp(lo, hi),
        }
    }

    /// Whether the in-place kernels can apply it (a clamp needs ordered, non-NaN bounds).
    pub(super) fn native(self) -> bool {
        match self {
            Activation::Clamp(lo, hi) => lo <= hi,
            _ => true,
        }
    }

    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => {
                if x.is_nan() || x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            Activation::Clamp(lo, hi) => x.clamp(lo, hi),
        }
    }

    /// The activation on a vector (NaN kept, as in [`Activation::apply`]).
    #[inline(always)]
    pub(super) fn apply_vector<V: simd::Vector>(self, x: V) -> V {
        match self {
            Activation::None => x,
            Activation::Relu => V::at_least(x, V::splat(0.0)),
            Activation::Clamp(lo, hi) => V::at_most(V::at_least(x, V::splat(lo)), V::splat(hi)),
        }
    }

    fn apply_all(self, values: &mut [f32]) {
        if self != Activation::None {
            simd::run(BiasActivation {
                values,
                bias: None,
                activation: self,
            });
        }
    }
}

/// `values[i] = activation(values[i] + bias)`, a vector at a time.
pub(super) struct BiasActivation<'a> {
    pub(super) values: &'a mut [f32],
    pub(super) bias: Option<f32>,
    pub(super) activation: Activation,
}

impl simd::Kernel for BiasActivation<'_> {
    type Output = ();

    #[inline(always)]
    fn run<V: simd::Vector>(self) {
        let mut chunks = self.values.chunks_exact_mut(V::LANES);
        match self.bias {
            Some(bias) => {
                // 1 × v + b: one exact product, so the sum is rounded once, as a plain add.
                let (one, b) = (V::splat(1.0), V::splat(bias));
                for chunk in &mut chunks {
                    let v = V::mul_add(one, V::load(chunk), b);
                    self.activation.apply_vector(v).store(chunk);
                }
                for x in chunks.into_remainder() {
                    *x = self.activation.apply(*x + bias);
                }
            }
            None => {
                for chunk in &mut chunks {
                    self.activation.apply_vector(V::load(chunk)).store(chunk);
                }
                for x in chunks.into_remainder() {
                    *x = self.activation.apply(*x);
                }
            }
        }
    }
}

/// Applies `activation` to a CPU tensor in place on every core, or through burn when the tensor
/// is shared or strided.
pub(super) fn in_place(y: Tensor<4>, activation: Activation) -> Tensor<4> {
    if activation == Activation::None {
        return y;
    }
    let fallback = y.clone();
    let mut t = match y.try_into_primitive::<Flex>() {
        Ok(t) => t,
        Err(_) => return activation.burn(fallback),
    };
    // Only `t` may hold the storage now.
    drop(fallback);
    let n = t.layout().num_elements();
    let plain = t.dtype() == DType::F32
        && t.is_unique()
        && t.layout().is_contiguous()
        && t.layout().start_offset() == 0;
    match t.try_storage_mut::<f32>() {
        Some(values) if plain && values.len() >= n => {
            values[..n]
                .par_chunks_mut(1 << 14)
                .for_each(|chunk| activation.apply_all(chunk));
            Tensor::from_primitive::<Flex>(t)
        }
        _ => activation.burn(Tensor::from_primitive::<Flex>(t)),
    }
}
