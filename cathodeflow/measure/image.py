"""Describe one phase map: segmentations (eq. 2, 8–10) and raw per-object measurements.

:func:`describe_phase` is the per-image kernel (numpy in, small tables out). Whole images
are only touched by the segmentation stages, which themselves work on object crops; the
measurements here run on particle crops.

Each image row also carries quality flags (:data:`QUALITY_FLAGS`), signs that the particle
segmentation (eq. 8–10) may not match the particles a scientist sees:

* ``unmarked_components``, ``unmarked_area_um2``: 4-connected components of B = {S > 0}
  (eq. 8) holding no marker (D < r everywhere, eq. 10); they get no particle;
* ``particles_with_holes``: listed particles enclosing background pixels (a hollow
  particle, or one whose inside was read as background, may be split);
* ``cracks_outside_particles``: kept cracks (d ≥ 2.5 η) in no listed particle
  (``particle_id`` 0 in the cracks table);
* ``particles_cut_fraction``: share of the listed particles touching the image frame (NaN
  without particles);
* ``frame_fraction``: share of the raw image's pixels outside the imaged field (constant
  padding; :mod:`cathodeflow.measure.frame`), measured at ingest; NaN when no image is known
  (``describe`` of phase maps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ..config import Params
from ..io.tables import OPTIONAL
from ..stages.cracks import crack_labels
from ..stages.particles import particle_labels
from ..tiling.threads import kernel_threads
from .descriptors import crack_rows, image_row, majority_pairs, particle_rows
from .particles import measure_particle


#: Quality-flag columns of the ``images`` table, in schema order (the columns older tables
#: may lack, :data:`cathodeflow.io.tables.OPTIONAL`).
QUALITY_FLAGS = OPTIONAL["images"]


def flag_summary(row) -> str:
    """The quality flags of one ``images`` row in a few words, for ``ls`` and the report.

    E.g. ``"2 unmarked, 1 holed, 1 crack outside, 33% cut"``; ``"ok"`` when no flag is
    raised; ``"–"`` when the row predates the flags (missing values).

    Parameters
    ----------
    row : mapping
        A row of the ``images`` table (dict or Series) with the :data:`QUALITY_FLAGS`.
    """
    vals = {k: row.get(k) for k in QUALITY_FLAGS}
    if all(v is None or pd.isna(v) for v in vals.values()):
        return "–"
    parts = []
    for key, word in (("unmarked_components", "unmarked"), ("particles_with_holes", "holed")):
        if not pd.isna(vals[key]) and vals[key] > 0:
            parts.append(f"{int(vals[key])} {word}")
    n_out = vals["cracks_outside_particles"]
    if not pd.isna(n_out) and n_out > 0:
        parts.append(f"{int(n_out)} crack{'s' if n_out > 1 else ''} outside")
    cut = vals["particles_cut_fraction"]
    if not pd.isna(cut) and cut > 0:
        parts.append(f"{100 * cut:.0f}% cut")
    frame = vals["frame_fraction"]
    if not pd.isna(frame) and frame > 0:
        parts.append(f"{100 * frame:.1f}% outside the field")
    return ", ".join(parts) or "ok"


@dataclass
class ImageDescription:
    """Everything one image contributes to the tables (before pooling per condition)."""

    image: pd.DataFrame
    cracks: pd.DataFrame
    particles: pd.DataFrame
    #: model -> (crack counts, solid counts) per d_center bin (incl. overflow), summed
    #: over the particles of this image.
    local: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    crack_labels: np.ndarray | None = None
    particle_labels: np.ndarray | None = None


def crack_particle_assignment(crack_lab: np.ndarray, particle_lab: np.ndarray) -> dict[int, int]:
    """The particle each crack lies in: the particle holding most of its pixels.

    Ties go to the smaller particle id; a crack none of whose pixels lie in a particle
    (its component of B has no marker) gets 0.
    """
    sel = crack_lab > 0
    if not sel.any():
        return {}
    return majority_pairs(crack_lab[sel], particle_lab[sel])


def encloses_background(phase_crop: np.ndarray, mask: np.ndarray) -> bool:
    """Whether particle P encloses background: a pixel with S = 0 that no 4-path of pixels
    outside P joins to the image frame (or to the crop's edge).

    Parameters
    ----------
    phase_crop : (h, w) ndarray of int
        S on P's bounding box (a box holding P and, outside it, only pixels the frame can
        reach: then enclosed in the crop is enclosed in the image).
    mask : (h, w) ndarray of bool
        P on the same crop.
    """
    # the holes of P are the 4-connected components of its complement that do not touch the
    # crop's edge (what ndi.binary_fill_holes fills; one labelling pass is ~5x faster)
    out, n = ndi.label(~mask)
    if n == 0:
        return False
    inside = np.ones(n + 1, bool)
    inside[0] = False
    for edge in (out[0], out[-1], out[:, 0], out[:, -1]):
        inside[edge] = False
    return bool(inside[out[phase_crop == 0]].any())


def unmarked_counts(phase: np.ndarray, particle_lab: np.ndarray) -> tuple[int, int]:
    """(number, pixels) of the components of B = {S > 0} (eq. 8) that hold no marker.

    Such a component is all 0 in ``particle_lab`` and a marked one is all labelled (the
    flood reaches all of it, :mod:`cathodeflow.stages.particles`), so these are the
    4-connected components of {S > 0} ∩ {S_p = 0}.
    """
    free = (phase > 0) & (particle_lab == 0)
    return int(ndi.label(free)[1]), int(np.count_nonzero(free))


def phase_counts(phase: np.ndarray) -> np.ndarray:
    """(#{S=0}, #{S=1}, #{S=2}) of a validated phase map, without an int64 copy of it."""
    n1 = int(np.count_nonzero(phase == 1))
    n2 = int(np.count_nonzero(phase == 2))
    return np.array([phase.size - n1 - n2, n1, n2], np.int64)


def measure_particles(
    phase: np.ndarray,
    particle_lab: np.ndarray,
    *,
    pixel_size_um: float,
    dcenter: dict | None,
    bins,
    n_threads: int | None = None,
):
    """Measure every particle of ``particle_lab`` on its crop (``find_objects``).

    The per-particle kernels release the GIL, so particles are measured on ``n_threads``
    threads (default :func:`~cathodeflow.tiling.threads.kernel_threads`: the usable cores, 1
    in a Dask worker's task). Returns [(particle id, ParticleMeasure)] by id
    and the set of ids of the particles that enclose background (:func:`encloses_background`).
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(item):
        i, sl = item
        mask = particle_lab[sl] == i
        return i, measure_particle(
            phase[sl],
            mask,
            origin=(sl[0].start, sl[1].start),
            image_shape=phase.shape,
            pixel_size_um=pixel_size_um,
            dcenter=dcenter,
            bins=bins,
        ), encloses_background(phase[sl], mask)

    items = [(i, sl) for i, sl in enumerate(ndi.find_objects(particle_lab), start=1) if sl is not None]
    n_threads = n_threads or kernel_threads()
    if n_threads <= 1 or len(items) < 2:
        done = [one(it) for it in items]
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            done = list(pool.map(one, items))
    return [(i, m) for i, m, _ in done], {i for i, _, h in done if h}


def sum_local(measures, models, n_bins: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sum the per-particle local counts of each model."""
    local = {m: (np.zeros(n_bins, np.int64), np.zeros(n_bins, np.int64)) for m in models}
    for _, m in measures:
        for model, (c, s) in m.local.items():
            local[model][0][:] += c
            local[model][1][:] += s
    return local


def describe_phase(
    phase: np.ndarray,
    *,
    image_id: str,
    condition: str,
    pixel_size_um: float,
    params: Params,
    dcenter: dict | None = None,
    keep_labels: bool = False,
) -> ImageDescription:
    """Segment and measure one validated phase map held in memory (numpy).

    Lengths of ``params`` (µm) are converted with ``pixel_size_um``: r of eq. 10 is
    :meth:`Params.marker_radius_px_at` (and h of the h-maxima markers, when set,
    :meth:`Params.marker_h_px_at`).
    """
    cr = crack_labels(phase)
    plab = particle_labels(phase, marker_radius_px=params.marker_radius_px_at(pixel_size_um),
                           marker_h_px=params.marker_h_px_at(pixel_size_um))
    counts = phase_counts(phase)
    measures, holed = measure_particles(
        phase, plab, pixel_size_um=pixel_size_um, dcenter=dcenter, bins=params.bins
    )
    return assemble_image(
        phase_counts=counts,
        crack_table=cr.table,
        crack_particle=crack_particle_assignment(cr.labels, plab),
        measures=measures,
        holed=holed,
        unmarked=unmarked_counts(phase, plab),
        image_id=image_id,
        condition=condition,
        pixel_size_um=pixel_size_um,
        params=params,
        models=tuple(dcenter or ()),
        labels=(cr.labels, plab) if keep_labels else None,
    )


def assemble_image(
    *,
    phase_counts,
    crack_table: pd.DataFrame,
    crack_particle: dict[int, int],
    measures,
    holed,
    unmarked: tuple[int, int],
    image_id: str,
    condition: str,
    pixel_size_um: float,
    params: Params,
    models=(),
    labels=None,
) -> ImageDescription:
    """Turn one image's raw measurements into its rows (shared by the whole and tiled paths).

    ``holed`` holds the ids of the particles enclosing background, ``unmarked`` the
    (number, pixels) of the components of B without a marker (:func:`unmarked_counts`);
    with the rows they give the quality flags (:data:`QUALITY_FLAGS`).

    Particles smaller than ``params.min_particle_area_um2`` are left out of the particle and
    local-porosity tables; cracks lying in them get ``particle_id`` 0 ("in no listed
    particle"), so every non-zero ``particle_id`` of the cracks table is a row of the
    particles table.
    """
    min_area_px = params.min_particle_area_px_at(pixel_size_um)
    measures = sorted(
        ((i, m) for i, m in measures if m.area_px and m.area_px >= min_area_px),
        key=lambda t: t[0],
    )
    listed = {i for i, _ in measures}
    crack_particle = {c: (p if p in listed else 0) for c, p in crack_particle.items()}
    cracks = crack_rows(
        crack_table,
        image_id=image_id,
        condition=condition,
        pixel_size_um=pixel_size_um,
        crack_particle=crack_particle,
        particle_centroids={i: m.centroid_px for i, m in measures},
        min_d_factor=params.min_crack_d_factor,
    )
    kept = cracks[cracks["kept"]]
    n_per_particle = kept.loc[kept["particle_id"] > 0, "particle_id"].value_counts().to_dict()
    particles = particle_rows(
        measures,
        image_id=image_id,
        condition=condition,
        pixel_size_um=pixel_size_um,
        n_cracks=n_per_particle,
    )
    image = image_row(
        image_id=image_id,
        condition=condition,
        solid_px=int(phase_counts[1]),
        crack_px=int(phase_counts[2]),
        n_cracks_kept=len(kept),
        n_cracks_unfiltered=len(cracks),
        pixel_size_um=pixel_size_um,
    )
    image = image.assign(
        unmarked_components=unmarked[0],
        unmarked_area_um2=unmarked[1] * pixel_size_um**2,
        particles_with_holes=len(listed & set(holed)),
        cracks_outside_particles=int((kept["particle_id"] == 0).sum()),
        particles_cut_fraction=float(particles["touches_border"].mean()) if len(particles) else np.nan,
        frame_fraction=np.nan,  # known only from the image (the pipeline fills it in)
    ).astype({c: image[c].dtype for c in QUALITY_FLAGS})
    return ImageDescription(
        image=image,
        cracks=cracks,
        particles=particles,
        local=sum_local(measures, models, len(params.bins)),
        crack_labels=None if labels is None else labels[0],
        particle_labels=None if labels is None else labels[1],
    )
