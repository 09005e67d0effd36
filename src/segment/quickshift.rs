//! Quickshift superpixels, as scikit-image computes them for LIME's image explainer.
//!
//! A faithful port of `skimage.segmentation.quickshift` (Vedaldi & Soatto, *Quick shift and
//! kernel methods for mode seeking*, ECCV 2008,
//! <https://www.robots.ox.ac.uk/~vedaldi/assets/pubs/vedaldi08quick.pdf>), following the
//! Cython source `skimage/segmentation/_quickshift_cy.pyx` of
//! <https://github.com/scikit-image/scikit-image>:
//!
//! 1. `img_as_float` (`u8 × (1/255)`), [`rgb_to_lab`] (skimage's `rgb2lab`, D65, 2° observer),
//!    then the Lab values are multiplied by `ratio` (`sigma = 0`: no pre-smoothing, as in LIME).
//! 2. Density of every pixel: `Σ exp(-d² / (2·kernel_size²))` over the window of half-width
//!    `ceil(3·kernel_size)` (clipped at the borders), where `d²` is the squared colour distance
//!    (ratio-scaled Lab) plus the squared pixel distance.
//! 3. Parent of every pixel: the nearest pixel (same `d`) of strictly higher density in that
//!    window, the first in row-major order on equal distances; pixels without one, or whose
//!    nearest is farther than `max_dist`, are roots.
//! 4. Every pixel takes the root of its tree; labels number the roots in increasing pixel index
//!    (what `np.unique(roots, return_inverse=True)` yields).
//!
//! Ties: scikit-image adds `N(0, 1e-5)` noise from numpy's random generator to the densities so
//! that flat areas do not produce equal densities. Here the noise is a deterministic per-pixel
//! hash of the pixel index (a centred sum of four 16-bit uniforms, standard deviation 1e-5),
//! so the result never depends on a random state, while flat regions still break into the same
//! kind of window-sized pieces as in scikit-image (comparing `(density, index)` instead would
//! merge a whole flat region into one segment). Results therefore equal scikit-image's except
//! where densities tie to within that noise (flat areas), where only the realisation differs.
//!
//! Cost: each pair's kernel term is symmetric, so it is computed once for both pixels; a 224×224
//! image with LIME's parameters (25×25 windows) takes about 0.15 s on one core. Both passes run
//! on every core (rayon), with results that do not depend on how many there are.

use image::RgbImage;
use rayon::prelude::*;

/// Parameters of scikit-image's quickshift (LIME's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quickshift {
    /// Width (standard deviation, in pixels) of the Gaussian kernel that smooths the sample
    /// density; the search window has half-width `ceil(3 × kernel_size)`. Higher: fewer segments.
    pub kernel_size: f64,
    /// Largest distance (ratio-scaled Lab and pixels) from a pixel to its parent; farther
    /// parents are cut, making the pixel a root. Higher: fewer segments.
    pub max_dist: f64,
    /// Weight of colour against position: Lab values are multiplied by it before distances.
    pub ratio: f64,
}

impl Default for Quickshift {
    /// LIME's `SegmentationAlgorithm('quickshift', kernel_size=4, max_dist=200, ratio=0.2)`.
    fn default() -> Self {
        Self {
            kernel_size: 4.0,
            max_dist: 200.0,
            ratio: 0.2,
        }
    }
}

impl Quickshift {
    /// Label map (row-major, values 0..S-1, every value used) of an RGB image.
    ///
    /// Any image size works (an empty image gives an empty map). scikit-image rejects
    /// `kernel_size < 1`; here such values are used as given, and a zero, negative or NaN
    /// `kernel_size` makes every pixel its own segment.
    pub fn segment(&self, rgb: &RgbImage) -> Vec<u32> {
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        let n = width * height;
        if n == 0 {
            return Vec::new();
        }
        let ratio = self.ratio;
        let image: Vec<[f64; 3]> = rgb_to_lab(rgb)
            .into_iter()
            .map(|[l, a, b]| [l * ratio, a * ratio, b * ratio])
            .collect();

        let inv_kernel_size_sqr = -0.5 / (self.kernel_size * self.kernel_size);
        // `<int>ceil(3 * kernel_size)`; NaN and negatives give an empty reach, and a reach beyond
        // the image changes nothing.
        let reach = (3.0 * self.kernel_size)
            .ceil()
            .max(0.0)
            .min(width.max(height) as f64) as usize;

        let densities = densities(&image, width, height, reach, inv_kernel_size_sqr);
        let parent = parents(&image, &densities, width, height, reach, self.max_dist);
        relabel_roots(parent)
    }
}

/// Tie-breaking noise of pixel `index`: deterministic, zero-mean, standard deviation 1e-5.
fn tie_noise(index: usize) -> f64 {
    // splitmix64 finaliser of the index.
    let mut z = (index as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // Sum of four uniforms on [0, 1): mean 2, variance 1/3.
    let sum: f64 = (0..4)
        .map(|k| ((z >> (16 * k)) & 0xFFFF) as f64 + 0.5)
        .sum::<f64>()
        / 65536.0;
    (sum - 2.0) * (1e-5 * 3f64.sqrt())
}

/// Row bands the density pass is split into. Fixed, not the thread count: every band adds into
/// its own buffer and the buffers are summed in band order, so the densities (and the segments)
/// are the same on every machine, however many cores it has.
const BANDS: usize = 16;

/// Kernel density of every pixel (plus the tie-breaking noise). The pair terms are symmetric
/// and the clipped windows are too (q is in p's window iff p is in q's), so each pair's
/// `exp` is computed once and added to both pixels. Bands of rows run in parallel.
fn densities(
    image: &[[f64; 3]],
    width: usize,
    height: usize,
    reach: usize,
    inv_kernel_size_sqr: f64,
) -> Vec<f64> {
    let band_rows = height.div_ceil(BANDS).max(1);
    // Each band's terms land on its own rows and the `reach` rows below them.
    let partial: Vec<(usize, Vec<f64>)> = (0..height.div_ceil(band_rows))
        .into_par_iter()
        .map(|band| {
            let rows = band * band_rows..((band + 1) * band_rows).min(height);
            let touched = rows.start..(rows.end + reach).min(height);
            let mut dens = vec![0.0; touched.len() * width];
            accumulate(
                image,
                width,
                height,
                reach,
                inv_kernel_size_sqr,
                rows,
                &mut dens,
            );
            (touched.start * width, dens)
        })
        .collect();
    let mut dens: Vec<f64> = (0..image.len()).map(tie_noise).collect();
    for (offset, band) in &partial {
        for (d, b) in dens[*offset..].iter_mut().zip(band) {
            *d += b;
        }
    }
    dens
}

/// Adds the kernel terms of every pair whose first pixel (in row-major order) lies in `rows` to
/// `dens`, which holds the pixels from the first of `rows` on.
fn accumulate(
    image: &[[f64; 3]],
    width: usize,
    height: usize,
    reach: usize,
    inv_kernel_size_sqr: f64,
    rows: std::ops::Range<usize>,
    dens: &mut [f64],
) {
    // Spatial weights exp(-(dr² + dc²) / 2k²) could be factored out, but keeping the sum inside
    // one exp mirrors scikit-image's arithmetic.
    let offset = rows.start * width;
    for r in rows {
        let r_max = (r + reach + 1).min(height);
        for c in 0..width {
            let p = r * width + c;
            let px = image[p];
            // Self term: distance 0.
            let mut acc = (0.0 * inv_kernel_size_sqr).exp();
            // Same row, to the right.
            let c_max = (c + reach + 1).min(width);
            for c_ in c + 1..c_max {
                let q = r * width + c_;
                let e = pair_term(px, image[q], 0.0, (c_ - c) as f64, inv_kernel_size_sqr);
                acc += e;
                dens[q - offset] += e;
            }
            // Rows below, whole window width.
            let c_min = c.saturating_sub(reach);
            for r_ in r + 1..r_max {
                let dr = (r_ - r) as f64;
                let row = r_ * width;
                for c_ in c_min..c_max {
                    let q = row + c_;
                    let e = pair_term(px, image[q], dr, c as f64 - c_ as f64, inv_kernel_size_sqr);
                    acc += e;
                    dens[q - offset] += e;
                }
            }
            dens[p - offset] += acc;
        }
    }
}

/// `exp(d² × inv_kernel_size_sqr)`, with `d²` summed in scikit-image's order.
#[inline(always)]
fn pair_term(a: [f64; 3], b: [f64; 3], dr: f64, dc: f64, inv_kernel_size_sqr: f64) -> f64 {
    (dist2(a, b, dr, dc) * inv_kernel_size_sqr).exp()
}

/// Squared distance: colour channels, then rows, then columns (scikit-image's order).
#[inline(always)]
fn dist2(a: [f64; 3], b: [f64; 3], dr: f64, dc: f64) -> f64 {
    let t0 = a[0] - b[0];
    let t1 = a[1] - b[1];
    let t2 = a[2] - b[2];
    t0 * t0 + t1 * t1 + t2 * t2 + dr * dr + dc * dc
}

/// Parent of every pixel: the nearest pixel of higher density in its window (itself if none,
/// or if the nearest is farther than `max_dist`).
fn parents(
    image: &[[f64; 3]],
    dens: &[f64],
    width: usize,
    height: usize,
    reach: usize,
    max_dist: f64,
) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..image.len()).collect();
    parent
        .par_chunks_mut(width)
        .enumerate()
        .for_each(|(r, row_parents)| {
            let r_min = r.saturating_sub(reach);
            let r_max = (r + reach + 1).min(height);
            for (c, parent_p) in row_parents.iter_mut().enumerate() {
                let p = r * width + c;
                let (px, current) = (image[p], dens[p]);
                let c_min = c.saturating_sub(reach);
                let c_max = (c + reach + 1).min(width);
                let mut closest = f64::MAX;
                let mut best = p;
                for r_ in r_min..r_max {
                    let dr = r as f64 - r_ as f64;
                    let row = r_ * width;
                    for c_ in c_min..c_max {
                        let q = row + c_;
                        if dens[q] > current {
                            let d = dist2(px, image[q], dr, c as f64 - c_ as f64);
                            if d < closest {
                                closest = d;
                                best = q;
                            }
                        }
                    }
                }
                // `too_far = sqrt(closest) > max_dist`; a pixel without a denser neighbour keeps itself.
                let too_far = closest.sqrt() > max_dist;
                if !too_far {
                    *parent_p = best;
                }
            }
        });
    parent
}

/// Replaces every pixel's parent by its tree's root, then numbers the roots by pixel index.
fn relabel_roots(mut parent: Vec<usize>) -> Vec<u32> {
    // Parents have strictly higher density, so the forest has no cycles; compress each chain
    // as it is walked, so every pixel is visited a bounded number of times.
    let mut chain = Vec::new();
    for p in 0..parent.len() {
        let mut q = p;
        while parent[q] != q {
            chain.push(q);
            q = parent[q];
        }
        for &s in &chain {
            parent[s] = q;
        }
        chain.clear();
    }
    let mut label_of = vec![u32::MAX; parent.len()];
    let mut next = 0u32;
    for (p, &root) in parent.iter().enumerate() {
        if root == p {
            label_of[p] = next;
            next += 1;
        }
    }
    parent.iter().map(|&root| label_of[root]).collect()
}

/// sRGB component in `[0, 1]` to linear light (skimage's `rgb2xyz` gamma expansion).
fn linearize(v: f64) -> f64 {
    if v > 0.04045 {
        ((v + 0.055) / 1.055).powf(2.4)
    } else {
        v / 12.92
    }
}

/// sRGB to XYZ, skimage's `xyz_from_rgb` (sRGB primaries, D65).
const XYZ_FROM_RGB: [[f64; 3]; 3] = [
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
];

/// skimage's D65 / 2° reference white.
const WHITE_D65: [f64; 3] = [0.95047, 1.0, 1.08883];

/// Linear RGB to CIE Lab, as skimage's `xyz2lab(rgb2xyz(·))`.
fn linear_to_lab(lin: [f64; 3]) -> [f64; 3] {
    let f = |k: usize| {
        let m = XYZ_FROM_RGB[k];
        let v = (lin[0] * m[0] + lin[1] * m[1] + lin[2] * m[2]) / WHITE_D65[k];
        if v > 0.008856 {
            v.cbrt()
        } else {
            7.787 * v + 16.0 / 116.0
        }
    };
    let (x, y, z) = (f(0), f(1), f(2));
    [116.0 * y - 16.0, 500.0 * (x - y), 200.0 * (y - z)]
}

/// One sRGB colour with components in `[0, 1]` (any float, as after a rescale) to CIE Lab.
pub(crate) fn srgb_to_lab(rgb: [f64; 3]) -> [f64; 3] {
    linear_to_lab([linearize(rgb[0]), linearize(rgb[1]), linearize(rgb[2])])
}

/// CIE Lab (D65, 2° observer) of every pixel, row-major, as scikit-image's
/// `rgb2lab(img_as_float(rgb))` computes it in f64 (equal to within ~1e-13, the rounding of
/// numpy's matrix product): components scaled by `1/255`, sRGB gamma
/// expansion (threshold 0.04045), skimage's RGB→XYZ matrix, white point
/// `(0.95047, 1, 1.08883)` and `f(t) = cbrt(t)` above 0.008856, else `7.787·t + 16/116`.
/// `L` is in `[0, 100]`.
pub fn rgb_to_lab(rgb: &RgbImage) -> Vec<[f64; 3]> {
    let lut: Vec<f64> = (0..=255u8)
        .map(|v| linearize(f64::from(v) * (1.0 / 255.0)))
        .collect();
    rgb.pixels()
        .map(|px| {
            linear_to_lab([
                lut[px[0] as usize],
                lut[px[1] as usize],
                lut[px[2] as usize],
            ])
        })
        .collect()
}
