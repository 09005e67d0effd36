//! Joining the logs of a study's shards into one unsharded log and its report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::listing::sorted_entries;
use super::{Header, Report, Row, Shard, read_log, write_report};
use crate::render;
use crate::{Error, Result};

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
