//! Batched classification: any number of inputs, run in chunks that fit the device.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};

use crate::model::incremental::{Bases, Incremental, Macs};
use crate::model::{Classifier, OutputKind};
use crate::segment::Rect;
use crate::target::Target;
use crate::{Error, Result};

/// Class probabilities of a batch, row-major `[rows, classes]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Probabilities {
    values: Vec<f32>,
    classes: usize,
    /// The first columns that rank ([`Probabilities::top`], [`Probabilities::argmax`]): the
    /// model's classes, not a group's column after them.
    ranked: usize,
}

/// One class and its probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Class index.
    pub class: usize,
    /// Its probability.
    pub probability: f32,
}

impl Prediction {
    /// The document form, with the class's `label`.
    pub fn to_json(&self, label: Option<&str>) -> serde_json::Value {
        serde_json::json!({ "index": self.class, "label": label, "probability": self.probability })
    }
}

impl Probabilities {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.values.len() / self.classes.max(1)
    }
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.classes..(i + 1) * self.classes]
    }
    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }
    /// The `k` most probable classes of row `i`, most probable first; ties by class index.
    pub fn top(&self, i: usize, k: usize) -> Vec<Prediction> {
        let mut order: Vec<usize> = (0..self.ranked.min(self.classes)).collect();
        let row = self.row(i);
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(k)
            .map(|class| Prediction {
                class,
                probability: row[class],
            })
            .collect()
    }
    /// `first` as row 0, then the rows of `rest` (which must have `first.len()` classes, or no
    /// rows).
    pub fn with_first_row(first: &[f32], rest: Probabilities) -> Result<Probabilities> {
        if rest.rows() > 0 && rest.classes != first.len() {
            return Err(Error::InvalidArgument(format!(
                "a row of {} classes cannot head rows of {}",
                first.len(),
                rest.classes
            )));
        }
        let mut values = first.to_vec();
        values.extend_from_slice(&rest.values);
        let ranked = if rest.rows() > 0 {
            rest.ranked
        } else {
            first.len()
        };
        Ok(Probabilities {
            values,
            classes: first.len(),
            ranked,
        })
    }

    /// The most probable class of row `i` (lowest index on ties).
    pub fn argmax(&self, i: usize) -> usize {
        self.top(i, 1).first().map_or(0, |p| p.class)
    }
}

impl Classifier {
    /// Classifies host inputs laid out `[n, 3, H, W]` in model space (see [`crate::view::to_input`]).
    pub fn classify(&self, inputs: &[f32]) -> Result<Probabilities> {
        let pre = self.info().preprocess();
        let per = 3 * (pre.width * pre.height) as usize;
        if per == 0 || !inputs.len().is_multiple_of(per) {
            return Err(Error::InvalidArgument(format!(
                "input length {} is not a multiple of 3x{}x{}",
                inputs.len(),
                pre.height,
                pre.width
            )));
        }
        let n = inputs.len() / per;
        let device = self.compute().device().clone();
        let (h, w) = (pre.height as usize, pre.width as usize);
        self.classify_with(n, |range| {
            let data = TensorData::new(
                inputs[range.start * per..range.end * per].to_vec(),
                [range.len(), 3, h, w],
            );
            Tensor::<4>::from_data(data, &device)
        })
    }

    /// Classifies `n` inputs that `make` builds on the device, chunk by chunk: `make(range)` must
    /// return the `[range.len(), 3, H, W]` inputs of rows `range`. A chunk that fails (e.g. an
    /// allocation the device refuses) is retried in halves down to one row before giving up.
    /// The result does not depend on the chunk size.
    pub fn classify_with(
        &self,
        n: usize,
        make: impl FnMut(Range<usize>) -> Tensor<4>,
    ) -> Result<Probabilities> {
        self.classify_columns(n, None, make)
    }

    /// As [`Classifier::classify_with`], keeping only the probabilities of `columns` (in that
    /// order) for every row, so that memory grows with `n × columns.len()`, not `n × classes`.
    /// Every value is still checked for NaN/infinity before it is dropped.
    pub fn classify_columns(
        &self,
        n: usize,
        columns: Option<&[usize]>,
        make: impl FnMut(Range<usize>) -> Tensor<4>,
    ) -> Result<Probabilities> {
        let kept = columns.map_or(self.outputs(), <[usize]>::len);
        let mut values = Vec::with_capacity(n * kept);
        self.classify_each(n, columns, make, |_, rows| {
            values.extend_from_slice(rows);
            Ok(())
        })?;
        Ok(Probabilities {
            values,
            classes: kept,
            ranked: self.ranked(columns),
        })
    }

    /// As [`Classifier::classify_columns`], handing each chunk's probabilities (of `columns`,
    /// row-major) to `consume` with the chunk's rows instead of keeping them, so that a caller
    /// that folds them into a running result needs memory for one chunk only. `consume` sees
    /// every row once, in order; a non-finite value anywhere is still an error at the end.
    pub fn classify_each(
        &self,
        n: usize,
        columns: Option<&[usize]>,
        make: impl FnMut(Range<usize>) -> Tensor<4>,
        consume: impl FnMut(Range<usize>, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.run_each(n, columns, make, |x| self.forward(x), consume)
    }

    /// Probabilities (of `columns`) of `n` variants of `base` (`[1, 3, H, W]` in model space),
    /// variant `i` with `rects[i]` (if any) replaced by `fill`'s pixels there, computed by
    /// incremental inference ([`crate::model::incremental`]): each layer of the model's prefix
    /// only where the rectangle changed it. `bases` keeps the unoccluded view's activations
    /// between calls for the same view. Returns the probabilities and the convolutions'
    /// multiply-accumulates, computed and full inference's.
    ///
    /// # Errors
    /// As [`Classifier::classify_columns`], and when the classifier cannot run incrementally
    /// ([`Classifier::incremental`]).
    pub fn classify_rects(
        &self,
        base: &Tensor<4>,
        fill: &Tensor<4>,
        rects: &[Option<Rect>],
        columns: Option<&[usize]>,
        bases: &Bases,
    ) -> Result<(Probabilities, Macs)> {
        if !self.incremental() {
            return Err(Error::InvalidArgument(format!(
                "incremental inference runs in f32, on the CPU or where allowed on a GPU; this classifier computes on {} in {}",
                self.compute(),
                self.precision()
            )));
        }
        let kept = columns.map_or(self.outputs(), <[usize]>::len);
        let mut values = Vec::with_capacity(rects.len() * kept);
        let macs = Mutex::new(Macs::default());
        self.run_each(
            rects.len(),
            columns,
            |range| range,
            |range| {
                let inc = Incremental::new(bases);
                let input = inc.input(base, fill, &rects[range]);
                let out = self.net.forward_incremental(&inc, input);
                *macs.lock().unwrap_or_else(|e| e.into_inner()) += inc.macs();
                out
            },
            |_, rows| {
                values.extend_from_slice(rows);
                Ok(())
            },
        )?;
        Ok((
            Probabilities {
                values,
                classes: kept,
                ranked: self.ranked(columns),
            },
            macs.into_inner().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    /// How many leading columns of a result of `columns` rank: every selected column, or the
    /// model's classes (not a group's column).
    fn ranked(&self, columns: Option<&[usize]>) -> usize {
        columns.map_or(self.info().classes(), <[usize]>::len)
    }

    /// Runs `forward(make(range))` (the model's raw output for rows `range`) chunk by chunk, as
    /// [`Classifier::classify_each`] describes.
    fn run_each<T: Send>(
        &self,
        n: usize,
        columns: Option<&[usize]>,
        mut make: impl FnMut(Range<usize>) -> T,
        forward: impl Fn(T) -> Tensor<2> + Sync,
        mut consume: impl FnMut(Range<usize>, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let classes = self.outputs();
        if let Some(bad) = columns.and_then(|c| c.iter().find(|c| **c >= classes)) {
            return Err(Error::UnknownClass {
                model: self.info().id().to_string(),
                class: bad.to_string(),
            });
        }
        let (mut bad, mut seen) = (0, 0);
        let mut chunk = self.chunk_size();
        let mut start = 0;
        if n > 0 {
            self.report_progress(0, n);
        }
        while start < n {
            let range = start..(start + chunk).min(n);
            match self.run_chunk(range.clone(), &mut make, &forward) {
                Ok(rows) => {
                    bad += rows.iter().filter(|v| !v.is_finite()).count();
                    seen += rows.len();
                    match columns {
                        None => consume(range.clone(), &rows)?,
                        Some(cols) => {
                            let picked: Vec<f32> = rows
                                .chunks(classes)
                                .flat_map(|row| cols.iter().map(|c| row[*c]))
                                .collect();
                            consume(range.clone(), &picked)?;
                        }
                    }
                    start = range.end;
                    self.report_progress(start, n);
                }
                Err(_) if range.len() > 1 => {
                    // Retry the same rows in halves; later batches start from the half.
                    chunk = range.len().div_ceil(2);
                    self.refused_chunk(chunk);
                }
                Err(reason) => {
                    let mut reason = root_cause(&reason);
                    if reason.contains("allocate") {
                        reason.push_str(&format!(
                            "; the device's largest buffer is {} MiB",
                            self.compute().max_buffer_bytes() >> 20
                        ));
                    }
                    return Err(Error::Device {
                        device: self.compute().to_string(),
                        reason,
                    });
                }
            }
        }
        if bad > 0 {
            return Err(Error::NonFinite {
                model: self.info().id().to_string(),
                count: bad,
                total: seen,
            });
        }
        Ok(())
    }

    fn run_chunk<T: Send>(
        &self,
        range: Range<usize>,
        make: &mut impl FnMut(Range<usize>) -> T,
        forward: &(impl Fn(T) -> Tensor<2> + Sync),
    ) -> std::result::Result<Vec<f32>, String> {
        let len = range.len();
        let classes = self.info().classes();
        let output = self.info().output();
        let cpu = !self.compute().is_gpu();
        let run = AssertUnwindSafe(|| {
            let input = make(range);
            let out = if cpu {
                // On the CPU the pass runs on one of rayon's workers: every kernel's parallel
                // loop then starts on a worker, which takes its own share at once, instead of
                // this thread handing each layer to the pool and sleeping until it is woken.
                rayon::scope(|_| forward(input))
            } else {
                forward(input)
            };
            let out = match (output, self.target()) {
                (OutputKind::Logits, Target::Logit) => out,
                (OutputKind::Logits, _) => softmax(out, 1),
                (OutputKind::Probabilities, _) => out,
            };
            out.try_into_data().map_err(|e| format!("{e:?}"))
        });
        let data = match catch_unwind(run) {
            Ok(result) => result?,
            Err(panic) => return Err(panic_message(&panic)),
        };
        let rows = data.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        if rows.len() != len * classes {
            return Err(format!(
                "the model returned {} values for {len} rows of {classes} classes",
                rows.len()
            ));
        }
        Ok(match self.target() {
            // The group's summed probability after each row's classes, summed in f64.
            Target::Group {
                classes: members, ..
            } => rows
                .chunks_exact(classes)
                .flat_map(|row| {
                    let sum: f64 = members.iter().map(|&c| row[c] as f64).sum();
                    row.iter().copied().chain(std::iter::once(sum as f32))
                })
                .collect(),
            _ => rows,
        })
    }
}

/// A backend error chain in one line: the root cause (the first line after the last
/// "Caused by"), then the outermost message in parentheses. cubecl reports failures as a
/// multi-line chain with backtrace notes.
fn root_cause(chain: &str) -> String {
    let lines: Vec<&str> = chain
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let outer = lines
        .first()
        .copied()
        .unwrap_or("the backend failed without a reason");
    let root = lines
        .iter()
        .rposition(|l| l.starts_with("Caused by"))
        .and_then(|i| lines.get(i + 1).copied());
    match root {
        Some(root) if root != outer => format!("{root} ({outer})"),
        _ => outer.to_string(),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the backend panicked".into())
}
