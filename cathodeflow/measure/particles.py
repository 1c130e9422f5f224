"""Per-particle descriptors on a particle's crop (eq. 20, 21, 34, 35, 37–38).

Each function takes the crop of one particle and returns additive quantities (pixel counts,
perimeter, per-bin counts), so the same kernel serves a whole image, object crops read from
a chunked Dask array, or a distributed cluster: the result does not depend on the crop as
long as the crop holds the whole particle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    """

    area_px: int
    crack_px: int
    solid_px: int
    perimeter_px: float
    touches_border: bool
    local: dict[str, tuple[np.ndarray, np.ndarray]]


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
    r0, c0 = origin
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
    return ParticleMeasure(
        area_px=area,
        crack_px=int(np.count_nonzero(crack)),
        solid_px=int(np.count_nonzero(solid)),
        perimeter_px=perimeter4(solid),
        touches_border=touches,
        local=local,
    )
