//! Faithfulness by deletion and insertion (Petsiuk, Das, Saenko 2018, "RISE").
//!
//! Faithfulness asks the model, not the eye: hide the view's pixels in order of importance, most
//! important first, and watch `p[c*]` fall (deletion: a faithful explanation makes it fall fast,
//! so the area under the curve is small); or start from a blurred copy and reveal them in the
//! same order (insertion: it should rise fast, a large area). Pixels are taken in equal steps,
//! so explanations with different segmentations (a 10×10 grid, quickshift) are scored alike,
//! and every step of a curve is one variant of one batch through the [`Perturber`].

use std::time::Instant;

use serde_json::{Value, json};

use crate::attribution::Attribution;
use crate::model::Classifier;
use crate::perturb::{Fill, KeepMatrix, Perturber};
use crate::segment::Segmentation;
use crate::view::View;
use crate::{Error, Result};

/// How faithfulness is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaithfulnessOptions {
    /// Equal pixel steps per curve (each step one variant).
    pub steps: usize,
    /// Gaussian sigma, in view pixels, of insertion's blurred starting image.
    pub insertion_blur: f32,
}

impl Default for FaithfulnessOptions {
    fn default() -> Self {
        Self {
            steps: 20,
            insertion_blur: 5.0,
        }
    }
}

/// Deletion and insertion curves of one explanation and their areas.
#[derive(Debug, Clone, PartialEq)]
pub struct Faithfulness {
    /// `p[c*]` after hiding the first `t/steps` of the pixels, `t = 0..=steps`.
    pub deletion: Vec<f32>,
    /// `p[c*]` after revealing the first `t/steps` of the pixels over the blurred view.
    pub insertion: Vec<f32>,
    /// Area under the deletion curve over `[0, 1]` (lower = more faithful).
    pub deletion_auc: f64,
    /// Area under the insertion curve over `[0, 1]` (higher = more faithful).
    pub insertion_auc: f64,
    /// Variants classified for both curves.
    pub variants: usize,
    /// Seconds both curves took.
    pub seconds: f64,
}

impl Faithfulness {
    /// The document form.
    pub fn to_json(&self) -> Value {
        json!({
            "deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc,
            "deletion": self.deletion, "insertion": self.insertion,
            "steps": self.deletion.len().saturating_sub(1), "variants": self.variants, "seconds": self.seconds,
        })
    }
}

/// Trapezoidal area under `values` spaced evenly over `[0, 1]`.
pub fn auc(values: &[f32]) -> f64 {
    if values.len() < 2 {
        return values.first().map_or(0.0, |v| *v as f64);
    }
    let dx = 1.0 / (values.len() - 1) as f64;
    values
        .windows(2)
        .map(|w| (w[0] as f64 + w[1] as f64) * 0.5 * dx)
        .sum()
}

/// The order in which deletion and insertion take the view's pixels: step `t` takes the
/// pixels of band `t`. Pixels are sorted by importance, most important first (ties in raster
/// order), and cut into `steps` bands of equal size.
pub fn bands(importance: &[f32], width: u32, height: u32, steps: usize) -> Result<Segmentation> {
    let n = importance.len();
    if steps == 0 || steps > n {
        return Err(Error::InvalidArgument(format!(
            "faithfulness steps {steps} must be between 1 and the view's {n} pixels"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]));
    let mut labels = vec![0u32; n];
    for (position, &pixel) in order.iter().enumerate() {
        labels[pixel] = (position * steps / n) as u32;
    }
    Segmentation::from_labels(width, height, labels)
}

/// Deletion and insertion of `attribution` on `view`: `2 · steps` variants in two batches (the
/// unperturbed end of each curve is the explanation's own probability).
pub fn faithfulness(
    classifier: &Classifier,
    view: &View,
    attribution: &Attribution,
    options: &FaithfulnessOptions,
) -> Result<Faithfulness> {
    let t = Instant::now();
    let (w, h) = view.rgb.dimensions();
    if attribution.kept.size() != (w, h) || attribution.importance.len() != (w * h) as usize {
        return Err(Error::InvalidArgument(
            "the explanation does not match the view".into(),
        ));
    }
    if !(options.insertion_blur > 0.0 && options.insertion_blur.is_finite()) {
        return Err(Error::InvalidArgument(
            "the insertion blur must be positive".into(),
        ));
    }
    let steps = options.steps;
    let segmentation = bands(&attribution.importance, w, h, steps)?;
    let columns = [attribution.class];

    let mut keep = KeepMatrix::new(steps);
    for t in 1..=steps {
        keep.push_hiding(&(0..t).collect::<Vec<_>>());
    }
    let deleted = Perturber::new(classifier, &view.rgb, &segmentation, attribution.fill)?
        .run_columns(&keep, Some(&columns))?;
    let mut deletion = vec![attribution.probability];
    deletion.extend((0..steps).map(|r| deleted.row(r)[0]));

    let mut keep = KeepMatrix::new(steps);
    for t in 0..steps {
        keep.push_hiding(&(t..steps).collect::<Vec<_>>());
    }
    let inserted = Perturber::new(
        classifier,
        &view.rgb,
        &segmentation,
        Fill::Blur(options.insertion_blur),
    )?
    .run_columns(&keep, Some(&columns))?;
    let mut insertion: Vec<f32> = (0..steps).map(|r| inserted.row(r)[0]).collect();
    insertion.push(attribution.probability);

    Ok(Faithfulness {
        deletion_auc: auc(&deletion),
        insertion_auc: auc(&insertion),
        deletion,
        insertion,
        variants: 2 * steps,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// Faithfulness already measured on one view, by class, fill and pixel order: rules that rank
/// the cells identically (arbitrary, statistical and elbow read the same ranking) share their
/// curves instead of classifying them again.
#[derive(Debug, Clone, Default)]
pub struct FaithfulnessCache {
    entries: Vec<(usize, Fill, Vec<f32>, FaithfulnessOptions, Faithfulness)>,
}

impl FaithfulnessCache {
    /// [`faithfulness`], or the curves of an earlier explanation of this view with the same
    /// class, fill, options and importance (then `seconds` is the time they took then).
    pub fn measure(
        &mut self,
        classifier: &Classifier,
        view: &View,
        attribution: &Attribution,
        options: &FaithfulnessOptions,
    ) -> Result<Faithfulness> {
        let found = self.entries.iter().find(|(class, fill, importance, o, _)| {
            *class == attribution.class
                && *fill == attribution.fill
                && o == options
                && *importance == attribution.importance
        });
        if let Some((.., f)) = found {
            return Ok(f.clone());
        }
        let f = faithfulness(classifier, view, attribution, options)?;
        self.entries.push((
            attribution.class,
            attribution.fill,
            attribution.importance.clone(),
            *options,
            f.clone(),
        ));
        Ok(f)
    }
}
