//! Dataset studies: the report's comparisons over a folder of images, one JSON line per image.
//!
//! A study explains every image with every explainer of its comparisons (pairs of
//! `model:method`, or each explainer against itself on a blurred copy), scores each explanation's
//! faithfulness, and records each comparison's Jaccard index. Each image's results are appended
//! to a JSONL log and synced before the next image starts, so a crash or Ctrl-C loses at most the
//! image in flight and a re-run resumes after the last complete line. A study splits into
//! deterministic shards (`index mod count`) that run as independent jobs; [`merge`] joins their
//! logs into one report equal to an unsharded run's.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::compare::{self, Explainer, FaithfulnessOptions, ViewCache};
use crate::model::{Classifier, ModelInfo, Precision};
use crate::render;
use crate::view::{View, load_photo};
use crate::{Error, Result};

/// File extensions a study picks up (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    "png", "jpg", "jpeg", "gif", "webp", "tif", "tiff", "bmp", "jfif",
];

/// One image of a study.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Position in the selected list (what shards split on).
    pub index: usize,
    /// Path relative to the study folder, `/`-separated.
    pub image: String,
    /// The category sub-folder, if the folder has the Caltech-256 layout.
    pub category: Option<String>,
    /// The file.
    pub path: PathBuf,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            entries.push((name, entry.path()));
        }
    }
    entries.sort();
    Ok(entries)
}

/// SplitMix64: the seeded choice of one image per category.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The images of `dir`: its category sub-folders' images (the Caltech-256 layout) and its own
/// image files, sorted by path. With `one_per_category`, one image per category chosen by
/// `seed` (the same seed picks the same images). `limit` keeps the first images of the list.
pub fn list_images(
    dir: &Path,
    one_per_category: bool,
    seed: u64,
    limit: Option<usize>,
) -> Result<Vec<Item>> {
    if !dir.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    let mut items = Vec::new();
    let mut categories = 0;
    for (name, path) in sorted_entries(dir)? {
        if path.is_dir() {
            let images: Vec<(String, PathBuf)> = sorted_entries(&path)?
                .into_iter()
                .filter(|(_, p)| p.is_file() && is_image(p))
                .collect();
            if images.is_empty() {
                continue;
            }
            categories += 1;
            let chosen: Vec<(String, PathBuf)> = if one_per_category {
                let pick = splitmix64(seed ^ fnv1a(&name)) % images.len() as u64;
                vec![images[pick as usize].clone()]
            } else {
                images
            };
            for (file, p) in chosen {
                items.push((format!("{name}/{file}"), Some(name.clone()), p));
            }
        } else if is_image(&path) && !one_per_category {
            items.push((name, None, path));
        }
    }
    if one_per_category && categories == 0 {
        return Err(Error::InvalidArgument(format!(
            "--one-per-category: {} has no category sub-folders with images",
            dir.display()
        )));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if items.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no images ({}), neither directly nor in category sub-folders",
            dir.display(),
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    items.truncate(limit.unwrap_or(usize::MAX));
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, (image, category, path))| Item {
            index,
            image,
            category,
            path,
        })
        .collect())
}

/// One of `count` deterministic parts of a study: the images whose index is `index mod count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This part, `0..count`.
    pub index: usize,
    /// Number of parts.
    pub count: usize,
}

impl Shard {
    /// The whole study.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` (`0 ≤ I < N`, as Kubernetes indexed jobs and `--array=0-N` number them).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(format!(
                "--shard '{text}' must be I/N with 0 <= I < N (e.g. 0/4 .. 3/4)"
            ))
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// Whether this shard takes the image at `index`.
    pub fn takes(&self, index: usize) -> bool {
        index % self.count == self.index
    }

    /// The file-name suffix of this shard's outputs (empty for the whole study).
    pub fn suffix(&self) -> String {
        if self.count == 1 {
            String::new()
        } else {
            format!(".shard-{}-of-{}", self.index, self.count)
        }
    }
}

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

    fn side_name(&self, side: Side) -> String {
        let name = self.specs.get(side.spec).map_or("?", |s| s.name.as_str());
        if side.blurred {
            format!("{name} (blurred)")
        } else {
            name.to_string()
        }
    }

    fn comparison_name(&self, (a, b): (Side, Side)) -> String {
        format!("{} vs {}", self.side_name(a), self.side_name(b))
    }

    /// The configuration as recorded in the log's header.
    fn to_json(&self, images: usize) -> Value {
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
        config
    }
}

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

/// One explanation in a study row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explained {
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

impl Explained {
    /// The kept mask, decoded.
    pub fn kept(&self) -> Vec<bool> {
        compare::mask_from_runs(&self.mask)
    }
}

/// One comparison on one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// `A vs B`.
    pub comparison: String,
    /// Side A.
    pub a: Explained,
    /// Side B.
    pub b: Explained,
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
    /// computed from the log as written, exactly as [`merge`] computes it from shard logs.
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
    let mut sides: HashMap<Side, (Explained, Vec<bool>)> = HashMap::new();
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
            let attribution = compare::run(classifier, view, &spec.explainer, cache)?;
            let faith =
                cache
                    .curves
                    .measure(classifier, view, &attribution, &config.faithfulness)?;
            let explained = Explained {
                name: config.side_name(side),
                class: attribution.class,
                label: spec.model.label(attribution.class).unwrap_or("?").into(),
                probability: attribution.probability,
                kept_fraction: attribution.kept_fraction(),
                deletion_auc: faith.deletion_auc,
                insertion_auc: faith.insertion_auc,
                seconds: attribution.seconds,
                faithfulness_seconds: faith.seconds,
                variants: attribution.variants,
                size: attribution.size,
                mask: compare::mask_runs(&attribution.kept),
            };
            sides.insert(side, (explained, attribution.kept));
        }
        let (Some((ea, ka)), Some((eb, kb))) = (sides.get(&a), sides.get(&b)) else {
            continue;
        };
        let view = |side: Side| {
            config
                .specs
                .get(side.spec)
                .and_then(|s| views.get(&(s.model.id(), side.blurred)))
                .map(|(v, ..)| v)
        };
        let (Some(va), Some(vb)) = (view(a), view(b)) else {
            continue;
        };
        row.outcomes.push(Outcome {
            comparison: config.comparison_name((a, b)),
            a: ea.clone(),
            b: eb.clone(),
            jaccard: compare::jaccard_views(va, ka, vb, kb)?,
        });
    }
    row.seconds = started.elapsed().as_secs_f64();
    Ok(row)
}

/// One comparison's table over a study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonTable {
    /// `A vs B`.
    pub comparison: String,
    /// Images compared.
    pub images: usize,
    /// Mean Jaccard index.
    pub mean_jaccard: f64,
    /// The five lowest Jaccard indices (worst agreement first).
    pub flop: Vec<Entry>,
    /// The five highest (best first).
    pub top: Vec<Entry>,
    /// Images where A and B predicted different classes.
    pub prediction_changes: Vec<Entry>,
}

/// One image of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Image index.
    pub index: usize,
    /// Image path relative to the study folder.
    pub image: String,
    /// Jaccard index.
    pub jaccard: f64,
    /// A's predicted label.
    pub a: String,
    /// B's predicted label.
    pub b: String,
}

/// One explainer's means over a study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainerTable {
    /// `model:method` (and ` (blurred)`).
    pub name: String,
    /// Images explained.
    pub images: usize,
    /// Mean deletion AUC.
    pub mean_deletion_auc: f64,
    /// Mean insertion AUC.
    pub mean_insertion_auc: f64,
    /// Mean fraction of the view kept.
    pub mean_kept_fraction: f64,
    /// Mean seconds per explanation (not deterministic).
    pub mean_seconds: f64,
    /// Mean seconds of its faithfulness curves (not deterministic).
    pub mean_faithfulness_seconds: f64,
}

/// A study's summary, as written to `summary*.json` and `summary*.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The configuration.
    pub config: Value,
    /// Shards the rows came from.
    pub shards: Vec<Shard>,
    /// Images of the study.
    pub images: usize,
    /// Images with results.
    pub studied: usize,
    /// Images that could not be studied, with the reason.
    pub errors: Vec<(String, String)>,
    /// Images of the study absent from every log (a shard not run or not finished).
    pub missing: usize,
    /// Per comparison.
    pub comparisons: Vec<ComparisonTable>,
    /// Per explainer.
    pub explainers: Vec<ExplainerTable>,
    /// Mean wall-clock seconds per studied image (not deterministic).
    pub mean_seconds_per_image: f64,
    /// Files written.
    pub files: Vec<String>,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Joins logs of one study (shards, possibly repeated) into a report written into `out` with
/// the given file-name `suffix`: `summary{suffix}.md`, `summary{suffix}.json` and one contact
/// sheet PNG per comparison (its FLOP 5 and TOP 5 overlays). Logs of different studies are
/// refused.
pub fn write_report(logs: &[Log], out: &Path, suffix: &str) -> Result<Report> {
    let first = logs
        .first()
        .ok_or_else(|| Error::InvalidArgument("no study log to report on".into()))?;
    let mut rows: BTreeMap<usize, &Row> = BTreeMap::new();
    let mut shards = Vec::new();
    for log in logs {
        if log.header.key != first.header.key {
            return Err(Error::InvalidArgument(
                "the logs come from studies with different settings".into(),
            ));
        }
        if !shards.contains(&log.header.shard) {
            shards.push(log.header.shard);
        }
        for (i, row) in &log.rows {
            rows.entry(*i).or_insert(row);
        }
    }
    shards.sort_by_key(|s| (s.count, s.index));
    let config = first.header.config.clone();
    let images = config["images"].as_u64().unwrap_or(0) as usize;
    let errors: Vec<(String, String)> = rows
        .values()
        .filter_map(|r| r.error.as_ref().map(|e| (r.image.clone(), e.clone())))
        .collect();
    let good: Vec<&Row> = rows
        .values()
        .copied()
        .filter(|r| r.error.is_none())
        .collect();

    let names: Vec<String> = config["comparisons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let entry = |r: &Row, o: &Outcome| Entry {
        index: r.index,
        image: r.image.clone(),
        jaccard: o.jaccard,
        a: o.a.label.clone(),
        b: o.b.label.clone(),
    };
    let mut comparisons = Vec::new();
    let mut explainer_names: Vec<String> = Vec::new();
    for name in &names {
        let mut entries: Vec<(Entry, &Row, &Outcome)> = good
            .iter()
            .flat_map(|r| {
                r.outcomes
                    .iter()
                    .filter(|o| &o.comparison == name)
                    .map(move |o| (entry(r, o), *r, o))
            })
            .collect();
        entries.sort_by(|x, y| {
            x.0.jaccard
                .total_cmp(&y.0.jaccard)
                .then(x.0.index.cmp(&y.0.index))
        });
        for (_, _, o) in entries.iter().take(1) {
            for n in [&o.a.name, &o.b.name] {
                if !explainer_names.contains(n) {
                    explainer_names.push(n.clone());
                }
            }
        }
        let flop: Vec<Entry> = entries.iter().take(5).map(|e| e.0.clone()).collect();
        let mut top: Vec<Entry> = entries.iter().rev().take(5).map(|e| e.0.clone()).collect();
        top.sort_by(|x, y| y.jaccard.total_cmp(&x.jaccard).then(x.index.cmp(&y.index)));
        comparisons.push(ComparisonTable {
            comparison: name.clone(),
            images: entries.len(),
            mean_jaccard: mean(entries.iter().map(|e| e.0.jaccard)),
            flop,
            top,
            prediction_changes: entries
                .iter()
                .filter(|(_, _, o)| o.a.label != o.b.label)
                .map(|e| e.0.clone())
                .collect(),
        });
    }
    for table in &mut comparisons {
        table.prediction_changes.sort_by_key(|e| e.index);
    }
    let explainers: Vec<ExplainerTable> = explainer_names
        .iter()
        .map(|name| {
            // Each explanation once per image, whichever comparisons it appears in.
            let seen: Vec<&Explained> = good
                .iter()
                .filter_map(|r| {
                    r.outcomes
                        .iter()
                        .flat_map(|o| [&o.a, &o.b])
                        .find(|e| &e.name == name)
                })
                .collect();
            ExplainerTable {
                name: name.clone(),
                images: seen.len(),
                mean_deletion_auc: mean(seen.iter().map(|e| e.deletion_auc)),
                mean_insertion_auc: mean(seen.iter().map(|e| e.insertion_auc)),
                mean_kept_fraction: mean(seen.iter().map(|e| e.kept_fraction)),
                mean_seconds: mean(seen.iter().map(|e| e.seconds)),
                mean_faithfulness_seconds: mean(seen.iter().map(|e| e.faithfulness_seconds)),
            }
        })
        .collect();

    let mut report = Report {
        config,
        shards,
        images,
        studied: good.len(),
        errors,
        missing: images.saturating_sub(rows.len()),
        comparisons,
        explainers,
        mean_seconds_per_image: mean(good.iter().map(|r| r.seconds)),
        files: Vec::new(),
    };

    for (k, table) in report.comparisons.iter().enumerate() {
        let pick = |entries: &[Entry]| -> Vec<(RgbImage, Vec<String>)> {
            entries
                .iter()
                .filter_map(|e| {
                    let row = rows.get(&e.index)?;
                    let o = row
                        .outcomes
                        .iter()
                        .find(|o| o.comparison == table.comparison)?;
                    Some((
                        outcome_overlay(row, o).unwrap_or_else(|_| missing_tile()),
                        vec![
                            format!("{}  J = {:.2}", short(&row.image, 26), o.jaccard),
                            short(&format!("{} / {}", o.a.label, o.b.label), 34),
                        ],
                    ))
                })
                .collect()
        };
        let sheet = render::contact_sheet(
            &[
                render::SheetRow {
                    title: "FLOP 5: lowest Jaccard".into(),
                    tiles: pick(&table.flop),
                },
                render::SheetRow {
                    title: "TOP 5: highest Jaccard".into(),
                    tiles: pick(&table.top),
                },
            ],
            &format!(
                "{}: mean Jaccard {:.3} over {} images (red: only A, green: only B, yellow: both)",
                table.comparison, table.mean_jaccard, table.images
            ),
        )?;
        let name = format!("contact-sheet{suffix}.{}.png", k + 1);
        render::save_png(&sheet, &out.join(&name))?;
        report.files.push(name);
    }
    let md = format!("summary{suffix}.md");
    let js = format!("summary{suffix}.json");
    report.files.push(md.clone());
    report.files.push(js.clone());
    render::write_atomic(&out.join(&md), markdown(&report).as_bytes())?;
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    render::write_atomic(&out.join(&js), text.as_bytes())?;
    Ok(report)
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

fn missing_tile() -> RgbImage {
    RgbImage::from_pixel(224, 224, image::Rgb([200, 200, 200]))
}

/// The colour superposition of one outcome, redrawn from the photo and the logged masks.
fn outcome_overlay(row: &Row, outcome: &Outcome) -> Result<RgbImage> {
    let photo = load_photo(&row.path)?.rgb;
    let view = |e: &Explained| -> Result<View> {
        let model = e.name.split(':').next().unwrap_or_default();
        let info = ModelInfo::find(model)?;
        Ok(View::new(&photo, info.preprocess()))
    };
    let (va, vb) = (view(&outcome.a)?, view(&outcome.b)?);
    let (ka, kb) = (outcome.a.kept(), outcome.b.kept());
    Ok(render::superpose(&photo, (&va, &ka), (&vb, &kb), 240))
}

/// The report in Markdown: the report's FLOP 5 / TOP 5 / MEAN table per comparison, the
/// faithfulness and timing table per explainer, prediction changes, errors.
pub fn markdown(report: &Report) -> String {
    let mut s = String::new();
    let dir = report.config["dir"].as_str().unwrap_or("?");
    s += &format!("# glassbox study of `{dir}`\n\n");
    s += &format!("{} of {} images studied", report.studied, report.images);
    if !report.errors.is_empty() {
        s += &format!(", {} could not be read", report.errors.len());
    }
    if report.missing > 0 {
        s += &format!(
            ", **{} missing** (a shard not run or not finished)",
            report.missing
        );
    }
    let shards: Vec<String> = report
        .shards
        .iter()
        .map(|sh| format!("{}/{}", sh.index, sh.count))
        .collect();
    s += &format!("; shards {}.\n\n", shards.join(", "));
    if let Some(blur) = report.config["blur"].as_f64() {
        s += &format!(
            "Blur study: each explainer on the photo against the same explainer on its Gaussian-blurred copy (sigma {blur} px at a 224-px shorter side).\n\n"
        );
    }
    let synthetic: Vec<&str> = report.config["explainers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["synthetic"].as_bool() == Some(true))
                .filter_map(|e| e["model"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if !synthetic.is_empty() {
        s += &format!(
            "**Warning:** {} ran with SYNTHETIC weights; their explanations mean nothing.\n\n",
            synthetic.join(", ")
        );
    }
    s += "## Jaccard index of the kept regions\n\n";
    s += "| comparison | images | MEAN | FLOP 5 (lowest) | TOP 5 (highest) |\n|---|---|---|---|---|\n";
    let list = |entries: &[Entry]| {
        entries
            .iter()
            .map(|e| format!("{} ({:.2})", e.image, e.jaccard))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    for t in &report.comparisons {
        s += &format!(
            "| {} | {} | {:.3} | {} | {} |\n",
            t.comparison,
            t.images,
            t.mean_jaccard,
            list(&t.flop),
            list(&t.top)
        );
    }
    s += "\n## Faithfulness and time per explainer\n\n";
    s += "Deletion AUC: p(class) as the most important pixels are hidden first (lower = more faithful). Insertion AUC: p(class) as they are revealed over a blurred copy (higher = more faithful).\n\n";
    s += "| explainer | images | deletion AUC | insertion AUC | kept | s / explanation | s / faithfulness |\n|---|---|---|---|---|---|---|\n";
    for e in &report.explainers {
        s += &format!(
            "| {} | {} | {:.3} | {:.3} | {:.0} % | {:.3} | {:.3} |\n",
            e.name,
            e.images,
            e.mean_deletion_auc,
            e.mean_insertion_auc,
            e.mean_kept_fraction * 100.0,
            e.mean_seconds,
            e.mean_faithfulness_seconds
        );
    }
    s += &format!(
        "\nMean wall-clock time per image, every explanation and curve included: {:.3} s.\n",
        report.mean_seconds_per_image
    );
    s += "\n## Prediction changes\n\n";
    let mut any = false;
    for t in &report.comparisons {
        for e in &t.prediction_changes {
            any = true;
            s += &format!("- {} ({}): {} → {}\n", e.image, t.comparison, e.a, e.b);
        }
    }
    if !any {
        s += "None: every comparison's two sides predicted the same class.\n";
    }
    if !report.errors.is_empty() {
        s += "\n## Images that could not be studied\n\n";
        for (image, error) in &report.errors {
            s += &format!("- {image}: {error}\n");
        }
    }
    let sheets: Vec<&String> = report
        .files
        .iter()
        .filter(|f| f.ends_with(".png"))
        .collect();
    if !sheets.is_empty() {
        s += "\n## Contact sheets (FLOP 5 and TOP 5 overlays)\n\n";
        for (f, t) in sheets.iter().zip(&report.comparisons) {
            s += &format!("![{}]({f})\n\n", t.comparison);
        }
    }
    s
}

/// Merges study logs (folders holding `study*.jsonl`, or the files) into `out`: one unsharded
/// `study.jsonl` and its report. Logs must come from the same study.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<Report> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found: Vec<PathBuf> = sorted_entries(input)?
                .into_iter()
                .filter(|(n, _)| n.starts_with("study") && n.ends_with(".jsonl"))
                .map(|(_, p)| p)
                .collect();
            if found.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "{} holds no study*.jsonl log",
                    input.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    let logs = files
        .iter()
        .map(|f| read_log(f, false))
        .collect::<Result<Vec<_>>>()?;
    let first = logs
        .first()
        .ok_or_else(|| Error::InvalidArgument("nothing to merge".into()))?;
    let mut rows: BTreeMap<usize, Row> = BTreeMap::new();
    for log in &logs {
        if log.header.key != first.header.key {
            return Err(Error::InvalidArgument(
                "the logs come from studies with different settings".into(),
            ));
        }
        for (i, r) in &log.rows {
            rows.entry(*i).or_insert_with(|| r.clone());
        }
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let header = Header {
        shard: Shard::ALL,
        ..first.header.clone()
    };
    let mut text = serde_json::to_string(&header).unwrap_or_default();
    text.push('\n');
    for row in rows.values() {
        text += &serde_json::to_string(row).unwrap_or_default();
        text.push('\n');
    }
    render::write_atomic(&out.join("study.jsonl"), text.as_bytes())?;
    let mut report = write_report(&logs, out, "")?;
    report.files.insert(0, "study.jsonl".into());
    Ok(report)
}
