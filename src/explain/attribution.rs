//! Any explanation in one form: its kept mask and a per-pixel importance over the model's input
//! view, which is what comparisons and faithfulness read.

use super::Explanation;
use super::lime::LimeExplanation;
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

impl From<&Explanation> for Attribution {
    /// Importance follows the rule's ranking: a later phase's cells (double division's kept
    /// cells, split) rank above every cell of an earlier phase, and within a phase the ranking
    /// (least important first) gives the order.
    fn from(e: &Explanation) -> Self {
        let (w, h) = e.kept.size();
        let mut importance = vec![0.0f32; (w * h) as usize];
        let mut base = 0.0f32;
        for phase in &e.phases {
            for (position, &cell) in phase.ranking.iter().enumerate() {
                phase.cells[cell].fill(&mut importance, w, base + position as f32);
            }
            base += phase.ranking.len() as f32;
        }
        let t = e.timings;
        Self {
            method: e.method.name(),
            class: e.class,
            probability: e.probability,
            kept: e.kept.clone(),
            importance,
            fill: e.options.fill,
            variants: e.variants,
            seconds: t.preprocess + t.perturb_classify + t.rule,
        }
    }
}

impl From<&LimeExplanation> for Attribution {
    /// Importance is the weight of the pixel's segment in the explained class's local model.
    fn from(e: &LimeExplanation) -> Self {
        let probability = e
            .models
            .iter()
            .zip(&e.probabilities)
            .find(|(m, _)| m.class == e.class)
            .map_or(f32::NAN, |(_, p)| *p);
        let t = e.timings;
        Self {
            method: "lime",
            class: e.class,
            probability,
            kept: e.kept.clone(),
            importance: e.weight_map(e.class),
            fill: e.options.fill,
            variants: e.options.samples,
            seconds: t.segmentation + t.perturb_classify + t.regression,
        }
    }
}
