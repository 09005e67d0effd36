//! Two explanations of one photo side by side: each explainer run on its own model's view, both
//! faithfulness curves, and the Jaccard index of the two kept masks over the region both models
//! saw (the report's red/green/yellow overlay is drawn from the same masks by
//! [`crate::output::write_comparison`]).

use image::RgbImage;
use serde_json::{Value, json};

use crate::attribution::Attribution;
use crate::explain::{self, Explainer, ViewCache};
use crate::mask::jaccard_views;
use crate::metrics::{Faithfulness, FaithfulnessOptions};
use crate::model::{Classifier, ModelInfo, Precision};
use crate::view::View;
use crate::{Error, Result};

/// One explainer of a comparison, on its model.
#[derive(Clone, Copy)]
pub struct Contender<'a> {
    /// `model:method`, as the user named it.
    pub name: &'a str,
    /// The model, loaded.
    pub classifier: &'a Classifier,
    /// The explainer and its parameters.
    pub explainer: &'a Explainer,
}

/// One side of a comparison: who explained, on which view, and what came out.
#[derive(Debug, Clone)]
pub struct Compared {
    /// `model:method`.
    pub name: String,
    /// The model.
    pub model: ModelInfo,
    /// The device it ran on.
    pub device: String,
    /// The precision it computed in.
    pub precision: Precision,
    /// The explainer and its parameters.
    pub explainer: Explainer,
    /// The model's input view of the photo.
    pub view: View,
    /// The explanation.
    pub attribution: Attribution,
    /// The explained class's (or group's) label.
    pub class_label: &'static str,
    /// What was explained, e.g. `p(Egyptian cat)`.
    pub quantity: String,
    /// Its deletion and insertion curves, when asked for.
    pub faithfulness: Option<Faithfulness>,
}

impl Compared {
    /// The explained class's label.
    pub fn label(&self) -> &'static str {
        self.class_label
    }

    /// The document form of this side.
    pub fn to_json(&self) -> Value {
        let attr = &self.attribution;
        json!({
            "name": self.name, "model": { "id": self.model.id(), "synthetic": self.model.synthetic() },
            "explainer": self.explainer.describe(),
            "class": { "index": attr.class, "label": self.label(), "probability": attr.probability },
            "kept_fraction": attr.kept_fraction(), "variants": attr.variants, "seconds": attr.seconds,
            "faithfulness": self.faithfulness.as_ref().map(Faithfulness::to_json),
            "mask": { "width": attr.kept.width(), "height": attr.kept.height(), "runs": attr.kept.runs() },
        })
    }
}

/// Two explanations of one photo.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Explainer A.
    pub a: Compared,
    /// Explainer B.
    pub b: Compared,
    /// The Jaccard index of the two kept masks (see [`jaccard_views`]).
    pub jaccard: f64,
}

impl Comparison {
    /// Whether both explained the same label.
    pub fn same_prediction(&self) -> bool {
        self.a.label() == self.b.label()
    }
}

/// Explains `view` with `explainer` on its model and, with `faithfulness`, measures its curves:
/// one side of a comparison, as `compare` and a study's rows record it. `cache` is the view's
/// (see [`ViewCache`]): explainers on one view share what they can.
pub fn explain_side(
    name: &str,
    classifier: &Classifier,
    view: &View,
    explainer: &Explainer,
    cache: &mut ViewCache,
    faithfulness: Option<&FaithfulnessOptions>,
) -> Result<Compared> {
    let attribution = explain::run(classifier, view, explainer, cache)?.attribution();
    let faithfulness = faithfulness
        .map(|o| cache.curves.measure(classifier, view, &attribution, o))
        .transpose()?;
    Ok(Compared {
        class_label: classifier.label(attribution.class).unwrap_or("?"),
        quantity: classifier.quantity(attribution.class),
        name: name.to_string(),
        model: classifier.info(),
        device: classifier.compute().to_string(),
        precision: classifier.precision(),
        explainer: *explainer,
        view: view.clone(),
        attribution,
        faithfulness,
    })
}

/// Explains `photo` with both contenders and compares them. Two explainers on one model share
/// its view and what explanations of one view can share (see [`ViewCache`]), faithfulness
/// curves included.
pub fn compare(
    photo: &RgbImage,
    a: Contender<'_>,
    b: Contender<'_>,
    faithfulness: Option<&FaithfulnessOptions>,
) -> Result<Comparison> {
    let mut views: Vec<(&'static str, View, ViewCache)> = Vec::new();
    let mut sides = Vec::with_capacity(2);
    for contender in [a, b] {
        let info = contender.classifier.info();
        let index = match views.iter().position(|(id, ..)| *id == info.id()) {
            Some(i) => i,
            None => {
                let view = View::new(photo, info.preprocess());
                views.push((info.id(), view, ViewCache::default()));
                views.len() - 1
            }
        };
        let (_, view, cache) = &mut views[index];
        sides.push(explain_side(
            contender.name,
            contender.classifier,
            view,
            contender.explainer,
            cache,
            faithfulness,
        )?);
    }
    let (Some(b), Some(a)) = (sides.pop(), sides.pop()) else {
        return Err(Error::InvalidArgument(
            "a comparison needs two sides".into(),
        ));
    };
    let jaccard = jaccard_views(&a.view, &a.attribution.kept, &b.view, &b.attribution.kept)?;
    Ok(Comparison { a, b, jaccard })
}
