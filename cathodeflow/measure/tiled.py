"""Tiled ``describe`` of one image: Dask arrays chunked smaller than the image.

Same kernels as the whole-image path (:mod:`.image`), run on object crops read from the
chunks: crack labels (:func:`~cathodeflow.stages.cracks.crack_labels_dask`), particle labels
(:func:`~cathodeflow.stages.particles.particle_labels_dask`), per-particle measurements on
particle crops (:func:`~cathodeflow.tiling.components.map_object_crops`), the
crack → particle assignment from per-chunk pair counts and the quality flags (holes on the
particle crops, unmarked components of B from global component labels,
:func:`~cathodeflow.tiling.components.label_components`). The tables equal the
whole-image tables exactly (tested).

Memory is bounded by the chunks in flight, not by the image: the intermediate arrays (phase
map, per-chunk and global component labels, crack and particle labels, crops of
multi-particle components) are kept in a temporary directory on disk
(:class:`~cathodeflow.tiling.scratch.Scratch`) unless ``scratch=False``.
"""

from __future__ import annotations

import os

import dask
import dask.array as da
import numpy as np

from ..config import Params
from ..stages.cracks import crack_labels_dask
from ..stages.particles import particle_labels_dask
from ..tiling.components import label_components, map_object_crops, object_boxes
from ..tiling.scheduler import compute
from ..tiling.scratch import Scratch, persist
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


def _unmarked(phase: da.Array, plab: da.Array, *, client=None, scratch: Scratch | None = None) -> tuple[int, int]:
    """:func:`~.image.unmarked_counts` on chunks: global 4-connected components."""
    free = (phase > 0) & (plab.rechunk(phase.chunks) == 0)
    if scratch is None:  # else phase and plab are stored: free is cheap to read twice
        (free,) = persist(free, client=client)
    n = label_components(free, connectivity=1, scratch=scratch)[1]
    (total,) = compute(free.sum())
    return int(n), int(total)


def _pair_counts(clab: np.ndarray, plab: np.ndarray) -> np.ndarray:
    """(crack id, particle id, pixel count) for the crack pixels of one chunk."""
    sel = clab > 0
    if not sel.any():
        return np.zeros((3, 0), np.int64)
    pairs, counts = np.unique(
        np.stack([clab[sel].astype(np.int64), plab[sel].astype(np.int64)]), axis=1, return_counts=True
    )
    return np.vstack([pairs, counts[None]])


def _block_counts(phase: np.ndarray, clab: np.ndarray, plab: np.ndarray):
    """Phase counts and crack–particle pair counts of one chunk (each chunk read once)."""
    return phase_counts(phase), _pair_counts(clab, plab)


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
    scratch: bool | str | os.PathLike | Scratch = True,
) -> ImageDescription:
    """Segment and measure one validated phase map given as a chunked Dask array.

    Intermediate arrays (the phase map, the per-chunk and global component labels, the
    crack and particle labels) are persisted so that no upstream work is recomputed
    (PERFORMANCE.md, "Dask traps"): by default in a temporary directory on disk
    (:class:`~cathodeflow.tiling.scratch.Scratch`, deleted before returning), so memory is
    bounded by the chunks in flight rather than growing with the image; with
    ``scratch=False`` in memory (on the cluster when ``client`` is given).

    Parameters
    ----------
    phase : (H, W) dask array of int
        Validated phase map S (0, 1, 2).
    image_id, condition : str
        Keys of the rows.
    pixel_size_um : float
        η in µm.
    params : Params
        Method parameters.
    dcenter : dict, optional
        d_center tables per stereology model.
    client : distributed.Client, optional
        Where to compute (default: the current scheduler).
    keep_labels : bool
        The returned description holds the crack and particle label arrays: read from
        ``scratch`` when the caller gave a :class:`~cathodeflow.tiling.scratch.Scratch`
        (valid until the caller closes it), else persisted in memory (they outlive the
        scratch store made here; on a cluster they then live on its workers only, so that
        a worker's death loses them: callers on a cluster pass a Scratch).
    scratch : bool, str, os.PathLike or Scratch
        True: intermediate arrays in a temporary directory inside ``params.scratch_dir``
        when set, else the local directory of the Dask worker running this call (an in-task
        image), else the system temp dir; a path: in a temporary directory inside that
        (existing) directory; a Scratch: in it (the caller closes it); False: in memory.
        Every worker that computes the tiles must see the directory.
    """
    if isinstance(scratch, Scratch):
        return _describe(phase, image_id=image_id, condition=condition, pixel_size_um=pixel_size_um,
                         params=params, dcenter=dcenter, client=client, keep_labels=keep_labels,
                         scratch=scratch, own_scratch=False)
    store = None
    if scratch is not False:
        store = Scratch(directory=params.scratch_dir if scratch is True else scratch)
    try:
        return _describe(phase, image_id=image_id, condition=condition, pixel_size_um=pixel_size_um,
                         params=params, dcenter=dcenter, client=client, keep_labels=keep_labels,
                         scratch=store, own_scratch=True)
    finally:
        if store is not None:
            store.close()


def _describe(phase, *, image_id, condition, pixel_size_um, params, dcenter, client, keep_labels, scratch,
              own_scratch):
    (phase,) = persist(phase, scratch=scratch, client=client)
    clab, ctable = crack_labels_dask(phase, scratch=scratch)
    plab = particle_labels_dask(
        phase, marker_radius_px=params.marker_radius_px_at(pixel_size_um), scratch=scratch,
        marker_h_px=params.marker_h_px_at(pixel_size_um),
    )
    clab, plab = persist(clab, plab, scratch=scratch, client=client)

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
    # Two computes, so that no chunk is held in memory waiting for a consumer of the other
    # kind: per chunk (phase, crack and particle labels read once) and per particle batch.
    block_task = dask.delayed(_block_counts, pure=True)
    blocks = [a.rechunk(phase.chunks).to_delayed(optimize_graph=False).ravel() for a in (phase, clab, plab)]
    (per_block,) = compute([block_task(*b) for b in zip(*blocks)])
    (results,) = compute([b.result for b in batches])
    counts = np.sum([c for c, _ in per_block], axis=0)
    pairs = [p for _, p in per_block]

    done = [(i, r) for b, res in zip(batches, results) for i, r in zip(b.ids, res)]
    measures = [(i, m) for i, (m, _) in done]
    pairs = np.concatenate(pairs, axis=1) if pairs else np.zeros((3, 0), np.int64)
    crack_particle = majority_pairs(pairs[0], pairs[1], pairs[2]) if pairs.size else {}
    unmarked = _unmarked(phase, plab, client=client, scratch=scratch)
    if keep_labels and scratch is not None and own_scratch:  # the scratch store goes on return
        clab, plab = persist(clab, plab, client=client)
    return assemble_image(
        phase_counts=counts,
        crack_table=ctable,
        crack_particle=crack_particle,
        measures=measures,
        holed={i for i, (_, h) in done if h},
        unmarked=unmarked,
        image_id=image_id,
        condition=condition,
        pixel_size_um=pixel_size_um,
        params=params,
        models=tuple(dcenter or ()),
        labels=(clab, plab) if keep_labels else None,
    )
