//! Decoding a photo and turning it into a model's input view, with the map back to the photo.

use std::io::{BufRead, Seek};
use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::model::{ChannelOrder, Preprocess, Resize};
use crate::{Error, Result};

/// Largest accepted side, checked from the header before any pixel is allocated.
pub const MAX_SIDE: u32 = 20_000;
/// Largest accepted file.
pub const MAX_FILE_BYTES: u64 = 512 << 20;
/// Largest accepted decoded size in bytes.
pub const MAX_DECODED_BYTES: u64 = 1 << 30;

/// A decoded photo.
#[derive(Debug, Clone)]
pub struct Photo {
    /// RGB pixels, EXIF orientation applied, any alpha channel dropped.
    pub rgb: RgbImage,
    /// Notes worth telling the user (e.g. "animated GIF: first frame used").
    pub notes: Vec<String>,
}

/// Opens and decodes an image file, refusing what cannot be a photo before allocating for it.
pub fn load_photo(path: &Path) -> Result<Photo> {
    let refuse = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(io_reason(&e)))?;
    if meta.is_dir() {
        return Err(refuse("is a directory, not an image".into()));
    }
    if !meta.is_file() {
        // A pipe or device would block or never end: refuse it before reading.
        return Err(refuse(
            "is not a regular file (a pipe, socket or device)".into(),
        ));
    }
    if meta.len() == 0 {
        return Err(refuse("is empty (0 bytes)".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(refuse(format!(
            "is {} MiB; glassbox reads image files up to {} MiB",
            meta.len() >> 20,
            MAX_FILE_BYTES >> 20
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| refuse(io_reason(&e)))?;
    decode_bytes(&bytes).map_err(refuse)
}

/// Decodes an image from bytes (same rules as [`load_photo`]).
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<Photo, String> {
    if bytes.is_empty() {
        return Err("is empty (0 bytes)".into());
    }
    if bytes.starts_with(&[0xFF, 0xD8]) && !has_jpeg_end(bytes) {
        // JPEG decoders fill a truncated scan with grey and report success; refuse it instead.
        return Err("is a truncated JPEG (no end-of-image marker)".into());
    }
    decode(std::io::Cursor::new(bytes))
}

/// Whether a JPEG's end-of-image marker appears at its end (trailing padding of up to 1 KiB is
/// tolerated, as some cameras write it).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn decode<R: BufRead + Seek>(reader: R) -> std::result::Result<Photo, String> {
    let mut reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let format = reader
        .format()
        .ok_or("is not an image in a format glassbox reads (PNG, JPEG, GIF, WebP, TIFF, BMP)")?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| describe(&e))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(format!("has no pixels ({w}x{h})"));
    }
    let mut notes = Vec::new();
    if format == image::ImageFormat::Gif {
        notes.push("GIF: the first frame is used".to_string());
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| describe(&e))?;
    if orientation != image::metadata::Orientation::NoTransforms {
        img.apply_orientation(orientation);
        notes.push(format!("EXIF orientation applied ({orientation:?})"));
    }
    Ok(Photo {
        rgb: img.to_rgb8(),
        notes,
    })
}

fn describe(e: &image::ImageError) -> String {
    match e {
        image::ImageError::Limits(l) => {
            format!("is too large to decode safely ({l}; sides up to {MAX_SIDE} px)")
        }
        image::ImageError::Unsupported(u) => format!("uses an unsupported image feature: {u}"),
        image::ImageError::Decoding(d) => format!("cannot be decoded (corrupt or truncated?): {d}"),
        other => format!("cannot be decoded: {other}"),
    }
    .replace('\n', " ")
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The model's input view of a photo: the resized/cropped RGB image the model sees, and where
/// it came from in the photo.
#[derive(Debug, Clone)]
pub struct View {
    /// The view's pixels, `width × height` of the model input, RGB.
    pub rgb: RgbImage,
    /// The photo's size.
    pub photo_size: (u32, u32),
    /// The region of the photo the view shows, in photo pixels: `(x0, y0, width, height)`.
    pub crop: (f32, f32, f32, f32),
}

impl View {
    /// Fits `photo` to `pre`'s input size with its resize policy.
    pub fn new(photo: &RgbImage, pre: &Preprocess) -> Self {
        let (pw, ph) = photo.dimensions();
        let (w, h) = (pre.width, pre.height);
        let (rgb, crop) = match pre.resize {
            Resize::Stretch => (resize(photo, w, h), (0.0, 0.0, pw as f32, ph as f32)),
            Resize::CentreSquare => {
                let side = pw.min(ph);
                let (x0, y0) = ((pw - side) / 2, (ph - side) / 2);
                let square = image::imageops::crop_imm(photo, x0, y0, side, side).to_image();
                (
                    resize(&square, w, h),
                    (x0 as f32, y0 as f32, side as f32, side as f32),
                )
            }
            Resize::ShorterSide(shorter) => {
                // As torchvision: shorter side to `shorter`, longer side truncated, then a centre
                // crop whose offset is rounded.
                let (rw, rh) = if pw <= ph {
                    (
                        shorter,
                        ((shorter as u64 * ph as u64) / pw as u64).max(1) as u32,
                    )
                } else {
                    (
                        ((shorter as u64 * pw as u64) / ph as u64).max(1) as u32,
                        shorter,
                    )
                };
                let resized = resize(photo, rw, rh);
                let (cw, ch) = (w.min(rw), h.min(rh));
                let x0 = ((rw - cw) as f32 / 2.0).round() as u32;
                let y0 = ((rh - ch) as f32 / 2.0).round() as u32;
                let cropped = image::imageops::crop_imm(&resized, x0, y0, cw, ch).to_image();
                let cropped = if (cw, ch) == (w, h) {
                    cropped
                } else {
                    resize(&cropped, w, h)
                };
                let (sx, sy) = (pw as f32 / rw as f32, ph as f32 / rh as f32);
                (
                    cropped,
                    (
                        x0 as f32 * sx,
                        y0 as f32 * sy,
                        cw as f32 * sx,
                        ch as f32 * sy,
                    ),
                )
            }
        };
        Self {
            rgb,
            photo_size: (pw, ph),
            crop,
        }
    }

    /// The view pixel that photo pixel `(x, y)` falls on, if any.
    pub fn view_pixel(&self, x: u32, y: u32) -> Option<(u32, u32)> {
        let (x0, y0, cw, ch) = self.crop;
        let vx = ((x as f32 + 0.5 - x0) / cw * self.rgb.width() as f32).floor();
        let vy = ((y as f32 + 0.5 - y0) / ch * self.rgb.height() as f32).floor();
        let inside =
            vx >= 0.0 && vy >= 0.0 && vx < self.rgb.width() as f32 && vy < self.rgb.height() as f32;
        inside.then_some((vx as u32, vy as u32))
    }
}

fn resize(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.dimensions() == (w, h) {
        img.clone()
    } else {
        image::imageops::resize(img, w, h, FilterType::Triangle)
    }
}

/// The model input of one RGB view: `[3, H, W]` values in model channel order.
pub fn to_input(rgb: &RgbImage, pre: &Preprocess) -> Vec<f32> {
    let (w, h) = rgb.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0.0; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            let src = match pre.channels {
                ChannelOrder::Rgb => px[c],
                ChannelOrder::Bgr => px[2 - c],
            };
            out[c * plane + i] = (src as f32 * pre.scale - pre.mean[c]) / pre.std[c];
        }
    }
    out
}
