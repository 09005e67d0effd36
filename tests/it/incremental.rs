//! Incremental occlusion inference (`glassbox::model::incremental`) against full inference on
//! the same variants: every built-in model and fixture, cells at corners, edges and the centre,
//! odd and even sizes, one-pixel cells and strips, a row that hides nothing, with every fill.

use glassbox::model::{Classifier, ModelInfo};
use glassbox::perturb::{Fill, KeepMatrix, Perturber};
use glassbox::segment::{Rect, Segmentation};
use glassbox::view::{View, load_photo};
use glassbox::Compute;

/// Tilings of a `w × h` view whose tiles are the cells under test: each is occluded alone.
fn tilings(w: u32, h: u32) -> Vec<(String, Vec<Rect>)> {
    let whole = Rect { x: 0, y: 0, w, h };
    let mut out = vec![
        ("10x10 grid".to_string(), whole.grid(10)),
        ("7x7 grid (odd cells)".to_string(), whole.grid(7)),
        ("3x3 grid".to_string(), whole.grid(3)),
    ];
    // Single pixels and thin strips at corners, edges and the centre, each a tile of its own,
    // the rest of the view one big tile that is never occluded alone (its row is skipped).
    let small = vec![
        Rect { x: 0, y: 0, w: 1, h: 1 },
        Rect { x: w - 1, y: h - 1, w: 1, h: 1 },
        Rect { x: w / 2, y: h / 2, w: 1, h: 1 },
        Rect { x: 0, y: h / 2 - 3, w: 5, h: 1 },
        Rect { x: w - 2, y: 1, w: 2, h: 17 },
        Rect { x: 37, y: h - 9, w: 23, h: 9 },
        Rect { x: 101, y: 60, w: 8, h: 8 },
    ];
    out.push(("pixels and strips".to_string(), small));
    out
}

/// The segmentation of `cells` plus, when they do not tile the view, one extra segment that
/// holds every other pixel (never occluded).
fn segmentation_of(w: u32, h: u32, cells: &[Rect]) -> (Segmentation, usize) {
    let mut covered = vec![false; (w * h) as usize];
    for c in cells {
        for y in c.y..c.y + c.h {
            for x in c.x..c.x + c.w {
                covered[(y * w + x) as usize] = true;
            }
        }
    }
    if covered.iter().all(|c| *c) {
        return (
            Segmentation::from_cells(w, h, cells.to_vec()).expect("tiling"),
            cells.len(),
        );
    }
    // Rows of the uncovered rest, as 1-pixel-high runs.
    let mut tiles = cells.to_vec();
    for y in 0..h {
        let mut x = 0;
        while x < w {
            if covered[(y * w + x) as usize] {
                x += 1;
                continue;
            }
            let start = x;
            while x < w && !covered[(y * w + x) as usize] {
                x += 1;
            }
            tiles.push(Rect {
                x: start,
                y,
                w: x - start,
                h: 1,
            });
        }
    }
    (
        Segmentation::from_cells(w, h, tiles).expect("tiling"),
        cells.len(),
    )
}

/// The largest difference between incremental and full inference over `tiling`'s single-cell
/// occlusions of `view` (and one row that hides nothing), and the share of convolution work
/// incremental inference computed.
fn compare(classifier: &Classifier, view: &View, cells: &[Rect], fill: Fill) -> (f32, f64) {
    let (w, h) = view.rgb.dimensions();
    let (segmentation, occluded) = segmentation_of(w, h, cells);
    let mut keep = KeepMatrix::new(segmentation.count());
    keep.push_all();
    for i in 0..occluded {
        keep.push_hiding(&[i]);
    }
    let full = Perturber::new(classifier, &view.rgb, &segmentation, fill)
        .expect("perturber")
        .run(&keep)
        .expect("full");
    let perturber = Perturber::new(classifier, &view.rgb, &segmentation, fill)
        .expect("perturber")
        .with_incremental(true);
    let incremental = perturber.run(&keep).expect("incremental");
    let macs = perturber.macs().expect("the batch ran incrementally");
    assert!(macs.computed <= macs.full, "{macs:?}");
    let worst = full
        .as_slice()
        .iter()
        .zip(incremental.as_slice())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    (worst, macs.computed as f64 / macs.full.max(1) as f64)
}

fn view_of(info: ModelInfo, photo: &str) -> View {
    let photo = load_photo(&crate::common::data(photo)).expect("decode");
    View::new(&photo.rgb, info.preprocess())
}

#[test]
fn incremental_inference_equals_full_inference_on_every_model() {
    let compute = Compute::cpu();
    for info in ModelInfo::all() {
        let classifier = Classifier::load(info, &compute).expect("load");
        assert!(classifier.incremental());
        let view = view_of(info, "chelsea.png");
        let (w, h) = view.rgb.dimensions();
        for (name, cells) in tilings(w, h) {
            // The fixtures and AlexNet (244 MB of weights) get the first grid and the strips.
            let heavy = info.id().starts_with("alexnet") || info.fixture();
            if heavy && name != "10x10 grid" && name != "pixels and strips" {
                continue;
            }
            let (worst, share) = compare(&classifier, &view, &cells, Fill::Black);
            assert!(
                worst <= 1e-5,
                "{}: {name}: incremental differs from full inference by {worst}",
                info.id()
            );
            eprintln!(
                "{}: {name}: max |Δp| {worst:.1e}, {:.0} % of the convolutions' work",
                info.id(),
                share * 100.0
            );
        }
    }
}

#[test]
fn incremental_inference_is_exact_with_every_fill() {
    let compute = Compute::cpu();
    let info = ModelInfo::find("googlenet-tv").expect("googlenet-tv");
    let classifier = Classifier::load(info, &compute).expect("load");
    let view = view_of(info, "coffee.png");
    let (w, h) = view.rgb.dimensions();
    let cells = Rect { x: 0, y: 0, w, h }.grid(6);
    for fill in [Fill::Grey, Fill::Mean, Fill::Blur(5.0)] {
        let (worst, _) = compare(&classifier, &view, &cells, fill);
        assert!(worst <= 1e-5, "fill {}: {worst}", fill.name());
    }
}

#[test]
fn incremental_inference_saves_work_where_the_issue_says() {
    let compute = Compute::cpu();
    for (model, at_most) in [("googlenet-tv", 0.6), ("efficientnet-lite0", 0.8)] {
        let info = ModelInfo::find(model).expect("model");
        let classifier = Classifier::load(info, &compute).expect("load");
        let view = view_of(info, "chelsea.png");
        let (w, h) = view.rgb.dimensions();
        let cells = Rect { x: 0, y: 0, w, h }.grid(10);
        let (_, share) = compare(&classifier, &view, &cells, Fill::Black);
        assert!(
            share <= at_most,
            "{model}: incremental inference computed {:.0} % of full inference's convolution work",
            share * 100.0
        );
    }
}
