//! The perturbation engine: every explainer's variants, built on the device in one gather.
//!
//! Given the view's model input `base`, a segmentation and a keep-matrix `Z` (`N × S`, 1 keeps a
//! segment, 0 replaces it by the fill), variant `n` is `x_n = fill + (base − fill) · M_n` with
//! `M_n[pixel] = Z[n, segment(pixel)]`. `M` for a whole chunk is one `select` of `Z`'s columns
//! by the label map; nothing is copied per variant on the host.
//!
//! Soft masks (RISE) take the same form with `M_n` in `[0, 1]`: each is a small `cells × cells`
//! grid upsampled bilinearly and cropped ([`SoftMasks`]), and only the grids and the crop
//! shifts are uploaded; the upsample and crop of a whole chunk are two batched matrix products
//! on the device ([`Perturber::soft_masks`]).

use std::ops::Range;
use std::sync::Mutex;

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;

use crate::classify::Probabilities;
use crate::model::Classifier;
use crate::model::incremental::{Bases, Macs};
use crate::segment::{Rect, Segmentation};
use crate::view::to_input;
use crate::{Error, Result};

/// What a hidden segment is replaced with.
///
/// Parses from the command line's spelling: `black`, `grey` (or `gray`), `mean`, `blur` (sigma
/// 5) or `blur:SIGMA` with `0 < SIGMA ≤ 100`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fill {
    /// RGB 0 through the model's preprocessing (the report's choice).
    #[default]
    Black,
    /// RGB 128.
    Grey,
    /// Each segment's own mean colour (lime's `hide_color=None`).
    Mean,
    /// A Gaussian-blurred copy of the view, with this sigma in view pixels.
    Blur(f32),
}

impl Fill {
    /// The fill's name as the command line spells it (`black`, `grey`, `mean`, `blur:SIGMA`).
    pub fn name(&self) -> String {
        match self {
            Fill::Black => "black".into(),
            Fill::Grey => "grey".into(),
            Fill::Mean => "mean".into(),
            Fill::Blur(s) => format!("blur:{s}"),
        }
    }

    /// The fill as an RGB view the size of `rgb`.
    pub fn image(&self, rgb: &RgbImage, segmentation: &Segmentation) -> RgbImage {
        let (w, h) = rgb.dimensions();
        match *self {
            Fill::Black => RgbImage::new(w, h),
            Fill::Grey => RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128])),
            Fill::Blur(sigma) => image::imageops::blur(rgb, sigma),
            Fill::Mean => {
                let mut sums = vec![[0u64; 3]; segmentation.count()];
                for (px, label) in rgb.pixels().zip(segmentation.labels()) {
                    for c in 0..3 {
                        sums[*label as usize][c] += px[c] as u64;
                    }
                }
                let sizes = segmentation.sizes();
                // Rounded as numpy's uint8 cast of the mean would truncate; keep it exact instead.
                let means: Vec<[u8; 3]> = sums
                    .iter()
                    .zip(&sizes)
                    .map(|(s, n)| {
                        let n = (*n).max(1) as u64;
                        [
                            ((s[0] + n / 2) / n) as u8,
                            ((s[1] + n / 2) / n) as u8,
                            ((s[2] + n / 2) / n) as u8,
                        ]
                    })
                    .collect();
                RgbImage::from_fn(w, h, |x, y| {
                    image::Rgb(means[segmentation.label(x, y) as usize])
                })
            }
        }
    }
}

/// Keep-matrix rows: `rows × segments`, 1 keeps a segment, 0 hides it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepMatrix {
    segments: usize,
    data: Vec<f32>,
}

impl KeepMatrix {
    /// An empty matrix over `segments` segments.
    pub fn new(segments: usize) -> Self {
        Self {
            segments,
            data: Vec::new(),
        }
    }
    /// Appends a row of all ones (the unperturbed image).
    pub fn push_all(&mut self) {
        self.data.extend(std::iter::repeat_n(1.0, self.segments));
    }
    /// Appends a row that hides exactly the segments in `hidden`.
    pub fn push_hiding(&mut self, hidden: &[usize]) {
        let start = self.data.len();
        self.push_all();
        for &s in hidden {
            self.data[start + s] = 0.0;
        }
    }
    /// Appends a row given as booleans (true keeps).
    pub fn push_row(&mut self, keep: &[bool]) {
        assert_eq!(keep.len(), self.segments, "row length");
        self.data
            .extend(keep.iter().map(|k| if *k { 1.0 } else { 0.0 }));
    }
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len() / self.segments.max(1)
    }
    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.segments
    }
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.segments..(i + 1) * self.segments]
    }
}

/// A view, a segmentation and a fill, resident on the classifier's device.
#[derive(Debug)]
pub struct Perturber<'a> {
    classifier: &'a Classifier,
    base: Tensor<4>,
    fill: Tensor<4>,
    labels: Tensor<1, Int>,
    segments: usize,
    height: usize,
    width: usize,
    /// The segmentation's rectangles, when it is made of them (grids, tilings).
    cells: Option<Vec<Rect>>,
    /// Whether rows that hide one rectangle run by incremental inference.
    incremental: bool,
    /// The view's activations, kept for incremental inference.
    bases: Bases,
    /// Multiply-accumulates of the incremental batches run so far.
    macs: Mutex<Option<Macs>>,
}

impl<'a> Perturber<'a> {
    /// Uploads the view, the fill and the label map once.
    pub fn new(
        classifier: &'a Classifier,
        view: &RgbImage,
        segmentation: &Segmentation,
        fill: Fill,
    ) -> Result<Self> {
        let pre = classifier.info().preprocess();
        let (w, h) = view.dimensions();
        if (w, h) != (pre.width, pre.height)
            || (segmentation.width(), segmentation.height()) != (w, h)
        {
            return Err(Error::InvalidArgument(format!(
                "view {w}x{h}, segmentation {}x{} and model input {}x{} must agree",
                segmentation.width(),
                segmentation.height(),
                pre.width,
                pre.height
            )));
        }
        let device = classifier.compute().device();
        let (h, w) = (h as usize, w as usize);
        let upload = |rgb: &RgbImage| {
            Tensor::<4>::from_data(TensorData::new(to_input(rgb, pre), [1, 3, h, w]), device)
        };
        let base = upload(view);
        let fill = upload(&fill.image(view, segmentation));
        let labels: Vec<i32> = segmentation.labels().iter().map(|l| *l as i32).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [h * w]), device);
        Ok(Self {
            classifier,
            base,
            fill,
            labels,
            segments: segmentation.count(),
            height: h,
            width: w,
            cells: segmentation.cells().map(<[Rect]>::to_vec),
            incremental: false,
            bases: Bases::new(),
            macs: Mutex::new(None),
        })
    }

    /// Runs batches whose rows each hide at most one rectangle of a segmentation made of
    /// rectangles by incremental inference ([`Classifier::classify_rects`]) when `on` and the
    /// classifier can; other batches, and every batch when off, run in full.
    pub fn with_incremental(mut self, on: bool) -> Self {
        self.incremental = on;
        self
    }

    /// The convolutions' multiply-accumulates of the batches that ran incrementally, against
    /// full inference's; `None` when none did.
    pub fn macs(&self) -> Option<Macs> {
        *self.macs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of the view's activations kept for incremental inference.
    pub fn kept_bytes(&self) -> u64 {
        self.bases.bytes()
    }

    /// Probabilities (of `columns`) of variants that each replace one rectangle of the view
    /// (`None`: none) by the fill, whatever the segmentation: by incremental inference when
    /// on and the classifier can, else in full, with each chunk's masks built on the host.
    ///
    /// # Errors
    /// A rectangle outside the view, or a failing device or model.
    pub fn run_rects(
        &self,
        rects: &[Option<Rect>],
        columns: Option<&[usize]>,
    ) -> Result<Probabilities> {
        let (w, h) = (self.width as u32, self.height as u32);
        if let Some(r) = rects
            .iter()
            .flatten()
            .find(|r| r.x + r.w > w || r.y + r.h > h)
        {
            return Err(Error::InvalidArgument(format!(
                "rectangle {r:?} is outside the {w}x{h} view"
            )));
        }
        if self.incremental && self.classifier.incremental() {
            let (probabilities, macs) = self.classifier.classify_rects(
                &self.base,
                &self.fill,
                rects,
                columns,
                &self.bases,
            )?;
            let mut total = self.macs.lock().unwrap_or_else(|e| e.into_inner());
            *total.get_or_insert_default() += macs;
            return Ok(probabilities);
        }
        let device = self.classifier.compute().device();
        self.classifier
            .classify_columns(rects.len(), columns, |range| {
                let (n, plane) = (range.len(), self.height * self.width);
                let mut keep = vec![1.0f32; n * plane];
                for (mask, rect) in keep.chunks_exact_mut(plane).zip(&rects[range]) {
                    if let Some(r) = rect {
                        r.fill(mask, w, 0.0);
                    }
                }
                let mask = Tensor::<4>::from_data(
                    TensorData::new(keep, [n, 1, self.height, self.width]),
                    device,
                );
                self.fill.clone() + (self.base.clone() - self.fill.clone()) * mask
            })
    }

    /// Each row's one hidden rectangle (`None` for a row that hides nothing), when every row
    /// hides at most one rectangle and incremental inference may run.
    fn rects(&self, keep: &KeepMatrix) -> Option<Vec<Option<Rect>>> {
        let cells = self.cells.as_ref()?;
        if !self.incremental || !self.classifier.incremental() {
            return None;
        }
        (0..keep.rows())
            .map(|r| {
                let row = keep.row(r);
                let mut hidden = None;
                for (i, &k) in row.iter().enumerate() {
                    if k == 0.0 && hidden.replace(i).is_some() {
                        return None;
                    }
                    if k != 0.0 && k != 1.0 {
                        return None;
                    }
                }
                Some(hidden.map(|i| cells[i]))
            })
            .collect()
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// The variants of `keep`'s rows `range`, `[len, 3, H, W]`, on the device.
    pub fn variants(&self, keep: &KeepMatrix, range: std::ops::Range<usize>) -> Tensor<4> {
        let n = range.len();
        let rows = keep.data[range.start * self.segments..range.end * self.segments].to_vec();
        let z = Tensor::<2>::from_data(
            TensorData::new(rows, [n, self.segments]),
            self.classifier.compute().device(),
        );
        let mask = z
            .select(1, self.labels.clone())
            .reshape([n, 1, self.height, self.width]);
        self.fill.clone() + (self.base.clone() - self.fill.clone()) * mask
    }

    /// Masks `range` of `masks`, `[len, H, W]`, built on the device from their grids and shifts
    /// (see [`SoftMasks`]).
    ///
    /// # Errors
    /// When the masks are not of the view's size.
    pub fn soft_masks(&self, masks: &SoftMasks, range: Range<usize>) -> Result<Tensor<3>> {
        self.check_soft(masks)?;
        Ok(masks.on_device(self.classifier.compute().device(), range))
    }

    fn check_soft(&self, masks: &SoftMasks) -> Result<()> {
        if masks.size() != (self.width, self.height) {
            return Err(Error::InvalidArgument(format!(
                "masks of {}x{} for a view of {}x{}",
                masks.width, masks.height, self.width, self.height
            )));
        }
        Ok(())
    }

    /// The variants `fill + (base − fill) · M` of device masks `[n, H, W]`, `[n, 3, H, W]`.
    pub fn soft_variants(&self, masks: Tensor<3>) -> Tensor<4> {
        let [n, h, w] = masks.dims();
        let mask = masks.reshape([n, 1, h, w]);
        self.fill.clone() + (self.base.clone() - self.fill.clone()) * mask
    }

    /// Classifies the variant of every soft mask in device-sized chunks, each chunk's masks
    /// built on the device as it is needed, and hands each chunk's probabilities of `columns`
    /// (row-major, `columns.len()` per mask) to `consume` with the chunk's mask range: nothing
    /// is kept per mask, so memory does not grow with the number of masks. `build` receives the
    /// seconds spent building each chunk's masks and variants.
    ///
    /// # Errors
    /// When the masks are not of the view's size, a class is unknown, the device fails, the
    /// model returns non-finite values, or `consume` fails.
    pub fn run_soft(
        &self,
        masks: &SoftMasks,
        columns: &[usize],
        mut build: impl FnMut(f64),
        consume: impl FnMut(Range<usize>, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.check_soft(masks)?;
        let up = Upsampler::new(masks, self.classifier.compute().device());
        self.classifier.classify_each(
            masks.len(),
            Some(columns),
            |range| {
                let t = std::time::Instant::now();
                let variants = self.soft_variants(up.build(masks, range));
                build(t.elapsed().as_secs_f64());
                variants
            },
            consume,
        )
    }

    /// Probabilities of every row of `keep`, classified in device-sized chunks.
    pub fn run(&self, keep: &KeepMatrix) -> Result<Probabilities> {
        self.run_columns(keep, None)
    }

    /// As [`Perturber::run`], keeping only the probabilities of `columns` (in that order): memory
    /// grows with rows × columns, however many classes the model has.
    pub fn run_columns(
        &self,
        keep: &KeepMatrix,
        columns: Option<&[usize]>,
    ) -> Result<Probabilities> {
        if keep.segments() != self.segments {
            return Err(Error::InvalidArgument(format!(
                "keep-matrix has {} segments, the segmentation {}",
                keep.segments(),
                self.segments
            )));
        }
        if let Some(rects) = self.rects(keep) {
            let (probabilities, macs) = self.classifier.classify_rects(
                &self.base,
                &self.fill,
                &rects,
                columns,
                &self.bases,
            )?;
            let mut total = self.macs.lock().unwrap_or_else(|e| e.into_inner());
            *total.get_or_insert_default() += macs;
            return Ok(probabilities);
        }
        self.classifier
            .classify_columns(keep.rows(), columns, |range| self.variants(keep, range))
    }
}

impl std::str::FromStr for Fill {
    type Err = crate::Error;

    fn from_str(fill: &str) -> Result<Self> {
        let bad = || {
            crate::Error::InvalidArgument(format!(
                "unknown fill '{fill}' (black, grey, mean, blur or blur:SIGMA)"
            ))
        };
        match fill {
            "black" => Ok(Fill::Black),
            "grey" | "gray" => Ok(Fill::Grey),
            "mean" => Ok(Fill::Mean),
            "blur" => Ok(Fill::Blur(5.0)),
            other => match other.strip_prefix("blur:").map(str::parse::<f32>) {
                Some(Ok(sigma)) if sigma > 0.0 && sigma <= 100.0 => Ok(Fill::Blur(sigma)),
                _ => Err(bad()),
            },
        }
    }
}

/// Random smooth masks as RISE draws them (Petsiuk, Das, Saenko 2018), described by their small
/// grids: mask `n` is grid `n` (`cells × cells`, row-major) upsampled bilinearly to
/// `(cells + 1) · cell` pixels per axis, `cell = ⌈view / cells⌉`, as scikit-image's
/// `resize(order=1, mode='reflect', anti_aliasing=False)` does, then cropped to the view at
/// shift `n` (row, column; each `0..cell`).
#[derive(Debug, Clone, PartialEq)]
pub struct SoftMasks {
    cells: usize,
    height: usize,
    width: usize,
    grids: Vec<f32>,
    shifts: Vec<[usize; 2]>,
}

impl SoftMasks {
    /// Masks of a `width × height` view from `grids` (`shifts.len() · cells²` values, grid after
    /// grid) and the crop `shifts` (row, column).
    ///
    /// # Errors
    /// When `cells` is 0 or larger than the view, the lengths disagree, or a shift is out of
    /// `0..cell`.
    pub fn new(
        cells: usize,
        width: u32,
        height: u32,
        grids: Vec<f32>,
        shifts: Vec<[usize; 2]>,
    ) -> Result<Self> {
        let (height, width) = (height as usize, width as usize);
        if cells == 0 || cells > height.min(width) {
            return Err(Error::InvalidArgument(format!(
                "{cells} mask cells must be between 1 and the view's {}",
                height.min(width)
            )));
        }
        if grids.len() != shifts.len() * cells * cells {
            return Err(Error::InvalidArgument(format!(
                "{} grid values for {} masks of {cells}x{cells} cells",
                grids.len(),
                shifts.len()
            )));
        }
        let masks = Self {
            cells,
            height,
            width,
            grids,
            shifts,
        };
        let cell = masks.cell();
        if let Some(s) = masks
            .shifts
            .iter()
            .find(|s| s[0] >= cell[0] || s[1] >= cell[1])
        {
            return Err(Error::InvalidArgument(format!(
                "mask shift {s:?} outside cells of {}x{} pixels",
                cell[0], cell[1]
            )));
        }
        Ok(masks)
    }

    /// Number of masks.
    pub fn len(&self) -> usize {
        self.shifts.len()
    }

    /// Whether there are no masks.
    pub fn is_empty(&self) -> bool {
        self.shifts.is_empty()
    }

    /// Cells per grid side.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// The view's `(width, height)`.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// One cell's size in pixels, `[⌈height / cells⌉, ⌈width / cells⌉]`.
    pub fn cell(&self) -> [usize; 2] {
        [
            self.height.div_ceil(self.cells),
            self.width.div_ceil(self.cells),
        ]
    }

    /// Grid `i`, row-major.
    pub fn grid(&self, i: usize) -> &[f32] {
        let c2 = self.cells * self.cells;
        &self.grids[i * c2..(i + 1) * c2]
    }

    /// Mask `i`'s crop shift (row, column).
    pub fn shift(&self, i: usize) -> [usize; 2] {
        self.shifts[i]
    }

    /// Masks `range`, `[len, H, W]`, built on `device` from their grids and shifts: two
    /// batched matrix products (rows, then columns, of the upsample restricted to each crop).
    pub fn on_device(&self, device: &Device, range: Range<usize>) -> Tensor<3> {
        Upsampler::new(self, device).build(self, range)
    }

    /// The bilinear taps of the upsampled rows (`axis` 0) or columns (1), before the crop.
    pub fn taps(&self, axis: usize) -> Vec<Taps> {
        let cell = self.cell()[axis.min(1)];
        resize_taps(self.cells, (self.cells + 1) * cell)
    }
}

/// One output sample of a bilinear resize: two input indices and their weights.
pub type Taps = [(usize, f64); 2];

/// The taps of scikit-image's `resize(order=1, mode='reflect')` from `input` samples to
/// `output`: output `r` sits at input coordinate `(r + 0.5) · input / output − 0.5` (pixel
/// centres aligned, as `scipy.ndimage.zoom(grid_mode=True)`), and indices outside the input
/// are mirrored without repeating the edge (`d c b | a b c d | c b a`), so the border half-cells
/// blend the first two samples. (burn's bilinear `interpolate` clamps there instead.)
pub fn resize_taps(input: usize, output: usize) -> Vec<Taps> {
    let mirror = |i: i64| -> usize {
        let n = input as i64;
        if n <= 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let i = i.rem_euclid(period);
        (if i >= n { period - i } else { i }) as usize
    };
    let scale = input as f64 / output.max(1) as f64;
    (0..output)
        .map(|r| {
            let u = (r as f64 + 0.5) * scale - 0.5;
            let i0 = u.floor();
            let f = u - i0;
            let i0 = i0 as i64;
            [(mirror(i0), 1.0 - f), (mirror(i0 + 1), f)]
        })
        .collect()
}

/// The upsampling matrices of one set of masks on the device: rows `[(cells + 1)·cell, cells]`
/// and columns likewise, so that a mask is `R[shift..] · G · C[shift..]ᵀ`.
struct Upsampler {
    rows: Tensor<2>,
    cols: Tensor<2>,
    cells: usize,
    height: usize,
    width: usize,
}

impl Upsampler {
    fn new(masks: &SoftMasks, device: &Device) -> Self {
        let s = masks.cells;
        let dense = |taps: Vec<Taps>| {
            let mut m = vec![0.0f32; taps.len() * s];
            for (r, t) in taps.iter().enumerate() {
                for (i, w) in t {
                    m[r * s + i] += *w as f32;
                }
            }
            Tensor::<2>::from_data(TensorData::new(m, [taps.len(), s]), device)
        };
        Self {
            rows: dense(masks.taps(0)),
            cols: dense(masks.taps(1)),
            cells: s,
            height: masks.height,
            width: masks.width,
        }
    }

    /// Masks `range`, `[n, H, W]`: per mask the rows `shift..shift + H` of `R` (a gather of
    /// indices made on the device from the shifts), times the grid, times the columns' `Cᵀ`.
    fn build(&self, masks: &SoftMasks, range: Range<usize>) -> Tensor<3> {
        let (n, s) = (range.len(), self.cells);
        let device = self.rows.device();
        let grids = Tensor::<3>::from_data(
            TensorData::new(
                masks.grids[range.start * s * s..range.end * s * s].to_vec(),
                [n, s, s],
            ),
            &device,
        );
        let pick = |full: &Tensor<2>, axis: usize, len: usize| {
            let shifts: Vec<i32> = masks.shifts[range.clone()]
                .iter()
                .map(|sh| sh[axis] as i32)
                .collect();
            let shifts = Tensor::<2, Int>::from_data(TensorData::new(shifts, [n, 1]), &device);
            let offsets = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
            let index = (shifts.expand([n, len]) + offsets.expand([n, len])).reshape([n * len]);
            full.clone().select(0, index).reshape([n, len, s])
        };
        let rows = pick(&self.rows, 0, self.height);
        let cols = pick(&self.cols, 1, self.width);
        rows.matmul(grids).matmul(cols.swap_dims(1, 2))
    }
}
