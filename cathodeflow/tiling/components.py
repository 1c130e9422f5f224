"""Connected components, object boxes and object-crop work on chunked label images.

Generic machinery for every stage that labels objects across Dask chunks or works on
object crops instead of whole-image passes (DESIGN §5):

* :func:`label_components` — global connected-component labels of a chunked mask: one
  ``scipy.ndimage.label`` per chunk, offsets, a graph of the label pairs that touch across
  chunk faces (diagonal pairs too for 8-connectivity), ``scipy.sparse.csgraph``
  connected components, and a relabel lookup per chunk. Unlike a graph of one task per
  face pair, the merge runs on the client on a few small arrays, so the cost grows with the
  number of pixels on chunk faces, not with the number of chunks squared. Labels are
  canonical: numbered 1..n in the raster order of each component's first pixel, so the
  result does not depend on the chunking at all.
* :func:`object_boxes` — bounding boxes of all labels (per chunk, merged by min/max).
* :func:`map_object_crops` — run a numpy kernel on the crop of each object (bounding box
  plus a margin), many small objects per task; crops are read from the chunks they
  overlap, never from a whole image. A task reads the blocks it needs itself unless they
  are already in memory: a block task shared by several object tasks would be held by the
  scheduler until its last reader ran, which for a large image kept rows of chunks in
  memory (issue 9).
* :func:`paste_crops` — assemble per-object crop results back into a chunked array; each
  output chunk pulls only the pieces that intersect it.
* :func:`relabel` — map a label array through a lookup table, chunk by chunk.

Numpy kernels are separate from the Dask glue: ``_label_block``, ``_first_pixels``,
``_block_boxes`` and ``_paste_block`` work on plain arrays.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from itertools import product
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import dask
import dask.array as da
import numba
import numpy as np
import scipy.ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import InputError
from .scheduler import compute, persist
from .scratch import Scratch, regular_chunks

__all__ = [
    "label_components",
    "object_boxes",
    "ObjectBatch",
    "map_object_crops",
    "Piece",
    "paste_crops",
    "relabel",
    "first_pixels",
    "crop_box",
]

_UINT32_MAX = int(np.iinfo(np.uint32).max)


# --------------------------------------------------------------------------------------
# numpy / numba kernels
# --------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _first_pixels_kernel(lab, n):  # pragma: no cover - compiled
    first = np.full(n + 1, -1, np.int64)
    h, w = lab.shape
    for y in range(h):
        for x in range(w):
            v = lab[y, x]
            if v > 0 and first[v] < 0:
                first[v] = y * w + x
    return first


def first_pixels(labels: np.ndarray, n: int) -> np.ndarray:
    """Raster index of the first pixel of each label of a 2D label image.

    Parameters
    ----------
    labels : (H, W) ndarray of int
        Labels 0..n, 0 is background.
    n : int
        Largest label.

    Returns
    -------
    first : (n + 1,) ndarray of int64
        ``first[k] = y * W + x`` of the first pixel (row-major order) with label k, or -1
        when k does not occur; ``first[0]`` is -1.
    """
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels must be 2D, got shape {labels.shape}")
    if labels.size == 0:
        return np.full(int(n) + 1, -1, np.int64)
    return _first_pixels_kernel(labels, int(n))


@numba.njit(cache=True, nogil=True)
def _boxes_kernel(lab, lo, m):  # pragma: no cover - compiled
    h, w = lab.shape
    y0 = np.full(m, h, np.int64)
    y1 = np.full(m, -1, np.int64)
    x0 = np.full(m, w, np.int64)
    x1 = np.full(m, -1, np.int64)
    for y in range(h):
        for x in range(w):
            v = lab[y, x]
            if v != 0:
                i = np.int64(v) - lo
                if y < y0[i]:
                    y0[i] = y
                if y > y1[i]:
                    y1[i] = y
                if x < x0[i]:
                    x0[i] = x
                if x > x1[i]:
                    x1[i] = x
    return y0, y1, x0, x1


def _block_boxes(block: np.ndarray, y_off: int, x_off: int):
    """Boxes of the labels in one block: (ids, y0, y1, x0, x1), inclusive, global coords."""
    empty = np.zeros(0, np.int64)
    if block.size == 0:
        return empty, empty, empty, empty, empty
    block = np.ascontiguousarray(block)
    nz = block[block != 0]
    if nz.size == 0:
        return empty, empty, empty, empty, empty
    lo, hi = int(nz.min()), int(nz.max())
    if hi - lo + 1 <= 4 * block.size + 4096:
        y0, y1, x0, x1 = _boxes_kernel(block, np.int64(lo), hi - lo + 1)
        present = y1 >= 0
        ids = np.flatnonzero(present).astype(np.int64) + lo
    else:  # labels too sparse for a dense table: compress them first
        ids, inv = np.unique(block, return_inverse=True)
        inv = inv.reshape(block.shape).astype(np.int64)
        y0, y1, x0, x1 = _boxes_kernel(inv, np.int64(0), ids.size)
        present = (y1 >= 0) & (ids != 0)
        ids = ids[present].astype(np.int64)
    return ids, y0[present] + y_off, y1[present] + y_off, x0[present] + x_off, x1[present] + x_off


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2):
        raise InputError(f"connectivity must be 1 (4-neighbours) or 2 (8-neighbours), got {connectivity!r}")
    return ndi.generate_binary_structure(2, connectivity)


def _label_block(block: np.ndarray, connectivity: int, y_off: int, x_off: int, width: int):
    """Local labels of one mask block, their count and global first-pixel raster indices."""
    lab, n = ndi.label(np.asarray(block, dtype=bool), structure=_structure(connectivity), output=np.int32)
    if lab.size == 0:
        return lab, 0, np.zeros(0, np.int64)
    first_local = _first_pixels_kernel(lab, n)[1:]
    fy, fx = np.divmod(first_local, lab.shape[1])
    return lab, int(n), (fy + y_off) * np.int64(width) + (fx + x_off)


def _block_meta(res, need: tuple[bool, bool, bool, bool]):
    """(n, first, top row, bottom row, left col, right col) of a labelled block."""
    lab, n, first = res
    top = lab[0].copy() if need[0] else None
    bottom = lab[-1].copy() if need[1] else None
    left = lab[:, 0].copy() if need[2] else None
    right = lab[:, -1].copy() if need[3] else None
    return n, first, top, bottom, left, right


def _label_block_to_store(block, connectivity: int, y_off: int, x_off: int, width: int, need, store):
    """:func:`_label_block` writing the local labels into ``store`` (a scratch array) at the
    block's place; returns only :func:`_block_meta`."""
    res = _label_block(block, connectivity, y_off, x_off, width)
    lab = res[0]
    store[y_off : y_off + lab.shape[0], x_off : x_off + lab.shape[1]] = lab
    return _block_meta(res, need)


def _apply_lut_block(res, lut: np.ndarray) -> np.ndarray:
    lab = res[0] if isinstance(res, tuple) else res
    return lut[lab]


def _face_pairs(a: np.ndarray, b: np.ndarray, connectivity: int):
    """Label pairs (u, v) between two adjacent pixel lines a and b (same length)."""
    us, vs = [a], [b]
    if connectivity == 2 and a.size > 1:
        us += [a[:-1], a[1:]]
        vs += [b[1:], b[:-1]]
    u = np.concatenate(us)
    v = np.concatenate(vs)
    keep = (u > 0) & (v > 0)
    return u[keep], v[keep]


# --------------------------------------------------------------------------------------
# label_components
# --------------------------------------------------------------------------------------
def _as_2d_dask(x, name: str) -> da.Array:
    if not isinstance(x, da.Array):
        x = da.asarray(np.asarray(x))
    if x.ndim != 2:
        raise InputError(f"{name} must be a 2D array, got shape {x.shape}")
    return x


def label_components(mask, *, connectivity: int = 1, scratch: Scratch | None = None) -> tuple[da.Array, int]:
    """Global connected-component labels of a chunked 2D mask.

    Each chunk is labelled with ``scipy.ndimage.label``; labels that touch across a chunk
    face (for ``connectivity=2`` also diagonally, including across chunk corners) are
    merged with ``scipy.sparse.csgraph.connected_components`` on the client, and each chunk
    is relabelled by a lookup table. The per-chunk labels are persisted first (so upstream
    work runs once): in ``scratch`` when given (each labelling task writes its block there
    and only the chunk's label count, first pixels and edge lines travel), else in memory.
    The returned array is lazy on top of them.

    Parameters
    ----------
    mask : (H, W) dask array (or array-like) of bool
        Foreground; any non-zero value counts as foreground.
    connectivity : {1, 2}
        1: 4-neighbours, 2: 8-neighbours.
    scratch : Scratch, optional
        Keep the per-chunk labels in this on-disk store instead of memory; it must outlive
        the returned array's computations.

    Returns
    -------
    labels : (H, W) dask array of uint32 (uint64 when n ≥ 2³²)
        Same chunks as ``mask``; 0 is background; components are numbered 1..n in the
        raster (row-major) order of their first pixel, so the result is identical for any
        chunking and equals ``ndi.label`` of the whole mask up to this renumbering.
    n : int
        Number of components.
    """
    _structure(connectivity)  # validates
    mask = _as_2d_dask(mask, "mask")
    width = mask.shape[1]
    if mask.size == 0:
        return da.zeros(mask.shape, dtype=np.uint32, chunks=mask.chunks), 0
    if any(c == 0 for cs in mask.chunks for c in cs):  # zero-size chunks break face pairs
        mask = mask.rechunk(tuple(tuple(c for c in cs if c) for cs in mask.chunks))
    out_chunks = mask.chunks
    if scratch is not None and not regular_chunks(mask.chunks):  # store blocks must not share
        mask = mask.rechunk(tuple(max(c) for c in mask.chunks))  # a stored block
    ychunks, xchunks = mask.chunks
    ystarts = np.concatenate([[0], np.cumsum(ychunks)[:-1]]).astype(int)
    xstarts = np.concatenate([[0], np.cumsum(xchunks)[:-1]]).astype(int)
    nby, nbx = len(ychunks), len(xchunks)
    blocks = mask.to_delayed(optimize_graph=False)
    need = {(i, j): (i > 0, i < nby - 1, j > 0, j < nbx - 1) for i, j in product(range(nby), range(nbx))}
    if scratch is not None:
        store = scratch.array(mask.shape, (max(ychunks), max(xchunks)), np.int32)
        task = dask.delayed(_label_block_to_store, pure=True)
        metas_d = [
            task(blocks[i, j], connectivity, int(ystarts[i]), int(xstarts[j]), width, need[i, j], store)
            for i, j in product(range(nby), range(nbx))
        ]
        (metas,) = compute(metas_d)
        stage1 = store.to_dask(chunks=mask.chunks).to_delayed(optimize_graph=False)
    else:
        label_block = dask.delayed(_label_block, pure=True)
        stage1 = np.empty((nby, nbx), dtype=object)
        for i, j in product(range(nby), range(nbx)):
            stage1[i, j] = label_block(blocks[i, j], connectivity, int(ystarts[i]), int(xstarts[j]), width)
        (persisted,) = persist(stage1.ravel().tolist())
        stage1 = np.empty((nby, nbx), dtype=object)
        for k, d in enumerate(persisted):
            stage1[k // nbx, k % nbx] = d
        meta_task = dask.delayed(_block_meta, pure=True)
        metas_d = [meta_task(stage1[i, j], need[i, j]) for i, j in product(range(nby), range(nbx))]
        (metas,) = compute(metas_d)
    counts = np.array([m[0] for m in metas], dtype=np.int64).reshape(nby, nbx)
    offsets = np.concatenate([[0], np.cumsum(counts.ravel())]).astype(np.int64)
    total = int(offsets[-1])

    def glob(line, k):
        line = line.astype(np.int64)
        return np.where(line > 0, line + offsets[k], 0)

    us, vs = [], []
    # horizontal chunk boundaries: full-width rows above and below
    for i in range(1, nby):
        above = np.concatenate([glob(metas[(i - 1) * nbx + j][3], (i - 1) * nbx + j) for j in range(nbx)])
        below = np.concatenate([glob(metas[i * nbx + j][2], i * nbx + j) for j in range(nbx)])
        u, v = _face_pairs(above, below, connectivity)
        us.append(u)
        vs.append(v)
    for j in range(1, nbx):
        left = np.concatenate([glob(metas[i * nbx + j - 1][5], i * nbx + j - 1) for i in range(nby)])
        right = np.concatenate([glob(metas[i * nbx + j][4], i * nbx + j) for i in range(nby)])
        u, v = _face_pairs(left, right, connectivity)
        us.append(u)
        vs.append(v)
    firsts = np.concatenate([np.zeros(1, np.int64)] + [m[1] for m in metas])  # index = provisional id
    if us and sum(u.size for u in us):
        u = np.concatenate(us)
        v = np.concatenate(vs)
        graph = coo_matrix((np.ones(u.size, np.int8), (u, v)), shape=(total + 1, total + 1)).tocsr()
        ncomp, comp = connected_components(graph, directed=False)
        # comp[0] is background's own component; ids of real components follow
        first_of = np.full(ncomp, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first_of, comp[1:], firsts[1:])
        first_of[comp[0]] = -1
    else:
        comp = np.arange(total + 1)
        first_of = firsts.copy()
        first_of[0] = -1
        ncomp = total + 1
    n = ncomp - 1
    order = np.argsort(first_of, kind="stable")  # background (-1) first
    rank = np.empty(ncomp, np.int64)
    rank[order] = np.arange(ncomp)
    dtype = np.uint32 if n <= _UINT32_MAX else np.uint64
    lut_global = rank[comp].astype(dtype)
    apply = dask.delayed(_apply_lut_block, pure=True)
    rows = []
    for i in range(nby):
        row = []
        for j in range(nbx):
            k = i * nbx + j
            lut = np.concatenate([np.zeros(1, dtype), lut_global[offsets[k] + 1 : offsets[k + 1] + 1]])
            row.append(da.from_delayed(apply(stage1[i, j], lut), (ychunks[i], xchunks[j]), dtype=dtype))
        rows.append(row)
    labels = da.block(rows)
    return (labels if labels.chunks == out_chunks else labels.rechunk(out_chunks)), n


# --------------------------------------------------------------------------------------
# object_boxes
# --------------------------------------------------------------------------------------
def object_boxes(labels) -> dict[int, tuple[slice, slice]]:
    """Bounding boxes of every label of a chunked 2D label array (computes).

    Parameters
    ----------
    labels : (H, W) dask array (or array-like) of int
        0 is background.

    Returns
    -------
    boxes : dict
        ``{label: (slice(y0, y1), slice(x0, x1))}`` with the smallest box holding all pixels
        of the label (end exclusive, like ``ndi.find_objects``), sorted by label.
    """
    labels = _as_2d_dask(labels, "labels")
    if labels.size == 0:
        return {}
    ychunks, xchunks = labels.chunks
    ystarts = np.concatenate([[0], np.cumsum(ychunks)[:-1]]).astype(int)
    xstarts = np.concatenate([[0], np.cumsum(xchunks)[:-1]]).astype(int)
    blocks = labels.to_delayed(optimize_graph=False)
    task = dask.delayed(_block_boxes, pure=True)
    parts_d = [
        task(blocks[i, j], int(ystarts[i]), int(xstarts[j]))
        for i, j in product(range(len(ychunks)), range(len(xchunks)))
    ]
    (parts,) = compute(parts_d)
    ids = np.concatenate([p[0] for p in parts])
    if ids.size == 0:
        return {}
    cols = [np.concatenate([p[c] for p in parts]) for c in range(1, 5)]
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    cols = [c[order] for c in cols]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    uid = ids[starts]
    y0 = np.minimum.reduceat(cols[0], starts)
    y1 = np.maximum.reduceat(cols[1], starts)
    x0 = np.minimum.reduceat(cols[2], starts)
    x1 = np.maximum.reduceat(cols[3], starts)
    return {
        int(k): (slice(int(a), int(b) + 1), slice(int(c), int(d) + 1))
        for k, a, b, c, d in zip(uid.tolist(), y0.tolist(), y1.tolist(), x0.tolist(), x1.tolist())
    }


def crop_box(box: tuple[slice, slice], margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """``box`` grown by ``margin`` pixels on every side, clipped to an image of ``shape``."""
    return tuple(
        slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(box, shape)
    )  # type: ignore[return-value]


# --------------------------------------------------------------------------------------
# map_object_crops
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectBatch:
    """Objects processed by one task of :func:`map_object_crops`.

    Attributes
    ----------
    ids : tuple of int
        Object ids, in the order of the kernel results.
    boxes : tuple of (slice, slice)
        Crop box of each object (bounding box grown by the margin, clipped to the image),
        in image coordinates.
    region : (slice, slice)
        Union of the crop boxes: the part of the inputs this task reads.
    result : dask.delayed.Delayed
        Computes to a list with one kernel result per object. Persist it (``dask.persist``)
        when several later steps read it.
    """

    ids: tuple[int, ...]
    boxes: tuple[tuple[slice, slice], ...]
    region: tuple[slice, slice]
    result: Any


def _chunk_bounds(chunks: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _blocks_in(region: tuple[slice, slice], ybounds: np.ndarray, xbounds: np.ndarray):
    """Block indices (i, j) intersecting a region and, for each, (dst slices, src slices)."""
    out = []
    i0 = int(np.searchsorted(ybounds, region[0].start, side="right") - 1)
    i1 = int(np.searchsorted(ybounds, region[0].stop, side="left"))
    j0 = int(np.searchsorted(xbounds, region[1].start, side="right") - 1)
    j1 = int(np.searchsorted(xbounds, region[1].stop, side="left"))
    for i in range(i0, i1):
        ya, yb = max(ybounds[i], region[0].start), min(ybounds[i + 1], region[0].stop)
        if ya >= yb:
            continue
        for j in range(j0, j1):
            xa, xb = max(xbounds[j], region[1].start), min(xbounds[j + 1], region[1].stop)
            if xa >= xb:
                continue
            dst = (slice(int(ya - region[0].start), int(yb - region[0].start)),
                   slice(int(xa - region[1].start), int(xb - region[1].start)))
            src = (slice(int(ya - ybounds[i]), int(yb - ybounds[i])),
                   slice(int(xa - xbounds[j]), int(xb - xbounds[j])))
            out.append(((i, j), dst, src))
    return out


def _assemble(shape, dtype, placements, blocks):
    region = np.empty(shape, dtype=dtype)
    for (dst, src), block in zip(placements, blocks):
        region[dst] = np.asarray(block)[src]
    return region


class _Read:
    """Blocks of a dask array that one task computes itself (see :func:`map_object_crops`).

    Holds the low-level graph culled to those blocks; not a dask collection, so
    ``dask.delayed`` passes it on untouched instead of making the blocks shared
    dependencies of the task (which the scheduler would hold until their last reader ran).
    """

    __slots__ = ("graph", "keys")

    def __init__(self, graph: dict, keys: list):
        from dask.optimization import cull

        self.graph, _ = cull(graph, keys)
        self.keys = keys

    def __dask_tokenize__(self):  # keys of a dask array name their content: cheap and exact
        return ("map-object-crops-read", self.keys)

    def blocks(self):
        """Compute the blocks one after another (synchronously, in this thread)."""
        for key in self.keys:
            yield dask.get(self.graph, key)


def _materialized(x: da.Array) -> bool:
    """True when every block of ``x`` is data in its graph (persisted in memory or on a
    cluster), False when some block is a task still to run (a read from a store, ...)."""
    graph = x.__dask_graph__()
    future = getattr(sys.modules.get("distributed"), "Future", None)
    for key in da.core.flatten(x.__dask_keys__()):
        v = graph[key]
        if not (isinstance(v, np.ndarray) or (future is not None and isinstance(v, future))):
            return False
    return True


def _run_batch(kernel, ids, boxes, region, layouts, kernel_kwargs, *blocks):
    """Assemble the region of each input from its blocks, run ``kernel`` on every crop.

    ``layouts[k] = (shape, dtype, placements, read)``: the blocks of input k are the next
    ``len(placements)`` of ``blocks``, or computed here by ``read`` (a :class:`_Read`).
    """
    regions = []
    pos = 0
    for shape, dtype, placements, read in layouts:
        if read is None:
            parts = blocks[pos : pos + len(placements)]
            pos += len(placements)
        else:
            parts = read.blocks()
        regions.append(_assemble(shape, dtype, placements, parts))
    out = []
    for oid, box in zip(ids, boxes):
        rel = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region))
        out.append(kernel(oid, box, *[reg[rel] for reg in regions], **kernel_kwargs))
    return out


def _group_objects(ids, crops, grid_bounds, max_batch_px: int, max_batch_objects: int):
    """Group objects spatially: by the chunk holding their crop's top-left corner, then
    greedily (raster order) while the union box stays within ``max_batch_px``."""
    ybounds, xbounds = grid_bounds
    keyed = []
    for oid, c in zip(ids, crops):
        ci = int(np.searchsorted(ybounds, c[0].start, side="right") - 1)
        cj = int(np.searchsorted(xbounds, c[1].start, side="right") - 1)
        keyed.append(((ci, cj, c[0].start, c[1].start, oid), oid, c))
    keyed.sort(key=lambda t: t[0])
    groups: list[list[tuple[int, tuple[slice, slice]]]] = []
    cur: list = []
    cur_cell = None
    u = None
    for key, oid, c in keyed:
        cell = key[:2]
        if cur and cell == cur_cell and len(cur) < max_batch_objects:
            nu = (min(u[0], c[0].start), max(u[1], c[0].stop), min(u[2], c[1].start), max(u[3], c[1].stop))
            if (nu[1] - nu[0]) * (nu[3] - nu[2]) <= max_batch_px:
                cur.append((oid, c))
                u = nu
                continue
        if cur:
            groups.append(cur)
        cur = [(oid, c)]
        cur_cell = cell
        u = (c[0].start, c[0].stop, c[1].start, c[1].stop)
    if cur:
        groups.append(cur)
    return groups


def map_object_crops(
    kernel: Callable[..., Any],
    arrays: Sequence[da.Array],
    boxes: Mapping[int, tuple[slice, slice]],
    *,
    margin: int = 1,
    max_batch_px: int = 1 << 22,
    max_batch_objects: int = 4096,
    kernel_kwargs: Mapping[str, Any] | None = None,
) -> list[ObjectBatch]:
    """Run a numpy kernel on the crop of every object, many objects per Dask task (lazy).

    Each object's crop is its bounding box grown by ``margin`` pixels and clipped to the
    image. Objects are grouped spatially (by chunk, then while the union of their crops
    stays within ``max_batch_px`` pixels); one task per group reads that union from the
    chunks of each input it overlaps and calls
    ``kernel(object_id, crop_box, *crops, **kernel_kwargs)`` for each object of the group.

    Parameters
    ----------
    kernel : callable
        ``kernel(object_id: int, crop_box: (slice, slice), *crops: ndarray, **kwargs)``;
        ``crops[k]`` is ``arrays[k][crop_box]``. Must be a picklable top-level function
        for distributed schedulers.
    arrays : sequence of (H, W) dask arrays
        Inputs, all of the same shape (their chunks may differ). Persist them first when
        they are expensive (best in a :class:`~cathodeflow.tiling.scratch.Scratch`): an
        input whose blocks are in memory (persisted) is handed to each task as the blocks
        its region overlaps; of any other input, each task computes the blocks its region
        overlaps itself, one at a time (the graph culled to them), so no block is kept in
        memory between tasks and memory is bounded by the tasks in flight, whatever the
        image size. A block shared by several tasks is then read several times.
    boxes : mapping {object_id: (slice, slice)}
        Bounding boxes (as from :func:`object_boxes`); only these objects are processed.
    margin : int
        Pixels added around each bounding box (before clipping to the image).
    max_batch_px : int
        Largest union-of-crops area of one task (one object alone may exceed it).
    max_batch_objects : int
        Largest number of objects of one task.
    kernel_kwargs : mapping, optional
        Keyword arguments passed to every kernel call.

    Returns
    -------
    batches : list of ObjectBatch
        Lazy: ``batch.result`` computes to the list of kernel results of ``batch.ids``.
    """
    if not arrays:
        raise InputError("arrays must hold at least one 2D dask array, got none")
    arrays = [_as_2d_dask(a, f"arrays[{k}]") for k, a in enumerate(arrays)]
    shape = arrays[0].shape
    for k, a in enumerate(arrays):
        if a.shape != shape:
            raise InputError(f"arrays[{k}] has shape {a.shape}, expected {shape} like arrays[0]")
    if margin < 0:
        raise InputError(f"margin must be >= 0, got {margin}")
    if not boxes:
        return []
    ids = list(boxes)
    crops = [crop_box(boxes[i], margin, shape) for i in ids]
    bounds = [(_chunk_bounds(a.chunks[0]), _chunk_bounds(a.chunks[1])) for a in arrays]
    held = [_materialized(a) for a in arrays]
    blocks = [a.to_delayed(optimize_graph=False) if h else None for a, h in zip(arrays, held)]
    graphs = [None if h else dict(a.__dask_graph__()) for a, h in zip(arrays, held)]
    groups = _group_objects(ids, crops, bounds[0], int(max_batch_px), int(max_batch_objects))
    run = dask.delayed(_run_batch, pure=True)
    kw = dict(kernel_kwargs or {})
    out = []
    for group in groups:
        gids = tuple(g[0] for g in group)
        gboxes = tuple(g[1] for g in group)
        region = (
            slice(min(b[0].start for b in gboxes), max(b[0].stop for b in gboxes)),
            slice(min(b[1].start for b in gboxes), max(b[1].stop for b in gboxes)),
        )
        rshape = (region[0].stop - region[0].start, region[1].stop - region[1].start)
        layouts, deps = [], []
        for a, (yb, xb), blk, graph in zip(arrays, bounds, blocks, graphs):
            places = _blocks_in(region, yb, xb)
            placements = [(dst, src) for _, dst, src in places]
            if graph is None:
                layouts.append((rshape, a.dtype, placements, None))
                deps.extend(blk[ij] for ij, _, _ in places)
            else:
                layouts.append((rshape, a.dtype, placements, _Read(graph, [(a.name, *ij) for ij, _, _ in places])))
        result = run(kernel, gids, gboxes, region, layouts, kw, *deps)
        out.append(ObjectBatch(gids, gboxes, region, result))
    return out


# --------------------------------------------------------------------------------------
# paste_crops / relabel
# --------------------------------------------------------------------------------------
class Piece(NamedTuple):
    """One crop to paste into a chunked array (see :func:`paste_crops`).

    Attributes
    ----------
    box : (slice, slice)
        Where the crop goes, in image coordinates (inside the image).
    source : ndarray, Delayed or Future
        The crop, or a container of it (e.g. an :class:`ObjectBatch` result).
    path : tuple
        Indices applied one after another to the computed ``source`` to reach the crop
        (e.g. ``(i, 2)`` for ``result[i][2]``); ``()`` when ``source`` is the crop.
    values : ndarray, int or None
        How crop values v > 0 are written: ``values[v]`` for a lookup table, ``v + values``
        for an int offset, ``v`` for None. Crop pixels with v = 0 are left unchanged.
    """

    box: tuple[slice, slice]
    source: Any
    path: tuple = ()
    values: Any = None


def _paste_block(shape, dtype, base, specs, *sources):
    """Write pieces into one output block. specs: (source index, path, dst, src, values)."""
    out = np.zeros(shape, dtype=dtype) if base is None else np.array(base, dtype=dtype, copy=True)
    for si, path, dst, src, values in specs:
        crop = sources[si]
        for p in path:
            crop = crop[p]
        part = np.asarray(crop)[src]
        sel = part > 0
        if values is None:
            vals = part[sel]
        elif isinstance(values, (int, np.integer)):
            vals = part[sel].astype(np.int64) + int(values)
        else:
            vals = np.asarray(values)[part[sel]]
        view = out[dst]
        view[sel] = vals
    return out


def paste_crops(
    shape: tuple[int, int],
    chunks,
    pieces: Sequence[Piece],
    dtype,
    *,
    base: da.Array | None = None,
) -> da.Array:
    """Assemble crops into a chunked 2D array (lazy).

    Parameters
    ----------
    shape : (H, W)
        Output shape.
    chunks : dask chunks spec
        Output chunks (ignored when ``base`` is given: its chunks are used).
    pieces : sequence of Piece
        Crops and where they go; pixels of a crop with value 0 are not written. Where the
        non-zero pixels of two pieces overlap, the later piece wins.
    dtype : numpy dtype
        Output dtype.
    base : (H, W) dask array, optional
        Values of the pixels no piece writes (default 0).

    Returns
    -------
    out : (H, W) dask array of ``dtype``
        Each output chunk task depends only on the pieces that intersect it.
    """
    shape = tuple(int(s) for s in shape)
    if base is not None:
        base = _as_2d_dask(base, "base")
        if base.shape != shape:
            raise InputError(f"base has shape {base.shape}, expected {shape}")
        chunks = base.chunks
        base_blocks = base.to_delayed(optimize_graph=False)
    else:
        chunks = da.core.normalize_chunks(chunks, shape)
        base_blocks = None
    dtype = np.dtype(dtype)
    ybounds, xbounds = _chunk_bounds(chunks[0]), _chunk_bounds(chunks[1])
    nby, nbx = len(chunks[0]), len(chunks[1])
    if pieces:
        by0 = np.array([p.box[0].start for p in pieces])
        by1 = np.array([p.box[0].stop for p in pieces])
        bx0 = np.array([p.box[1].start for p in pieces])
        bx1 = np.array([p.box[1].stop for p in pieces])
    task = dask.delayed(_paste_block, pure=True)
    rows = []
    for i in range(nby):
        row = []
        for j in range(nbx):
            ya, yb, xa, xb = ybounds[i], ybounds[i + 1], xbounds[j], xbounds[j + 1]
            bshape = (int(yb - ya), int(xb - xa))
            specs, sources, src_index = [], [], {}
            if pieces and bshape[0] and bshape[1]:
                hit = np.flatnonzero((by0 < yb) & (by1 > ya) & (bx0 < xb) & (bx1 > xa))
                for k in hit.tolist():
                    p = pieces[k]
                    key = id(p.source)
                    if key not in src_index:
                        src_index[key] = len(sources)
                        sources.append(p.source)
                    y0, y1 = max(ya, p.box[0].start), min(yb, p.box[0].stop)
                    x0, x1 = max(xa, p.box[1].start), min(xb, p.box[1].stop)
                    dst = (slice(int(y0 - ya), int(y1 - ya)), slice(int(x0 - xa), int(x1 - xa)))
                    src = (slice(int(y0 - p.box[0].start), int(y1 - p.box[0].start)),
                           slice(int(x0 - p.box[1].start), int(x1 - p.box[1].start)))
                    specs.append((src_index[id(p.source)], tuple(p.path), dst, src, p.values))
            b = None if base_blocks is None else base_blocks[i, j]
            if not specs and b is not None:
                row.append(base.blocks[i, j].astype(dtype))
                continue
            if not specs:
                row.append(da.zeros(bshape, dtype=dtype, chunks=bshape))
                continue
            row.append(da.from_delayed(task(bshape, dtype, b, specs, *sources), bshape, dtype=dtype))
        rows.append(row)
    if nby == 0 or nbx == 0:
        return da.zeros(shape, dtype=dtype, chunks=chunks)
    return da.block(rows)


def _lut_block(block: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return lut[block]


def relabel(labels: da.Array, lut: np.ndarray) -> da.Array:
    """Map a label array through a lookup table (``lut[labels]``) chunk by chunk (lazy).

    The table is one graph key shared by all chunks (not copied into every task).

    Parameters
    ----------
    labels : (H, W) dask array of non-negative int
    lut : (n + 1,) ndarray
        ``lut[k]`` is the new value of label k; its dtype is the output dtype.
    """
    labels = _as_2d_dask(labels, "labels")
    lut = np.asarray(lut)
    lut_d = dask.delayed(lut, pure=True, traverse=False)
    blocks = labels.to_delayed(optimize_graph=False)
    task = dask.delayed(_lut_block, pure=True)
    rows = []
    for i in range(blocks.shape[0]):
        rows.append([
            da.from_delayed(task(blocks[i, j], lut_d), (labels.chunks[0][i], labels.chunks[1][j]), dtype=lut.dtype)
            for j in range(blocks.shape[1])
        ])
    if not rows or not rows[0]:
        return da.zeros(labels.shape, dtype=lut.dtype, chunks=labels.chunks)
    return da.block(rows)
