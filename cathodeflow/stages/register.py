"""Registering a high-resolution SEM image inside its low-resolution counterpart (SRGAN data).

The SRGAN of the sr stage (paper §2.3.1) learns the map from low-resolution (LR, 38.5 nm)
to high-resolution (HR, 14.3 nm) images of the same region, by the factor
``SR_NUM/SR_DEN = 35/13``. A real pair is two acquisitions: a wide LR field and a smaller
HR field somewhere inside it. :func:`register_pair` finds where (numpy/scipy/skimage, whole
images in memory, no Dask):

1. **Downsample** the HR image to the LR grid: a Gaussian anti-aliasing filter of
   σ = (s − 1)/2 HR px (skimage's rule for a reduction by s), combined with a denoising
   Gaussian of ``smooth_lr_px`` LR px applied to both images, then cubic-spline samples at
   the LR pixel centres. Coordinates: an HR-field point at HR pixel coordinate ``u`` (corner
   convention, pixel ``i`` covers [i, i+1)) lies at LR coordinate ``o + u/s``, with ``o`` the
   **offset** (LR px, (y, x)) of the HR field's top-left corner and ``s`` the **scale**
   (HR px per LR px = pixel size LR / pixel size HR). LR pixel ``k``'s centre therefore
   samples the HR image at pixel-index coordinate ``(k + 0.5 − o)·s − 0.5``.
2. **Search**: the normalised cross-correlation (NCC, :func:`skimage.feature.match_template`,
   FFT) of the downsampled HR against the LR image at every integer offset, for each scale
   of a small grid around the nominal one (±``scale_search``, steps of
   :data:`SCALE_STEP`); the best peak, refined to sub-pixel by a parabola through it and
   its neighbours.
3. **Refine**: maximise the NCC ρ(o_y, o_x, s) over the LR pixels inside the HR field by
   Nelder–Mead, continuous in the offset and (when ``scale_search > 0``) in the scale.
4. **Check**: ρ below ``min_correlation`` (default :data:`MIN_CORRELATION`) means the two
   images do not show the same region (or the pixel sizes are wrong): refused with an
   :class:`~cathodeflow.errors.InputError` naming both images and ρ.
5. **Crop** onto the generator's grid: the largest block of whole LR pixels inside the HR
   field whose edges are multiples of 26 (:data:`LR_MULTIPLE`, centred), and the HR image
   resampled (cubic spline) onto that block's exact 35/13 grid, (70·k, 70·m) px. The fitted
   scale is used for the resampling, so the HR crop is exactly 35/13 times the LR crop even
   when the microscope's true ratio differs slightly.

Residual: ``nrmse = sqrt(1 − ρ²)``, the RMS of the LR pixels minus their least-squares
linear fit ``a·D + b`` from the downsampled HR ``D``, in units of the LR pixels' standard
deviation (0 = identical up to brightness and contrast, 1 = no relation).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..config import SR_DEN, SR_NUM
from ..errors import InputError

__all__ = ["Registration", "register_pair", "MIN_CORRELATION", "LR_MULTIPLE"]

#: Default least NCC ρ of a registration. Measured on synthetic pairs
#: (:func:`cathodeflow.synth.training.make_training_pair`, 156 × 182 LR px, HR fields of
#: 85 × 97 LR px, two seeds of every style family, ``smooth_lr_px = 1``): matching pairs gave
#: ρ ≥ 0.81 (the noisy ``lowcontrast`` family; ≥ 0.97 for the others), unrelated images
#: ρ ≤ 0.59 (smaller fields in larger images let chance matches score higher).
MIN_CORRELATION = 0.7
#: Default relative half-width of the scale search around the nominal scale (±2 %).
SCALE_SEARCH = 0.02
#: Step of the scale grid of the integer search (relative).
SCALE_STEP = 0.005
#: Default σ (LR px) of a Gaussian applied to both images before matching (noise).
SMOOTH_LR_PX = 1.0
#: LR crop edges are multiples of this (the generator maps 26·k LR px to 70·k HR px).
LR_MULTIPLE = 2 * SR_DEN


@dataclass(frozen=True)
class Registration:
    """Where an HR image lies in its LR counterpart, and the aligned crops.

    Attributes
    ----------
    offset : (float, float)
        (y, x) of the HR field's top-left corner in LR pixels (corner convention: LR pixel
        ``k`` covers [k, k+1)); sub-pixel.
    scale : float
        Fitted HR pixels per LR pixel (pixel size LR / pixel size HR).
    scale_nominal : float
        The scale the search started from (the files' pixel sizes, or 35/13).
    correlation : float
        Normalised cross-correlation ρ of the LR pixels and the downsampled HR image at
        ``offset`` and ``scale``, in [−1, 1].
    nrmse : float
        ``sqrt(1 − ρ²)``: RMS of LR minus its best linear fit from the downsampled HR, in
        units of the LR standard deviation.
    lr_origin : (int, int)
        (y, x) of ``lr_crop``'s top-left pixel in the LR image.
    lr_crop : ndarray, shape (26·k, 26·m), the LR image's dtype
        The LR pixels of the aligned block (a copy).
    hr_crop : ndarray, shape (70·k, 70·m), float32
        The HR image resampled onto ``lr_crop``'s 35/13 grid, in the HR image's intensities.
    """

    offset: tuple[float, float]
    scale: float
    scale_nominal: float
    correlation: float
    nrmse: float
    lr_origin: tuple[int, int]
    lr_crop: np.ndarray
    hr_crop: np.ndarray

    def summary(self) -> dict:
        """The numbers of the registration (JSON-serialisable; no pixels)."""
        return {
            "offset_lr_px": [float(v) for v in self.offset],
            "scale": float(self.scale),
            "scale_nominal": float(self.scale_nominal),
            "correlation": float(self.correlation),
            "nrmse": float(self.nrmse),
            "lr_origin": [int(v) for v in self.lr_origin],
            "lr_shape": [int(v) for v in self.lr_crop.shape],
            "hr_shape": [int(v) for v in self.hr_crop.shape],
        }


def _image(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise InputError(f"{name}: expected a 2-D grayscale image (H, W), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{name}: expected real pixel values, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise InputError(f"{name}: holds non-finite pixel values")
    return out


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays (0 when either is constant)."""
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b) / den) if den > 0 else 0.0


def _centre_coords(start: float, n: int, offset: float, scale: float) -> np.ndarray:
    """HR pixel-index coordinates sampled by LR pixel centres ``start + k + 0.5``, k < n."""
    return (start + np.arange(n) + 0.5 - offset) * scale - 0.5


def _sample(coeffs: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Cubic-spline values of the prefiltered ``coeffs`` on the grid ``ys × xs``."""
    from scipy.ndimage import map_coordinates

    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return map_coordinates(coeffs, [yy, xx], order=3, mode="nearest", prefilter=False)


def _parabolic(c_m: float, c_0: float, c_p: float) -> float:
    """Vertex of the parabola through (−1, c_m), (0, c_0), (1, c_p), in [−0.5, 0.5]."""
    den = c_m - 2.0 * c_0 + c_p
    return 0.0 if den >= 0 else float(np.clip(0.5 * (c_m - c_p) / den, -0.5, 0.5))


def register_pair(
    low,
    high,
    *,
    scale: float | None = None,
    scale_search: float = SCALE_SEARCH,
    min_correlation: float = MIN_CORRELATION,
    smooth_lr_px: float = SMOOTH_LR_PX,
    names: tuple[str, str] = ("low", "high"),
) -> Registration:
    """Find the HR image ``high`` inside the LR image ``low`` and cut the aligned pair.

    Parameters
    ----------
    low : array-like, shape (h, w)
        Low-resolution image (e.g. 38.5 nm pixels), real values.
    high : array-like, shape (H, W)
        High-resolution image of a sub-region of ``low``'s field; its field
        (H/scale, W/scale) LR px must fit inside (h, w).
    scale : float, optional
        Nominal HR pixels per LR pixel, pixel size LR / pixel size HR, > 1. Default
        ``SR_NUM/SR_DEN`` = 35/13.
    scale_search : float
        Relative half-width of the scale search and refinement around ``scale`` (default
        0.02 = ±2 %); 0 keeps ``scale`` fixed.
    min_correlation : float
        Least NCC ρ accepted (default :data:`MIN_CORRELATION`).
    smooth_lr_px : float
        σ in LR px of a Gaussian applied to ``low`` and (as σ·scale, on top of the
        anti-aliasing filter) to ``high`` before matching, against noise (default 1; 0 =
        none). The crops are cut from the unsmoothed images.
    names : (str, str)
        How errors name the two images (e.g. their file paths).

    Returns
    -------
    Registration

    Raises
    ------
    InputError
        Not 2-D images; scale not > 1; HR field not inside the LR field or too small for one
        26-px LR block; ρ < ``min_correlation`` (the message names both images and ρ).
    """
    from scipy.ndimage import gaussian_filter, spline_filter
    from scipy.optimize import minimize
    from skimage.feature import match_template

    name_lo, name_hi = (str(n) for n in names)
    lo = _image(low, name_lo)
    hi = _image(high, name_hi)
    s0 = SR_NUM / SR_DEN if scale is None else scale
    if isinstance(s0, bool) or not isinstance(s0, numbers.Real) or not math.isfinite(s0) or s0 <= 1:
        raise InputError(f"scale: expected HR px per LR px > 1 (pixel size {name_lo} / pixel size "
                         f"{name_hi}), got {scale!r}")
    s0 = float(s0)
    for arr, name in ((lo, name_lo), (hi, name_hi)):
        if np.ptp(arr) == 0:
            raise InputError(f"{name}: the image is constant ({arr.flat[0]:g}); nothing to register")
    if isinstance(scale_search, bool) or not 0 <= scale_search < 0.5:
        raise InputError(f"scale_search: expected a relative half-width in [0, 0.5), got {scale_search!r}")
    if isinstance(smooth_lr_px, bool) or not 0 <= smooth_lr_px <= 10:
        raise InputError(f"smooth_lr_px: expected a Gaussian σ in LR px in [0, 10], got {smooth_lr_px!r}")
    if isinstance(min_correlation, bool) or not -1 <= min_correlation <= 1:
        raise InputError(f"min_correlation: expected a value in [-1, 1], got {min_correlation!r}")
    field = (hi.shape[0] / s0, hi.shape[1] / s0)
    if min(field) < LR_MULTIPLE + 1:
        raise InputError(f"{name_hi}: its field is {field[0]:.1f} × {field[1]:.1f} LR px at scale {s0:.4g}; "
                         f"expected at least {LR_MULTIPLE + 1} × {LR_MULTIPLE + 1} (one block of the "
                         "generator's grid)")
    s_lo, s_hi = s0 * (1 - scale_search), s0 * (1 + scale_search)
    if int(hi.shape[0] // s0) > lo.shape[0] or int(hi.shape[1] // s0) > lo.shape[1]:
        raise InputError(f"{name_hi}: its field ({field[0]:.1f} × {field[1]:.1f} LR px at scale {s0:.4g}) is not "
                         f"inside the field of {name_lo} ({lo.shape[0]} × {lo.shape[1]} px); expected a "
                         "high-resolution image of a sub-region of the low-resolution one")

    sigma_hr = math.hypot(max(0.0, (s0 - 1.0) / 2.0), smooth_lr_px * s0)
    coeffs = spline_filter(gaussian_filter(hi, sigma=sigma_hr, mode="nearest"), order=3)
    lo = gaussian_filter(lo, sigma=smooth_lr_px, mode="nearest") if smooth_lr_px > 0 else lo

    # 2. integer search over a scale grid
    n_steps = int(round(scale_search / SCALE_STEP))
    best = None
    for s in s0 * (1 + SCALE_STEP * np.arange(-n_steps, n_steps + 1)):
        th, tw = int(hi.shape[0] // s), int(hi.shape[1] // s)
        if th > lo.shape[0] or tw > lo.shape[1]:  # a smaller scale than the field allows
            continue
        tmpl = _sample(coeffs, _centre_coords(0, th, 0.0, s), _centre_coords(0, tw, 0.0, s))
        ncc = match_template(lo, tmpl)
        iy, ix = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        if best is None or ncc[iy, ix] > best[0]:
            best = (float(ncc[iy, ix]), float(s), int(iy), int(ix), ncc)
    _, s_init, iy, ix, ncc = best
    dy = _parabolic(ncc[iy - 1, ix], ncc[iy, ix], ncc[iy + 1, ix]) if 0 < iy < ncc.shape[0] - 1 else 0.0
    dx = _parabolic(ncc[iy, ix - 1], ncc[iy, ix], ncc[iy, ix + 1]) if 0 < ix < ncc.shape[1] - 1 else 0.0
    oy, ox = iy + dy, ix + dx

    # 3. continuous refinement over the LR pixels inside the field (1 px margin)
    y_a, x_a = max(0, math.ceil(oy) + 1), max(0, math.ceil(ox) + 1)
    y_b = min(lo.shape[0], math.floor(oy + hi.shape[0] / s_init) - 1)
    x_b = min(lo.shape[1], math.floor(ox + hi.shape[1] / s_init) - 1)
    target = lo[y_a:y_b, x_a:x_b]

    def rho(p) -> float:
        s = p[2] if len(p) > 2 else s_init
        d = _sample(coeffs, _centre_coords(y_a, y_b - y_a, p[0], s), _centre_coords(x_a, x_b - x_a, p[1], s))
        return _ncc(target, d)

    x0 = [oy, ox] + ([s_init] if scale_search > 0 else [])
    simplex = np.array([x0] * (len(x0) + 1), dtype=np.float64)
    for k, step in enumerate([0.5, 0.5, 0.004 * s_init][: len(x0)]):
        simplex[k + 1, k] += step
    res = minimize(lambda p: -rho(p), x0, method="Nelder-Mead",
                   options={"initial_simplex": simplex, "xatol": 1e-3, "fatol": 1e-7, "maxiter": 400})
    p = res.x if -res.fun >= rho(x0) else np.asarray(x0)
    oy, ox = float(p[0]), float(p[1])
    s_fit = float(np.clip(p[2], s_lo, s_hi)) if len(p) > 2 else s_init
    r = rho([oy, ox, s_fit])

    # 4. refuse a poor match
    if not r >= min_correlation:
        raise InputError(f"{name_hi} and {name_lo}: no match; best normalised cross-correlation "
                         f"{r:.3f} < min_correlation {min_correlation:g} (at offset ({oy:.1f}, {ox:.1f}) "
                         f"LR px, scale {s_fit:.4f}); expected a high-resolution image of a region of "
                         "the low-resolution one, with correct pixel sizes")

    # 5. aligned crops on the generator's grid
    lr_crop, hr_crop, origin = _aligned_crops(np.asarray(low), hi, (oy, ox), s_fit, name_hi)
    return Registration(offset=(oy, ox), scale=s_fit, scale_nominal=s0, correlation=r,
                        nrmse=math.sqrt(max(0.0, 1.0 - r * r)), lr_origin=origin,
                        lr_crop=lr_crop, hr_crop=hr_crop)


def _aligned_crops(low, hi, offset, scale, name_hi):
    """(LR block of 26·k × 26·m whole pixels inside the HR field, the HR image resampled on
    its 35/13 grid, the block's origin)."""
    from scipy.ndimage import spline_filter

    starts, sizes = [], []
    for axis in (0, 1):
        o = offset[axis]
        first = max(0, math.ceil(o - 1e-6))
        end = min(low.shape[axis], math.floor(o + hi.shape[axis] / scale + 1e-6))
        n_whole = end - first
        n = n_whole // LR_MULTIPLE * LR_MULTIPLE
        if n <= 0:
            raise InputError(f"{name_hi}: its field covers {max(n_whole, 0)} whole LR px along "
                             f"{'yx'[axis]}; expected at least {LR_MULTIPLE} (the generator's grid)")
        starts.append(first + (n_whole - n) // 2)
        sizes.append(n)
    (y0, x0), (h, w) = starts, sizes
    step = SR_DEN / SR_NUM  # LR px per HR-crop px
    n_hr = (h * SR_NUM // SR_DEN, w * SR_NUM // SR_DEN)
    ys = (y0 + (np.arange(n_hr[0]) + 0.5) * step - offset[0]) * scale - 0.5
    xs = (x0 + (np.arange(n_hr[1]) + 0.5) * step - offset[1]) * scale - 0.5
    hr_crop = _sample(spline_filter(hi, order=3), ys, xs).astype(np.float32)
    lr_crop = np.array(low[y0:y0 + h, x0:x0 + w])
    return lr_crop, hr_crop, (int(y0), int(x0))
