#!/usr/bin/env python3
"""RISE's masks as the paper's reference code draws them (Petsiuk, Das, Saenko 2018; the
authors' `generate_masks`), for tests/it/rise.rs.

For a seed, numpy's legacy RandomState draws all N·s² uniforms for the binary grids first
(kept where u < p1), then for each mask the row shift and the column shift (randint(0, cell)).
Each grid is resized with scikit-image (bilinear, mode 'reflect', no anti-aliasing) to
(s + 1)·cell and cropped at the shift to the input size.

Usage:  python3 tests/data/make_rise_fixture.py > tests/data/rise_fixture.json
Needs numpy and scikit-image (fixture made with numpy 2.4.6, scikit-image 0.26.0).
"""

import json

import numpy as np
from skimage.transform import resize


def masks(seed, n, s, p1, size):
    np.random.seed(seed)
    cell = np.ceil(np.array(size) / s)
    up = (s + 1) * cell
    grid = (np.random.rand(n, s, s) < p1).astype("float32")
    out, shifts = [], []
    for i in range(n):
        dy = np.random.randint(0, cell[0])
        dx = np.random.randint(0, cell[1])
        big = resize(grid[i], up, order=1, mode="reflect", anti_aliasing=False)
        out.append(big[dy:dy + size[0], dx:dx + size[1]])
        shifts.append([int(dy), int(dx)])
    return grid, shifts, np.array(out)


def case(seed, n, s, p1, size, stride):
    grid, shifts, m = masks(seed, n, s, p1, size)
    rows = sorted(set(range(0, size[0], stride)) | {size[0] - 1})
    cols = sorted(set(range(0, size[1], stride)) | {size[1] - 1})
    return {
        "seed": seed, "masks": n, "cells": s, "keep_prob": p1,
        "height": size[0], "width": size[1],
        "grids": grid.astype(int).reshape(n, -1).tolist(),
        "shifts": shifts,
        "rows": rows, "cols": cols,
        "values": [[float(v) for v in mask[np.ix_(rows, cols)].ravel()] for mask in m],
    }


if __name__ == "__main__":
    cases = [
        case(7, 3, 4, 0.5, (20, 30), 1),      # every pixel of a small non-square view
        case(0, 2, 7, 0.5, (224, 224), 5),    # the defaults' geometry, sampled
        case(3, 2, 1, 0.5, (9, 9), 1),        # one cell: a constant mask
        case(5, 2, 6, 0.5, (6, 6), 1),        # one pixel per cell: randint(0, 1) draws nothing
        case(11, 2, 5, 0.3, (17, 23), 1),     # another probability, cells not dividing the view
    ]
    print(json.dumps({"cases": cases}))
