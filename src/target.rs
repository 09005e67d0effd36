//! What an explanation explains ([`Target`]): the class's probability (the report's), its logit,
//! or the summed probability of a group of classes.
//!
//! A group is one more output column after the model's classes: its index is the model's class
//! count, and every explainer explains it as it would a class. The built-in groups are ImageNet
//! classes under one WordNet synset ([`GROUPS`]).

use std::str::FromStr;

use crate::model::{ModelInfo, OutputKind};
use crate::{Error, Result};

/// What an explanation explains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    /// `p(class)`: the probability the model gives the class (the report's; the default).
    #[default]
    Probability,
    /// The class's pre-softmax output, the quantity Captum users usually attribute. Only for
    /// models that output logits.
    Logit,
    /// The summed probability of a set of classes, e.g. every domestic cat.
    Group {
        /// The group's name (a built-in group's, or the indices as given).
        name: &'static str,
        /// Its classes, ascending, without repeats.
        classes: Vec<usize>,
    },
}

/// ImageNet groups by WordNet synset: name, synset, classes (ILSVRC-2012 indices).
pub const GROUPS: &[(&str, &str, &[std::ops::RangeInclusive<usize>])] = &[
    ("cat", "domestic_cat.n.01", &[281..=285]),
    ("big-cat", "big_cat.n.01", &[288..=293]),
    ("dog", "dog.n.01", &[151..=268]),
    ("bird", "bird.n.01", &[7..=24, 80..=100, 127..=146]),
    ("snake", "snake.n.01", &[52..=68]),
    (
        "car",
        "car.n.01",
        &[
            407..=407,
            436..=436,
            468..=468,
            511..=511,
            609..=609,
            627..=627,
            656..=656,
            661..=661,
            751..=751,
            817..=817,
        ],
    ),
];

impl Target {
    /// The command line's spelling: `probability`, `logit`, `group:NAME` or `group:I,J,...`.
    pub fn name(&self) -> String {
        match self {
            Target::Probability => "probability".into(),
            Target::Logit => "logit".into(),
            Target::Group { name, .. } => format!("group:{name}"),
        }
    }

    /// The explained quantity for a class or group labelled `label`: `p(label)`,
    /// `logit(label)` or `p(group label)`.
    pub fn quantity(&self, label: &str) -> String {
        match self {
            Target::Probability => format!("p({label})"),
            Target::Logit => format!("logit({label})"),
            Target::Group { .. } => format!("p(group {label})"),
        }
    }

    /// The document form.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Target::Probability => serde_json::json!({ "kind": "probability" }),
            Target::Logit => serde_json::json!({ "kind": "logit" }),
            Target::Group { name, classes } => {
                serde_json::json!({ "kind": "group", "name": name, "classes": classes })
            }
        }
    }
}

impl Target {
    /// Checks the target against `info`'s model.
    ///
    /// # Errors
    /// Logits of a model that outputs probabilities, or a group with a class the model lacks.
    pub fn check(&self, info: &ModelInfo) -> Result<()> {
        let classes = info.classes();
        match self {
            Target::Logit if info.output() == OutputKind::Probabilities => {
                Err(Error::InvalidArgument(format!(
                    "--target logit: model '{}' outputs probabilities (its graph ends in a softmax), so it has no logits to explain",
                    info.id()
                )))
            }
            Target::Group {
                name,
                classes: members,
            } => {
                if let Some(bad) = members.iter().find(|c| **c >= classes) {
                    return Err(Error::InvalidArgument(format!(
                        "--target group:{name}: class {bad} is not one of model '{}''s {classes} classes",
                        info.id()
                    )));
                }
                if members.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "--target group:{name} has no classes"
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: String| Error::InvalidArgument(format!("--target {text}: {why}"));
        match text {
            "probability" => return Ok(Target::Probability),
            "logit" => return Ok(Target::Logit),
            _ => {}
        }
        let Some(group) = text.strip_prefix("group:") else {
            return Err(bad(
                "probability, logit, group:NAME or group:I,J,... (class indices)".into(),
            ));
        };
        if let Some((name, _, ranges)) = GROUPS.iter().find(|(name, _, _)| *name == group) {
            let classes = ranges.iter().flat_map(|r| r.clone()).collect();
            return Ok(Target::Group { name, classes });
        }
        if group.is_empty() || !group.chars().all(|c| c.is_ascii_digit() || c == ',') {
            let names: Vec<&str> = GROUPS.iter().map(|g| g.0).collect();
            return Err(bad(format!(
                "unknown group (built-in: {}; or class indices I,J,...)",
                names.join(", ")
            )));
        }
        let mut classes = group
            .split(',')
            .map(|i| {
                i.parse::<usize>()
                    .map_err(|_| bad(format!("'{i}' is not a class index")))
            })
            .collect::<Result<Vec<usize>>>()?;
        classes.sort_unstable();
        classes.dedup();
        // Named by its indices, once per process.
        let name: &'static str = Box::leak(group.to_string().into_boxed_str());
        Ok(Target::Group { name, classes })
    }
}
