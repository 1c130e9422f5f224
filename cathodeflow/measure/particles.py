"""Per-particle descriptors on a particle's crop (eq. 20, 21, 34, 35, 37–38).

Each function takes the crop of one particle and returns additive quantities (pixel counts,
perimeter, per-bin counts), so the same kernel serves a whole image, object crops read from
a chunked Dask array, or a distributed cluster: the result does not depend on the crop as
long as the crop holds the whole particle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull

from ..stereology import particle_local_counts_models
from .perimeter import perimeter4


@dataclass
class ParticleMeasure:
    """Additive raw measurements of one particle P (pixel units).

    Attributes
    ----------
    area_px : #P, crack pixels included (eq. 34's #P).
    crack_px : #{x ∈ P : S(x) = 2}.
    solid_px : #{x ∈ P : S(x) = 1}.
    perimeter_px : perim({x ∈ P : S(x) = 1}), scikit-image's ``perimeter`` (4-neighbourhood,
        what ``regionprops`` uses; computed by :func:`.perimeter.perimeter4`, bit-identical),
        in pixel lengths (DESIGN §4.4 item 8).
    touches_border : P has a pixel on the image frame.
    local : per stereology model, (crack counts, solid counts) per d_center bin, the last
        entry being the overflow bin [bins[-1], ∞).
    row_sum, col_sum : Σy, Σx over the pixels of P (y, x = global row, column index).
    box : (row_min, row_max, col_min, col_max), global and inclusive.
    feret_px : Feret diameter of P in px (:func:`feret_diameter_px`).
    """

    area_px: int
    crack_px: int
    solid_px: int
    perimeter_px: float
    touches_border: bool
    local: dict[str, tuple[np.ndarray, np.ndarray]]
    row_sum: int
    col_sum: int
    box: tuple[int, int, int, int]
    feret_px: float

    @property
    def centroid_px(self) -> tuple[float, float]:
        """(row, col) mean of P's pixel indices; the pixel centre of index k lies at k + 0.5
        from the image's top-left corner."""
        return self.row_sum / self.area_px, self.col_sum / self.area_px


def feret_diameter_px(mask: np.ndarray) -> float:
    """Feret (maximum caliper) diameter of a pixel set, in px.

    The largest distance between two corners of its pixels, i.e. the largest width of the
    union of the pixel squares (so an axis-aligned h × w rectangle gives √(h² + w²) and one
    pixel √2). Only the corners of each row's first and last pixel can be hull vertices; the
    maximum is taken over the vertices of their convex hull with exact integer squared
    distances, in coordinates relative to the set's own bounding box (independent of crops).

    Parameters
    ----------
    mask : (h, w) bool ndarray
        The pixel set; 0.0 when empty.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0.0
    sub = mask[rows]
    first = sub.argmax(axis=1)
    last = mask.shape[1] - sub[:, ::-1].argmax(axis=1)  # one past the last pixel
    y = rows - rows[0]
    x0 = int(first.min())
    first, last = first - x0, last - x0
    pts = np.concatenate([np.column_stack([y, first]), np.column_stack([y, last]),
                          np.column_stack([y + 1, first]), np.column_stack([y + 1, last])])
    pts = pts.astype(np.int64)
    hull = pts[ConvexHull(pts.astype(np.float64)).vertices]
    diff = hull[:, None, :] - hull[None, :, :]
    return math.sqrt(int(np.einsum("ijk,ijk->ij", diff, diff).max()))


def measure_particle(
    phase_crop: np.ndarray,
    mask_crop: np.ndarray,
    *,
    origin: tuple[int, int],
    image_shape: tuple[int, int],
    pixel_size_um: float,
    dcenter: dict | None = None,
    bins=None,
) -> ParticleMeasure:
    """Measure one particle from its crop.

    Parameters
    ----------
    phase_crop : (h, w) uint8 array
        S on the crop (0 background, 1 solid, 2 crack).
    mask_crop : (h, w) bool array
        The particle P on the crop (S_p == id).
    origin : (row, col)
        Position of the crop's first pixel in the image (for ``touches_border``).
    image_shape : (H, W)
        Shape of the whole image.
    pixel_size_um : float
        η in µm.
    dcenter : dict of model name -> callable, optional
        d_center lookup tables (``cathodeflow.stereology``); when given, the local counts
        of eq. 37–38 are computed for each model.
    bins : sequence of float
        d_center bin edges (left-closed), with an overflow bin [bins[-1], ∞).
    """
    crack = mask_crop & (phase_crop == 2)
    solid = mask_crop & (phase_crop == 1)
    area = int(np.count_nonzero(mask_crop))
    rows, cols = np.nonzero(mask_crop)
    r0, c0 = (int(v) for v in origin)
    H, W = image_shape
    touches = bool(
        area
        and (
            r0 + rows.min() == 0
            or c0 + cols.min() == 0
            or r0 + rows.max() == H - 1
            or c0 + cols.max() == W - 1
        )
    )
    local = {}
    if dcenter:
        local = particle_local_counts_models(phase_crop, mask_crop, origin, pixel_size_um, dcenter, bins)
    box = (0, -1, 0, -1)
    if area:
        box = (r0 + int(rows.min()), r0 + int(rows.max()), c0 + int(cols.min()), c0 + int(cols.max()))
    return ParticleMeasure(
        area_px=area,
        crack_px=int(np.count_nonzero(crack)),
        solid_px=int(np.count_nonzero(solid)),
        perimeter_px=perimeter4(solid),
        touches_border=touches,
        local=local,
        row_sum=int(rows.sum(dtype=np.int64)) + r0 * area,
        col_sum=int(cols.sum(dtype=np.int64)) + c0 * area,
        box=box,
        feret_px=feret_diameter_px(mask_crop),
    )
