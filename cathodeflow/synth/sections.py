"""Rasterise the planar section of the packing: particle labels and 3D relative distance.

Pixel (i, j) of a grid with pixel size η (µm) has its centre at ((j + ½)η, (i + ½)η) µm; in
pixel units the centre of a disc at (x_um, y_um) is (x_um/η − ½, y_um/η − ½).

Near-spherical outlines: the section of sphere i is the star-shaped set
{d_b ≤ R_i(θ)} with R_i(θ) = r̃_i·(1 + Σ_k a_ik cos(kθ + φ_ik)) + ε_i(θ): a mild smooth shape
perturbation (k = 2..6, a ∝ amplitude/k) plus a small roughness ε (a periodic Gaussian
process along the outline, correlation length about one grain: the primary particles that
bulge out of the surface). r̃_i = sqrt(r_i² − h_i²) is the section radius of the sphere.

Overlapping sections: a pixel inside several outlines belongs to the sphere of smallest
power d_b² − R_i(θ)² (for discs, d_b² − r̃_i² = ‖x − C_i‖² − r_i²: the power (Laguerre) diagram
of the spheres, whose walls are the radical planes through the circles in which the spheres
intersect).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Angular samples of an outline table.
N_ANGLES = 2048


def outline_tables(
    rng: np.random.Generator,
    s_px: np.ndarray,
    *,
    amplitude: float,
    roughness_px: float,
    corr_px: float,
    kmax: int = 6,
) -> np.ndarray:
    """Outline radius R_i(θ) in pixels at θ = 2π·m/N_ANGLES − π. Shape (n, N_ANGLES), float32.

    Parameters
    ----------
    s_px : (n,) section radii r̃_i, px.
    amplitude : relative amplitude of the smooth shape modes (0 = circles).
    roughness_px : standard deviation of the roughness ε, px (0 = smooth).
    corr_px : correlation length of ε along the outline, px.
    """
    n = len(s_px)
    th = np.linspace(-np.pi, np.pi, N_ANGLES, endpoint=False)
    k = np.arange(2, kmax + 1)
    mag = amplitude * rng.standard_normal((n, len(k))) / k
    ph = rng.uniform(0, 2 * np.pi, size=(n, len(k)))
    low = np.einsum("nk,nkm->nm", mag, np.cos(k[None, :, None] * th[None, None, :] + ph[..., None]))
    R = s_px[:, None] * (1.0 + low)
    if roughness_px > 0 and n:
        white = rng.standard_normal((n, N_ANGLES))
        for i in range(n):
            sig = corr_px / max(s_px[i], 1e-6) * N_ANGLES / (2 * np.pi)
            if sig < 0.5:
                continue  # outline shorter than a grain: no roughness
            e = ndi.gaussian_filter1d(white[i], sig, mode="wrap", truncate=3)
            e *= roughness_px / max(float(e.std()), 1e-12)
            R[i] += e
    return np.maximum(R, 0.0).astype(np.float32)


def rasterize_sections(
    shape: tuple[int, int],
    *,
    cx_px: np.ndarray,
    cy_px: np.ndarray,
    r_px: np.ndarray,
    h_px: np.ndarray,
    outlines: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Label every pixel with the section (power diagram, see module doc) that covers it.

    Parameters
    ----------
    shape : (H, W) of the grid.
    cx_px, cy_px, r_px, h_px : (n,) float — section centre (column, row), 3D radius and cut
        height, all in pixels.
    outlines : (n, N_ANGLES) float32 — outline radius tables (:func:`outline_tables`).

    Returns
    -------
    labels : (H, W) int32 — 1 + index of the section, 0 = background.
    reldist : (H, W) float32 — exact 3D relative distance d/r = sqrt(d_b² + h²)/r of the
        pixel centre to the centre of its sphere (0 in the background).
    """
    H, W = shape
    best = np.full(shape, np.inf, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    reldist = np.zeros(shape, dtype=np.float32)
    scale = np.float32(N_ANGLES / (2 * np.pi))
    for i in range(len(r_px)):
        R = float(outlines[i].max()) + 1.0
        y0, y1 = max(0, int(np.floor(cy_px[i] - R))), min(H, int(np.ceil(cy_px[i] + R)) + 1)
        x0, x1 = max(0, int(np.floor(cx_px[i] - R))), min(W, int(np.ceil(cx_px[i] + R)) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy_px[i]))[:, None]
        dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx_px[i]))[None, :]
        d2 = dy * dy + dx * dx
        m = ((np.arctan2(dy, dx) + np.float32(np.pi)) * scale).astype(np.int32)
        rad = outlines[i][np.minimum(m, N_ANGLES - 1)]
        pw = d2 - rad * rad
        sub = best[y0:y1, x0:x1]
        take = (pw < 0) & (pw < sub)
        if not take.any():
            continue
        sub[take] = pw[take]
        labels[y0:y1, x0:x1][take] = i + 1
        u = np.sqrt(d2 + np.float32(h_px[i] ** 2)) / np.float32(r_px[i])
        reldist[y0:y1, x0:x1][take] = u[take]
    return labels, reldist
