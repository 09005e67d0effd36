//! glassbox from Python: the library's own API (not the command line), numpy arrays in and out.
//!
//! ```python
//! import glassbox
//! clf = glassbox.Classifier()                      # the default model, best device
//! e = clf.explain("chelsea.png", method="elbow")   # any method, the CLI's options as keywords
//! e.label, e.probability, e.mask.shape, e.heatmap.shape
//! e.save("out/")                                   # the command line's files
//! ```
//!
//! Errors raise `ValueError` (bad arguments), `FileNotFoundError` (missing files) or
//! `RuntimeError` (the device or the model failed) with glassbox's one-line message. Long calls
//! release the GIL.

use std::path::PathBuf;

use glassbox::explain::kernelshap::Samples as ShapSamples;
use glassbox::explain::{self, Explained, Explainer, Method, ViewCache};
use glassbox::mask::jaccard_views;
use glassbox::metrics::{self, Faithfulness, FaithfulnessOptions};
use glassbox::model::Precision;
use glassbox::output::{self, Picture, Source};
use glassbox::perturb::Fill;
use glassbox::view::{Photo, load_photo};
use glassbox::{Classifier as Inner, Compute, DeviceRequest, ModelInfo, View};
use numpy::{IntoPyArray, PyArray2, PyArray3, PyReadonlyArray3};
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// glassbox's error as the Python exception a user expects.
fn raise(e: glassbox::Error) -> PyErr {
    use glassbox::Error as E;
    let message = e.to_string();
    match &e {
        E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        E::Image { path, .. } if !path.exists() => PyFileNotFoundError::new_err(message),
        E::Device { .. } | E::NonFinite { .. } | E::ModelLoad { .. } | E::NoGpu(_) => {
            PyRuntimeError::new_err(message)
        }
        _ => PyValueError::new_err(message),
    }
}

/// A parsed JSON document as Python objects.
fn to_python(py: Python<'_>, value: &serde_json::Value) -> PyResult<PyObject> {
    let json = py.import("json")?;
    Ok(json.call_method1("loads", (value.to_string(),))?.unbind())
}

/// The built-in models, as `glassbox models --json` lists them.
#[pyfunction]
#[pyo3(signature = (all = false))]
fn models(py: Python<'_>, all: bool) -> PyResult<PyObject> {
    let list: Vec<serde_json::Value> = ModelInfo::all()
        .filter(|m| all || !m.fixture())
        .map(|m| m.to_json())
        .collect();
    to_python(py, &serde_json::Value::Array(list))
}

/// An image argument: a path, or a uint8 `H × W × 3` RGB array.
fn photo_of(image: &Bound<'_, PyAny>) -> PyResult<(Photo, PathBuf)> {
    if let Ok(array) = image.extract::<PyReadonlyArray3<'_, u8>>() {
        let view = array.as_array();
        let [h, w, c] = [view.shape()[0], view.shape()[1], view.shape()[2]];
        if c != 3 || h == 0 || w == 0 {
            return Err(PyValueError::new_err(format!(
                "an image array must be H x W x 3 uint8 RGB, got {h} x {w} x {c}"
            )));
        }
        let pixels: Vec<u8> = view.iter().copied().collect();
        let rgb = image::RgbImage::from_raw(w as u32, h as u32, pixels)
            .ok_or_else(|| PyValueError::new_err("an image array of the wrong size"))?;
        return Ok((
            Photo {
                rgb,
                notes: Vec::new(),
            },
            PathBuf::from("array"),
        ));
    }
    let path: PathBuf = image.extract().map_err(|_| {
        PyValueError::new_err("an image is a path or an H x W x 3 uint8 numpy array")
    })?;
    Ok((load_photo(&path).map_err(raise)?, path))
}

/// A model loaded on a device.
#[pyclass(module = "glassbox", frozen)]
struct Classifier {
    inner: Inner,
}

#[pymethods]
impl Classifier {
    /// `Classifier(model=None, device="auto", precision="f32")`: the default model when
    /// `model` is None; `device` is "auto", "gpu" or "cpu".
    #[new]
    #[pyo3(signature = (model = None, device = "auto", precision = "f32"))]
    fn new(py: Python<'_>, model: Option<&str>, device: &str, precision: &str) -> PyResult<Self> {
        let info = match model {
            Some(id) => ModelInfo::find(id).map_err(raise)?,
            None => ModelInfo::default_model(),
        };
        let request = match device {
            "auto" => DeviceRequest::Auto,
            "gpu" => DeviceRequest::Gpu,
            "cpu" => DeviceRequest::Cpu,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown device '{other}' (auto, gpu or cpu)"
                )));
            }
        };
        let precision: Precision = precision.parse().map_err(raise)?;
        let inner = py.allow_threads(|| {
            let (compute, _) = Compute::select(request)?;
            Inner::load_with(info, &compute, precision)
        });
        Ok(Self {
            inner: inner.map_err(raise)?,
        })
    }

    /// The model's id.
    #[getter]
    fn model(&self) -> &'static str {
        self.inner.info().id()
    }

    /// The device it runs on.
    #[getter]
    fn device(&self) -> String {
        self.inner.compute().to_string()
    }

    /// `classify(images, top=5)`: for each image (a path or an H x W x 3 uint8 array), its `top`
    /// classes as `(index, label, probability)`, most probable first.
    #[pyo3(signature = (images, top = 5))]
    fn classify(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        top: usize,
    ) -> PyResult<Vec<Vec<(usize, String, f32)>>> {
        let list: Vec<Bound<'_, PyAny>> = if images.is_instance_of::<PyList>() {
            images.extract()?
        } else {
            vec![images.clone()]
        };
        let pre = self.inner.info().preprocess();
        let mut inputs = Vec::new();
        for image in &list {
            let (photo, _) = photo_of(image)?;
            let view = View::new(&photo.rgb, pre);
            inputs.extend(glassbox::view::to_input(&view.rgb, pre));
        }
        let probabilities = py
            .allow_threads(|| self.inner.classify(&inputs))
            .map_err(raise)?;
        Ok((0..probabilities.rows())
            .map(|r| {
                probabilities
                    .top(r, top)
                    .into_iter()
                    .map(|p| {
                        let label = self.inner.label(p.class).unwrap_or("?").to_string();
                        (p.class, label, p.probability)
                    })
                    .collect()
            })
            .collect())
    }

    /// `explain(image, method="elbow", **options)`: explains the image (a path or an array) with
    /// any method: arbitrary, statistical, double-division, elbow, sliding, lime, kernelshap,
    /// rise. Options as the command line's flags: grid, keep_fraction, k, fill, samples, seed,
    /// features, masks, cells, keep_prob, window, stride, class_index, incremental, steps
    /// (faithfulness steps, 0 for none).
    #[pyo3(signature = (image, method = "elbow", **options))]
    fn explain(
        slf: &Bound<'_, Self>,
        image: &Bound<'_, PyAny>,
        method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Explanation> {
        let py = slf.py();
        let (photo, path) = photo_of(image)?;
        let (explainer, steps) = explainer_for(method, options)?;
        let classifier = &slf.get().inner;
        let view = View::new(&photo.rgb, classifier.info().preprocess());
        let result = py.allow_threads(|| -> glassbox::Result<(Explained, Option<Faithfulness>)> {
            let explained = explain::run(classifier, &view, &explainer, &mut ViewCache::default())?;
            let faithfulness = if steps > 0 {
                let options = FaithfulnessOptions {
                    steps,
                    ..FaithfulnessOptions::default()
                };
                Some(metrics::faithfulness(
                    classifier,
                    &view,
                    &explained.attribution(),
                    &options,
                )?)
            } else {
                None
            };
            Ok((explained, faithfulness))
        });
        let (explained, faithfulness) = result.map_err(raise)?;
        let explained_class = explained.class();
        Ok(Explanation {
            explained,
            faithfulness,
            photo,
            view,
            path,
            classifier: slf.clone().unbind(),
            info: classifier.info(),
            label: classifier.label(explained_class).unwrap_or("?").to_string(),
        })
    }
}

/// The explainer for `method` with the keyword `options`, and the faithfulness steps.
fn explainer_for(
    method: &str,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<(Explainer, usize)> {
    let get = |key: &str| -> Option<Bound<'_, PyAny>> {
        options.and_then(|o| o.get_item(key).ok().flatten())
    };
    if let Some(o) = options {
        const KNOWN: &[&str] = &[
            "grid",
            "keep_fraction",
            "k",
            "fill",
            "samples",
            "seed",
            "features",
            "masks",
            "cells",
            "keep_prob",
            "window",
            "stride",
            "class_index",
            "incremental",
            "steps",
        ];
        for key in o.keys() {
            let key: String = key.extract()?;
            if !KNOWN.contains(&key.as_str()) {
                return Err(PyValueError::new_err(format!(
                    "unknown option '{key}' ({})",
                    KNOWN.join(", ")
                )));
            }
        }
    }
    macro_rules! opt {
        ($key:expr, $ty:ty, $default:expr) => {
            match get($key) {
                Some(v) => v.extract::<$ty>().map_err(|_| {
                    PyValueError::new_err(format!("option '{}' has the wrong type", $key))
                })?,
                None => $default,
            }
        };
    }
    // The command line's defaults for the method, then each option given.
    let mut explainer = Explainer::named(method).map_err(raise)?;
    let fill: Option<Fill> = opt!("fill", Option<String>, None)
        .map(|f| f.parse())
        .transpose()
        .map_err(raise)?;
    let class: Option<usize> = opt!("class_index", Option<usize>, None);
    let steps = opt!("steps", usize, FaithfulnessOptions::default().steps);
    match &mut explainer {
        Explainer::Occlusion { method, options } => {
            options.grid = opt!("grid", u32, options.grid);
            options.fill = fill.unwrap_or(options.fill);
            options.incremental = opt!("incremental", bool, options.incremental);
            match method {
                Method::Arbitrary { fraction } => {
                    *fraction = opt!("keep_fraction", f64, *fraction);
                }
                Method::Statistical { k } | Method::DoubleDivision { k } | Method::Elbow { k } => {
                    *k = opt!("k", f64, *k);
                }
            }
        }
        Explainer::Sliding(o) => {
            o.fill = fill.unwrap_or(o.fill);
            o.window = opt!("window", u32, o.window);
            o.stride = opt!("stride", u32, o.stride);
            o.keep_fraction = opt!("keep_fraction", f64, o.keep_fraction);
            o.incremental = opt!("incremental", bool, o.incremental);
        }
        Explainer::Lime(o) => {
            o.fill = fill.unwrap_or(o.fill);
            o.samples = opt!("samples", usize, o.samples);
            o.seed = opt!("seed", u32, o.seed);
            o.features = opt!("features", usize, o.features);
        }
        Explainer::KernelShap(o) => {
            o.fill = fill.unwrap_or(o.fill);
            if let Some(n) = opt!("samples", Option<usize>, None) {
                o.samples = ShapSamples::Count(n);
            }
            o.seed = opt!("seed", u32, o.seed);
            o.features = opt!("features", usize, o.features);
        }
        Explainer::Rise(o) => {
            o.fill = fill.unwrap_or(o.fill);
            o.masks = opt!("masks", usize, o.masks);
            o.cells = opt!("cells", u32, o.cells);
            o.keep_prob = opt!("keep_prob", f64, o.keep_prob);
            o.seed = opt!("seed", u32, o.seed);
            o.keep_fraction = opt!("keep_fraction", f64, o.keep_fraction);
        }
    }
    if let Some(class) = class {
        explainer = explainer.for_class(class);
    }
    Ok((explainer, steps))
}

/// An explanation of one image.
#[pyclass(module = "glassbox")]
struct Explanation {
    explained: Explained,
    faithfulness: Option<Faithfulness>,
    photo: Photo,
    view: View,
    path: PathBuf,
    /// The classifier that explained it (for `save`).
    classifier: Py<Classifier>,
    info: ModelInfo,
    label: String,
}

#[pymethods]
impl Explanation {
    /// The method's name.
    #[getter]
    fn method(&self) -> &'static str {
        self.explained.name()
    }

    /// The explained class's index.
    #[getter]
    fn class_index(&self) -> usize {
        self.explained.class()
    }

    /// The explained class's label.
    #[getter]
    fn label(&self) -> &str {
        &self.label
    }

    /// The explained class's probability on the unperturbed view.
    #[getter]
    fn probability(&self) -> f32 {
        self.explained.attribution().probability
    }

    /// The kept (important) pixels of the model's input view, a bool array `H × W`.
    #[getter]
    fn mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<bool>>> {
        let kept = self.explained.kept();
        let (w, h) = kept.size();
        let values: Vec<bool> = kept.to_vec();
        numpy::ndarray::Array2::from_shape_vec((h as usize, w as usize), values)
            .map(|a| a.into_pyarray(py))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// The kept pixels of the photo (the view mapped back; pixels the view cropped away are
    /// not kept), a bool array `photo height × photo width`.
    #[getter]
    fn photo_mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<bool>>> {
        let kept = self.explained.kept();
        let (vw, _) = kept.size();
        let (w, h) = self.photo.rgb.dimensions();
        let mut values = Vec::with_capacity((w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                values.push(
                    self.view
                        .view_pixel(x, y)
                        .is_some_and(|(vx, vy)| kept[(vy * vw + vx) as usize]),
                );
            }
        }
        numpy::ndarray::Array2::from_shape_vec((h as usize, w as usize), values)
            .map(|a| a.into_pyarray(py))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Each view pixel's importance by the method's own order (higher = more important), a
    /// float32 array `H × W`.
    #[getter]
    fn heatmap<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let a = self.explained.attribution();
        let (w, h) = a.kept.size();
        numpy::ndarray::Array2::from_shape_vec((h as usize, w as usize), a.importance)
            .map(|a| a.into_pyarray(py))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// The occlusion rules' ranking of the first grid's cells, least important first (None for
    /// the other methods).
    #[getter]
    fn ranking(&self) -> Option<Vec<usize>> {
        match &self.explained {
            Explained::Occlusion(e) => e.phases.first().map(|p| p.ranking.clone()),
            _ => None,
        }
    }

    /// Deletion and insertion curves and areas (None with `steps=0`).
    #[getter]
    fn faithfulness(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        self.faithfulness
            .as_ref()
            .map(|f| to_python(py, &f.to_json()))
            .transpose()
    }

    /// Seconds per stage, as the JSON's `timings_s`.
    #[getter]
    fn timings(&self, py: Python<'_>) -> PyResult<PyObject> {
        let doc = self.explained.to_json(|_| None);
        to_python(py, &doc["timings_s"])
    }

    /// The explanation's JSON document (the command line's, without the file context).
    fn to_json(&self) -> String {
        self.explained.to_json(|i| self.info.label(i)).to_string()
    }

    /// Writes the command line's files (pictures, mask, JSON, faithfulness chart) into `dir`,
    /// created if missing; returns their paths.
    fn save(&mut self, py: Python<'_>, dir: PathBuf) -> PyResult<Vec<String>> {
        let classifier = self.classifier.clone_ref(py);
        let inner = &classifier.get().inner;
        let written = py.allow_threads(|| {
            output::prepare_dir(&dir)?;
            let source = Source {
                image: &self.path,
                photo: &self.photo.rgb,
                view: &self.view,
            };
            output::write_explanation(
                inner,
                &source,
                &mut self.explained,
                Picture::PositiveOnly,
                self.faithfulness.as_ref(),
                &dir,
            )
        });
        let written = written.map_err(raise)?;
        Ok(std::fs::read_dir(&written.dir)
            .map(|entries| {
                let mut files: Vec<String> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&written.base))
                    })
                    .map(|p| p.display().to_string())
                    .collect();
                files.sort();
                files
            })
            .unwrap_or_default())
    }
}

/// `compare(a, b)`: the Jaccard index of two explanations' kept masks over the photo region
/// both views saw, and the report's overlay (green both, red only `a`, yellow only `b`) as an
/// `H × W × 3` uint8 array over the photo.
#[pyfunction]
fn compare<'py>(
    py: Python<'py>,
    a: &Explanation,
    b: &Explanation,
) -> PyResult<(f64, Bound<'py, PyArray3<u8>>)> {
    if a.photo.rgb.dimensions() != b.photo.rgb.dimensions() {
        return Err(PyValueError::new_err(
            "the two explanations are of different photos",
        ));
    }
    let jaccard =
        jaccard_views(&a.view, a.explained.kept(), &b.view, b.explained.kept()).map_err(raise)?;
    let photo = &a.photo.rgb;
    let (w, h) = photo.dimensions();
    let kept = |e: &Explanation, x: u32, y: u32| {
        let (vw, _) = e.explained.kept().size();
        e.view
            .view_pixel(x, y)
            .map(|(vx, vy)| e.explained.kept()[(vy * vw + vx) as usize])
    };
    let mut pixels = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let px = photo.get_pixel(x, y).0;
            pixels.extend(glassbox::render::overlay_pixel(
                px,
                kept(a, x, y),
                kept(b, x, y),
            ));
        }
    }
    let overlay = numpy::ndarray::Array3::from_shape_vec((h as usize, w as usize, 3), pixels)
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok((jaccard, overlay.into_pyarray(py)))
}

/// glassbox: explain what an image classifier looked at.
#[pymodule]
#[pyo3(name = "glassbox")]
fn glassbox_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(models, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_class::<Classifier>()?;
    m.add_class::<Explanation>()?;
    Ok(())
}
