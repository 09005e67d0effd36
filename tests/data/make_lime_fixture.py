#!/usr/bin/env python3
"""LIME regression-parity fixture, exported from Python lime 0.2.0.1 (marcotcr/lime).

Runs `lime_image.LimeImageExplainer(random_state=7).explain_instance(...)` on
tests/data/coffee_224.png (written by make_quickshift_fixture.py) with lime's defaults
(quickshift kernel_size=4, max_dist=200, ratio=0.2; kernel_width=0.25, cosine distance,
feature_selection='auto', num_features=100000 -> 'highest_weights', Ridge(alpha=1)) and
num_samples=300, top_labels=5, hide_color=0, batch_size=10.

The classifier is deterministic pure numpy (`classifier_fn` below, its constants are stored in
the fixture too): 6-class softmax of a fixed linear function of the mean R, G, B (scaled to
0..1) of five fixed windows, so hiding segments moves the probabilities a lot.

Captured from inside lime (wrappers around LimeImageExplainer.data_labels and
LimeBase.explain_instance_with_data): the segments, the sample matrix `data` (0/1), the
classifier outputs `labels`, the cosine `distances` and kernel `weights`, and per top label the
feature-selection order, intercept, local_exp (as lime orders it), score, local_pred, and the
masks of `get_image_and_mask(label, positive_only=True|False, hide_rest=True, num_features=5,
min_weight=0.0)`. All arrays are flat and row-major; floats are written with full precision.

It also checks (and records under "rng") how lime's sample matrix comes out of
numpy.random.RandomState(7) (MT19937, init_genrand seeding):
  * explain_instance first draws random_seed = randint(0, 1000): one 32-bit output per try,
    value = out & 1023, rejected while > 999 (then a new output);
  * data = randint(0, 2, num_samples * n_features): one 32-bit output per element, bit = out & 1,
    row-major (num_samples x n_features), then row 0 is set to all ones;
  * nothing else in explain_instance draws from that RandomState (Ridge's default cholesky
    solver ignores random_state).
A pure-Python MT19937 (mt19937_outputs) reproduces the stream, so the Rust side can copy it.

NB with scikit-image >= 0.21 quickshift has no `random_seed` parameter (it is `rng` now), so
lime's SegmentationAlgorithm silently drops the random_seed it drew: segmentation runs with
scikit-image's default rng=42, whatever lime's random_state.

    pip install lime==0.2.0.1 scikit-learn
    python3 tests/data/make_lime_fixture.py

Writes tests/data/lime_fixture.json. Measurement only, never at run time.
"""
import argparse
import json
import os

import numpy as np
import lime
import scipy
import skimage
import sklearn
from lime import lime_base, lime_image
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE = "coffee_224.png"
SEED = 7
NUM_SAMPLES = 300
TOP_LABELS = 5
HIDE_COLOR = 0
BATCH = 10

# Classifier: windows (y0, y1, x0, x1) over the 224x224 view; features = mean R, G, B / 255 of
# each window (window-major, then channel); logits = W @ features + B; probabilities = softmax.
WINDOWS = [(0, 224, 0, 224), (56, 168, 56, 168), (0, 112, 0, 112), (0, 112, 112, 224), (112, 224, 0, 224)]
CLASSES = 6
W = [[((k * 7 + j * 3) % 11 - 5) * 0.8 for j in range(3 * len(WINDOWS))] for k in range(CLASSES)]
B = [0.5 * k - 1.0 for k in range(CLASSES)]


def classifier_fn(images):
    """images [N, 224, 224, 3] uint8 -> probabilities [N, CLASSES] float64."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    feats = np.concatenate([x[:, y0:y1, x0:x1, :].mean(axis=(1, 2)) for (y0, y1, x0, x1) in WINDOWS], axis=1)
    logits = feats @ np.asarray(W).T + np.asarray(B)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def mt19937_outputs(seed, n):
    """Pure-Python MT19937 (init_genrand seeding, as RandomState(seed)): first n 32-bit outputs."""
    mt = [0] * 624
    mt[0] = seed & 0xFFFFFFFF
    for i in range(1, 624):
        mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
    out, idx = [], 624
    while len(out) < n:
        if idx >= 624:
            for i in range(624):
                y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7FFFFFFF)
                mt[i] = mt[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            idx = 0
        y = mt[idx]
        idx += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        out.append(y)
    return out


def randint1000_from_raw(raw):
    """lime's randint(0, 1000) from 32-bit outputs: masked rejection. Returns (value, used)."""
    used = 0
    while True:
        v = raw[used] & 1023
        used += 1
        if v <= 999:
            return v, used


class LoggingRandomState(np.random.RandomState):
    """RandomState that records which methods lime calls on it."""

    def __init__(self, seed):
        super().__init__(seed)
        self.calls = []

    def randint(self, *args, **kwargs):
        self.calls.append(["randint", [repr(a) for a in args], {k: repr(v) for k, v in kwargs.items()}])
        return super().randint(*args, **kwargs)

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if callable(attr) and not name.startswith("_") and name not in ("randint", "calls"):
            super().__getattribute__("calls").append([name])
        return attr


def check_rng(num_samples, n_features, data, drawn_seed, calls):
    raw = [int(v) for v in np.random.RandomState(SEED)._bit_generator.random_raw(4 + num_samples * n_features)]
    assert raw[:64] == mt19937_outputs(SEED, 64), "pure-Python MT19937 disagrees with numpy"
    value, used = randint1000_from_raw(raw)
    assert value == drawn_seed, (value, drawn_seed)
    bits = np.array([r & 1 for r in raw[used:used + num_samples * n_features]]).reshape(num_samples, n_features)
    bits[0, :] = 1
    assert np.array_equal(bits, data), "sample matrix is not (raw & 1) after the randint(0, 1000) draw"
    # the rejection branch: find a seed whose first output & 1023 > 999 and check it is redrawn
    rejected = None
    for s in range(1000):
        r = [int(v) for v in np.random.RandomState(s)._bit_generator.random_raw(8)]
        if r[0] & 1023 > 999:
            v, u = randint1000_from_raw(r)
            assert np.random.RandomState(s).randint(0, high=1000) == v
            rs = np.random.RandomState(s)
            rs.randint(0, high=1000)
            assert int(rs._bit_generator.random_raw()) == r[u], "draw count after rejection"
            rejected = {"seed": s, "raw": r[:u + 1], "value": v, "outputs_used": u}
            break
    return {
        "generator": "numpy.random.RandomState(7): MT19937, init_genrand(7) seeding",
        "first_outputs": raw[:16],
        "randint_0_1000": {"value": drawn_seed, "outputs_used": used, "rule": "v = out & 1023, redraw while v > 999"},
        "data_rule": "data[i][j] = out[used + i * n_features + j] & 1, then data[0][:] = 1",
        "rejection_example": rejected,
        "calls_on_random_state": calls,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "lime_fixture.json"))
    args = ap.parse_args()
    image = np.asarray(Image.open(os.path.join(HERE, IMAGE)).convert("RGB"))

    captured = {"per_label": {}}
    orig_data_labels = lime_image.LimeImageExplainer.data_labels
    orig_explain = lime_base.LimeBase.explain_instance_with_data
    orig_select = lime_base.LimeBase.feature_selection

    def data_labels(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size=10):
        data, labels = orig_data_labels(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size)
        captured.update(segments=segments.copy(), fudged=fudged_image.copy(), data=data.copy(), labels=labels.copy())
        return data, labels

    def feature_selection(self, data, labels, weights, num_features, method):
        used = orig_select(self, data, labels, weights, num_features, method)
        captured.setdefault("selections", []).append((method, [int(f) for f in used]))
        return used

    def explain_instance_with_data(self, data, labels, distances, label, num_features, feature_selection="auto",
                                   model_regressor=None):
        captured["selections"] = []
        out = orig_explain(self, data, labels, distances, label, num_features, feature_selection, model_regressor)
        captured["distances"] = np.asarray(distances).copy()
        captured["weights"] = np.asarray(self.kernel_fn(distances)).copy()
        captured["per_label"][int(label)] = (out, list(captured["selections"]))
        return out

    lime_image.LimeImageExplainer.data_labels = data_labels
    lime_base.LimeBase.explain_instance_with_data = explain_instance_with_data
    lime_base.LimeBase.feature_selection = feature_selection

    rs = LoggingRandomState(SEED)
    explainer = lime_image.LimeImageExplainer(random_state=rs)
    explanation = explainer.explain_instance(image, classifier_fn, top_labels=TOP_LABELS, hide_color=HIDE_COLOR,
                                             num_samples=NUM_SAMPLES, batch_size=BATCH)
    # the value lime drew: replay the first randint(0, 1000) on a fresh RandomState(7)
    drawn_seed = int(np.random.RandomState(SEED).randint(0, high=1000))

    segments, data, labels = captured["segments"], captured["data"], captured["labels"]
    n_features = int(np.unique(segments).shape[0])
    assert sorted(np.unique(segments)) == list(range(n_features))
    from skimage.segmentation import quickshift
    assert np.array_equal(segments, quickshift(image, kernel_size=4, max_dist=200, ratio=0.2)), "segments != rng=42"
    assert (captured["fudged"] == HIDE_COLOR).all()
    rng_info = check_rng(NUM_SAMPLES, n_features, data, drawn_seed, rs.calls)

    per_label = []
    for label in explanation.top_labels:
        label = int(label)
        (intercept, local_exp, score, local_pred), selections = captured["per_label"][label]
        masks = {}
        for positive_only in (True, False):
            _, mask = explanation.get_image_and_mask(label, positive_only=positive_only, negative_only=False,
                                                     hide_rest=True, num_features=5, min_weight=0.0)
            masks["positive_only" if positive_only else "signed"] = mask.ravel().astype(int).tolist()
        per_label.append({
            "label": label,
            "selection": [{"method": m, "features": f} for m, f in selections],
            "intercept": float(intercept),
            "local_exp": [[int(f), float(w)] for f, w in local_exp],
            "score": float(score),
            "local_pred": float(np.ravel(local_pred)[0]),
            "masks": masks,
        })

    fixture = {
        "versions": {"lime": "0.2.0.1", "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                     "scikit-image": skimage.__version__, "scipy": scipy.__version__},
        "image": IMAGE, "width": image.shape[1], "height": image.shape[0],
        "explainer": {"random_state": SEED, "kernel_width": 0.25, "kernel": "sqrt(exp(-d^2 / kernel_width^2))",
                      "distance_metric": "cosine", "feature_selection": "auto", "num_features": 100000,
                      "model_regressor": "Ridge(alpha=1, fit_intercept=True)"},
        "explain": {"num_samples": NUM_SAMPLES, "top_labels": TOP_LABELS, "hide_color": HIDE_COLOR,
                    "batch_size": BATCH, "segmentation": "quickshift(kernel_size=4, max_dist=200, ratio=0.2), rng=42"},
        "classifier": {"windows_y0_y1_x0_x1": WINDOWS, "W": W, "B": B,
                       "rule": "f = mean(pixels/255) per window and channel (window-major, then R,G,B); "
                               "p = softmax(W f + B)"},
        "rng": rng_info,
        "n_features": n_features,
        "segments": segments.ravel().astype(int).tolist(),
        "data": data.ravel().astype(int).tolist(),
        "labels": labels.ravel().tolist(),
        "num_classes": int(labels.shape[1]),
        "distances": captured["distances"].tolist(),
        "weights": captured["weights"].tolist(),
        "top_labels": [int(t) for t in explanation.top_labels],
        "per_label": per_label,
    }
    with open(args.out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")

    print(f"segments: {n_features}; lime drew random_seed {drawn_seed} (ignored by quickshift); "
          f"calls on RandomState: {rs.calls}")
    print(f"labels[0] = {np.round(labels[0], 4).tolist()}; top labels {fixture['top_labels']}")
    print(f"per-class prob range over samples: min {np.round(labels.min(0), 3).tolist()} max {np.round(labels.max(0), 3).tolist()}")
    for pl in per_label:
        print(f"label {pl['label']}: intercept {pl['intercept']:.5f} score {pl['score']:.4f} local_pred {pl['local_pred']:.5f} "
              f"top {[(f, round(w, 4)) for f, w in pl['local_exp'][:3]]}")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
