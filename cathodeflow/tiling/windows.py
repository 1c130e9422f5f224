"""Windows of an image with reflection outside it (DESIGN §5): the reads that the network
stages' tiles make.

A window ``[a, b) × [c, d)`` may reach past the image on any side; the missing pixels are the
image continued by symmetric reflection (numpy's ``'symmetric'`` padding, for any pad width).
A tile reads only the one rectangular slice of the image that holds the pixels its window
needs, so a Dask task touches its own chunks, never the whole image.
"""

from __future__ import annotations

import numpy as np

__all__ = ["reflect_index", "window_plan", "take_window", "read_window", "lazy_window"]


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices ``idx`` (any integers) mapped into ``[0, n)`` by symmetric reflection.

    Equals numpy's ``np.pad(..., mode='symmetric')`` for any pad width: the axis is
    continued as ``… 1 0 | 0 1 … n−1 | n−1 n−2 …`` with period 2n.
    """
    i = np.mod(np.asarray(idx, dtype=np.int64), 2 * n)
    return np.where(i >= n, 2 * n - 1 - i, i)


def window_plan(shape, window: tuple[int, int, int, int]):
    """How to read the window ``[a, b) × [c, d)`` of an image of ``shape``, reflected outside it.

    Returns ``(slices, iy, ix)``: the one rectangular slice of the image that holds every
    pixel the window needs, and the row/column indices into that slice.
    """
    a, b, c, d = window
    H, W = shape[:2]
    ry = reflect_index(np.arange(a, b), H)
    rx = reflect_index(np.arange(c, d), W)
    ylo, xlo = int(ry.min()), int(rx.min())
    sl = (slice(ylo, int(ry.max()) + 1), slice(xlo, int(rx.max()) + 1))
    return sl, ry - ylo, rx - xlo


def take_window(block: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """The window from the slice :func:`window_plan` named (numpy kernel)."""
    return np.asarray(block)[np.ix_(iy, ix)]


def read_window(image, window: tuple[int, int, int, int]) -> np.ndarray:
    """The window ``[a, b) × [c, d)`` of a numpy image, reflected outside it."""
    sl, iy, ix = window_plan(image.shape, window)
    return take_window(image[sl], iy, ix)


def lazy_window(image, window):
    """:func:`read_window` for a Dask array: a delayed window reading only its slice."""
    import dask

    sl, iy, ix = window_plan(image.shape, window)
    return dask.delayed(take_window)(image[sl], iy, ix)
