//! Pictures: the report's blacked-out photo, a heatmap with its colour scale, the ranking curve,
//! and atomic file writes.

use std::path::Path;

use image::{ImageEncoder, Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::view::View;
use crate::{Error, Result};

const FONT: &str = "glassbox-sans";

fn font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../../assets/fonts/DejaVuSans.ttf"),
        )
        .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "the embedded font failed to load".into(),
        ))
    }
}

fn draw_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::InvalidArgument(format!("drawing failed: {e:?}"))
}

/// The photo at its own resolution with the blacked-out view pixels black, as the report shows
/// it. Parts of the photo the model never saw (cropped away) are dimmed.
pub fn masked(photo: &RgbImage, view: &View, kept: &[bool]) -> RgbImage {
    let vw = view.rgb.width();
    RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        let px = *photo.get_pixel(x, y);
        match view.view_pixel(x, y) {
            Some((vx, vy)) if kept[(vy * vw + vx) as usize] => px,
            Some(_) => Rgb([0, 0, 0]),
            None => Rgb(px.0.map(|c| c / 4)),
        }
    })
}

/// lime's signed picture: the photo with the chosen segments' green channel (positive weight)
/// or red channel (negative weight) at full intensity.
pub fn signed(photo: &RgbImage, view: &View, labels: &[u32], chosen: &[(usize, f64)]) -> RgbImage {
    let vw = view.rgb.width();
    RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        let mut px = *photo.get_pixel(x, y);
        if let Some((vx, vy)) = view.view_pixel(x, y) {
            let segment = labels[(vy * vw + vx) as usize] as usize;
            if let Some((_, w)) = chosen.iter().find(|(s, _)| *s == segment) {
                px[if *w > 0.0 { 1 } else { 0 }] = 255;
            }
        }
        px
    })
}

/// A diverging colour for `t` in `[-1, 1]`: blue (negative) through white to red (positive).
pub fn diverging(t: f32) -> [u8; 3] {
    let t = t.clamp(-1.0, 1.0);
    let (r, g, b) = if t >= 0.0 {
        (1.0, 1.0 - t, 1.0 - t)
    } else {
        (1.0 + t, 1.0 + t, 1.0)
    };
    [
        (r * 255.0).round() as u8,
        (g * 255.0).round() as u8,
        (b * 255.0).round() as u8,
    ]
}

/// The photo with `values` (one per view pixel) as a colour overlay, and a colour scale on the
/// right: red where the value is positive (occluding hurt the class), blue where negative.
pub fn heatmap(photo: &RgbImage, view: &View, values: &[f32], title: &str) -> Result<RgbImage> {
    font()?;
    let vw = view.rgb.width();
    let extent = values.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let (pw, ph) = photo.dimensions();
    let bar = (pw / 6).clamp(90, 200);
    let caption = 26;
    let mut canvas = RgbImage::from_pixel(pw + bar, ph.max(160) + caption, Rgb([255, 255, 255]));
    for (x, y, px) in photo.enumerate_pixels() {
        let out = match view.view_pixel(x, y) {
            Some((vx, vy)) => {
                let c = diverging(values[(vy * vw + vx) as usize] / extent);
                Rgb([0, 1, 2].map(|i| (0.45 * px[i] as f32 + 0.55 * c[i] as f32).round() as u8))
            }
            None => Rgb(px.0.map(|c| c / 4)),
        };
        canvas.put_pixel(x, y, out);
    }
    let (cw, ch) = canvas.dimensions();
    let (top, bottom) = (30i32, (ch - caption) as i32 - 30);
    let x0 = pw as i32 + 12;
    for y in top..bottom {
        let t = 1.0 - 2.0 * (y - top) as f32 / (bottom - top) as f32;
        for x in x0..x0 + 16 {
            canvas.put_pixel(x as u32, y as u32, Rgb(diverging(t)));
        }
    }
    {
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (cw, ch)).into_drawing_area();
        let style = (FONT, 13).into_font().color(&BLACK);
        let label = |v: f32| format!("{v:+.3}");
        root.draw(&Text::new(label(extent), (x0 + 20, top - 6), style.clone()))
            .map_err(draw_err)?;
        root.draw(&Text::new(
            label(0.0),
            (x0 + 20, (top + bottom) / 2 - 6),
            style.clone(),
        ))
        .map_err(draw_err)?;
        root.draw(&Text::new(
            label(-extent),
            (x0 + 20, bottom - 6),
            style.clone(),
        ))
        .map_err(draw_err)?;
        root.draw(&Text::new(
            title.to_string(),
            (6, (ch - caption) as i32 + 6),
            style,
        ))
        .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(canvas)
}

/// The report's "courbe": `p[c*]` of each occluded variant in ranking order, with the unoccluded
/// probability, and the rule's cut marked.
pub struct Curve<'a> {
    /// `p[c*]` in ranking order.
    pub values: &'a [f32],
    /// `p[c*]` of the unoccluded view.
    pub base: f32,
    /// Number of leading cells the rule blacked out, if it is a position (arbitrary, elbow).
    pub cut_after: Option<usize>,
    /// A threshold on `p` (statistical).
    pub threshold: Option<f64>,
    /// Title.
    pub title: &'a str,
}

impl Curve<'_> {
    /// Draws the curve as an 800×480 image.
    pub fn draw(&self) -> Result<RgbImage> {
        font()?;
        let (w, h) = (800u32, 480u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            let n = self.values.len().max(1);
            let top = self
                .values
                .iter()
                .fold(self.base, |m, v| m.max(*v))
                .max(1e-6) as f64
                * 1.05;
            let mut chart = ChartBuilder::on(&root)
                .caption(self.title, (FONT, 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..n as f64, 0f64..top)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc("cells, least important first")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_desc("p[c*] with the cell occluded")
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .draw()
                .map_err(draw_err)?;
            chart
                .draw_series(LineSeries::new(
                    [(0.0, self.base as f64), (n as f64, self.base as f64)],
                    BLUE.mix(0.5).stroke_width(1),
                ))
                .map_err(draw_err)?
                .label("unoccluded")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.mix(0.5)));
            chart
                .draw_series(LineSeries::new(
                    self.values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (i as f64 + 0.5, *v as f64)),
                    BLACK.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label("ranked variants")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
            if let Some(cut) = self.cut_after {
                chart
                    .draw_series(LineSeries::new(
                        [(cut as f64, 0.0), (cut as f64, top)],
                        RED.stroke_width(2),
                    ))
                    .map_err(draw_err)?
                    .label(format!("cut: {cut} cells blacked out"))
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
            }
            if let Some(t) = self.threshold {
                chart
                    .draw_series(LineSeries::new(
                        [(0.0, t), (n as f64, t)],
                        RED.stroke_width(2),
                    ))
                    .map_err(draw_err)?
                    .label(format!("threshold μ − kσ = {t:.4}"))
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
            }
            chart
                .configure_series_labels()
                .label_font((FONT, 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerLeft)
                .draw()
                .map_err(draw_err)?;
            root.present().map_err(draw_err)?;
        }
        RgbImage::from_raw(w, h, buf)
            .ok_or_else(|| Error::InvalidArgument("curve buffer size".into()))
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so that a
/// crash never leaves a partial file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Encodes `img` as PNG and writes it atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::InvalidArgument(format!("PNG encoding failed: {e}")))?;
    write_atomic(path, &bytes)
}
