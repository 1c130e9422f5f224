"""From raw per-object measurements to the tables of DESIGN §4.2 (eq. 11–22, 37–40).

Everything here works on small per-object tables (pixel counts, skeleton lengths, width
sums), never on images, so it is the "reduce" step after the per-chunk/per-object kernels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..io.tables import conform, empty_table
from ..stages.cracks import PIXEL_STATS


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


def box_columns(row_min, row_max, col_min, col_max, pixel_size_um: float) -> dict:
    """Bounding-box columns in µm from inclusive pixel-index bounds: the box of the pixel
    squares, bbox_y0_um = η·row_min, bbox_y1_um = η·(row_max + 1) (same for x), origin at
    the image's top-left pixel corner, y down."""
    eta = float(pixel_size_um)
    r0, r1, c0, c1 = (np.asarray(v, np.float64) for v in (row_min, row_max, col_min, col_max))
    return {"bbox_y0_um": eta * r0, "bbox_x0_um": eta * c0,
            "bbox_y1_um": eta * (r1 + 1.0), "bbox_x1_um": eta * (c1 + 1.0)}


def principal_axis_deg(n, sy, sx, syy, sxx, sxy) -> np.ndarray:
    """Angle of the principal (major) axis of pixel sets from their raw moments, in degrees.

    With the central moments μ_yy, μ_xx, μ_xy (computed exactly from the integer sums as
    n²·μ = n·Σyy − (Σy)², …), the angle is ½·atan2(−2μ_xy, μ_xx − μ_yy) in [0°, 180°):
    counter-clockwise from the +x axis (rightwards) as the image is displayed (y down, hence
    the sign), so 0° is horizontal and 90° vertical. NaN where the axis is undefined
    (μ_xx = μ_yy and μ_xy = 0, e.g. one pixel or a square).

    Parameters
    ----------
    n, sy, sx, syy, sxx, sxy : (k,) integer array-likes
        Pixel count and Σy, Σx, Σy², Σx², Σxy (row, column indices) of each set.
    """
    out = np.full(len(n), np.nan)
    sums = zip(*(np.asarray(v).tolist() for v in (n, sy, sx, syy, sxx, sxy)))  # Python ints
    for i, (a, y, x, yy, xx, xy) in enumerate(sums):
        myy, mxx, mxy = a * yy - y * y, a * xx - x * x, a * xy - y * x  # exact
        if mxx == myy and mxy == 0:
            continue
        out[i] = math.degrees(0.5 * math.atan2(-2.0 * mxy, float(mxx - myy))) % 180.0
    return out


def radial_angle_deg(orientation_deg, dy, dx) -> np.ndarray:
    """Acute angle (0°–90°) between an axis and the direction (dy, dx), in degrees.

    0° = the axis points along (dy, dx) (radial), 90° = across it (tangential). NaN where
    the axis is NaN or (dy, dx) = (0, 0).

    Parameters
    ----------
    orientation_deg : (k,) float array-like
        Axis angles as :func:`principal_axis_deg` gives them.
    dy, dx : (k,) float array-likes
        Direction in image coordinates (y down), e.g. crack centroid − particle centroid.
    """
    t = np.radians(np.asarray(orientation_deg, np.float64))
    dy, dx = np.asarray(dy, np.float64), np.asarray(dx, np.float64)
    ux, uy = np.cos(t), -np.sin(t)  # the axis in image coordinates (y down)
    dot, cross = np.abs(ux * dx + uy * dy), np.abs(ux * dy - uy * dx)
    out = np.degrees(np.arctan2(cross, dot))
    return np.where((dx == 0) & (dy == 0), np.nan, out)


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
    particle_centroids: dict[int, tuple[float, float]] | None = None,
    min_d_factor: float = 2.5,
) -> pd.DataFrame:
    """Per-crack descriptors (eq. 13, 14, 16) and geometry from raw counts.

    ``raw`` has columns crack_id, area_px (#C), skeleton_px (#L) and width_sum_px
    (Σ_{x∈L} 2 r_disk(x), in px). Then

    - d = 2η √(#C/π) (eq. 13),
    - ℓ = η #L (eq. 14, no diagonal correction: DESIGN §4.4 item 4),
    - b = η/#L · Σ_{x∈L} 2 r_disk(x) (eq. 16),

    and ``kept`` is d ≥ ``min_d_factor``·η (so with 2.5 η a crack of ≤ 4 px is dropped).
    ``adjusted`` is filled per condition by :func:`mark_adjusted`.

    Geometry, when ``raw`` also has the pixel statistics of
    :data:`cathodeflow.stages.cracks.PIXEL_STATS` (else NaN): µm from the image's top-left
    pixel corner, y down; centroid_y_um = η (Σy/#C + ½) (the mean of the pixel centres),
    the bounding box of :func:`box_columns`, ``orientation_deg`` of
    :func:`principal_axis_deg`, and, for a crack in particle p (``crack_particle``) whose
    centroid (row, col pixel index means) is ``particle_centroids[p]``,
    ``distance_to_particle_center_um`` (η × centroid distance) and ``radial_angle_deg``
    (:func:`radial_angle_deg` of the axis against the line from the particle's centroid to
    the crack's: 0° radial, 90° tangential); NaN for cracks in no listed particle.
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
    if all(c in raw for c in PIXEL_STATS):
        pid = df["particle_id"].to_numpy()
        df = df.assign(**_crack_geometry(raw, pid, particle_centroids or {}, eta))
    return conform(df, "cracks")


def _crack_geometry(raw: pd.DataFrame, particle_id: np.ndarray, centroids: dict, eta: float) -> dict:
    """The geometry columns of :func:`crack_rows`."""
    col = {c: raw[c].to_numpy(np.int64) for c in ("area_px", *PIXEL_STATS)}
    n = col["area_px"]
    cy, cx = col["row_sum"] / n, col["col_sum"] / n
    orient = principal_axis_deg(n, *(col[c] for c in PIXEL_STATS[:5]))
    nowhere = (np.nan, np.nan)
    pc = np.array([centroids.get(int(p), nowhere) if p else nowhere for p in particle_id],
                  np.float64).reshape(-1, 2)
    dy, dx = cy - pc[:, 0], cx - pc[:, 1]
    return {
        "centroid_y_um": eta * (cy + 0.5),
        "centroid_x_um": eta * (cx + 0.5),
        **box_columns(col["row_min"], col["row_max"], col["col_min"], col["col_max"], eta),
        "orientation_deg": orient,
        "radial_angle_deg": radial_angle_deg(orient, dy, dx),
        "distance_to_particle_center_um": eta * np.hypot(dy, dx),
    }


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
    - section radius r̃ = η √(#P/π) (eq. 34),
    - geometry, µm from the image's top-left pixel corner, y down: centroid of the pixel
      centres (η (Σy/#P + ½), crack pixels included), the bounding box of
      :func:`box_columns`, equivalent diameter 2η √(#P/π) and the Feret diameter
      η · :func:`~cathodeflow.measure.particles.feret_diameter_px` (largest distance
      between pixel corners).
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
                "centroid_y_um": eta * (m.centroid_px[0] + 0.5),
                "centroid_x_um": eta * (m.centroid_px[1] + 0.5),
                **{k: float(v) for k, v in box_columns(*m.box, eta).items()},
                "equivalent_diameter_um": 2.0 * eta * math.sqrt(m.area_px / math.pi),
                "feret_diameter_um": eta * m.feret_px,
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
    from ..stereology.local_porosity import local_porosity_table  # the one implementation

    frames = [local_porosity_table({model: pair}, bins, condition=cond)
              for (cond, model), pair in areas.items()]
    return (conform(pd.concat(frames, ignore_index=True), "local_porosity") if frames
            else empty_table("local_porosity"))


def local_porosity_image_rows(counts, *, bins) -> pd.DataFrame:
    """Local porosity ρ_local([a, b)) of each image (eq. 37–40 with the sums over one image's
    particles): the ``local_porosity_images`` table, what intervals over images need.

    ``counts`` holds one ``(image_id, condition, η [µm], {model: (crack_px, solid_px)})`` per
    image, pixel counts per bin as :func:`~cathodeflow.stereology.local_porosity_counts`
    returns them (last entry: overflow bin). Summed over the images of a condition, the areas
    equal the pooled ``local_porosity`` rows (:func:`local_porosity_rows`).
    """
    from ..stereology.local_porosity import local_porosity_images_table  # the one implementation

    return local_porosity_images_table([c for c in counts if c[3]], bins)


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
