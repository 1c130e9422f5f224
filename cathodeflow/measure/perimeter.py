"""Perimeter of a binary region, identical to ``skimage.measure.perimeter(image, 4)``.

Eq. 21 uses scikit-image's ``regionprops`` perimeter (4-neighbourhood; Benkrid & Crookes'
weights: 1 for straight border runs, √2 for diagonal ones, (1 + √2)/2 at corners). This is
the same computation in one compiled pass without temporaries: the border pixels (pixels of
the region with a 4-neighbour outside it, the image frame counting as outside), the code
Σ w·border over the 3×3 neighbourhood with weights [[10, 2, 10], [2, 1, 2], [10, 2, 10]],
its histogram, and the histogram times scikit-image's weight table — the same floating-point
sum in the same order, so the value is bit-identical (tested).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_WEIGHTS = np.zeros(50, dtype=np.float64)
_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_WEIGHTS[[21, 33]] = math.sqrt(2)
_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2


@numba.njit(cache=True, nogil=True)
def _perimeter_histogram(img):  # pragma: no cover - compiled
    h, w = img.shape
    # border pixels (region pixels with a 4-neighbour outside; the frame is outside),
    # in an array with a one-pixel frame of zeros so the second pass needs no bounds checks
    b = np.zeros((h + 2, w + 2), np.uint8)
    for r in range(h):
        for c in range(w):
            if img[r, c]:
                if (r == 0 or c == 0 or r == h - 1 or c == w - 1
                        or not (img[r - 1, c] and img[r + 1, c] and img[r, c - 1] and img[r, c + 1])):
                    b[r + 1, c + 1] = 1
    hist = np.zeros(50, np.int64)
    for r in range(1, h + 1):
        for c in range(1, w + 1):
            code = (b[r, c]
                    + 2 * (b[r - 1, c] + b[r + 1, c] + b[r, c - 1] + b[r, c + 1])
                    + 10 * (b[r - 1, c - 1] + b[r - 1, c + 1] + b[r + 1, c - 1] + b[r + 1, c + 1]))
            hist[code] += 1
    return hist


def perimeter4(image: np.ndarray) -> float:
    """``skimage.measure.perimeter(image, neighborhood=4)`` of a 2D boolean array."""
    img = np.ascontiguousarray(image, dtype=bool)
    if img.ndim != 2:
        raise ValueError(f"perimeter4 needs a 2D array, got shape {img.shape}")
    return float(_perimeter_histogram(img) @ _WEIGHTS)
