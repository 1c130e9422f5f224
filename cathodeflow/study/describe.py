"""``describe``: phase maps in, the tables of DESIGN §4.2 out (issue: bring your own segmentation).

The same entry point serves ``cathodeflow describe`` (files), the Python API (numpy, Dask or
xarray arrays; also ``cathodeflow.describe``) and the demo's ground truth. It checks the
arguments, opens the scheduler (:func:`~cathodeflow.study.cluster.scheduler_context`) and
computes there the work that :mod:`cathodeflow.measure.describe` builds: one task per whole
image (an image of one chunk, or of at most ``params.whole_image_px`` pixels, included), the tiled
graph of :func:`~cathodeflow.measure.tiled.describe_phase_dask` per larger image of several
chunks, then the reduce step. All give the same tables; the tiled graph bounds a task's
memory by a few chunks, at the price of about ten blocking rounds and a few dozen tasks per
chunk. Where a tiled image's tasks run is ``params.tiled_images``: spread over the cluster
(as many such images at once as it has threads, so that the workers stay busy between one
image's rounds), or, for campaigns of many tiled images (``'auto'``: at least two per
thread), one task per image that runs its rounds in its own thread
(:func:`~cathodeflow.measure.describe.tiled_image_task`): one task per image instead of
about 220 for a 2048² map in 1024-px chunks, and no blocking round on the client
(``benchmarks/README.md``, campaign throughput).

Files are not read here: only their headers (shape, dtype), and the tasks read the pixels
they need (:func:`cathodeflow.io.phasefile.phase_file_array`, by chunk on the tiled path). So nothing a task needs
lives only on this process or on one worker: a worker that dies costs its tasks, which the
scheduler runs again elsewhere. Arrays given in memory go to the cluster once, on two
workers (when it has two).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Params, check_pixel_size_um, warn_marker_radius
from ..errors import InputError
from ..io.phasefile import (
    DEFAULT_PHASE_VALUES,
    check_phase_values,
    image_id_from_path,
    phase_file_array,
    validate_phase,
)
from ..measure.describe import (
    dcenter_tables,
    fits_one_task,
    reduce_descriptions,
    tiled_array,
    tiled_image_task,
    whole_image_task,
)

#: Replicas of an array given in memory on a cluster: one worker's death does not lose it.
_REPLICAS = 2


def _as_list(x, n, what):
    # one value for all images: None, str/bytes, numbers incl. numpy scalars, any non-iterable
    if x is None or isinstance(x, (str, bytes, numbers.Number)) or not hasattr(x, "__iter__"):
        return [x] * n
    x = list(x)
    if len(x) != n:
        raise InputError(f"{what}: got {len(x)} values for {n} images")
    return x


def _inputs(phases, image_ids):
    """Normalise ``phases`` to a list of (image_id, array or path)."""
    if isinstance(phases, Mapping):
        items = list(phases.items())
    else:
        if isinstance(phases, (str, Path)) or hasattr(phases, "ndim"):
            phases = [phases]
        items = []
        for k, p in enumerate(phases):
            name = image_id_from_path(p) if isinstance(p, (str, Path)) else None
            if name is None and hasattr(p, "dims") and isinstance(getattr(p, "name", None), str):
                name = p.name  # xarray.DataArray (a Dask array's .name is a graph key, not an id)
            items.append((name or f"image_{k:03d}", p))
    if image_ids is not None:
        image_ids = list(image_ids)
        if len(image_ids) != len(items):
            raise InputError(f"image_ids: got {len(image_ids)} ids for {len(items)} images")
        items = [(i, p) for i, (_, p) in zip(image_ids, items)]
    ids = [i for i, _ in items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"image ids must be unique; repeated: {dup}")
    return items


def describe(
    phases,
    *,
    pixel_size_um,
    condition=None,
    image_ids: Sequence[str] | None = None,
    params: Params | None = None,
    scheduler=None,
    chunk_px: int | None = None,
    progress: bool = False,
    phase_values: Sequence[int] = DEFAULT_PHASE_VALUES,
) -> dict[str, pd.DataFrame]:
    """Compute the tables ``images``, ``cracks``, ``particles``, ``local_porosity`` and
    ``conditions`` (DESIGN §4.2) from phase maps S (eq. 1: 0 background, 1 solid, 2 crack).

    Parameters
    ----------
    phases : array, path, or a sequence / mapping of them
        2D integer arrays (numpy, Dask, xarray) or files (TIFF, PNG, NPY, Zarr). A mapping
        gives image ids as keys; files get their name without extension as id.
    pixel_size_um : float or sequence of float
        η in µm, per image or one for all. Required: there is no default pixel size. Values
        outside 0.1 nm – 10 µm are refused (a unit slip); lengths of ``params`` are converted
        to pixels with it, and a marker radius of under 5 or over 500 px gets a
        :class:`~cathodeflow.errors.PixelSizeWarning`.
    condition : str or sequence of str, optional
        The cycling condition of each image (default ``"all"``).
    params : Params, optional
        Method parameters (marker radius r, 2.5 η filter, λ_pristine, bins, models…), and
        ``whole_image_px``: images of at most that many pixels are processed whole, in one
        task, whatever their chunks and ``chunk_px`` (default 2²⁵; the tables are the same;
        0 tiles every image of several chunks).
    scheduler : None, "sync", "threads", "processes", a Dask ``Client`` or an address
        Where to run. With several images each image is one task; a Dask array with more
        than one chunk (or ``chunk_px``) larger than ``params.whole_image_px`` is processed
        tile-wise.
    chunk_px : int, optional
        Process images larger than ``params.whole_image_px`` as Dask arrays with square
        chunks of this edge (tiled path); an image of one chunk is processed whole, in one
        task (the same tables).
    progress : bool
        On standard error: a progress bar, and the Dask dashboard's address when a cluster
        started or reached here serves one.
    phase_values : sequence of int, shape (3,)
        The stored values (B, S, C) meaning background, solid, crack in ``phases``, mapped
        to S = 0, 1, 2 as each map is read (per chunk for lazy input; default ``(0, 1, 2)``;
        ``(1, 2, 3)`` for an ilastik export). Any other value is refused, naming the file.

    Returns
    -------
    dict of str -> pandas.DataFrame, keyed by table name; empty tables have the contract's
    columns and dtypes.
    """
    params = params or Params()
    phase_values = check_phase_values(phase_values)
    items = _inputs(phases, image_ids)
    n = len(items)
    if n == 0:
        raise InputError("describe: no phase maps given")
    sizes = _as_list(pixel_size_um, n, "pixel_size_um")
    conds = _as_list(condition if condition is not None else "all", n, "condition")
    for (iid, _), s, c in zip(items, sizes, conds):
        if s is None:
            raise InputError(f"{iid}: no pixel size; pass pixel_size_um (--pixel-size-um) in µm")
        if not isinstance(s, numbers.Real) or isinstance(s, bool) or not math.isfinite(s) or s <= 0:
            raise InputError(f"{iid}: pixel_size_um must be a positive number of µm, got {s!r}")
        check_pixel_size_um(s, name=f"{iid}: pixel_size_um")
        if not isinstance(c, str):
            raise InputError(f"{iid}: condition must be a string, got {type(c).__name__} {c!r}")

    if chunk_px is not None and (
        not isinstance(chunk_px, numbers.Integral) or isinstance(chunk_px, bool) or chunk_px < 1
    ):
        raise InputError(f"chunk_px must be a positive integer (tile edge in px), got {chunk_px!r}")

    arrays = []
    for iid, p in items:
        arr = phase_file_array(p, chunk_px=chunk_px) if isinstance(p, (str, Path)) else p
        name = str(p) if isinstance(p, (str, Path)) else iid
        arrays.append(validate_phase(arr, name=name, values=phase_values))

    for s in dict.fromkeys(float(s) for s in sizes):  # once per pixel size
        warn_marker_radius(params, s)
    tables = dcenter_tables(params)
    descs = _run(arrays, items, sizes, conds, params, tables, scheduler, chunk_px, progress)
    return reduce_descriptions(descs, params=params)


def _run(arrays, items, sizes, conds, params, tables, scheduler, chunk_px, progress):
    from ..measure.tiled import describe_phase_dask
    from ..tiling.scheduler import in_this_thread
    from .cluster import (check_files_shared, each_on_threads, parallel_images, scheduler_context, tiled_in_task,
                          warn_in_task)

    work = []
    for arr, (iid, _), s, c in zip(arrays, items, sizes, conds):
        kw = dict(image_id=iid, condition=c, pixel_size_um=float(s), params=params, dcenter=tables)
        tiled = tiled_array(arr, chunk_px=chunk_px)
        if tiled is not None and (tiled.npartitions == 1 or fits_one_task(tiled.shape, params)):
            # one tile, or small enough: the whole-image task (a lazy Dask array's chunks are
            # read inside it)
            arr, tiled = (arr if isinstance(arr, np.ndarray) else tiled), None
        work.append((tiled, arr, kw))

    announce = (lambda line: print(line, file=sys.stderr)) if progress else None
    with scheduler_context(scheduler, n_tasks=len(work), announce=announce) as client:
        # files read inside the tasks (lazy arrays), which a worker on another machine may not see
        check_files_shared(client, [Path(p).absolute() for (_, p), a in zip(items, arrays)
                                    if isinstance(p, (str, Path)) and not isinstance(a, np.ndarray)])
        out = []
        tiled = [(i, t, kw) for i, (t, _, kw) in enumerate(work) if t is not None]
        in_task, why = tiled_in_task(len(tiled), client, params)
        warn_in_task(why)  # every image of `tiled` is processed tiled
        # one task per image on the scheduler: each whole one, and on a cluster each tiled
        # one too when in_task (processed chunk by chunk inside its task)
        one_task = in_task and client is not None
        single = [(i, arr, kw) for i, (t, arr, kw) in enumerate(work) if t is None or one_task]
        if single:
            arrays = [arr for _, arr, _ in single]
            if client is not None:
                arrays = _to_cluster(arrays, client)
            tasks = [_image_task(work[i][0], a, kw) for a, (i, _, kw) in zip(arrays, single)]
            results = _compute(tasks, client, progress)
            out.extend(zip([i for i, _, _ in single], results))
        if one_task:  # the tiled images were among them
            tiled = []

        def one(item):
            i, t, kw = item
            with in_this_thread() if in_task else contextlib.nullcontext():
                out.append((i, describe_phase_dask(t, client=client, **kw)))

        # Spread, each tiled image computes in several blocking rounds, some of one task: on
        # a cluster, images run side by side so that the workers stay busy between rounds.
        n_parallel = min(len(tiled), parallel_images(client)) if client is not None else 1
        if n_parallel > 1:
            each_on_threads(one, tiled, n_parallel)
        else:
            for item in tiled:
                one(item)
    return [d for _, d in sorted(out, key=lambda t: t[0])]


def _image_task(tiled, arr, kw):
    """The one task that describes an image: whole (``tiled`` None), else chunk by chunk
    inside the task, from ``arr`` when it is held in memory (a numpy array or its future on
    the cluster), else from the lazy chunks of ``tiled``."""
    import dask.array as da

    if tiled is None:
        return whole_image_task(arr, **kw)
    held = not isinstance(arr, da.Array)
    return tiled_image_task(arr if held else tiled, chunks=tiled.chunks, **kw)


def _to_cluster(arrays: list, client) -> list:
    """``arrays`` with each numpy array shipped to the cluster once, as data (not in the
    graph), and kept on :data:`_REPLICAS` workers: losing one of them does not lose it.
    One scatter and one replicate for all of them; other arrays are returned as they are."""
    held = [k for k, a in enumerate(arrays) if isinstance(a, np.ndarray)]
    if not held:
        return arrays
    futures = client.scatter([arrays[k] for k in held])
    if len(client.nthreads()) > 1:
        client.replicate(futures, n=_REPLICAS)
    out = list(arrays)
    for k, f in zip(held, futures):
        out[k] = f
    return out


def _compute(tasks, client, progress):
    import dask

    if client is not None:
        futures = client.compute(tasks)
        if progress:
            from distributed import progress as dprogress

            dprogress(futures)
        return client.gather(futures)
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return list(dask.compute(*tasks))
    return list(dask.compute(*tasks))
