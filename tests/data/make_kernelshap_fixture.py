#!/usr/bin/env python3
"""Writes kernelshap_fixture.json: the coalitions (mask matrix) and kernel weights Python shap's
KernelExplainer draws for a few (segments, nsamples, seed), so that tests/it/kernelshap.rs can
check that glassbox draws the same ones for the same seed.

    pip install shap
    python3 tests/data/make_kernelshap_fixture.py
"""
import json
import os

import numpy as np
import shap

CASES = [(12, 60, 4), (9, 100, 0), (40, 300, 7), (25, 600, 1)]


def main():
    out = []
    for segments, nsamples, seed in CASES:
        explainer = shap.KernelExplainer(lambda z: z.sum(axis=1), np.zeros((1, segments)))
        np.random.seed(seed)
        explainer.shap_values(np.ones((1, segments)), nsamples=nsamples, l1_reg=False, silent=True)
        n = explainer.nsamplesAdded
        out.append({
            "segments": segments, "nsamples": nsamples, "seed": seed,
            "rows": explainer.maskMatrix[:n].astype(int).tolist(),
            "weights": explainer.kernelWeights[:n].tolist(),
        })
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernelshap_fixture.json")
    with open(path, "w") as f:
        json.dump({"shap": shap.__version__, "cases": out}, f, separators=(",", ":"))
    print(f"wrote {path} (shap {shap.__version__})")


if __name__ == "__main__":
    main()
