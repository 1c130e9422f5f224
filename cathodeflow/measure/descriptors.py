"""From raw per-object measurements to the tables of DESIGN §4.2 (eq. 11–22, 37–40).

Everything here works on small per-object tables (pixel counts, skeleton lengths, width
sums), never on images, so it is the "reduce" step after the per-chunk/per-object kernels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..io.tables import conform, empty_table


def majority_pairs(keys: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None) -> dict[int, int]:
    """For each key, the non-zero value with the largest total weight (ties: smallest value;
    no non-zero value: 0). Weights default to 1 per entry (one entry per pixel)."""
    keys = np.asarray(keys, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    weights = np.ones(len(keys), np.int64) if weights is None else np.asarray(weights, np.int64)
    out = {int(k): 0 for k in np.unique(keys)}
    nz = values > 0
    if nz.any():
        # one int64 key per (key, value) pair: a 1D unique is much faster than axis=1
        k, v, w = keys[nz], values[nz], weights[nz]
        base = int(v.max()) + 1
        pair, inverse = np.unique(k * base + v, return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=w, minlength=pair.size)
        pk, pv = pair // base, pair % base
        # sort by key, then count descending, then value ascending; take the first per key
        order = np.lexsort((pv, -counts, pk))
        k_sorted = pk[order]
        first = np.r_[True, k_sorted[1:] != k_sorted[:-1]]
        for kk, vv in zip(k_sorted[first], pv[order][first]):
            out[int(kk)] = int(vv)
    return out


def crack_size_threshold_um(pixel_size_um: float, factor: float = 2.5) -> float:
    """The size filter of §2.4.2: cracks with d < factor·η are dropped (DESIGN §4.4 item 5)."""
    return factor * pixel_size_um


def crack_rows(
    raw: pd.DataFrame,
    *,
    image_id: str,
    condition: str,
    pixel_size_um: float,
    crack_particle: dict[int, int] | None = None,
    min_d_factor: float = 2.5,
) -> pd.DataFrame:
    """Per-crack descriptors (eq. 13, 14, 16) from raw counts.

    ``raw`` has columns crack_id, area_px (#C), skeleton_px (#L) and width_sum_px
    (Σ_{x∈L} 2 r_disk(x), in px). Then

    - d = 2η √(#C/π) (eq. 13),
    - ℓ = η #L (eq. 14, no diagonal correction: DESIGN §4.4 item 4),
    - b = η/#L · Σ_{x∈L} 2 r_disk(x) (eq. 16),

    and ``kept`` is d ≥ ``min_d_factor``·η (so with 2.5 η a crack of ≤ 4 px is dropped).
    ``adjusted`` is filled per condition by :func:`mark_adjusted`.
    """
    if raw is None or len(raw) == 0:
        return empty_table("cracks")
    eta = float(pixel_size_um)
    area = raw["area_px"].to_numpy(np.int64)
    skel = raw["skeleton_px"].to_numpy(np.int64)
    d = 2.0 * eta * np.sqrt(area / math.pi)
    with np.errstate(invalid="ignore", divide="ignore"):
        width = np.where(skel > 0, eta * raw["width_sum_px"].to_numpy(float) / np.maximum(skel, 1), np.nan)
    ids = raw["crack_id"].to_numpy(np.int64)
    crack_particle = crack_particle or {}
    df = pd.DataFrame(
        {
            "image_id": image_id,
            "condition": condition,
            "crack_id": ids,
            "area_px": area,
            "skeleton_px": skel,
            "d_um": d,
            "length_um": eta * skel,
            "width_um": width,
            "particle_id": [int(crack_particle.get(int(i), 0)) for i in ids],
            # Compare in units of η with a relative tolerance so that 2η√(#C/π) ≥ 2.5η
            # is decided on the pixel count, not on floating-point noise in η.
            "kept": 2.0 * np.sqrt(area / math.pi) >= min_d_factor * (1 - 1e-12),
            "adjusted": False,
        }
    )
    return conform(df, "cracks")


def image_row(
    *,
    image_id: str,
    condition: str,
    solid_px: int,
    crack_px: int,
    n_cracks_kept: int,
    n_cracks_unfiltered: int,
    pixel_size_um: float,
) -> pd.DataFrame:
    """One row of the ``images`` table.

    porosity ρ⁽ⁱ⁾ = #{S=2}/#{S>0} (eq. 11 for one image), crack intensity
    λ⁽ⁱ⁾ = n_c/(η² #{S>0}) (eq. 12 for one image, n_c = kept cracks: DESIGN §4.4 item 5),
    ``area_um2`` = η² #{S>0}, the non-background area. With no particle pixels, porosity and
    intensity are undefined and stored as NaN (a missing value, not a number).
    """
    fg = int(solid_px) + int(crack_px)
    area = fg * pixel_size_um**2
    row = {
        "image_id": image_id,
        "condition": condition,
        "solid_px": int(solid_px),
        "crack_px": int(crack_px),
        "porosity": crack_px / fg if fg else np.nan,
        "n_cracks": int(n_cracks_kept),
        "n_cracks_unfiltered": int(n_cracks_unfiltered),
        "crack_intensity_per_um2": n_cracks_kept / area if fg else np.nan,
        "area_um2": area,
        "pixel_size_um": float(pixel_size_um),
    }
    return conform(pd.DataFrame([row]), "images")


def mark_adjusted(
    cracks: pd.DataFrame, images: pd.DataFrame, *, lambda_pristine_per_um2: float = 0.145
) -> pd.DataFrame:
    """The adjusted data set of §2.4.3 (eq. 18–19), per condition, pooled over its images.

    A = n/λ = Σ η² #{S>0} (eq. 18; with λ from the kept cracks this is the non-background
    area), n_pristine = ⌊A λ_pristine⌋ clipped to [0, n] (eq. 19), and the n_pristine kept
    cracks with the smallest d are removed; ties are broken stably by (image_id, crack_id)
    (DESIGN §4.4 item 6). Returns a copy with the ``adjusted`` column set.
    """
    out = cracks.copy()
    out["adjusted"] = False
    if len(out) == 0:
        return conform(out, "cracks")
    for cond, grp in out[out["kept"]].groupby("condition", sort=False):
        area = float(images.loc[images["condition"] == cond, "area_um2"].sum())
        n = len(grp)
        n_pristine = int(min(max(math.floor(area * lambda_pristine_per_um2), 0), n))
        order = grp.sort_values(["d_um", "image_id", "crack_id"], kind="stable").index
        out.loc[order[n_pristine:], "adjusted"] = True
    return conform(out, "cracks")


def particle_rows(
    measures: list[tuple[int, object]],
    *,
    image_id: str,
    condition: str,
    pixel_size_um: float,
    n_cracks: dict[int, int] | None = None,
    min_area_px: float = 0,
) -> pd.DataFrame:
    """Per-particle descriptors (eq. 20, 21, 34) from :class:`ParticleMeasure` objects.

    - ρ_p = #{x∈P: S=2}/#{x∈P: S>0} (eq. 20),
    - a = (4/π) η perim({x∈P: S=1}) / (η² #P) in µm⁻¹ (eq. 21, #P with cracks:
      DESIGN §4.4 item 8),
    - section radius r̃ = η √(#P/π) (eq. 34).
    Particles with #P < ``min_area_px`` are left out.
    """
    n_cracks = n_cracks or {}
    eta = float(pixel_size_um)
    rows = []
    for pid, m in measures:
        if m.area_px < min_area_px or m.area_px == 0:
            continue
        fg = m.crack_px + m.solid_px
        rows.append(
            {
                "image_id": image_id,
                "condition": condition,
                "particle_id": int(pid),
                "area_px": m.area_px,
                "area_um2": m.area_px * eta**2,
                "section_radius_um": eta * math.sqrt(m.area_px / math.pi),
                "porosity": m.crack_px / fg if fg else np.nan,
                "ssa_per_um": (4.0 / math.pi) * eta * m.perimeter_px / (eta**2 * m.area_px),
                "n_cracks": int(n_cracks.get(int(pid), 0)),
                "touches_border": m.touches_border,
            }
        )
    return conform(pd.DataFrame(rows), "particles") if rows else empty_table("particles")


def local_porosity_rows(
    areas: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], *, bins
) -> pd.DataFrame:
    """Local porosity ρ_local([a, b)) per condition and model (eq. 37–40).

    ``areas[(condition, model)]`` = (A_crack, A_particle) per bin in µm² (eq. 37–38), the
    last entry being the overflow bin [bins[-1], ∞) (DESIGN §4.4 item 10), pooled over all
    particles and images of the condition. A bin with no pixel has porosity NaN (undefined,
    not zero).
    """
    edges = list(bins) + [math.inf]
    rows = []
    for (cond, model), (crack, solid) in areas.items():
        for j in range(len(edges) - 1):
            c, s = float(crack[j]), float(solid[j])
            rows.append(
                {
                    "condition": cond,
                    "method": model,
                    "bin_lo": edges[j],
                    "bin_hi": edges[j + 1],
                    "crack_um2": c,
                    "solid_um2": s,
                    "porosity": c / (c + s) if c + s else np.nan,
                }
            )
    return conform(pd.DataFrame(rows), "local_porosity") if rows else empty_table("local_porosity")


def conditions_table(images: pd.DataFrame, cracks: pd.DataFrame, particles: pd.DataFrame) -> pd.DataFrame:
    """Table 1 of the paper, per condition (DESIGN §4.4 item 12).

    Per-image ρ⁽ⁱ⁾ and λ⁽ⁱ⁾, then mean and sample standard deviation (ddof = 1, NaN with
    one image) over the images of the condition; the pooled ρ of eq. 11 and λ of eq. 12
    beside them.
    """
    if len(images) == 0:
        return empty_table("conditions")
    rows = []
    for cond, g in images.groupby("condition", sort=False):
        fg = g["solid_px"] + g["crack_px"]
        area = g["area_um2"].sum()
        rows.append(
            {
                "condition": cond,
                "porosity_mean": g["porosity"].mean(),
                "porosity_std": g["porosity"].std(ddof=1),
                "porosity_pooled": g["crack_px"].sum() / fg.sum() if fg.sum() else np.nan,
                "intensity_mean": g["crack_intensity_per_um2"].mean(),
                "intensity_std": g["crack_intensity_per_um2"].std(ddof=1),
                "intensity_pooled_per_um2": g["n_cracks"].sum() / area if area else np.nan,
                "n_images": len(g),
                "n_cracks": int(g["n_cracks"].sum()),
                "n_cracks_unfiltered": int(g["n_cracks_unfiltered"].sum()),
                "n_particles": int((particles["condition"] == cond).sum()),
            }
        )
    return conform(pd.DataFrame(rows), "conditions")
