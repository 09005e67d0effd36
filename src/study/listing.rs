//! Which images a study takes: the folder's listing, the seeded one-per-category choice, and the
//! deterministic shards the list splits into.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rng::{fnv1a, splitmix64};
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

pub(super) fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
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
