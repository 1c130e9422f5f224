"""Tiled ``describe`` of one image: Dask arrays chunked smaller than the image.

Same kernels as the whole-image path (:mod:`.image`), run on object crops read from the
chunks: crack labels (:func:`~cathodeflow.stages.cracks.crack_labels_dask`), particle labels
(:func:`~cathodeflow.stages.particles.particle_labels_dask`), per-particle measurements on
particle crops (:func:`~cathodeflow.tiling.components.map_object_crops`), the
crack → particle assignment from per-chunk pair counts and the quality flags (holes on the
particle crops, unmarked components of B from global component labels,
:func:`~cathodeflow.tiling.components.label_components`). The tables equal the
whole-image tables exactly (tested).
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from ..config import Params
from ..stages.cracks import crack_labels_dask
from ..stages.particles import particle_labels_dask
from ..tiling.components import label_components, map_object_crops, object_boxes
from .descriptors import majority_pairs
from .image import ImageDescription, assemble_image, encloses_background, phase_counts
from .particles import measure_particle


def _measure_kernel(pid, box, phase_crop, plab_crop, *, image_shape, pixel_size_um, dcenter, bins):
    """(ParticleMeasure, encloses background) of particle ``pid`` on its bounding box."""
    mask = plab_crop == pid
    return measure_particle(
        phase_crop,
        mask,
        origin=(box[0].start, box[1].start),
        image_shape=image_shape,
        pixel_size_um=pixel_size_um,
        dcenter=dcenter,
        bins=bins,
    ), encloses_background(phase_crop, mask)


def _unmarked(phase: da.Array, plab: da.Array, *, client=None) -> tuple[int, int]:
    """:func:`~.image.unmarked_counts` on chunks: global 4-connected components."""
    free = (phase > 0) & (plab.rechunk(phase.chunks) == 0)
    (free,) = _persist(free, client=client)
    n = label_components(free, connectivity=1)[1]
    return int(n), int(free.sum().compute())


def _pair_counts(clab: np.ndarray, plab: np.ndarray) -> np.ndarray:
    """(crack id, particle id, pixel count) for the crack pixels of one chunk."""
    sel = clab > 0
    if not sel.any():
        return np.zeros((3, 0), np.int64)
    pairs, counts = np.unique(
        np.stack([clab[sel].astype(np.int64), plab[sel].astype(np.int64)]), axis=1, return_counts=True
    )
    return np.vstack([pairs, counts[None]])


def _persist(*arrays, client=None):
    if client is not None:
        from distributed import wait

        out = client.persist(list(arrays))
        wait(out)
        return out
    return list(dask.persist(*arrays))


def describe_phase_dask(
    phase: da.Array,
    *,
    image_id: str,
    condition: str,
    pixel_size_um: float,
    params: Params,
    dcenter: dict | None = None,
    client=None,
    keep_labels: bool = False,
) -> ImageDescription:
    """Segment and measure one validated phase map given as a chunked Dask array.

    Intermediate arrays are persisted (on the cluster when ``client`` is given) so that no
    upstream work is recomputed (PERFORMANCE.md, "Dask traps"). With ``keep_labels`` the
    returned description holds the crack and particle label arrays (lazy on persisted data).
    """
    (phase,) = _persist(phase, client=client)
    count_task = dask.delayed(phase_counts, pure=True)
    counts = [count_task(b) for b in phase.to_delayed(optimize_graph=False).ravel()]
    clab, ctable = crack_labels_dask(phase)
    plab = particle_labels_dask(phase, marker_radius_px=params.marker_radius_px_at(pixel_size_um))
    clab, plab = _persist(clab, plab, client=client)

    boxes = object_boxes(plab)
    batches = map_object_crops(
        _measure_kernel,
        [phase, plab],
        boxes,
        margin=0,
        kernel_kwargs=dict(
            image_shape=phase.shape, pixel_size_um=pixel_size_um, dcenter=dcenter, bins=params.bins
        ),
    )
    pair_task = dask.delayed(_pair_counts, pure=True)
    cblocks = clab.to_delayed(optimize_graph=False).ravel()
    pblocks = plab.rechunk(clab.chunks).to_delayed(optimize_graph=False).ravel()
    pairs = [pair_task(c, p) for c, p in zip(cblocks, pblocks)]
    counts, results, pairs = dask.compute(counts, [b.result for b in batches], pairs)
    counts = np.sum(counts, axis=0)

    done = [(i, r) for b, res in zip(batches, results) for i, r in zip(b.ids, res)]
    measures = [(i, m) for i, (m, _) in done]
    pairs = np.concatenate(pairs, axis=1) if pairs else np.zeros((3, 0), np.int64)
    crack_particle = majority_pairs(pairs[0], pairs[1], pairs[2]) if pairs.size else {}
    return assemble_image(
        phase_counts=counts,
        crack_table=ctable,
        crack_particle=crack_particle,
        measures=measures,
        holed={i for i, (_, h) in done if h},
        unmarked=_unmarked(phase, plab, client=client),
        image_id=image_id,
        condition=condition,
        pixel_size_um=pixel_size_um,
        params=params,
        models=tuple(dcenter or ()),
        labels=(clab, plab) if keep_labels else None,
    )
