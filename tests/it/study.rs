//! `glassbox compare` and `glassbox study` end to end on the tiny committed folder
//! tests/data/study (3 categories × 2 images, made by tests/data/make_study_fixture.py) with the
//! planted-region models: the table, the log, resume, shards and merge, the blur study.

use std::path::{Path, PathBuf};
use std::process::Output;

use glassbox::study::{Shard, list_images};
use serde_json::Value;

use crate::common::{data, error_lines, glassbox, path_str as path, scratch};

fn folder() -> PathBuf {
    data("study")
}

const PAIRS: [&str; 4] = [
    "--pairs",
    "planted-centre:arbitrary,planted-corner:arbitrary",
    "--pairs",
    "planted-centre:statistical,planted-centre:elbow",
];

fn run_study(out: &Path, extra: &[&str]) -> Output {
    let dir = folder();
    let mut args = vec!["study", path(&dir)];
    args.extend(PAIRS);
    args.extend(["--device", "cpu", "--out", path(out)]);
    args.extend(extra);
    let output = glassbox(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    output
}

/// The log's lines as JSON: the header, then rows.
fn log(file: &Path) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(file).expect("log");
    let mut lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"));
    let header = lines.next().expect("header");
    (header, lines.collect())
}

/// A row without its wall-clock fields, which differ between runs.
fn deterministic(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.retain(|k, _| !k.contains("seconds"));
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

fn by_index(rows: Vec<Value>) -> Vec<Value> {
    let mut rows: Vec<Value> = rows.into_iter().map(deterministic).collect();
    rows.sort_by_key(|r| r["index"].as_u64());
    rows
}

#[test]
fn study_writes_the_table_log_and_contact_sheets() {
    let out = scratch("study-e2e");
    let output = run_study(&out, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("6 of 6 images studied"), "{stdout}");

    let (header, rows) = log(&out.join("study.jsonl"));
    assert_eq!(header["kind"], "study");
    assert_eq!(header["config"]["images"], 6);
    assert_eq!(rows.len(), 6);
    let images: Vec<&str> = rows
        .iter()
        .map(|r| r["image"].as_str().expect("image"))
        .collect();
    assert_eq!(
        images,
        [
            "centre-lit/a.png",
            "centre-lit/b.png",
            "dark-centre/a.png",
            "dark-centre/b.png",
            "photos/chelsea.png",
            "photos/coffee.png"
        ]
    );
    for row in &rows {
        let outcomes = row["outcomes"].as_array().expect("outcomes");
        assert_eq!(outcomes.len(), 2, "two comparisons per image");
        for o in outcomes {
            let j = o["jaccard"].as_f64().expect("jaccard");
            assert!((0.0..=1.0).contains(&j));
            for side in ["a", "b"] {
                let d = o[side]["deletion_auc"].as_f64().expect("deletion");
                let i = o[side]["insertion_auc"].as_f64().expect("insertion");
                assert!((0.0..=1.0).contains(&d) && (0.0..=1.0).contains(&i));
            }
        }
    }
    // centre-lit images: planted-centre sees its window lit, planted-corner's corner is dark.
    let first = &rows[0]["outcomes"][0];
    assert_eq!(first["a"]["label"], "planted region");
    assert_eq!(first["b"]["label"], "elsewhere");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("json"))
            .expect("summary");
    let tables = summary["comparisons"].as_array().expect("tables");
    assert_eq!(tables.len(), 2);
    for t in tables {
        let flop = t["flop"].as_array().expect("flop");
        let top = t["top"].as_array().expect("top");
        assert_eq!((flop.len(), top.len()), (5, 5));
        let j = |e: &Value| e["jaccard"].as_f64().expect("j");
        assert!(
            flop.windows(2).all(|w| j(&w[0]) <= j(&w[1])),
            "FLOP ascending"
        );
        assert!(
            top.windows(2).all(|w| j(&w[0]) >= j(&w[1])),
            "TOP descending"
        );
        let mean = t["mean_jaccard"].as_f64().expect("mean");
        assert!(j(&flop[0]) <= mean && mean <= j(&top[0]));
    }
    // The report's MEAN equals the mean over the log.
    let logged: Vec<f64> = rows
        .iter()
        .map(|r| r["outcomes"][0]["jaccard"].as_f64().expect("j"))
        .collect();
    let mean = logged.iter().sum::<f64>() / logged.len() as f64;
    assert!((tables[0]["mean_jaccard"].as_f64().expect("mean") - mean).abs() < 1e-12);
    assert_eq!(
        summary["explainers"].as_array().expect("explainers").len(),
        4
    );

    let md = std::fs::read_to_string(out.join("summary.md")).expect("markdown");
    for part in [
        "MEAN",
        "FLOP 5",
        "TOP 5",
        "deletion AUC",
        "Prediction changes",
        "s / explanation",
    ] {
        assert!(md.contains(part), "summary.md lacks {part}");
    }
    assert!(md.contains("centre-lit/a.png (planted-centre:arbitrary vs planted-corner:arbitrary): planted region → elsewhere"), "{md}");
    for k in [1, 2] {
        let sheet = image::open(out.join(format!("contact-sheet.{k}.png"))).expect("sheet");
        assert!(sheet.width() > 1000 && sheet.height() > 500);
    }
}

#[test]
fn study_resumes_after_an_interruption_without_losing_or_repeating_images() {
    let full = scratch("study-full");
    assert_eq!(run_study(&full, &[]).status.code(), Some(0));
    let (_, complete) = log(&full.join("study.jsonl"));

    // A crash after two images, in the middle of writing the third line.
    let out = scratch("study-resume");
    let text = std::fs::read_to_string(full.join("study.jsonl")).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    let cut = format!(
        "{}\n{}\n{}\n{}",
        lines[0],
        lines[1],
        lines[2],
        &lines[3][..40]
    );
    std::fs::write(out.join("study.jsonl"), cut).expect("write");

    let output = run_study(&out, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("2 of 6 images already done"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains(" images, ")).count(),
        4,
        "only the 4 remaining images run: {stderr}"
    );
    let resumed_text = std::fs::read_to_string(out.join("study.jsonl")).expect("log");
    assert!(resumed_text.starts_with(&format!("{}\n{}\n{}\n", lines[0], lines[1], lines[2])));
    let (_, rows) = log(&out.join("study.jsonl"));
    let indices: Vec<u64> = rows
        .iter()
        .map(|r| r["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(indices, [0, 1, 2, 3, 4, 5], "no image lost or repeated");
    assert_eq!(by_index(rows), by_index(complete));

    // A finished study re-run does nothing more; other settings are refused, not mixed in.
    let again = run_study(&out, &[]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("6 of 6 images already done"));
    assert_eq!(log(&out.join("study.jsonl")).1.len(), 6);
    let other = run_study(&out, &["--grid", "7"]);
    assert_eq!(other.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(stderr.contains("other settings"), "{stderr}");
    // The precision is a setting too: an f16 run does not resume an f32 log.
    let half = run_study(&out, &["--precision", "f16"]);
    assert_eq!(half.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(stderr.contains("other settings"), "{stderr}");
}

#[test]
fn shards_merged_equal_an_unsharded_run() {
    let whole = scratch("study-whole");
    assert_eq!(run_study(&whole, &[]).status.code(), Some(0));
    let parts = scratch("study-shards");
    for shard in ["0/2", "1/2"] {
        let out = run_study(&parts, &["--shard", shard]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, part0) = log(&parts.join("study.shard-0-of-2.jsonl"));
    let (_, part1) = log(&parts.join("study.shard-1-of-2.jsonl"));
    assert_eq!((part0.len(), part1.len()), (3, 3));
    assert!(
        part0
            .iter()
            .all(|r| r["index"].as_u64().expect("i") % 2 == 0)
    );

    // Merging only one shard says what is missing.
    let half = scratch("study-half");
    let one = glassbox(&[
        "study",
        "merge",
        path(&parts.join("study.shard-0-of-2.jsonl")),
        "--out",
        path(&half),
    ]);
    assert_eq!(one.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&one.stdout).contains("3 of 6 images studied, 3 missing"));

    let merged = scratch("study-merged");
    let out = glassbox(&["study", "merge", path(&parts), "--out", path(&merged)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mh, mrows) = log(&merged.join("study.jsonl"));
    let (wh, wrows) = log(&whole.join("study.jsonl"));
    assert_eq!(mh["key"], wh["key"], "the same study");
    assert_eq!(by_index(mrows), by_index(wrows));
    let summary = |dir: &Path| -> Value {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("summary.json")).expect("summary"),
        )
        .expect("json");
        deterministic(
            serde_json::json!({ "c": v["comparisons"], "e": v["explainers"], "n": v["studied"] }),
        )
    };
    assert_eq!(summary(&merged), summary(&whole));

    // Logs of another study are not merged in.
    let other = scratch("study-other");
    assert_eq!(run_study(&other, &["--limit", "2"]).status.code(), Some(0));
    let mixed = glassbox(&[
        "study",
        "merge",
        path(&parts),
        path(&other),
        "--out",
        path(&scratch("study-mixed")),
    ]);
    assert_eq!(mixed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&mixed.stderr).contains("different settings"));
}

#[test]
fn blur_study_reports_the_planted_models_change_of_mind() {
    let out = scratch("study-blur");
    let output = glassbox(&[
        "study",
        path(&folder()),
        "--pairs",
        "planted-centre:arbitrary",
        "--blur",
        "12",
        "--device",
        "cpu",
        "--out",
        path(&out),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("json"))
            .expect("summary");
    let table = &summary["comparisons"][0];
    assert_eq!(
        table["comparison"],
        "planted-centre:arbitrary vs planted-centre:arbitrary (blurred)"
    );
    let changed: Vec<(&str, &str, &str)> = table["prediction_changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|e| {
            (
                e["image"].as_str().expect("image"),
                e["a"].as_str().expect("a"),
                e["b"].as_str().expect("b"),
            )
        })
        .collect();
    // The black centre turns grey under the blur; everything else keeps its class.
    assert_eq!(
        changed,
        [
            ("dark-centre/a.png", "elsewhere", "planted region"),
            ("dark-centre/b.png", "elsewhere", "planted region")
        ]
    );
    let md = std::fs::read_to_string(out.join("summary.md")).expect("markdown");
    assert!(md.contains("Blur study"));
    assert!(md.contains("dark-centre/a.png (planted-centre:arbitrary vs planted-centre:arbitrary (blurred)): elsewhere → planted region"));
    // Without the blur the same image keeps its class.
    let sharp = glassbox(&[
        "study",
        path(&folder()),
        "--pairs",
        "planted-centre:arbitrary",
        "--blur",
        "1",
        "--device",
        "cpu",
        "--out",
        path(&scratch("study-blur-1")),
    ]);
    assert!(String::from_utf8_lossy(&sharp.stdout).contains("0 prediction changes"));
}

#[test]
fn one_per_category_is_a_seeded_choice() {
    let pick = |seed| {
        list_images(&folder(), true, seed, None)
            .expect("list")
            .into_iter()
            .map(|i| i.image)
            .collect::<Vec<_>>()
    };
    let first = pick(0);
    assert_eq!(first.len(), 3, "one per category");
    let categories: Vec<&str> = first
        .iter()
        .map(|i| i.split('/').next().expect("cat"))
        .collect();
    assert_eq!(categories, ["centre-lit", "dark-centre", "photos"]);
    assert_eq!(pick(0), first, "same seed, same images");
    assert!(
        (1..20).any(|s| pick(s) != first),
        "other seeds pick other images"
    );
    assert_eq!(
        list_images(&folder(), false, 0, Some(4))
            .expect("list")
            .len(),
        4
    );
    assert!(list_images(&data("chelsea.png"), false, 0, None).is_err());

    // Shards partition the list.
    let all = list_images(&folder(), false, 0, None).expect("list");
    for n in 1..4 {
        let mut taken: Vec<usize> = (0..n)
            .flat_map(|i| {
                let s = Shard { index: i, count: n };
                all.iter()
                    .filter(move |it| s.takes(it.index))
                    .map(|it| it.index)
            })
            .collect();
        taken.sort();
        assert_eq!(taken, (0..all.len()).collect::<Vec<_>>());
    }
    for bad in ["2/2", "1", "a/b", "0/0"] {
        assert!(Shard::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn study_records_unreadable_images_and_goes_on() {
    let dir = scratch("study-bad-input");
    std::fs::create_dir_all(dir.join("cats")).expect("dir");
    std::fs::copy(
        folder().join("photos/chelsea.png"),
        dir.join("cats/good.png"),
    )
    .expect("copy");
    std::fs::write(dir.join("cats/broken.jpg"), b"not a jpeg").expect("write");
    let out = dir.join("out");
    let output = glassbox(&[
        "study",
        path(&dir),
        "--pairs",
        "planted-centre:arbitrary,planted-corner:arbitrary",
        "--device",
        "cpu",
        "--out",
        path(&out),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"));
    assert_eq!(error_lines(&stderr).len(), 1, "{stderr}");
    assert!(stderr.contains("broken.jpg"));
    let (_, rows) = log(&out.join("study.jsonl"));
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["error"].is_string() && rows[1]["error"].is_null());
    let md = std::fs::read_to_string(out.join("summary.md")).expect("md");
    assert!(md.contains("could not be studied") && md.contains("cats/broken.jpg"));

    for (args, part) in [
        (vec!["--pairs", "planted-centre"], "must be A,B"),
        (
            vec!["--pairs", "planted-centre:nope,planted-centre:arbitrary"],
            "unknown method",
        ),
        (
            vec!["--pairs", "nomodel:lime,planted-centre:arbitrary"],
            "unknown model",
        ),
        (
            vec![
                "--pairs",
                "planted-centre:arbitrary,planted-centre:lime",
                "--fill",
                "grey",
            ],
            "lime's --fill",
        ),
        (
            vec![
                "--pairs",
                "planted-centre:arbitrary,planted-centre:elbow",
                "--shard",
                "3/3",
            ],
            "--shard",
        ),
    ] {
        let mut full = vec!["study", path(&dir)];
        full.extend(args);
        full.extend(["--device", "cpu", "--out", path(&out)]);
        let o = glassbox(&full);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(e.contains(part), "'{part}' not in: {e}");
    }
}

#[test]
fn compare_writes_overlay_faithfulness_and_json() {
    let out = scratch("compare-cli");
    let image = folder().join("centre-lit/a.png");
    let output = glassbox(&[
        "compare",
        path(&image),
        "--a",
        "planted-centre:statistical",
        "--b",
        "planted-corner:statistical",
        "--device",
        "cpu",
        "--out",
        path(&out),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let base = "a.planted-centre-statistical.vs.planted-corner-statistical";
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(format!("{base}.json"))).expect("json"),
    )
    .expect("doc");
    assert_eq!(doc["a"]["class"]["label"], "planted region");
    assert_eq!(doc["b"]["class"]["label"], "elsewhere");
    assert_eq!(doc["same_prediction"], false);
    let j = doc["jaccard"].as_f64().expect("jaccard");
    assert!((0.0..1.0).contains(&j));
    for side in ["a", "b"] {
        assert_eq!(
            doc[side]["faithfulness"]["deletion"]
                .as_array()
                .expect("curve")
                .len(),
            21
        );
    }
    for png in ["overlay.png", "faithfulness.png"] {
        let img = image::open(out.join(format!("{base}.{png}"))).expect(png);
        assert!(img.width() >= 360);
    }
    assert!(stderr.contains("Jaccard"));
}
