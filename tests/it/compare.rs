//! Comparing explanations: Jaccard on hand-made masks and across view geometries, the overlay's
//! colours, and faithfulness on a planted-region model (a right explanation beats a wrong one).

use crate::common::dim_window_photo;
use glassbox::attribution::Attribution;
use glassbox::explain::lime::{LimeOptions, lime, lime_given};
use glassbox::explain::{
    self, Explainer, Method, OcclusionOptions, ViewCache, cell_scores, occlusion, occlusion_from,
};
use glassbox::mask::{jaccard, jaccard_views};
use glassbox::metrics::{self, FaithfulnessCache, FaithfulnessOptions, auc, bands};
use glassbox::render::{BOTH, ONLY_A, ONLY_B, diverging, heatmap, overlay_pixel, superpose};
use glassbox::view::View;
use glassbox::{Classifier, Compute, ModelInfo};
use image::{Rgb, RgbImage};

#[test]
fn jaccard_of_hand_made_masks() {
    let a = [true, true, false, false, true];
    let b = [true, false, true, false, true];
    // ∩ = {0, 4}, ∪ = {0, 1, 2, 4}
    assert_eq!(jaccard(&a, &b).expect("same length"), 0.5);
    assert_eq!(jaccard(&a, &a).expect("same length"), 1.0);
    let none = [false; 5];
    assert_eq!(
        jaccard(&none, &none).expect("same length"),
        1.0,
        "both empty"
    );
    assert_eq!(jaccard(&a, &none).expect("same length"), 0.0);
    let disjoint = [false, false, true, true, false];
    assert_eq!(jaccard(&a, &disjoint).expect("same length"), 0.0);
    assert!(
        jaccard(&a, &[true; 4]).is_err(),
        "length mismatch is an error"
    );
}

/// Masks over two models' different views of one photo are compared where both models looked.
#[test]
fn jaccard_across_view_geometries_uses_the_common_photo_region() {
    let photo = RgbImage::from_pixel(448, 224, Rgb([90, 120, 150]));
    let stretch = ModelInfo::find("planted-centre").expect("fixture");
    let square = ModelInfo::find("efficientnet-lite0").expect("default model");
    let va = View::new(&photo, stretch.preprocess()); // the whole photo, x squeezed by 2
    let vb = View::new(&photo, square.preprocess()); // photo x 112..336
    assert_ne!(va.crop, vb.crop);
    // A keeps photo x < 224 (view x < 112); B keeps photo x 112..224 (view x < 112).
    let left_half = |v: &View| -> Vec<bool> {
        (0..v.rgb.height())
            .flat_map(|_| (0..v.rgb.width()).map(|x| x < 112))
            .collect()
    };
    let (ka, kb) = (left_half(&va), left_half(&vb));
    // Over the common region (photo x 112..336) both keep exactly x 112..224.
    let j = jaccard_views(&va, &ka, &vb, &kb).expect("same photo");
    assert!(j > 0.99, "the same photo region: J = {j}");
    // Within one view geometry the comparison is pixel for pixel.
    let right_half: Vec<bool> = ka.iter().map(|k| !k).collect();
    assert_eq!(
        jaccard_views(&va, &ka, &va, &right_half).expect("same"),
        0.0
    );
}

#[test]
fn overlay_colours_follow_the_report_convention() {
    let grey = [100, 100, 100];
    let blend =
        |c: [u8; 3]| [0, 1, 2].map(|i| (0.35 * grey[i] as f32 + 0.65 * c[i] as f32).round() as u8);
    assert_eq!(overlay_pixel(grey, Some(true), Some(false)), blend(ONLY_A));
    assert_eq!(overlay_pixel(grey, Some(false), Some(true)), blend(ONLY_B));
    assert_eq!(overlay_pixel(grey, Some(true), Some(true)), blend(BOTH));
    assert_eq!(overlay_pixel(grey, Some(false), Some(false)), [33, 33, 33]);
    assert_eq!(overlay_pixel(grey, None, None), [20, 20, 20], "unseen");

    // A keeps the left half of the view, B the top half: four quadrants, four colours.
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let photo = RgbImage::from_pixel(224, 224, Rgb(grey));
    let view = View::new(&photo, info.preprocess());
    let a: Vec<bool> = (0..224 * 224).map(|i| i % 224 < 112).collect();
    let b: Vec<bool> = (0..224 * 224).map(|i| i / 224 < 112).collect();
    let picture = superpose(&photo, (&view, &a), (&view, &b), 224);
    assert_eq!(picture.get_pixel(10, 10).0, blend(BOTH), "top left: both");
    assert_eq!(
        picture.get_pixel(10, 200).0,
        blend(ONLY_A),
        "bottom left: A"
    );
    assert_eq!(picture.get_pixel(200, 10).0, blend(ONLY_B), "top right: B");
    assert_eq!(picture.get_pixel(200, 200).0, [33, 33, 33], "bottom right");
}

#[test]
fn heatmap_colours_regions_and_outlines_their_borders() {
    // Left half of the view +1 (red), right half -1 (blue), on a 448-px photo (outlines 1 px).
    let grey = [100u8, 100, 100];
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let photo = RgbImage::from_pixel(448, 448, Rgb(grey));
    let view = View::new(&photo, info.preprocess());
    let values: Vec<f32> = (0..224 * 224)
        .map(|i| if i % 224 < 112 { 1.0 } else { -1.0 })
        .collect();
    let picture = heatmap(&photo, &view, &values, "test").expect("heatmap");
    let tint = |c: [u8; 3]| [0, 1, 2].map(|i| (0.45 * 100.0 + 0.55 * c[i] as f32).round() as u8);
    assert_eq!(picture.get_pixel(20, 200).0, tint(diverging(1.0)), "red");
    assert_eq!(picture.get_pixel(400, 200).0, tint(diverging(-1.0)), "blue");
    // The photo pixel just left of the border (photo x 223 is view x 111, x 224 is view x 112)
    // is the outline, darker than either side; the one right of it is not.
    let outline = picture.get_pixel(223, 200).0;
    assert_eq!(outline, [68, 68, 68], "0.2 × photo + 0.8 × dark grey");
    assert_eq!(picture.get_pixel(224, 200).0, tint(diverging(-1.0)));
    assert_eq!(picture.get_pixel(222, 200).0, tint(diverging(1.0)));
    // No outline inside a region, nor along the photo's edges.
    assert_eq!(picture.get_pixel(447, 447).0, tint(diverging(-1.0)));
}

#[test]
fn auc_and_bands() {
    assert!((auc(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
    assert!((auc(&[1.0, 0.0]) - 0.5).abs() < 1e-12);
    assert!((auc(&[0.0, 1.0, 0.0]) - 0.5).abs() < 1e-12);
    // 4×2 pixels, importance descending along the raster except pixel 5, the most important.
    let importance = [8.0, 7.0, 6.0, 5.0, 4.0, 9.0, 2.0, 1.0];
    let b = bands(&importance, 4, 2, 4).expect("bands");
    assert_eq!(b.labels(), &[0, 1, 1, 2, 2, 0, 3, 3]);
    assert!(bands(&importance, 4, 2, 0).is_err());
    assert!(bands(&importance, 4, 2, 9).is_err());
}

#[test]
fn faithfulness_prefers_the_right_explanation_on_a_planted_model() {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let view = View::new(&dim_window_photo(), info.preprocess());
    let right = Attribution::from(
        &occlusion(
            &classifier,
            &view,
            Method::Statistical { k: 1.0 },
            &OcclusionOptions::default(),
        )
        .expect("explain"),
    );
    assert_eq!(right.class, 0, "the planted class wins");
    // The same explanation upside down: the window last.
    let mut wrong = right.clone();
    wrong.importance.iter_mut().for_each(|v| *v = -*v);
    wrong.kept.iter_mut().for_each(|k| *k = !*k);

    let options = FaithfulnessOptions::default();
    let fr = metrics::faithfulness(&classifier, &view, &right, &options).expect("right");
    let fw = metrics::faithfulness(&classifier, &view, &wrong, &options).expect("wrong");
    assert_eq!(fr.deletion.len(), options.steps + 1);
    assert_eq!(fr.insertion.len(), options.steps + 1);
    assert_eq!(fr.deletion[0], right.probability);
    assert_eq!(*fr.insertion.last().expect("end"), right.probability);
    assert_eq!(fr.variants, 2 * options.steps);
    assert!(
        fr.deletion_auc + 0.2 < fw.deletion_auc,
        "deletion: right {} vs wrong {}",
        fr.deletion_auc,
        fw.deletion_auc
    );
    assert!(
        fr.insertion_auc > fw.insertion_auc + 0.02,
        "insertion: right {} vs wrong {}",
        fr.insertion_auc,
        fw.insertion_auc
    );
    // Hiding the window first (9 % of the pixels ≈ 2 steps) drops the planted class at once.
    assert!(fr.deletion[2] < 0.5, "{:?}", fr.deletion);
    assert!(fw.deletion[2] > 0.7, "{:?}", fw.deletion);
}

/// Rules sharing a grid and fill read one set of single-cell scores, with the same result as
/// explaining from scratch; a cache entry for another grid is not reused.
#[test]
fn shared_cell_scores_give_the_same_explanations() {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let view = View::new(&dim_window_photo(), info.preprocess());
    let options = OcclusionOptions::default();
    let scores = cell_scores(&classifier, &view, 10, options.fill).expect("scores");
    for method in [
        Method::Arbitrary { fraction: 0.7 },
        Method::Statistical { k: 1.0 },
        Method::Elbow { k: 1.0 },
    ] {
        let alone = occlusion(&classifier, &view, method, &options).expect("alone");
        let shared = occlusion_from(&classifier, &view, &scores, method, &options).expect("shared");
        assert_eq!(alone.kept, shared.kept, "{method:?}");
        assert_eq!(alone.phases, shared.phases, "{method:?}");
    }
    let dd = Method::DoubleDivision { k: 1.0 };
    assert!(occlusion_from(&classifier, &view, &scores, dd, &options).is_err());

    let mut cache = ViewCache::default();
    for method in [
        Method::Arbitrary { fraction: 0.7 },
        Method::Statistical { k: 1.0 },
        dd,
    ] {
        explain::run(
            &classifier,
            &view,
            &Explainer::Occlusion { method, options },
            &mut cache,
        )
        .expect("run");
    }
    let grids = cache.grids();
    assert_eq!(
        grids,
        vec![10, 3],
        "one 10×10 set shared, one 3×3 for double division"
    );

    // Arbitrary and elbow read the same ranking, so they order the pixels alike and share one
    // pair of faithfulness curves, equal to measuring afresh; double division does not.
    let attribution = |method| {
        Attribution::from(&occlusion(&classifier, &view, method, &options).expect("explain"))
    };
    let (arb, elbow, dd) = (
        attribution(Method::Arbitrary { fraction: 0.7 }),
        attribution(Method::Elbow { k: 1.0 }),
        attribution(dd),
    );
    assert_eq!(arb.importance, elbow.importance);
    assert_ne!(arb.kept, elbow.kept, "different cuts of one ranking");
    let o = FaithfulnessOptions::default();
    let mut curves = FaithfulnessCache::default();
    let first = curves
        .measure(&classifier, &view, &arb, &o)
        .expect("measure");
    let shared = curves
        .measure(&classifier, &view, &elbow, &o)
        .expect("reuse");
    assert_eq!(shared, first, "reused, seconds included");
    let fresh = metrics::faithfulness(&classifier, &view, &elbow, &o).expect("fresh");
    assert_eq!(
        (fresh.deletion, fresh.insertion),
        (first.deletion.clone(), first.insertion.clone())
    );
    let other = curves
        .measure(&classifier, &view, &dd, &o)
        .expect("measure");
    assert_ne!(other.deletion, first.deletion);
}

/// The view's prediction is classified once per view: LIME given the base an occlusion rule
/// computed explains exactly as LIME alone.
#[test]
fn lime_reuses_the_base_prediction() {
    let info = ModelInfo::find("planted-centre").expect("fixture");
    let classifier = Classifier::load(info, &Compute::cpu()).expect("load");
    let view = View::new(&dim_window_photo(), info.preprocess());
    let mut cache = ViewCache::default();
    assert!(cache.base().is_none());
    let occlusion = Explainer::Occlusion {
        method: Method::Statistical { k: 1.0 },
        options: OcclusionOptions::default(),
    };
    explain::run(&classifier, &view, &occlusion, &mut cache).expect("occlusion");
    let base = cache.base().expect("base known").to_vec();
    assert_eq!(base.len(), 2);
    let options = LimeOptions {
        samples: 200,
        ..LimeOptions::default()
    };
    let alone = lime(&classifier, &view, &options).expect("alone");
    let given = lime_given(&classifier, &view, &options, Some(&base)).expect("given");
    assert_eq!(alone.kept, given.kept);
    for (a, g) in alone.original.iter().zip(&given.original) {
        assert!((a - g).abs() < 1e-6);
    }
    for (a, g) in alone.models.iter().zip(&given.models) {
        assert_eq!(a.class, g.class);
        for (wa, wg) in a.weights.iter().zip(&g.weights) {
            assert!((wa - wg).abs() < 1e-6, "{wa} vs {wg}");
        }
    }
    assert!(lime_given(&classifier, &view, &options, Some(&[0.5])).is_err());
}
