//! Measures of an explanation's quality, asked of the model rather than the eye.

pub mod faithfulness;
pub mod sanity;

pub use faithfulness::{
    Faithfulness, FaithfulnessCache, FaithfulnessOptions, auc, bands, faithfulness,
};
pub use sanity::{Sanity, SanityCheck, sanity_check, spearman};
