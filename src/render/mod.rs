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
/// right: red where the value is positive (occluding hurt the class), blue where negative, with
/// a thin dark outline where the value changes (between segments or cells).
pub fn heatmap(photo: &RgbImage, view: &View, values: &[f32], title: &str) -> Result<RgbImage> {
    heatmap_with(photo, view, values, title, true)
}

/// As [`heatmap`], without outlines: for values that vary smoothly from pixel to pixel (RISE's
/// saliency), where outlines would cover the picture.
pub fn smooth_heatmap(
    photo: &RgbImage,
    view: &View,
    values: &[f32],
    title: &str,
) -> Result<RgbImage> {
    heatmap_with(photo, view, values, title, false)
}

fn heatmap_with(
    photo: &RgbImage,
    view: &View,
    values: &[f32],
    title: &str,
    outline: bool,
) -> Result<RgbImage> {
    font()?;
    let vw = view.rgb.width();
    let extent = values.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let (pw, ph) = photo.dimensions();
    let bar = (pw / 6).clamp(90, 200);
    let caption = 26;
    let mut canvas = RgbImage::from_pixel(pw + bar, ph.max(160) + caption, Rgb([255, 255, 255]));
    // Outlines between regions of different values (LIME's segments, occlusion cells), about
    // `line` photo pixels wide whatever the photo's size, so that each region's colour reads as
    // one region, as lime's `mark_boundaries` draws them.
    let line = (pw.max(ph) / 450).max(1);
    let value_at = |x: u32, y: u32| {
        view.view_pixel(x, y)
            .map(|(vx, vy)| values[(vy * vw + vx) as usize])
    };
    for (x, y, px) in photo.enumerate_pixels() {
        let out = match value_at(x, y) {
            Some(v) => {
                let c = diverging(v / extent);
                let edge = outline
                    && [(x + line, y), (x, y + line)].into_iter().any(|(nx, ny)| {
                        nx < pw && ny < ph && value_at(nx, ny).is_some_and(|n| n != v)
                    });
                let (photo_share, colour) = if edge { (0.2, [60, 60, 60]) } else { (0.45, c) };
                Rgb([0, 1, 2].map(|i| {
                    (photo_share * px[i] as f32 + (1.0 - photo_share) * colour[i] as f32).round()
                        as u8
                }))
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

/// The overlay's colour for pixels kept only by A (red).
pub const ONLY_A: [u8; 3] = [230, 30, 30];
/// The overlay's colour for pixels kept only by B (green).
pub const ONLY_B: [u8; 3] = [30, 200, 50];
/// The overlay's colour for pixels kept by both (yellow).
pub const BOTH: [u8; 3] = [250, 220, 20];

/// The colour of one photo pixel in the report's superposition: red where only A kept it, green
/// where only B did, yellow where both did, the photo dimmed where neither did (and darker
/// still where neither model saw it).
pub fn overlay_pixel(px: [u8; 3], a: Option<bool>, b: Option<bool>) -> [u8; 3] {
    let blend =
        |c: [u8; 3]| [0, 1, 2].map(|i| (0.35 * px[i] as f32 + 0.65 * c[i] as f32).round() as u8);
    match (a == Some(true), b == Some(true)) {
        (true, true) => blend(BOTH),
        (true, false) => blend(ONLY_A),
        (false, true) => blend(ONLY_B),
        _ if a.is_none() && b.is_none() => px.map(|c| c / 5),
        _ => px.map(|c| c / 3),
    }
}

/// The report's colour superposition of two masks (each over its own view of `photo`) on the
/// photo, scaled to at most `max_side` px along its longer side (up or down).
pub fn superpose(
    photo: &RgbImage,
    a: (&View, &[bool]),
    b: (&View, &[bool]),
    max_side: u32,
) -> RgbImage {
    let (pw, ph) = photo.dimensions();
    let scale = max_side as f32 / pw.max(ph).max(1) as f32;
    let (ow, oh) = (
        ((pw as f32 * scale).round() as u32).max(1),
        ((ph as f32 * scale).round() as u32).max(1),
    );
    let kept = |(view, mask): (&View, &[bool]), x: u32, y: u32| {
        view.view_pixel(x, y).map(|(vx, vy)| {
            mask.get((vy * view.rgb.width() + vx) as usize)
                .copied()
                .unwrap_or(false)
        })
    };
    RgbImage::from_fn(ow, oh, |x, y| {
        let sx = (((x as f32 + 0.5) / scale) as u32).min(pw.saturating_sub(1));
        let sy = (((y as f32 + 0.5) / scale) as u32).min(ph.saturating_sub(1));
        let px = photo.get_pixel(sx, sy).0;
        Rgb(overlay_pixel(px, kept(a, sx, sy), kept(b, sx, sy)))
    })
}

/// [`superpose`] at the photo's own size (at most 800 px), with a legend naming A and B and a
/// caption under it.
pub fn overlay(
    photo: &RgbImage,
    a: (&View, &[bool]),
    b: (&View, &[bool]),
    names: (&str, &str),
    caption: &str,
) -> Result<RgbImage> {
    font()?;
    let picture = superpose(photo, a, b, photo.width().max(photo.height()).min(800));
    let (ow, oh) = picture.dimensions();
    let legend = 4 * 18 + 10;
    let cw = ow.max(360);
    let mut canvas = RgbImage::from_pixel(cw, oh + legend, Rgb([255, 255, 255]));
    image::imageops::replace(&mut canvas, &picture, 0, 0);
    let swatches = [
        (ONLY_A, format!("only A: {}", names.0)),
        (ONLY_B, format!("only B: {}", names.1)),
        (BOTH, "both".to_string()),
    ];
    for (row, (colour, _)) in swatches.iter().enumerate() {
        let y0 = oh + 6 + row as u32 * 18;
        for y in y0..y0 + 12 {
            for x in 6..18 {
                canvas.put_pixel(x, y, Rgb(*colour));
            }
        }
    }
    {
        let (w, h) = canvas.dimensions();
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (w, h)).into_drawing_area();
        let style = (FONT, 13).into_font().color(&BLACK);
        for (row, (_, text)) in swatches.iter().enumerate() {
            root.draw(&Text::new(
                text.clone(),
                (24, (oh + 5 + row as u32 * 18) as i32),
                style.clone(),
            ))
            .map_err(draw_err)?;
        }
        root.draw(&Text::new(
            caption.to_string(),
            (6, (oh + 5 + 3 * 18) as i32),
            style,
        ))
        .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(canvas)
}

/// One explanation's deletion and insertion curves, for [`faithfulness_chart`].
pub struct FaithfulnessCurves<'a> {
    /// Legend name.
    pub name: &'a str,
    /// Deletion curve, evenly spaced over `[0, 1]`.
    pub deletion: &'a [f32],
    /// Insertion curve.
    pub insertion: &'a [f32],
    /// Its deletion AUC.
    pub deletion_auc: f64,
    /// Its insertion AUC.
    pub insertion_auc: f64,
}

/// Deletion (left) and insertion (right) curves of one or more explanations, 1000×420.
pub fn faithfulness_chart(curves: &[FaithfulnessCurves<'_>], title: &str) -> Result<RgbImage> {
    font()?;
    let (w, h) = (1000u32, 420u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let colours = [RED, RGBColor(20, 160, 40), BLUE, MAGENTA, CYAN];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root.titled(title, (FONT, 17)).map_err(draw_err)?;
        let panels = root.split_evenly((1, 2));
        for (panel, deletion) in panels.iter().zip([true, false]) {
            let top = curves
                .iter()
                .flat_map(|c| if deletion { c.deletion } else { c.insertion }.iter())
                .fold(0.0f32, |m, v| m.max(*v))
                .max(1e-6) as f64
                * 1.05;
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    if deletion {
                        "deletion: most important pixels hidden first (lower area = more faithful)"
                    } else {
                        "insertion: revealed over a blurred copy (higher area = more faithful)"
                    },
                    (FONT, 12),
                )
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..1f64, 0f64..top)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc(if deletion {
                    "fraction of pixels hidden"
                } else {
                    "fraction of pixels revealed"
                })
                .y_desc("p[c*]")
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .draw()
                .map_err(draw_err)?;
            for (i, c) in curves.iter().enumerate() {
                let colour = colours[i % colours.len()];
                let values = if deletion { c.deletion } else { c.insertion };
                let n = values.len().saturating_sub(1).max(1) as f64;
                let area = if deletion {
                    c.deletion_auc
                } else {
                    c.insertion_auc
                };
                chart
                    .draw_series(LineSeries::new(
                        values
                            .iter()
                            .enumerate()
                            .map(|(t, v)| (t as f64 / n, *v as f64)),
                        colour.stroke_width(2),
                    ))
                    .map_err(draw_err)?
                    .label(format!("{} (AUC {area:.3})", c.name))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(if deletion {
                    SeriesLabelPosition::UpperRight
                } else {
                    SeriesLabelPosition::LowerRight
                })
                .draw()
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    RgbImage::from_raw(w, h, buf).ok_or_else(|| Error::InvalidArgument("chart buffer size".into()))
}

/// A titled row of captioned pictures, for [`contact_sheet`].
pub struct SheetRow {
    /// The row's title.
    pub title: String,
    /// Pictures and their captions (one or two lines each).
    pub tiles: Vec<(RgbImage, Vec<String>)>,
}

/// Pictures in titled rows, each scaled to fit a 240×240 tile with its caption under it.
pub fn contact_sheet(rows: &[SheetRow], title: &str) -> Result<RgbImage> {
    font()?;
    let (tile, caption, heading, pad) = (240u32, 36u32, 26u32, 10u32);
    let columns = rows.iter().map(|r| r.tiles.len()).max().unwrap_or(0).max(1) as u32;
    let w = pad + columns * (tile + pad);
    let h = 34 + rows.len() as u32 * (heading + tile + caption + pad);
    let mut canvas = RgbImage::from_pixel(w.max(400), h, Rgb([255, 255, 255]));
    let mut texts = vec![(title.to_string(), (pad as i32, 8), 17)];
    for (r, row) in rows.iter().enumerate() {
        let y0 = 34 + r as u32 * (heading + tile + caption + pad);
        texts.push((row.title.clone(), (pad as i32, y0 as i32 + 4), 15));
        for (c, (picture, lines)) in row.tiles.iter().enumerate() {
            let x0 = pad + c as u32 * (tile + pad);
            let (pw, ph) = picture.dimensions();
            let scale = tile as f32 / pw.max(ph).max(1) as f32;
            let (tw, th) = (
                ((pw as f32 * scale) as u32).clamp(1, tile),
                ((ph as f32 * scale) as u32).clamp(1, tile),
            );
            let filter = if scale > 1.0 {
                image::imageops::FilterType::Nearest
            } else {
                image::imageops::FilterType::Triangle
            };
            let thumb = image::imageops::resize(picture, tw, th, filter);
            image::imageops::replace(
                &mut canvas,
                &thumb,
                (x0 + (tile - tw) / 2) as i64,
                (y0 + heading + (tile - th) / 2) as i64,
            );
            for (l, line) in lines.iter().take(2).enumerate() {
                texts.push((
                    line.clone(),
                    (x0 as i32, (y0 + heading + tile + 3 + 16 * l as u32) as i32),
                    12,
                ));
            }
        }
    }
    {
        let (cw, ch) = canvas.dimensions();
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (cw, ch)).into_drawing_area();
        for (text, at, size) in texts {
            root.draw(&Text::new(text, at, (FONT, size).into_font().color(&BLACK)))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(canvas)
}
