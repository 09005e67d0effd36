//! The model-randomisation sanity check (Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim,
//! NeurIPS 2018, "Sanity Checks for Saliency Maps"): explain the same view with the model and
//! with its randomised twin (the same network under synthetic weights, see
//! [`Classifier::load_weights`]), for the same class, and measure how alike the two
//! explanations are. An explainer that explains the model shows a low rank correlation; one
//! that mostly reflects the image (edges, segments) shows a high one whatever the weights.

use serde_json::{Value, json};

use crate::attribution::Attribution;
use crate::explain::{self, Explained, Explainer, ViewCache};
use crate::model::{Classifier, Weights};
use crate::view::View;
use crate::{Error, Result};

/// How alike the model's and its twin's explanations are.
#[derive(Debug, Clone, PartialEq)]
pub struct Sanity {
    /// Spearman's rank correlation of the two per-pixel importances (1: same order).
    pub correlation: f64,
    /// The Jaccard index of the two kept masks.
    pub jaccard: f64,
}

impl Sanity {
    /// The document form.
    pub fn to_json(&self) -> Value {
        json!({ "spearman": self.correlation, "jaccard": self.jaccard })
    }
}

/// Both explanations and how alike they are.
#[derive(Debug, Clone)]
pub struct SanityCheck {
    /// The model's explanation.
    pub model: Explained,
    /// The twin's explanation of the same class.
    pub twin: Explained,
    /// How alike they are.
    pub sanity: Sanity,
}

/// Explains `view` with `model` and with `twin` (its randomised twin: see
/// [`Classifier::load_weights`]), the twin for the class the model's explanation explained.
///
/// # Errors
/// When `twin` is not the randomised twin of `model`'s network, or an explanation fails.
pub fn sanity_check(
    model: &Classifier,
    twin: &Classifier,
    view: &View,
    explainer: &Explainer,
) -> Result<SanityCheck> {
    if model.info().id() != twin.info().id() || twin.weights() != Weights::Randomised {
        return Err(Error::InvalidArgument(format!(
            "the sanity check needs '{}' and its randomised twin",
            model.info().id()
        )));
    }
    let real = explain::run(model, view, explainer, &mut ViewCache::default())?;
    let same_class = explainer.for_class(real.class());
    let randomised = explain::run(twin, view, &same_class, &mut ViewCache::default())?;
    let sanity = similarity(&real.attribution(), &randomised.attribution())?;
    Ok(SanityCheck {
        model: real,
        twin: randomised,
        sanity,
    })
}

/// How alike two explanations of one view are.
///
/// # Errors
/// When they cover different views.
pub fn similarity(a: &Attribution, b: &Attribution) -> Result<Sanity> {
    Ok(Sanity {
        correlation: spearman(&a.importance, &b.importance)?,
        jaccard: a.kept.jaccard(&b.kept)?,
    })
}

/// Spearman's rank correlation: Pearson's correlation of the two rankings, tied values sharing
/// their average rank (as `scipy.stats.spearmanr` ranks them). 0 when either side is constant.
///
/// # Errors
/// When the two have different lengths.
pub fn spearman(a: &[f32], b: &[f32]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(Error::InvalidArgument(format!(
            "rank correlation of {} and {} values",
            a.len(),
            b.len()
        )));
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    Ok(if va > 0.0 && vb > 0.0 {
        cov / (va * vb).sqrt()
    } else {
        0.0
    })
}

/// 1-based ranks, ties sharing their average rank.
fn ranks(values: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]).then(i.cmp(&j)));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold one value: ranks start+1 ..= end, averaged.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}
