//! What a study compares: its explainers (`model:method`), the sides of each comparison, and the
//! configuration recorded in the log's header.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::explain::Explainer;
use crate::metrics::FaithfulnessOptions;
use crate::model::{ModelInfo, Precision};
use crate::target::Target;

/// An explainer on a model, named as the command line names it (`googlenet:arbitrary`).
#[derive(Debug, Clone)]
pub struct Spec {
    /// `model:method`.
    pub name: String,
    /// The model.
    pub model: ModelInfo,
    /// The explainer with all its parameters.
    pub explainer: Explainer,
}

/// One side of a comparison: an explainer on the photo or on its blurred copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Side {
    /// Index into the study's explainers.
    pub spec: usize,
    /// On the blurred copy.
    pub blurred: bool,
}

/// What a study compares, on which images.
#[derive(Debug, Clone)]
pub struct StudyConfig {
    /// The image folder.
    pub dir: PathBuf,
    /// Explainers, each once.
    pub specs: Vec<Spec>,
    /// Comparisons as pairs of sides.
    pub comparisons: Vec<(Side, Side)>,
    /// One image per category, chosen by `seed`.
    pub one_per_category: bool,
    /// Seed of the per-category choice.
    pub seed: u64,
    /// Keep the first images only.
    pub limit: Option<usize>,
    /// Gaussian sigma of the blurred copy, in pixels of the photo scaled to a 224-px shorter
    /// side (the models' scale), so the blur is the same at any resolution.
    pub blur: Option<f32>,
    /// Faithfulness measurement.
    pub faithfulness: FaithfulnessOptions,
    /// What the models compute in; a log resumes only at the same precision.
    pub precision: Precision,
    /// What every explanation explains; a log resumes only with the same target.
    pub target: Target,
}

impl StudyConfig {
    /// A study of `pairs` (indices into `specs`): each pair compared on the photo, or, with
    /// `blur`, each explainer compared with itself on the blurred copy.
    pub fn comparisons_for(pairs: &[(usize, usize)], blur: bool) -> Vec<(Side, Side)> {
        if blur {
            let mut seen = Vec::new();
            for &(a, b) in pairs {
                for s in [a, b] {
                    if !seen.contains(&s) {
                        seen.push(s);
                    }
                }
            }
            seen.into_iter()
                .map(|spec| {
                    (
                        Side {
                            spec,
                            blurred: false,
                        },
                        Side {
                            spec,
                            blurred: true,
                        },
                    )
                })
                .collect()
        } else {
            pairs
                .iter()
                .map(|&(a, b)| {
                    (
                        Side {
                            spec: a,
                            blurred: false,
                        },
                        Side {
                            spec: b,
                            blurred: false,
                        },
                    )
                })
                .collect()
        }
    }

    pub(super) fn side_name(&self, side: Side) -> String {
        let name = self.specs.get(side.spec).map_or("?", |s| s.name.as_str());
        if side.blurred {
            format!("{name} (blurred)")
        } else {
            name.to_string()
        }
    }

    pub(super) fn comparison_name(&self, (a, b): (Side, Side)) -> String {
        format!("{} vs {}", self.side_name(a), self.side_name(b))
    }

    /// The configuration as recorded in the log's header.
    pub(super) fn to_json(&self, images: usize) -> Value {
        let mut config = json!({
            "dir": self.dir,
            "explainers": self.specs.iter().map(|s| json!({
                "name": s.name, "model": s.model.id(), "synthetic": s.model.synthetic(), "explainer": s.explainer.describe(),
            })).collect::<Vec<_>>(),
            "comparisons": self.comparisons.iter().map(|&c| self.comparison_name(c)).collect::<Vec<_>>(),
            "one_per_category": self.one_per_category,
            "seed": self.seed,
            "limit": self.limit,
            "blur": self.blur,
            "faithfulness": { "steps": self.faithfulness.steps, "insertion_blur": self.faithfulness.insertion_blur },
            "images": images,
        });
        // Recorded only when not the default, so that f32 logs of earlier versions still resume.
        if self.precision != Precision::F32
            && let Some(obj) = config.as_object_mut()
        {
            obj.insert("precision".into(), json!(self.precision.to_string()));
        }
        if self.target != Target::Probability
            && let Some(obj) = config.as_object_mut()
        {
            obj.insert("target".into(), self.target.to_json());
        }
        config
    }
}
