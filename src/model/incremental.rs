//! Incremental occlusion inference: each layer of a model's prefix computed only where an
//! occluded rectangle changed it, exactly.
//!
//! A variant that occludes one rectangle of the view differs from the unoccluded view only
//! inside that rectangle; after a convolution or a pooling it differs only where the
//! rectangle's pixels reach, a few pixels more per layer. Each variable of the prefix is a
//! [`Crops`]: for every variant a crop of equal size that holds all of the variant's changed
//! values (and the base's around them), its place in the layer's map, and the exact rectangle
//! that changed. A layer computes its output crop from a window of its input: the base
//! activation (kept from one pass of the unoccluded view, [`Bases`]) with the variant's crop
//! pasted in, the layer's own padding around the map's edges, and the layer run without padding
//! on the whole batch of windows. Pixelwise statements (activations, per-channel affine maps,
//! channel slices, concatenations along channels, sums of branches) run on the crops as they
//! are, after the crops of several inputs are brought to one place.
//!
//! Once a crop would cover more than [`FULL_SHARE`] of its map, the variable turns into the full
//! batch (the base with each variant's crop pasted in) and from there the model runs as usual;
//! the statements after the prefix (`build/incremental.rs` cuts it at the first statement it
//! cannot follow) always run in full. The values computed equal full inference's up to the
//! summation order inside the kernels (float rounding): the windows hold exactly the values
//! full inference reads there.
//!
//! `build/incremental.rs` writes each model's `forward_incremental` from its `forward`. On the
//! CPU (flex) the pasting is a memory copy; on any other device each window is one `select`
//! through burn ([`Classifier::set_incremental_on_gpu`](crate::Classifier::set_incremental_on_gpu)).

use std::mem::MaybeUninit;
use std::sync::Mutex;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::{DType, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use super::cpu::{self, Activation};
use crate::segment::Rect;

/// The share of a layer's map above which a crop is not worth it: the variable turns into the
/// full batch. Computing a crop costs its own outputs plus the pasting of its window, and the
/// crops of a batch all take the size of the largest.
pub const FULL_SHARE: f64 = 0.75;

/// A half-open interval of rows or columns, empty when `lo >= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    lo: i64,
    hi: i64,
}

impl Span {
    const EMPTY: Span = Span { lo: 0, hi: 0 };

    fn is_empty(self) -> bool {
        self.lo >= self.hi
    }

    fn len(self) -> usize {
        (self.hi - self.lo).max(0) as usize
    }

    fn union(self, other: Span) -> Span {
        match (self.is_empty(), other.is_empty()) {
            (true, _) => other,
            (_, true) => self,
            _ => Span {
                lo: self.lo.min(other.lo),
                hi: self.hi.max(other.hi),
            },
        }
    }

    /// The outputs of a sliding window (`span` wide, `stride`, `pad` before the map; `out`
    /// outputs) that read any of these inputs.
    fn through(self, span: usize, stride: usize, pad: usize, out: usize) -> Span {
        if self.is_empty() {
            return Span::EMPTY;
        }
        let (span, stride, pad) = (span as i64, stride as i64, pad as i64);
        let lo = (self.lo + pad - span).div_euclid(stride) + 1;
        let hi = (self.hi + pad + stride - 1).div_euclid(stride);
        let (lo, hi) = (lo.clamp(0, out as i64), hi.clamp(0, out as i64));
        if lo >= hi {
            Span::EMPTY
        } else {
            Span { lo, hi }
        }
    }
}

/// Where each variant of a crop batch sits in a map of `map` rows and columns.
#[derive(Debug, Clone, PartialEq)]
struct Placement {
    map: [usize; 2],
    /// Rows and columns of every crop.
    size: [usize; 2],
    /// Each crop's top-left corner in the map.
    at: Vec<[usize; 2]>,
    /// Each variant's changed rows and columns (inside its crop).
    changed: Vec<[Span; 2]>,
}

impl Placement {
    /// The smallest equal-size crops that hold each variant's `changed` rectangle, or `None`
    /// when they would cover more than [`FULL_SHARE`] of the map.
    fn holding(map: [usize; 2], changed: Vec<[Span; 2]>) -> Option<Self> {
        let mut size = [1usize; 2];
        for c in &changed {
            for axis in 0..2 {
                size[axis] = size[axis].max(c[axis].len()).min(map[axis]);
            }
        }
        if (size[0] * size[1]) as f64 > FULL_SHARE * (map[0] * map[1]) as f64 {
            return None;
        }
        let at = changed
            .iter()
            .map(|c| {
                let mut at = [0; 2];
                for axis in 0..2 {
                    if !c[axis].is_empty() {
                        at[axis] = (c[axis].lo as usize).min(map[axis] - size[axis]);
                    }
                }
                at
            })
            .collect();
        Some(Self {
            map,
            size,
            at,
            changed,
        })
    }

    fn variants(&self) -> usize {
        self.at.len()
    }
}

/// A variable of the prefix for a batch of variants: crops where they changed, or the full
/// batch.
#[derive(Debug, Clone)]
pub struct Crops<const D: usize> {
    /// The statement that made it, the key of its base activation in [`Bases`].
    id: usize,
    /// `[n, ..., size[0], size[1]]` crops, or the full `[n, ..., H, W]` batch.
    values: Tensor<D>,
    /// `None` when `values` is the full batch.
    placement: Option<Placement>,
}

/// The activations of the unoccluded view, one per statement of the prefix, kept from the first
/// batch of an image for the next ones.
#[derive(Debug, Default)]
pub struct Bases {
    values: Mutex<Vec<Option<Kept>>>,
}

/// A kept activation as `[1, C, H, W]` (its middle dimensions merged), with its own dimensions.
type Kept = (Tensor<4>, Vec<usize>);

impl Bases {
    /// An empty store, for one image.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes the kept activations take.
    pub fn bytes(&self) -> u64 {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values
            .iter()
            .flatten()
            .map(|(_, dims)| dims.iter().product::<usize>() as u64 * 4)
            .sum()
    }

    fn get<const D: usize>(&self, id: usize) -> Option<Tensor<D>> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values
            .get(id)
            .and_then(Option::as_ref)
            .and_then(|(t, dims)| {
                let dims: [usize; D] = dims.as_slice().try_into().ok()?;
                Some(t.clone().reshape(dims))
            })
    }

    fn put<const D: usize>(&self, id: usize, value: &Tensor<D>) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        if values.len() <= id {
            values.resize(id + 1, None);
        }
        let dims = value.dims();
        let merged = [1, dims[1..D - 2].iter().product(), dims[D - 2], dims[D - 1]];
        values[id] = Some((value.clone().reshape(merged), dims.to_vec()));
    }

    /// Statement `id`'s base activation, computed by `make` the first time.
    fn get_or<const D: usize>(&self, id: usize, make: impl FnOnce() -> Tensor<D>) -> Tensor<D> {
        if let Some(t) = self.get(id) {
            return t;
        }
        let t = make();
        self.put(id, &t);
        t
    }
}

/// Multiply-accumulates of the convolutions a pass computed, against what full inference
/// computes for the same variants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Macs {
    /// Computed.
    pub computed: u64,
    /// Full inference's.
    pub full: u64,
}

impl std::ops::AddAssign for Macs {
    fn add_assign(&mut self, other: Macs) {
        self.computed += other.computed;
        self.full += other.full;
    }
}

/// One incremental pass over a batch of variants: the image's base activations and the
/// multiply-accumulates counted.
#[derive(Debug)]
pub struct Incremental<'a> {
    bases: &'a Bases,
    macs: Mutex<Macs>,
}

impl<'a> Incremental<'a> {
    /// A pass that reads and fills `bases`.
    pub fn new(bases: &'a Bases) -> Self {
        Self {
            bases,
            macs: Mutex::new(Macs::default()),
        }
    }

    /// What the pass's convolutions computed so far.
    pub fn macs(&self) -> Macs {
        *self.macs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, conv: &Conv2d, variants: usize, computed: usize, full: usize) {
        let [cout, cin_g, kh, kw] = conv.weight.dims();
        let per = (cout * cin_g * kh * kw) as u64 * variants as u64;
        let mut macs = self.macs.lock().unwrap_or_else(|e| e.into_inner());
        macs.computed += per * computed as u64;
        macs.full += per * full as u64;
    }

    /// The model's input for `n` variants of `base` (`[1, C, H, W]`), variant `i` with
    /// `rects[i]` (if any) replaced by `fill`'s pixels there.
    pub fn input(&self, base: &Tensor<4>, fill: &Tensor<4>, rects: &[Option<Rect>]) -> Crops<4> {
        self.bases.get_or(0, || base.clone());
        let [_, _, h, w] = base.dims();
        let changed: Vec<[Span; 2]> = rects
            .iter()
            .map(|r| match r {
                Some(r) if r.w > 0 && r.h > 0 => [
                    Span {
                        lo: r.y as i64,
                        hi: (r.y + r.h) as i64,
                    },
                    Span {
                        lo: r.x as i64,
                        hi: (r.x + r.w) as i64,
                    },
                ],
                _ => [Span::EMPTY; 2],
            })
            .collect();
        let n = rects.len();
        let Some(placement) = Placement::holding([h, w], changed.clone()) else {
            let full = Placement {
                map: [h, w],
                size: [h, w],
                at: vec![[0, 0]; n],
                changed,
            };
            let values = paste_fill(base, fill, &full);
            return Crops {
                id: 0,
                values,
                placement: None,
            };
        };
        let values = paste_fill(base, fill, &placement);
        Crops {
            id: 0,
            values,
            placement: Some(placement),
        }
    }

    /// Statement `id`: `conv` (then `activation`) of `x`.
    pub fn conv2d(
        &self,
        id: usize,
        conv: &Conv2d,
        x: &Crops<4>,
        activation: Activation,
    ) -> Crops<4> {
        let base_in = self.base::<4>(x.id);
        let base = self
            .bases
            .get_or(id, || cpu::conv2d(conv, base_in.clone(), activation));
        let [_, _, oh, ow] = base.dims();
        let n = x.values.dims()[0];
        let pads = cpu::padding(&conv.padding);
        let spans = [
            (conv.weight.dims()[2] - 1) * conv.dilation[0] + 1,
            (conv.weight.dims()[3] - 1) * conv.dilation[1] + 1,
        ];
        let window = match (&x.placement, pads) {
            (Some(p), Some([top, left, _, _])) => {
                window(p, [oh, ow], spans, conv.stride, [top, left])
            }
            _ => None,
        };
        let Some((out, at, size)) = window else {
            let full = self.full_of(x);
            self.count(conv, n, oh * ow, oh * ow);
            return Crops {
                id,
                values: cpu::conv2d(conv, full, activation),
                placement: None,
            };
        };
        let window = window_of(&base_in, x, &at, size, 0.0);
        let mut valid = conv.clone();
        valid.padding = PaddingConfig2d::Valid;
        self.count(conv, n, out.size[0] * out.size[1], oh * ow);
        Crops {
            id,
            values: cpu::conv2d(&valid, window, activation),
            placement: Some(out),
        }
    }

    /// Statement `id`: `pool` of `x`.
    pub fn max_pool2d(&self, id: usize, pool: &MaxPool2d, x: &Crops<4>) -> Crops<4> {
        let base_in = self.base::<4>(x.id);
        let base = self
            .bases
            .get_or(id, || cpu::max_pool2d(pool, base_in.clone()));
        let [_, _, oh, ow] = base.dims();
        let pads = cpu::padding(&pool.padding);
        let spans = [
            (pool.kernel_size[0] - 1) * pool.dilation[0] + 1,
            (pool.kernel_size[1] - 1) * pool.dilation[1] + 1,
        ];
        let window = match (&x.placement, pads) {
            (Some(p), Some([top, left, _, _])) => {
                window(p, [oh, ow], spans, pool.stride, [top, left])
            }
            _ => None,
        };
        let Some((out, at, size)) = window else {
            return Crops {
                id,
                values: cpu::max_pool2d(pool, self.full_of(x)),
                placement: None,
            };
        };
        let window = window_of(&base_in, x, &at, size, f32::NEG_INFINITY);
        let mut valid = pool.clone();
        valid.padding = PaddingConfig2d::Valid;
        valid.ceil_mode = false;
        Crops {
            id,
            values: cpu::max_pool2d(&valid, window),
            placement: Some(out),
        }
    }

    /// Statement `id`: a pixelwise `f` of `xs` (each output pixel depends on the same pixel of
    /// the inputs only), run on crops brought to one place.
    pub fn map<const D: usize, const E: usize, const K: usize>(
        &self,
        id: usize,
        xs: [&Crops<D>; K],
        f: impl Fn([Tensor<D>; K]) -> Tensor<E>,
    ) -> Crops<E> {
        let bases: [Tensor<D>; K] = xs.map(|x| self.base::<D>(x.id));
        self.bases.get_or(id, || f(bases.clone()));
        let first = xs[0].placement.clone();
        let same = xs.iter().all(|x| x.placement == first);
        if same && let Some(placement) = first {
            return Crops {
                id,
                values: f(xs.map(|x| x.values.clone())),
                placement: Some(placement),
            };
        }
        let placed: Option<Vec<&Placement>> = xs.iter().map(|x| x.placement.as_ref()).collect();
        let target = placed.and_then(|placed| {
            let map = placed[0].map;
            let changed = (0..placed[0].variants())
                .map(|v| {
                    let mut c = [Span::EMPTY; 2];
                    for p in &placed {
                        c[0] = c[0].union(p.changed[v][0]);
                        c[1] = c[1].union(p.changed[v][1]);
                    }
                    c
                })
                .collect();
            Placement::holding(map, changed)
        });
        let Some(target) = target else {
            return Crops {
                id,
                values: f(xs.map(|x| self.full_of(x))),
                placement: None,
            };
        };
        let at: Vec<[i64; 2]> = target
            .at
            .iter()
            .map(|a| [a[0] as i64, a[1] as i64])
            .collect();
        let values = f(std::array::from_fn(|k| {
            let x = xs[k];
            if x.placement.as_ref() == Some(&target) {
                x.values.clone()
            } else {
                assemble(
                    &bases[k],
                    &x.values,
                    x.placement.as_ref(),
                    &at,
                    target.size,
                    0.0,
                )
            }
        }));
        Crops {
            id,
            values,
            placement: Some(target),
        }
    }

    /// A convolution after the prefix, on the full batch: counted, then run as usual.
    pub fn full_conv2d(&self, conv: &Conv2d, x: Tensor<4>, activation: Activation) -> Tensor<4> {
        let [n, _, _, _] = x.dims();
        let y = cpu::conv2d(conv, x, activation);
        let [_, _, oh, ow] = y.dims();
        self.count(conv, n, oh * ow, oh * ow);
        y
    }

    /// `x` as the full batch: the base with each variant's crop pasted in.
    pub fn full<const D: usize>(&self, x: Crops<D>) -> Tensor<D> {
        self.full_of(&x)
    }

    fn full_of<const D: usize>(&self, x: &Crops<D>) -> Tensor<D> {
        let Some(p) = &x.placement else {
            return x.values.clone();
        };
        let base = self.base::<D>(x.id);
        assemble(
            &base,
            &x.values,
            Some(p),
            &vec![[0, 0]; p.variants()],
            p.map,
            0.0,
        )
    }

    fn base<const D: usize>(&self, id: usize) -> Tensor<D> {
        let Some(base) = self.bases.get(id) else {
            unreachable!("statement {id} kept its base activation when it made its output")
        };
        base
    }
}

/// The output placement of a sliding-window layer over crops placed by `p`, and the windows
/// of its input to compute them from (top-left corners, which may lie in the padding, and
/// their size); `None` when the output crops would cover too much of the map.
fn window(
    p: &Placement,
    out: [usize; 2],
    span: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
) -> Option<(Placement, Vec<[i64; 2]>, [usize; 2])> {
    let changed = p
        .changed
        .iter()
        .map(|c| {
            [
                c[0].through(span[0], stride[0], pad[0], out[0]),
                c[1].through(span[1], stride[1], pad[1], out[1]),
            ]
        })
        .collect();
    let placed = Placement::holding(out, changed)?;
    let at = placed
        .at
        .iter()
        .map(|a| {
            [
                (a[0] * stride[0]) as i64 - pad[0] as i64,
                (a[1] * stride[1]) as i64 - pad[1] as i64,
            ]
        })
        .collect();
    let size = [
        (placed.size[0] - 1) * stride[0] + span[0],
        (placed.size[1] - 1) * stride[1] + span[1],
    ];
    Some((placed, at, size))
}

/// The windows `at` of `size` over `x` (see [`assemble`]): `x`'s own crops when they are
/// those windows (a 1×1 convolution's), else assembled.
fn window_of<const D: usize>(
    base: &Tensor<D>,
    x: &Crops<D>,
    at: &[[i64; 2]],
    size: [usize; 2],
    pad: f32,
) -> Tensor<D> {
    if let Some(p) = &x.placement
        && p.size == size
        && p.at
            .iter()
            .zip(at)
            .all(|(a, b)| a[0] as i64 == b[0] && a[1] as i64 == b[1])
    {
        return x.values.clone();
    }
    assemble(base, &x.values, x.placement.as_ref(), at, size, pad)
}

/// A tensor's f32 values in row-major order (copied only when not laid out contiguously).
fn host<const D: usize>(x: &Tensor<D>) -> Vec<f32> {
    if let Ok(t) = x.clone().try_into_primitive::<Flex>()
        && t.dtype() == DType::F32
        && let Some((start, end)) = t.layout().contiguous_offsets()
    {
        return t.storage::<f32>()[start..end].to_vec();
    }
    match x.to_data().convert::<f32>().try_to_vec::<f32>() {
        Ok(values) => values,
        Err(e) => unreachable!("f32 data converts to f32 values: {e:?}"),
    }
}

/// Borrows a tensor's values when it is contiguous on the CPU, or copies them.
fn with_values<const D: usize, R>(x: &Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> R {
    if let Ok(t) = x.clone().try_into_primitive::<Flex>()
        && t.dtype() == DType::F32
        && let Some((start, end)) = t.layout().contiguous_offsets()
    {
        return f(&t.storage::<f32>()[start..end]);
    }
    f(&host(x))
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(values, shape)))
}

/// Windows `[n, ..., size[0], size[1]]` of the map: window `v` has its top-left corner at
/// `at[v]` (possibly outside the map, where it reads `pad`) and holds `base` (`[1, ..., H, W]`)
/// with variant `v`'s crop of `crops` (placed by `placement`) pasted in.
fn assemble<const D: usize>(
    base: &Tensor<D>,
    crops: &Tensor<D>,
    placement: Option<&Placement>,
    at: &[[i64; 2]],
    size: [usize; 2],
    pad: f32,
) -> Tensor<D> {
    let dims = base.dims();
    let [h, w] = [dims[D - 2], dims[D - 1]];
    let channels: usize = dims[1..D - 2].iter().product();
    let n = at.len();
    let [wh, ww] = size;
    let mut shape = dims;
    shape[0] = n;
    shape[D - 2] = wh;
    shape[D - 1] = ww;
    if !on_cpu(base) {
        return gathered(base, crops, placement, at, size, pad, shape);
    }
    let len = n * channels * wh * ww;
    let mut out = Vec::with_capacity(len);
    with_values(base, |base| {
        with_values(crops, |crops| {
            out.spare_capacity_mut()[..len]
                .par_chunks_mut(wh * ww)
                .enumerate()
                .for_each(|(plane, out)| {
                    let (v, c) = (plane / channels, plane % channels);
                    let base = &base[c * h * w..(c + 1) * h * w];
                    let [y0, x0] = at[v];
                    for (r, row) in out.chunks_mut(ww).enumerate() {
                        let y = y0 + r as i64;
                        if y < 0 || y >= h as i64 {
                            row.fill(MaybeUninit::new(pad));
                            continue;
                        }
                        let y = y as usize;
                        // Columns of the map this row covers: [a, b) of the window.
                        let a = (-x0).clamp(0, ww as i64) as usize;
                        let b = (w as i64 - x0).clamp(a as i64, ww as i64) as usize;
                        row[..a].fill(MaybeUninit::new(pad));
                        row[b..].fill(MaybeUninit::new(pad));
                        let from = (x0 + a as i64).max(0) as usize;
                        row[a..b].write_copy_of_slice(&base[y * w + from..][..b - a]);
                        let Some(p) = placement else { continue };
                        let [cy, cx] = p.at[v];
                        let [ch, cw] = p.size;
                        if y < cy || y >= cy + ch {
                            continue;
                        }
                        // The crop's columns inside the window.
                        let lo = (cx as i64).max(x0);
                        let hi = ((cx + cw) as i64).min(x0 + ww as i64);
                        if lo >= hi {
                            continue;
                        }
                        let crop = &crops[((v * channels + c) * ch + (y - cy)) * cw..][..cw];
                        let (into, from) = ((lo - x0) as usize, (lo - cx as i64) as usize);
                        let len = (hi - lo) as usize;
                        row[into..into + len].write_copy_of_slice(&crop[from..from + len]);
                    }
                })
        })
    });
    // SAFETY: the loop above wrote all `len` values: each row's padding filled, its part
    // inside the map copied from the base.
    unsafe { out.set_len(len) };
    tensor(out, shape)
}

/// Crops of the model input placed by `p`: `base` (`[1, C, H, W]`) with each variant's changed
/// rectangle taken from `fill`.
fn paste_fill(base: &Tensor<4>, fill: &Tensor<4>, p: &Placement) -> Tensor<4> {
    if !on_cpu(base) {
        return paste_fill_gathered(base, fill, p);
    }
    let [_, c, h, w] = base.dims();
    let [ch, cw] = p.size;
    let n = p.variants();
    let mut out = vec![0f32; n * c * ch * cw];
    with_values(base, |base| {
        with_values(fill, |fill| {
            out.par_chunks_mut(ch * cw)
                .enumerate()
                .for_each(|(plane, out)| {
                    let (v, k) = (plane / c, plane % c);
                    let [cy, cx] = p.at[v];
                    let [rows, cols] = p.changed[v];
                    for (r, row) in out.chunks_mut(cw).enumerate() {
                        let y = cy + r;
                        let at = k * h * w + y * w + cx;
                        row.copy_from_slice(&base[at..at + cw]);
                        if (y as i64) < rows.lo || (y as i64) >= rows.hi {
                            continue;
                        }
                        for (x, value) in row.iter_mut().enumerate() {
                            let x = (cx + x) as i64;
                            if x >= cols.lo && x < cols.hi {
                                *value = fill[at - cx + x as usize];
                            }
                        }
                    }
                })
        })
    });
    tensor(out, [n, c, ch, cw])
}

/// Whether `x` lives on the CPU backend in f32, where [`assemble`] pastes with memory copies.
fn on_cpu<const D: usize>(x: &Tensor<D>) -> bool {
    x.device() == burn::tensor::Device::flex() && x.dtype() == DType::F32
}

/// [`assemble`] on any device: every window value is one `select` from the base, the crops and
/// a padding column laid side by side per channel, its index computed on the host.
fn gathered<const D: usize>(
    base: &Tensor<D>,
    crops: &Tensor<D>,
    placement: Option<&Placement>,
    at: &[[i64; 2]],
    size: [usize; 2],
    pad: f32,
    shape: [usize; D],
) -> Tensor<D> {
    let dims = base.dims();
    let [h, w] = [dims[D - 2], dims[D - 1]];
    let channels: usize = dims[1..D - 2].iter().product();
    let n = at.len();
    let [wh, ww] = size;
    let base_flat: Tensor<2> = base.clone().reshape([channels, h * w]);
    let mut parts = vec![base_flat.clone()];
    let crop_start = h * w;
    let mut pad_at = crop_start;
    if let Some(p) = placement {
        let [ch, cw] = p.size;
        let flat: Tensor<3> = crops.clone().reshape([n, channels, ch * cw]);
        parts.push(flat.swap_dims(0, 1).reshape([channels, n * ch * cw]));
        pad_at += n * ch * cw;
    }
    parts.push(
        base_flat
            .slice([0..channels, 0..1])
            .zeros_like()
            .add_scalar(pad),
    );
    let source = Tensor::cat(parts, 1);
    let mut index = Vec::with_capacity(n * wh * ww);
    for (v, &[y0, x0]) in at.iter().enumerate() {
        for r in 0..wh as i64 {
            for c in 0..ww as i64 {
                let (y, x) = (y0 + r, x0 + c);
                let i = if y < 0 || x < 0 || y >= h as i64 || x >= w as i64 {
                    pad_at
                } else {
                    let (y, x) = (y as usize, x as usize);
                    match placement {
                        Some(p)
                            if (p.at[v][0]..p.at[v][0] + p.size[0]).contains(&y)
                                && (p.at[v][1]..p.at[v][1] + p.size[1]).contains(&x) =>
                        {
                            let [ch, cw] = p.size;
                            crop_start + v * ch * cw + (y - p.at[v][0]) * cw + (x - p.at[v][1])
                        }
                        _ => y * w + x,
                    }
                };
                index.push(i as i64);
            }
        }
    }
    let picked = select_columns(source, index, [channels, n, wh, ww]);
    picked.swap_dims(0, 1).reshape(shape)
}

/// [`paste_fill`] on any device: the base with each variant's rectangle taken from the fill,
/// selected per pixel.
fn paste_fill_gathered(base: &Tensor<4>, fill: &Tensor<4>, p: &Placement) -> Tensor<4> {
    let [_, c, h, w] = base.dims();
    let [ch, cw] = p.size;
    let n = p.variants();
    let source = Tensor::cat(
        vec![
            base.clone().reshape([c, h * w]),
            fill.clone().reshape([c, h * w]),
        ],
        1,
    );
    let mut index = Vec::with_capacity(n * ch * cw);
    for v in 0..n {
        let [cy, cx] = p.at[v];
        let [rows, cols] = p.changed[v];
        for y in cy..cy + ch {
            for x in cx..cx + cw {
                let inside = (y as i64) >= rows.lo
                    && (y as i64) < rows.hi
                    && (x as i64) >= cols.lo
                    && (x as i64) < cols.hi;
                index.push((y * w + x + if inside { h * w } else { 0 }) as i64);
            }
        }
    }
    let picked = select_columns(source, index, [c, n, ch, cw]);
    picked.swap_dims(0, 1)
}

/// Columns `index` of `source` (`[C, columns]`), on its device, as `shape` (`[C, n, h, w]`).
fn select_columns(source: Tensor<2>, index: Vec<i64>, shape: [usize; 4]) -> Tensor<4> {
    let len = index.len();
    let index =
        Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(index, [len]), &source.device());
    source.select(1, index).reshape(shape)
}
