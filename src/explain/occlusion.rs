//! The report's occlusion rules (arbitrary, statistical, double division, elbow): hide one
//! cell of a grid per variant, rank the cells by the class's probability without them, and
//! black out the unimportant ones by the rule's cut.

use std::time::Instant;

use serde_json::{Value, json};

use super::rules;
use crate::attribution::Attribution;
use crate::classify::{Prediction, Probabilities};
use crate::mask::Mask;
use crate::model::Classifier;
use crate::model::incremental::Macs;
use crate::perturb::{Fill, KeepMatrix, Perturber};
use crate::segment::{Rect, Segmentation};
use crate::view::View;
use crate::{Error, Result};

/// An occlusion rule and its parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Black out the first `round(fraction · K)` cells of the ranking (the report: 0.7).
    Arbitrary {
        /// Fraction of cells blacked out.
        fraction: f64,
    },
    /// Black out cells with `p > μ − k·σ`.
    Statistical {
        /// Multiple of the standard deviation.
        k: f64,
    },
    /// 3×3 cells with the statistical rule, then each kept cell split 3×3, statistical again.
    DoubleDivision {
        /// Multiple of the standard deviation, both phases.
        k: f64,
    },
    /// Black out the ranking's plateau, up to the knee of its curve (Kneedle); statistical with
    /// `k` when the curve has no knee.
    Elbow {
        /// Fallback's multiple of the standard deviation.
        k: f64,
    },
}

impl Method {
    /// Short name (`arbitrary`, `statistical`, `double-division`, `elbow`).
    pub fn name(&self) -> &'static str {
        match self {
            Method::Arbitrary { .. } => "arbitrary",
            Method::Statistical { .. } => "statistical",
            Method::DoubleDivision { .. } => "double-division",
            Method::Elbow { .. } => "elbow",
        }
    }
}

/// Options shared by the occlusion methods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OcclusionOptions {
    /// Cells along the longer side (the report: 10). Double division ignores it (3, then 3).
    pub grid: u32,
    /// What an occluded cell is replaced with.
    pub fill: Fill,
    /// Explain this class instead of the top prediction.
    pub class: Option<usize>,
    /// Classify the occluded variants by incremental inference where the classifier can (on
    /// the CPU, [`Classifier::incremental`]): each layer of the model's prefix computed only
    /// where the occluded cell changed it. The probabilities equal full inference's to float
    /// rounding (within 1e-5); off runs full inference, as a baseline.
    pub incremental: bool,
}

impl Default for OcclusionOptions {
    fn default() -> Self {
        Self {
            grid: 10,
            fill: Fill::Black,
            class: None,
            incremental: true,
        }
    }
}

/// How the occluded variants were classified.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Inference {
    /// Whether incremental inference was asked for.
    pub asked: bool,
    /// The convolutions' multiply-accumulates of the variants that ran incrementally, against
    /// full inference's; `None` when every variant ran in full.
    pub macs: Option<Macs>,
    /// Variants that ran incrementally.
    pub variants: usize,
    /// Bytes of the view's activations kept for incremental inference (the most any batch
    /// kept).
    pub kept_bytes: u64,
}

impl Inference {
    pub(crate) fn of(perturber: &Perturber, asked: bool, variants: usize) -> Self {
        let macs = perturber.macs();
        Self {
            asked,
            macs,
            variants: if macs.is_some() { variants } else { 0 },
            kept_bytes: perturber.kept_bytes(),
        }
    }

    fn add(&mut self, other: Inference) {
        self.macs = match (self.macs, other.macs) {
            (Some(mut a), Some(b)) => {
                a += b;
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.variants += other.variants;
        self.kept_bytes = self.kept_bytes.max(other.kept_bytes);
    }

    /// The document form: which path ran and, for incremental inference, the work it did.
    pub fn to_json(&self, classifier_can: bool) -> Value {
        match self.macs {
            Some(m) => json!({
                "path": "incremental",
                "variants": self.variants,
                "conv_macs": m.computed,
                "conv_macs_full_inference": m.full,
                "conv_work_share": m.computed as f64 / m.full.max(1) as f64,
                "kept_activation_bytes": self.kept_bytes,
            }),
            None => {
                let why = if !self.asked {
                    "incremental inference was turned off"
                } else if !classifier_can {
                    "incremental inference runs in f32 on the CPU (on a GPU with GLASSBOX_INCREMENTAL_GPU=1)"
                } else {
                    "no batch hid single rectangles"
                };
                json!({ "path": "full", "why": why })
            }
        }
    }
}

/// Where a rule cut the ranking.
#[derive(Debug, Clone, PartialEq)]
pub enum Cut {
    /// A fixed number of cells.
    Count(usize),
    /// `μ − k·σ`.
    Threshold(f64),
    /// The knee's position in the ranking (it and every cell before it are blacked out).
    Knee(usize),
    /// The curve had no knee; the statistical threshold was used instead.
    NoKnee(f64),
}

/// One round of occlusion: its cells, their scores, and what the rule decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// The occluded cells, in view pixels.
    pub cells: Vec<Rect>,
    /// `p[c*]` of the variant that occluded each cell.
    pub p: Vec<f32>,
    /// Each variant's own top class.
    pub argmax: Vec<usize>,
    /// Cell indices, least important first.
    pub ranking: Vec<usize>,
    /// Cell indices blacked out (in ranking order).
    pub blacked: Vec<usize>,
    /// Where the rule cut.
    pub cut: Cut,
}

/// Seconds spent per stage.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// Building the fill and uploading view, fill and label map.
    pub preprocess: f64,
    /// Building every variant on the device and classifying them.
    pub perturb_classify: f64,
    /// Ranking and the selection rule.
    pub rule: f64,
    /// Drawing the outputs (filled in by the renderer's caller).
    pub render: f64,
}

/// An occlusion explanation of one view.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The method and its parameter.
    pub method: Method,
    /// The options used.
    pub options: OcclusionOptions,
    /// The explained class `c*`.
    pub class: usize,
    /// `p[c*]` of the unoccluded view.
    pub probability: f32,
    /// The unoccluded view's top classes.
    pub base_top: Vec<Prediction>,
    /// One phase, two for double division.
    pub phases: Vec<Phase>,
    /// Kept (important) view pixels; false = blacked out.
    pub kept: Mask,
    /// Variants classified, the unoccluded view included.
    pub variants: usize,
    /// Time per stage.
    pub timings: Timings,
    /// How the variants were classified.
    pub inference: Inference,
    /// Whether the classifier could run incremental inference.
    pub incremental_possible: bool,
    /// Things the user should know (e.g. the elbow fell back).
    pub notes: Vec<String>,
}

/// The single-cell occlusion scores of one view: the unoccluded view and one variant per cell
/// of a `grid`, classified. Every rule of the same grid and fill reads the same scores, so a
/// study that compares rules computes them once.
#[derive(Debug, Clone, PartialEq)]
pub struct CellScores {
    /// Cells along the longer side.
    pub grid: u32,
    /// The fill of the occluded cell.
    pub fill: Fill,
    /// The cells, in view pixels.
    pub cells: Vec<Rect>,
    /// Row 0: the unoccluded view; row `1 + i`: cell `i` occluded.
    pub probabilities: Probabilities,
    /// Time spent: `preprocess` and `perturb_classify` are filled in.
    pub timings: Timings,
    /// How the variants were classified.
    pub inference: Inference,
}

/// Classifies `view` and its single-cell occlusions on a `grid` with `fill`.
/// The variants run by incremental inference where the classifier can
/// ([`OcclusionOptions::incremental`]); [`cell_scores_given`] chooses.
pub fn cell_scores(
    classifier: &Classifier,
    view: &View,
    grid: u32,
    fill: Fill,
) -> Result<CellScores> {
    cell_scores_given(classifier, view, grid, fill, true, None)
}

/// As [`cell_scores`], by incremental inference or not (`incremental`), with the unperturbed
/// view's probabilities `base` (all classes) already known, so that only the occluded variants
/// are classified.
pub fn cell_scores_given(
    classifier: &Classifier,
    view: &View,
    grid: u32,
    fill: Fill,
    incremental: bool,
    base: Option<&[f32]>,
) -> Result<CellScores> {
    let (w, h) = view.rgb.dimensions();
    let mut timings = Timings::default();
    let t = Instant::now();
    let segmentation = Segmentation::grid(w, h, grid)?;
    let cells = segmentation
        .cells()
        .map(<[Rect]>::to_vec)
        .unwrap_or_default();
    let perturber =
        Perturber::new(classifier, &view.rgb, &segmentation, fill)?.with_incremental(incremental);
    timings.preprocess = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut keep = KeepMatrix::new(cells.len());
    if base.is_none() {
        keep.push_all();
    }
    for i in 0..cells.len() {
        keep.push_hiding(&[i]);
    }
    let probabilities = match base {
        Some(base) => Probabilities::with_first_row(base, perturber.run(&keep)?)?,
        None => perturber.run(&keep)?,
    };
    timings.perturb_classify = t.elapsed().as_secs_f64();
    let inference = Inference::of(&perturber, incremental, keep.rows());
    Ok(CellScores {
        grid,
        fill,
        cells,
        probabilities,
        timings,
        inference,
    })
}

/// The grid a method occludes first: `options.grid`, or 3 for double division.
pub fn first_grid(method: &Method, options: &OcclusionOptions) -> u32 {
    if matches!(method, Method::DoubleDivision { .. }) {
        3
    } else {
        options.grid
    }
}

/// Explains `view` (the classifier's input view) with an occlusion `method`.
pub fn occlusion(
    classifier: &Classifier,
    view: &View,
    method: Method,
    options: &OcclusionOptions,
) -> Result<Explanation> {
    check(classifier, &method, options)?;
    let grid = first_grid(&method, options);
    let scores = cell_scores_given(
        classifier,
        view,
        grid,
        options.fill,
        options.incremental,
        None,
    )?;
    occlusion_from(classifier, view, &scores, method, options)
}

fn check(classifier: &Classifier, method: &Method, options: &OcclusionOptions) -> Result<()> {
    check_method(method)?;
    classifier.check_class(options.class)?;
    Ok(())
}

/// As [`occlusion`], from single-cell `scores` already computed for this view with the method's
/// first grid and the options' fill (see [`cell_scores`] and [`first_grid`]). The explanation's
/// timings include the time the scores took, so it reads as if computed alone.
pub fn occlusion_from(
    classifier: &Classifier,
    view: &View,
    scores: &CellScores,
    method: Method,
    options: &OcclusionOptions,
) -> Result<Explanation> {
    check(classifier, &method, options)?;
    let g = first_grid(&method, options);
    if scores.grid != g
        || scores.fill != options.fill
        || scores.inference.asked != options.incremental
    {
        return Err(Error::InvalidArgument(format!(
            "cell scores were computed for grid {} and fill {:?} (incremental: {}), the method needs grid {g} and fill {:?} (incremental: {})",
            scores.grid, scores.fill, scores.inference.asked, options.fill, options.incremental
        )));
    }
    let (w, h) = view.rgb.dimensions();
    let mut timings = scores.timings;
    let mut inference = scores.inference;
    let cells = scores.cells.clone();
    let probs = &scores.probabilities;

    let t = Instant::now();
    let class = options.class.unwrap_or_else(|| probs.argmax(0));
    let probability = probs.row(0)[class];
    let base_top = probs.top(0, 5);
    let p: Vec<f32> = (1..=cells.len()).map(|r| probs.row(r)[class]).collect();
    let argmax: Vec<usize> = (1..=cells.len()).map(|r| probs.argmax(r)).collect();
    let mut notes = Vec::new();
    let first = decide(method, cells, p, argmax, class, &mut notes);
    timings.rule = t.elapsed().as_secs_f64();
    let mut variants = probs.rows();
    let mut phases = vec![first];

    if let Method::DoubleDivision { k } = method {
        let t = Instant::now();
        let phase1 = &phases[0];
        let kept1: Vec<usize> = (0..phase1.cells.len())
            .filter(|i| !phase1.blacked.contains(i))
            .collect();
        // Phase 2 tiles the view with the kept cells' 3×3 sub-cells plus the blacked cells whole.
        let sub: Vec<Rect> = kept1
            .iter()
            .flat_map(|&i| phase1.cells[i].grid(3))
            .collect();
        let mut tiles = sub.clone();
        tiles.extend(phase1.blacked.iter().map(|&i| phase1.cells[i]));
        timings.rule += t.elapsed().as_secs_f64();
        if !sub.is_empty() {
            let t = Instant::now();
            let segmentation = Segmentation::from_cells(w, h, tiles)?;
            let perturber = Perturber::new(classifier, &view.rgb, &segmentation, options.fill)?
                .with_incremental(options.incremental);
            timings.preprocess += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut keep = KeepMatrix::new(segmentation.count());
            for i in 0..sub.len() {
                keep.push_hiding(&[i]);
            }
            let probs = perturber.run(&keep)?;
            timings.perturb_classify += t.elapsed().as_secs_f64();
            inference.add(Inference::of(&perturber, options.incremental, keep.rows()));
            let t = Instant::now();
            let p: Vec<f32> = (0..sub.len()).map(|r| probs.row(r)[class]).collect();
            let argmax: Vec<usize> = (0..sub.len()).map(|r| probs.argmax(r)).collect();
            phases.push(decide(
                Method::Statistical { k },
                sub,
                p,
                argmax,
                class,
                &mut notes,
            ));
            variants += keep.rows();
            timings.rule += t.elapsed().as_secs_f64();
        }
    }

    let t = Instant::now();
    let mut kept = Mask::filled(w, h, true);
    for phase in &phases {
        for &i in &phase.blacked {
            phase.cells[i].fill(&mut kept[..], w, false);
        }
    }
    timings.rule += t.elapsed().as_secs_f64();
    Ok(Explanation {
        method,
        options: *options,
        class,
        probability,
        base_top,
        phases,
        kept,
        variants,
        timings,
        inference,
        incremental_possible: classifier.incremental(),
        notes,
    })
}

fn check_method(method: &Method) -> Result<()> {
    match *method {
        Method::Arbitrary { fraction } if !(0.0..=1.0).contains(&fraction) => {
            Err(Error::InvalidArgument(format!(
                "--keep-fraction {fraction} must be between 0 and 1"
            )))
        }
        Method::Statistical { k } | Method::DoubleDivision { k } | Method::Elbow { k }
            if !k.is_finite() =>
        {
            Err(Error::InvalidArgument(format!("--k {k} must be finite")))
        }
        _ => Ok(()),
    }
}

fn decide(
    method: Method,
    cells: Vec<Rect>,
    p: Vec<f32>,
    argmax: Vec<usize>,
    class: usize,
    notes: &mut Vec<String>,
) -> Phase {
    let ranking = rules::rank(&p, &argmax, class);
    let (blacked, cut) = match method {
        Method::Arbitrary { fraction } => {
            let b = rules::arbitrary(&ranking, fraction);
            let n = b.len();
            (b, Cut::Count(n))
        }
        Method::Statistical { k } | Method::DoubleDivision { k } => {
            let (b, t) = rules::statistical(&p, &ranking, k);
            (b, Cut::Threshold(t))
        }
        Method::Elbow { k } => match rules::elbow(&p, &ranking) {
            Some((b, knee)) => (b, Cut::Knee(knee)),
            None => {
                let (b, t) = rules::statistical(&p, &ranking, k);
                notes.push(format!(
                    "elbow: the ranking's curve has no knee (it drops too fast or not at all); fell back to the statistical rule (k = {k})"
                ));
                (b, Cut::NoKnee(t))
            }
        },
    };
    Phase {
        cells,
        p,
        argmax,
        ranking,
        blacked,
        cut,
    }
}

impl Explanation {
    /// Fraction of the view kept as important.
    pub fn kept_fraction(&self) -> f64 {
        self.kept.kept_fraction()
    }

    /// The kept mask as run lengths over the row-major view, starting with a run of blacked-out
    /// (false) pixels, which may be empty.
    pub fn mask_runs(&self) -> Vec<usize> {
        self.kept.runs()
    }

    /// The machine-readable document (labels through `label`).
    pub fn to_json(&self, label: impl Fn(usize) -> Option<&'static str>) -> Value {
        let phases: Vec<Value> = self
            .phases
            .iter()
            .map(|ph| {
                let cut = match &ph.cut {
                    Cut::Count(n) => json!({ "rule": "count", "cells": n }),
                    Cut::Threshold(t) => json!({ "rule": "mean-k-std", "threshold": t }),
                    Cut::Knee(i) => json!({ "rule": "knee", "index": i }),
                    Cut::NoKnee(t) => json!({ "rule": "no-knee-fallback", "threshold": t }),
                };
                let cells: Vec<Value> = ph
                    .cells
                    .iter()
                    .enumerate()
                    .map(|(i, r)| json!({ "index": i, "x": r.x, "y": r.y, "w": r.w, "h": r.h, "p": ph.p[i], "argmax": ph.argmax[i] }))
                    .collect();
                json!({ "cells": cells, "ranking": ph.ranking, "blacked_out": ph.blacked, "cut": cut })
            })
            .collect();
        let parameter = match self.method {
            Method::Arbitrary { fraction } => json!({ "keep_fraction": fraction }),
            Method::Statistical { k } | Method::DoubleDivision { k } | Method::Elbow { k } => {
                json!({ "k": k })
            }
        };
        let fill = match self.options.fill {
            Fill::Black => json!("black"),
            Fill::Grey => json!("grey"),
            Fill::Mean => json!("mean"),
            Fill::Blur(s) => json!({ "blur": s }),
        };
        json!({
            "method": self.method.name(),
            "parameters": parameter,
            "grid": if matches!(self.method, Method::DoubleDivision { .. }) { 3 } else { self.options.grid },
            "fill": fill,
            "class": { "index": self.class, "label": label(self.class), "probability": self.probability },
            "base_top": self.base_top.iter().map(|p| p.to_json(label(p.class))).collect::<Vec<_>>(),
            "phases": phases,
            "variants": self.variants,
            "kept_fraction": self.kept_fraction(),
            "mask": { "width": self.kept.width(), "height": self.kept.height(), "encoding": "run lengths over row-major view pixels, alternating blacked-out/kept, starting with blacked-out", "runs": self.mask_runs() },
            "inference": self.inference.to_json(self.incremental_possible),
            "notes": self.notes,
            "timings_s": { "preprocess": self.timings.preprocess, "perturb_classify": self.timings.perturb_classify, "rule": self.timings.rule, "render": self.timings.render },
        })
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
