//! The model descriptors, `onnx/<id>.toml`: what they may say, and the checks a descriptor must
//! pass before its graph is read.

use serde::Deserialize;

/// A model descriptor, `onnx/<id>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Descriptor {
    /// Human-readable name.
    pub(crate) name: String,
    /// Whether this is the model used when none is named (exactly one must be).
    #[serde(default)]
    pub(crate) default: bool,
    /// The real ONNX file, relative to `onnx/`.
    pub(crate) file: String,
    /// Expected SHA-256 of `file` (hex), for files fetched from elsewhere.
    pub(crate) sha256: Option<String>,
    /// Weight-free skeleton used when `file` is absent.
    pub(crate) skeleton: Option<String>,
    /// Compile the weights into the binary (otherwise they are read from disk at load time).
    #[serde(default)]
    pub(crate) embed: bool,
    /// A test fixture (tests/models), hidden from `glassbox models` unless asked for.
    #[serde(default)]
    pub(crate) fixture: bool,
    /// Class names, one per line, relative to `onnx/`.
    pub(crate) labels: String,
    /// `logits` or `probabilities`.
    pub(crate) output: String,
    /// Where the graph and weights come from.
    pub(crate) source: String,
    /// Licence of the weights.
    pub(crate) licence: String,
    pub(crate) preprocess: Preprocess,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Preprocess {
    /// Model input `[width, height]`.
    pub(crate) size: [u32; 2],
    /// `stretch`, `shorter-side` or `centre-square`.
    pub(crate) resize: String,
    /// For `shorter-side`: the shorter side before the centre crop.
    pub(crate) resize_shorter: Option<u32>,
    /// `rgb` or `bgr`.
    pub(crate) channels: String,
    /// Raw 0..255 values are multiplied by this first.
    pub(crate) scale: f32,
    /// Subtracted after scaling, per model channel.
    pub(crate) mean: [f32; 3],
    /// Divides after the mean, per model channel.
    pub(crate) std: [f32; 3],
}

pub(crate) fn check_descriptor(desc: &Descriptor) -> Result<(), String> {
    match desc.preprocess.resize.as_str() {
        "stretch" | "centre-square" => {}
        "shorter-side" => {
            let shorter = desc
                .preprocess
                .resize_shorter
                .ok_or("resize = \"shorter-side\" needs resize_shorter")?;
            let [w, h] = desc.preprocess.size;
            if shorter < w.min(h) {
                return Err(format!(
                    "resize_shorter {shorter} is smaller than the crop {w}x{h}"
                ));
            }
        }
        other => {
            return Err(format!(
                "unknown resize policy '{other}' (stretch, shorter-side, centre-square)"
            ));
        }
    }
    if !matches!(desc.preprocess.channels.as_str(), "rgb" | "bgr") {
        return Err(format!(
            "unknown channel order '{}' (rgb, bgr)",
            desc.preprocess.channels
        ));
    }
    if !matches!(desc.output.as_str(), "logits" | "probabilities") {
        return Err(format!(
            "unknown output kind '{}' (logits, probabilities)",
            desc.output
        ));
    }
    if desc
        .preprocess
        .std
        .iter()
        .any(|s| *s == 0.0 || !s.is_finite())
        || !desc.preprocess.scale.is_finite()
    {
        return Err("preprocess std must be finite and non-zero, scale finite".into());
    }
    let [w, h] = desc.preprocess.size;
    if w == 0 || h == 0 || w > 4096 || h > 4096 {
        return Err(format!("input size {w}x{h} is out of range"));
    }
    Ok(())
}
