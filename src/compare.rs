//! Comparing explanations: any explainer reduced to a common form (a kept mask and a per-pixel
//! importance over the model's input view), the Jaccard index of two masks, and faithfulness by
//! deletion and insertion (Petsiuk, Das, Saenko 2018, "RISE").
//!
//! Faithfulness asks the model, not the eye: hide the view's pixels in order of importance, most
//! important first, and watch `p[c*]` fall (deletion: a faithful explanation makes it fall fast,
//! so the area under the curve is small); or start from a blurred copy and reveal them in the
//! same order (insertion: it should rise fast, a large area). Pixels are taken in equal steps,
//! so explanations with different segmentations (a 10×10 grid, quickshift) are scored alike,
//! and every step of a curve is one variant of one batch through the [`Perturber`].

use std::time::Instant;

use serde_json::{Value, json};

use crate::explain::lime::{LimeExplanation, LimeOptions, Segmenter, lime_given};
use crate::explain::{
    CellScores, Explanation, Method, OcclusionOptions, cell_scores_given, first_grid,
    occlusion_from,
};
use crate::model::Classifier;
use crate::perturb::{Fill, KeepMatrix, Perturber};
use crate::segment::Segmentation;
use crate::view::View;
use crate::{Error, Result};

/// An explainer and all its parameters: one of the occlusion rules, or LIME.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Explainer {
    /// An occlusion rule.
    Occlusion {
        /// The rule.
        method: Method,
        /// Grid, fill and class.
        options: OcclusionOptions,
    },
    /// LIME.
    Lime(LimeOptions),
}

impl Explainer {
    /// The method's short name (`arbitrary`, …, `lime`).
    pub fn name(&self) -> &'static str {
        match self {
            Explainer::Occlusion { method, .. } => method.name(),
            Explainer::Lime(_) => "lime",
        }
    }

    /// Every parameter, for records that must say exactly what ran.
    pub fn describe(&self) -> Value {
        match self {
            Explainer::Occlusion { method, options } => {
                let parameter = match *method {
                    Method::Arbitrary { fraction } => json!({ "keep_fraction": fraction }),
                    Method::Statistical { k }
                    | Method::DoubleDivision { k }
                    | Method::Elbow { k } => json!({ "k": k }),
                };
                json!({ "method": method.name(), "parameters": parameter, "grid": first_grid(method, options),
                        "fill": fill_name(options.fill), "class": options.class })
            }
            Explainer::Lime(o) => {
                let segments = match o.segmenter {
                    Segmenter::Quickshift(_) => "quickshift".to_string(),
                    Segmenter::Slic(s) => format!("slic:{}", s.segments),
                    Segmenter::Grid(g) => format!("grid:{g}"),
                };
                json!({ "method": "lime", "samples": o.samples, "seed": o.seed, "segments": segments,
                        "fill": fill_name(o.fill), "features": o.features, "class": o.class })
            }
        }
    }

    /// The fill of hidden parts (also deletion's target).
    pub fn fill(&self) -> Fill {
        match self {
            Explainer::Occlusion { options, .. } => options.fill,
            Explainer::Lime(o) => o.fill,
        }
    }
}

/// A fill's name as the command line spells it.
pub fn fill_name(fill: Fill) -> String {
    match fill {
        Fill::Black => "black".into(),
        Fill::Grey => "grey".into(),
        Fill::Mean => "mean".into(),
        Fill::Blur(s) => format!("blur:{s}"),
    }
}

/// Any explanation in the form comparisons need.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// The method's short name.
    pub method: &'static str,
    /// The explained class.
    pub class: usize,
    /// Its probability on the unperturbed view.
    pub probability: f32,
    /// View size.
    pub size: (u32, u32),
    /// Kept (important) view pixels, row-major.
    pub kept: Vec<bool>,
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
        kept_fraction(&self.kept)
    }
}

impl From<&Explanation> for Attribution {
    /// Importance follows the rule's ranking: a later phase's cells (double division's kept
    /// cells, split) rank above every cell of an earlier phase, and within a phase the ranking
    /// (least important first) gives the order.
    fn from(e: &Explanation) -> Self {
        let (w, h) = e.size;
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
            size: e.size,
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
            size: (e.segmentation.width(), e.segmentation.height()),
            kept: e.kept.clone(),
            importance: e.weight_map(e.class),
            fill: e.options.fill,
            variants: e.options.samples,
            seconds: t.segmentation + t.perturb_classify + t.regression,
        }
    }
}

/// What explanations of one view share, so that nothing is classified twice: the view's own
/// prediction, the single-cell occlusion scores of each grid and fill, and the faithfulness
/// curves of each pixel order.
#[derive(Debug, Clone, Default)]
pub struct ViewCache {
    base: Option<Vec<f32>>,
    scores: Vec<CellScores>,
    /// Faithfulness curves measured on the view.
    pub curves: FaithfulnessCache,
}

impl ViewCache {
    /// The view's unperturbed probabilities, once an explainer has computed them.
    pub fn base(&self) -> Option<&[f32]> {
        self.base.as_deref()
    }

    /// How many sets of single-cell occlusion scores are held, by grid.
    pub fn grids(&self) -> Vec<u32> {
        self.scores.iter().map(|s| s.grid).collect()
    }
}

/// Runs `explainer` on `view`, reusing and filling `cache`: occlusion rules of one grid and fill
/// read one set of single-cell scores, and the view's prediction is classified once.
pub fn run(
    classifier: &Classifier,
    view: &View,
    explainer: &Explainer,
    cache: &mut ViewCache,
) -> Result<Attribution> {
    match explainer {
        Explainer::Occlusion { method, options } => {
            let g = first_grid(method, options);
            let found = cache
                .scores
                .iter()
                .position(|s| s.grid == g && s.fill == options.fill);
            let index = match found {
                Some(i) => i,
                None => {
                    let scores =
                        cell_scores_given(classifier, view, g, options.fill, cache.base())?;
                    cache.base = Some(scores.probabilities.row(0).to_vec());
                    cache.scores.push(scores);
                    cache.scores.len() - 1
                }
            };
            let e = occlusion_from(classifier, view, &cache.scores[index], *method, options)?;
            Ok(Attribution::from(&e))
        }
        Explainer::Lime(options) => {
            let e = lime_given(classifier, view, options, cache.base())?;
            if cache.base.is_none() {
                cache.base = Some(e.original.clone());
            }
            Ok(Attribution::from(&e))
        }
    }
}

/// Fraction of a mask's pixels that are kept.
pub fn kept_fraction(kept: &[bool]) -> f64 {
    kept.iter().filter(|k| **k).count() as f64 / kept.len().max(1) as f64
}

/// A mask as run lengths over its row-major pixels, alternating not-kept/kept and starting with
/// not-kept (that first run may be empty): the compact form explanation documents carry.
pub fn mask_runs(kept: &[bool]) -> Vec<usize> {
    let mut runs = Vec::new();
    let (mut current, mut len) = (false, 0usize);
    for &k in kept {
        if k == current {
            len += 1;
        } else {
            runs.push(len);
            current = k;
            len = 1;
        }
    }
    runs.push(len);
    runs
}

/// The mask of [`mask_runs`], decoded.
pub fn mask_from_runs(runs: &[usize]) -> Vec<bool> {
    let mut kept = Vec::with_capacity(runs.iter().sum());
    for (i, run) in runs.iter().enumerate() {
        kept.extend(std::iter::repeat_n(i % 2 == 1, *run));
    }
    kept
}

/// The Jaccard index of two masks over the same pixels, `|A ∩ B| / |A ∪ B|`; 1 when both are
/// empty.
pub fn jaccard(a: &[bool], b: &[bool]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(Error::InvalidArgument(format!(
            "masks of {} and {} pixels cannot be compared",
            a.len(),
            b.len()
        )));
    }
    let (mut inter, mut union) = (0usize, 0usize);
    for (x, y) in a.iter().zip(b) {
        inter += (*x && *y) as usize;
        union += (*x || *y) as usize;
    }
    Ok(if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    })
}

/// The Jaccard index of two masks given over two views of one photo (two models may resize and
/// crop differently). Views of the same geometry are compared pixel for pixel; otherwise both
/// masks are read back onto the photo (sampled at most 512 px along its longer side) over the
/// region both models saw.
pub fn jaccard_views(a: &View, kept_a: &[bool], b: &View, kept_b: &[bool]) -> Result<f64> {
    let same = a.rgb.dimensions() == b.rgb.dimensions()
        && a.photo_size == b.photo_size
        && a.crop == b.crop;
    if same {
        return jaccard(kept_a, kept_b);
    }
    if a.photo_size != b.photo_size {
        return Err(Error::InvalidArgument(
            "the two views come from different photos".into(),
        ));
    }
    let check = |v: &View, k: &[bool]| {
        if k.len() == (v.rgb.width() * v.rgb.height()) as usize {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "a mask does not match its view".into(),
            ))
        }
    };
    check(a, kept_a)?;
    check(b, kept_b)?;
    let (pw, ph) = a.photo_size;
    let step = pw.max(ph).div_ceil(512).max(1) as usize;
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for y in (0..ph).step_by(step) {
        for x in (0..pw).step_by(step) {
            if let (Some((ax, ay)), Some((bx, by))) = (a.view_pixel(x, y), b.view_pixel(x, y)) {
                sa.push(kept_a[(ay * a.rgb.width() + ax) as usize]);
                sb.push(kept_b[(by * b.rgb.width() + bx) as usize]);
            }
        }
    }
    jaccard(&sa, &sb)
}

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
    if attribution.size != (w, h) || attribution.importance.len() != (w * h) as usize {
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
