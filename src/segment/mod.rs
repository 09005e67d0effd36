//! Segmentations: a label map over the model's input view, values `0..count`.

pub mod quickshift;
pub mod slic;

use crate::{Error, Result};

/// An axis-aligned rectangle of view pixels, `[x, x + w) × [y, y + h)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// Splits the rectangle into a grid of square cells of side `ceil(max(w, h) / g)`, row by
    /// row; the last row and column may be partial.
    pub fn grid(&self, g: u32) -> Vec<Rect> {
        let side = self.w.max(self.h).div_ceil(g.max(1)).max(1);
        let (cols, rows) = (self.w.div_ceil(side), self.h.div_ceil(side));
        let mut cells = Vec::with_capacity((cols * rows) as usize);
        for r in 0..rows {
            for c in 0..cols {
                let (x, y) = (self.x + c * side, self.y + r * side);
                cells.push(Rect {
                    x,
                    y,
                    w: side.min(self.x + self.w - x),
                    h: side.min(self.y + self.h - y),
                });
            }
        }
        cells
    }

    /// Sets this rectangle's pixels of a row-major `width`-wide buffer to `value`.
    pub fn fill<T: Copy>(&self, values: &mut [T], width: u32, value: T) {
        for y in self.y..self.y + self.h {
            let row = (y * width) as usize;
            values[row + self.x as usize..row + (self.x + self.w) as usize].fill(value);
        }
    }

    /// Whether pixel `(x, y)` lies inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && y >= self.y && x < self.x + self.w && y < self.y + self.h
    }
}

/// A label map over a `width × height` view: every pixel belongs to one of `count` segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    width: u32,
    height: u32,
    labels: Vec<u32>,
    count: usize,
    cells: Option<Vec<Rect>>,
}

impl Segmentation {
    /// The report's grid: square cells of side `ceil(max(W, H) / g)`, numbered row by row.
    pub fn grid(width: u32, height: u32, g: u32) -> Result<Self> {
        if g == 0 || g > width.max(height) {
            return Err(Error::InvalidArgument(format!(
                "grid {g} must be between 1 and {}",
                width.max(height)
            )));
        }
        let cells = Rect {
            x: 0,
            y: 0,
            w: width,
            h: height,
        }
        .grid(g);
        Self::from_cells(width, height, cells)
    }

    /// Segments made of rectangles that tile the view exactly (each pixel in exactly one).
    pub fn from_cells(width: u32, height: u32, cells: Vec<Rect>) -> Result<Self> {
        let mut labels = vec![u32::MAX; (width * height) as usize];
        for (i, cell) in cells.iter().enumerate() {
            if cell.x + cell.w > width || cell.y + cell.h > height || cell.w == 0 || cell.h == 0 {
                return Err(Error::InvalidArgument(format!(
                    "cell {i} {cell:?} is outside the {width}x{height} view"
                )));
            }
            for y in cell.y..cell.y + cell.h {
                for x in cell.x..cell.x + cell.w {
                    let slot = &mut labels[(y * width + x) as usize];
                    if *slot != u32::MAX {
                        return Err(Error::InvalidArgument(format!(
                            "cells {} and {i} overlap at ({x}, {y})",
                            *slot
                        )));
                    }
                    *slot = i as u32;
                }
            }
        }
        if labels.contains(&u32::MAX) {
            return Err(Error::InvalidArgument(
                "the cells do not cover the whole view".into(),
            ));
        }
        Ok(Self {
            width,
            height,
            labels,
            count: cells.len(),
            cells: Some(cells),
        })
    }

    /// Any label map with values `0..count`, every value used.
    pub fn from_labels(width: u32, height: u32, labels: Vec<u32>) -> Result<Self> {
        if labels.len() != (width * height) as usize {
            return Err(Error::InvalidArgument(format!(
                "{} labels for a {width}x{height} view",
                labels.len()
            )));
        }
        let count = labels.iter().max().map_or(0, |m| *m as usize + 1);
        let mut used = vec![false; count];
        labels.iter().for_each(|l| used[*l as usize] = true);
        if used.contains(&false) {
            return Err(Error::InvalidArgument(
                "segment labels must be 0..S-1 with none missing".into(),
            ));
        }
        Ok(Self {
            width,
            height,
            labels,
            count,
            cells: None,
        })
    }

    /// View width.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// View height.
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Number of segments.
    pub fn count(&self) -> usize {
        self.count
    }
    /// Segment of every pixel, row-major.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Per pixel, the value of its segment: one value per segment spread over the view.
    pub fn spread(&self, per_segment: &[f64]) -> Vec<f32> {
        self.labels
            .iter()
            .map(|l| per_segment[*l as usize] as f32)
            .collect()
    }
    /// Segment of pixel `(x, y)`.
    pub fn label(&self, x: u32, y: u32) -> u32 {
        self.labels[(y * self.width + x) as usize]
    }
    /// The rectangles, for grid-like segmentations.
    pub fn cells(&self) -> Option<&[Rect]> {
        self.cells.as_deref()
    }
    /// Pixels per segment.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.count];
        self.labels.iter().for_each(|l| sizes[*l as usize] += 1);
        sizes
    }
}
