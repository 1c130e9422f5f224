"""SEM-like rendering of a labelled section, and the microscope model for both resolutions.

The *scene* is the noise-free, unblurred image of the section on the high-resolution grid
(pixel η): bright polycrystalline solid (one grey level and a faint gradient per grain:
channelling contrast), brighter rims at every solid edge (the SE edge effect), a faint seam
where two particles touch, dark cracks, and a dark carbon-binder background with fine
granular texture, slow variations and darker pores.

The *microscope* images the scene at a pixel size p: each detector pixel integrates the
scene over its footprint (exact box integration; for p = η·35/13 the footprints cut hr
pixels fractionally), then a Gaussian PSF (σ in µm), a gain/offset, shot-like noise
(σ ∝ sqrt(signal)) and a per-scan-line offset are applied, and the result is quantised to
uint8. The low-resolution image is *not* a resample of the high-resolution image: it comes
from the scene through a wider PSF and its own, stronger noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import Voronoi, cKDTree


@dataclass(frozen=True)
class RenderParams:
    """Grey levels (fractions of full scale) and optics (µm) of the SEM model."""

    solid_level: float = 0.58
    grain_sd: float = 0.045
    grain_gradient_sd: float = 0.035  # grey change across one grain diameter
    particle_sd: float = 0.035
    rim_gain: float = 0.6
    rim_sigma_um: float = 0.045
    halo_gain: float = 0.10
    seam_darkening: float = 0.16
    crack_level: float = 0.07
    background_level: float = 0.20
    background_fine_sd: float = 0.05
    background_fine_um: float = 0.02
    background_mid_sd: float = 0.03
    background_mid_um: float = 0.12
    nanopore_fraction: float = 0.3
    nanopore_um: float = 0.03
    nanopore_darkening: float = 0.45
    pore_fraction: float = 0.22
    pore_um: float = 0.3
    pore_darkening: float = 0.75
    illumination_sd: float = 0.02
    # microscope, high resolution
    psf_hr_um: float = 0.012
    noise_hr: float = 0.035
    line_noise_hr: float = 0.006
    # microscope, low resolution
    psf_lr_um: float = 0.036
    noise_lr: float = 0.06
    line_noise_lr: float = 0.012
    gain_lr: float = 0.95
    offset_lr: float = 0.015


# --------------------------------------------------------------------------- grains
def grain_seeds(
    rng: np.random.Generator, shape: tuple[int, int], spacing_px: float
) -> np.ndarray:
    """Jittered, randomly rotated hexagonal lattice of grain seeds covering the grid.

    Returns
    -------
    (n, 2) float64 — seed coordinates (row, column) in pixels.
    """
    H, W = shape
    a = float(spacing_px)
    diag = np.hypot(H, W) / 2 + 2 * a
    n = int(np.ceil(diag / a))
    i, j = np.mgrid[-n : n + 1, -n : n + 1]
    u = (j + 0.5 * (i % 2)) * a
    v = i * a * np.sqrt(3) / 2
    th = rng.uniform(0, np.pi)
    c, s = np.cos(th), np.sin(th)
    y = H / 2 + s * u.ravel() + c * v.ravel()
    x = W / 2 + c * u.ravel() - s * v.ravel()
    pts = np.column_stack([y, x]) + rng.normal(0, 0.22 * a, size=(y.size, 2))
    keep = (
        (pts[:, 0] > -2 * a) & (pts[:, 0] < H + 2 * a) & (pts[:, 1] > -2 * a) & (pts[:, 1] < W + 2 * a)
    )
    return pts[keep]


def grain_graph(seeds: np.ndarray, labels: np.ndarray):
    """Grain-boundary graph: Voronoi vertices and edges of the seeds.

    Returns
    -------
    vy, vx : (m,) float — vertex coordinates (px); vlab : (m,) int — particle label at the
    vertex (0 outside particles or the grid); indptr, indices : CSR adjacency.
    """
    H, W = labels.shape
    vor = Voronoi(seeds)
    vy, vx = vor.vertices[:, 0], vor.vertices[:, 1]
    rv = np.asarray(vor.ridge_vertices)
    rv = rv[(rv >= 0).all(axis=1)]
    iy, ix = np.rint(vy).astype(int), np.rint(vx).astype(int)
    ins = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    vlab = np.zeros(len(vy), dtype=np.int64)
    vlab[ins] = labels[iy[ins], ix[ins]]
    a = np.concatenate([rv[:, 0], rv[:, 1]])
    b = np.concatenate([rv[:, 1], rv[:, 0]])
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    indptr = np.zeros(len(vy) + 1, dtype=np.int64)
    np.add.at(indptr, a + 1, 1)
    indptr = np.cumsum(indptr)
    return vy, vx, vlab, indptr, b


def grain_index(mask: np.ndarray, seeds: np.ndarray, *, step: int = 2) -> np.ndarray:
    """Index of the nearest seed (the grain) of every pixel of ``mask``, computed on a
    ``step``-coarse grid and replicated to full resolution; 0 outside ``mask``.
    (H, W) int32."""
    H, W = mask.shape
    Hc, Wc = -(-H // step), -(-W // step)
    pad = np.zeros((Hc * step, Wc * step), dtype=bool)
    pad[:H, :W] = mask
    cy, cx = np.nonzero(pad.reshape(Hc, step, Wc, step).any(axis=(1, 3)))
    pts = np.column_stack([cy * step + (step - 1) / 2, cx * step + (step - 1) / 2])
    coarse = np.zeros((Hc, Wc), dtype=np.int32)
    if len(pts):
        _, idx = cKDTree(seeds).query(pts, workers=1)
        coarse[cy, cx] = idx
    full = np.repeat(np.repeat(coarse, step, axis=0), step, axis=1)[:H, :W]
    return np.where(mask, full, 0).astype(np.int32)


# --------------------------------------------------------------------------- helpers
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Linear interpolation from ``n_in`` samples spread over ``n_out`` pixel centres."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = (pos - i0).astype(np.float32)
    M = np.zeros((n_out, n_in), dtype=np.float32)
    M[np.arange(n_out), i0] += 1 - f
    M[np.arange(n_out), i1] += f
    return M


def box_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Exact box integration of ``n_in`` unit pixels onto ``n_out`` pixels covering the
    same extent: entry (i, j) = overlap of output pixel i with input pixel j / width of i.
    Shape (n_out, n_in), float32, rows sum to 1."""
    f = n_in / n_out
    a = np.arange(n_out)[:, None] * f
    b = a + f
    j = np.arange(n_in)[None, :]
    ov = np.clip(np.minimum(b, j + 1) - np.maximum(a, j), 0, None) / f
    return ov.astype(np.float32)


def _smooth_noise(rng, shape, sigma_px: float) -> np.ndarray:
    """Gaussian random field of unit variance (approximately: normalised analytically) and
    correlation length ``sigma_px``, float32. Large σ are filtered on a coarser grid and
    interpolated back."""
    H, W = shape
    if sigma_px <= 4:
        f = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_px, truncate=3)
        return f * np.float32(2.0 * np.sqrt(np.pi) * max(sigma_px, 0.5))
    k = max(1, int(sigma_px // 2))
    small = (-(-H // k), -(-W // k))
    c = ndi.gaussian_filter(
        rng.standard_normal(small, dtype=np.float32), sigma_px / k, mode="wrap", truncate=3
    )
    c = (c - c.mean()) / max(float(c.std()), 1e-12)
    return _interp_matrix(H, small[0]) @ c @ _interp_matrix(W, small[1]).T


# --------------------------------------------------------------------------- scene
def render_scene(
    rng: np.random.Generator,
    *,
    phase: np.ndarray,
    labels: np.ndarray,
    grains: np.ndarray,
    seeds: np.ndarray,
    grain_spacing_px: float,
    pixel_um: float,
    params: RenderParams,
) -> np.ndarray:
    """Noise-free, unblurred scene on the high-resolution grid, float32 in ~[0, 1].

    Parameters
    ----------
    phase : (H, W) uint8 — 0 background, 1 solid, 2 crack.
    labels : (H, W) int — particle labels (seams where two particles touch).
    grains : (H, W) int — seed index of every particle pixel (:func:`grain_index`).
    seeds : (n, 2) float — grain seeds (px).
    """
    p = params
    H, W = phase.shape
    n_seeds = len(seeds)
    solid = phase == 1
    # grain grey level: a linear function per grain (a level and a gradient), per particle
    # an offset. value(y, x) = A_g + B_g·y + C_g·x + offset_particle
    B = rng.normal(0, p.grain_gradient_sd / grain_spacing_px, n_seeds)
    C = rng.normal(0, p.grain_gradient_sd / grain_spacing_px, n_seeds)
    A = p.solid_level + rng.normal(0, p.grain_sd, n_seeds) - B * seeds[:, 0] - C * seeds[:, 1]
    poff = rng.normal(0, p.particle_sd, size=int(labels.max()) + 1)
    yy = np.arange(H, dtype=np.float32)[:, None]
    xx = np.arange(W, dtype=np.float32)[None, :]
    iy, ix = np.nonzero(solid)
    g = grains[iy, ix]
    solid_val = (
        A.astype(np.float32)[g]
        + B.astype(np.float32)[g] * iy.astype(np.float32)
        + C.astype(np.float32)[g] * ix.astype(np.float32)
        + poff.astype(np.float32)[labels[iy, ix]]
    )
    # background: carbon-binder texture with pores
    fine = _smooth_noise(rng, (H, W), p.background_fine_um / pixel_um)
    mid = _smooth_noise(rng, (H, W), p.background_mid_um / pixel_um)
    bg = p.background_level + p.background_fine_sd * fine + p.background_mid_sd * mid
    for frac, um, dark in (
        (p.nanopore_fraction, p.nanopore_um, p.nanopore_darkening),
        (p.pore_fraction, p.pore_um, p.pore_darkening),
    ):
        f = _smooth_noise(rng, (H, W), um / pixel_um)
        thr = float(np.quantile(f[::7, ::7], frac))
        bg *= 1.0 - dark / (1.0 + np.exp((f - thr) / 0.15))
    img = bg.astype(np.float32, copy=False)
    cm = phase == 2
    img[cm] = p.crack_level * (1.0 + 0.5 * fine[cm])
    img[iy, ix] = solid_val
    # SE edge effect: bright rims inside the solid along every solid edge, faint halo outside
    e = ndi.gaussian_filter(solid.astype(np.float32), p.rim_sigma_um / pixel_um, truncate=3)
    img[iy, ix] += p.rim_gain * (1.0 - e[iy, ix])
    bgm = phase == 0
    img[bgm] += p.halo_gain * e[bgm]
    # seams between touching particles
    seam = np.zeros((H, W), dtype=bool)
    dv = (labels[1:, :] != labels[:-1, :]) & (labels[1:, :] > 0) & (labels[:-1, :] > 0)
    dh = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    seam[1:, :] |= dv
    seam[:-1, :] |= dv
    seam[:, 1:] |= dh
    seam[:, :-1] |= dh
    img[seam] -= p.seam_darkening
    # slow illumination variation over the field
    gy, gx = (float(v) for v in rng.normal(0, p.illumination_sd, 2))
    img += gy * (yy / H - 0.5) + gx * (xx / W - 0.5)
    return img


def microscope(
    rng: np.random.Generator,
    scene: np.ndarray,
    *,
    out_shape: tuple[int, int],
    scene_pixel_um: float,
    psf_um: float,
    noise: float,
    line_noise: float,
    gain: float = 1.0,
    offset: float = 0.0,
    read_noise: float = 0.0,
) -> np.ndarray:
    """Image ``scene`` with detector pixels of shape ``out_shape`` over the same field.

    Box integration over each detector pixel, Gaussian PSF of σ = ``psf_um``, gain/offset,
    shot noise σ = ``noise``·sqrt(signal/0.5) (the Gaussian limit of Poisson counts with
    0.5/``noise``² electrons at signal 0.5), signal-independent read noise σ = ``read_noise``
    (none drawn when 0), per-line offsets σ = ``line_noise``, uint8.
    Returns (h, w) uint8.
    """
    H, W = scene.shape
    h, w = out_shape
    if (h, w) == (H, W):
        img = scene
        pix_um = scene_pixel_um
    else:
        img = box_matrix(h, H) @ scene @ box_matrix(w, W).T
        pix_um = scene_pixel_um * H / h
    img = ndi.gaussian_filter(img, psf_um / pix_um, truncate=3.5)
    img = gain * img + offset
    sd = noise * np.sqrt(np.clip(img, 0.01, None) / 0.5)
    img = img + sd * rng.standard_normal(img.shape, dtype=np.float32)
    if read_noise > 0:
        img += np.float32(read_noise) * rng.standard_normal(img.shape, dtype=np.float32)
    img += rng.normal(0, line_noise, size=(h, 1)).astype(np.float32)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
