//! A model's randomised twin: the same architecture with deterministic synthetic weights instead
//! of its trained ones, for the model-randomisation sanity check (Adebayo et al., NeurIPS 2018,
//! "Sanity Checks for Saliency Maps"). An explanation that does not change when the weights
//! are randomised does not explain the model.
//!
//! The weights are drawn as the build draws them for a weight-free skeleton (build/synthetic.rs):
//! He-uniform by fan-in for matrices and kernels, small values for biases, from a SplitMix64
//! stream seeded by the model's id and the parameter's path, so that the twin is the same on
//! every run and every machine. They replace the trained values as the weights load, so the
//! twin costs no second copy of the model on disk or in the binary.

use burn::store::bridge::map_data;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ModuleAdapter, ModuleContext};
use burn::tensor::{DType, TensorData};

use crate::rng::{SplitMix64, fnv1a};

/// Replaces every float parameter by synthetic values of the same shape.
#[derive(Debug, Clone)]
pub(crate) struct SyntheticWeights {
    /// The model's id, part of every parameter's seed.
    pub model: &'static str,
}

impl ModuleAdapter for SyntheticWeights {
    fn adapt(&self, tensor: PackTensor, ctx: ModuleContext<'_>) -> PackTensor {
        if !tensor.dtype.is_float() {
            return tensor;
        }
        let dims = tensor.shape.to_vec();
        // burn stores a Linear weight as [in, out], a convolution's as [out, in/groups, kh, kw].
        let fan_in = if ctx.module_type() == Some("Struct:Linear") && dims.len() == 2 {
            dims[0]
        } else {
            dims.iter().skip(1).product::<usize>()
        }
        .max(1);
        let (lo, hi) = if dims.len() >= 2 {
            let a = (6.0 / fan_in as f64).sqrt();
            (-a, a)
        } else {
            (-0.01, 0.01)
        };
        let seed = fnv1a(&format!("{}/{}", self.model, tensor.name));
        let (name, shape) = (tensor.name.clone(), tensor.shape.clone());
        map_data(tensor, name, DType::F32, shape, move |_trained| {
            let mut rng = SplitMix64(seed);
            let values: Vec<f32> = (0..dims.iter().product::<usize>())
                .map(|_| (lo + (hi - lo) * rng.next_unit()) as f32)
                .collect();
            TensorData::new(values, dims.clone())
        })
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}
