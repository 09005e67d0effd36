//! The `glassbox` binary end to end: classify, models, and bad input.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{data, error_lines, glassbox, path_str, scratch, text};

/// Runs `classify` on `bad` (and chelsea.png after it): exit 2, one error line naming the file,
/// no panic, and the good image still classified.
fn assert_refused(bad: &Path, reason_part: &str) {
    let out = glassbox(&[
        "classify",
        "--device",
        "cpu",
        bad.to_str().expect("utf-8"),
        data("chelsea.png").to_str().expect("utf-8"),
    ]);
    let stderr = text(&out.stderr);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "exactly one error line expected: {stderr}");
    let name = bad.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        errors[0].contains(name),
        "error does not name the file: {}",
        errors[0]
    );
    assert!(
        errors[0].to_lowercase().contains(reason_part),
        "error '{}' lacks '{reason_part}'",
        errors[0]
    );
    assert!(
        stdout.contains("chelsea.png"),
        "the good image was not classified: {stdout}"
    );
}

#[test]
fn classify_prints_top_k_for_the_default_model() {
    let out = glassbox(&[
        "classify",
        "--device",
        "cpu",
        "--top",
        "3",
        data("coffee.png").to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(
        stdout
            .lines()
            .nth(1)
            .expect("rank 1")
            .contains("espresso (967)"),
        "{stdout}"
    );
}

#[test]
fn classify_json_is_machine_readable() {
    let out = glassbox(&[
        "classify",
        "--device",
        "cpu",
        "--json",
        "--top",
        "2",
        data("chelsea.png").to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["model"], "efficientnet-lite0");
    assert_eq!(doc["synthetic"], false);
    assert!(doc["device"].as_str().expect("device").starts_with("cpu"));
    let top = doc["results"][0]["top"].as_array().expect("top");
    assert_eq!(top.len(), 2);
    assert!(
        top[0]["probability"].as_f64().expect("p") >= top[1]["probability"].as_f64().expect("p")
    );
}

/// `GLASSBOX_TWIN` runs a command on the listed models' randomised twins (the library's, drawn
/// without reading a weight file), says so, and leaves the other models alone.
#[test]
fn glassbox_twin_runs_the_listed_models_as_their_randomised_twins() {
    let classify = |twin: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_glassbox"));
        command.args(["classify", "--device", "cpu", "--json", "--top", "1"]);
        command.arg(data("chelsea.png"));
        if let Some(ids) = twin {
            command.env("GLASSBOX_TWIN", ids);
        }
        let out = command.output().expect("run glassbox");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let top = doc["results"][0]["top"][0].clone();
        (top, text(&out.stderr))
    };
    let (own, said) = classify(None);
    assert!(!said.contains("randomised twin"), "{said}");
    let (other, said) = classify(Some("googlenet-tv,alexnet"));
    assert_eq!(
        other, own,
        "a model the variable does not list keeps its weights"
    );
    assert!(!said.contains("randomised twin"), "{said}");
    let (twin, said) = classify(Some("alexnet, efficientnet-lite0"));
    assert!(
        said.contains("efficientnet-lite0 runs as its randomised twin"),
        "{said}"
    );
    // The library's twin of the same photo.
    let info = glassbox::ModelInfo::default_model();
    let photo = glassbox::view::load_photo(&data("chelsea.png")).expect("photo");
    let view = glassbox::View::new(&photo.rgb, info.preprocess());
    let input = glassbox::view::to_input(&view.rgb, info.preprocess());
    let library = glassbox::Classifier::load_weights(
        info,
        &glassbox::Compute::cpu(),
        glassbox::model::Precision::F32,
        glassbox::model::Weights::Randomised,
    )
    .expect("twin")
    .classify(&input)
    .expect("classify");
    let best = library.argmax(0);
    assert_eq!(twin["index"], best, "{twin}");
    let p = twin["probability"].as_f64().expect("p");
    assert!((p - f64::from(library.row(0)[best])).abs() < 1e-6, "{p}");
    assert_ne!(twin, own);
}

#[test]
fn synthetic_models_say_so() {
    let out = glassbox(&["models", "--json"]);
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 5);
    let default: Vec<_> = list.iter().filter(|m| m["default"] == true).collect();
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["id"], "efficientnet-lite0");
    for m in list {
        let real = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("onnx")
            .join(m["file"].as_str().expect("file"))
            .exists();
        assert_eq!(m["synthetic"], !real, "{}", m["id"]);
    }
    // A synthetic model warns on every use and says so in JSON.
    if let Some(m) = list.iter().find(|m| m["synthetic"] == true) {
        let id = m["id"].as_str().expect("id");
        let out = glassbox(&[
            "classify",
            "--device",
            "cpu",
            "--json",
            "--model",
            id,
            data("coffee.png").to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("SYNTHETIC"),
            "{}",
            text(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(doc["synthetic"], true);
    }
}

#[test]
fn unknown_model_is_a_one_line_error() {
    let out = glassbox(&[
        "classify",
        "--model",
        "resnet9000",
        data("coffee.png").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("unknown model 'resnet9000'") && stderr.contains("efficientnet-lite0"),
        "{stderr}"
    );
}

#[test]
fn missing_file_is_refused() {
    let dir = scratch("missing_file");
    assert_refused(&dir.join("nope.png"), "no such file");
}

#[test]
fn directory_is_refused() {
    let dir = scratch("directory");
    let sub = dir.join("photos.jpg");
    std::fs::create_dir_all(&sub).expect("mkdir");
    assert_refused(&sub, "directory");
}

/// A file the user may not read: one error line saying so, and the next image still classified.
/// Root reads everything, so as root a copy of the binary runs as `nobody` (setpriv,
/// util-linux) from a world-readable folder under the system's temporary directory.
#[test]
fn unreadable_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
    };
    let dir = std::env::temp_dir().join(format!("glassbox-unreadable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    mode(&dir, 0o755);
    let exe = dir.join("glassbox");
    std::fs::copy(env!("CARGO_BIN_EXE_glassbox"), &exe).expect("copy binary");
    mode(&exe, 0o755);
    let secret = dir.join("secret.png");
    std::fs::copy(data("chelsea.png"), &secret).expect("copy");
    mode(&secret, 0o000);
    let good = dir.join("good.png");
    std::fs::copy(data("chelsea.png"), &good).expect("copy");
    mode(&good, 0o644);
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim() == "0")
        .expect("id -u");
    let args = [
        "classify",
        "--device",
        "cpu",
        path_str(&secret),
        path_str(&good),
    ];
    let out = if root {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .args(args)
            .output()
            .expect("setpriv (util-linux) runs the binary as nobody")
    } else {
        Command::new(&exe).args(args).output().expect("run")
    };
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("secret.png") && errors[0].contains("permission denied"),
        "{}",
        errors[0]
    );
    assert!(text(&out.stdout).contains("good.png"));
}

/// A named pipe would block a reader forever: it is refused before reading, as is a device.
#[test]
fn pipes_and_devices_are_refused_without_blocking() {
    let dir = scratch("fifo");
    let fifo = dir.join("camera.png");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    assert_refused(&fifo, "not a regular file");
    assert_refused(Path::new("/dev/null"), "not a regular file");
}

#[test]
fn empty_file_is_refused() {
    let dir = scratch("empty_file");
    let path = dir.join("empty.png");
    std::fs::write(&path, b"").expect("write");
    assert_refused(&path, "empty");
}

#[test]
fn text_named_jpg_is_refused() {
    let dir = scratch("text_jpg");
    let path = dir.join("notes.jpg");
    std::fs::write(&path, "these are not pixels\n").expect("write");
    assert_refused(&path, "not an image");
}

#[test]
fn truncated_png_is_refused() {
    let dir = scratch("truncated_png");
    let bytes = std::fs::read(data("chelsea.png")).expect("read");
    let path = dir.join("cut.png");
    std::fs::write(&path, &bytes[..bytes.len() / 3]).expect("write");
    assert_refused(&path, "decoded");
}

#[test]
fn truncated_jpeg_is_refused() {
    let dir = scratch("truncated_jpeg");
    let photo = image::open(data("coffee.png")).expect("open").to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&photo)
        .expect("encode");
    let path = dir.join("cut.jpg");
    std::fs::write(&path, &jpeg[..jpeg.len() / 4]).expect("write");
    assert_refused(&path, "truncated");
}

#[test]
fn zero_by_zero_png_is_refused() {
    let dir = scratch("zero_png");
    let path = dir.join("zero.png");
    std::fs::write(&path, png_header_only(0, 0)).expect("write");
    // The PNG decoder refuses the header itself: "Invalid image dimensions".
    assert_refused(&path, "dimensions");
}

#[test]
fn huge_header_is_refused_before_allocating() {
    let dir = scratch("huge_png");
    let path = dir.join("huge.png");
    std::fs::write(&path, png_header_only(100_000, 100_000)).expect("write");
    assert_refused(&path, "too large");
}

/// A PNG with a valid signature and IHDR claiming `w`×`h` RGB, then IEND, no pixel data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(body);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn explain_into(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "explain",
        "--device",
        "cpu",
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    glassbox(&args)
}

#[test]
fn explain_writes_pictures_curve_and_json() {
    let out = scratch("explain_outputs");
    let run = explain_into(
        &out,
        &[
            "--method",
            "statistical",
            data("coffee.png").to_str().expect("utf-8"),
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let base = "coffee.efficientnet-lite0.statistical";
    for suffix in ["masked.png", "mask.png", "heatmap.png", "curve.png", "json"] {
        assert!(
            out.join(format!("{base}.{suffix}")).is_file(),
            "missing {suffix}"
        );
    }
    let masked = image::open(out.join(format!("{base}.masked.png"))).expect("png");
    let photo = image::open(data("coffee.png")).expect("png");
    assert_eq!(
        (masked.width(), masked.height()),
        (photo.width(), photo.height()),
        "masked picture is at the photo's resolution"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{base}.json"))).expect("json"))
            .expect("JSON");
    assert_eq!(doc["class"]["index"], 967);
    assert_eq!(doc["variants"], 101);
    assert_eq!(doc["model"]["synthetic"], false);
    assert_eq!(
        doc["phases"][0]["cells"].as_array().expect("cells").len(),
        100
    );
    let runs: usize = doc["mask"]["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r.as_u64().expect("run") as usize)
        .sum();
    assert_eq!(runs, 224 * 224);
    for stage in ["preprocess", "perturb_classify", "rule", "render"] {
        assert!(doc["timings_s"][stage].as_f64().expect("timing") >= 0.0);
    }
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn explain_is_deterministic() {
    let (a, b) = (scratch("explain_det_a"), scratch("explain_det_b"));
    for dir in [&a, &b] {
        let run = explain_into(
            dir,
            &[
                "--method",
                "elbow",
                "--model",
                "planted-centre",
                data("chelsea.png").to_str().expect("utf-8"),
            ],
        );
        assert!(run.status.success(), "{}", text(&run.stderr));
    }
    let base = "chelsea.planted-centre.elbow";
    for suffix in ["masked.png", "mask.png", "heatmap.png", "curve.png"] {
        let (x, y) = (
            std::fs::read(a.join(format!("{base}.{suffix}"))).expect("a"),
            std::fs::read(b.join(format!("{base}.{suffix}"))).expect("b"),
        );
        assert!(x == y, "{suffix} differs between runs");
    }
    // The JSON is identical but for the measured timings.
    let strip = |dir: &Path| {
        let mut doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{base}.json"))).expect("json"))
                .expect("JSON");
        doc.as_object_mut().expect("object").remove("timings_s");
        doc
    };
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn explain_refuses_bad_flags_before_any_work() {
    let out = scratch("explain_bad_flags");
    for (flags, part) in [
        (vec!["--fill", "purple"], "unknown fill"),
        (vec!["--keep-fraction", "1.5"], "keep-fraction"),
        (vec!["--grid", "0"], "grid"),
        (vec!["--class", "unicorn"], "no class 'unicorn'"),
        (vec!["--class", "1000"], "no class '1000'"),
        (vec!["--precision", "f16"], "precision f16 needs a GPU"),
    ] {
        let image = data("coffee.png");
        let mut args = flags.clone();
        args.push(image.to_str().expect("utf-8"));
        let run = explain_into(&out, &args);
        assert_eq!(run.status.code(), Some(2), "{flags:?}");
        let stderr = text(&run.stderr);
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(part), "{flags:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(&out).expect("dir").count(),
        0,
        "nothing written"
    );
}

#[test]
fn explain_refuses_an_unwritable_output_folder_before_work() {
    let dir = scratch("explain_unwritable");
    let file = dir.join("not-a-folder");
    std::fs::write(&file, b"x").expect("write");
    let run = explain_into(
        &file.join("sub"),
        &[data("coffee.png").to_str().expect("utf-8")],
    );
    assert_eq!(run.status.code(), Some(2));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("not-a-folder"), "{stderr}");
    assert!(
        !stderr.contains("efficientnet-lite0 on"),
        "work started: {stderr}"
    );
}

#[test]
fn lime_writes_outputs_and_is_reproducible() {
    let (a, b, c) = (scratch("lime_a"), scratch("lime_b"), scratch("lime_c"));
    let image = data("coffee.png");
    let args = |seed: &'static str| {
        vec![
            "--method",
            "lime",
            "--model",
            "planted-centre",
            "--samples",
            "200",
            "--seed",
            seed,
        ]
    };
    let mut lines = Vec::new();
    for (dir, seed) in [(&a, "5"), (&b, "5"), (&c, "6")] {
        let mut extra = args(seed);
        extra.push(image.to_str().expect("utf-8"));
        let run = explain_into(dir, &extra);
        assert!(run.status.success(), "{}", text(&run.stderr));
        lines.push(text(&run.stderr));
    }
    let base = "coffee.planted-centre.lime";
    for suffix in ["masked.png", "mask.png", "heatmap.png", "json"] {
        assert!(
            a.join(format!("{base}.{suffix}")).is_file(),
            "missing {suffix}"
        );
    }
    let doc = |dir: &Path| {
        let mut d: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{base}.json"))).expect("json"))
                .expect("JSON");
        d.as_object_mut().expect("object").remove("timings_s");
        d
    };
    let (da, db, dc) = (doc(&a), doc(&b), doc(&c));
    assert_eq!(da, db, "same seed, same JSON (timings aside)");
    assert_eq!(
        std::fs::read(a.join(format!("{base}.masked.png"))).ok(),
        std::fs::read(b.join(format!("{base}.masked.png"))).ok()
    );
    assert_ne!(
        da["models"][0]["weights"], dc["models"][0]["weights"],
        "another seed, another sample"
    );
    assert_eq!(da["parameters"]["samples"], 200);
    assert_eq!(
        da["models"].as_array().expect("models").len(),
        2,
        "both classes of the planted model"
    );
    let weights = da["models"][0]["weights"]
        .as_array()
        .expect("weights")
        .len();
    assert_eq!(
        weights as u64,
        da["segmentation"]["count"].as_u64().expect("count")
    );
    for key in ["intercept", "score", "local_prediction"] {
        assert!(da["models"][0][key].is_number(), "{key}");
    }
    // The summary line shows the explained class's surrogate fit, as the JSON has it.
    let class = da["class"]["index"].as_u64().expect("class");
    let fit = da["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["class"].as_u64() == Some(class))
        .expect("the explained class is fitted");
    let number = |v: &serde_json::Value| v.as_f64().expect("number");
    let shown = format!(
        "surrogate R² {:.2}, predicts {:.2} for p {:.2}",
        number(&fit["score"]),
        number(&fit["local_prediction"]),
        number(&fit["probability"])
    );
    assert!(lines[0].contains(&shown), "{shown:?} not in {}", lines[0]);
}

#[test]
fn lime_signed_picture_and_bad_flags() {
    let out = scratch("lime_signed");
    let image = data("coffee.png");
    let run = explain_into(
        &out,
        &[
            "--method",
            "lime",
            "--model",
            "planted-centre",
            "--samples",
            "100",
            "--signed",
            image.to_str().expect("utf-8"),
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("coffee.planted-centre.lime.json")).expect("json"),
    )
    .expect("JSON");
    assert_eq!(doc["picture"], "signed");
    for (flags, part) in [
        (vec!["--fill", "grey"], "black or mean"),
        (vec!["--samples", "1"], "--samples"),
        (vec!["--features", "0"], "--features"),
    ] {
        let mut args = vec!["--method", "lime"];
        args.extend(flags.iter().copied());
        args.push(image.to_str().expect("utf-8"));
        let run = explain_into(&out, &args);
        assert_eq!(run.status.code(), Some(2), "{flags:?}");
        assert!(
            text(&run.stderr).contains(part),
            "{flags:?}: {}",
            text(&run.stderr)
        );
    }
}

#[test]
fn lime_stability_writes_its_spread_and_refuses_bad_runs() {
    let out = scratch("lime_stability");
    let image = data("coffee.png");
    let image = image.to_str().expect("utf-8");
    let run = explain_into(
        &out,
        &[
            "--method",
            "lime",
            "--model",
            "planted-centre",
            "--samples",
            "100",
            "--segments",
            "grid",
            "--stability",
            "3",
            "--steps",
            "0",
            image,
        ],
    );
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("over 3 seeds: masks' mean Jaccard"),
        "{stderr}"
    );
    let base = "coffee.planted-centre.lime";
    assert!(out.join(format!("{base}.stability.png")).is_file());
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{base}.json"))).expect("json"))
            .expect("JSON");
    assert_eq!(doc["stability"]["seeds"], serde_json::json!([0, 1, 2]));
    let std = doc["stability"]["weight_std"].as_array().expect("std");
    assert_eq!(
        std.len(),
        doc["segmentation"]["count"].as_u64().expect("count") as usize
    );
    for (flags, part) in [
        (
            vec!["--method", "lime", "--stability", "1"],
            "--stability 1",
        ),
        (
            vec!["--method", "arbitrary", "--stability", "3"],
            "--method lime",
        ),
    ] {
        let mut args = flags.clone();
        args.push(image);
        let run = explain_into(&out, &args);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{flags:?}: {stderr}");
        assert_eq!(error_lines(&stderr).len(), 1, "{stderr}");
        assert!(stderr.contains(part), "{flags:?}: {stderr}");
    }
}

#[test]
fn every_common_pixel_format_and_odd_size_classifies() {
    use image::{DynamicImage, ImageFormat};
    let dir = scratch("formats");
    let photo = image::open(data("coffee.png")).expect("open").resize(
        120,
        90,
        image::imageops::FilterType::Triangle,
    );
    let cases: Vec<(&str, DynamicImage, ImageFormat)> = vec![
        (
            "grey.png",
            DynamicImage::ImageLuma8(photo.to_luma8()),
            ImageFormat::Png,
        ),
        (
            "grey-alpha.png",
            DynamicImage::ImageLumaA8(photo.to_luma_alpha8()),
            ImageFormat::Png,
        ),
        (
            "rgba.png",
            DynamicImage::ImageRgba8(photo.to_rgba8()),
            ImageFormat::Png,
        ),
        (
            "sixteen-bit.png",
            DynamicImage::ImageRgb16(photo.to_rgb16()),
            ImageFormat::Png,
        ),
        (
            "still.gif",
            DynamicImage::ImageRgba8(photo.to_rgba8()),
            ImageFormat::Gif,
        ),
        (
            "photo.tiff",
            DynamicImage::ImageRgb8(photo.to_rgb8()),
            ImageFormat::Tiff,
        ),
        (
            "photo.webp",
            DynamicImage::ImageRgba8(photo.to_rgba8()),
            ImageFormat::WebP,
        ),
        (
            "photo.bmp",
            DynamicImage::ImageRgb8(photo.to_rgb8()),
            ImageFormat::Bmp,
        ),
        (
            "one-pixel.png",
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1, 1, image::Rgb([200, 30, 30]))),
            ImageFormat::Png,
        ),
        (
            "one-by-10000.png",
            DynamicImage::ImageRgb8(image::RgbImage::from_fn(1, 10_000, |_, y| {
                image::Rgb([(y % 256) as u8, 90, 160])
            })),
            ImageFormat::Png,
        ),
    ];
    let mut args = vec![
        "classify".to_string(),
        "--device".into(),
        "cpu".into(),
        "--json".into(),
    ];
    for (name, img, format) in &cases {
        let path = dir.join(name);
        img.save_with_format(&path, *format)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        args.push(path.to_str().expect("utf-8").to_string());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(&args)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let results = doc["results"].as_array().expect("results");
    assert_eq!(results.len(), cases.len());
    for r in results {
        let top = r["top"]
            .as_array()
            .unwrap_or_else(|| panic!("no prediction for {}", r["image"]));
        let p = top[0]["probability"].as_f64().expect("p");
        assert!(p > 0.0 && p <= 1.0, "{}: {p}", r["image"]);
    }
    // The colour versions of the same photo agree on the class.
    let class = |i: usize| results[i]["top"][0]["index"].as_u64();
    assert_eq!(
        class(2),
        class(5),
        "RGBA PNG and TIFF of one photo disagree"
    );
    assert_eq!(
        class(3),
        class(5),
        "16-bit PNG and TIFF of one photo disagree"
    );
}

#[test]
fn animated_gif_uses_its_first_frame_and_says_so() {
    let dir = scratch("animated_gif");
    let path = dir.join("anim.gif");
    {
        let file = std::fs::File::create(&path).expect("create");
        let mut encoder = image::codecs::gif::GifEncoder::new(file);
        let frame = |rgb: [u8; 3]| {
            image::Frame::new(image::RgbaImage::from_pixel(
                64,
                48,
                image::Rgba([rgb[0], rgb[1], rgb[2], 255]),
            ))
        };
        encoder
            .encode_frames(vec![frame([200, 40, 40]), frame([40, 200, 40])])
            .expect("encode");
    }
    let out = glassbox(&["classify", "--device", "cpu", path.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("first frame"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exif_orientation_is_applied() {
    use image::ImageEncoder;
    // 60x40, left half red, right half blue, tagged Orientation = 6 (display rotated 90° clockwise).
    let img = image::RgbImage::from_fn(60, 40, |x, _| {
        if x < 30 {
            image::Rgb([230, 20, 20])
        } else {
            image::Rgb([20, 20, 230])
        }
    });
    let tiff_exif: Vec<u8> = [
        b"II*\0".as_slice(),
        &8u32.to_le_bytes(),
        &1u16.to_le_bytes(),
        &0x0112u16.to_le_bytes(),
        &3u16.to_le_bytes(),
        &1u32.to_le_bytes(),
        &6u16.to_le_bytes(),
        &[0, 0],
        &0u32.to_le_bytes(),
    ]
    .concat();
    let mut jpeg = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
    encoder.set_exif_metadata(tiff_exif).expect("exif");
    encoder
        .write_image(img.as_raw(), 60, 40, image::ExtendedColorType::Rgb8)
        .expect("encode");
    let path = scratch("exif").join("rotated.jpg");
    std::fs::write(&path, &jpeg).expect("write");

    let photo = glassbox::view::load_photo(&path).expect("decode");
    assert_eq!(photo.rgb.dimensions(), (40, 60), "rotated to portrait");
    assert!(
        photo.notes.iter().any(|n| n.contains("EXIF orientation")),
        "{:?}",
        photo.notes
    );
    let (top, bottom) = (photo.rgb.get_pixel(20, 5), photo.rgb.get_pixel(20, 55));
    assert!(
        top[0] > 150 && top[2] < 100,
        "the left (red) half is on top after a clockwise turn: {top:?}"
    );
    assert!(bottom[2] > 150 && bottom[0] < 100, "{bottom:?}");
}

/// A CMYK JPEG (Adobe-inverted, as Pillow and Photoshop write it) decodes to the right colours,
/// not to a negative, and is classified like the RGB photo.
#[test]
fn cmyk_jpeg_decodes_to_the_right_colours() {
    let cmyk = glassbox::view::load_photo(&data("chelsea_cmyk.jpg")).expect("CMYK JPEG");
    let rgb = glassbox::view::load_photo(&data("chelsea.png")).expect("PNG");
    let (w, h) = cmyk.rgb.dimensions();
    assert_eq!(w, 160);
    let reference = image::imageops::resize(&rgb.rgb, w, h, image::imageops::FilterType::Lanczos3);
    let diff: u64 = cmyk
        .rgb
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| (*a as i64 - *b as i64).unsigned_abs())
        .sum();
    let mean = diff as f64 / cmyk.rgb.as_raw().len() as f64;
    assert!(mean < 8.0, "mean absolute difference {mean} per channel");

    let out = glassbox(&[
        "classify",
        "--device",
        "cpu",
        "--top",
        "1",
        data("chelsea_cmyk.jpg").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("Egyptian cat"),
        "{}",
        text(&out.stdout)
    );
}

/// A model that outputs NaN (tests/models/make_nan_model.py: NaN on dark images) is refused with
/// an error naming it, never drawn as an explanation; the run's other images go on.
#[test]
fn non_finite_model_outputs_are_an_error_naming_the_model() {
    let dir = scratch("nan-output");
    let dark = dir.join("dark.png");
    let light = dir.join("light.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([10, 10, 10]))
        .save(&dark)
        .expect("dark");
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 200, 200]))
        .save(&light)
        .expect("light");
    let out_dir = dir.join("out");
    let out = glassbox(&[
        "explain",
        "--model",
        "nan-output",
        "--method",
        "statistical",
        // Grey occlusion keeps the light image's mean above the model's NaN threshold.
        "--fill",
        "grey",
        "--device",
        "cpu",
        "--out",
        out_dir.to_str().expect("utf-8"),
        dark.to_str().expect("utf-8"),
        light.to_str().expect("utf-8"),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("model 'nan-output' produced non-finite outputs"),
        "{}",
        errors[0]
    );
    let written: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("out")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        written.iter().all(|f| f.starts_with("light.")),
        "{written:?}"
    );
    assert!(
        written
            .iter()
            .any(|f| f == "light.nan-output.statistical.json")
    );
}

/// `--batch` changes how variants are chunked, never what comes out: the same probabilities for
/// every variant at 1, 7 and the device's own size; 0 is refused.
#[test]
fn batch_size_changes_nothing_but_the_chunking() {
    let probabilities = |batch: Option<&str>| {
        let out = scratch(&format!("batch_{}", batch.unwrap_or("default")));
        let image = data("chelsea.png");
        let mut extra = vec![path_str(&image), "--model", "planted-centre", "--grid", "4"];
        if let Some(b) = batch {
            extra.extend(["--batch", b]);
        }
        let run = explain_into(&out, &extra);
        assert!(run.status.success(), "{}", text(&run.stderr));
        let doc: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("chelsea.planted-centre.arbitrary.json")).expect("json"),
        )
        .expect("parse");
        let cells = doc["phases"][0]["cells"].as_array().expect("cells").clone();
        assert_eq!(cells.len(), 16);
        (cells, doc["faithfulness"].clone())
    };
    let reference = probabilities(None);
    assert_eq!(probabilities(Some("1")), reference);
    assert_eq!(probabilities(Some("7")), reference);

    let refused = glassbox(&["classify", path_str(&data("chelsea.png")), "--batch", "0"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--batch"),
        "{}",
        text(&refused.stderr)
    );
}
