//! RISE (Petsiuk, Das, Saenko, BMVC 2018, "RISE: Randomized Input Sampling for Explanation of
//! Black-box Models"): the saliency of a pixel is the model's expected probability of the
//! explained class under random smooth masks that keep the pixel,
//!
//! `S = Σₙ p_c(view ⊙ Mₙ + fill ⊙ (1 − Mₙ)) · Mₙ / (N · keep_prob)`.
//!
//! The masks are the paper's: binary `cells × cells` grids (each cell kept with `keep_prob`),
//! upsampled bilinearly to `(cells + 1) · ⌈view / cells⌉` and cropped at a random shift. Only
//! the grids and shifts exist on the host; every chunk's masks and variants are built on the
//! device ([`Perturber::run_soft`]). The sum is folded in chunk by chunk on the host in f64
//! ([`SaliencySum`]), from the probabilities that come back anyway and the small grids: since
//! bilinear upsampling is separable, `Σ pₙ Mₙ` is accumulated per row shift as `cells × W`
//! sums and expanded to the view once at the end. Nothing is downloaded per mask, memory does
//! not grow with N, and the result does not depend on the chunk size.
//!
//! Reproducibility: `seed` seeds a Mersenne Twister as numpy's `RandomState(seed)`, consumed as
//! the paper's reference `generate_masks` consumes `np.random` after `np.random.seed(seed)`
//! (all grid uniforms first, then each mask's row and column shift), so a seed gives the
//! reference code's own masks (`tests/data/make_rise_fixture.py`).

use std::time::Instant;

use serde_json::{Value, json};

use super::lime::Mt19937;
use crate::attribution::Attribution;
use crate::mask::Mask;
use crate::model::Classifier;
use crate::perturb::{Fill, KeepMatrix, Perturber, SoftMasks, Taps};
use crate::segment::Segmentation;
use crate::view::View;
use crate::{Error, Result};

/// RISE's options (the paper's ImageNet settings: 4000 masks of 7×7 cells, p = 0.5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiseOptions {
    /// Number of random masks N.
    pub masks: usize,
    /// Cells per side of each mask's binary grid.
    pub cells: u32,
    /// Probability that a grid cell is kept.
    pub keep_prob: f64,
    /// Seed of the masks (numpy `RandomState` compatible).
    pub seed: u32,
    /// What masked-out parts become.
    pub fill: Fill,
    /// Fraction of the view's pixels, most salient first, in the kept mask.
    pub keep_fraction: f64,
    /// Explain this class instead of the top one.
    pub class: Option<usize>,
}

impl Default for RiseOptions {
    fn default() -> Self {
        Self {
            masks: 4000,
            cells: 7,
            keep_prob: 0.5,
            seed: 0,
            fill: Fill::Black,
            keep_fraction: 0.3,
            class: None,
        }
    }
}

impl RiseOptions {
    /// Checks the options against a `width × height` view.
    ///
    /// # Errors
    /// `masks` 0, `cells` 0 or larger than the view, `keep_prob` outside (0, 1), or
    /// `keep_fraction` outside [0, 1].
    pub fn validate(&self, width: u32, height: u32) -> Result<()> {
        let bad = Error::InvalidArgument;
        if self.masks == 0 {
            return Err(bad("--masks must be at least 1".into()));
        }
        let side = width.min(height);
        if self.cells == 0 || self.cells > side {
            return Err(bad(format!(
                "--cells {} must be between 1 and the view's {side} pixels",
                self.cells
            )));
        }
        if !(self.keep_prob > 0.0 && self.keep_prob < 1.0) {
            return Err(bad(format!(
                "--keep-prob {} must be strictly between 0 and 1",
                self.keep_prob
            )));
        }
        if !(0.0..=1.0).contains(&self.keep_fraction) {
            return Err(bad(format!(
                "--keep-fraction {} must be between 0 and 1",
                self.keep_fraction
            )));
        }
        Ok(())
    }
}

/// Seconds per stage.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RiseTimings {
    /// Drawing the grids and shifts.
    pub draw: f64,
    /// Building every chunk's masks and variants on the device (on a GPU, queuing them).
    pub masks: f64,
    /// Classifying the variants: the forward passes and their transfers.
    pub classify: f64,
    /// Folding each chunk's probabilities into the running sum.
    pub accumulate: f64,
    /// Expanding the sum to the view and choosing the kept pixels.
    pub saliency: f64,
    /// Drawing the outputs (filled in by the caller).
    pub render: f64,
}

impl RiseTimings {
    /// Seconds of the explanation itself (rendering excluded).
    pub fn total(&self) -> f64 {
        self.draw + self.masks + self.classify + self.accumulate + self.saliency
    }
}

/// A RISE explanation of one view.
#[derive(Debug, Clone, PartialEq)]
pub struct RiseExplanation {
    /// The options used.
    pub options: RiseOptions,
    /// The explained class.
    pub class: usize,
    /// Its probability on the unmasked view.
    pub probability: f32,
    /// Probabilities of every class on the unmasked view.
    pub original: Vec<f32>,
    /// Per view pixel (row-major), the saliency of `class`.
    pub saliency: Vec<f32>,
    /// The most salient `keep_fraction` of the view's pixels (ties by pixel index).
    pub kept: Mask,
    /// Time per stage.
    pub timings: RiseTimings,
}

impl RiseExplanation {
    /// The saliency's minimum, maximum and mean.
    pub fn summary(&self) -> (f32, f32, f64) {
        let min = self.saliency.iter().copied().fold(f32::INFINITY, f32::min);
        let max = self
            .saliency
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let mean = self.saliency.iter().map(|v| *v as f64).sum::<f64>()
            / self.saliency.len().max(1) as f64;
        (min, max, mean)
    }

    /// The machine-readable document.
    pub fn to_json(&self, label: impl Fn(usize) -> Option<&'static str>) -> Value {
        let o = &self.options;
        let (min, max, mean) = self.summary();
        let t = self.timings;
        json!({
            "method": "rise",
            "parameters": {
                "masks": o.masks, "cells": o.cells, "keep_prob": o.keep_prob, "seed": o.seed,
                "keep_fraction": o.keep_fraction, "fill": o.fill.name(),
            },
            "class": { "index": self.class, "label": label(self.class), "probability": self.probability },
            "saliency": {
                "min": min, "max": max, "mean": mean,
                "definition": "sum over masks of p(class | view masked) * mask, divided by masks * keep_prob",
            },
            "variants": o.masks,
            "kept_fraction": self.kept.kept_fraction(),
            "mask": { "width": self.kept.width(), "height": self.kept.height(), "encoding": "run lengths over row-major view pixels, alternating blacked-out/kept, starting with blacked-out", "runs": self.kept.runs() },
            "timings_s": { "draw": t.draw, "masks": t.masks, "classify": t.classify, "accumulate": t.accumulate, "saliency": t.saliency, "render": t.render },
        })
    }
}

impl From<&RiseExplanation> for Attribution {
    /// Importance is the saliency.
    fn from(e: &RiseExplanation) -> Self {
        Self {
            method: "rise",
            class: e.class,
            probability: e.probability,
            kept: e.kept.clone(),
            importance: e.saliency.clone(),
            fill: e.options.fill,
            variants: e.options.masks,
            seconds: e.timings.total(),
        }
    }
}

/// numpy's legacy `random_sample`: a double in `[0, 1)` from two 32-bit outputs.
fn uniform(rng: &mut Mt19937) -> f64 {
    let a = (rng.next_u32() >> 5) as f64;
    let b = (rng.next_u32() >> 6) as f64;
    (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
}

/// The masks of `options` for a `width × height` view, as the reference code draws them after
/// `np.random.seed(seed)`: `rand(N, cells, cells) < keep_prob`, then per mask
/// `randint(0, cell_h)` and `randint(0, cell_w)`.
///
/// # Errors
/// As [`RiseOptions::validate`].
pub fn draw_masks(options: &RiseOptions, width: u32, height: u32) -> Result<SoftMasks> {
    options.validate(width, height)?;
    let s = options.cells as usize;
    let mut rng = Mt19937::new(options.seed);
    let grids: Vec<f32> = (0..options.masks * s * s)
        .map(|_| {
            if uniform(&mut rng) < options.keep_prob {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let cell = [(height as usize).div_ceil(s), (width as usize).div_ceil(s)];
    let shifts = (0..options.masks)
        .map(|_| {
            let row = rng.bounded(cell[0] as u32 - 1) as usize;
            let column = rng.bounded(cell[1] as u32 - 1) as usize;
            [row, column]
        })
        .collect();
    SoftMasks::new(s, width, height, grids, shifts)
}

/// The running `Σₙ pₙ · Mₙ` of a set of soft masks, in f64, without any mask at full size:
/// mask `n` is `R[a + y] · Gₙ · C[b + x]ᵀ` (row taps `R`, column taps `C`, shift `(a, b)`), so
/// the sum keeps, per row shift `a`, the `cells × W` sum of `pₙ · Gₙ · C[b..]ᵀ` and applies
/// `R` once per row shift at the end.
#[derive(Debug, Clone)]
pub struct SaliencySum {
    cells: usize,
    height: usize,
    width: usize,
    rows: Vec<Taps>,
    cols: Vec<Taps>,
    buckets: Vec<Option<Vec<f64>>>,
    added: usize,
}

impl SaliencySum {
    /// An empty sum over `masks`' geometry.
    pub fn new(masks: &SoftMasks) -> Self {
        let (width, height) = masks.size();
        Self {
            cells: masks.cells(),
            height,
            width,
            rows: masks.taps(0),
            cols: masks.taps(1),
            buckets: vec![None; masks.cell()[0]],
            added: 0,
        }
    }

    /// Adds `p · M_i`, mask `i` of `masks` (the masks the sum was made for).
    pub fn add(&mut self, masks: &SoftMasks, i: usize, p: f64) {
        let (s, w) = (self.cells, self.width);
        let [a, b] = masks.shift(i);
        let grid = masks.grid(i);
        let bucket = self.buckets[a].get_or_insert_with(|| vec![0.0; s * w]);
        for (x, [(j0, w0), (j1, w1)]) in self.cols[b..b + w].iter().enumerate() {
            let (w0, w1) = (p * w0, p * w1);
            for r in 0..s {
                let g = &grid[r * s..(r + 1) * s];
                bucket[r * w + x] += w0 * g[*j0] as f64 + w1 * g[*j1] as f64;
            }
        }
        self.added += 1;
    }

    /// Masks added so far.
    pub fn added(&self) -> usize {
        self.added
    }

    /// `Σ pₙ · Mₙ` per view pixel, row-major.
    pub fn total(&self) -> Vec<f64> {
        let w = self.width;
        let mut out = vec![0.0f64; self.height * w];
        for (a, bucket) in self.buckets.iter().enumerate() {
            let Some(bucket) = bucket else { continue };
            for (y, [(i0, w0), (i1, w1)]) in self.rows[a..a + self.height].iter().enumerate() {
                let (r0, r1) = (&bucket[i0 * w..(i0 + 1) * w], &bucket[i1 * w..(i1 + 1) * w]);
                for ((o, v0), v1) in out[y * w..(y + 1) * w].iter_mut().zip(r0).zip(r1) {
                    *o += w0 * v0 + w1 * v1;
                }
            }
        }
        out
    }
}

/// Explains `view` with RISE.
///
/// # Errors
/// Invalid options, an unknown class, or a failing device or model.
pub fn rise(
    classifier: &Classifier,
    view: &View,
    options: &RiseOptions,
) -> Result<RiseExplanation> {
    rise_given(classifier, view, options, None)
}

/// As [`rise`], with the view's unmasked probabilities `base` (all classes) already known.
///
/// # Errors
/// As [`rise`].
pub fn rise_given(
    classifier: &Classifier,
    view: &View,
    options: &RiseOptions,
    base: Option<&[f32]>,
) -> Result<RiseExplanation> {
    let (w, h) = view.rgb.dimensions();
    options.validate(w, h)?;
    let classes = classifier.outputs();
    classifier.check_class(options.class)?;
    let mut timings = RiseTimings::default();
    let t = Instant::now();
    let masks = draw_masks(options, w, h)?;
    timings.draw = t.elapsed().as_secs_f64();

    let t = Instant::now();
    // One segment: the whole view (a mean fill is the view's mean colour).
    let whole = Segmentation::grid(w, h, 1)?;
    let perturber = Perturber::new(classifier, &view.rgb, &whole, options.fill)?;
    let first: Vec<f32> = match base {
        Some(base) if base.len() == classes => base.to_vec(),
        Some(base) => {
            return Err(Error::InvalidArgument(format!(
                "a base prediction of {} classes for a model of {classes}",
                base.len()
            )));
        }
        None => {
            let mut original = KeepMatrix::new(1);
            original.push_all();
            perturber.run(&original)?.row(0).to_vec()
        }
    };
    // The top class, lowest index on ties.
    let class = options.class.unwrap_or_else(|| {
        (0..first.len()).fold(0, |best, c| if first[c] > first[best] { c } else { best })
    });
    let mut sum = SaliencySum::new(&masks);
    let (mut build, mut accumulate) = (0.0, 0.0);
    perturber.run_soft(
        &masks,
        &[class],
        |seconds| build += seconds,
        |range, p| {
            let t = Instant::now();
            for (i, p) in range.zip(p) {
                sum.add(&masks, i, *p as f64);
            }
            accumulate += t.elapsed().as_secs_f64();
            Ok(())
        },
    )?;
    timings.masks = build;
    timings.accumulate = accumulate;
    timings.classify = (t.elapsed().as_secs_f64() - build - accumulate).max(0.0);

    let t = Instant::now();
    let scale = 1.0 / (options.masks as f64 * options.keep_prob);
    let saliency: Vec<f32> = sum.total().iter().map(|v| (v * scale) as f32).collect();
    let kept = top_pixels(&saliency, options.keep_fraction, w, h)?;
    timings.saliency = t.elapsed().as_secs_f64();
    Ok(RiseExplanation {
        options: *options,
        class,
        probability: first[class],
        original: first,
        saliency,
        kept,
        timings,
    })
}

/// The `round(fraction · pixels)` pixels of highest `values` (ties by pixel index) as a mask.
///
/// # Errors
/// When `values` is not `width × height`.
pub fn top_pixels(values: &[f32], fraction: f64, width: u32, height: u32) -> Result<Mask> {
    let n = values.len();
    let count = ((fraction.clamp(0.0, 1.0) * n as f64).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut kept = vec![false; n];
    for &i in &order[..count] {
        kept[i] = true;
    }
    Mask::new(width, height, kept)
}
