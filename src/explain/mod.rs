//! Explainers: the report's occlusion rules (arbitrary, statistical, double division, elbow),
//! sliding-window occlusion, LIME, KernelSHAP and RISE, behind one [`Explainer`] type and one
//! [`run`].
//!
//! Every explainer works on the model's input view, so masks from different methods and
//! models are directly comparable, and every variant goes through the
//! [`Perturber`](crate::perturb::Perturber). Explanations of one view share what they can through a
//! [`ViewCache`]: the view's own prediction, each grid's single-cell scores and each pixel
//! order's faithfulness curves are classified once.

pub mod kernelshap;
pub mod lime;
mod occlusion;
pub mod rise;
pub mod rules;
pub mod sliding;

use serde_json::{Value, json};

use kernelshap::{KernelShapExplanation, KernelShapOptions, kernel_shap_given};
use lime::{LimeExplanation, LimeOptions, Segmenter, lime_given};
pub use occlusion::{
    CellScores, Cut, Explanation, Inference, Method, OcclusionOptions, Phase, Timings, cell_scores,
    cell_scores_given, first_grid, occlusion, occlusion_from,
};
use rise::{RiseExplanation, RiseOptions, rise_given};
use sliding::{SlidingExplanation, SlidingOptions, sliding_given};

use crate::Result;
use crate::attribution::Attribution;
use crate::mask::Mask;
use crate::metrics::FaithfulnessCache;
use crate::model::Classifier;
use crate::perturb::Fill;
use crate::view::View;

/// An explainer and all its parameters: one of the occlusion rules, LIME or RISE.
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
    /// KernelSHAP over segments.
    KernelShap(KernelShapOptions),
    /// RISE.
    Rise(RiseOptions),
    /// Sliding-window occlusion.
    Sliding(SlidingOptions),
}

impl Explainer {
    /// The methods [`Explainer::named`] knows, by their command-line names.
    pub const NAMES: &[&str] = &[
        "arbitrary",
        "statistical",
        "double-division",
        "elbow",
        "sliding",
        "lime",
        "kernelshap",
        "rise",
    ];

    /// The method named `name` (one of [`Explainer::NAMES`]) with the command line's defaults,
    /// for the bindings (`capi/`, `python/`), which name methods as the command line does.
    ///
    /// # Errors
    /// An unknown name.
    pub fn named(name: &str) -> Result<Explainer> {
        let occlusion = |method| Explainer::Occlusion {
            method,
            options: OcclusionOptions::default(),
        };
        Ok(match name {
            "arbitrary" => occlusion(Method::Arbitrary { fraction: 0.7 }),
            "statistical" => occlusion(Method::Statistical { k: 1.0 }),
            "double-division" => occlusion(Method::DoubleDivision { k: 1.0 }),
            "elbow" => occlusion(Method::Elbow { k: 1.0 }),
            "sliding" => Explainer::Sliding(SlidingOptions::default()),
            "lime" => Explainer::Lime(LimeOptions::default()),
            "kernelshap" => Explainer::KernelShap(KernelShapOptions::default()),
            "rise" => Explainer::Rise(RiseOptions::default()),
            other => {
                return Err(crate::Error::InvalidArgument(format!(
                    "unknown method '{other}' ({})",
                    Self::NAMES.join(", ")
                )));
            }
        })
    }

    /// The method's short name (`arbitrary`, …, `lime`, `rise`).
    pub fn name(&self) -> &'static str {
        match self {
            Explainer::Occlusion { method, .. } => method.name(),
            Explainer::Lime(_) => "lime",
            Explainer::KernelShap(_) => "kernelshap",
            Explainer::Rise(_) => "rise",
            Explainer::Sliding(_) => "sliding",
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
                let mut doc = json!({ "method": method.name(), "parameters": parameter, "grid": first_grid(method, options),
                        "fill": options.fill.name(), "class": options.class });
                // Only when off, so that records of the default stay as they were.
                if let (false, Some(obj)) = (options.incremental, doc.as_object_mut()) {
                    obj.insert("incremental".into(), json!(false));
                }
                doc
            }
            Explainer::Lime(o) => {
                let mut doc = json!({ "method": "lime", "samples": o.samples, "seed": o.seed, "segments": segments_name(&o.segmenter),
                        "fill": o.fill.name(), "features": o.features, "class": o.class });
                // Only with several runs, so that records of single runs stay as they were.
                if let (true, Some(obj)) = (o.runs > 1, doc.as_object_mut()) {
                    obj.insert("runs".into(), json!(o.runs));
                }
                // `--samples auto` is another explainer than a fixed count: a study's log must
                // not resume one as the other.
                if let (Some(a), Some(obj)) = (o.adaptive, doc.as_object_mut()) {
                    obj.insert("samples".into(), json!("auto"));
                    obj.insert("max_samples".into(), json!(a.max_samples));
                }
                doc
            }
            Explainer::KernelShap(o) => {
                json!({ "method": "kernelshap", "samples": o.samples.name(), "seed": o.seed,
                        "segments": segments_name(&o.segmenter), "fill": o.fill.name(),
                        "features": o.features, "class": o.class })
            }
            Explainer::Rise(o) => {
                json!({ "method": "rise", "masks": o.masks, "cells": o.cells, "keep_prob": o.keep_prob,
                        "seed": o.seed, "keep_fraction": o.keep_fraction, "fill": o.fill.name(), "class": o.class })
            }
            Explainer::Sliding(o) => {
                let mut doc = json!({ "method": "sliding", "window": o.window, "stride": o.stride,
                        "keep_fraction": o.keep_fraction, "fill": o.fill.name(), "class": o.class });
                if let (false, Some(obj)) = (o.incremental, doc.as_object_mut()) {
                    obj.insert("incremental".into(), json!(false));
                }
                doc
            }
        }
    }

    /// The same explainer for `class` instead of the top prediction.
    pub fn for_class(&self, class: usize) -> Explainer {
        let mut explainer = *self;
        match &mut explainer {
            Explainer::Occlusion { options, .. } => options.class = Some(class),
            Explainer::Lime(o) => o.class = Some(class),
            Explainer::KernelShap(o) => o.class = Some(class),
            Explainer::Rise(o) => o.class = Some(class),
            Explainer::Sliding(o) => o.class = Some(class),
        }
        explainer
    }

    /// The fill of hidden parts (also deletion's target).
    pub fn fill(&self) -> Fill {
        match self {
            Explainer::Occlusion { options, .. } => options.fill,
            Explainer::Lime(o) => o.fill,
            Explainer::KernelShap(o) => o.fill,
            Explainer::Rise(o) => o.fill,
            Explainer::Sliding(o) => o.fill,
        }
    }
}

/// A segmenter as explainer records name it (`quickshift`, `slic:N`, `grid:G`).
fn segments_name(segmenter: &Segmenter) -> String {
    match segmenter {
        Segmenter::Quickshift(_) => "quickshift".to_string(),
        Segmenter::Slic(s) => format!("slic:{}", s.segments),
        Segmenter::Grid(g) => format!("grid:{g}"),
    }
}

/// What any [`Explainer`] found: the whole explanation of its method.
#[derive(Debug, Clone, PartialEq)]
pub enum Explained {
    /// An occlusion rule's explanation.
    Occlusion(Explanation),
    /// LIME's explanation.
    Lime(LimeExplanation),
    /// KernelSHAP's explanation.
    KernelShap(KernelShapExplanation),
    /// RISE's explanation.
    Rise(RiseExplanation),
    /// Sliding-window occlusion's explanation.
    Sliding(SlidingExplanation),
}

impl Explained {
    /// The method's short name.
    pub fn name(&self) -> &'static str {
        match self {
            Explained::Occlusion(e) => e.method.name(),
            Explained::Lime(_) => "lime",
            Explained::KernelShap(_) => "kernelshap",
            Explained::Rise(_) => "rise",
            Explained::Sliding(_) => "sliding",
        }
    }

    /// The explained class.
    pub fn class(&self) -> usize {
        match self {
            Explained::Occlusion(e) => e.class,
            Explained::Lime(e) => e.class,
            Explained::KernelShap(e) => e.class,
            Explained::Rise(e) => e.class,
            Explained::Sliding(e) => e.class,
        }
    }

    /// The kept (important) view pixels.
    pub fn kept(&self) -> &Mask {
        match self {
            Explained::Occlusion(e) => &e.kept,
            Explained::Lime(e) => &e.kept,
            Explained::KernelShap(e) => &e.kept,
            Explained::Rise(e) => &e.kept,
            Explained::Sliding(e) => &e.kept,
        }
    }

    /// The explanation in the form comparisons and faithfulness need.
    pub fn attribution(&self) -> Attribution {
        match self {
            Explained::Occlusion(e) => Attribution::from(e),
            Explained::Lime(e) => Attribution::from(e),
            Explained::KernelShap(e) => Attribution::from(e),
            Explained::Rise(e) => Attribution::from(e),
            Explained::Sliding(e) => Attribution::from(e),
        }
    }

    /// Sets the seconds spent drawing the explanation's pictures.
    pub fn set_render_seconds(&mut self, seconds: f64) {
        match self {
            Explained::Occlusion(e) => e.timings.render = seconds,
            Explained::Lime(e) => e.timings.render = seconds,
            Explained::KernelShap(e) => e.timings.render = seconds,
            Explained::Rise(e) => e.timings.render = seconds,
            Explained::Sliding(e) => e.timings.render = seconds,
        }
    }

    /// The machine-readable document (labels through `label`).
    pub fn to_json(&self, label: impl Fn(usize) -> Option<&'static str>) -> Value {
        match self {
            Explained::Occlusion(e) => e.to_json(label),
            Explained::Lime(e) => e.to_json(label),
            Explained::KernelShap(e) => e.to_json(label),
            Explained::Rise(e) => e.to_json(label),
            Explained::Sliding(e) => e.to_json(label),
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
) -> Result<Explained> {
    match explainer {
        Explainer::Occlusion { method, options } => {
            let g = first_grid(method, options);
            let found = cache.scores.iter().position(|s| {
                s.grid == g && s.fill == options.fill && s.inference.asked == options.incremental
            });
            let index = match found {
                Some(i) => i,
                None => {
                    let scores = cell_scores_given(
                        classifier,
                        view,
                        g,
                        options.fill,
                        options.incremental,
                        cache.base(),
                    )?;
                    cache.base = Some(scores.probabilities.row(0).to_vec());
                    cache.scores.push(scores);
                    cache.scores.len() - 1
                }
            };
            let e = occlusion_from(classifier, view, &cache.scores[index], *method, options)?;
            Ok(Explained::Occlusion(e))
        }
        Explainer::Lime(options) => {
            let e = lime_given(classifier, view, options, cache.base())?;
            if cache.base.is_none() {
                cache.base = Some(e.original.clone());
            }
            Ok(Explained::Lime(e))
        }
        Explainer::KernelShap(options) => {
            let e = kernel_shap_given(classifier, view, options, cache.base())?;
            if cache.base.is_none() {
                cache.base = Some(e.original.clone());
            }
            Ok(Explained::KernelShap(e))
        }
        Explainer::Rise(options) => {
            let e = rise_given(classifier, view, options, cache.base())?;
            if cache.base.is_none() {
                cache.base = Some(e.original.clone());
            }
            Ok(Explained::Rise(e))
        }
        Explainer::Sliding(options) => {
            let e = sliding_given(classifier, view, options, cache.base())?;
            if cache.base.is_none() {
                cache.base = Some(e.original.clone());
            }
            Ok(Explained::Sliding(e))
        }
    }
}
