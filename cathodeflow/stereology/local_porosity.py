"""Local particle porosity as a function of the relative distance to the centre (eq. 34–40).

For each particle section P: r̃ = η √(#P / π) (eq. 34), d_b(x) = η ‖x − x̄_P‖ with x̄_P the
barycentre of all pixels of P, cracks included (eq. 35), d_center(x) from a
:class:`~cathodeflow.stereology.dcenter.DCenterTable` (eq. 36), then crack (S = 2) and solid
(S = 1) pixels are counted per bin of d_center (eq. 37–38). Counts are additive over pixels,
particles, chunks and images, so a condition's table is the sum of its images' counts
converted to µm² (DESIGN §4.4 item 10); the porosity of a bin is crack / (crack + solid)
(eq. 40).

Bins are left-closed [a, b) (the paper writes [a, b]; closed bins would count a pixel on an
edge twice). Given edges ``bins`` (k + 1 increasing values ≥ 0) the counts have k + 1 entries:
the k bins [bins[i], bins[i+1]) and an overflow bin [bins[-1], ∞) (d_center > 1 happens when
d_b > r̃ or near the rim of non-circular sections). Pixels with d_center < bins[0] are not
counted (none with the default bins, which start at 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numba
import numpy as np
import pandas as pd

from ..errors import InputError
from ..io.tables import SCHEMAS, conform

__all__ = [
    "validate_bins",
    "local_porosity_counts",
    "particle_local_counts",
    "particle_local_counts_models",
    "local_porosity_table",
    "local_porosity_images_table",
]

#: Phase codes of the phase-wise segmentation S (eq. 7).
SOLID, CRACK = 1, 2


def validate_bins(bins) -> np.ndarray:
    """Bin edges as a float64 array; InputError unless ≥ 2 increasing, finite, ≥ 0 values."""
    b = np.asarray(bins, dtype=float).ravel()
    if b.size < 2 or not np.all(np.isfinite(b)) or b[0] < 0 or np.any(np.diff(b) <= 0):
        raise InputError(
            f"bins must be at least 2 increasing, finite edges >= 0, got {b.tolist()}"
        )
    return b


def local_porosity_counts(d_center_values, is_crack, bins):
    """Crack and solid pixel counts per bin of d_center (eq. 37–38 without the η² factor).

    Parameters
    ----------
    d_center_values : array_like of float, shape (n,) or any shape
        Relative distances d_center of particle pixels (dimensionless, ≥ 0).
    is_crack : array_like of bool, same shape
        True for crack pixels (S = 2), False for solid pixels (S = 1).
    bins : sequence of float, shape (k + 1,)
        Increasing edges; bins are [bins[i], bins[i+1]) plus the overflow [bins[-1], ∞).

    Returns
    -------
    crack_counts, solid_counts : ndarray of int64, shape (k + 1,)
        Entry i < k counts pixels with bins[i] ≤ d < bins[i+1]; entry k counts d ≥ bins[-1].
    """
    b = validate_bins(bins)
    d = np.asarray(d_center_values, dtype=float).ravel()
    c = np.asarray(is_crack).ravel()
    if d.shape != c.shape:
        raise InputError(
            f"d_center_values and is_crack must have the same number of elements, got "
            f"{np.shape(d_center_values)} and {np.shape(is_crack)}"
        )
    if d.size and np.isnan(d).any():
        raise InputError("d_center_values contains NaN")
    k = b.size  # k-1 regular bins + 1 overflow
    idx = np.searchsorted(b, d, side="right") - 1  # -1: below bins[0]; k-1: overflow
    keep = idx >= 0
    if not keep.all():
        idx, c = idx[keep], c[keep]
    c = c.astype(bool, copy=False)
    crack = np.bincount(idx[c], minlength=k).astype(np.int64)
    solid = np.bincount(idx[~c], minlength=k).astype(np.int64)
    return crack, solid


def particle_local_counts(
    phase_crop,
    particle_mask_crop,
    origin_rc,
    pixel_size_um: float,
    table,
    bins,
    *,
    area_px: int | None = None,
    centroid_rc=None,
):
    """Crack and solid counts per d_center bin for one particle section (eq. 34–38).

    Parameters
    ----------
    phase_crop : ndarray of int, shape (h, w)
        Phase-wise segmentation S on the crop: 0 pore, 1 solid, 2 crack.
    particle_mask_crop : ndarray of bool, shape (h, w)
        The particle's pixels P within the crop.
    origin_rc : (int, int)
        Image coordinates (row, col) of the crop's pixel [0, 0].
    pixel_size_um : float
        Pixel size η, µm.
    table : callable ``table(r_tilde_um, d_b_um) -> ndarray``
        Usually a :class:`~cathodeflow.stereology.dcenter.DCenterTable`.
    bins : sequence of float, shape (k + 1,)
        Bin edges of d_center (see :func:`local_porosity_counts`).
    area_px : int, optional
        #P of the whole particle when the crop holds only part of it (tiled processing);
        default: the pixels of the mask.
    centroid_rc : (float, float), optional
        Barycentre of the whole particle in image coordinates (row, col), pixels; default:
        the mean of the mask's pixel coordinates. Give both ``area_px`` and ``centroid_rc``
        (from additive partial sums) to make per-chunk counts add up to the whole-particle
        counts exactly.

    Returns
    -------
    crack_counts, solid_counts : ndarray of int64, shape (k + 1,)
        Counts of crack (S = 2) and solid (S = 1) pixels of P in the crop; pixels of P with
        S = 0 (if any) count in #P and the barycentre but in no bin.
    """
    b = validate_bins(bins)
    phase = np.asarray(phase_crop)
    mask = np.asarray(particle_mask_crop, dtype=bool)
    if phase.ndim != 2 or phase.shape != mask.shape:
        raise InputError(
            f"phase_crop and particle_mask_crop must be 2-D of the same shape, got "
            f"{phase.shape} and {mask.shape}"
        )
    eta = float(pixel_size_um)
    if not (math.isfinite(eta) and eta > 0):
        raise InputError(f"pixel_size_um must be > 0, got {pixel_size_um}")
    o_r, o_c = (float(v) for v in origin_rc)
    rr, cc = np.nonzero(mask)
    zeros = np.zeros(b.size, dtype=np.int64)
    if rr.size == 0:
        return zeros, zeros.copy()
    n = rr.size if area_px is None else int(area_px)
    if n < rr.size:
        raise InputError(f"area_px={area_px} is smaller than the {rr.size} mask pixels")
    if centroid_rc is None:
        if area_px is not None and n != rr.size:
            raise InputError("centroid_rc is required when area_px differs from the mask's size")
        c_r, c_c = rr.mean() + o_r, cc.mean() + o_c
    else:
        c_r, c_c = (float(v) for v in centroid_rc)
    s = phase[rr, cc]
    sel = (s == SOLID) | (s == CRACK)
    if not sel.all():
        rr, cc, s = rr[sel], cc[sel], s[sel]
    r_tilde_um = eta * math.sqrt(n / math.pi)  # eq. 34
    d_b_um = eta * np.hypot(rr + (o_r - c_r), cc + (o_c - c_c))  # eq. 35
    d = table(r_tilde_um, d_b_um)  # eq. 36
    return local_porosity_counts(d, s == CRACK, b)


def local_porosity_table(
    counts: Mapping, bins, *, pixel_size_um: float | None = None, condition: str | None = None,
    image_id: str | None = None,
) -> pd.DataFrame:
    """The ``local_porosity`` table (DESIGN §4.2) from pooled counts (eq. 37–40).

    Parameters
    ----------
    counts : mapping ``method -> (crack, solid)``
        Per model ("paper", "wicksell"), crack and solid amounts per bin, each of shape
        (k + 1,) as returned by :func:`local_porosity_counts` (last entry: overflow bin).
        Pixel counts when ``pixel_size_um`` is given, else areas in µm² (already converted
        per image, which is how images of different pixel sizes are pooled).
    bins : sequence of float, shape (k + 1,)
        The bin edges the counts were made with.
    pixel_size_um : float, optional
        η, to convert pixel counts to µm² (A = η² · count, eq. 37–38).
    condition : str, optional
        Adds the ``condition`` column and returns the contract's column order and dtypes.
    image_id : str, optional
        With ``condition``: counts of one image; adds the ``image_id`` column and returns
        the ``local_porosity_images`` table's columns and dtypes.

    Returns
    -------
    DataFrame
        One row per method and bin (k + 1 rows per method; the overflow row has
        bin_hi = inf): method, bin_lo, bin_hi, crack_um2, solid_um2, porosity (eq. 40).
        ``porosity`` is NaN exactly where the bin is empty (crack_um2 + solid_um2 == 0);
        the caller decides how to show such bins. With ``condition``, the ``condition``
        column comes first.
    """
    b = validate_bins(bins)
    if image_id is not None and condition is None:
        raise InputError("image_id needs condition: a per-image row carries both")
    cols = [c for c in SCHEMAS["local_porosity"] if c != "condition"]
    df = pd.DataFrame(_table_columns(counts, b, _area_scale(pixel_size_um)), columns=cols)
    if condition is not None:
        df.insert(0, "condition", condition)
        if image_id is not None:
            df.insert(0, "image_id", image_id)
            return conform(df, "local_porosity_images")
        return conform(df, "local_porosity")
    schema = SCHEMAS["local_porosity"]
    return df[cols].astype({c: schema[c] for c in cols}).reset_index(drop=True)


def local_porosity_images_table(images, bins) -> pd.DataFrame:
    """The ``local_porosity_images`` table of many images in one pass: the rows of
    :func:`local_porosity_table` ``(counts, bins, pixel_size_um=η, condition=c,
    image_id=i)`` for each ``(i, c, η, counts)`` of ``images``, one image after another
    (built as columns, not as one table per image: a campaign has thousands of images)."""
    b = validate_bins(bins)
    parts: list[dict] = []
    for image_id, condition, pixel_size_um, counts in images:
        cols = _table_columns(counts, b, _area_scale(pixel_size_um))
        n = cols["bin_lo"].size
        parts.append({"image_id": np.full(n, image_id, dtype=object),
                      "condition": np.full(n, condition, dtype=object), **cols})
    if not parts:
        return conform(pd.DataFrame(), "local_porosity_images")
    return conform(pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in parts[0]}),
                   "local_porosity_images")


def _area_scale(pixel_size_um) -> float:
    """η² (µm² per pixel, eq. 37–38), or 1 for counts already in µm² (``None``)."""
    if pixel_size_um is None:
        return 1.0
    if not (math.isfinite(float(pixel_size_um)) and pixel_size_um > 0):
        raise InputError(f"pixel_size_um must be > 0, got {pixel_size_um}")
    return float(pixel_size_um) ** 2


def _table_columns(counts: Mapping, b: np.ndarray, scale: float) -> dict[str, np.ndarray]:
    """The columns of :func:`local_porosity_table` (without condition and image id) for
    validated bin edges ``b``: per method its k + 1 bins, amounts × ``scale``, and the
    porosity of eq. 40 (NaN in empty bins)."""
    k = b.size
    lo = b
    hi = np.append(b[1:], np.inf)
    methods, cracks, solids = [], [], []
    for method, pair in counts.items():
        try:
            crack, solid = pair
        except (TypeError, ValueError):
            raise InputError(
                f"counts[{method!r}] must be a pair (crack, solid), got {type(pair).__name__}"
            ) from None
        crack = np.asarray(crack, dtype=float).ravel() * scale
        solid = np.asarray(solid, dtype=float).ravel() * scale
        if crack.shape != (k,) or solid.shape != (k,):
            raise InputError(
                f"counts[{method!r}] must hold two arrays of {k} entries (len(bins) incl. the "
                f"overflow bin), got {crack.shape} and {solid.shape}"
            )
        methods.append(method)
        cracks.append(crack)
        solids.append(solid)
    m = len(methods)
    crack = np.concatenate(cracks) if m else np.zeros(0)
    solid = np.concatenate(solids) if m else np.zeros(0)
    total = crack + solid
    with np.errstate(invalid="ignore", divide="ignore"):
        por = np.where(total > 0, crack / np.where(total > 0, total, 1.0), np.nan)
    return {"method": np.repeat(np.array(methods, dtype=object), k), "bin_lo": np.tile(lo, m),
            "bin_hi": np.tile(hi, m), "crack_um2": crack, "solid_um2": solid, "porosity": por}


# --------------------------------------------------------------------------------------
# Fused kernel: all models of one particle in one pass over its crop
# --------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _moments_kernel(mask):  # pragma: no cover - compiled
    n = 0
    sr = 0
    sc = 0
    for r in range(mask.shape[0]):
        for c in range(mask.shape[1]):
            if mask[r, c]:
                n += 1
                sr += r
                sc += c
    return n, sr, sc


@numba.njit(cache=True, nogil=True)
def _binned_kernel(phase, mask, dr0, dc0, eta, rt, rows, q0, sqrt_q0, inv_dxi, q_max, bins,
                   counts, far_d, far_crack):  # pragma: no cover - compiled
    n_models = rows.shape[0]
    n_row = rows.shape[1]
    k = bins.shape[0]
    n_far = 0
    for r in range(mask.shape[0]):
        for c in range(mask.shape[1]):
            if not mask[r, c]:
                continue
            s = phase[r, c]
            if s != 1 and s != 2:
                continue
            crack = 1 if s == 2 else 0
            d = eta * math.hypot(r + dr0, c + dc0)  # eq. 35
            q = d / rt
            if q > q_max:
                far_d[n_far] = d
                far_crack[n_far] = crack
                n_far += 1
                continue
            t = (math.sqrt(q + q0) - sqrt_q0) * inv_dxi
            i = int(t)
            if i > n_row - 2:
                i = n_row - 2
            t -= i
            for m in range(n_models):
                lo = rows[m, i]
                v = lo + t * (rows[m, i + 1] - lo)  # eq. 36 from the table
                j = -1
                while j + 1 < k and bins[j + 1] <= v:
                    j += 1
                if j >= 0:
                    counts[m, crack, j] += 1
    return n_far


def particle_local_counts_models(phase_crop, particle_mask_crop, origin_rc, pixel_size_um: float,
                                 tables: Mapping, bins) -> dict:
    """:func:`particle_local_counts` for several d_center tables at once (one pass).

    Same definitions and results as calling :func:`particle_local_counts` once per table
    (tested); r̃, the barycentre and d_b are computed once, and the table lookup and the
    binning run in one compiled loop without temporaries. Returns
    ``{model: (crack_counts, solid_counts)}`` in the order of ``tables``.
    """
    b = validate_bins(bins)
    names = list(tables)
    k = b.size
    empty = {m: (np.zeros(k, np.int64), np.zeros(k, np.int64)) for m in names}
    phase = np.ascontiguousarray(phase_crop)
    mask = np.ascontiguousarray(particle_mask_crop, dtype=bool)
    if phase.shape != mask.shape or phase.ndim != 2:
        raise InputError(
            f"phase_crop and particle_mask_crop must be 2-D of the same shape, got "
            f"{phase.shape} and {mask.shape}"
        )
    n, sr, sc = _moments_kernel(mask)
    if n == 0 or not names:
        return empty
    eta = float(pixel_size_um)
    o_r, o_c = (float(v) for v in origin_rc)
    c_r, c_c = sr / n + o_r, sc / n + o_c  # barycentre (exact integer sums)
    rt = eta * math.sqrt(n / math.pi)  # eq. 34
    grids = {(t._xi.sqrt_q0, t._xi.dxi, t.q_max, t.q_grid.size) for t in tables.values()}
    if len(grids) != 1:  # tables on different q grids: one pass per table
        return {m: particle_local_counts(phase, mask, origin_rc, eta, t, b) for m, t in tables.items()}
    ((sqrt_q0, dxi, q_max, _),) = grids
    rows = np.stack([np.asarray(tables[m].row(rt), dtype=np.float64) for m in names])
    counts = np.zeros((len(names), 2, k), np.int64)
    far_d = np.empty(n, np.float64)
    far_crack = np.empty(n, np.uint8)
    n_far = _binned_kernel(phase, mask, o_r - c_r, o_c - c_c, eta, rt, rows, sqrt_q0**2, sqrt_q0,
                           1.0 / dxi, float(q_max), b, counts, far_d, far_crack)
    out = {}
    for m_i, m in enumerate(names):
        crack, solid = counts[m_i, 1].copy(), counts[m_i, 0].copy()
        if n_far:
            fc, fs = local_porosity_counts(tables[m].direct(rt, far_d[:n_far]), far_crack[:n_far] == 1, b)
            crack += fc
            solid += fs
        out[m] = (crack, solid)
    return out
