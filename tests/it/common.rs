//! Shared helpers: fixture paths and the deterministic parity pattern.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::RgbImage;

/// Runs the `glassbox` binary with `args`.
pub fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("run glassbox")
}

/// Process output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path as the `&str` an argument list wants.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The binary's one-line errors in `stderr`.
pub fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("glassbox: error:"))
        .collect()
}

/// A file under `tests/data/`.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The hashed pixel pattern of `tests/data/make_parity.py` (same formula, same bytes).
pub fn pattern(sample: u64, width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let px = |c: u64| {
            let key = x as u64 * 7 + y as u64 * 13 + c * 101 + sample * 57;
            ((key.wrapping_mul(2_654_435_761) % (1 << 32)) >> 24) as u8
        };
        image::Rgb([px(0), px(1), px(2)])
    })
}

/// The cells of a 10×10 grid (numbered row-major) that lie in `planted-centre`'s window: view
/// rows and columns 69..138, cells (3..=5, 3..=5) (`tests/models/make_planted.py`).
pub fn planted_centre_cells() -> Vec<usize> {
    (3..6)
        .flat_map(|r| (3..6).map(move |c| r * 10 + c))
        .collect()
}

/// A dim square exactly over planted-centre's window on black: the model says "planted region"
/// (window mean 0.16 > 0.1) and nothing else in the image matters.
pub fn dim_window_photo() -> RgbImage {
    RgbImage::from_fn(224, 224, |x, y| {
        let inside = (69..138).contains(&x) && (69..138).contains(&y);
        image::Rgb(if inside { [40, 40, 40] } else { [0, 0, 0] })
    })
}
