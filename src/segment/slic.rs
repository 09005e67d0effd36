//! SLIC superpixels, as scikit-image computes them for LIME's `slic` segmentation.
//!
//! Simple Linear Iterative Clustering (Achanta et al., *SLIC Superpixels Compared to
//! State-of-the-Art Superpixel Methods*, IEEE TPAMI 34(11), 2012,
//! <https://doi.org/10.1109/TPAMI.2012.120>), following `skimage.segmentation.slic` and its
//! Cython helpers `skimage/segmentation/_slic.pyx` (<https://github.com/scikit-image/scikit-image>)
//! for a 2-D RGB image without mask, `convert2lab=True`, `max_num_iter=10`, `slic_zero=False`:
//!
//! 1. `img_as_float`, then rescaled to `[0, 1]` by the image's global min and max (a no-op for
//!    images that use both 0 and 255), converted to Lab ([`super::quickshift::rgb_to_lab`]) and
//!    smoothed per channel by a Gaussian of `sigma` pixels (radius `⌊4σ + ½⌋`, mirrored borders
//!    as scipy's `mode='reflect'`).
//! 2. Centres on skimage's `regular_grid` (step `S ≈ √(HW/segments)`, offset `S/2`), with
//!    colour initialised to 0 as skimage does.
//! 3. Up to 10 k-means iterations: every centre claims the pixels of its `±2S` window whose
//!    distance `dc²/m² + ds²/S²` (i.e. `sqrt(dc² + (ds/S)²·m²)` up to the factor `m`) is lower
//!    than their current best (the earlier centre wins ties); centres move to their pixels'
//!    means; stop early when nothing changes.
//! 4. Connectivity: a raster-order 4-connected flood fill relabels the components; a component
//!    smaller than half the average segment size joins the last already-labelled component it
//!    touches, and a flood stops at three times the average size (skimage's bounded breadth-first
//!    search), starting a new segment for the rest.
//!
//! Labels are `0..S-1` in order of first occurrence in row-major order. The result is
//! deterministic and every segment is 4-connected.

use image::RgbImage;

use super::quickshift::{rgb_to_lab, srgb_to_lab};

/// Parameters of scikit-image's SLIC (LIME's `slic(image, n_segments, compactness, sigma)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slic {
    /// Approximate number of segments (grid centres); values below 1 count as 1. The result
    /// may have a few more or fewer after connectivity is enforced.
    pub segments: u32,
    /// Balance of colour against space (`m`): higher gives squarer segments. Values that are not
    /// positive (or NaN) drop the spatial term; `+∞` drops the colour term.
    pub compactness: f64,
    /// Standard deviation, in pixels, of the Gaussian pre-smoothing; 0 (or negative, or NaN)
    /// disables it.
    pub sigma: f64,
}

impl Default for Slic {
    /// 50 segments, compactness 10, sigma 1.
    fn default() -> Self {
        Self {
            segments: 50,
            compactness: 10.0,
            sigma: 1.0,
        }
    }
}

/// k-means iterations (skimage's `max_num_iter`).
const MAX_ITER: usize = 10;

impl Slic {
    /// Label map (row-major, values 0..S-1, every value used, each segment 4-connected) of an RGB
    /// image. Any image size works (an empty image gives an empty map).
    pub fn segment(&self, rgb: &RgbImage) -> Vec<u32> {
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        let n = width * height;
        if n == 0 {
            return Vec::new();
        }
        let mut lab = rescaled_lab(rgb);
        if self.sigma > 0.0 {
            smooth(&mut lab, width, height, self.sigma);
        }
        let (colour_scale, spatial_on) = if self.compactness > 0.0 {
            (1.0 / self.compactness, true)
        } else {
            (1.0, false)
        };
        for px in &mut lab {
            px.iter_mut().for_each(|v| *v *= colour_scale);
        }

        let n_segments = self.segments.max(1) as usize;
        let (ys, xs) = regular_grid(height, width, n_segments);
        let mut centres: Vec<[f64; 5]> = Vec::with_capacity(ys.slices() * xs.slices());
        for y in (ys.start..height).step_by(ys.step) {
            for x in (xs.start..width).step_by(xs.step) {
                centres.push([y as f64, x as f64, 0.0, 0.0, 0.0]);
            }
        }
        let step = ys.step.max(xs.step) as f64;
        let spatial_weight = if spatial_on { 1.0 / (step * step) } else { 0.0 };
        let labels = kmeans(&lab, width, height, &mut centres, spatial_weight);

        let segment_size = n as f64 / centres.len() as f64;
        let min_size = (0.5 * segment_size) as usize;
        let max_size = (3.0 * segment_size) as usize;
        let connected = enforce_connectivity(&labels, width, height, min_size, max_size);
        relabel_first_occurrence(&connected)
    }
}

/// `img_as_float`, skimage's rescale to `[0, 1]` by the global min and max, then Lab.
fn rescaled_lab(rgb: &RgbImage) -> Vec<[f64; 3]> {
    let raw = rgb.as_raw();
    let (lo, hi) = raw
        .iter()
        .fold((u8::MAX, u8::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo == 0 && hi == 255 {
        return rgb_to_lab(rgb);
    }
    let (imin, imax) = (f64::from(lo) * (1.0 / 255.0), f64::from(hi) * (1.0 / 255.0));
    let scale = |v: u8| {
        let x = f64::from(v) * (1.0 / 255.0) - imin;
        if imax != imin { x / (imax - imin) } else { x }
    };
    rgb.pixels()
        .map(|px| srgb_to_lab([scale(px[0]), scale(px[1]), scale(px[2])]))
        .collect()
}

/// scipy's `gaussian_filter(…, sigma, mode='reflect', truncate=4.0)` on each Lab channel: rows
/// first, then columns.
fn smooth(lab: &mut [[f64; 3]], width: usize, height: usize, sigma: f64) {
    // `int(4σ + 0.5)`, bounded: beyond a few image lengths the mirrored kernel only repeats.
    let bound = 4 * width.max(height);
    let radius = ((4.0 * sigma + 0.5) as usize).min(bound);
    let weights: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let x = i as f64 - radius as f64;
            (-0.5 / (sigma * sigma) * x * x).exp()
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let weights: Vec<f64> = weights.iter().map(|w| w / total).collect();

    let mut line = Vec::new();
    // Along y (axis 0), one column at a time.
    for x in 0..width {
        line.clear();
        line.extend((0..height).map(|y| lab[y * width + x]));
        for y in 0..height {
            lab[y * width + x] = correlate(&line, y, radius, &weights);
        }
    }
    // Along x (axis 1), one row at a time.
    for y in 0..height {
        line.clear();
        line.extend_from_slice(&lab[y * width..(y + 1) * width]);
        for x in 0..width {
            lab[y * width + x] = correlate(&line, x, radius, &weights);
        }
    }
}

/// `Σ_j w[j] · line[reflect(i + j − radius)]`.
fn correlate(line: &[[f64; 3]], i: usize, radius: usize, weights: &[f64]) -> [f64; 3] {
    let mut acc = [0.0; 3];
    for (j, w) in weights.iter().enumerate() {
        let v = line[reflect(i as isize + j as isize - radius as isize, line.len())];
        for k in 0..3 {
            acc[k] += w * v[k];
        }
    }
    acc
}

/// scipy's `reflect` boundary (`d c b a | a b c d | d c b a`) for any offset; `n ≥ 1`.
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * n as isize;
    let m = i.rem_euclid(period) as usize;
    if m < n { m } else { 2 * n - 1 - m }
}

/// One axis of skimage's `regular_grid`: `start, start + step, …`.
#[derive(Debug, Clone, Copy)]
struct Axis {
    start: usize,
    step: usize,
    len: usize,
}

impl Axis {
    /// How many grid points fall inside the axis.
    fn slices(&self) -> usize {
        if self.start >= self.len {
            0
        } else {
            (self.len - self.start).div_ceil(self.step)
        }
    }
}

/// skimage's `regular_grid((1, height, width), n_points)` for the y and x axes.
fn regular_grid(height: usize, width: usize, n_points: usize) -> (Axis, Axis) {
    let shape = [1usize, height, width];
    let whole = |len| Axis {
        start: 0,
        step: 1,
        len,
    };
    let space_size = (height * width) as f64;
    if space_size <= n_points as f64 {
        return (whole(height), whole(width));
    }
    // Stable argsort, as numpy's for three elements.
    let mut order = [0usize, 1, 2];
    order.sort_by_key(|&d| shape[d]);
    let sorted: Vec<f64> = order.iter().map(|&d| shape[d] as f64).collect();
    let ndim = 3;
    let mut steps = [(space_size / n_points as f64).powf(1.0 / ndim as f64); 3];
    if sorted.iter().zip(&steps).any(|(d, s)| d < s) {
        for dim in 0..ndim {
            steps[dim] = sorted[dim];
            let rest: f64 = sorted[dim + 1..].iter().product();
            let value = if dim + 1 < ndim {
                (rest / n_points as f64).powf(1.0 / (ndim - dim - 1) as f64)
            } else {
                0.0
            };
            steps[dim + 1..].iter_mut().for_each(|s| *s = value);
            if sorted.iter().zip(&steps).all(|(d, s)| d >= s) {
                break;
            }
        }
    }
    let mut axes = [whole(1), whole(height), whole(width)];
    for (k, &d) in order.iter().enumerate() {
        let s = steps[k];
        axes[d] = Axis {
            start: (s / 2.0).floor().max(0.0) as usize,
            step: (s.round_ties_even() as usize).max(1),
            len: shape[d],
        };
    }
    (axes[1], axes[2])
}

/// skimage's `_slic_cython` k-means: returns each pixel's centre index (`u32::MAX` if no window
/// ever reached it) and updates `centres` (`[y, x, L, a, b]`).
fn kmeans(
    lab: &[[f64; 3]],
    width: usize,
    height: usize,
    centres: &mut [[f64; 5]],
    spatial_weight: f64,
) -> Vec<u32> {
    let n = lab.len();
    // Window half-sizes: skimage recomputes the grid for the actual number of centres.
    let (ys, xs) = regular_grid(height, width, centres.len());
    let (reach_y, reach_x) = (2.0 * ys.step as f64, 2.0 * xs.step as f64);
    let mut labels = vec![u32::MAX; n];
    let mut distance = vec![f64::MAX; n];
    let mut alive = vec![true; centres.len()];
    let mut counts = vec![0usize; centres.len()];
    for _ in 0..MAX_ITER {
        let mut change = false;
        distance.iter_mut().for_each(|d| *d = f64::MAX);
        for (k, centre) in centres.iter().enumerate() {
            if !alive[k] {
                continue;
            }
            let [cy, cx, cl, ca, cb] = *centre;
            let y_min = (cy - reach_y).max(0.0) as usize;
            let y_max = ((cy + reach_y + 1.0).min(height as f64) as usize).min(height);
            let x_min = (cx - reach_x).max(0.0) as usize;
            let x_max = ((cx + reach_x + 1.0).min(width as f64) as usize).min(width);
            for y in y_min..y_max {
                let dy = cy - y as f64;
                let dy = dy * dy;
                for x in x_min..x_max {
                    let dx = cx - x as f64;
                    let dx = dx * dx;
                    let p = y * width + x;
                    let px = lab[p];
                    let (t0, t1, t2) = (px[0] - cl, px[1] - ca, px[2] - cb);
                    let dist = (dy + dx) * spatial_weight + t0 * t0 + t1 * t1 + t2 * t2;
                    if distance[p] > dist {
                        labels[p] = k as u32;
                        distance[p] = dist;
                        change = true;
                    }
                }
            }
        }
        if !change {
            break;
        }
        counts.iter_mut().for_each(|c| *c = 0);
        centres.iter_mut().for_each(|c| *c = [0.0; 5]);
        for y in 0..height {
            for x in 0..width {
                let p = y * width + x;
                let Some(centre) = centres.get_mut(labels[p] as usize) else {
                    continue;
                };
                counts[labels[p] as usize] += 1;
                let px = lab[p];
                for (c, v) in centre
                    .iter_mut()
                    .zip([y as f64, x as f64, px[0], px[1], px[2]])
                {
                    *c += v;
                }
            }
        }
        for ((centre, &count), alive) in centres.iter_mut().zip(&counts).zip(alive.iter_mut()) {
            // skimage divides by zero here (NaN centres that never win a pixel again).
            *alive = count > 0;
            centre.iter_mut().for_each(|c| *c /= count.max(1) as f64);
        }
    }
    labels
}

/// skimage's `_enforce_label_connectivity_cython` (2-D, start label 0): raster-order flood fills
/// of at most `max_size` pixels; fills smaller than `min_size` take the label of the last
/// already-labelled neighbour seen.
fn enforce_connectivity(
    labels: &[u32],
    width: usize,
    height: usize,
    min_size: usize,
    max_size: usize,
) -> Vec<u32> {
    const UNSET: u32 = u32::MAX;
    let mut connected = vec![UNSET; labels.len()];
    let mut current = 0u32;
    let mut fill: Vec<usize> = Vec::new();
    for start in 0..labels.len() {
        if connected[start] != UNSET {
            continue;
        }
        let mut adjacent = current;
        let label = labels[start];
        connected[start] = current;
        fill.clear();
        fill.push(start);
        let mut visited = 0;
        'bfs: while visited < fill.len() && fill.len() < max_size {
            let p = fill[visited];
            let (y, x) = (p / width, p % width);
            // skimage's neighbour order: x+1, x-1, y+1, y-1.
            let neighbours = [
                (x + 1 < width).then(|| p + 1),
                (x > 0).then(|| p - 1),
                (y + 1 < height).then(|| p + width),
                (y > 0).then(|| p - width),
            ];
            for q in neighbours.into_iter().flatten() {
                if labels[q] == label && connected[q] == UNSET {
                    connected[q] = current;
                    fill.push(q);
                    if fill.len() >= max_size {
                        break 'bfs;
                    }
                } else if connected[q] != UNSET && connected[q] != current {
                    adjacent = connected[q];
                }
            }
            visited += 1;
        }
        if fill.len() < min_size {
            fill.iter().for_each(|&p| connected[p] = adjacent);
        } else {
            current += 1;
        }
    }
    connected
}

/// Renumbers labels `0..S-1` in order of first appearance in row-major order.
fn relabel_first_occurrence(labels: &[u32]) -> Vec<u32> {
    let mut map = std::collections::HashMap::new();
    labels
        .iter()
        .map(|&l| {
            let next = map.len() as u32;
            *map.entry(l).or_insert(next)
        })
        .collect()
}
