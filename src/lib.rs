#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
// Nothing a user controls may panic the library: no unwrap or expect outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod attribution;
pub mod classify;
pub mod compare;
pub mod device;
mod error;
pub mod explain;
pub mod mask;
pub mod metrics;
pub mod model;
pub mod output;
pub mod perturb;
pub mod render;
mod rng;
pub mod segment;
pub mod study;
pub mod target;
pub mod view;

pub use classify::{Prediction, Probabilities};
pub use device::{Compute, DeviceRequest};
pub use error::{Error, Result};
pub use model::{Classifier, ModelInfo};
pub use target::Target;
pub use view::View;
