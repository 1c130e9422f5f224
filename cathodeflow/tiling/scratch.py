"""Scratch storage: intermediate chunked arrays kept in a temporary on-disk Zarr store.

Tiled stages persist their intermediate arrays (labels, masks) so that no upstream work
is recomputed (PERFORMANCE.md, "Dask traps"). Persisted in memory, they hold several bytes
per pixel of the whole image at once; written to a :class:`Scratch` directory instead, the
memory of a run is bounded by the chunks in flight, not by the image. The directory is a
fresh temporary one, deleted by :meth:`Scratch.close` (or on leaving the ``with`` block).
Every worker must see it: the default, a directory under the system temp dir, suits the
threaded scheduler and a ``LocalCluster``; a cluster across machines needs a shared path.
"""

from __future__ import annotations

import itertools
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import dask
import dask.array as da
import numpy as np

from ..errors import InputError

__all__ = ["Scratch", "keep", "persist", "regular_chunks"]


def regular_chunks(chunks: tuple[tuple[int, ...], ...]) -> bool:
    """True when every chunk but the last along each axis has the same size, and the last is
    not larger (the chunkings a Zarr array can store block for block)."""
    return all(len(set(c[:-1])) <= 1 and (len(c) < 2 or c[-1] <= c[0]) for c in chunks)


class Scratch:
    """A temporary directory of Zarr arrays standing in for persisted Dask arrays.

    Parameters
    ----------
    directory : str or os.PathLike, optional
        Where the temporary directory is made (default: the system temp dir); it must exist.
    """

    def __init__(self, *, directory: str | os.PathLike | None = None):
        if directory is not None and not Path(directory).is_dir():
            raise InputError(f"scratch directory {str(directory)!r} does not exist; expected an existing directory")
        self._tmp = tempfile.TemporaryDirectory(prefix="cathodeflow-scratch-", dir=directory)
        self.path = Path(self._tmp.name)
        self._names = itertools.count()

    def array(self, shape: tuple[int, ...], chunks: tuple[int, ...], dtype):
        """A new, empty Zarr array of ``shape`` stored in blocks of ``chunks``."""
        import zarr

        path = self.path / f"a{next(self._names)}.zarr"
        chunks = tuple(max(1, int(c)) for c in chunks)
        return zarr.create_array(str(path), shape=tuple(int(s) for s in shape), chunks=chunks,
                                 dtype=np.dtype(dtype), fill_value=0)

    def persist(self, *arrays: da.Array, client=None) -> list[da.Array]:
        """Compute ``arrays`` into new Zarr arrays here.

        Parameters
        ----------
        *arrays : dask arrays of any shape and chunking
        client : distributed.Client, optional
            Where to compute (default: the current scheduler).

        Returns
        -------
        list of dask arrays
            The same values and chunks, read from the stored arrays (lazy, cheap to read).
        """
        targets, sources = [], []
        for x in arrays:
            block = tuple(max(c) if c else 1 for c in x.chunks)
            src = x if regular_chunks(x.chunks) else x.rechunk(block)
            targets.append(self.array(x.shape, block, x.dtype))
            sources.append(src)
        if sources:
            done = da.store(sources, targets, lock=False, compute=False)
            dask.compute(done, **({} if client is None else {"scheduler": client}))
        return [da.from_zarr(t, chunks=x.chunks) for t, x in zip(targets, arrays)]

    def spill(self, values: Sequence, summarize: Callable[[Any], Any], *, client=None) -> tuple[list, list]:
        """Compute Dask values into files here instead of memory.

        Parameters
        ----------
        values : sequence of dask.delayed.Delayed
            Values to compute (e.g. the results of object-crop tasks).
        summarize : callable
            A picklable top-level function of one value, returning what is needed now.
        client : distributed.Client, optional
            Where to compute (default: the current scheduler).

        Returns
        -------
        summaries : list
            ``summarize(value)`` of each value, computed now.
        loaders : list of dask.delayed.Delayed
            Each computes to its value, read back from its file.
        """
        paths = [str(self.path / f"v{next(self._names)}.pkl") for _ in values]
        task = dask.delayed(_spill_value, pure=True)
        jobs = [task(v, p, summarize) for v, p in zip(values, paths)]
        (summaries,) = dask.compute(jobs, **({} if client is None else {"scheduler": client}))
        load = dask.delayed(_load_value, pure=True)
        return list(summaries), [load(p) for p in paths]

    def close(self) -> None:
        """Delete the directory and everything in it."""
        self._tmp.cleanup()

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _spill_value(value, path: str, summarize):
    with open(path, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    return summarize(value)


def _load_value(path: str):
    with open(path, "rb") as f:
        return pickle.load(f)


def persist(*arrays: da.Array, scratch: Scratch | None = None, client=None) -> list[da.Array]:
    """Persist ``arrays`` in ``scratch`` when given, else in memory (on ``client`` when
    given, waiting until they are there)."""
    if scratch is not None:
        return scratch.persist(*arrays, client=client)
    if client is not None:
        from distributed import wait

        out = client.persist(list(arrays))
        wait(out)
        return out
    return list(dask.persist(*arrays))


def keep(values: Sequence, summarize: Callable[[Any], Any], *, scratch: Scratch | None = None) -> tuple[list, list]:
    """Compute Dask values and keep them off the client: in ``scratch`` when given (files,
    :meth:`Scratch.spill`), else persisted where the scheduler computes them (in memory).

    Returns ``summarize(value)`` of each value (computed now, on the client) and, for each
    value, a Dask object that computes to it cheaply (a file read or a persisted key).
    """
    if scratch is not None:
        return scratch.spill(values, summarize)
    (kept,) = dask.persist(list(values))
    task = dask.delayed(summarize, pure=True)
    (summaries,) = dask.compute([task(v) for v in kept])
    return list(summaries), list(kept)
