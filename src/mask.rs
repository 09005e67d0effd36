//! The kept mask of an explanation: which of the model's input-view pixels an explainer kept as
//! important, with the view's size, so that a mask never travels apart from its shape.
//!
//! A [`Mask`] reads as a `[bool]` (row-major, `true` = kept) through `Deref`, so slices of it go
//! wherever a `&[bool]` does; it adds the kept fraction, the run-length codec that explanation
//! documents carry, and the Jaccard index on one view and across two views of one photo.

use std::ops::{Deref, DerefMut};

use image::ImageEncoder;

use crate::view::View;
use crate::{Error, Result};

/// Kept view pixels, row-major, with the view's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    width: u32,
    height: u32,
    kept: Vec<bool>,
}

impl Mask {
    /// `kept` over a `width × height` view, row-major.
    ///
    /// # Errors
    /// When `kept` does not hold `width · height` pixels.
    pub fn new(width: u32, height: u32, kept: Vec<bool>) -> Result<Self> {
        if kept.len() != width as usize * height as usize {
            return Err(Error::InvalidArgument(format!(
                "a mask of {} pixels cannot cover a {width}×{height} view",
                kept.len()
            )));
        }
        Ok(Self {
            width,
            height,
            kept,
        })
    }

    /// Every pixel of a `width × height` view set to `kept`.
    pub fn filled(width: u32, height: u32, kept: bool) -> Self {
        Self {
            width,
            height,
            kept: vec![kept; width as usize * height as usize],
        }
    }

    /// The mask encoded by [`Mask::runs`] over a `width × height` view.
    ///
    /// # Errors
    /// When the runs do not add up to the view's pixels.
    pub fn from_runs(width: u32, height: u32, runs: &[usize]) -> Result<Self> {
        Self::new(width, height, mask_from_runs(runs))
    }

    /// View width.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// View height.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Whether pixel `(x, y)` is kept.
    pub fn get(&self, x: u32, y: u32) -> bool {
        self.kept[(y * self.width + x) as usize]
    }

    /// Fraction of the view kept.
    pub fn kept_fraction(&self) -> f64 {
        kept_fraction(&self.kept)
    }

    /// Run lengths over the row-major pixels (see [`mask_runs`]).
    pub fn runs(&self) -> Vec<usize> {
        mask_runs(&self.kept)
    }

    /// The Jaccard index with a mask over the same view.
    ///
    /// # Errors
    /// When the two masks differ in size.
    pub fn jaccard(&self, other: &Mask) -> Result<f64> {
        if self.size() != other.size() {
            return Err(Error::InvalidArgument(format!(
                "masks of {}×{} and {}×{} pixels cannot be compared",
                self.width, self.height, other.width, other.height
            )));
        }
        jaccard(&self.kept, &other.kept)
    }

    /// The mask as a greyscale PNG, white = kept.
    ///
    /// # Errors
    /// When PNG encoding fails.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let (w, h) = self.size();
        let pixels: Vec<u8> = self.kept.iter().map(|&k| if k { 255 } else { 0 }).collect();
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&pixels, w, h, image::ExtendedColorType::L8)
            .map_err(|e| Error::InvalidArgument(format!("PNG encoding failed: {e}")))?;
        Ok(png)
    }

    /// The pixels, row-major.
    pub fn into_vec(self) -> Vec<bool> {
        self.kept
    }
}

impl Deref for Mask {
    type Target = [bool];

    fn deref(&self) -> &[bool] {
        &self.kept
    }
}

impl DerefMut for Mask {
    fn deref_mut(&mut self) -> &mut [bool] {
        &mut self.kept
    }
}

impl PartialEq<Vec<bool>> for Mask {
    fn eq(&self, other: &Vec<bool>) -> bool {
        self.kept == *other
    }
}

/// Fraction of a mask's pixels that are kept.
pub fn kept_fraction(kept: &[bool]) -> f64 {
    kept.iter().filter(|k| **k).count() as f64 / kept.len().max(1) as f64
}

/// A mask as run lengths over its row-major pixels, alternating not-kept/kept and starting with
/// not-kept (that first run may be empty): the compact form explanation documents carry.
pub fn mask_runs(kept: &[bool]) -> Vec<usize> {
    let mut runs = Vec::new();
    let (mut current, mut len) = (false, 0usize);
    for &k in kept {
        if k == current {
            len += 1;
        } else {
            runs.push(len);
            current = k;
            len = 1;
        }
    }
    runs.push(len);
    runs
}

/// The mask of [`mask_runs`], decoded.
pub fn mask_from_runs(runs: &[usize]) -> Vec<bool> {
    let mut kept = Vec::with_capacity(runs.iter().sum());
    for (i, run) in runs.iter().enumerate() {
        kept.extend(std::iter::repeat_n(i % 2 == 1, *run));
    }
    kept
}

/// The Jaccard index of two masks over the same pixels, `|A ∩ B| / |A ∪ B|`; 1 when both are
/// empty.
pub fn jaccard(a: &[bool], b: &[bool]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(Error::InvalidArgument(format!(
            "masks of {} and {} pixels cannot be compared",
            a.len(),
            b.len()
        )));
    }
    let (mut inter, mut union) = (0usize, 0usize);
    for (x, y) in a.iter().zip(b) {
        inter += (*x && *y) as usize;
        union += (*x || *y) as usize;
    }
    Ok(if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    })
}

/// The Jaccard index of two masks given over two views of one photo (two models may resize and
/// crop differently). Views of the same geometry are compared pixel for pixel; otherwise both
/// masks are read back onto the photo (sampled at most 512 px along its longer side) over the
/// region both models saw.
pub fn jaccard_views(a: &View, kept_a: &[bool], b: &View, kept_b: &[bool]) -> Result<f64> {
    let same = a.rgb.dimensions() == b.rgb.dimensions()
        && a.photo_size == b.photo_size
        && a.crop == b.crop;
    if same {
        return jaccard(kept_a, kept_b);
    }
    if a.photo_size != b.photo_size {
        return Err(Error::InvalidArgument(
            "the two views come from different photos".into(),
        ));
    }
    let check = |v: &View, k: &[bool]| {
        if k.len() == (v.rgb.width() * v.rgb.height()) as usize {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "a mask does not match its view".into(),
            ))
        }
    };
    check(a, kept_a)?;
    check(b, kept_b)?;
    let (pw, ph) = a.photo_size;
    let step = pw.max(ph).div_ceil(512).max(1) as usize;
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for y in (0..ph).step_by(step) {
        for x in (0..pw).step_by(step) {
            if let (Some((ax, ay)), Some((bx, by))) = (a.view_pixel(x, y), b.view_pixel(x, y)) {
                sa.push(kept_a[(ay * a.rgb.width() + ax) as usize]);
                sb.push(kept_b[(by * b.rgb.width() + bx) as usize]);
            }
        }
    }
    jaccard(&sa, &sb)
}
