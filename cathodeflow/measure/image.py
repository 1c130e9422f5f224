"""Describe one phase map: segmentations (eq. 2, 8–10) and raw per-object measurements.

:func:`describe_phase` is the per-image kernel (numpy in, small tables out). Whole images
are only touched by the segmentation stages, which themselves work on object crops; the
measurements here run on particle crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ..config import Params
from ..stages.cracks import crack_labels
from ..stages.particles import particle_labels
from .descriptors import crack_rows, image_row, majority_pairs, particle_rows
from .particles import measure_particle


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


def measure_particles(
    phase: np.ndarray,
    particle_lab: np.ndarray,
    *,
    pixel_size_um: float,
    dcenter: dict | None,
    bins,
    offset: tuple[int, int] = (0, 0),
    image_shape: tuple[int, int] | None = None,
    ids=None,
):
    """Measure the particles of ``particle_lab`` on their crops (find_objects).

    ``ids`` restricts the measurement to these particle ids (the tiled path hands each task
    a batch); ``offset``/``image_shape`` place the arrays in the whole image.
    """
    image_shape = image_shape or phase.shape
    out = []
    for i, sl in enumerate(ndi.find_objects(particle_lab), start=1):
        if sl is None or (ids is not None and i not in ids):
            continue
        m = measure_particle(
            phase[sl],
            particle_lab[sl] == i,
            origin=(offset[0] + sl[0].start, offset[1] + sl[1].start),
            image_shape=image_shape,
            pixel_size_um=pixel_size_um,
            dcenter=dcenter,
            bins=bins,
        )
        out.append((i, m))
    return out


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
    """Segment and measure one validated phase map held in memory (numpy)."""
    cr = crack_labels(phase)
    plab = particle_labels(phase, marker_radius_px=params.marker_radius_px)
    counts = np.bincount(phase.ravel(), minlength=3)
    return assemble_image(
        phase_counts=counts,
        crack_table=cr.table,
        crack_particle=crack_particle_assignment(cr.labels, plab),
        measures=measure_particles(
            phase, plab, pixel_size_um=pixel_size_um, dcenter=dcenter, bins=params.bins
        ),
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
    image_id: str,
    condition: str,
    pixel_size_um: float,
    params: Params,
    models=(),
    labels=None,
) -> ImageDescription:
    """Turn one image's raw measurements into its rows (shared by the whole and tiled paths)."""
    measures = sorted(measures, key=lambda t: t[0])
    cracks = crack_rows(
        crack_table,
        image_id=image_id,
        condition=condition,
        pixel_size_um=pixel_size_um,
        crack_particle=crack_particle,
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
        min_area_px=params.min_particle_area_px,
    )
    kept_ids = set(particles["particle_id"].tolist())
    measures = [(i, m) for i, m in measures if i in kept_ids]
    image = image_row(
        image_id=image_id,
        condition=condition,
        solid_px=int(phase_counts[1]),
        crack_px=int(phase_counts[2]),
        n_cracks_kept=len(kept),
        n_cracks_unfiltered=len(cracks),
        pixel_size_um=pixel_size_um,
    )
    return ImageDescription(
        image=image,
        cracks=cracks,
        particles=particles,
        local=sum_local(measures, models, len(params.bins)),
        crack_labels=None if labels is None else labels[0],
        particle_labels=None if labels is None else labels[1],
    )
