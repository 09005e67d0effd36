"""glassbox's Python API against its command line, on the committed photos.

Needs the `glassbox` module (built from python/ by .ci/run, or `pip install ./python`) and the
command line at target/release/glassbox (`cargo build --release`).
"""
import json
import os
import subprocess
import tempfile

import numpy as np
import pytest

import glassbox

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "target", "release", "glassbox")
PHOTOS = [os.path.join(ROOT, "tests", "data", name) for name in ("chelsea.png", "coffee.png")]


@pytest.fixture(scope="module")
def classifier():
    return glassbox.Classifier(device="cpu")


def cli_document(photo, method, *flags):
    """The command line's JSON document for `photo` explained by `method`."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [CLI, "explain", "--device", "cpu", "--method", method, "--steps", "0", "--out", out, *flags, photo],
            check=True,
            capture_output=True,
        )
        stem = os.path.splitext(os.path.basename(photo))[0]
        with open(os.path.join(out, f"{stem}.efficientnet-lite0.{method}.json")) as f:
            return json.load(f)


def runs(mask):
    """Run lengths over the row-major mask, starting with blacked-out, as the JSON's."""
    flat = mask.ravel()
    out, current, count = [], False, 0
    for kept in flat:
        if kept == current:
            count += 1
        else:
            out.append(count)
            current, count = kept, 1
    out.append(count)
    return out


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("method", ["arbitrary", "elbow", "double-division", "sliding"])
def test_masks_and_probabilities_equal_the_command_lines(classifier, photo, method):
    e = classifier.explain(photo, method=method, steps=0)
    doc = cli_document(photo, method)
    assert e.class_index == doc["class"]["index"]
    assert e.label == doc["class"]["label"]
    assert e.probability == pytest.approx(doc["class"]["probability"], abs=0)
    assert runs(e.mask) == doc["mask"]["runs"]
    assert json.loads(e.to_json())["mask"]["runs"] == doc["mask"]["runs"]
    if method in ("arbitrary", "elbow"):
        assert e.ranking == doc["phases"][0]["ranking"]


def test_lime_with_a_seed_equals_the_command_lines(classifier):
    photo = PHOTOS[1]
    e = classifier.explain(photo, method="lime", samples=120, seed=7, steps=0)
    doc = cli_document(photo, "lime", "--samples", "120", "--seed", "7")
    mine = json.loads(e.to_json())
    # The same sample, segmentation and fits: every class's weights and kept segments.
    assert mine["models"] == doc["models"]
    assert mine["segmentation"] == doc["segmentation"]
    assert e.mask.mean() == pytest.approx(doc["kept_fraction"], abs=0)
    assert e.class_index == doc["class"]["index"]


def test_arrays_in_arrays_out(classifier):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(180, 240, 3), dtype=np.uint8)
    top = classifier.classify([image, PHOTOS[0]], top=3)
    assert len(top) == 2 and all(len(t) == 3 for t in top)
    assert top[1][0][1] == "Egyptian cat"
    e = classifier.explain(image, method="arbitrary", grid=5, steps=4)
    assert e.mask.dtype == np.bool_ and e.mask.shape == (224, 224)
    assert e.heatmap.dtype == np.float32 and e.heatmap.shape == (224, 224)
    assert e.photo_mask.shape == (180, 240)
    assert set(e.faithfulness) >= {"deletion", "insertion", "deletion_auc", "insertion_auc"}
    assert "perturb_classify" in e.timings
    a = classifier.explain(PHOTOS[0], method="elbow", steps=0)
    b = classifier.explain(PHOTOS[0], method="arbitrary", steps=0)
    jaccard, overlay = glassbox.compare(a, b)
    assert 0.0 <= jaccard <= 1.0 and overlay.shape == (300, 451, 3) and overlay.dtype == np.uint8
    with tempfile.TemporaryDirectory() as out:
        files = b.save(out)
        assert any(f.endswith(".arbitrary.json") for f in files)
        assert any(f.endswith(".masked.png") for f in files)


def test_bad_input_raises_and_never_crashes(classifier):
    with pytest.raises(FileNotFoundError):
        classifier.explain(os.path.join(ROOT, "no-such-photo.png"))
    with pytest.raises(ValueError):
        classifier.explain(PHOTOS[0], method="no-such-method")
    with pytest.raises(ValueError):
        classifier.explain(PHOTOS[0], method="sliding", window=0)
    with pytest.raises(ValueError):
        classifier.explain(PHOTOS[0], grid=0)
    with pytest.raises(ValueError):
        classifier.explain(PHOTOS[0], no_such_option=1)
    with pytest.raises(ValueError):
        classifier.explain(np.zeros((10, 10, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        glassbox.Classifier(model="no-such-model")
    with pytest.raises(ValueError):
        glassbox.Classifier(device="tpu")
    with pytest.raises(ValueError):
        classifier.explain(os.path.join(ROOT, "README.md"))
    assert {m["id"] for m in glassbox.models()} >= {"efficientnet-lite0", "googlenet-tv"}
