//! Dataset studies: the report's comparisons over a folder of images, one JSON line per image.
//!
//! A study explains every image with every explainer of its comparisons (pairs of
//! `model:method`, or each explainer against itself on a blurred copy), scores each explanation's
//! faithfulness, and records each comparison's Jaccard index. Each image's results are appended
//! to a JSONL log and synced before the next image starts, so a crash or Ctrl-C loses at most the
//! image in flight and a re-run resumes after the last complete line. A study splits into
//! deterministic shards (`index mod count`) that run as independent jobs; [`merge`](fn@merge)
//! joins their logs into one report equal to an unsharded run's.
//!
//! This file runs a study, image by image; `config` says what it compares, `listing` which
//! images it takes and how shards split them, `log` the resumable log, `report` the summary
//! and `merge` the joining of shard logs.

mod config;
mod listing;
mod log;
mod merge;
mod report;

pub use config::{Side, Spec, StudyConfig};
pub use listing::{IMAGE_EXTENSIONS, Item, Shard, list_images};
pub use log::{Header, Log, Outcome, Record, Row, read_log};
pub use merge::merge;
pub use report::{ComparisonTable, Entry, ExplainerTable, Report, markdown, write_report};

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;

use crate::compare::{self, Compared};
use crate::explain::ViewCache;
use crate::mask::jaccard_views;
use crate::model::{Classifier, ModelInfo};
use crate::render;
use crate::view::{View, load_photo};
use crate::{Error, Result};

/// What the study reports while it runs.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Images of this shard finished, resumed ones included.
    pub done: usize,
    /// Images of this shard.
    pub total: usize,
    /// Images found already done in the log when the run started.
    pub resumed: usize,
    /// The image just finished.
    pub row: &'a Row,
}

/// A study bound to its output folder: the selected images, this shard's log, what is done.
#[derive(Debug)]
pub struct Study {
    config: StudyConfig,
    shard: Shard,
    items: Vec<Item>,
    log_path: PathBuf,
    done: BTreeMap<usize, Row>,
    resumed: usize,
}

impl Study {
    /// Lists the images and opens (or resumes) this shard's log in `out`. A log written under a
    /// different configuration is refused rather than mixed.
    pub fn open(config: StudyConfig, shard: Shard, out: &Path) -> Result<Self> {
        if config.comparisons.is_empty() {
            return Err(Error::InvalidArgument(
                "a study needs at least one pair".into(),
            ));
        }
        let items = list_images(
            &config.dir,
            config.one_per_category,
            config.seed,
            config.limit,
        )?;
        let config_json = config.to_json(items.len());
        let header = Header {
            kind: "study".into(),
            version: 1,
            key: serde_json::to_string(&config_json).unwrap_or_default(),
            config: config_json,
            shard,
        };
        let log_path = out.join(format!("study{}.jsonl", shard.suffix()));
        let io = |source| Error::Io {
            path: log_path.clone(),
            source,
        };
        let mut done = BTreeMap::new();
        let existing = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        if existing > 0 {
            let log = read_log(&log_path, true)?;
            if log.header.key != header.key || log.header.shard != shard {
                return Err(Error::InvalidArgument(format!(
                    "{} holds a study with other settings (or of other images: the folder changed); use another --out or remove it",
                    log_path.display()
                )));
            }
            done = log.rows;
        } else {
            let line = serde_json::to_string(&header).unwrap_or_default();
            render::write_atomic(&log_path, format!("{line}\n").as_bytes())?;
            std::fs::File::open(&log_path)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
        }
        let resumed = done.len();
        Ok(Self {
            config,
            shard,
            items,
            log_path,
            done,
            resumed,
        })
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// This shard's images.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| self.shard.takes(i.index))
    }

    /// Images of this shard found done when the study was opened.
    pub fn resumed(&self) -> usize {
        self.resumed
    }

    /// The models the study needs, each once.
    pub fn models(&self) -> Vec<ModelInfo> {
        let mut models: Vec<ModelInfo> = Vec::new();
        for s in &self.config.specs {
            if !models.iter().any(|m| m.id() == s.model.id()) {
                models.push(s.model);
            }
        }
        models
    }

    /// Studies every image of this shard not yet in the log, appending and syncing one line per
    /// image. `classifiers` holds every model of [`Study::models`], by id, loaded at the
    /// configuration's precision.
    pub fn run(
        &mut self,
        classifiers: &HashMap<&str, Classifier>,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<()> {
        if let Some(c) = classifiers
            .values()
            .find(|c| c.precision() != self.config.precision)
        {
            return Err(Error::InvalidArgument(format!(
                "model '{}' computes in {}, the study in {}",
                c.info().id(),
                c.precision(),
                self.config.precision
            )));
        }
        if let Some(c) = classifiers
            .values()
            .find(|c| *c.target() != self.config.target)
        {
            return Err(Error::InvalidArgument(format!(
                "model '{}' explains {}, the study {}",
                c.info().id(),
                c.target().name(),
                self.config.target.name()
            )));
        }
        let io = |source| Error::Io {
            path: self.log_path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(io)?;
        let total = self.items().count();
        let pending: Vec<Item> = self
            .items()
            .filter(|i| !self.done.contains_key(&i.index))
            .cloned()
            .collect();
        for item in pending {
            let row = study_image(&self.config, &item, classifiers)?;
            let line = serde_json::to_string(&row).unwrap_or_default();
            file.write_all(format!("{line}\n").as_bytes())
                .and_then(|_| file.flush())
                .and_then(|_| file.sync_data())
                .map_err(io)?;
            self.done.insert(item.index, row);
            if let Some(row) = self.done.get(&item.index) {
                progress(Progress {
                    done: self.done.len(),
                    total,
                    resumed: self.resumed,
                    row,
                });
            }
        }
        Ok(())
    }

    /// The report over this shard's log, written into `out` (see [`write_report`]). It is
    /// computed from the log as written, exactly as [`merge`](fn@merge) computes it from shard
    /// logs.
    pub fn report(&self, out: &Path) -> Result<Report> {
        let log = read_log(&self.log_path, false)?;
        write_report(&[log], out, &self.shard.suffix())
    }
}

/// Gaussian blur of `photo` with `sigma` in pixels of the photo scaled to a 224-px shorter side.
pub fn blur_photo(photo: &RgbImage, sigma: f32) -> RgbImage {
    let shorter = photo.width().min(photo.height()).max(1) as f32;
    image::imageops::blur(photo, sigma * shorter / 224.0)
}

fn study_image(
    config: &StudyConfig,
    item: &Item,
    classifiers: &HashMap<&str, Classifier>,
) -> Result<Row> {
    let started = Instant::now();
    let mut row = Row {
        kind: "image".into(),
        index: item.index,
        image: item.image.clone(),
        category: item.category.clone(),
        path: item.path.clone(),
        error: None,
        outcomes: Vec::new(),
        seconds: 0.0,
    };
    let photo = match load_photo(&item.path) {
        Ok(p) => p.rgb,
        Err(e) => {
            row.error = Some(e.to_string());
            return Ok(row);
        }
    };
    // Shared by every explainer of the image: the blurred copy, each model's view, the occlusion
    // scores of each (model, copy, grid, fill) and the faithfulness curves of each pixel order.
    let blurred = config.blur.map(|s| blur_photo(&photo, s));
    let mut views: HashMap<(&str, bool), (View, ViewCache)> = HashMap::new();
    let mut sides: HashMap<Side, Compared> = HashMap::new();
    for &(a, b) in &config.comparisons {
        for side in [a, b] {
            if sides.contains_key(&side) {
                continue;
            }
            let spec = config
                .specs
                .get(side.spec)
                .ok_or_else(|| Error::InvalidArgument("a comparison names no explainer".into()))?;
            let classifier = classifiers.get(spec.model.id()).ok_or_else(|| {
                Error::InvalidArgument(format!("model '{}' was not loaded", spec.model.id()))
            })?;
            let source = match (&blurred, side.blurred) {
                (Some(b), true) => b,
                _ => &photo,
            };
            let (view, cache) = views
                .entry((spec.model.id(), side.blurred))
                .or_insert_with(|| {
                    (
                        View::new(source, spec.model.preprocess()),
                        ViewCache::default(),
                    )
                });
            let compared = compare::explain_side(
                &config.side_name(side),
                classifier,
                view,
                &spec.explainer,
                cache,
                Some(&config.faithfulness),
            )?;
            sides.insert(side, compared);
        }
        let (Some(sa), Some(sb)) = (sides.get(&a), sides.get(&b)) else {
            continue;
        };
        row.outcomes.push(Outcome {
            comparison: config.comparison_name((a, b)),
            a: Record::new(sa)?,
            b: Record::new(sb)?,
            jaccard: jaccard_views(
                &sa.view,
                &sa.attribution.kept,
                &sb.view,
                &sb.attribution.kept,
            )?,
        });
    }
    row.seconds = started.elapsed().as_secs_f64();
    Ok(row)
}
