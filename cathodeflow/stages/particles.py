"""Particle-wise segmentation S_p (paper §2.3.3, eq. 8–10; DESIGN §4.4 item 7).

The paper's chain, read literally, is

* B = {S > 0} (eq. 8), the union of the particle and crack phases;
* D, the Euclidean distance transform of B (eq. 9): distance between pixel centres to the
  nearest pixel with B = 0; the image frame is not background (as
  ``scipy.ndimage.distance_transform_edt``);
* markers M = {D ≥ r} (eq. 10, inclusive, r = 50 px), one marker per 8-connected
  component of M;
* scikit-image's ``watershed(-D, markers, mask=B)`` (4-connected flooding);
  components of B without a marker stay 0.

:func:`watershed_reference` is that chain. :func:`particle_labels` (one numpy image) and
:func:`particle_labels_dask` (chunked) compute the same segmentation much faster and give
identical arrays for any chunking:

1. Work per 4-connected component K of B, on its bounding box plus a 1-px margin, with
   every pixel of the crop outside K set to background. This gives the exact D on K: along
   a monotone staircase 4-path from x ∈ K to its nearest pixel y ∉ K, the first pixel not
   in K is 4-adjacent to a pixel of K, so it is background (a foreground pixel would belong
   to K); it lies in the rectangle spanned by x and y, so it is not farther than y. Hence
   the nearest non-K pixel is a background pixel and the margin holds the nearest one for
   pixels on the box edge. For r > 1 every marker pixel has D² ≥ 2, i.e. all 4-neighbours
   in B, so an 8-connected marker component never spans two components K.
2. Squared distances between pixel centres are integers: D² is computed exactly
   (Meijster's separable algorithm in integer arithmetic, :func:`squared_edt`) and the
   marker test D ≥ r becomes D² ≥ t with t the smallest integer whose float square root
   is ≥ r, which reproduces ``distance_transform_edt(B) >= r`` bit for bit.
3. Components without a marker stay 0; with one marker component the whole of K is that
   particle (scikit-image's flood reaches all of K from it); with two or more, a priority
   flood (:func:`flood_markers`) that is scikit-image's algorithm on an integer bucket
   queue: pixels are labelled when pushed, a pushed pixel's key is
   min(D²(pixel), key of the pixel that pushed it) (scikit-image ≥ 0.25's
   ``max(value, parent value)`` rule on −D), the largest key is popped first, equal keys
   in FIFO order, 4-neighbours in the order up, left, right, down. Marker pixels go first,
   by decreasing D² and then in raster order. Only this last tie rule differs from
   scikit-image, whose marker pixels with equal D are ordered by its binary heap's internal
   state (which depends on the crop); the flood here depends only on K, so a tiled run
   equals the whole-image run exactly.
4. Particles are numbered 1..n in the raster order of their first pixel (uint32).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numba
import numpy as np
import scipy.ndimage as ndi

from ..errors import InputError
from ..io.phasefile import check_phase_array, check_phase_range
from ..tiling.components import (
    Piece,
    crop_box,
    first_pixels,
    label_components,
    map_object_crops,
    object_boxes,
    paste_crops,
    relabel,
)
from ..tiling.scratch import Scratch, keep

__all__ = [
    "particle_labels",
    "particle_labels_dask",
    "watershed_reference",
    "squared_edt",
    "flood_markers",
    "marker_threshold",
]

_UINT32_MAX = int(np.iinfo(np.uint32).max)
#: D² reported for pixels of an image without any background pixel (D = ∞).
NO_BACKGROUND_D2 = np.int64(np.iinfo(np.int64).max // 4)
_EIGHT = np.ones((3, 3), dtype=bool)


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def _check_radius(marker_radius_px) -> float:
    try:
        r = float(marker_radius_px)
    except (TypeError, ValueError):
        raise InputError(f"marker_radius_px must be a positive number, got {marker_radius_px!r}") from None
    if not (math.isfinite(r) and r > 0):
        raise InputError(f"marker_radius_px must be a finite number > 0 (r of eq. 10, in px), got {r}")
    return r


def _validate_phase(phase, name: str = "phase") -> np.ndarray:
    phase = np.asarray(phase)
    check_phase_array(phase, name)
    if phase.size:
        check_phase_range(int(phase.min()), int(phase.max()), name)
    return phase


def marker_threshold(marker_radius_px: float) -> int:
    """Smallest integer t with ``sqrt(t) >= r`` in float64 arithmetic.

    ``D >= r`` (eq. 10, D from ``distance_transform_edt``, which is the float square root
    of an integer squared distance) is exactly ``D² >= t``.
    """
    r = _check_radius(marker_radius_px)
    t = max(0, math.ceil(r * r))
    while t > 0 and math.sqrt(t - 1) >= r:
        t -= 1
    while math.sqrt(t) < r:
        t += 1
    return t


# --------------------------------------------------------------------------------------
# numpy / numba kernels
# --------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _squared_edt_kernel(fg):  # pragma: no cover - compiled
    h, w = fg.shape
    inf = np.int64(h + w + 1)
    g = np.empty((h, w), np.int64)
    # column pass, row by row (cache-friendly): distance to the nearest background pixel
    # of the same column, first from above, then from below
    for x in range(w):
        g[0, x] = 0 if not fg[0, x] else inf
    for y in range(1, h):
        for x in range(w):
            if not fg[y, x]:
                g[y, x] = 0
            else:
                v = g[y - 1, x]
                g[y, x] = v + 1 if v < inf else inf
    for y in range(h - 2, -1, -1):
        for x in range(w):
            v = g[y + 1, x] + 1
            if v < g[y, x]:
                g[y, x] = v
    out = np.empty((h, w), np.int64)
    s = np.empty(w, np.int64)
    t = np.empty(w, np.int64)
    none = True
    for y in range(h):
        q = 0
        s[0] = 0
        t[0] = 0
        for u in range(1, w):
            gu = g[y, u]
            while q >= 0:
                a = t[q] - s[q]
                b = t[q] - u
                gs = g[y, s[q]]
                if a * a + gs * gs > b * b + gu * gu:
                    q -= 1
                else:
                    break
            if q < 0:
                q = 0
                s[0] = u
            else:
                i = s[q]
                gi = g[y, i]
                num = u * u - i * i + gu * gu - gi * gi
                sep = num // (2 * (u - i))
                wv = 1 + sep
                if wv < w:
                    q += 1
                    s[q] = u
                    t[q] = wv
        for u in range(w - 1, -1, -1):
            d = u - s[q]
            gs = g[y, s[q]]
            out[y, u] = d * d + gs * gs
            if u == t[q]:
                q -= 1
        if out[y, 0] < inf * inf:
            none = False
    return out, none


def squared_edt(foreground: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance transform (eq. 9, squared), integer.

    Parameters
    ----------
    foreground : (H, W) ndarray of bool
        B of eq. 8.

    Returns
    -------
    d2 : (H, W) ndarray of int64
        Squared distance, in px², from each pixel centre to the nearest background pixel
        centre; 0 on background. The image frame is not background, as in
        ``scipy.ndimage.distance_transform_edt``, so ``np.sqrt(d2)`` equals scipy's result
        whenever the image holds a background pixel. Without any background pixel every
        pixel gets ``NO_BACKGROUND_D2`` (D = ∞; scipy's output is not meaningful there).
    """
    fg = np.ascontiguousarray(foreground, dtype=bool)
    if fg.ndim != 2:
        raise InputError(f"foreground must be 2D, got shape {fg.shape}")
    if fg.size == 0:
        return np.zeros(fg.shape, np.int64)
    out, none = _squared_edt_kernel(fg)
    if none:
        out[...] = NO_BACKGROUND_D2
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _push_neighbours(p, cap, h, w, dd, kk, out, head, tail, nxt):  # pragma: no cover - compiled
    """Label the unlabelled 4-neighbours of p (order: up, left, right, down) with p's label
    and append each to the FIFO bucket of its key, capped at ``cap`` (the max(value, parent)
    rule of scikit-image's flood)."""
    y = p // w
    x = p - y * w
    for k in range(4):
        if k == 0:
            if y == 0:
                continue
            qq = p - w
        elif k == 1:
            if x == 0:
                continue
            qq = p - 1
        elif k == 2:
            if x == w - 1:
                continue
            qq = p + 1
        else:
            if y == h - 1:
                continue
            qq = p + w
        if kk[qq] and out[qq] == 0:
            out[qq] = out[p]
            key = dd[qq]
            if key > cap:
                key = cap
            if tail[key] < 0:
                head[key] = qq
            else:
                nxt[tail[key]] = qq
            tail[key] = qq


@numba.njit(cache=True, nogil=True)
def _flood_kernel(d2, inside, labels, seeds, nbuckets):  # pragma: no cover - compiled
    h, w = d2.shape
    n = h * w
    dd = d2.ravel()
    kk = inside.ravel()
    out = labels.ravel()
    head = np.full(nbuckets, -1, np.int64)
    tail = np.full(nbuckets, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    top = nbuckets - 1
    # phase 0: marker pixels, in the given order (their keys exceed every other key)
    for si in range(seeds.shape[0]):
        _push_neighbours(seeds[si], top, h, w, dd, kk, out, head, tail, nxt)
    # phase 1: bucket queue, largest key first, FIFO within a key
    cur = top
    while cur >= 0:
        p = head[cur]
        if p < 0:
            cur -= 1
            continue
        head[cur] = nxt[p]
        if head[cur] < 0:
            tail[cur] = -1
        _push_neighbours(p, cur, h, w, dd, kk, out, head, tail, nxt)
    return labels


def flood_markers(d2: np.ndarray, inside: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Marker flood of eq. 10's watershed on −D, with integer keys and a fixed tie rule.

    scikit-image's ``watershed(-D, markers, mask=inside)`` (connectivity 1) with keys
    D² instead of −D: a pixel is labelled when pushed, its key is min(D²(pixel), key of
    the pixel that pushed it), the largest key pops first, FIFO among equal keys,
    neighbours in the order up, left, right, down. Marker pixels are processed first, by
    decreasing D² and then in raster order (scikit-image: heap order among equal D).

    Parameters
    ----------
    d2 : (H, W) ndarray of int64
        Squared distances (:func:`squared_edt`), ≥ 0.
    inside : (H, W) ndarray of bool
        Pixels that may be labelled (the mask, B or one component of it).
    markers : (H, W) ndarray of int
        Marker labels > 0 (only inside ``inside`` counts); every pixel of ``inside`` with
        a larger D² than any unlabelled pixel must be a marker, as for markers D² ≥ t.

    Returns
    -------
    labels : (H, W) ndarray of int32
        Labels of the marker that floods each pixel; 0 outside ``inside`` and on pixels
        no marker reaches.
    """
    d2 = np.ascontiguousarray(d2, dtype=np.int64)
    inside = np.ascontiguousarray(inside, dtype=bool)
    labels = np.where(inside, markers, 0).astype(np.int32)
    if labels.size == 0:
        return labels
    is_marker = labels > 0
    free = inside & ~is_marker
    if not free.any() or not is_marker.any():
        return labels
    near_free = np.zeros_like(free)
    near_free[1:] |= free[:-1]
    near_free[:-1] |= free[1:]
    near_free[:, 1:] |= free[:, :-1]
    near_free[:, :-1] |= free[:, 1:]
    seeds = np.flatnonzero(is_marker & near_free)
    keys = d2.ravel()[seeds]
    seeds = seeds[np.lexsort((seeds, -keys))]
    nbuckets = int(d2[free].max()) + 1
    return _flood_kernel(d2, inside, labels, seeds.astype(np.int64), nbuckets)


def _component_particles(inside: np.ndarray, thr: int):
    """Particles of one component K of B on its crop (K = ``inside``, the rest background).

    Returns (m, local, first): m particles; ``local`` the crop labels 1..m when m ≥ 2
    (else None: with m = 1 all of K is the particle); ``first`` the crop raster index of
    each particle's first pixel.
    """
    d2 = squared_edt(inside)
    mk = inside & (d2 >= thr)
    if not mk.any():
        return 0, None, np.zeros(0, np.int64)
    markers, m = ndi.label(mk, structure=_EIGHT, output=np.int32)
    if m == 1:
        return 1, None, np.array([int(np.argmax(inside.ravel()))], np.int64)
    local = flood_markers(d2, inside, markers)
    first = first_pixels(local, m)[1:]
    dtype = np.uint8 if m < 256 else (np.uint16 if m < 65536 else np.uint32)
    return int(m), local.astype(dtype), first


def _may_hold_marker(box: tuple[slice, slice], shape: tuple[int, int], thr: int) -> bool:
    """False when no pixel of a component with bounding ``box`` can have D² ≥ thr.

    A pixel in row i of a box of height h has non-component (so background, see the module
    docstring) pixels at rows -1 and h of its column when those exist in the image.
    """
    bound = math.inf
    for s, n in zip(box, shape):
        ext = s.stop - s.start
        lo_open, hi_open = s.start > 0, s.stop < n
        if lo_open and hi_open:
            bound = min(bound, (ext + 1) // 2)
        elif lo_open or hi_open:
            bound = min(bound, ext)
    return bound == math.inf or bound * bound >= thr


def _canonical(firsts: np.ndarray) -> np.ndarray:
    """Ids 1..n for particles by the raster order of their first pixels."""
    n = firsts.size
    if n > _UINT32_MAX:
        raise InputError(f"phase holds {n} particles, more than uint32 labels can number ({_UINT32_MAX})")
    ids = np.empty(n, np.uint32)
    ids[np.argsort(firsts, kind="stable")] = np.arange(1, n + 1, dtype=np.uint32)
    return ids


# --------------------------------------------------------------------------------------
# whole image (numpy)
# --------------------------------------------------------------------------------------
def particle_labels(phase: np.ndarray, *, marker_radius_px: float = 50.0) -> np.ndarray:
    """Particle-wise segmentation S_p of one phase map (eq. 8–10), numpy in and out.

    Parameters
    ----------
    phase : (H, W) ndarray of int
        Phase map S: 0 background, 1 particle, 2 crack.
    marker_radius_px : float
        r of eq. 10, in pixels: markers are the 8-connected components of D ≥ r.

    Returns
    -------
    labels : (H, W) ndarray of uint32
        0 outside particles; particles numbered 1..n in the raster order of their first
        pixel. Components of B without a marker are 0. Equal to
        :func:`particle_labels_dask` for any chunking, and to :func:`watershed_reference`
        up to renumbering except for a few tied boundary pixels (see module docstring).

    Raises
    ------
    InputError
        If ``phase`` is not a 2D integer array with values in {0, 1, 2}, or
        ``marker_radius_px`` is not a finite number > 0.
    """
    phase = _validate_phase(phase, "phase")
    thr = marker_threshold(marker_radius_px)
    shape = phase.shape
    b = phase > 0
    if b.size == 0 or not b.any():
        return np.zeros(shape, np.uint32)
    if thr <= 1:
        # r ≤ 1: every pixel of B is a marker; particles = 8-components of B
        lab, n = ndi.label(b, structure=_EIGHT, output=np.int32)
        lut = np.zeros(n + 1, np.uint32)
        lut[1:] = _canonical(first_pixels(lab, n)[1:])
        return lut[lab]
    comp, ncomp = ndi.label(b, output=np.int32)
    boxes = ndi.find_objects(comp)
    width = shape[1]
    jobs = [
        (k, crop_box(box, 1, shape))
        for k, box in enumerate(boxes, start=1)
        if box is not None and _may_hold_marker(box, shape, thr)
    ]

    def work(job):
        k, cb = job
        return _component_particles(comp[cb] == k, thr)

    big = sum(1 for _, cb in jobs if (cb[0].stop - cb[0].start) * (cb[1].stop - cb[1].start) > 1 << 16)
    if big >= 2:
        with ThreadPoolExecutor(max_workers=2) as pool:  # numba kernels release the GIL
            results = list(pool.map(work, jobs))
    else:
        results = [work(j) for j in jobs]
    firsts = []
    for (k, cb), (m, _, first) in zip(jobs, results):
        if m:
            fy, fx = np.divmod(first, cb[1].stop - cb[1].start)
            firsts.append((fy + cb[0].start) * np.int64(width) + fx + cb[1].start)
    if not firsts:
        return np.zeros(shape, np.uint32)
    ids = _canonical(np.concatenate(firsts))
    comp_lut = np.zeros(ncomp + 1, np.uint32)
    pos = 0
    multi = []
    for (k, cb), (m, local, _) in zip(jobs, results):
        if m == 1:
            comp_lut[k] = ids[pos]
        elif m >= 2:
            multi.append((cb, local, np.concatenate([[0], ids[pos : pos + m]]).astype(np.uint32)))
        pos += m
    out = comp_lut[comp]
    for cb, local, lut in multi:
        sel = local > 0
        view = out[cb]
        view[sel] = lut[local[sel]]
    return out


# --------------------------------------------------------------------------------------
# tiled (Dask)
# --------------------------------------------------------------------------------------
def _particles_crop_kernel(oid, box, comp_crop, *, thr, width):
    """map_object_crops kernel: (m, global first-pixel indices, local labels or None)."""
    m, local, first = _component_particles(comp_crop == oid, thr)
    fy, fx = np.divmod(first, box[1].stop - box[1].start)
    return m, (fy + box[0].start) * np.int64(width) + fx + box[1].start, local


def _batch_meta(results):
    return [(r[0], r[1]) for r in results]


def particle_labels_dask(phase, *, marker_radius_px: float = 50.0, scratch: Scratch | None = None) -> da.Array:
    """Particle-wise segmentation S_p of a chunked phase map (eq. 8–10).

    Runs the per-component method of :func:`particle_labels` on component crops read from
    the chunks (never the whole image in one task): global 4-connected components of B
    (:func:`~cathodeflow.tiling.components.label_components`), their bounding boxes, one
    batch of component crops per task, then a paste of the multi-particle crops onto the
    relabelled components. Intermediate results are persisted (computed) during the call:
    the component labels and the crop results in ``scratch`` when given (on disk, so memory
    does not grow with the image), else in memory; the returned array is lazy on top of
    them.

    Parameters
    ----------
    phase : (H, W) dask array (or array-like) of int
        Phase map S: 0 background, 1 particle, 2 crack.
    marker_radius_px : float
        r of eq. 10, in pixels.
    scratch : Scratch, optional
        On-disk store for the component labels; it must outlive the returned array's
        computations.

    Returns
    -------
    labels : (H, W) dask array of uint32
        Same chunks as ``phase``; identical to ``particle_labels(phase.compute())``.

    Raises
    ------
    InputError
        As :func:`particle_labels`.
    """
    if not isinstance(phase, da.Array):
        phase = da.asarray(np.asarray(phase))
    check_phase_array(phase, "phase")
    thr = marker_threshold(marker_radius_px)
    shape = phase.shape
    if phase.size == 0:
        return da.zeros(shape, dtype=np.uint32, chunks=phase.chunks)
    lo, hi = dask.compute(phase.min(), phase.max())
    check_phase_range(int(lo), int(hi), "phase")
    b = phase > 0
    if thr <= 1:
        lab, n = label_components(b, connectivity=2, scratch=scratch)  # canonical raster numbering
        if n > _UINT32_MAX:
            raise InputError(f"phase holds {n} particles, more than uint32 labels can number")
        return lab.astype(np.uint32)
    comp, ncomp = label_components(b, connectivity=1, scratch=scratch)
    if ncomp == 0:
        return da.zeros(shape, dtype=np.uint32, chunks=phase.chunks)
    if scratch is None:  # from scratch, comp is a stored block through a lookup table: cheap
        (comp,) = dask.persist(comp)
    boxes = object_boxes(comp)
    boxes = {k: bx for k, bx in boxes.items() if _may_hold_marker(bx, shape, thr)}
    batches = map_object_crops(
        _particles_crop_kernel, [comp], boxes, margin=1, kernel_kwargs={"thr": thr, "width": shape[1]}
    )
    # with a scratch, the crops of multi-particle components go to disk; each paste task reads its own
    metas, results = keep([bt.result for bt in batches], _batch_meta, scratch=scratch)
    firsts = [f for meta in metas for (m, f) in meta if m]
    if not firsts:
        return da.zeros(shape, dtype=np.uint32, chunks=phase.chunks)
    ids = _canonical(np.concatenate(firsts))
    comp_lut = np.zeros(ncomp + 1, np.uint32)
    pieces = []
    pos = 0
    for bt, res, meta in zip(batches, results, metas):
        for i, (oid, cb, (m, _)) in enumerate(zip(bt.ids, bt.boxes, meta)):
            if m == 1:
                comp_lut[oid] = ids[pos]
            elif m >= 2:
                lut = np.concatenate([[0], ids[pos : pos + m]]).astype(np.uint32)
                pieces.append(Piece(cb, res, (i, 2), lut))
            pos += m
    base = relabel(comp, comp_lut)
    return paste_crops(shape, comp.chunks, pieces, dtype=np.uint32, base=base)


# --------------------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------------------
def watershed_reference(phase: np.ndarray, marker_radius_px: float = 50.0) -> np.ndarray:
    """The paper's plain chain (for tests and benchmarks): whole-image scipy EDT, markers
    ``label(D >= r)`` (8-connected), ``skimage.segmentation.watershed(-D, markers, mask=B)``.

    Returns
    -------
    labels : (H, W) ndarray of int32
        scikit-image's labels (markers numbered by ``ndi.label``, not canonical).
    """
    from skimage.segmentation import watershed

    phase = _validate_phase(phase, "phase")
    r = _check_radius(marker_radius_px)
    b = phase > 0
    if b.size == 0 or not b.any():
        return np.zeros(phase.shape, np.int32)
    d = ndi.distance_transform_edt(b)
    markers, _ = ndi.label(d >= r, structure=_EIGHT, output=np.int32)
    return watershed(-d, markers, mask=b).astype(np.int32)
