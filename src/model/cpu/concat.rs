//! Concatenations along channels of convolutions (an inception block's branches), the
//! generated code's entry point: on a GPU on the tiled path, each branch's last convolution
//! writes straight into its channels of the concatenation, so the `cat` that copies every
//! branch once more is gone; everywhere else, the convolutions run as [`conv2d`] and the parts
//! are concatenated as before.
//!
//! build.rs's routing rewrites `let y = Tensor::cat([a, b, …].into(), 1);`, where each part is
//! a routed convolution used only there, into
//!
//! ```text
//! let y_parts = crate::model::cpu::Concat::new([&self.conv_a, &self.conv_b, …]);
//! let a = y_parts.conv2d(0, &self.conv_a, x, Activation::Relu);
//! …
//! let y = y_parts.finish([a, b, …]);
//! ```

use std::cell::RefCell;

use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

use super::{Activation, conv2d};

/// A concatenation along channels of convolutions' outputs, written in place where the kernel
/// allows.
pub struct Concat {
    /// Each part's output channels (what a GPU's in-place concatenation is laid out by).
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    channels: Vec<usize>,
    /// Where the parts go: not yet chosen (`None`), or chosen at the first part.
    target: RefCell<Option<Target>>,
}

enum Target {
    /// The parts are tensors, concatenated by `cat` at the end.
    Cat,
    /// glassbox's tiled kernel writes them into one buffer.
    #[cfg(feature = "gpu")]
    InPlace(Box<crate::model::gpu::tiled::Concat>),
}

/// One part of a [`Concat`]: its output, to be copied into the concatenation, or nothing
/// where it was written there in place.
pub struct Part(Option<Tensor<4>>);

impl Part {
    /// Whether the part was written straight into the concatenation.
    pub fn is_written(&self) -> bool {
        self.0.is_none()
    }
}

impl Concat {
    /// A concatenation of the outputs of `convs`, in that order.
    pub fn new<const N: usize>(convs: [&Conv2d; N]) -> Self {
        Self {
            channels: convs.iter().map(|c| c.weight.val().dims()[0]).collect(),
            target: RefCell::new(None),
        }
    }

    /// Part `part`: `conv` then `activation` applied to `x`, as [`conv2d`] computes it.
    pub fn conv2d(&self, part: usize, conv: &Conv2d, x: Tensor<4>, activation: Activation) -> Part {
        let mut target = self.target.borrow_mut();
        let target = target.get_or_insert_with(|| self.target_for(conv, &x));
        #[cfg(feature = "gpu")]
        if let Target::InPlace(concat) = target
            && concat.conv2d(part, conv, &x, activation)
        {
            if crate::model::gpu::layer_checks_on() {
                let written = concat.part(part, self.channels[part]);
                crate::model::gpu::check_conv(&written, conv, &x, activation, ", in place");
            }
            return Part(None);
        }
        let _ = (part, target);
        Part(Some(conv2d(conv, x, activation)))
    }

    /// In place on a GPU on the tiled path, where the kernel runs the first part.
    fn target_for(&self, conv: &Conv2d, x: &Tensor<4>) -> Target {
        #[cfg(feature = "gpu")]
        {
            use crate::model::gpu::{self, ConvPath};
            if gpu::path() == ConvPath::Tiled
                && x.device() != burn::tensor::Device::flex()
                && let Some(concat) = gpu::tiled::Concat::new(conv, x, &self.channels)
            {
                return Target::InPlace(Box::new(concat));
            }
        }
        let _ = (conv, x);
        Target::Cat
    }

    /// The concatenation of `parts`.
    pub fn finish<const N: usize>(&self, parts: [Part; N]) -> Tensor<4> {
        let tensors = parts
            .into_iter()
            .enumerate()
            .filter_map(|(i, Part(y))| Some((i, y?)));
        match self.target.take() {
            #[cfg(feature = "gpu")]
            Some(Target::InPlace(concat)) => concat.finish(tensors),
            _ => Tensor::cat(tensors.map(|(_, y)| y).collect(), 1),
        }
    }
}
