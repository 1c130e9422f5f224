"""Shapes drawn by hand for ground-truth tests (truth known by construction)."""

import numpy as np


def disc(shape, cy, cx, r):
    """Boolean mask of the pixels whose centres lie within ``r`` px of (cy, cx)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
