"""Scratch storage: intermediate chunked arrays kept in a temporary directory on disk.

Tiled stages persist their intermediate arrays (labels, masks) so that no upstream work
is recomputed (PERFORMANCE.md, "Dask traps"). Persisted in memory, they hold several bytes
per pixel of the whole image at once; written to a :class:`Scratch` directory instead, the
memory of a run is bounded by the chunks in flight, not by the image. The directory is a
fresh temporary one, deleted by :meth:`Scratch.close` (or on leaving the ``with`` block).
Every worker must see it: the default, a directory under the system temp dir, suits the
threaded scheduler and a ``LocalCluster``; a cluster across machines needs a shared path
(``Params.scratch_dir``; ``cathodeflow.study.cluster.workers_not_seeing`` checks). Every
block of a scratch array is written before any is read, so a block file that is not there
is an error (:class:`MissingBlock`), never a block of zeros: a directory that some worker
does not share cannot pass silently as empty labels.

The arrays are :class:`BlockArray`: one LZ4-compressed file per block, written and read with
plain file calls. A Zarr array served the same purpose at about four times the cost per
block (zarr-python 3 runs each read and write through its asyncio loop in another thread:
about 42 ms against 13 ms to write and read back a 2048² int32 array in four blocks here;
a 2048² map described tiled in one thread, 1024-px chunks, three interleaved pairs of runs:
medians 1.49, 1.80, 1.59 s with Zarr scratch against 1.33, 1.31, 1.47 s with these).
Scratch is private to a run, so it needs no format others read. Each process keeps the
blocks it decoded last (64 MiB, :data:`_BLOCK_CACHE`): the tasks of one image read the same
few blocks many times (a 2048² map tiled in 1024-px chunks, one thread: 0.54 s against
0.58 s without).
"""

from __future__ import annotations

import collections
import itertools
import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import dask
import dask.array as da
import numpy as np

from ..errors import CathodeflowError, InputError
from .scheduler import compute
from .scheduler import persist as _persist
from .threads import current_worker

__all__ = ["BlockArray", "MissingBlock", "Scratch", "keep", "persist", "regular_chunks", "worker_directory"]


class MissingBlock(CathodeflowError):
    """A scratch block was read before it was written, or where its writer's directory is
    not seen: a scratch directory on a disk that not every Dask worker shares. ``exit_code``
    1: a failure of the run's setup, not of its input."""

    exit_code = 1


def worker_directory() -> str | None:
    """The local directory of the Dask worker running the calling task (where the worker
    keeps its files; a worker started later on that machine deletes the directories of
    workers that died), else None."""
    worker = current_worker()
    return None if worker is None else worker.local_directory


def regular_chunks(chunks: tuple[tuple[int, ...], ...]) -> bool:
    """True when every chunk but the last along each axis has the same size, and the last is
    not larger (the chunkings a :class:`BlockArray` can store block for block)."""
    return all(len(set(c[:-1])) <= 1 and (len(c) < 2 or c[-1] <= c[0]) for c in chunks)


def _region(key, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """``key`` (slices of step 1, or an Ellipsis) as (start, stop) per axis of ``shape``."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(n for n, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1:]
    key = key + (slice(None),) * (len(shape) - len(key))
    out = []
    for k, n in zip(key, shape):
        if not isinstance(k, slice):
            raise TypeError(f"BlockArray takes slices only, got {k!r}")
        start, stop, step = k.indices(n)
        if step != 1:
            raise TypeError(f"BlockArray takes slices of step 1, got {k!r}")
        out.append((start, max(start, stop)))
    return tuple(out)


class BlockArray:
    """A chunked array on local disk: one LZ4-compressed file per block of ``chunks``, made
    by :meth:`Scratch.array`. Reading a block that was not written raises
    :class:`MissingBlock`.

    Reads take any region of slices (the blocks it overlaps are read); writes take regions
    made of whole blocks (a block at the array's end may be partial), each block written to a
    temporary file and renamed into place, so a block is either absent or complete. Picklable
    (a path, a shape, a dtype): tasks on other processes of the machine read and write it.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], chunks: tuple[int, ...], dtype):
        self.path = str(path)
        self.shape = tuple(int(s) for s in shape)
        self.chunks = tuple(max(1, int(c)) for c in chunks)
        self.dtype = np.dtype(dtype)
        if len(self.chunks) != len(self.shape):
            raise ValueError(f"chunks {self.chunks} do not match shape {self.shape}")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __dask_tokenize__(self):
        return ("cathodeflow.BlockArray", self.path, self.shape, self.chunks, self.dtype.str)

    def _file(self, index: tuple[int, ...]) -> str:
        return os.path.join(self.path, ".".join(map(str, index)))

    def _block_region(self, index):
        return tuple((i * c, min((i + 1) * c, n)) for i, c, n in zip(index, self.chunks, self.shape))

    def _blocks(self, region):
        """Indices of the blocks that ``region`` overlaps."""
        ranges = [range(a // c, -(-b // c)) if b > a else range(0) for (a, b), c in zip(region, self.chunks)]
        return itertools.product(*ranges)

    def _read_block(self, index) -> np.ndarray:
        """The block ``index``, read-only (shared with :data:`_BLOCK_CACHE`)."""
        shape = tuple(b - a for a, b in self._block_region(index))
        path = self._file(index)
        try:
            with open(path, "rb") as f:
                stat = os.fstat(f.fileno())
                key = (path, stat.st_ino, stat.st_size, stat.st_mtime_ns)  # a rewritten block is another key
                block = _BLOCK_CACHE.get(key)
                if block is not None:
                    return block
                raw = f.read()
        except FileNotFoundError:
            raise MissingBlock(
                f"scratch block {path} is missing: it was not written, or was written where this "
                f"process cannot see it (a scratch directory on a disk that not every Dask worker shares; "
                f"give one that all workers mount with --scratch-dir, or use --tiled-images in-task)") from None
        block = np.frombuffer(_codec().decode(raw), self.dtype).reshape(shape)
        _BLOCK_CACHE.put(key, block)
        return block

    def __getitem__(self, key) -> np.ndarray:
        """The values of ``key``'s region; a region that is one whole block comes back as
        the cached block itself, read-only."""
        region = _region(key, self.shape)
        blocks = list(self._blocks(region))
        if len(blocks) == 1 and self._block_region(blocks[0]) == region:
            return self._read_block(blocks[0])
        out = np.empty(tuple(b - a for a, b in region), self.dtype)
        for index in blocks:
            block_region = self._block_region(index)
            inter = [(max(a, ba), min(b, bb)) for (a, b), (ba, bb) in zip(region, block_region)]
            src = tuple(slice(a - ba, b - ba) for (a, b), (ba, _) in zip(inter, block_region))
            dst = tuple(slice(a - ra, b - ra) for (a, b), (ra, _) in zip(inter, region))
            out[dst] = self._read_block(index)[src]
        return out

    def __setitem__(self, key, value) -> None:
        region = _region(key, self.shape)
        for (a, b), c, n in zip(region, self.chunks, self.shape):
            if a % c or (b % c and b != n):
                raise ValueError(f"BlockArray writes whole blocks of {self.chunks}; got region {region}")
        value = np.broadcast_to(np.asarray(value, dtype=self.dtype), tuple(b - a for a, b in region))
        os.makedirs(self.path, exist_ok=True)
        for index in self._blocks(region):
            block_region = self._block_region(index)
            src = tuple(slice(ba - a, bb - a) for (ba, bb), (a, _) in zip(block_region, region))
            data = _codec().encode(np.ascontiguousarray(value[src]))
            final = self._file(index)
            tmp = f"{final}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, final)

    def to_dask(self, chunks=None) -> da.Array:
        """The array as a Dask array of ``chunks`` (default: its blocks), read lazily by one
        task per chunk (this small object is inlined in each, not a task of its own)."""
        return da.from_array(self, chunks=chunks or self.chunks, lock=False, asarray=False, fancy=False,
                             inline_array=True, meta=np.empty((0,) * self.ndim, self.dtype))


class _BlockCache:
    """The blocks this process read last, decoded, up to ``max_bytes`` (least recently used
    first out): the tasks of a tiled run read the same few blocks many times (each object
    crop its blocks of the phase map and of the labels), and decoding is most of a read."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            block = self._items.get(key)
            if block is not None:
                self._items.move_to_end(key)
            return block

    def put(self, key, block: np.ndarray) -> None:
        if block.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = block
            self._bytes += block.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    def drop(self, prefix: str) -> None:
        """Forget the blocks of the files whose path starts with ``prefix``."""
        with self._lock:
            for key in [k for k in self._items if k[0].startswith(prefix)]:
                self._bytes -= self._items.pop(key).nbytes


#: Decoded blocks kept per process: 64 MiB, four 2048² int32 blocks or sixteen 1024² ones.
_BLOCK_CACHE = _BlockCache(64 << 20)


def _codec():
    from numcodecs import LZ4

    return LZ4(acceleration=1)


class Scratch:
    """A temporary directory of :class:`BlockArray` standing in for persisted Dask arrays.

    Parameters
    ----------
    directory : str or os.PathLike, optional
        Where the temporary directory is made; it must exist. Default: in a Dask worker's
        task, the worker's local directory (:func:`worker_directory`: a task whose worker is
        killed leaves its scratch where the next worker on that machine deletes it), else
        the system temp dir.
    """

    def __init__(self, *, directory: str | os.PathLike | None = None):
        if directory is None:
            directory = worker_directory()
        elif not Path(directory).is_dir():
            raise InputError(f"scratch directory {str(directory)!r} does not exist; expected an existing directory")
        self._tmp = tempfile.TemporaryDirectory(prefix="cathodeflow-scratch-", dir=directory)
        self.path = Path(self._tmp.name)
        self._names = itertools.count()

    def array(self, shape: tuple[int, ...], chunks: tuple[int, ...], dtype) -> BlockArray:
        """A new, empty :class:`BlockArray` of ``shape`` stored in blocks of ``chunks``
        (every value 0 until written)."""
        return BlockArray(self.path / f"a{next(self._names)}", shape, chunks, dtype)

    def persist(self, *arrays: da.Array, client=None) -> list[da.Array]:
        """Compute ``arrays`` into new :class:`BlockArray` here.

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
            compute(done, scheduler=client)
        return [t.to_dask(chunks=x.chunks) for t, x in zip(targets, arrays)]

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
        (summaries,) = compute(jobs, scheduler=client)
        load = dask.delayed(_load_value, pure=True)
        return list(summaries), [load(p) for p in paths]

    def close(self) -> None:
        """Delete the directory and everything in it."""
        _BLOCK_CACHE.drop(str(self.path) + os.sep)
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
    return list(_persist(*arrays))


def keep(values: Sequence, summarize: Callable[[Any], Any], *, scratch: Scratch | None = None) -> tuple[list, list]:
    """Compute Dask values and keep them off the client: in ``scratch`` when given (files,
    :meth:`Scratch.spill`), else persisted where the scheduler computes them (in memory).

    Returns ``summarize(value)`` of each value (computed now, on the client) and, for each
    value, a Dask object that computes to it cheaply (a file read or a persisted key).
    """
    if scratch is not None:
        return scratch.spill(values, summarize)
    (kept,) = _persist(list(values))
    task = dask.delayed(summarize, pure=True)
    (summaries,) = compute([task(v) for v in kept])
    return list(summaries), list(kept)
