"""The paper's chain as a plain serial scipy / scikit-image script (the benchmark's baseline).

Every step is the textbook call on the whole image, in the order of the paper:

==========================================  ===============================================
B = {S > 0}                                 eq. 8
D = ``distance_transform_edt(B)``           eq. 9 (scipy)
markers = ``label(D >= r, connectivity=2)`` eq. 10 (scikit-image, 8-connected)
S_p = ``watershed(-D, markers, mask=B)``    eq. 10 (scikit-image, 4-connected flooding)
skeleton = ``skeletonize(S == 2, "lee")``   crack curves L_i (§2.3.2)
curves = ``ndi.label(skeleton, 8-conn)``
nearest curve = ``distance_transform_edt(~skeleton, return_indices=True)``   eq. 2
r_disk = ``distance_transform_edt(S == 2)`` on the skeleton pixels           eq. 15
#C, #L, Σ 2 r_disk per crack = ``np.bincount``                                eq. 13–16
``regionprops_table`` (area, centroid, bbox) of S_p; perimeter of {S = 1} ∩ P eq. 20–21
d_center per pixel of each particle (``regionprops`` coords) + bin counts     eq. 34–38
==========================================  ===============================================

The final formulas (descriptors from raw counts, the adjusted set, Table 1, local porosity)
are cathodeflow's own functions of :mod:`cathodeflow.measure.descriptors`, and d_center is
looked up in the same :class:`cathodeflow.stereology.DCenterTable`, so that a comparison with
:func:`cathodeflow.describe` differs only in the image processing.

Ids are canonical, as in cathodeflow: particles by the raster order of their first pixel,
cracks by the raster order of the first skeleton pixel of their curve, so the tables can be
compared row by row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.measure import label, regionprops, regionprops_table
from skimage.morphology import skeletonize
from skimage.segmentation import watershed

from cathodeflow.config import Params
from cathodeflow.io.tables import conform, empty_table
from cathodeflow.measure.descriptors import (
    conditions_table,
    crack_rows,
    image_row,
    local_porosity_rows,
    majority_pairs,
    mark_adjusted,
    particle_rows,
)
from cathodeflow.measure.particles import ParticleMeasure
from cathodeflow.stereology import DCenterTable, local_porosity_counts

__all__ = ["SerialResult", "serial_describe"]

_EIGHT = np.ones((3, 3), bool)


def _pixel_sums(ids, rows, cols, n) -> dict[str, np.ndarray]:
    """Per object 1..n: Σy, Σx, Σy², Σx², Σxy and the inclusive row/column range."""
    ids, rows, cols = (np.asarray(a, np.int64) for a in (ids, rows, cols))
    out = {name: np.bincount(ids, weights=w, minlength=n + 1)[1:].round().astype(np.int64)
           for name, w in (("row_sum", rows), ("col_sum", cols), ("row2_sum", rows * rows),
                           ("col2_sum", cols * cols), ("rowcol_sum", rows * cols))}
    for name, v, fn, start in (("row_min", rows, np.minimum, np.iinfo(np.int64).max),
                               ("row_max", rows, np.maximum, -1), ("col_min", cols, np.minimum,
                                                                   np.iinfo(np.int64).max),
                               ("col_max", cols, np.maximum, -1)):
        acc = np.full(n + 1, start, np.int64)
        fn.at(acc, ids, v)
        out[name] = acc[1:]
    return out


def _feret(rows, cols) -> float:
    """Largest distance between two corners of the pixels (rows, cols), brute force over the
    convex hull of all their corners."""
    from scipy.spatial import ConvexHull

    corners = np.concatenate([np.column_stack([rows + dy, cols + dx]) for dy in (0, 1) for dx in (0, 1)])
    hull = corners[ConvexHull(corners.astype(np.float64)).vertices].astype(np.float64)
    return float(np.sqrt(((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1).max()))


@dataclass
class SerialResult:
    """The five tables and the canonical label images of the serial script."""

    tables: dict[str, pd.DataFrame]
    particle_labels: np.ndarray  # (H, W) int, canonical ids, 0 outside particles
    crack_labels: np.ndarray  # (H, W) int, canonical ids, 0 outside cracks
    skeleton: np.ndarray  # (H, W) bool, the Lee skeleton of {S = 2}


def _canonical_particles(S_p: np.ndarray) -> tuple[np.ndarray, list]:
    """Renumber S_p by the raster order of each particle's first pixel (found in the first
    row of its bounding box)."""
    regions = regionprops(S_p)
    W = S_p.shape[1]
    firsts = []
    for reg in regions:
        r0, c0, _, c1 = reg.bbox
        row = S_p[r0, c0:c1] == reg.label
        firsts.append(r0 * W + c0 + int(np.argmax(row)))
    lut = np.zeros(int(S_p.max()) + 1, np.int64)
    order = np.argsort(firsts, kind="stable")
    for new, k in enumerate(order, start=1):
        lut[regions[k].label] = new
    return lut[S_p], lut


def serial_describe(
    phase: np.ndarray,
    *,
    pixel_size_um: float,
    condition: str = "bench",
    image_id: str = "image_000",
    params: Params | None = None,
) -> SerialResult:
    """Tables of DESIGN §4.2 for one phase map by the plain serial chain (see module doc).

    Parameters
    ----------
    phase : (H, W) ndarray of uint8
        Phase map S (eq. 1): 0 background, 1 solid, 2 crack.
    pixel_size_um : float
        η in µm.
    condition, image_id : str
        Values of the ``condition`` and ``image_id`` columns (``cathodeflow.describe`` names
        a single numpy input ``"image_000"``).
    params : Params, optional
        r (marker_radius_um, converted with η), 2.5 η filter, λ_pristine, bins, stereology models.
    """
    params = params or Params()
    eta = float(pixel_size_um)
    H, W = phase.shape
    r = params.marker_radius_px_at(eta)
    bins = params.bins
    dcenter = {m: DCenterTable.from_params(params, model=m) for m in params.stereology_models}

    # --- particle-wise segmentation (eq. 8-10) -------------------------------------------
    B = phase > 0
    D = ndi.distance_transform_edt(B)
    markers = label(D >= r, connectivity=2)
    S_p = watershed(-D, markers, mask=B)
    S_p, _ = _canonical_particles(S_p)

    # --- crack-wise segmentation (eq. 2) and raw crack counts (eq. 13-16) -----------------
    crack = phase == 2
    skeleton = skeletonize(crack, method="lee")
    curves, n_c = ndi.label(skeleton, structure=_EIGHT)
    S_c = np.zeros(phase.shape, np.int64)
    if n_c:
        rows, cols = np.nonzero(skeleton)  # raster order
        vals = curves[rows, cols]
        _, first = np.unique(vals, return_index=True)
        lut_c = np.zeros(n_c + 1, np.int64)
        lut_c[vals[np.sort(first)]] = np.arange(1, n_c + 1)
        _, (ir, ic) = ndi.distance_transform_edt(~skeleton, return_indices=True)
        cr, cc = np.nonzero(crack)
        S_c[cr, cc] = lut_c[curves[ir[cr, cc], ic[cr, cc]]]
        r_disk = ndi.distance_transform_edt(crack)[rows, cols]
        ids = lut_c[vals]
        raw = pd.DataFrame({
            "crack_id": np.arange(1, n_c + 1),
            "area_px": np.bincount(S_c[cr, cc], minlength=n_c + 1)[1:],
            "skeleton_px": np.bincount(ids, minlength=n_c + 1)[1:],
            "width_sum_px": np.bincount(ids, weights=2.0 * r_disk, minlength=n_c + 1)[1:],
            **_pixel_sums(S_c[cr, cc], cr, cc, n_c),
        })
        crack_particle = majority_pairs(S_c[cr, cc], S_p[cr, cc])
    else:
        raw = pd.DataFrame(columns=["crack_id", "area_px", "skeleton_px", "width_sum_px"])
        crack_particle = {}

    # --- per-particle measurements (eq. 20-21, 34-38) -------------------------------------
    n_p = int(S_p.max())
    props = regionprops_table(S_p, properties=("label", "area", "bbox"))
    solid_lab = np.where(phase == 1, S_p, 0)
    perim = regionprops_table(solid_lab, properties=("label", "perimeter"))
    perimeter = np.zeros(n_p + 1)
    perimeter[perim["label"]] = perim["perimeter"]
    crack_px = np.bincount(S_p[crack], minlength=n_p + 1)
    solid_px = np.bincount(S_p[phase == 1], minlength=n_p + 1)
    pr, pc = np.nonzero(S_p)
    pl = S_p[pr, pc]
    psum = _pixel_sums(pl, pr, pc, n_p)
    measures = []
    for k, pid in enumerate(props["label"]):
        touches = bool(
            props["bbox-0"][k] == 0 or props["bbox-1"][k] == 0
            or props["bbox-2"][k] == H or props["bbox-3"][k] == W
        )
        measures.append((int(pid), ParticleMeasure(
            area_px=int(props["area"][k]),
            crack_px=int(crack_px[pid]),
            solid_px=int(solid_px[pid]),
            perimeter_px=float(perimeter[pid]),
            touches_border=touches,
            local={},
            row_sum=int(psum["row_sum"][pid - 1]),
            col_sum=int(psum["col_sum"][pid - 1]),
            box=(int(psum["row_min"][pid - 1]), int(psum["row_max"][pid - 1]),
                 int(psum["col_min"][pid - 1]), int(psum["col_max"][pid - 1])),
            feret_px=_feret(pr[pl == pid], pc[pl == pid]),
        )))

    # --- tables (the same formulas as cathodeflow) -----------------------------------------
    cracks = crack_rows(
        raw if n_c else None, image_id=image_id, condition=condition, pixel_size_um=eta,
        crack_particle=crack_particle, min_d_factor=params.min_crack_d_factor,
        particle_centroids={pid: m.centroid_px for pid, m in measures},
    )
    kept = cracks[cracks["kept"]]
    n_per_particle = kept.loc[kept["particle_id"] > 0, "particle_id"].value_counts().to_dict()
    particles = particle_rows(
        measures, image_id=image_id, condition=condition, pixel_size_um=eta,
        n_cracks=n_per_particle, min_area_px=params.min_particle_area_px_at(eta),
    )
    kept_ids = set(particles["particle_id"].tolist())

    # d_center of every solid/crack pixel of each particle (eq. 34-36) and bin counts (37-38)
    local = {m: (np.zeros(len(bins), np.int64), np.zeros(len(bins), np.int64)) for m in dcenter}
    for reg in regionprops(S_p):
        if reg.label not in kept_ids:
            continue
        coords = reg.coords
        c_r, c_c = reg.centroid
        s = phase[coords[:, 0], coords[:, 1]]
        sel = s > 0
        r_tilde_um = eta * math.sqrt(len(coords) / math.pi)  # eq. 34
        d_b_um = eta * np.hypot(coords[sel, 0] - c_r, coords[sel, 1] - c_c)  # eq. 35
        for model, table in dcenter.items():
            c, so = local_porosity_counts(table(r_tilde_um, d_b_um), s[sel] == 2, bins)
            local[model][0][:] += c
            local[model][1][:] += so

    counts = np.bincount(phase.ravel(), minlength=3)
    images = image_row(
        image_id=image_id, condition=condition, solid_px=int(counts[1]), crack_px=int(counts[2]),
        n_cracks_kept=len(kept), n_cracks_unfiltered=len(cracks), pixel_size_um=eta,
    )
    images = conform(images, "images")
    cracks = mark_adjusted(
        conform(cracks, "cracks") if len(cracks) else empty_table("cracks"), images,
        lambda_pristine_per_um2=params.lambda_pristine_per_um2,
    )
    particles = conform(particles, "particles") if len(particles) else empty_table("particles")
    pooled = {(condition, m): (eta**2 * c, eta**2 * s) for m, (c, s) in local.items()}
    tables = {
        "images": images,
        "cracks": cracks,
        "particles": particles,
        "local_porosity": local_porosity_rows(pooled, bins=bins),
        "conditions": conditions_table(images, cracks, particles),
    }
    return SerialResult(tables, S_p, S_c, skeleton)
