"""Shapes drawn by hand for ground-truth tests (truth known by construction)."""

import numpy as np


def disc(shape, cy, cx, r):
    """Boolean mask of the pixels whose centres lie within ``r`` px of (cy, cx)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def disc_grid(seed: int, *, n: int = 10, spacing: int = 90, radius: int = 40) -> np.ndarray:
    """A phase map: an n × n grid of discs of S = 1 (radius − 0…7 px), each with one
    horizontal crack (S = 2) of 10–39 px."""
    rng = np.random.default_rng(seed)
    ph = np.zeros((n * spacing, n * spacing), np.uint8)
    yy, xx = np.mgrid[:spacing, :spacing]
    c = spacing // 2
    for i in range(n):
        for j in range(n):
            r = radius - int(rng.integers(0, 8))
            cell = ph[i * spacing : (i + 1) * spacing, j * spacing : (j + 1) * spacing]
            cell[(yy - c) ** 2 + (xx - c) ** 2 <= r * r] = 1
            y, x0 = c + int(rng.integers(-15, 15)), c - int(rng.integers(5, 25))
            cell[y, x0 : x0 + int(rng.integers(10, 40))] = 2
    return ph
