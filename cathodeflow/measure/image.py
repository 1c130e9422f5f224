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
    threads (default: the usable cores). Returns [(particle id, ParticleMeasure)] by id.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ..study.cluster import n_local_workers

    def one(item):
        i, sl = item
        return i, measure_particle(
            phase[sl],
            particle_lab[sl] == i,
            origin=(sl[0].start, sl[1].start),
            image_shape=phase.shape,
            pixel_size_um=pixel_size_um,
            dcenter=dcenter,
            bins=bins,
        )

    items = [(i, sl) for i, sl in enumerate(ndi.find_objects(particle_lab), start=1) if sl is not None]
    n_threads = n_threads or n_local_workers()
    if n_threads <= 1 or len(items) < 2:
        return [one(it) for it in items]
    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(one, items))


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
    counts = phase_counts(phase)
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
    """Turn one image's raw measurements into its rows (shared by the whole and tiled paths).

    Particles smaller than ``params.min_particle_area_px`` are left out of the particle and
    local-porosity tables; cracks lying in them get ``particle_id`` 0 ("in no listed
    particle"), so every non-zero ``particle_id`` of the cracks table is a row of the
    particles table.
    """
    measures = sorted(
        ((i, m) for i, m in measures if m.area_px and m.area_px >= params.min_particle_area_px),
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
    return ImageDescription(
        image=image,
        cracks=cracks,
        particles=particles,
        local=sum_local(measures, models, len(params.bins)),
        crack_labels=None if labels is None else labels[0],
        particle_labels=None if labels is None else labels[1],
    )
