//! Measures of an explanation's quality, asked of the model rather than the eye.

pub mod faithfulness;

pub use faithfulness::{
    Faithfulness, FaithfulnessCache, FaithfulnessOptions, auc, bands, faithfulness,
};
