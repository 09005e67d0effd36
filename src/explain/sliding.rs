//! Sliding-window occlusion, as Captum's `Occlusion` computes it: a `window × window` square of
//! the fill moves over the view in steps of `stride`, and each pixel's attribution is the mean
//! drop of `p(class)` over the windows that cover it.
//!
//! Window positions follow Captum: along an axis of `D` pixels the windows start at
//! `0, S, 2S, …, ⌈(D − W) / S⌉ · S`, and a window that passes the right or bottom edge is cut
//! there (Captum pads its window tensor with a negative amount). With a stride larger than the
//! window some pixels lie under no window: their attribution is 0, and the explanation says how
//! many there are.
//!
//! Every window is one rectangle, so the variants run by incremental inference on the CPU
//! ([`crate::model::incremental`]): small, numerous patches are where it saves most.

use std::time::Instant;

use serde_json::{Value, json};

use super::occlusion::Inference;
use super::rise::top_pixels;
use crate::attribution::Attribution;
use crate::mask::Mask;
use crate::model::Classifier;
use crate::perturb::{Fill, Perturber};
use crate::segment::{Rect, Segmentation};
use crate::view::View;
use crate::{Error, Result};

/// Sliding-window occlusion's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingOptions {
    /// Side of the square window, in view pixels.
    pub window: u32,
    /// Step between windows, in view pixels.
    pub stride: u32,
    /// What the window hides the view with.
    pub fill: Fill,
    /// Fraction of the view's pixels, highest attribution first, in the kept mask.
    pub keep_fraction: f64,
    /// Explain this class instead of the top one.
    pub class: Option<usize>,
    /// Classify the variants by incremental inference where the classifier can.
    pub incremental: bool,
}

impl Default for SlidingOptions {
    fn default() -> Self {
        Self {
            window: 32,
            stride: 16,
            fill: Fill::Black,
            keep_fraction: 0.3,
            class: None,
            incremental: true,
        }
    }
}

impl SlidingOptions {
    /// Checks the options against a `width × height` view.
    ///
    /// # Errors
    /// A window or stride of 0 or larger than the view, or `keep_fraction` outside [0, 1].
    pub fn validate(&self, width: u32, height: u32) -> Result<()> {
        let side = width.min(height);
        for (flag, value) in [("--window", self.window), ("--stride", self.stride)] {
            if value == 0 || value > side {
                return Err(Error::InvalidArgument(format!(
                    "{flag} {value} must be between 1 and the view's {side} pixels"
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.keep_fraction) {
            return Err(Error::InvalidArgument(format!(
                "--keep-fraction {} must be between 0 and 1",
                self.keep_fraction
            )));
        }
        Ok(())
    }
}

/// The windows over a `width × height` view, row by row, cut at the right and bottom edges.
pub fn windows(width: u32, height: u32, window: u32, stride: u32) -> Vec<Rect> {
    let starts = |size: u32| {
        let count = size.saturating_sub(window).div_ceil(stride.max(1)) + 1;
        (0..count)
            .map(move |i| i * stride)
            .filter(move |&s| s < size)
    };
    starts(height)
        .flat_map(|y| {
            starts(width).map(move |x| Rect {
                x,
                y,
                w: window.min(width - x),
                h: window.min(height - y),
            })
        })
        .collect()
}

/// Seconds per stage.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SlidingTimings {
    /// Uploading the view and the fill.
    pub preprocess: f64,
    /// Classifying the unoccluded view and every window's variant.
    pub classify: f64,
    /// Averaging the drops and choosing the kept pixels.
    pub attribute: f64,
    /// Drawing the outputs (filled in by the caller).
    pub render: f64,
}

impl SlidingTimings {
    /// Seconds of the explanation itself (rendering excluded).
    pub fn total(&self) -> f64 {
        self.preprocess + self.classify + self.attribute
    }
}

/// A sliding-window occlusion explanation of one view.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingExplanation {
    /// The options used.
    pub options: SlidingOptions,
    /// The explained class.
    pub class: usize,
    /// Its probability on the unoccluded view.
    pub probability: f32,
    /// Probabilities of every class on the unoccluded view.
    pub original: Vec<f32>,
    /// The windows, row by row.
    pub windows: Vec<Rect>,
    /// `p(class)` with each window hidden.
    pub p: Vec<f32>,
    /// Per view pixel (row-major), the mean drop of `p(class)` over the windows covering it
    /// (0 under no window).
    pub attribution: Vec<f32>,
    /// Pixels under no window.
    pub uncovered: usize,
    /// The `keep_fraction` of the view's pixels of highest attribution (ties by pixel index).
    pub kept: Mask,
    /// How the variants were classified.
    pub inference: Inference,
    /// Whether the classifier could run incremental inference.
    pub incremental_possible: bool,
    /// Time per stage.
    pub timings: SlidingTimings,
}

impl SlidingExplanation {
    /// The attribution's minimum, maximum and mean.
    pub fn summary(&self) -> (f32, f32, f64) {
        let a = &self.attribution;
        let min = a.iter().copied().fold(f32::INFINITY, f32::min);
        let max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mean = a.iter().map(|v| *v as f64).sum::<f64>() / a.len().max(1) as f64;
        (min, max, mean)
    }

    /// Things the user should know.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.uncovered > 0 {
            notes.push(format!(
                "{} pixels lie under no window (--stride {} > --window {}); their attribution is 0",
                self.uncovered, self.options.stride, self.options.window
            ));
        }
        notes
    }

    /// The machine-readable document.
    pub fn to_json(&self, label: impl Fn(usize) -> Option<&'static str>) -> Value {
        let o = &self.options;
        let (min, max, mean) = self.summary();
        let t = self.timings;
        let windows: Vec<Value> = self
            .windows
            .iter()
            .zip(&self.p)
            .map(|(r, p)| json!({ "x": r.x, "y": r.y, "w": r.w, "h": r.h, "p": p }))
            .collect();
        json!({
            "method": "sliding",
            "parameters": {
                "window": o.window, "stride": o.stride, "fill": o.fill.name(),
                "keep_fraction": o.keep_fraction,
            },
            "class": { "index": self.class, "label": label(self.class), "probability": self.probability },
            "attribution": {
                "min": min, "max": max, "mean": mean,
                "definition": "per pixel, the mean over the windows covering it of p(class | view) - p(class | window hidden); 0 under no window",
                "uncovered_pixels": self.uncovered,
            },
            "windows": windows,
            "variants": self.windows.len() + 1,
            "kept_fraction": self.kept.kept_fraction(),
            "mask": { "width": self.kept.width(), "height": self.kept.height(), "encoding": "run lengths over row-major view pixels, alternating blacked-out/kept, starting with blacked-out", "runs": self.kept.runs() },
            "inference": self.inference.to_json(self.incremental_possible),
            "notes": self.notes(),
            "timings_s": { "preprocess": t.preprocess, "classify": t.classify, "attribute": t.attribute, "render": t.render },
        })
    }
}

impl From<&SlidingExplanation> for Attribution {
    /// Importance is the attribution.
    fn from(e: &SlidingExplanation) -> Self {
        Self {
            method: "sliding",
            class: e.class,
            probability: e.probability,
            kept: e.kept.clone(),
            importance: e.attribution.clone(),
            fill: e.options.fill,
            variants: e.windows.len() + 1,
            seconds: e.timings.total(),
        }
    }
}

/// Explains `view` by sliding-window occlusion.
///
/// # Errors
/// Invalid options, an unknown class, or a failing device or model.
pub fn sliding(
    classifier: &Classifier,
    view: &View,
    options: &SlidingOptions,
) -> Result<SlidingExplanation> {
    sliding_given(classifier, view, options, None)
}

/// As [`sliding`], with the view's unoccluded probabilities `base` (all classes) already known.
///
/// # Errors
/// As [`sliding`].
pub fn sliding_given(
    classifier: &Classifier,
    view: &View,
    options: &SlidingOptions,
    base: Option<&[f32]>,
) -> Result<SlidingExplanation> {
    let (w, h) = view.rgb.dimensions();
    options.validate(w, h)?;
    classifier.check_class(options.class)?;
    let classes = classifier.outputs();
    let mut timings = SlidingTimings::default();
    let t = Instant::now();
    // One segment, the whole view: a mean fill is the view's mean colour.
    let whole = Segmentation::grid(w, h, 1)?;
    let perturber = Perturber::new(classifier, &view.rgb, &whole, options.fill)?
        .with_incremental(options.incremental);
    timings.preprocess = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let windows = windows(w, h, options.window, options.stride);
    let mut rects: Vec<Option<Rect>> = Vec::with_capacity(windows.len() + 1);
    if base.is_none() {
        rects.push(None);
    }
    rects.extend(windows.iter().copied().map(Some));
    let probabilities = perturber.run_rects(&rects, None)?;
    let (first, rows) = match base {
        Some(base) if base.len() == classes => (base.to_vec(), 0),
        Some(base) => {
            return Err(Error::InvalidArgument(format!(
                "a base prediction of {} classes for a model of {classes}",
                base.len()
            )));
        }
        None => (probabilities.row(0).to_vec(), 1),
    };
    timings.classify = t.elapsed().as_secs_f64();
    let inference = Inference::of(&perturber, options.incremental, rects.len());

    let t = Instant::now();
    // The top class, lowest index on ties.
    let class = options.class.unwrap_or_else(|| {
        (0..first.len()).fold(0, |best, c| if first[c] > first[best] { c } else { best })
    });
    let p: Vec<f32> = (0..windows.len())
        .map(|i| probabilities.row(rows + i)[class])
        .collect();
    let (wu, hu) = (w as usize, h as usize);
    let mut sum = vec![0f64; wu * hu];
    let mut count = vec![0u32; wu * hu];
    for (r, &p) in windows.iter().zip(&p) {
        let drop = first[class] as f64 - p as f64;
        for y in r.y as usize..(r.y + r.h) as usize {
            for x in r.x as usize..(r.x + r.w) as usize {
                sum[y * wu + x] += drop;
                count[y * wu + x] += 1;
            }
        }
    }
    let uncovered = count.iter().filter(|c| **c == 0).count();
    let attribution: Vec<f32> = sum
        .iter()
        .zip(&count)
        .map(|(s, c)| if *c == 0 { 0.0 } else { (s / *c as f64) as f32 })
        .collect();
    let kept = top_pixels(&attribution, options.keep_fraction, w, h)?;
    timings.attribute = t.elapsed().as_secs_f64();
    Ok(SlidingExplanation {
        options: *options,
        class,
        probability: first[class],
        original: first,
        windows,
        p,
        attribution,
        uncovered,
        kept,
        inference,
        incremental_possible: classifier.incremental(),
        timings,
    })
}
