//! The resumable study log: a header line, then one JSON line per image, read back whole or
//! repaired after a crash.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Shard;
use crate::compare::Compared;
use crate::mask::mask_from_runs;
use crate::{Error, Result};

/// The first line of a study log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always `study`.
    pub kind: String,
    /// Log format version.
    pub version: u32,
    /// The configuration, serialised: a log resumes only under the identical configuration.
    pub key: String,
    /// The configuration, readable.
    pub config: Value,
    /// Which part of the study the log holds.
    pub shard: Shard,
}

/// One explanation in a study row, as the log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `model:method`, with ` (blurred)` on the blurred copy.
    pub name: String,
    /// The explained class.
    pub class: usize,
    /// Its label.
    pub label: String,
    /// Its probability.
    pub probability: f32,
    /// Fraction of the view kept.
    pub kept_fraction: f64,
    /// Deletion AUC (lower = more faithful).
    pub deletion_auc: f64,
    /// Insertion AUC (higher = more faithful).
    pub insertion_auc: f64,
    /// Seconds the explanation took.
    pub seconds: f64,
    /// Seconds its faithfulness curves took.
    pub faithfulness_seconds: f64,
    /// Variants classified by the explainer.
    pub variants: usize,
    /// View size.
    pub size: (u32, u32),
    /// The kept mask as run lengths over the row-major view, starting with not-kept.
    pub mask: Vec<usize>,
}

impl Record {
    /// One side of a comparison as the log records it.
    ///
    /// # Errors
    /// When its faithfulness was not measured (a study always measures it).
    pub fn new(side: &Compared) -> Result<Self> {
        let attribution = &side.attribution;
        let faith = side.faithfulness.as_ref().ok_or_else(|| {
            Error::InvalidArgument(format!("'{}' has no faithfulness to record", side.name))
        })?;
        Ok(Self {
            name: side.name.clone(),
            class: attribution.class,
            label: side.label().into(),
            probability: attribution.probability,
            kept_fraction: attribution.kept_fraction(),
            deletion_auc: faith.deletion_auc,
            insertion_auc: faith.insertion_auc,
            seconds: attribution.seconds,
            faithfulness_seconds: faith.seconds,
            variants: attribution.variants,
            size: attribution.kept.size(),
            mask: attribution.kept.runs(),
        })
    }

    /// The kept mask, decoded.
    pub fn kept(&self) -> Vec<bool> {
        mask_from_runs(&self.mask)
    }
}

/// One comparison on one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// `A vs B`.
    pub comparison: String,
    /// Side A.
    pub a: Record,
    /// Side B.
    pub b: Record,
    /// Jaccard index of the two kept masks.
    pub jaccard: f64,
}

/// One image's line in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Always `image`.
    pub kind: String,
    /// Position in the study's image list.
    pub index: usize,
    /// Path relative to the study folder.
    pub image: String,
    /// Category, if any.
    pub category: Option<String>,
    /// The file.
    pub path: PathBuf,
    /// Why the image could not be studied (it is then skipped, also on resume).
    pub error: Option<String>,
    /// Every comparison's outcome.
    pub outcomes: Vec<Outcome>,
    /// Wall-clock seconds for the whole image.
    pub seconds: f64,
}

/// A study log read back: its header and complete rows by index.
#[derive(Debug, Clone)]
pub struct Log {
    /// The header.
    pub header: Header,
    /// Rows by image index.
    pub rows: BTreeMap<usize, Row>,
}

/// Reads a log. A last line without its newline (a write cut short by a crash) is ignored and,
/// with `repair`, cut off the file.
pub fn read_log(path: &Path, repair: bool) -> Result<Log> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    if complete < text.len() && repair {
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        file.set_len(complete as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    let corrupt = |line: usize, why: String| {
        Error::InvalidArgument(format!(
            "{} line {line} is not a study record: {why}",
            path.display()
        ))
    };
    let mut lines = text[..complete].lines().enumerate();
    let header: Header = match lines.next() {
        Some((_, line)) => serde_json::from_str(line).map_err(|e| corrupt(1, e.to_string()))?,
        None => {
            return Err(Error::InvalidArgument(format!(
                "{} is empty: not a study log",
                path.display()
            )));
        }
    };
    if header.kind != "study" {
        return Err(corrupt(1, "no study header".into()));
    }
    let mut rows = BTreeMap::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let row: Row = serde_json::from_str(line).map_err(|e| corrupt(n + 1, e.to_string()))?;
        rows.entry(row.index).or_insert(row);
    }
    Ok(Log { header, rows })
}
