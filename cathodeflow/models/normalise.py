"""Intensity normalisation of network inputs (numpy only; importable without Keras).

The networks see ``(I − lo) / (hi − lo)`` with ``lo, hi`` robust percentiles of the **whole**
image (:func:`intensity_range`, from a strided sample), so every tile of a tiled run is
normalised with the same two numbers and tiled inference equals whole-image inference.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

__all__ = ["intensity_range", "normalise_image", "sample_step"]


def sample_step(shape, max_samples: int) -> int:
    """Stride ``k`` such that ``image[::k, ::k, …]`` has at most about ``max_samples`` values.

    ``k = ceil((N / max_samples) ** (1 / ndim))`` with ``N`` the number of pixels (at least 1).
    """
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    if n <= max_samples or not shape:
        return 1
    return max(1, math.ceil((n / max_samples) ** (1.0 / len(shape))))


def intensity_range(img, *, q=(0.5, 99.5), max_samples: int = 1 << 20) -> tuple[float, float]:
    """Robust intensity range ``(lo, hi)`` of a whole image: two percentiles of a strided sample.

    Parameters
    ----------
    img : array-like, (H, W) or any shape
        A numpy, Dask or Zarr array: only the strided sample ``img[::k, ::k]`` (see
        :func:`sample_step`) is read, so a huge image is never loaded whole.
    q : (float, float)
        Percentiles in [0, 100], ``q[0] < q[1]``. Default (0.5, 99.5).
    max_samples : int
        About how many pixels the sample holds at most. Default 2**20.

    Returns
    -------
    lo, hi : float
        ``np.percentile`` (linear interpolation) of the finite sample values at ``q``.

    Raises
    ------
    InputError
        If ``q`` is not two increasing percentiles, ``img`` is empty or has no finite value.
    """
    try:
        q_lo, q_hi = (float(v) for v in q)
    except (TypeError, ValueError):
        raise InputError(f"q: expected two percentiles (lo, hi), got {q!r}") from None
    if not 0.0 <= q_lo < q_hi <= 100.0:
        raise InputError(f"q: expected 0 <= q[0] < q[1] <= 100, got {q!r}")
    if int(max_samples) < 1:
        raise InputError(f"max_samples must be >= 1, got {max_samples!r}")
    shape = tuple(getattr(img, "shape", np.shape(img)))
    if math.prod(shape) == 0:
        raise InputError(f"img: empty image of shape {shape}")
    k = sample_step(shape, int(max_samples))
    sample = np.asarray(img[(slice(None, None, k),) * len(shape)] if shape else img, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise InputError(f"img: no finite values in the image of shape {shape}")
    lo, hi = np.percentile(sample, [q_lo, q_hi])
    return float(lo), float(hi)


def normalise_image(img, *, lo: float, hi: float) -> np.ndarray:
    """``(img − lo) / (hi − lo)`` as float32, not clipped.

    Parameters
    ----------
    img : array-like, any shape
    lo, hi : float
        The range mapped to [0, 1], usually :func:`intensity_range` of the whole image.
        Values outside it map outside [0, 1] (no clipping, so no information is lost).

    Returns
    -------
    out : float32 array, same shape as ``img``

    Raises
    ------
    InputError
        If ``lo`` or ``hi`` is not finite or ``hi <= lo`` (e.g. a constant image).
    """
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise InputError(
            f"intensity range: expected finite lo < hi, got lo={lo}, hi={hi} (is the image constant?)"
        )
    out = (np.asarray(img, dtype=np.float64) - lo) / (hi - lo)
    return out.astype(np.float32)
