//! Pinned outputs: `explain`, `compare` and `study` on the committed photos write exactly the
//! files recorded in `tests/data/golden/outputs.json`, so that restructuring the code cannot
//! change what a user gets without a test saying so.
//!
//! Every output file is pinned:
//! - a JSON document (and every line of a `.jsonl` log) by its whole content, less its
//!   wall-clock fields (any key containing `seconds`, and `timings_s`);
//! - `summary.md` by its text with the seconds column's numbers blanked;
//! - a PNG by an FNV-1a digest of its bytes.
//!
//! The CPU's floating-point results depend on its vector level (AVX-512 sums in other orders
//! than AVX2). On a machine of the level the golden file was blessed on, everything must be
//! identical to the byte. On another level, documents must agree exactly in every string,
//! integer, key and length, and in every float to 1e-4 (of the value or absolutely); PNGs must
//! exist, with the same names, and decode to the same size.
//!
//! `GLASSBOX_BLESS=1 cargo test --release --test it golden` rewrites the golden file: do it on
//! purpose only, when an output is meant to change, and say why in the commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::{data, glassbox, path_str, scratch, text};

/// The golden file.
fn golden_path() -> PathBuf {
    data("golden").join("outputs.json")
}

/// The jobs pinned: each a name (its output folder) and its arguments, `{out}` standing for it.
fn jobs() -> Vec<(&'static str, Vec<String>)> {
    let chelsea = data("chelsea.png");
    let coffee = data("coffee.png");
    let photos = data("study").join("photos");
    let p = |path: &Path| path_str(path).to_string();
    let s = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut elbow = s(&["explain", "--device", "cpu", "--method", "elbow"]);
    elbow.extend([p(&chelsea), p(&coffee)]);
    let mut double = s(&[
        "explain",
        "--device",
        "cpu",
        "--method",
        "double-division",
        "--fill",
        "blur",
    ]);
    double.push(p(&chelsea));
    let mut lime = s(&[
        "explain",
        "--device",
        "cpu",
        "--method",
        "lime",
        "--samples",
        "120",
        "--seed",
        "7",
        "--signed",
    ]);
    lime.push(p(&coffee));
    let mut compare = s(&[
        "compare",
        "--device",
        "cpu",
        "--a",
        "efficientnet-lite0:arbitrary",
        "--b",
        "planted-centre:statistical",
        "--grid",
        "8",
    ]);
    compare.push(p(&chelsea));
    let mut study = s(&["study"]);
    study.push(p(&photos));
    study.extend(s(&[
        "--device",
        "cpu",
        "--pairs",
        "efficientnet-lite0:arbitrary,efficientnet-lite0:elbow",
        "--pairs",
        "efficientnet-lite0:statistical,planted-corner:arbitrary",
        "--grid",
        "6",
        "--steps",
        "8",
    ]));
    vec![
        ("explain-elbow", elbow),
        ("explain-double-division", double),
        ("explain-lime", lime),
        ("compare", compare),
        ("study", study),
    ]
}

/// A document without its wall-clock fields, the checkout's own path as `<repo>` (CI clones
/// elsewhere), and arrays of over 1,000 items (LIME's per-pixel segment labels) as a digest.
fn deterministic(mut v: Value) -> Value {
    match &mut v {
        Value::String(s) => *s = s.replace(env!("CARGO_MANIFEST_DIR"), "<repo>"),
        Value::Array(items) if items.len() > 1000 => {
            let text = serde_json::to_string(items).unwrap_or_default();
            return json!({ "items": items.len(), "digest": digest(text.as_bytes()) });
        }
        Value::Object(map) => {
            map.retain(|k, _| !k.contains("seconds") && k != "timings_s");
            for value in map.values_mut() {
                *value = deterministic(value.take());
            }
        }
        Value::Array(items) => {
            for value in items.iter_mut() {
                *value = deterministic(value.take());
            }
        }
        _ => {}
    }
    v
}

/// `summary.md` with the numbers of its seconds columns blanked: every table cell of a column
/// whose header mentions seconds or `s/`.
fn deterministic_markdown(md: &str) -> String {
    let mut timed: Vec<usize> = Vec::new();
    let mut lines = Vec::new();
    for line in md.lines() {
        if !line.starts_with('|') {
            timed.clear();
            // "Mean wall-clock time per image, …: 0.572 s."
            let line = match line.split_once(": ") {
                Some((text, _)) if text.contains("wall-clock") => format!("{text}: …"),
                _ => line.to_string(),
            };
            lines.push(line);
            continue;
        }
        let cells: Vec<&str> = line.split('|').collect();
        if timed.is_empty()
            && !cells
                .iter()
                .all(|c| c.trim().chars().all(|ch| ch == '-' || ch == ':'))
        {
            let headers: Vec<usize> = cells
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    let c = c.to_lowercase();
                    c.contains("second") || c.trim().starts_with("s /")
                })
                .map(|(i, _)| i)
                .collect();
            if !headers.is_empty() {
                timed = headers;
                lines.push(line.to_string());
                continue;
            }
        }
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let numeric = c.trim().parse::<f64>().is_ok();
                if timed.contains(&i) && numeric {
                    " … ".to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
        lines.push(cells.join("|"));
    }
    lines.join("\n")
}

/// FNV-1a over `bytes`, as 16 hex digits.
fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What is pinned of one output file.
fn pin(path: &Path) -> Value {
    let bytes = std::fs::read(path).expect("read output");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".png") {
        let img = image::load_from_memory(&bytes).expect("decode PNG");
        json!({ "png": digest(&bytes), "size": [img.width(), img.height()] })
    } else if name.ends_with(".jsonl") {
        let lines: Vec<Value> = text(&bytes)
            .lines()
            .map(|l| deterministic(serde_json::from_str(l).expect("JSON line")))
            .collect();
        json!({ "jsonl": lines })
    } else if name.ends_with(".json") {
        json!({ "json": deterministic(serde_json::from_slice(&bytes).expect("JSON")) })
    } else if name.ends_with(".md") {
        let md = text(&bytes).replace(env!("CARGO_MANIFEST_DIR"), "<repo>");
        json!({ "text": deterministic_markdown(&md) })
    } else {
        json!({ "bytes": digest(&bytes) })
    }
}

/// Runs every job and pins every file it wrote, by job and file name.
fn outputs() -> BTreeMap<String, Value> {
    let mut pinned = BTreeMap::new();
    for (job, args) in jobs() {
        let out = scratch(&format!("golden-{job}"));
        let mut args = args;
        args.extend(["--out".to_string(), path_str(&out).to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = glassbox(&refs);
        assert!(run.status.success(), "{job}: {}", text(&run.stderr));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
            .expect("out dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{job} wrote nothing");
        for file in files {
            let name = file.file_name().and_then(|n| n.to_str()).expect("name");
            pinned.insert(format!("{job}/{name}"), pin(&file));
        }
    }
    pinned
}

/// The CPU vector level results depend on.
fn level() -> String {
    format!("{:?}", glassbox::model::simd::detected())
}

/// Floats equal to 1e-4 of the larger or absolutely; everything else exactly.
fn close(a: &Value, b: &Value, at: &str, problems: &mut Vec<String>) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            if (x - y).abs() > 1e-4 * x.abs().max(y.abs()).max(1.0) {
                problems.push(format!("{at}: {x} vs {y}"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                close(x, y, &format!("{at}[{i}]"), problems);
            }
        }
        (Value::Object(x), Value::Object(y)) if x.keys().eq(y.keys()) => {
            for (k, x) in x {
                close(x, &y[k], &format!("{at}.{k}"), problems);
            }
        }
        _ if a == b => {}
        _ => problems.push(format!("{at}: {a} vs {b}")),
    }
}

#[test]
fn explain_compare_and_study_outputs_are_pinned() {
    let now = outputs();
    let path = golden_path();
    if std::env::var_os("GLASSBOX_BLESS").is_some() {
        let doc = json!({ "level": level(), "outputs": now });
        std::fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
        let text = serde_json::to_string_pretty(&doc).expect("serialise") + "\n";
        std::fs::write(&path, text).expect("write golden");
        return;
    }
    let golden: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("golden file")).expect("golden JSON");
    let exact = golden["level"].as_str() == Some(level().as_str());
    let pinned = golden["outputs"].as_object().expect("outputs");
    let names: Vec<&String> = now.keys().collect();
    let golden_names: Vec<&String> = pinned.keys().collect();
    assert_eq!(names, golden_names, "the set of output files changed");
    let mut problems = Vec::new();
    for (name, value) in &now {
        let want = &pinned[name.as_str()];
        if exact {
            if value != want {
                let mut detail = Vec::new();
                close(value, want, name, &mut detail);
                problems.push(format!("{name} differs: {}", detail.join("; ")));
            }
        } else if value.get("png").is_some() {
            if value["size"] != want["size"] {
                problems.push(format!(
                    "{name}: size {} vs {}",
                    value["size"], want["size"]
                ));
            }
        } else {
            close(value, want, name, &mut problems);
        }
    }
    assert!(
        problems.is_empty(),
        "outputs differ from {} (blessed on {}, this CPU: {}):\n{}",
        path.display(),
        golden["level"],
        level(),
        problems.join("\n")
    );
}
