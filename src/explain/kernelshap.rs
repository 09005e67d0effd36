//! KernelSHAP over segments (Lundberg & Lee 2017, "A Unified Approach to Interpreting Model
//! Predictions"), as shap's `KernelExplainer.explain` computes it with a background of one
//! all-hidden sample: the players are the view's segments, a coalition keeps its segments and
//! replaces the others by the fill, and the game is `v(z) = p(class | variant z)`.
//!
//! The coalitions follow shap's scheme: subset sizes weighted by the Shapley kernel's size
//! distribution, the complete sizes enumerated first (smallest and largest together) while the
//! budget covers them, the rest drawn at random with each draw's complement, repeated draws
//! adding weight to the first. The solve is shap's `solve` with `l1_reg=False` (shap's default
//! would first select 10 features by LARS): the last segment's value is eliminated through the
//! constraint `Σφ = f(x) − f(fill)`, so the sum holds exactly, and the weighted least squares
//! over the rest is solved through its normal equations. With a budget of `2^S − 2` coalitions
//! or more every coalition is enumerated and φ is exactly the Shapley value.
//!
//! The random draws come from a Mersenne Twister seeded as numpy's `RandomState(seed)`, consumed
//! in the order shap consumes `np.random` (the size draws, then one permutation per draw), so
//! `seed` draws the coalitions shap 0.51 draws after `np.random.seed(seed)`: on a 224² photo with
//! the default model, shap's values (`l1_reg=False`, onnxruntime) and these agreed within 1e-6
//! for quickshift with auto samples, SLIC, a 10×10 grid and an enumerated 3×3 grid
//! (`benches/kernelshap_python.py`).

use std::collections::HashMap;
use std::time::Instant;

use nalgebra::{DMatrix, DVector};
use serde_json::{Value, json};

use super::lime::{Mt19937, Segmenter};
use crate::attribution::Attribution;
use crate::mask::Mask;
use crate::model::Classifier;
use crate::perturb::{Fill, KeepMatrix, Perturber};
use crate::segment::Segmentation;
use crate::segment::quickshift::Quickshift;
use crate::view::View;
use crate::{Error, Result};

/// How many coalitions to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Samples {
    /// shap's default: `2·S + 2048` for `S` segments.
    #[default]
    Auto,
    /// Exactly this many (at most `2^S − 2`, where every coalition is enumerated).
    Count(usize),
}

impl Samples {
    /// The budget for `segments` players, capped at `2^S − 2` as shap caps it.
    pub fn resolve(&self, segments: usize) -> usize {
        let wanted = match *self {
            Samples::Auto => 2 * segments + 2048,
            Samples::Count(n) => n,
        };
        match all_coalitions(segments) {
            Some(max) => wanted.min(max),
            None => wanted,
        }
    }

    /// `auto` or the count, as the command line spells it.
    pub fn name(&self) -> String {
        match self {
            Samples::Auto => "auto".into(),
            Samples::Count(n) => n.to_string(),
        }
    }
}

impl std::str::FromStr for Samples {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        if text == "auto" {
            return Ok(Samples::Auto);
        }
        text.parse::<usize>().map(Samples::Count).map_err(|_| {
            Error::InvalidArgument(format!("--samples '{text}' must be 'auto' or a count"))
        })
    }
}

/// `2^S − 2` (every coalition but the empty and the full one) when `S ≤ 30`, as shap bounds it.
fn all_coalitions(segments: usize) -> Option<usize> {
    (segments <= 30).then(|| (1usize << segments).saturating_sub(2))
}

/// KernelSHAP's options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelShapOptions {
    /// Coalitions evaluated (shap's `nsamples`).
    pub samples: Samples,
    /// Seed of the random coalitions.
    pub seed: u32,
    /// The players.
    pub segmenter: Segmenter,
    /// What hidden segments become (the background): black or each segment's mean colour.
    pub fill: Fill,
    /// Segments shown in the mask (the largest positive φ).
    pub features: usize,
    /// Explain this class instead of the top one.
    pub class: Option<usize>,
}

impl Default for KernelShapOptions {
    fn default() -> Self {
        Self {
            samples: Samples::Auto,
            seed: 0,
            segmenter: Segmenter::Quickshift(Quickshift::default()),
            fill: Fill::Black,
            features: 5,
            class: None,
        }
    }
}

/// The coalitions to evaluate, with their kernel weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Coalitions {
    /// Players.
    pub segments: usize,
    /// Row-major `rows × segments`, 1 keeps the segment.
    pub rows: Vec<u8>,
    /// One weight per row (they sum to 1).
    pub weights: Vec<f64>,
    /// The leading rows that enumerate complete subset sizes.
    pub enumerated: usize,
    /// Whether every coalition was enumerated (φ is then the exact Shapley value).
    pub exact: bool,
}

impl Coalitions {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[u8] {
        &self.rows[i * self.segments..(i + 1) * self.segments]
    }

    fn push(&mut self, row: &[u8], weight: f64) {
        self.rows.extend_from_slice(row);
        self.weights.push(weight);
    }
}

/// `C(n, k)` in floating point, as scipy's `binom`.
fn binom(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// numpy's legacy `random_sample`: 53 random bits from two 32-bit outputs.
fn uniform(rng: &mut Mt19937) -> f64 {
    let a = (rng.next_u32() >> 5) as f64;
    let b = (rng.next_u32() >> 6) as f64;
    (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
}

/// Draws shap's coalitions for `segments` players within `budget` rows (already capped, see
/// [`Samples::resolve`]).
pub fn coalitions(seed: u32, segments: usize, budget: usize) -> Coalitions {
    let m = segments;
    let mut out = Coalitions {
        segments: m,
        rows: Vec::new(),
        weights: Vec::new(),
        enumerated: 0,
        exact: false,
    };
    if m < 2 {
        out.exact = true;
        return out;
    }
    let sizes = m / 2; // ceil((M − 1) / 2)
    let paired = (m - 1) / 2;
    let mut weight: Vec<f64> = (1..=sizes)
        .map(|i| (m as f64 - 1.0) / (i as f64 * (m - i) as f64))
        .collect();
    for w in weight.iter_mut().take(paired) {
        *w *= 2.0;
    }
    let total: f64 = weight.iter().sum();
    for w in &mut weight {
        *w /= total;
    }

    // Complete subset sizes, while the budget covers each at its share of the weight.
    let mut full = 0;
    let mut left = budget as f64;
    let mut remaining = weight.clone();
    let mut row = vec![0u8; m];
    for size in 1..=sizes {
        let mut count = binom(m, size);
        if size <= paired {
            count *= 2.0;
        }
        if left * remaining[size - 1] / count < 1.0 - 1e-8 {
            break;
        }
        full += 1;
        left -= count;
        if remaining[size - 1] < 1.0 {
            let scale = 1.0 - remaining[size - 1];
            for r in &mut remaining {
                *r /= scale;
            }
        }
        let mut w = weight[size - 1] / binom(m, size);
        if size <= paired {
            w /= 2.0;
        }
        // itertools.combinations order: lexicographic index sets.
        let mut chosen: Vec<usize> = (0..size).collect();
        loop {
            row.fill(0);
            for &i in &chosen {
                row[i] = 1;
            }
            out.push(&row, w);
            if size <= paired {
                for b in &mut row {
                    *b = 1 - *b;
                }
                out.push(&row, w);
            }
            let Some(i) = (0..size).rev().find(|&i| chosen[i] < m - size + i) else {
                break;
            };
            chosen[i] += 1;
            for j in i + 1..size {
                chosen[j] = chosen[j - 1] + 1;
            }
        }
    }
    out.enumerated = out.len();
    out.exact = full == sizes;

    // Random coalitions from the sizes left, each with its complement.
    let mut samples_left = budget.saturating_sub(out.len());
    if full == sizes || samples_left == 0 {
        return out;
    }
    let mut probability = weight.clone();
    for p in probability.iter_mut().take(paired) {
        *p /= 2.0;
    }
    let probability = &probability[full..];
    let sum: f64 = probability.iter().sum();
    let mut cdf = Vec::with_capacity(probability.len());
    let mut acc = 0.0;
    for p in probability {
        acc += p / sum;
        cdf.push(acc);
    }
    let last = acc;
    for c in &mut cdf {
        *c /= last;
    }
    let mut rng = Mt19937::new(seed);
    let draws: Vec<usize> = (0..4 * samples_left)
        .map(|_| {
            let u = uniform(&mut rng);
            cdf.partition_point(|c| *c <= u).min(cdf.len() - 1)
        })
        .collect();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut order: Vec<usize> = Vec::with_capacity(m);
    for ind in draws {
        if samples_left == 0 {
            break;
        }
        let size = ind + full + 1;
        // np.random.permutation(M): Fisher–Yates from the end with bounded draws.
        order.clear();
        order.extend(0..m);
        for i in (1..m).rev() {
            let j = rng.bounded(i as u32) as usize;
            order.swap(i, j);
        }
        row.fill(0);
        for &i in &order[..size] {
            row[i] = 1;
        }
        let first = match seen.get(&row) {
            Some(&at) => {
                out.weights[at] += 1.0;
                Some(at)
            }
            None => {
                seen.insert(row.clone(), out.len());
                samples_left -= 1;
                out.push(&row, 1.0);
                None
            }
        };
        if samples_left > 0 && size <= paired {
            for b in &mut row {
                *b = 1 - *b;
            }
            match first {
                None => {
                    samples_left -= 1;
                    out.push(&row, 1.0);
                }
                // The complement was added right after the first draw of this coalition.
                Some(at) => out.weights[at + 1] += 1.0,
            }
        }
    }
    let weight_left: f64 = weight[full..].iter().sum();
    let drawn: f64 = out.weights[out.enumerated..].iter().sum();
    if drawn > 0.0 {
        for w in &mut out.weights[out.enumerated..] {
            *w *= weight_left / drawn;
        }
    }
    out
}

/// How the weighted least squares was solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solver {
    /// Cholesky factorisation of the normal equations (the regular case).
    Cholesky,
    /// The normal equations were singular (too few coalitions for the segments): the
    /// minimum-norm least-squares solution through an SVD, as shap falls back to `lstsq`.
    Svd,
    /// One segment or none: φ is `f(x) − f(fill)` or empty, nothing to solve.
    Trivial,
}

impl Solver {
    /// Its name in documents.
    pub fn name(&self) -> &'static str {
        match self {
            Solver::Cholesky => "cholesky",
            Solver::Svd => "svd",
            Solver::Trivial => "trivial",
        }
    }
}

/// shap's `solve`: φ with `Σφ = fx − fnull` exactly, from the coalitions' values `values`
/// (`f(z)` for each row) by weighted least squares with the last segment eliminated.
pub fn solve(
    coalitions: &Coalitions,
    values: &[f64],
    fx: f64,
    fnull: f64,
) -> Result<(Vec<f64>, Solver)> {
    let m = coalitions.segments;
    let n = coalitions.len();
    if values.len() != n {
        return Err(Error::InvalidArgument(format!(
            "{} values for {n} coalitions",
            values.len()
        )));
    }
    let total = fx - fnull;
    if m == 0 {
        return Ok((Vec::new(), Solver::Trivial));
    }
    if m == 1 {
        return Ok((vec![total], Solver::Trivial));
    }
    let k = m - 1;
    // X[i, j] = z[i, j] − z[i, last]; y[i] = f(z_i) − fnull − z[i, last] · total.
    let mut gram = DMatrix::<f64>::zeros(k, k);
    let mut rhs = DVector::<f64>::zeros(k);
    let mut x = vec![0.0; k];
    for (i, value) in values.iter().enumerate() {
        let z = coalitions.row(i);
        let w = coalitions.weights[i];
        let last = z[k] as f64;
        for (x, z) in x.iter_mut().zip(z) {
            *x = *z as f64 - last;
        }
        let y = value - fnull - last * total;
        for a in 0..k {
            if x[a] == 0.0 {
                continue;
            }
            let wa = w * x[a];
            rhs[a] += wa * y;
            for b in 0..k {
                gram[(a, b)] += wa * x[b];
            }
        }
    }
    // A factorisation whose pivots span more than 1e12 (squared) is singular in all but
    // rounding: solve that in the least-squares sense too.
    let factor = gram.clone().cholesky().filter(|c| {
        let d = c.l_dirty().diagonal();
        let (lo, hi) = (d.min(), d.max());
        lo > 0.0 && (lo / hi).powi(2) > 1e-12
    });
    let (beta, solver) = match factor {
        Some(c) => (c.solve(&rhs), Solver::Cholesky),
        None => {
            let svd = gram.svd(true, true);
            let eps = 1e-12 * svd.singular_values.max().max(f64::MIN_POSITIVE);
            let beta = svd
                .solve(&rhs, eps)
                .map_err(|e| Error::InvalidArgument(format!("KernelSHAP's solve: {e}")))?;
            (beta, Solver::Svd)
        }
    };
    let mut phi: Vec<f64> = beta.iter().copied().collect();
    let sum: f64 = phi.iter().sum();
    phi.push(total - sum);
    if phi.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(
            "KernelSHAP's solve gave non-finite values".into(),
        ));
    }
    Ok((phi, solver))
}

/// Seconds per stage.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct KernelShapTimings {
    /// Segmenting the view.
    pub segmentation: f64,
    /// Drawing the coalitions and their weights.
    pub sampling: f64,
    /// Building every variant on the device and classifying it (the forward passes).
    pub perturb_classify: f64,
    /// The weighted least squares.
    pub solve: f64,
    /// Drawing the outputs (filled in by the caller).
    pub render: f64,
}

impl KernelShapTimings {
    /// Seconds outside the forward passes (segmentation, sampling, solve), rendering excluded.
    pub fn outside_forward(&self) -> f64 {
        self.segmentation + self.sampling + self.solve
    }

    /// Every stage but rendering.
    pub fn total(&self) -> f64 {
        self.outside_forward() + self.perturb_classify
    }
}

/// A KernelSHAP explanation of one view.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelShapExplanation {
    /// The options used.
    pub options: KernelShapOptions,
    /// The players.
    pub segmentation: Segmentation,
    /// The explained class: `options.class`, else the top one.
    pub class: usize,
    /// `f(x)`: p(class) on the view.
    pub probability: f32,
    /// `f(fill)`: p(class) with every segment hidden (shap's base value).
    pub base_value: f32,
    /// One Shapley value per segment.
    pub phi: Vec<f64>,
    /// Coalitions evaluated (the empty and full ones excluded).
    pub samples: usize,
    /// Of those, enumerated as complete subset sizes.
    pub enumerated: usize,
    /// Whether every coalition was evaluated (φ exact).
    pub exact: bool,
    /// How the least squares was solved.
    pub solver: Solver,
    /// Forward passes run (coalitions, the fill, and the view unless it was known).
    pub variants: usize,
    /// Probabilities of every class on the view.
    pub original: Vec<f32>,
    /// Kept view pixels: the `features` segments with the largest positive φ.
    pub kept: Mask,
    /// Time per stage.
    pub timings: KernelShapTimings,
}

/// Explains `view` with KernelSHAP.
pub fn kernel_shap(
    classifier: &Classifier,
    view: &View,
    options: &KernelShapOptions,
) -> Result<KernelShapExplanation> {
    kernel_shap_given(classifier, view, options, None)
}

/// As [`kernel_shap`], with the view's probabilities `base` (all classes) already known.
pub fn kernel_shap_given(
    classifier: &Classifier,
    view: &View,
    options: &KernelShapOptions,
    base: Option<&[f32]>,
) -> Result<KernelShapExplanation> {
    if options.samples == Samples::Count(0) {
        return Err(Error::InvalidArgument(
            "--samples 0: KernelSHAP needs at least 1 coalition".into(),
        ));
    }
    if !matches!(options.fill, Fill::Black | Fill::Mean) {
        return Err(Error::InvalidArgument(
            "kernelshap's --fill is black or mean".into(),
        ));
    }
    let classes = classifier.outputs();
    classifier.check_class(options.class)?;
    let mut timings = KernelShapTimings::default();
    let t = Instant::now();
    let segmentation = options.segmenter.segment(&view.rgb)?;
    timings.segmentation = t.elapsed().as_secs_f64();
    let s = segmentation.count();

    let t = Instant::now();
    let drawn = coalitions(options.seed, s, options.samples.resolve(s));
    let mut keep = KeepMatrix::new(s);
    keep.push_hiding(&(0..s).collect::<Vec<_>>());
    for i in 0..drawn.len() {
        keep.push_row(&drawn.row(i).iter().map(|b| *b == 1).collect::<Vec<_>>());
    }
    timings.sampling = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let perturber = Perturber::new(classifier, &view.rgb, &segmentation, options.fill)?;
    let (original, extra) = match base {
        Some(base) if base.len() == classes => (base.to_vec(), 0),
        Some(base) => {
            return Err(Error::InvalidArgument(format!(
                "a base prediction of {} classes for a model of {classes}",
                base.len()
            )));
        }
        None => {
            let mut all = KeepMatrix::new(s);
            all.push_all();
            (perturber.run(&all)?.row(0).to_vec(), 1)
        }
    };
    let class = match options.class {
        Some(c) => c,
        None => super::lime::top_labels(&original, 1)
            .first()
            .copied()
            .ok_or_else(|| Error::InvalidArgument("the model has no classes".into()))?,
    };
    let probs = perturber.run_columns(&keep, Some(&[class]))?;
    timings.perturb_classify = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let fx = original[class] as f64;
    let fnull = probs.row(0)[0] as f64;
    let values: Vec<f64> = (1..keep.rows()).map(|i| probs.row(i)[0] as f64).collect();
    let (phi, solver) = solve(&drawn, &values, fx, fnull)?;
    timings.solve = t.elapsed().as_secs_f64();

    let chosen = positive(&phi, options.features);
    let kept = Mask::new(
        segmentation.width(),
        segmentation.height(),
        segmentation
            .labels()
            .iter()
            .map(|l| chosen.contains(&(*l as usize)))
            .collect(),
    )?;
    Ok(KernelShapExplanation {
        options: *options,
        segmentation,
        class,
        probability: original[class],
        base_value: probs.row(0)[0],
        phi,
        samples: drawn.len(),
        enumerated: drawn.enumerated,
        exact: drawn.exact,
        solver,
        variants: keep.rows() + extra,
        original,
        kept,
        timings,
    })
}

/// The `n` segments with the largest positive φ (ties by index).
pub fn positive(phi: &[f64], n: usize) -> Vec<usize> {
    ranked(phi)
        .into_iter()
        .filter(|&s| phi[s] > 0.0)
        .take(n)
        .collect()
}

/// The `n` segments with the largest |φ|, with their sign (ties by index).
pub fn signed(phi: &[f64], n: usize) -> Vec<(usize, f64)> {
    let mut order: Vec<usize> = (0..phi.len()).collect();
    order.sort_by(|&a, &b| phi[b].abs().total_cmp(&phi[a].abs()).then(a.cmp(&b)));
    order
        .into_iter()
        .filter(|&s| phi[s] != 0.0)
        .take(n)
        .map(|s| (s, phi[s]))
        .collect()
}

/// Segments by decreasing φ (ties by index).
fn ranked(phi: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..phi.len()).collect();
    order.sort_by(|&a, &b| phi[b].total_cmp(&phi[a]).then(a.cmp(&b)));
    order
}

impl KernelShapExplanation {
    /// Σφ, which KernelSHAP makes equal to `f(x) − f(fill)`.
    pub fn phi_sum(&self) -> f64 {
        self.phi.iter().sum()
    }

    /// Per view pixel, the φ of its segment.
    pub fn phi_map(&self) -> Vec<f32> {
        self.segmentation.spread(&self.phi)
    }

    /// The machine-readable document.
    pub fn to_json(&self, label: impl Fn(usize) -> Option<&'static str>) -> Value {
        let segmenter = self.options.segmenter.to_json();
        let t = self.timings;
        let difference = self.probability as f64 - self.base_value as f64;
        json!({
            "method": "kernelshap",
            "parameters": {
                "samples": self.options.samples.name(), "seed": self.options.seed,
                "features": self.options.features, "fill": self.options.fill.name(),
                "l1_reg": false,
            },
            "segmentation": { "segmenter": segmenter, "count": self.segmentation.count(), "width": self.segmentation.width(), "height": self.segmentation.height(), "labels": self.segmentation.labels() },
            "class": { "index": self.class, "label": label(self.class) },
            "probability": self.probability,
            "base_value": self.base_value,
            "phi": self.phi,
            "phi_sum": self.phi_sum(),
            "fx_minus_base": difference,
            "positive": positive(&self.phi, self.options.features),
            "signed": signed(&self.phi, self.options.features).iter().map(|(s, w)| json!([s, w])).collect::<Vec<_>>(),
            "samples_used": self.samples,
            "enumerated": self.enumerated,
            "exact": self.exact,
            "solver": self.solver.name(),
            "variants": self.variants,
            "kept_fraction": self.kept.kept_fraction(),
            "timings_s": { "segmentation": t.segmentation, "sampling": t.sampling, "perturb_classify": t.perturb_classify, "solve": t.solve, "render": t.render },
        })
    }
}

impl From<&KernelShapExplanation> for Attribution {
    /// Importance is the φ of the pixel's segment.
    fn from(e: &KernelShapExplanation) -> Self {
        Self {
            method: "kernelshap",
            class: e.class,
            probability: e.probability,
            kept: e.kept.clone(),
            importance: e.phi_map(),
            fill: e.options.fill,
            variants: e.variants,
            seconds: e.timings.total(),
        }
    }
}
