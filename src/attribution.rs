//! Any explanation in one form: its kept mask and a per-pixel importance over the model's input
//! view, which is what comparisons and faithfulness read. Each explainer converts its own
//! explanation (`From`), so this module depends on no explainer and metrics depend on no
//! explainer either.

use crate::mask::Mask;
use crate::perturb::Fill;

/// Any explanation in the form comparisons need.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// The method's short name.
    pub method: &'static str,
    /// The explained class.
    pub class: usize,
    /// Its probability on the unperturbed view.
    pub probability: f32,
    /// Kept (important) view pixels.
    pub kept: Mask,
    /// Per view pixel, how important it is by the explainer's own order (higher = more).
    pub importance: Vec<f32>,
    /// What the explainer hid parts with.
    pub fill: Fill,
    /// Variants the explainer classified.
    pub variants: usize,
    /// Seconds the explainer took (rendering excluded).
    pub seconds: f64,
}

impl Attribution {
    /// Fraction of the view kept.
    pub fn kept_fraction(&self) -> f64 {
        self.kept.kept_fraction()
    }
}
