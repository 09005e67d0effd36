//! How many samples LIME needs and how stable its answer is: `--samples auto` (rounds until a
//! bootstrap agrees on the top segments) and `--stability R` (the spread over seeds).

use std::time::Instant;

use nalgebra::{DMatrix, DVector};
use serde_json::{Value, json};

use super::{LimeExplanation, LimeOptions, LocalModel, kernel_weights, lime_given, ridge};
use crate::model::Classifier;
use crate::view::View;
use crate::{Error, Result};

/// LIME with the sample count chosen for the user: sample in rounds, refit after each, and stop
/// once the explained class's top-`features` set is the same as after the round before and a
/// bootstrap over the samples drawn so far selects that same set with probability at least
/// `target`, or at `max_samples`. The sample is lime's own for the seed, drawn `max_samples`
/// rows long; stopping after `n` rows gives exactly lime's explanation with `n` samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    /// Samples per round (250).
    pub round: usize,
    /// Never more samples than this (10000).
    pub max_samples: usize,
    /// The selection probability to reach (0.95).
    pub target: f64,
    /// Bootstrap resamples per round (100).
    pub bootstraps: usize,
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            round: 250,
            max_samples: 10_000,
            target: 0.95,
            bootstraps: 100,
        }
    }
}

/// Where an adaptive run stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adapted {
    /// Samples used, the original included.
    pub samples: usize,
    /// Rounds run.
    pub rounds: usize,
    /// The bootstrap's probability of selecting the final top-`features` set.
    pub probability: f64,
    /// Whether it stopped at `max_samples` without reaching the target.
    pub capped: bool,
}

impl Adapted {
    /// The document form.
    pub fn to_json(&self) -> Value {
        json!({ "samples": self.samples, "rounds": self.rounds, "selection_probability": self.probability, "capped": self.capped })
    }
}

/// How much LIME's explanation of one class moves from one seed to the next: the complaint
/// raised most often on lime's tracker (marcotcr/lime #67, #119, #231, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Stability {
    /// The seeds run: `seed..seed + runs`.
    pub seeds: Vec<u32>,
    /// Per segment, the mean of the explained class's weight over the runs.
    pub mean: Vec<f64>,
    /// Per segment, the standard deviation of that weight (n − 1 in the denominator).
    pub std: Vec<f64>,
    /// The Jaccard index of the runs' masks, averaged over every pair of runs.
    pub mean_jaccard: f64,
    /// Seconds the runs after the first took.
    pub seconds: f64,
}

impl Stability {
    /// The document form.
    pub fn to_json(&self) -> Value {
        json!({
            "seeds": self.seeds, "mean_jaccard": self.mean_jaccard,
            "weight_mean": self.mean, "weight_std": self.std, "seconds": self.seconds,
        })
    }
}

/// Runs LIME again with the seeds after the first run's, for the first run's class, and
/// measures how the explained class's weights and mask move.
pub(super) fn stability(
    classifier: &Classifier,
    view: &View,
    first: &LimeExplanation,
) -> Result<Stability> {
    let t = Instant::now();
    let o = first.options;
    let seeds: Vec<u32> = (0..o.runs as u32).map(|i| o.seed.wrapping_add(i)).collect();
    let weights = |e: &LimeExplanation| {
        e.models
            .iter()
            .find(|m| m.class == e.class)
            .map(|m| m.weights.clone())
            .ok_or_else(|| Error::InvalidArgument("no local model".into()))
    };
    let mut runs = vec![(weights(first)?, first.kept.clone())];
    for &seed in &seeds[1..] {
        let options = LimeOptions {
            seed,
            class: Some(first.class),
            runs: 1,
            ..o
        };
        let e = lime_given(classifier, view, &options, Some(&first.original))?;
        runs.push((weights(&e)?, e.kept));
    }
    let n = runs.len() as f64;
    let segments = runs[0].0.len();
    let mean: Vec<f64> = (0..segments)
        .map(|s| runs.iter().map(|(w, _)| w[s]).sum::<f64>() / n)
        .collect();
    let std: Vec<f64> = (0..segments)
        .map(|s| {
            let var = runs
                .iter()
                .map(|(w, _)| (w[s] - mean[s]).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            var.sqrt()
        })
        .collect();
    let mut jaccards = Vec::new();
    for i in 0..runs.len() {
        for j in i + 1..runs.len() {
            jaccards.push(runs[i].1.jaccard(&runs[j].1)?);
        }
    }
    Ok(Stability {
        seeds,
        mean,
        std,
        mean_jaccard: jaccards.iter().sum::<f64>() / jaccards.len() as f64,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// The explained class's top-`features` positive segments fitted on the `n` samples of `data`
/// (row-major, `s` per row) with targets `y`, and the probability that a bootstrap over those
/// samples selects the same set (`a.bootstraps` resamples with replacement, seeded by the seed
/// and the round, so the same run stops at the same place).
pub(super) fn selection(
    data: &[u8],
    s: usize,
    y: &[f64],
    options: &LimeOptions,
    a: Adaptive,
    round: usize,
) -> Result<(Vec<usize>, f64)> {
    let n = y.len();
    let fit = |rows: &[usize]| -> Result<Vec<usize>> {
        let picked: Vec<u8> = rows
            .iter()
            .flat_map(|&i| data[i * s..(i + 1) * s].iter().copied())
            .collect();
        let kernel = kernel_weights(&picked, s, options.kernel_width);
        let x = DMatrix::from_fn(rows.len(), s, |i, j| picked[i * s + j] as f64);
        let y = DVector::from_fn(rows.len(), |i, _| y[rows[i]]);
        let (intercept, weights, score, local_prediction) = ridge(&x, &y, &kernel, options.alpha)?;
        let mut chosen = LocalModel {
            class: 0,
            intercept,
            weights,
            score,
            local_prediction,
        }
        .positive(options.features);
        chosen.sort_unstable();
        Ok(chosen)
    };
    let all: Vec<usize> = (0..n).collect();
    let chosen = fit(&all)?;
    let mut rng = crate::rng::SplitMix64(crate::rng::splitmix64(
        u64::from(options.seed) << 32 | round as u64,
    ));
    let mut same = 0;
    for _ in 0..a.bootstraps {
        // Row 0, the original, stays in every resample: lime's kernel measures distances to it.
        let rows: Vec<usize> = std::iter::once(0)
            .chain((1..n).map(|_| (rng.next_u64() % n as u64) as usize))
            .collect();
        // A resample whose weights all vanish has no fit: it does not select the set.
        if fit(&rows).is_ok_and(|c| c == chosen) {
            same += 1;
        }
    }
    Ok((chosen, same as f64 / a.bootstraps.max(1) as f64))
}
