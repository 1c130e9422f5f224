"""An image resampled onto another pixel size, tile by tile (the phase stage's grid).

Both phase segmentations are made for one pixel size: a U-net for the one it was trained
for, the classical baseline for η = 14.3 nm, where its options in pixels (smoothing, the
dark-line test's segments, the smallest objects kept) were chosen. An image whose pixel size
differs from it by more than :data:`RESAMPLE_TOLERANCE` (relative) is resampled onto that
grid first, keeping the field of view, and its phase map is returned there.

Output pixel j has its centre at input coordinate ``(j + 0.5)·s − 0.5`` with
``s = n_in / n_out``. When shrinking (s > 1) the input is first smoothed by a Gaussian of
σ = 0.5·s px against aliasing; then linear interpolation. Each output tile reads the input
window it needs plus the Gaussian's reach and the interpolation's neighbour, reflected
outside the image, so a tiled result equals the whole-image one.
"""

from __future__ import annotations

import math

import numpy as np

from ..tiling.windows import lazy_window

__all__ = ["RESAMPLE_TOLERANCE", "needs_resampling", "resampled_shape", "resample_dask"]

#: Relative pixel-size difference below which an image is used as it is.
RESAMPLE_TOLERANCE = 0.02
#: Output tile edge (px) of :func:`resample_dask` unless told.
DEFAULT_TILE_PX = 1024


def needs_resampling(pixel_size_um: float, target_pixel_um: float) -> bool:
    """Whether ``pixel_size_um`` is more than :data:`RESAMPLE_TOLERANCE` (relative) away from
    ``target_pixel_um``."""
    return abs(float(pixel_size_um) / float(target_pixel_um) - 1.0) > RESAMPLE_TOLERANCE


def resampled_shape(shape, pixel_size_um: float, target_pixel_um: float) -> tuple[int, int]:
    """Shape of the same field of view on the target grid (rounded to whole pixels)."""
    r = float(pixel_size_um) / float(target_pixel_um)
    return tuple(max(1, int(round(n * r))) for n in shape[:2])


def _resample_kernel(window: np.ndarray, ys: np.ndarray, xs: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage as ndi

    w = window.astype(np.float32)
    if sigma > 0:
        w = ndi.gaussian_filter(w, sigma, mode="nearest", truncate=3.0)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return ndi.map_coordinates(w, [yy, xx], order=1, mode="nearest").astype(np.float32)


def resample_dask(image, pixel_size_um: float, target_pixel_um: float, *, tile_px: int = DEFAULT_TILE_PX):
    """The (H, W) Dask array ``image`` of pixel size ``pixel_size_um`` on the grid of
    ``target_pixel_um`` (µm both): lazy, float32, chunks of ``tile_px``, equal to the
    whole-image result (see the module docstring)."""
    import dask
    import dask.array as da

    H, W = image.shape
    Ho, Wo = resampled_shape((H, W), pixel_size_um, target_pixel_um)
    sy, sx = H / Ho, W / Wo
    sigma = 0.5 * max(sy, sx) if max(sy, sx) > 1 else 0.0
    margin = int(math.ceil(3.0 * sigma)) + 2
    rows = []
    for y0 in range(0, Ho, tile_px):
        y1 = min(Ho, y0 + tile_px)
        cy = (np.arange(y0, y1) + 0.5) * sy - 0.5
        a, b = int(math.floor(cy.min())) - margin, int(math.ceil(cy.max())) + margin + 1
        row = []
        for x0 in range(0, Wo, tile_px):
            x1 = min(Wo, x0 + tile_px)
            cx = (np.arange(x0, x1) + 0.5) * sx - 0.5
            c, d = int(math.floor(cx.min())) - margin, int(math.ceil(cx.max())) + margin + 1
            win = lazy_window(image, (a, b, c, d))
            t = dask.delayed(_resample_kernel)(win, cy - a, cx - c, sigma)
            row.append(da.from_delayed(t, shape=(y1 - y0, x1 - x0), dtype=np.float32))
        rows.append(row)
    return da.block(rows)
