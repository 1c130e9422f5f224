"""3D packing of near-spherical particles and its planar section (the scene's geometry).

Spheres with log-normal radii (number-weighted, eq. 33) are dropped uniformly into a
periodic box around the field of view and pushed apart until no two of them overlap by more
than a fraction ``max_overlap`` of the sum of their radii (a force-biased relaxation; the
result is a dense random packing, like a calendered electrode). The plane z = 0 then cuts
sphere i (centre (x_i, y_i, h_i), radius r_i) in a disc of radius sqrt(r_i² − h_i²) (the
geometry of Fig. 5 of the paper, h being the cut height).

Coordinates: µm, x along image columns, y along image rows, origin at the top-left corner
of the field of view (the outer corner of pixel (0, 0)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .lognormal import max_radius, sample_radii


@dataclass(frozen=True)
class Packing:
    """All spheres of the periodic box, in field coordinates (µm).

    Attributes
    ----------
    xyz_um : (n, 3) float64 — centres; z is the signed distance to the cutting plane.
    r_um : (n,) float64 — radii.
    box_um : (3,) float64 — box edges (periodic); the field is centred in x and y.
    max_overlap_found : float — largest 1 − d_ij/(r_i + r_j) left after relaxation.
    n_iter : int — relaxation sweeps used.
    """

    xyz_um: np.ndarray
    r_um: np.ndarray
    box_um: np.ndarray
    max_overlap_found: float
    n_iter: int

    def table(self) -> pd.DataFrame:
        """Columns x_um, y_um, z_um, r_um: one row per sphere of the box."""
        return pd.DataFrame(
            {
                "x_um": self.xyz_um[:, 0],
                "y_um": self.xyz_um[:, 1],
                "z_um": self.xyz_um[:, 2],
                "r_um": self.r_um,
            }
        )


def pack_spheres(
    rng: np.random.Generator,
    *,
    field_um: tuple[float, float],
    mu_n: float,
    sigma: float,
    volume_fraction: float,
    max_overlap: float,
    max_iter: int = 3000,
) -> Packing:
    """Dense random packing of log-normal spheres around a field of view.

    Parameters
    ----------
    rng : numpy Generator
    field_um : (height, width) of the field of view, µm.
    mu_n, sigma : number-weighted log-normal parameters (eq. 31, 33).
    volume_fraction : nominal solid volume fraction Σ(4/3 π r³)/V of the box.
    max_overlap : allowed overlap, as the fraction 1 − d_ij/(r_i + r_j).

    Returns
    -------
    Packing
    """
    h_um, w_um = field_um
    rmax = max_radius(mu_n, sigma)
    margin = rmax
    box = np.array([w_um + 2 * margin, h_um + 2 * margin, 2.5 * rmax])
    target = volume_fraction * float(np.prod(box))
    # draw radii in blocks until the nominal solid volume reaches the target
    radii: list[np.ndarray] = []
    vol = 0.0
    mean_vol = 4.0 / 3.0 * np.pi * np.exp(3 * mu_n + 4.5 * sigma**2)
    while vol < target:
        block = sample_radii(rng, max(8, int(1.1 * (target - vol) / mean_vol) + 1), mu_n, sigma)
        cum = vol + np.cumsum(4.0 / 3.0 * np.pi * block**3)
        k = int(np.searchsorted(cum, target)) + 1
        radii.append(block[:k])
        vol = float(cum[min(k, len(cum)) - 1])
    r = np.concatenate(radii)
    n = len(r)
    # largest spheres first, so they are placed in the least crowded space
    r = r[np.argsort(-r, kind="stable")]
    x = rng.uniform(0.0, 1.0, size=(n, 3)) * box
    wgt = r**3
    contact = 1.0 - max_overlap
    worst = 0.0
    it = 0
    skin = 0.25 * float(np.median(r))
    moved = np.inf
    pi = pj = np.zeros(0, dtype=np.int64)
    for it in range(1, max_iter + 1):
        if moved > 0.5 * skin:  # rebuild the neighbour (Verlet) list
            x %= box
            pairs = cKDTree(x, boxsize=box).query_pairs(
                2.0 * rmax * contact + skin, output_type="ndarray"
            )
            pi, pj = pairs[:, 0], pairs[:, 1]
            moved = 0.0
        d = x[pj] - x[pi]
        d -= box * np.round(d / box)
        dist = np.sqrt(np.einsum("ij,ij->i", d, d))
        need = contact * (r[pi] + r[pj])
        bad = dist < need
        if not bad.any():
            worst = float(np.max(1.0 - dist / (r[pi] + r[pj]))) if len(dist) else 0.0
            break
        i, j, d, dist, need = pi[bad], pj[bad], d[bad], dist[bad], need[bad]
        worst = float(np.max(1.0 - dist / (r[i] + r[j])))
        unit = d / np.maximum(dist, 1e-9)[:, None]
        push = (need - dist) * 1.1 + 1e-6
        share_i = wgt[j] / (wgt[i] + wgt[j])
        mi = -(push * share_i)[:, None] * unit
        mj = (push * (1.0 - share_i))[:, None] * unit
        mv = np.empty_like(x)
        for c in range(3):
            mv[:, c] = np.bincount(i, mi[:, c], minlength=n) + np.bincount(j, mj[:, c], minlength=n)
        x += mv
        moved += float(np.sqrt(np.max(np.einsum("ij,ij->i", mv, mv))))
    x %= box
    xyz = x - np.array([margin, margin, box[2] / 2.0])
    return Packing(xyz_um=xyz, r_um=r, box_um=box, max_overlap_found=max(0.0, worst), n_iter=it)


def section(packing: Packing, field_um: tuple[float, float]) -> pd.DataFrame:
    """The discs in which the plane z = 0 cuts the spheres, that reach the field of view.

    Returns
    -------
    DataFrame with one row per cut sphere: sphere (index into the packing), x_um, y_um,
    r_um (3D radius), h_um (signed cut height, the distance of the centre to the plane),
    section_radius_um = sqrt(r_um² − h_um²). Sorted by sphere index.
    """
    h_field, w_field = field_um
    xyz, r = packing.xyz_um, packing.r_um
    hit = np.abs(xyz[:, 2]) < r
    s = np.sqrt(np.clip(r**2 - xyz[:, 2] ** 2, 0.0, None))
    vis = (
        hit
        & (xyz[:, 0] + s > 0)
        & (xyz[:, 0] - s < w_field)
        & (xyz[:, 1] + s > 0)
        & (xyz[:, 1] - s < h_field)
    )
    idx = np.flatnonzero(vis)
    return pd.DataFrame(
        {
            "sphere": idx,
            "x_um": xyz[idx, 0],
            "y_um": xyz[idx, 1],
            "r_um": r[idx],
            "h_um": xyz[idx, 2],
            "section_radius_um": s[idx],
        }
    )
