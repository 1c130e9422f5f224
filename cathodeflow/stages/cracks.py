"""Crack-wise segmentation S_c (paper §2.3.2, eq. 2) and the raw per-crack measurements
behind eq. 13–16.

Conventions (DESIGN §4.4, items 1–4, a contract):

1. The crack curves L_1, …, L_{n_c} are the 8-connected components of the Lee skeleton of
   the crack phase {S = 2} (``skimage.morphology.skeletonize(method="lee")``).
2. Every crack pixel x goes to the curve of its nearest skeleton pixel among *all* curves
   (Euclidean distance between pixel centres), eq. 2. Ties (several skeleton pixels at the
   same smallest distance) go to the skeleton pixel with the smallest global raster index
   ``row * width + col``. This rule does not depend on crops or chunks, so tiled == whole.
3. r_disk(x) of eq. 15 is the distance between pixel centres from a skeleton pixel x to the
   nearest pixel y of the image with S(y) < 2; the image frame is *not* background (as in
   ``scipy.ndimage.distance_transform_edt(S == 2)``), so a 1-px-wide crack has b = 2η. If
   the image holds no pixel with S < 2 at all, r_disk = +inf (the minimum over an empty set).
4. Crack ids are 1..n_c, numbered by the raster order of each curve's first skeleton pixel.

Raw measurements per crack (the table): ``area_px`` = #C, ``skeleton_px`` = #L and
``width_sum_px`` = Σ_{x∈L} 2 r_disk(x) in pixels, so that (η the pixel size in µm)
d = 2η√(#C/π) (eq. 13), ℓ = η·#L (eq. 14) and b = η·width_sum_px/#L (eq. 16). For the
crack's position and shape (:data:`PIXEL_STATS`): the integer sums Σy, Σx, Σy², Σx², Σxy
over the pixels of C (y, x the row and column indices) and their bounding box (smallest and
largest y and x). All are reduced exactly across chunks (integer sums, min, max).

How it stays exact without whole-image skeleton and distance passes (the only whole-image
passes are ``S == 2``, one ``ndi.label`` and ``find_objects``, per chunk in the Dask path):

- The Lee skeleton of an 8-connected component depends on that component only (the thinning
  looks at 3×3 neighbourhoods, and pixels of different components are never neighbours), so
  each component is skeletonized on its own crop (its bounding box plus a 1-px ring, clipped
  to the image), small crops packed 1 px apart into one canvas to save per-call overhead.
- The open disk of radius r_disk(x) around a skeleton pixel x of component A holds crack
  pixels only and is connected, so it lies in A: r_disk(x) is the distance to the nearest
  pixel of the image *not in A*. That pixel lies in A's box plus its 1-px ring (clipping a
  farther pixel to the ring brings it nearer), or the box meets the frame and, as in the
  whole-image EDT, nothing outside the image counts. :func:`r_disk_px` finds it by a direct
  search over offsets in order of distance (an EDT on the crop beyond 8 px).
- The nearest skeleton pixel of each crack pixel is found with a k-d tree over the skeleton
  pixels (a small set), with exact integer squared distances for the tie rule. In the Dask
  path each chunk builds its tree from the skeleton pixels in a window around it and widens
  the window until no pixel outside it could be as near as the answer (so the answer, ties
  included, is the whole skeleton's); the skeleton never gathers on the client.

The numpy kernels are :func:`chunk_pass`, :func:`r_disk_px` and
:func:`nearest_skeleton_index`; :func:`crack_labels` (in memory) and
:func:`crack_labels_dask` (chunked) are the two front ends; :func:`crack_labels_reference`
is the literal whole-image chain, kept for tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from ..errors import InputError
from ..io.phasefile import check_phase_array, check_phase_range

__all__ = [
    "TABLE_DTYPES",
    "PIXEL_STATS",
    "CrackResult",
    "Skeleton",
    "crack_labels",
    "crack_labels_dask",
    "crack_labels_reference",
    "chunk_pass",
    "r_disk_px",
    "nearest_skeleton_index",
    "pixel_stats",
    "merge_pixel_stats",
]

#: Columns of the raw crack table and their dtypes.
TABLE_DTYPES: dict[str, str] = {
    "crack_id": "int64",
    "area_px": "int64",
    "skeleton_px": "int64",
    "width_sum_px": "float64",
    "first_row": "int64",
    "first_col": "int64",
    "row_sum": "int64",
    "col_sum": "int64",
    "row2_sum": "int64",
    "col2_sum": "int64",
    "rowcol_sum": "int64",
    "row_min": "int64",
    "row_max": "int64",
    "col_min": "int64",
    "col_max": "int64",
}

#: Per-crack pixel statistics of the raw table (integer, exact): Σy, Σx, Σy², Σx², Σxy over
#: the crack's pixels (y, x = row, column index) and its bounding box, inclusive.
PIXEL_STATS = ("row_sum", "col_sum", "row2_sum", "col2_sum", "rowcol_sum",
               "row_min", "row_max", "col_min", "col_max")
_N_SUMS = 5  # the first 5 of PIXEL_STATS add up across chunks; then min, max, min, max

_EIGHT = np.ones((3, 3), dtype=bool)
_K0 = 4  # neighbours asked of the k-d tree at first; grown while ties reach the k-th
_PACK_PX = 4096  # crops up to this many pixels are skeletonized packed into one canvas
_R_SEARCH = 8  # r_disk by direct search up to this radius (px), an EDT on the crop beyond


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Skeleton:
    """The crack curves as pixel lists, in raster order.

    Attributes
    ----------
    rc : (m, 2) int64 ndarray
        Row and column of every skeleton pixel, sorted by raster index ``row*width + col``.
    crack_id : (m,) uint32 ndarray
        Crack (curve) id of each skeleton pixel, 1..n_c.
    r_disk_px : (m,) float64 ndarray
        r_disk of eq. 15 at each skeleton pixel, in pixels.
    """

    rc: np.ndarray
    crack_id: np.ndarray
    r_disk_px: np.ndarray

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The skeleton as a boolean image of ``shape`` (rows, cols)."""
        out = np.zeros(shape, dtype=bool)
        out[self.rc[:, 0], self.rc[:, 1]] = True
        return out


@dataclass(frozen=True)
class CrackResult:
    """Crack-wise segmentation of one phase map.

    Attributes
    ----------
    labels : (M, N) uint32 ndarray
        S_c of eq. 2: crack id 1..n_c on every crack pixel (S = 2), 0 elsewhere.
    skeleton : Skeleton
        The curves L_i with r_disk per pixel.
    table : pandas.DataFrame
        One row per crack, columns :data:`TABLE_DTYPES`: crack_id, area_px (#C),
        skeleton_px (#L), width_sum_px (Σ 2 r_disk over L, px), first_row, first_col (the
        curve's first skeleton pixel in raster order) and the :data:`PIXEL_STATS` of C.
    """

    labels: np.ndarray
    skeleton: Skeleton
    table: pd.DataFrame

    @property
    def n_cracks(self) -> int:
        """n_c, the number of cracks (curves)."""
        return len(self.table)

    @property
    def skeleton_mask(self) -> np.ndarray:
        """The union of the curves as a boolean image (M, N)."""
        return self.skeleton.mask(self.labels.shape)


def empty_crack_table() -> pd.DataFrame:
    """The raw crack table with no rows (its columns and dtypes)."""
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in TABLE_DTYPES.items()})


def _empty_skeleton() -> Skeleton:
    return Skeleton(np.empty((0, 2), np.int64), np.empty(0, np.uint32), np.empty(0, np.float64))


# ----------------------------------------------------------------------------- validation


def _check_values(block: np.ndarray, name: str, where: str = "") -> None:
    if block.size:
        check_phase_range(int(block.min()), int(block.max()), name, where)


def _validate_phase(phase, name: str = "phase") -> np.ndarray:
    phase = np.asarray(check_phase_array(phase, name))
    _check_values(phase, name)
    return phase


# ----------------------------------------------------------------------------- kernels


def _offsets(radius: int) -> np.ndarray:
    """(dy, dx, dy² + dx²) of every offset with 0 < dy² + dx² ≤ radius², nearest first."""
    dy, dx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    d2 = dy * dy + dx * dx
    keep = (d2 > 0) & (d2 <= radius * radius)
    out = np.column_stack([dy[keep], dx[keep], d2[keep]]).astype(np.int64)
    return out[np.argsort(out[:, 2], kind="stable")]


_OFFSETS = _offsets(_R_SEARCH)


def r_disk_px(lab: np.ndarray, rows: np.ndarray, cols: np.ndarray, own: np.ndarray,
              boxes=None) -> np.ndarray:
    """r_disk of eq. 15 at skeleton pixels, from a label image that holds their components.

    r_disk(x) is the distance (pixel centres) from x to the nearest pixel of the image
    with S < 2; that pixel is the nearest image pixel *not in x's own component* (the open
    disk of radius r_disk around x is crack and connected, so it lies in the component).

    Parameters
    ----------
    lab : (h, w) integer ndarray
        Component labels on a chunk or crop. For each component asked about, its bounding
        box plus a 1-px ring must lie in ``lab`` except where the box meets the image frame,
        and ``lab``'s edges there must be the image frame (outside is not background).
    rows, cols : (m,) integer ndarrays
        Skeleton pixels, in ``lab`` coordinates.
    own : (m,) integer ndarray
        Label in ``lab`` of each pixel's component.
    boxes : sequence of slice pairs, optional
        ``find_objects(lab)``; needed only for the rare pixels farther than 8 px from the
        nearest non-component pixel (an EDT on that component's crop). Default: the whole
        of ``lab``.

    Returns
    -------
    (m,) float64 ndarray
        r_disk in pixels, ``sqrt`` of an exact integer squared distance (bit-identical to
        ``scipy.ndimage.distance_transform_edt``); +inf where the image holds no pixel
        outside the component.
    """
    h, w = lab.shape
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    own = np.asarray(own)
    d2 = np.zeros(rows.size, np.int64)
    pending = np.arange(rows.size)
    for dy, dx, dd in _OFFSETS:
        if pending.size == 0:
            break
        y = rows[pending] + dy
        x = cols[pending] + dx
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        hit = np.zeros(pending.size, bool)
        hit[inside] = lab[y[inside], x[inside]] != own[pending[inside]]
        d2[pending[hit]] = dd
        pending = pending[~hit]
    r = np.sqrt(d2.astype(np.float64))
    for k in np.unique(own[pending]):  # wide components: exact EDT on their crop
        sel = pending[own[pending] == k]
        if boxes is None:
            a, b, c, d = 0, h, 0, w
        else:
            sr, sc = boxes[k - 1]
            a, b = max(sr.start - 1, 0), min(sr.stop + 1, h)
            c, d = max(sc.start - 1, 0), min(sc.stop + 1, w)
        mask = lab[a:b, c:d] == k
        if mask.all():
            r[sel] = np.inf
        else:
            r[sel] = ndi.distance_transform_edt(mask)[rows[sel] - a, cols[sel] - c]
    return r


def _skeletons(lab: np.ndarray, ks, rects, *, want_pixels: bool = False):
    """Lee skeletons of several components of ``lab``, each on its own crop.

    ``rects[i] = (a, b, c, d)`` is the crop ``lab[a:b, c:d]`` of component ``ks[i]`` (its
    box plus the 1-px ring inside ``lab``). Large crops are skeletonized one by one; small
    ones are packed side by side, 1 px apart, into one canvas and skeletonized together,
    which gives the same pixels (the thinning of a component looks only at its own 3×3
    neighbourhoods, and a crop's surroundings are zeros either way) at a fraction of the
    per-call overhead.

    Returns (rows, cols, own) of the skeleton pixels in ``lab`` coordinates with their
    component labels, and with ``want_pixels`` also the (p, 2) component pixels.
    """
    ks = np.asarray(ks, np.int64)
    rects = np.asarray(rects, np.int64).reshape(-1, 4)
    hs, ws = rects[:, 1] - rects[:, 0], rects[:, 3] - rects[:, 2]
    small = hs * ws <= _PACK_PX
    rows, cols, own, pix = [], [], [], []
    for i in np.flatnonzero(~small):
        a, b, c, d = rects[i]
        mask = lab[a:b, c:d] == ks[i]
        rr, cc = np.nonzero(skeletonize(mask, method="lee"))
        rows.append(rr + a)
        cols.append(cc + c)
        own.append(np.full(rr.size, ks[i]))
        if want_pixels:
            pr, pc = np.nonzero(mask)
            pix.append(np.column_stack([pr + a, pc + c]))
    idx = np.flatnonzero(small)
    if idx.size:
        idx = idx[np.argsort(-hs[idx], kind="stable")]  # shelf packing, tallest first
        width = max(int(ws[idx].max()) + 1, 512)
        py, px = np.empty(idx.size, np.int64), np.empty(idx.size, np.int64)
        y = x = shelf = 0
        for j, i in enumerate(idx):
            if x + ws[i] > width:
                y, x, shelf = y + shelf + 1, 0, 0
            py[j], px[j] = y, x
            x += ws[i] + 1
            shelf = max(shelf, int(hs[i]))
        canvas = np.zeros((y + shelf, width), bool)
        owner = np.zeros((y + shelf, width), np.int32)
        for j, i in enumerate(idx):
            a, b, c, d = rects[i]
            canvas[py[j]:py[j] + b - a, px[j]:px[j] + d - c] = lab[a:b, c:d] == ks[i]
            owner[py[j]:py[j] + b - a, px[j]:px[j] + d - c] = j
        yy, xx = np.nonzero(skeletonize(canvas, method="lee"))
        j = owner[yy, xx]
        rows.append(yy - py[j] + rects[idx[j], 0])
        cols.append(xx - px[j] + rects[idx[j], 2])
        own.append(ks[idx[j]])
        if want_pixels:
            yy, xx = np.nonzero(canvas)
            j = owner[yy, xx]
            pix.append(np.column_stack([yy - py[j] + rects[idx[j], 0],
                                        xx - px[j] + rects[idx[j], 2]]))
    out = (_cat(rows), _cat(cols), _cat(own))
    if want_pixels:
        out += (np.concatenate(pix).astype(np.int64) if pix else np.empty((0, 2), np.int64),)
    return out


def _cat(parts) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


def _no_skeleton() -> dict:
    return {"rows": np.empty(0, np.int64), "cols": np.empty(0, np.int64),
            "r": np.empty(0, np.float64)}


def chunk_pass(block: np.ndarray, origin: tuple[int, int], image_shape: tuple[int, int],
               *, name: str = "phase", crack_pixels: bool = False) -> dict:
    """Label the crack phase of one chunk and skeletonize the components it holds whole.

    A component is finished here when its bounding box plus a 1-px ring (clipped to the
    image) lies inside the chunk: its Lee skeleton is computed on that crop with the other
    components masked out, and r_disk (eq. 15) with :func:`r_disk_px`. The others touch an
    inner chunk edge and are reported for the merge across chunks (their boxes and one seed
    pixel each), together with the chunk's edge rows and columns of local labels.

    Parameters
    ----------
    block : (h, w) integer ndarray
        The phase values of the chunk (0, 1, 2).
    origin : (int, int)
        Global (row, col) of the chunk's first pixel.
    image_shape : (int, int)
        (M, N) of the whole image.
    name : str
        Name of the array, for error messages.
    crack_pixels : bool
        Also return the global (row, col) of the crack pixels of the finished components
        (key ``"pixels"``, (p, 2) int64, in no particular order).

    Returns
    -------
    dict with ``n`` (local labels), ``open_ids`` (local ids of components touching an
    inner chunk edge), ``open_boxes`` ((k, 4) global r0, r1, c0, c1), ``open_seeds``
    ((k, 2) global row, col of one pixel each), ``edges`` (top, bottom, left, right rows of
    local labels) and ``skeleton`` (``rows``, ``cols``, ``r``: the skeleton pixels of the
    finished components, global coordinates, and their r_disk in px).

    Raises
    ------
    InputError
        The chunk holds values outside {0, 1, 2}.
    """
    block = np.asarray(block)
    h, w = block.shape
    r0, c0 = int(origin[0]), int(origin[1])
    whole = (h, w) == tuple(image_shape)
    where = "" if whole else f" in the chunk at rows {r0}:{r0 + h}, cols {c0}:{c0 + w}"
    _check_values(block, name, where)
    lab, n = ndi.label(block == 2, structure=_EIGHT)
    skeleton, pixels = _no_skeleton(), []
    open_ids, open_boxes, open_seeds = [], [], []
    if n:
        # sides of the chunk that are the image frame need no ring
        top_frame, left_frame = r0 == 0, c0 == 0
        bottom_frame, right_frame = r0 + h == image_shape[0], c0 + w == image_shape[1]
        boxes = ndi.find_objects(lab)
        ks, rects = [], []
        for k, (sr, sc) in enumerate(boxes, start=1):
            a, b, c, d = sr.start, sr.stop, sc.start, sc.stop
            inside = ((a >= 1 or top_frame) and (b <= h - 1 or bottom_frame)
                      and (c >= 1 or left_frame) and (d <= w - 1 or right_frame))
            if inside:
                ks.append(k)
                rects.append((max(a - 1, 0), min(b + 1, h), max(c - 1, 0), min(d + 1, w)))
            else:
                open_ids.append(k)
                open_boxes.append((r0 + a, r0 + b, c0 + c, c0 + d))
                open_seeds.append((r0 + a, c0 + c + int(np.argmax(lab[a, c:d] == k))))
        if ks:
            rows, cols, own, *pix = _skeletons(lab, ks, rects, want_pixels=crack_pixels)
            skeleton = {"rows": rows + r0, "cols": cols + c0,
                        "r": r_disk_px(lab, rows, cols, own, boxes)}
            if crack_pixels:
                pixels.append(pix[0] + np.array([r0, c0]))
    out = {
        "n": int(n),
        "open_ids": np.asarray(open_ids, np.int64),
        "open_boxes": np.asarray(open_boxes, np.int64).reshape(-1, 4),
        "open_seeds": np.asarray(open_seeds, np.int64).reshape(-1, 2),
        "edges": (lab[0].copy(), lab[-1].copy(), lab[:, 0].copy(), lab[:, -1].copy()),
        "skeleton": skeleton,
    }
    if crack_pixels:
        out["pixels"] = np.concatenate(pixels) if pixels else np.empty((0, 2), np.int64)
    return out


def _crop_components(crops, origins, seeds) -> dict:
    """Skeletons and r_disk of components given by a seed pixel on crops of the phase map.

    ``crops[i]`` is the phase on the component's box plus a 1-px ring clipped to the image,
    ``origins[i]`` its global (row, col), ``seeds[i]`` a global pixel of the component.
    """
    rows, cols, r = [], [], []
    for crop, (o0, o1), (s0, s1) in zip(crops, origins, seeds):
        lab, _ = ndi.label(np.asarray(crop) == 2, structure=_EIGHT)
        k = lab[s0 - o0, s1 - o1]
        rr, cc, own = _skeletons(lab, [k], [(0, lab.shape[0], 0, lab.shape[1])])
        rows.append(rr + o0)
        cols.append(cc + o1)
        r.append(r_disk_px(lab, rr, cc, own))
    if not rows:
        return _no_skeleton()
    return {"rows": np.concatenate(rows), "cols": np.concatenate(cols), "r": np.concatenate(r)}


def _curves(raster: np.ndarray, width: int) -> np.ndarray:
    """8-connected components of a pixel set given by sorted raster indices (0-based ids)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = raster.size
    cols = raster % width
    src, dst = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        c = cols + dx
        ok = (c >= 0) & (c < width)
        target = raster[ok] + (dy * width + dx)
        j = np.searchsorted(raster, target)
        j = np.minimum(j, m - 1)
        hit = raster[j] == target
        src.append(np.flatnonzero(ok)[hit])
        dst.append(j[hit])
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(m, m))
    return connected_components(graph, directed=False)[1]


_UINT32_MAX = np.iinfo(np.uint32).max


def check_label_count(n: int, what: str) -> None:
    """InputError when ``n`` objects cannot be numbered by uint32 labels."""
    if n > _UINT32_MAX:
        raise InputError(f"phase holds {n} {what}, more than uint32 labels can number ({_UINT32_MAX})")


def _curve_piece(skel: dict, width: int) -> dict:
    """A piece of skeleton (the pixels of whole crack components) in raster order, its curves
    and their summaries.

    The curves are the 8-connected components of the skeleton pixels (DESIGN §4.4 item 1).
    Pixels of different crack components are never 8-adjacent, so the curves of a piece that
    holds whole components are curves of the whole image: each piece is numbered on its own.

    Returns a dict: ``raster`` (m,) sorted raster indices, ``r`` (m,) r_disk in px, ``curve``
    (m,) the piece's curve index 0..k-1 of each pixel, and ``curves``, the per-curve summary
    (small, for the client): ``first`` (k,) raster index of each curve's first pixel,
    ``count`` (k,) its pixels, ``wsum`` (k,) Σ 2 r_disk added in raster order (the same sums on
    every path), ``box`` (k, 4) its pixels' rows r0, r1 and columns c0, c1 (end exclusive).
    """
    raster = np.asarray(skel["rows"], np.int64) * np.int64(width) + np.asarray(skel["cols"], np.int64)
    order = np.argsort(raster, kind="stable")
    raster, r = raster[order], np.asarray(skel["r"], np.float64)[order]
    if raster.size == 0:
        curve = np.empty(0, np.int64)
        k = 0
    else:
        curve = _curves(raster, width).astype(np.int64)
        k = int(curve.max()) + 1
    rows, cols = np.divmod(raster, np.int64(width))
    box = np.empty((k, 4), np.int64)
    box[:, [0, 2]] = np.iinfo(np.int64).max
    box[:, [1, 3]] = np.iinfo(np.int64).min
    np.minimum.at(box[:, 0], curve, rows)
    np.maximum.at(box[:, 1], curve, rows + 1)
    np.minimum.at(box[:, 2], curve, cols)
    np.maximum.at(box[:, 3], curve, cols + 1)
    _, first = np.unique(curve, return_index=True)
    curves = {"first": raster[first], "count": np.bincount(curve, minlength=k).astype(np.int64),
              "wsum": np.bincount(curve, weights=2.0 * r, minlength=k), "box": box}
    return {"raster": raster, "r": r, "curve": curve, "curves": curves}


def _number_curves(summaries: list[dict], width: int):
    """Canonical crack ids over all pieces: 1..n_c by the raster order of each curve's first
    pixel (DESIGN §4.4 item 4).

    Returns, per piece, the (k,) uint32 ids of its curves, and the table's columns without
    ``area_px`` (None if there is no skeleton pixel).
    """
    firsts = np.concatenate([c["first"] for c in summaries]) if summaries else np.empty(0, np.int64)
    if firsts.size == 0:
        return [np.empty(0, np.uint32) for _ in summaries], None
    check_label_count(firsts.size, "cracks")
    order = np.argsort(firsts, kind="stable")
    ids = np.empty(firsts.size, np.uint32)
    ids[order] = np.arange(1, firsts.size + 1, dtype=np.uint32)
    bounds = np.cumsum([0] + [c["first"].size for c in summaries])
    luts = [ids[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    n = firsts.size
    first_row, first_col = np.divmod(firsts[order], np.int64(width))
    table = {
        "crack_id": np.arange(1, n + 1, dtype=np.int64),
        "skeleton_px": np.concatenate([c["count"] for c in summaries])[order],
        "width_sum_px": np.concatenate([c["wsum"] for c in summaries])[order],
        "first_row": first_row,
        "first_col": first_col,
    }
    return luts, table


def _skeleton_of(pieces: list[dict], luts: list[np.ndarray], width: int) -> Skeleton:
    """The :class:`Skeleton` of curve pieces (:func:`_curve_piece`) numbered by ``luts``."""
    if not pieces:
        return _empty_skeleton()
    raster = np.concatenate([p["raster"] for p in pieces])
    order = np.argsort(raster, kind="stable")
    raster = raster[order]
    ids = np.concatenate([lut[p["curve"]] for p, lut in zip(pieces, luts)])[order].astype(np.uint32)
    r = np.concatenate([p["r"] for p in pieces])[order]
    return Skeleton(np.column_stack(np.divmod(raster, np.int64(width))), ids, r)


def _canonical_skeleton(pieces: list[dict], width: int):
    """Skeleton pieces (``rows``, ``cols``, ``r``, each holding whole components) → the
    :class:`Skeleton` with canonical ids and the table's columns without ``area_px`` (None
    if there is no skeleton pixel)."""
    curve_pieces = [_curve_piece(p, width) for p in pieces]
    luts, table = _number_curves([c["curves"] for c in curve_pieces], width)
    if table is None:
        return _empty_skeleton(), None
    return _skeleton_of(curve_pieces, luts, width), table

def pixel_stats(rows: np.ndarray, cols: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """Per-id pixel count and :data:`PIXEL_STATS` of labelled pixels, exact (int64).

    Parameters
    ----------
    rows, cols : (p,) integer ndarrays
        Global row and column of each pixel.
    ids : (p,) integer ndarray
        Label of each pixel, 1..n.
    n : int
        Number of labels.

    Returns
    -------
    (n + 1, 10) int64 ndarray
        Row k: #pixels, Σy, Σx, Σy², Σx², Σxy, min y, max y, min x, max x of label k; a
        label without pixels has zero sums and min/max at the int64 max/min (the neutral
        elements of :func:`merge_pixel_stats`). Row 0 is unused.
    """
    out = _neutral_stats(n)
    ids = np.asarray(ids, np.int64)
    if ids.size == 0:
        return out
    order = np.argsort(ids, kind="stable")
    k = ids[order]
    y, x = np.asarray(rows, np.int64)[order], np.asarray(cols, np.int64)[order]
    start = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    u = k[start]
    out[u, 0] = np.diff(np.r_[start, k.size])
    for j, v in enumerate((y, x, y * y, x * x, y * x), start=1):
        out[u, j] = np.add.reduceat(v, start)
    out[u, 6], out[u, 7] = np.minimum.reduceat(y, start), np.maximum.reduceat(y, start)
    out[u, 8], out[u, 9] = np.minimum.reduceat(x, start), np.maximum.reduceat(x, start)
    return out


def _neutral_stats(n: int) -> np.ndarray:
    out = np.zeros((n + 1, 10), np.int64)
    out[:, [6, 8]], out[:, [7, 9]] = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    return out


def merge_pixel_stats(parts, n: int) -> np.ndarray:
    """Reduce the :func:`pixel_stats` of disjoint pixel sets (chunks), exactly.

    Parameters
    ----------
    parts : iterable of (ids, stats)
        Per set, the (k,) labels it holds and their (k, 10) rows of :func:`pixel_stats`.
    n : int
        Number of labels.

    Returns
    -------
    (n + 1, 10) int64 ndarray
        As :func:`pixel_stats` of the union: sums add, bounding boxes widen.
    """
    out = _neutral_stats(n)
    for ids, rows in parts:  # ids are distinct within a part
        ids = np.asarray(ids, np.int64)
        out[ids, : 1 + _N_SUMS] += rows[:, : 1 + _N_SUMS]
        for j, fn in ((6, np.minimum), (7, np.maximum), (8, np.minimum), (9, np.maximum)):
            out[ids, j] = fn(out[ids, j], rows[:, j])
    return out


def _finish_table(partial: dict, stats: np.ndarray) -> pd.DataFrame:
    """The raw table from the skeleton's columns and the (n + 1, 10) :func:`pixel_stats`."""
    stats = np.asarray(stats, np.int64)[1:]
    df = pd.DataFrame({**partial, "area_px": stats[:, 0],
                       **{c: stats[:, 1 + j] for j, c in enumerate(PIXEL_STATS)}})
    return df[list(TABLE_DTYPES)].astype(TABLE_DTYPES)


def nearest_skeleton_index(points: np.ndarray, skeleton_rc: np.ndarray,
                           tree: cKDTree | None = None, *, workers: int = 1) -> np.ndarray:
    """Index of the nearest skeleton pixel of each point (eq. 2, DESIGN §4.4 item 2).

    Parameters
    ----------
    points : (p, 2) integer ndarray
        Pixel (row, col) to assign.
    skeleton_rc : (m, 2) integer ndarray, m ≥ 1
        Skeleton pixels sorted by raster index.
    tree : cKDTree, optional
        ``cKDTree(skeleton_rc)``, if already built.
    workers : int
        Threads for the k-d tree query (-1: all cores).

    Returns
    -------
    (p,) int64 ndarray
        Index into ``skeleton_rc`` of the nearest skeleton pixel (Euclidean distance between
        pixel centres); among equally near ones the smallest index, i.e. the smallest
        raster index. Distances are compared as exact integer squared distances.
    """
    points = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    skel = np.asarray(skeleton_rc, dtype=np.int64).reshape(-1, 2)
    m = len(skel)
    out = np.empty(len(points), np.int64)
    if len(points) == 0:
        return out
    if tree is None:
        tree = cKDTree(skel)
    todo = np.arange(len(points))
    k = min(_K0, m)
    while todo.size:
        _, idx = tree.query(points[todo], k=k, workers=workers)
        idx = np.asarray(idx, np.int64).reshape(len(todo), k)
        diff = points[todo, None, :] - skel[idx]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        tie = d2 == d2.min(axis=1, keepdims=True)
        out[todo] = np.where(tie, idx, m).min(axis=1)
        if k == m:
            break
        todo = todo[tie[:, -1]]  # the k-th is as near as the nearest: more may tie beyond it
        k = min(4 * k, m)
    return out


def _assign(points: np.ndarray, skeleton: Skeleton, tree: cKDTree, *, workers: int = 1):
    return skeleton.crack_id[nearest_skeleton_index(points, skeleton.rc, tree, workers=workers)]


# ----------------------------------------------------------------------------- numpy front end


def crack_labels(phase: np.ndarray, *, workers: int = 1) -> CrackResult:
    """Crack-wise segmentation S_c (eq. 2) and raw per-crack measurements of a phase map.

    Parameters
    ----------
    phase : (M, N) integer ndarray
        Phase map S (eq. 1): 0 background, 1 solid, 2 crack.
    workers : int
        Threads for the nearest-curve query (-1: all cores). Default 1: inside a Dask task
        the scheduler decides how many threads run, not the machine's core count.

    Returns
    -------
    CrackResult
        Labels (uint32, ids 1..n_c by the raster order of each curve's first skeleton pixel),
        skeleton pixels with r_disk, and the raw table (crack_id, area_px, skeleton_px,
        width_sum_px, first_row, first_col). With no crack pixel: zero labels, an empty
        skeleton and an empty table.

    Raises
    ------
    InputError
        ``phase`` is not 2D, not of an integer dtype, or holds values outside {0, 1, 2}.

    Notes
    -----
    Works on component crops (see the module docstring); the whole-image passes are only
    ``phase == 2``, one ``ndi.label`` and ``find_objects``. Equal to
    :func:`crack_labels_reference` except where several curves are equally near a crack
    pixel, which this function resolves by the smallest raster index.
    """
    phase = np.asarray(check_phase_array(phase, "phase"))
    if phase.size == 0:
        return CrackResult(np.zeros(phase.shape, np.uint32), _empty_skeleton(), empty_crack_table())
    summary = chunk_pass(phase, (0, 0), phase.shape, crack_pixels=True)
    skeleton, partial = _canonical_skeleton([summary["skeleton"]], phase.shape[1])
    labels = np.zeros(phase.shape, np.uint32)
    if partial is None:
        return CrackResult(labels, skeleton, empty_crack_table())
    pixels = summary["pixels"]
    ids = _assign(pixels, skeleton, cKDTree(skeleton.rc), workers=workers)
    labels[pixels[:, 0], pixels[:, 1]] = ids
    stats = pixel_stats(pixels[:, 0], pixels[:, 1], ids, len(partial["crack_id"]))
    return CrackResult(labels, skeleton, _finish_table(partial, stats))


def crack_labels_reference(phase: np.ndarray) -> CrackResult:
    """The literal whole-image chain, for tests and benchmarks.

    ``skeletonize(S == 2, method="lee")`` on the whole image, ``ndi.label`` (8-connected)
    of the skeleton, ``distance_transform_edt(~skeleton, return_indices=True)`` for the
    nearest skeleton pixel (ties as scipy resolves them) and
    ``distance_transform_edt(S == 2)`` for r_disk. Ids are renumbered canonically (raster
    order of each curve's first pixel). Same inputs, outputs and errors as
    :func:`crack_labels`.
    """
    phase = _validate_phase(phase, "phase")
    crack = phase == 2
    skel = skeletonize(crack, method="lee")
    curves, n = ndi.label(skel, structure=_EIGHT)
    if n == 0:
        return CrackResult(np.zeros(phase.shape, np.uint32), _empty_skeleton(), empty_crack_table())
    rows, cols = np.nonzero(skel)
    vals = curves[rows, cols]
    uniq, first = np.unique(vals, return_index=True)
    remap = np.zeros(n + 1, np.uint32)
    remap[uniq[np.argsort(first, kind="stable")]] = np.arange(1, n + 1, dtype=np.uint32)
    _, (ir, ic) = ndi.distance_transform_edt(~skel, return_indices=True)
    labels = np.where(crack, remap[curves[ir, ic]], np.uint32(0)).astype(np.uint32)
    r = (np.full(rows.shape, np.inf) if crack.all()
         else ndi.distance_transform_edt(crack)[rows, cols])
    ids = remap[vals]
    firsts = np.sort(first)
    pr, pc = np.nonzero(labels)
    stats = pixel_stats(pr, pc, labels[pr, pc], n)[1:]
    table = pd.DataFrame({
        "crack_id": np.arange(1, n + 1),
        "area_px": np.bincount(labels.ravel(), minlength=n + 1)[1:],
        "skeleton_px": np.bincount(ids, minlength=n + 1)[1:],
        "width_sum_px": np.bincount(ids, weights=2.0 * r, minlength=n + 1)[1:],
        "first_row": rows[firsts],
        "first_col": cols[firsts],
        **{c: stats[:, 1 + j] for j, c in enumerate(PIXEL_STATS)},
    }).astype(TABLE_DTYPES)
    skeleton = Skeleton(np.column_stack([rows, cols]).astype(np.int64), ids, r)
    return CrackResult(labels, skeleton, table)


# ----------------------------------------------------------------------------- Dask front end


def _face_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs (a[i], b[j]) with |i - j| ≤ 1 and both > 0: 8-adjacency across a chunk face."""
    out = []
    for aa, bb in ((a, b), (a[1:], b[:-1]), (a[:-1], b[1:])):
        m = (aa > 0) & (bb > 0)
        out.append(np.stack([aa[m], bb[m]]))
    return np.concatenate(out, axis=1)


def _merge_open_components(summaries, nb: tuple[int, int]):
    """Union the components that touch inner chunk edges across chunk faces (8-connected).

    Returns (boxes (g, 4) global r0, r1, c0, c1; seeds (g, 2)) of the merged components.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nbr, nbc = nb
    offsets = np.cumsum([0] + [summaries[i][j]["n"] for i in range(nbr) for j in range(nbc)])
    off = offsets[:-1].reshape(nbr, nbc)
    total = int(offsets[-1])

    def glob(i, j, e):
        x = summaries[i][j]["edges"][e].astype(np.int64)
        return np.where(x > 0, x + off[i, j], 0)

    pairs = [np.empty((2, 0), np.int64)]
    for i in range(nbr - 1):  # bottom edges of chunk row i against top edges of row i+1
        a = np.concatenate([glob(i, j, 1) for j in range(nbc)])
        b = np.concatenate([glob(i + 1, j, 0) for j in range(nbc)])
        pairs.append(_face_pairs(a, b))
    for j in range(nbc - 1):  # right edges of chunk column j against left edges of j+1
        a = np.concatenate([glob(i, j, 3) for i in range(nbr)])
        b = np.concatenate([glob(i, j + 1, 2) for i in range(nbr)])
        pairs.append(_face_pairs(a, b))
    pairs = np.unique(np.concatenate(pairs, axis=1), axis=1)

    ids, boxes, seeds = [], [], []
    for i in range(nbr):
        for j in range(nbc):
            s = summaries[i][j]
            ids.append(s["open_ids"] + off[i, j])
            boxes.append(s["open_boxes"])
            seeds.append(s["open_seeds"])
    ids = np.concatenate(ids)
    if ids.size == 0:
        return np.empty((0, 4), np.int64), np.empty((0, 2), np.int64)
    boxes, seeds = np.concatenate(boxes), np.concatenate(seeds)
    # every label in a pair touches an inner edge, so it is an open one
    pos = np.full(total + 1, -1, np.int64)
    pos[ids] = np.arange(ids.size)
    p0, p1 = pos[pairs[0]], pos[pairs[1]]
    graph = coo_matrix((np.ones(p0.size, np.int8), (p0, p1)), shape=(ids.size, ids.size))
    ng, group = connected_components(graph, directed=False)
    gbox = np.empty((ng, 4), np.int64)
    gbox[:, [0, 2]] = np.iinfo(np.int64).max
    gbox[:, [1, 3]] = np.iinfo(np.int64).min
    np.minimum.at(gbox[:, 0], group, boxes[:, 0])
    np.maximum.at(gbox[:, 1], group, boxes[:, 1])
    np.minimum.at(gbox[:, 2], group, boxes[:, 2])
    np.maximum.at(gbox[:, 3], group, boxes[:, 3])
    _, first = np.unique(group, return_index=True)
    return gbox, seeds[first]


def _batches(boxes: np.ndarray, batch_px: int) -> list[np.ndarray]:
    """Split component indices (in order) into runs whose crops total ≤ batch_px pixels."""
    area = (boxes[:, 1] - boxes[:, 0] + 2) * (boxes[:, 3] - boxes[:, 2] + 2)
    out, cur, acc = [], [], 0
    for i, a in enumerate(area):
        if cur and acc + a > batch_px:
            out.append(np.asarray(cur))
            cur, acc = [], 0
        cur.append(i)
        acc += int(a)
    if cur:
        out.append(np.asarray(cur))
    return out


def _chunk_task(block, origin, image_shape) -> dict:
    """:func:`chunk_pass` with its finished components' skeleton as a curve piece."""
    meta = chunk_pass(block, origin, image_shape)
    return {"meta": meta, "piece": _curve_piece(meta.pop("skeleton"), image_shape[1])}


def _crop_task(crops, origins, seeds, width) -> dict:
    """:func:`_crop_components` as a curve piece."""
    return {"meta": None, "piece": _curve_piece(_crop_components(crops, origins, seeds), width)}


def _summary(value: dict):
    """What the client needs of a chunk or crop task: its merge data and curve summaries."""
    return value["meta"], value["piece"]["curves"]


def _piece_of(value: dict) -> dict:
    return value["piece"]


def _window_assign(block, origin, window, image_shape, luts, values):
    """Crack pixels of one chunk and the ids of their nearest curves (eq. 2), from the
    skeleton pixels inside ``window`` only.

    ``window`` = (R0, R1, C0, C1), rows R0:R1 and columns C0:C1 of the image, holds the
    chunk. A skeleton pixel outside it differs from a chunk pixel (y, x) by at least
    g = min(y − R0 + 1, R1 − y, x − C0 + 1, C1 − x) in row or column (sides on the image frame
    left out), so when the nearest skeleton pixel in the window has squared distance < g²,
    it and every pixel tied with it are in the window and the answer is that of the whole
    skeleton, tie rule included. Returns (rows, cols, ids, ok) in chunk coordinates, ``ok``
    False when some pixel's answer could lie outside the window.
    """
    rows, cols = np.nonzero(np.asarray(block) == 2)
    ids = np.zeros(rows.size, np.uint32)
    if rows.size == 0:
        return rows, cols, ids, True
    H, W = image_shape
    R0, R1, C0, C1 = window
    raster, sid = [], []
    for lut, value in zip(luts, values):
        piece = value["piece"]
        pr, pc = np.divmod(piece["raster"], np.int64(W))
        sel = (pr >= R0) & (pr < R1) & (pc >= C0) & (pc < C1)
        raster.append(piece["raster"][sel])
        sid.append(lut[piece["curve"][sel]])
    raster = np.concatenate(raster) if raster else np.empty(0, np.int64)
    if raster.size == 0:
        return rows, cols, ids, False
    order = np.argsort(raster, kind="stable")
    skel = np.column_stack(np.divmod(raster[order], np.int64(W)))
    sid = np.concatenate(sid)[order]
    y, x = rows + np.int64(origin[0]), cols + np.int64(origin[1])
    pts = np.column_stack([y, x])
    idx = nearest_skeleton_index(pts, skel)
    d2 = ((pts - skel[idx]) ** 2).sum(axis=1)
    g = np.full(y.shape, np.int64(H + W))  # farther than any pixel: sides on the image frame
    for on_frame, gap in ((R0 == 0, y - R0 + 1), (R1 == H, R1 - y), (C0 == 0, x - C0 + 1), (C1 == W, C1 - x)):
        if not on_frame:
            g = np.minimum(g, gap)
    return rows, cols, sid[idx], bool(np.all(d2 < g * g))


def _window_count(block, origin, window, image_shape, n, luts, *values):
    """(ids, their :func:`pixel_stats` rows, ok) of the cracks with pixels in one chunk."""
    rows, cols, ids, ok = _window_assign(block, origin, window, image_shape, luts, values)
    stats = pixel_stats(rows + origin[0], cols + origin[1], ids, n)
    present = np.flatnonzero(stats[:, 0])
    return present, stats[present], ok


def _window_labels(block, origin, window, image_shape, luts, *values):
    rows, cols, ids, ok = _window_assign(block, origin, window, image_shape, luts, values)
    if not ok:  # the window was checked by the counting pass; this would be a bug
        raise RuntimeError(f"crack labels of the chunk at {origin} need skeleton pixels beyond {window}")
    out = np.zeros(np.shape(block), np.uint32)
    out[rows, cols] = ids
    return out


def crack_labels_dask(phase, *, batch_px: int = 1 << 22, return_skeleton: bool = False,
                      halo_px: int = 64, scratch=None):
    """Crack-wise segmentation S_c (eq. 2) of a chunked phase map, identical to
    :func:`crack_labels` on the whole image (same ids, same table).

    Parameters
    ----------
    phase : (M, N) integer dask.array.Array
        Phase map S (0, 1, 2), any chunking. It is read three times (chunk pass, crops of
        components that cross chunk edges, labels), so it should be cheap to read: a
        store-backed or persisted array, not a long lazy graph.
    batch_px : int
        Crop pixels per task for components that cross chunk edges.
    return_skeleton : bool
        Also return the :class:`Skeleton`, gathered on the client (it is not needed to label).
    halo_px : int
        First margin around each chunk inside which its pixels look for their nearest curve;
        a chunk with a pixel whose answer could lie beyond it is redone with a margin 4× as
        wide, up to the whole image (the result never depends on it, only the work does).
    scratch : :class:`~cathodeflow.tiling.scratch.Scratch`, optional
        Where the skeleton pieces are kept until the labels are computed (files that every
        worker reads); default: persisted in memory where they were computed. It must
        outlive the returned labels' computations.

    Returns
    -------
    labels : (M, N) uint32 dask.array.Array
        S_c with the chunks of ``phase`` (empty chunks dropped), lazy: each chunk assigns
        its crack pixels to the nearest curve with a k-d tree of the skeleton pixels near it.
    table : pandas.DataFrame
        The raw crack table (:data:`TABLE_DTYPES`), computed now.
    skeleton : Skeleton
        Only with ``return_skeleton=True``.

    Notes
    -----
    Three computations on the current scheduler (threaded, or a distributed client if one
    is active): (1) per chunk, ``ndi.label`` of S = 2 and the skeleton and r_disk of the
    components lying inside the chunk with their ring; (2) components touching inner chunk
    edges are merged across faces (8-connectivity, on the client: only edge rows travel)
    and skeletonized on crops of ``phase`` in batched tasks; (3) per chunk, the nearest
    curve of each crack pixel among the skeleton pixels of a window around the chunk
    (:func:`_window_assign`) and the counts behind ``area_px`` and :data:`PIXEL_STATS`. The
    skeleton pixels stay with the tasks that made them (or in ``scratch``); the client holds
    only per-curve summaries (first pixel, pixel count, width sum, box) and edge rows.
    """
    import dask
    import dask.array as da

    from ..tiling.scheduler import compute
    from ..tiling.scratch import keep

    if not isinstance(phase, da.Array):
        phase = da.asarray(check_phase_array(phase, "phase"))
    check_phase_array(phase, "phase")
    if isinstance(halo_px, bool) or not isinstance(halo_px, (int, np.integer)) or halo_px < 1:
        raise InputError(f"halo_px must be a positive integer, got {halo_px!r}")
    shape = tuple(int(s) for s in phase.shape)
    if phase.size == 0:
        labels = da.zeros(shape, dtype=np.uint32, chunks=phase.chunks)
        return (labels, empty_crack_table()) + ((_empty_skeleton(),) if return_skeleton else ())

    if any(0 in c for c in phase.chunks):  # empty chunks would break the face merge
        phase = phase.rechunk(tuple(tuple(s for s in c if s) for c in phase.chunks))
    starts = [np.cumsum((0,) + tuple(c)) for c in phase.chunks]
    nb = phase.numblocks
    blocks = phase.to_delayed(optimize_graph=False)
    cells = [(i, j) for i in range(nb[0]) for j in range(nb[1])]
    origin = {(i, j): (int(starts[0][i]), int(starts[1][j])) for i, j in cells}
    chunk_task = dask.delayed(_chunk_task, pure=True)
    metas, values = keep([chunk_task(blocks[i, j], origin[i, j], shape) for i, j in cells], _summary,
                         scratch=scratch)
    curves = [c for _, c in metas]
    summaries = [[metas[i * nb[1] + j][0] for j in range(nb[1])] for i in range(nb[0])]

    boxes, seeds = _merge_open_components(summaries, nb)
    if len(boxes):
        crops_box = np.column_stack([
            np.maximum(boxes[:, 0] - 1, 0), np.minimum(boxes[:, 1] + 1, shape[0]),
            np.maximum(boxes[:, 2] - 1, 0), np.minimum(boxes[:, 3] + 1, shape[1]),
        ])
        crop_task = dask.delayed(_crop_task, pure=True)
        jobs = []
        for idx in _batches(boxes, batch_px):
            crops = [phase[a:b, c:d] for a, b, c, d in crops_box[idx]]
            origins = [(int(a), int(c)) for a, _, c, _ in crops_box[idx]]
            jobs.append(crop_task(crops, origins, seeds[idx].tolist(), shape[1]))
        more, more_values = keep(jobs, _summary, scratch=scratch)
        curves += [c for _, c in more]
        values += more_values

    luts, partial = _number_curves(curves, shape[1])
    if partial is None:
        labels = da.zeros(shape, dtype=np.uint32, chunks=phase.chunks)
        return (labels, empty_crack_table()) + ((_empty_skeleton(),) if return_skeleton else ())
    n = len(partial["crack_id"])
    lut_keys = [dask.delayed(lut, pure=True) for lut in luts]

    hull = np.array([[c["box"][:, 0].min(), c["box"][:, 1].max(), c["box"][:, 2].min(), c["box"][:, 3].max()]
                     if c["box"].size else [0, 0, 0, 0] for c in curves], np.int64)

    def meets(b, window):
        R0, R1, C0, C1 = window
        return (b[:, 0] < R1) & (b[:, 1] > R0) & (b[:, 2] < C1) & (b[:, 3] > C0)

    def inputs(window):
        """The pieces with a curve inside ``window`` and their id tables."""
        use = [k for k in np.flatnonzero(meets(hull, window)) if meets(curves[k]["box"], window).any()]
        return [lut_keys[k] for k in use], [values[k] for k in use]

    def window_of(cell, halo):
        (i, j), (r0, c0) = cell, origin[cell]
        return (max(r0 - halo, 0), min(int(starts[0][i + 1]) + halo, shape[0]),
                max(c0 - halo, 0), min(int(starts[1][j + 1]) + halo, shape[1]))

    # per chunk: its window and the pieces in it, widened (4×) until the answer is certain
    count_task = dask.delayed(_window_count, pure=True)
    halo = dict.fromkeys(cells, int(halo_px))
    plan, counted, todo = {}, {}, list(cells)
    while todo:
        for cell in todo:
            w = window_of(cell, halo[cell])
            plan[cell] = (w, *inputs(w))
        results = compute(*[count_task(blocks[c], origin[c], plan[c][0], shape, n, plan[c][1], *plan[c][2])
                                 for c in todo])
        again = []
        for cell, (present, stats, ok) in zip(todo, results):
            if ok or plan[cell][0] == (0, shape[0], 0, shape[1]):
                counted[cell] = (present, stats)
            else:
                halo[cell] *= 4
                again.append(cell)
        todo = again
    table = _finish_table(partial, merge_pixel_stats([counted[c] for c in cells], n))

    label_task = dask.delayed(_window_labels, pure=True)
    rows_of_blocks = [[da.from_delayed(label_task(blocks[i, j], origin[i, j], plan[i, j][0], shape, plan[i, j][1],
                                                  *plan[i, j][2]),
                                       shape=(phase.chunks[0][i], phase.chunks[1][j]), dtype=np.uint32)
                       for j in range(nb[1])] for i in range(nb[0])]
    labels = da.block(rows_of_blocks)
    out = (labels, table)
    if return_skeleton:
        (pieces,) = compute([dask.delayed(_piece_of, pure=True)(v) for v in values])
        out += (_skeleton_of(pieces, luts, shape[1]),)
    return out
