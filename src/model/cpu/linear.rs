//! Fully connected layers: burn's matrix product on the CPU; on a GPU on the tiled path,
//! glassbox's implicit-GEMM kernel, which runs them as 1×1 convolutions.

use super::Activation;
use crate::model::gpu;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

/// `linear` applied to `x`, then `activation`.
pub fn linear<const D: usize>(linear: &Linear, x: Tensor<D>, activation: Activation) -> Tensor<D> {
    if D == 2 && x.device() != Device::flex() {
        let dims = x.dims();
        if let Some(y) = gpu::linear(linear, &x.clone().reshape([dims[0], dims[1]]), activation) {
            let mut out = dims;
            out[1] = y.dims()[1];
            return y.reshape(out);
        }
    }
    activation.burn(linear.forward(x))
}
