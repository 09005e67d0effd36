//! The report's selection rules over occlusion scores, as pure functions.
//!
//! Each cell `i` was occluded once; `p[i]` is the probability of the explained class `c*` for
//! that variant and `argmax[i]` the variant's own top class.

/// The shared ranking: cells whose occluded variant still predicts `c*`, by `p` descending, then
/// the others by `p` descending; ties by cell index. The first cells are the least important.
pub fn rank(p: &[f32], argmax: &[usize], class: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| {
        let (ka, kb) = (argmax[a] != class, argmax[b] != class);
        ka.cmp(&kb).then(p[b].total_cmp(&p[a])).then(a.cmp(&b))
    });
    order
}

/// **arbitrary**: the first `round(fraction · K)` cells of the ranking are blacked out.
pub fn arbitrary(ranking: &[usize], fraction: f64) -> Vec<usize> {
    let n = ((fraction.clamp(0.0, 1.0) * ranking.len() as f64).round() as usize).min(ranking.len());
    ranking[..n].to_vec()
}

/// Mean and population standard deviation.
pub fn mean_std(p: &[f32]) -> (f64, f64) {
    let n = p.len().max(1) as f64;
    let mean = p.iter().map(|v| *v as f64).sum::<f64>() / n;
    let var = p.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// **statistical**: cells with `p > μ − k·σ` are blacked out (in ranking order). Returns them and
/// the threshold.
pub fn statistical(p: &[f32], ranking: &[usize], k: f64) -> (Vec<usize>, f64) {
    let (mean, std) = mean_std(p);
    let threshold = mean - k * std;
    (
        ranking
            .iter()
            .copied()
            .filter(|&i| p[i] as f64 > threshold)
            .collect(),
        threshold,
    )
}

/// The knee of a curve by Kneedle (Satopää, Albrecht, Irwin, Raghavan 2011,
/// "Finding a 'Kneedle' in a Haystack"), for a decreasing curve bending down (a plateau, then a
/// drop): both axes normalised to `[0, 1]`, the difference curve `D = y + x − 1` is how far
/// the curve lies above its chord; its maximum is the knee candidate, accepted only if `D`
/// then falls by more than the sensitivity threshold `S · mean(Δx)` (Kneedle's test), which a
/// curve without a bend (straight, or dropping fastest at the start) never does.
/// Returns the knee's index, the last point of the plateau.
pub fn kneedle(y: &[f32], sensitivity: f64) -> Option<usize> {
    let n = y.len();
    if n < 3 {
        return None;
    }
    let (lo, hi) = y
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v as f64), hi.max(*v as f64))
        });
    // A flat (or non-finite) curve has no knee.
    if (hi - lo).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let x = |i: usize| i as f64 / (n - 1) as f64;
    let d: Vec<f64> = (0..n)
        .map(|i| (y[i] as f64 - lo) / (hi - lo) + x(i) - 1.0)
        .collect();
    // The first global maximum of the difference curve.
    let knee = (0..n).fold(0, |best, i| if d[i] > d[best] { i } else { best });
    if d[knee] <= 0.0 {
        return None;
    }
    let threshold = d[knee] - sensitivity / (n - 1) as f64;
    d[knee + 1..].iter().any(|v| *v < threshold).then_some(knee)
}

/// **elbow**: the cells up to and including the knee of the ranking's `p` curve are blacked out.
/// `None` when the curve has no knee (the caller falls back to the statistical rule).
pub fn elbow(p: &[f32], ranking: &[usize]) -> Option<(Vec<usize>, usize)> {
    let curve: Vec<f32> = ranking.iter().map(|&i| p[i]).collect();
    kneedle(&curve, 1.0).map(|knee| (ranking[..=knee].to_vec(), knee))
}
