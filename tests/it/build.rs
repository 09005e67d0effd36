//! The build script refuses bad model descriptors and ONNX files with one `cargo::error` line
//! naming the file and the problem, never a panic inside code generation.
//!
//! The test runs the real, compiled build script (cargo builds it before this test) on a scratch
//! crate folder holding one model, exactly as cargo would run it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{data, scratch};

/// The compiled build script of this build: `target/<profile>/build/glassbox-*/build-script-build`
/// (the newest, if stale ones remain).
fn build_script() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(profile.join("build"))
        .expect("build folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("glassbox-"))
        })
        .map(|p| p.join("build-script-build"))
        .filter(|p| p.is_file())
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found.pop().expect("the compiled build script").1
}

const DESCRIPTOR: &str = r#"
name = "Bad"
default = true
file = "bad.onnx"
labels = "labels.txt"
output = "logits"
source = "test"
licence = "test"

[preprocess]
size = [224, 224]
resize = "stretch"
channels = "rgb"
scale = 0.003921569
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
"#;

/// Runs the build script on a crate folder with `onnx/bad.toml` = `descriptor`, `onnx/bad.onnx`
/// = `onnx` and two labels; returns (exit code, stdout, stderr).
fn run(name: &str, descriptor: &str, onnx: &[u8]) -> (Option<i32>, String, String) {
    let root = scratch(&format!("build-{name}"));
    let dir = root.join("crate").join("onnx");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::create_dir_all(root.join("out")).expect("out");
    std::fs::write(dir.join("bad.toml"), descriptor).expect("toml");
    std::fs::write(dir.join("bad.onnx"), onnx).expect("onnx");
    std::fs::write(dir.join("labels.txt"), "planted region\nelsewhere\n").expect("labels");
    let out = Command::new(build_script())
        .env("CARGO_MANIFEST_DIR", root.join("crate"))
        .env("OUT_DIR", root.join("out"))
        .output()
        .expect("run the build script");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(name: &str, descriptor: &str, onnx: &[u8], reason: &str) {
    let (code, stdout, stderr) = run(name, descriptor, onnx);
    assert_eq!(code, Some(1), "{name}: stdout {stdout} stderr {stderr}");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    let errors: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("cargo::error="))
        .collect();
    assert_eq!(errors.len(), 1, "{name}: one error line: {stdout}");
    assert!(
        errors[0].contains("bad.toml"),
        "{name}: names the descriptor: {}",
        errors[0]
    );
    assert!(
        errors[0].contains(reason),
        "{name}: '{reason}' not in {}",
        errors[0]
    );
}

/// A good model: the planted-centre fixture's ONNX file.
fn planted_model() -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/models/planted_centre.onnx"),
    )
    .expect("planted model")
}

fn bad_model(file: &str) -> Vec<u8> {
    std::fs::read(data("bad-models").join(file)).expect("fixture")
}

#[test]
fn build_refuses_bad_onnx_files_naming_the_file() {
    let planted = planted_model();
    // The harness builds a good model, so the refusals below are the inputs' fault.
    let (code, stdout, stderr) = run("good", DESCRIPTOR, &planted);
    assert_eq!(code, Some(0), "stdout {stdout} stderr {stderr}");

    assert_refused(
        "garbage",
        DESCRIPTOR,
        b"this is not a protobuf at all\n",
        "bad.onnx: not a valid ONNX protobuf",
    );
    assert_refused(
        "channels",
        DESCRIPTOR,
        &bad_model("wrong-channels.onnx"),
        "input 'input' must be [N, 3, H, W], found [?, 1, 224, 224]",
    );
    assert_refused(
        "output",
        DESCRIPTOR,
        &bad_model("wrong-output.onnx"),
        "output 'logits' must be [N, classes], found [?, 1, 1, 1]",
    );
    assert_refused(
        "size",
        DESCRIPTOR,
        &bad_model("wrong-size.onnx"),
        "is [?, 3, 100, 100] but the descriptor says 224x224",
    );
}

#[test]
fn build_refuses_bad_descriptors_naming_the_file() {
    let planted = planted_model();
    assert_refused(
        "toml",
        "name = \"Bad\"\nfile = [unclosed",
        &planted,
        "malformed descriptor",
    );
    assert_refused(
        "unknown-field",
        &DESCRIPTOR.replace(
            "licence = \"test\"",
            "licence = \"test\"\ncolour = \"blue\"",
        ),
        &planted,
        "unknown field `colour`",
    );
    assert_refused(
        "resize",
        &DESCRIPTOR.replace("\"stretch\"", "\"squash\""),
        &planted,
        "unknown resize policy 'squash'",
    );
    assert_refused(
        "labels",
        &DESCRIPTOR.replace("labels.txt", "missing-labels.txt"),
        &planted,
        "missing-labels.txt",
    );
    assert_refused(
        "zero-std",
        &DESCRIPTOR.replace("std = [1.0, 1.0, 1.0]", "std = [1.0, 0.0, 1.0]"),
        &planted,
        "std must be finite and non-zero",
    );
    assert_refused(
        "no-file",
        &DESCRIPTOR.replace("bad.onnx", "absent.onnx"),
        &planted,
        "absent.onnx is missing and the descriptor names no skeleton",
    );
}
