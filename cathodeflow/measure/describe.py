"""The computation behind ``describe`` (DESIGN §4.2): per-image work and the reduce step.

Phase maps in, :class:`~cathodeflow.measure.image.ImageDescription` per image, then the
tables. Nothing here opens a scheduler or reads files: the entry point that does
(:func:`cathodeflow.study.describe.describe`, also ``cathodeflow.describe``) builds the work
with these functions and computes it where the caller asked.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..config import Params
from ..io.tables import conform, empty_table
from .descriptors import conditions_table, local_porosity_image_rows, local_porosity_rows, mark_adjusted
from .image import ImageDescription, describe_phase

TABLE_NAMES = ("images", "cracks", "particles", "local_porosity", "local_porosity_images", "conditions")


def dcenter_tables(params: Params) -> dict:
    """The d_center lookup tables (eq. 36) of each stereology model in ``params``.

    Built once per (model, percentiles) in a process and reused (~0.2 s each).
    """
    return {
        m: _dcenter_table(m, params.r10_um, params.r50_um, params.r90_um)
        for m in params.stereology_models
    }


@functools.lru_cache(maxsize=16)
def _dcenter_table(model: str, r10_um: float, r50_um: float, r90_um: float):
    from ..stereology import DCenterTable

    return DCenterTable.from_percentiles(r10_um, r50_um, r90_um, model=model)


def tiled_array(arr, *, chunk_px: int | None):
    """``arr`` as a chunked Dask array for the tiled path, or None for the whole-image path.

    Parameters
    ----------
    arr : numpy.ndarray or dask.array.Array, shape (H, W)
        A validated phase map.
    chunk_px : int, optional
        Square chunk edge; given, the map is (re)chunked to it and processed tile-wise.

    Returns
    -------
    dask.array.Array, shape (H, W), or None
        None when ``chunk_px`` is None and ``arr`` is not a Dask array of several chunks.
    """
    import dask.array as da

    if isinstance(arr, da.Array):
        if chunk_px is not None:
            return arr.rechunk(chunk_px)
        return arr if arr.npartitions > 1 else None
    if chunk_px is None:
        return None
    return da.from_array(np.asarray(arr), chunks=chunk_px)


def fits_one_task(shape, params: Params) -> bool:
    """Whether an image of ``shape`` gets its labels and measurements in one task
    (:func:`whole_image_task`) rather than the tiled graph: at most ``params.whole_image_px``
    pixels (:class:`~cathodeflow.config.Params`)."""
    return math.prod(shape) <= params.whole_image_px


def whole_image_task(arr, **kwargs):
    """One Dask task describing a whole phase map held in memory.

    Parameters
    ----------
    arr : numpy.ndarray, dask.array.Array, or a future of either, shape (H, W)
        A validated phase map. A lazy Dask array (chunks read from files or a store) travels
        as its graph and is computed inside the task, so the image is one task; one persisted
        on a cluster is joined in the task from its chunks where they are.
    **kwargs
        Keyword arguments of :func:`~cathodeflow.measure.image.describe_phase`.

    Returns
    -------
    dask.delayed.Delayed
        Computes to an :class:`~cathodeflow.measure.image.ImageDescription`.
    """
    import dask

    return dask.delayed(_describe_whole)(_as_graph(arr), kwargs)


def _describe_whole(arr, kw) -> ImageDescription:
    if isinstance(arr, _Graph):
        arr = arr.array.compute(scheduler="sync")
    return describe_phase(np.asarray(arr), **kw)


def tiled_image_task(arr, *, chunks, **kwargs):
    """One Dask task describing a phase map tile by tile, in the task's own thread.

    The task runs :func:`~cathodeflow.measure.tiled.describe_phase_dask` with its rounds on
    Dask's synchronous scheduler (:func:`~cathodeflow.tiling.scheduler.in_this_thread`) and
    its intermediate arrays in a scratch directory of the worker's system temp dir: the
    task's memory is bounded by a few chunks, like the tiled graph's tasks, and it submits
    no tasks of its own. A cluster runs many such images side by side, one per thread
    (a campaign of large images), instead of spreading each image's chunks over it.

    Parameters
    ----------
    arr : numpy.ndarray, a future of one, or dask.array.Array, shape (H, W)
        A validated phase map. A lazy Dask array (chunks read from files or a store)
        travels as its graph: its chunks are read inside the task, one at a time. One
        persisted on a cluster (its chunks already in the workers' memory) comes in whole.
    chunks : int or tuple
        Chunks of the tiled processing of a numpy array (a Dask array keeps its own).
    **kwargs
        Keyword arguments of :func:`~cathodeflow.measure.tiled.describe_phase_dask`.

    Returns
    -------
    dask.delayed.Delayed
        Computes to an :class:`~cathodeflow.measure.image.ImageDescription` (without label
        arrays).
    """
    import dask

    chunks = getattr(arr, "chunks", chunks)  # a persisted Dask array comes in whole: its chunks
    return dask.delayed(_describe_tiled)(_as_graph(arr), chunks, kwargs)


class _Graph:
    """A Dask array carried into a task as its graph (``dask.delayed`` would compute it)."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __dask_tokenize__(self):
        return ("cathodeflow-graph", self.array.name)


def _as_graph(arr):
    """``arr`` wrapped to travel into a task as its graph when it is a Dask array whose
    graph holds no futures (those are ``distributed``'s handles on data in workers' memory,
    which only the scheduler can resolve), else ``arr`` as it is."""
    import dask.array as da

    if not isinstance(arr, da.Array):
        return arr
    held = any(type(getattr(v, "value", v)).__module__.startswith("distributed")
               for v in arr.__dask_graph__().values())
    return arr if held else _Graph(arr)


def _describe_tiled(arr, chunks, kw) -> ImageDescription:
    import dask.array as da

    from ..tiling.scheduler import in_this_thread
    from .tiled import describe_phase_dask

    arr = arr.array if isinstance(arr, _Graph) else da.from_array(np.asarray(arr), chunks=chunks)
    with in_this_thread():
        return describe_phase_dask(arr, **kw)


def reduce_descriptions(descs: Sequence[ImageDescription], *, params: Params) -> dict[str, pd.DataFrame]:
    """Pool per-image results into the tables of :data:`TABLE_NAMES` (the Dask "reduce" step)."""
    def cat(name, parts):
        parts = [p for p in parts if len(p)]
        return conform(pd.concat(parts, ignore_index=True), name) if parts else empty_table(name)

    images = cat("images", [d.image for d in descs])
    cracks = cat("cracks", [d.cracks for d in descs])
    particles = cat("particles", [d.particles for d in descs])
    cracks = mark_adjusted(cracks, images, lambda_pristine_per_um2=params.lambda_pristine_per_um2)
    # Pool areas (η² · counts, eq. 37–38), so images of one condition may differ in η.
    pooled: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for d in descs:
        cond = d.image["condition"].iloc[0]
        eta2 = float(d.image["pixel_size_um"].iloc[0]) ** 2
        for model, (c, s) in d.local.items():
            acc = pooled.setdefault((cond, model), (np.zeros(len(c)), np.zeros(len(s))))
            acc[0][:] += eta2 * c
            acc[1][:] += eta2 * s
    local = local_porosity_rows(pooled, bins=params.bins)
    return {
        "images": images,
        "cracks": cracks,
        "particles": particles,
        "local_porosity": local,
        "local_porosity_images": local_porosity_image_rows(
            [(d.image["image_id"].iloc[0], d.image["condition"].iloc[0],
              float(d.image["pixel_size_um"].iloc[0]), d.local) for d in descs], bins=params.bins),
        "conditions": conditions_table(images, cracks, particles),
    }
