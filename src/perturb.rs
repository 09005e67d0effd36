//! The perturbation engine: every explainer's variants, built on the device in one gather.
//!
//! Given the view's model input `base`, a segmentation and a keep-matrix `Z` (`N × S`, 1 keeps a
//! segment, 0 replaces it by the fill), variant `n` is `x_n = fill + (base − fill) · M_n` with
//! `M_n[pixel] = Z[n, segment(pixel)]`. `M` for a whole chunk is one `select` of `Z`'s columns
//! by the label map; nothing is copied per variant on the host.

use burn::tensor::{Int, Tensor, TensorData};
use image::RgbImage;

use crate::classify::Probabilities;
use crate::model::Classifier;
use crate::segment::Segmentation;
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
        })
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
