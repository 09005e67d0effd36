//! LIME's image explainer (Ribeiro, Singh, Guestrin 2016, "Why Should I Trust You?"), as
//! marcotcr/lime 0.2.0.1's `LimeImageExplainer` computes it, with every perturbed sample
//! classified through the [`Perturber`] in device-sized chunks instead of batches of 10.
//!
//! Reproducibility: the sample matrix comes from a Mersenne Twister seeded as numpy's
//! `RandomState(seed)`, consumed as lime consumes it (one draw for the quickshift seed, then one
//! bit per entry), so `--seed S` gives lime's own sample for `random_state=S`.

use std::time::Instant;

use nalgebra::{DMatrix, DVector};
use serde_json::{Value, json};

use crate::attribution::Attribution;
use crate::mask::Mask;
use crate::model::Classifier;
use crate::perturb::{Fill, KeepMatrix, Perturber};
use crate::segment::Segmentation;
use crate::segment::quickshift::Quickshift;
use crate::segment::slic::Slic;
use crate::view::View;
use crate::{Error, Result};

mod rounds;

pub use rounds::{Adapted, Adaptive, Stability};
use rounds::{selection, stability};

/// How the view is cut into LIME's interpretable features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Segmenter {
    /// scikit-image's quickshift with lime's parameters (the default).
    Quickshift(Quickshift),
    /// SLIC superpixels.
    Slic(Slic),
    /// The occlusion grid with this many cells along the longer side.
    Grid(u32),
}

impl Segmenter {
    /// Segments an RGB view.
    pub fn segment(&self, rgb: &image::RgbImage) -> Result<Segmentation> {
        let (w, h) = rgb.dimensions();
        match self {
            Segmenter::Quickshift(q) => Segmentation::from_labels(w, h, q.segment(rgb)),
            Segmenter::Slic(s) => Segmentation::from_labels(w, h, s.segment(rgb)),
            Segmenter::Grid(g) => Segmentation::grid(w, h, *g),
        }
    }

    /// The segmenter and its parameters, as explanation documents record them.
    pub fn to_json(&self) -> Value {
        match self {
            Segmenter::Quickshift(q) => {
                json!({ "kind": "quickshift", "kernel_size": q.kernel_size, "max_dist": q.max_dist, "ratio": q.ratio })
            }
            Segmenter::Slic(s) => {
                json!({ "kind": "slic", "segments": s.segments, "compactness": s.compactness, "sigma": s.sigma })
            }
            Segmenter::Grid(g) => json!({ "kind": "grid", "grid": g }),
        }
    }
}

/// LIME's options (lime's defaults as used by its PyTorch image tutorial).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimeOptions {
    /// Perturbed samples, the original included (lime: 1000).
    pub samples: usize,
    /// Seed of the sample (numpy `RandomState` compatible).
    pub seed: u32,
    /// The interpretable features.
    pub segmenter: Segmenter,
    /// `hide_color`: black (0) or each segment's mean colour (`None` in lime).
    pub fill: Fill,
    /// Segments shown in the mask (lime's `num_features` of `get_image_and_mask`).
    pub features: usize,
    /// Classes explained: the top ones of the original image (lime: 5).
    pub top_labels: usize,
    /// Kernel width of the cosine-distance kernel (lime: 0.25).
    pub kernel_width: f64,
    /// Ridge regularisation (lime: 1).
    pub alpha: f64,
    /// Also explain this class, whatever its rank.
    pub class: Option<usize>,
    /// Runs with seeds `seed..seed + runs` to measure how stable the explanation is (see
    /// [`Stability`]); 1 runs LIME once, as lime does.
    pub runs: usize,
    /// `--samples auto`: choose the sample count (then `samples` is ignored); `None` draws
    /// exactly `samples`, as lime does.
    pub adaptive: Option<Adaptive>,
}

impl Default for LimeOptions {
    fn default() -> Self {
        Self {
            samples: 1000,
            seed: 0,
            segmenter: Segmenter::Quickshift(Quickshift::default()),
            fill: Fill::Black,
            features: 5,
            top_labels: 5,
            kernel_width: 0.25,
            alpha: 1.0,
            class: None,
            runs: 1,
            adaptive: None,
        }
    }
}

/// The local linear model of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModel {
    /// The class.
    pub class: usize,
    /// The ridge intercept.
    pub intercept: f64,
    /// One weight per segment.
    pub weights: Vec<f64>,
    /// Weighted R² of the fit on the samples.
    pub score: f64,
    /// The model's prediction for the original image (all segments on).
    pub local_prediction: f64,
}

impl LocalModel {
    /// Segments by decreasing |weight| (ties by index), as lime lists `local_exp`.
    pub fn ranked(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.weights.len()).collect();
        order.sort_by(|&a, &b| {
            self.weights[b]
                .abs()
                .total_cmp(&self.weights[a].abs())
                .then(a.cmp(&b))
        });
        order
    }

    /// lime's `get_image_and_mask(positive_only=True)`: the `n` segments with the largest
    /// positive weights.
    pub fn positive(&self, n: usize) -> Vec<usize> {
        self.ranked()
            .into_iter()
            .filter(|&s| self.weights[s] > 0.0)
            .take(n)
            .collect()
    }

    /// lime's `get_image_and_mask(positive_only=False)`: the `n` segments with the largest
    /// |weight|, with their sign.
    pub fn signed(&self, n: usize) -> Vec<(usize, f64)> {
        self.ranked()
            .into_iter()
            .filter(|&s| self.weights[s] != 0.0)
            .take(n)
            .map(|s| (s, self.weights[s]))
            .collect()
    }
}

/// Seconds per stage.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LimeTimings {
    /// Segmenting the view.
    pub segmentation: f64,
    /// Drawing the sample, building and classifying every variant.
    pub perturb_classify: f64,
    /// Distances, kernel and one ridge fit per class.
    pub regression: f64,
    /// Drawing the outputs (filled in by the caller).
    pub render: f64,
}

/// A LIME explanation of one view.
#[derive(Debug, Clone, PartialEq)]
pub struct LimeExplanation {
    /// The options used.
    pub options: LimeOptions,
    /// The view's segmentation.
    pub segmentation: Segmentation,
    /// The classes explained, most probable first (and `options.class` if it was not among them).
    pub models: Vec<LocalModel>,
    /// Probability of each explained class on the original view.
    pub probabilities: Vec<f32>,
    /// Probabilities of every class on the original view.
    pub original: Vec<f32>,
    /// The class the mask is for: `options.class`, else the top one.
    pub class: usize,
    /// Kept view pixels of the mask for `class` (positive segments).
    pub kept: Mask,
    /// Time per stage.
    pub timings: LimeTimings,
    /// How stable the explanation is over seeds, when `options.runs` asked for several runs
    /// (the rest of the explanation is the first run's, with `options.seed`).
    pub stability: Option<Stability>,
    /// Where `--samples auto` stopped (then `options.samples` is the count it used).
    pub adapted: Option<Adapted>,
}

/// Explains `view` with LIME.
pub fn lime(
    classifier: &Classifier,
    view: &View,
    options: &LimeOptions,
) -> Result<LimeExplanation> {
    lime_given(classifier, view, options, None)
}

/// As [`lime`], with the original view's probabilities `base` (all classes) already known.
/// The original (the sample's row 0) is classified once either way, never twice.
pub fn lime_given(
    classifier: &Classifier,
    view: &View,
    options: &LimeOptions,
    base: Option<&[f32]>,
) -> Result<LimeExplanation> {
    if options.samples < 2 {
        return Err(Error::InvalidArgument(format!(
            "--samples {} must be at least 2",
            options.samples
        )));
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(options.kernel_width) || !positive(options.alpha) {
        return Err(Error::InvalidArgument(
            "kernel width and alpha must be positive".into(),
        ));
    }
    classifier.check_class(options.class)?;
    let mut timings = LimeTimings::default();
    let t = Instant::now();
    let segmentation = options.segmenter.segment(&view.rgb)?;
    timings.segmentation = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let drawn = options.adaptive.map_or(options.samples, |a| a.max_samples);
    let mut data = sample(options.seed, drawn, segmentation.count());
    let perturber = Perturber::new(classifier, &view.rgb, &segmentation, options.fill)?;
    // The explained classes are the original's top ones: classify it alone first, then keep
    // only those columns for every sample, so memory grows with samples × 5, not × classes.
    let first: Vec<f32> = match base {
        Some(base) if base.len() == classifier.outputs() => base.to_vec(),
        Some(base) => {
            return Err(Error::InvalidArgument(format!(
                "a base prediction of {} classes for a model of {}",
                base.len(),
                classifier.outputs()
            )));
        }
        None => {
            let mut original = KeepMatrix::new(segmentation.count());
            original.push_all();
            perturber.run(&original)?.row(0).to_vec()
        }
    };
    let mut classes = top_labels(&first, options.top_labels);
    if let Some(c) = options.class
        && !classes.contains(&c)
    {
        classes.push(c);
    }
    let s = segmentation.count();
    // Row 0 is the original (all ones): it is the base prediction, not classified again. Each
    // classified row keeps only the explained classes' columns, so memory grows with
    // samples × 5, not × classes.
    let classify = |rows: std::ops::Range<usize>| -> Result<Vec<Vec<f32>>> {
        let mut keep = KeepMatrix::new(s);
        for row in data[rows.start * s..rows.end * s].chunks(s.max(1)) {
            keep.push_row(&row.iter().map(|b| *b == 1).collect::<Vec<_>>());
        }
        let probs = perturber.run_columns(&keep, Some(&classes))?;
        Ok((0..probs.rows()).map(|r| probs.row(r).to_vec()).collect())
    };
    let explained = options.class.unwrap_or(classes[0]);
    let column = classes.iter().position(|&c| c == explained).unwrap_or(0);
    let mut rows: Vec<Vec<f32>> = vec![classes.iter().map(|&c| first[c]).collect()];
    let mut adapted = None;
    // The bootstrap refits of `--samples auto` count as regression, not classification.
    let mut refits = 0.0;
    match options.adaptive {
        None => rows.extend(classify(1..drawn)?),
        Some(a) => {
            let mut previous: Option<Vec<usize>> = None;
            let mut rounds = 0;
            loop {
                let end = (rows.len() + a.round).min(a.max_samples);
                rows.extend(classify(rows.len()..end)?);
                rounds += 1;
                let n = rows.len();
                let y: Vec<f64> = rows.iter().map(|r| r[column] as f64).collect();
                let fit = Instant::now();
                let (chosen, probability) = selection(&data[..n * s], s, &y, options, a, rounds)?;
                refits += fit.elapsed().as_secs_f64();
                let stable = previous.as_ref() == Some(&chosen) && probability >= a.target;
                if stable || n >= a.max_samples {
                    adapted = Some(Adapted {
                        samples: n,
                        rounds,
                        probability,
                        capped: !stable,
                    });
                    break;
                }
                previous = Some(chosen);
            }
            data.truncate(rows.len() * s);
        }
    }
    let samples = rows.len();
    timings.perturb_classify = t.elapsed().as_secs_f64() - refits;

    let t = Instant::now();
    let kernel = kernel_weights(&data, s, options.kernel_width);
    let x = DMatrix::from_fn(samples, s, |i, j| data[i * s + j] as f64);
    let models = classes
        .iter()
        .enumerate()
        .map(|(k, &c)| {
            let y = DVector::from_fn(samples, |i, _| rows[i][k] as f64);
            ridge(&x, &y, &kernel, options.alpha).map(
                |(intercept, weights, score, local_prediction)| LocalModel {
                    class: c,
                    intercept,
                    weights,
                    score,
                    local_prediction,
                },
            )
        })
        .collect::<Result<Vec<_>>>()?;
    timings.regression = t.elapsed().as_secs_f64() + refits;

    let class = options.class.unwrap_or(classes[0]);
    let model = models
        .iter()
        .find(|m| m.class == class)
        .ok_or_else(|| Error::InvalidArgument("no model for the class".into()))?;
    let chosen = model.positive(options.features);
    let kept = Mask::new(
        segmentation.width(),
        segmentation.height(),
        segmentation
            .labels()
            .iter()
            .map(|l| chosen.contains(&(*l as usize)))
            .collect(),
    )?;
    let probabilities = classes.iter().map(|&c| first[c]).collect();
    let mut explanation = LimeExplanation {
        options: LimeOptions {
            samples,
            ..*options
        },
        segmentation,
        models,
        probabilities,
        original: first,
        class,
        kept,
        timings,
        stability: None,
        adapted,
    };
    if options.runs > 1 {
        explanation.stability = Some(stability(classifier, view, &explanation)?);
    }
    Ok(explanation)
}

/// lime's `top_labels`: `np.argsort(p)[-k:]` reversed (most probable first; among equal
/// probabilities the higher index first, as a stable ascending sort reversed gives).
pub fn top_labels(p: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    order.into_iter().rev().take(k.min(p.len())).collect()
}

/// lime's sample matrix, row-major `samples × segments` of 0/1, row 0 all ones.
pub fn sample(seed: u32, samples: usize, segments: usize) -> Vec<u8> {
    let mut rng = Mt19937::new(seed);
    // lime draws quickshift's random_seed = randint(0, 1000) from the same RandomState first.
    rng.bounded(999);
    let mut data: Vec<u8> = (0..samples * segments)
        .map(|_| (rng.next_u32() & 1) as u8)
        .collect();
    let first = segments.min(data.len());
    data[..first].fill(1);
    data
}

/// lime's kernel: `sqrt(exp(-d² / w²))` of each row's cosine distance to row 0 (all ones).
pub fn kernel_weights(data: &[u8], segments: usize, width: f64) -> Vec<f64> {
    data.chunks(segments.max(1))
        .map(|row| {
            let ones = row.iter().filter(|b| **b == 1).count() as f64;
            // cos(row, 1) = k / (sqrt(k) sqrt(S)) = sqrt(k / S); a zero row is at distance 1.
            let d = if ones == 0.0 {
                1.0
            } else {
                (1.0 - (ones / segments as f64).sqrt()).max(0.0)
            };
            (-(d * d) / (width * width)).exp().sqrt()
        })
        .collect()
}

/// Weighted ridge regression with an intercept, as scikit-learn's `Ridge(alpha,
/// fit_intercept=True).fit(X, y, sample_weight=w)` solves it: centre X and y on their weighted
/// means, scale rows by √w, solve `(XᵀX + αI) β = Xᵀy` by Cholesky. Returns the intercept, the
/// coefficients, the weighted R² and the prediction for an all-ones row.
pub fn ridge(
    x: &DMatrix<f64>,
    y: &DVector<f64>,
    w: &[f64],
    alpha: f64,
) -> Result<(f64, Vec<f64>, f64, f64)> {
    let (n, s) = x.shape();
    let wsum: f64 = w.iter().sum();
    if wsum.is_nan() || wsum <= 0.0 {
        return Err(Error::InvalidArgument("all sample weights are zero".into()));
    }
    let x_mean = DVector::from_fn(s, |j, _| {
        (0..n).map(|i| w[i] * x[(i, j)]).sum::<f64>() / wsum
    });
    let y_mean = (0..n).map(|i| w[i] * y[i]).sum::<f64>() / wsum;
    let xs = DMatrix::from_fn(n, s, |i, j| w[i].sqrt() * (x[(i, j)] - x_mean[j]));
    let ys = DVector::from_fn(n, |i, _| w[i].sqrt() * (y[i] - y_mean));
    let mut gram = xs.transpose() * &xs;
    for j in 0..s {
        gram[(j, j)] += alpha;
    }
    let rhs = xs.transpose() * ys;
    let beta = gram
        .cholesky()
        .ok_or_else(|| Error::InvalidArgument("the ridge system is not positive definite".into()))?
        .solve(&rhs);
    let intercept = y_mean - x_mean.dot(&beta);
    let pred = x * &beta;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for i in 0..n {
        ss_res += w[i] * (y[i] - intercept - pred[i]).powi(2);
        ss_tot += w[i] * (y[i] - y_mean).powi(2);
    }
    let score = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    Ok((
        intercept,
        beta.iter().copied().collect(),
        score,
        intercept + beta.sum(),
    ))
}

/// MT19937 with numpy's legacy `RandomState(seed)` seeding (`init_genrand`) and its masked
/// rejection sampling for bounded integers.
#[derive(Debug, Clone)]
pub struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    /// Seeded as `numpy.random.RandomState(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    /// The next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    next ^= 0x9908_b0df;
                }
                self.state[i] = next;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// An integer in `0..=max` as numpy's `randint(0, max + 1)` draws it (mask and reject).
    pub fn bounded(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }
}

impl LimeExplanation {
    /// Per view pixel, the weight of its segment for `class`.
    pub fn weight_map(&self, class: usize) -> Vec<f32> {
        let Some(model) = self.models.iter().find(|m| m.class == class) else {
            return vec![0.0; self.kept.len()];
        };
        self.segmentation.spread(&model.weights)
    }

    /// The machine-readable document.
    pub fn to_json(&self, label: impl Fn(usize) -> Option<&'static str>) -> Value {
        let segmenter = self.options.segmenter.to_json();
        let models: Vec<Value> = self
            .models
            .iter()
            .zip(&self.probabilities)
            .map(|(m, p)| {
                json!({
                    "class": m.class, "label": label(m.class), "probability": p,
                    "intercept": m.intercept, "score": m.score, "local_prediction": m.local_prediction,
                    "weights": m.weights,
                    "positive": m.positive(self.options.features),
                    "signed": m.signed(self.options.features).iter().map(|(s, w)| json!([s, w])).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut doc = json!({
            "method": "lime",
            "parameters": {
                "samples": self.options.samples, "seed": self.options.seed, "features": self.options.features,
                "top_labels": self.options.top_labels, "kernel_width": self.options.kernel_width, "alpha": self.options.alpha,
                "fill": if self.options.fill == Fill::Mean { "mean" } else { "black" },
            },
            "segmentation": { "segmenter": segmenter, "count": self.segmentation.count(), "width": self.segmentation.width(), "height": self.segmentation.height(), "labels": self.segmentation.labels() },
            "class": { "index": self.class, "label": label(self.class) },
            "models": models,
            "variants": self.options.samples,
            "kept_fraction": self.kept.kept_fraction(),
            "timings_s": { "segmentation": self.timings.segmentation, "perturb_classify": self.timings.perturb_classify, "regression": self.timings.regression, "render": self.timings.render },
        });
        // Only with several runs, so that a single run's document stays lime's.
        if let (Some(stability), Some(obj)) = (&self.stability, doc.as_object_mut()) {
            obj.insert("stability".into(), stability.to_json());
        }
        if let (Some(adapted), Some(obj)) = (&self.adapted, doc.as_object_mut()) {
            obj.insert("adaptive".into(), adapted.to_json());
        }
        doc
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
