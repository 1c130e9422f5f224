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

Not in the paper, optional (``marker_h_px``; :attr:`cathodeflow.config.Params.marker_h_um`):
markers only at the h-maxima of D among D ≥ r (:func:`h_maxima`), so that touching
particles joined by a neck wider than 2r keep a marker each; the same flood follows.

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
5. Tiled (:func:`particle_labels_dask`), a component too large for one crop (touching
   particles whose solid percolates across a whole-slide mosaic) is flooded chunk by chunk
   on windows, with the window's edge as roots standing for paths from outside; a pixel a
   marker wins there has the whole image's label, so the result is still exact, and the
   memory of a task is bounded by its window, not by the component.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

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
from ..tiling.scheduler import compute
from ..tiling.scratch import Scratch, keep, persist
from ..tiling.threads import kernel_threads

__all__ = [
    "particle_labels",
    "particle_labels_dask",
    "watershed_reference",
    "squared_edt",
    "flood_markers",
    "marker_threshold",
    "h_maxima",
    "reconstruct_by_dilation",
]

_UINT32_MAX = int(np.iinfo(np.uint32).max)
#: Label of pixels that a path from beyond a window may win (:func:`flood_markers`).
FROM_OUTSIDE = np.int32(np.iinfo(np.int32).max)
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
def _flood_kernel(d2, inside, labels, seeds, pre, nbuckets):  # pragma: no cover - compiled
    h, w = d2.shape
    n = h * w
    dd = d2.ravel()
    kk = inside.ravel()
    out = labels.ravel()
    head = np.full(nbuckets, -1, np.int64)
    tail = np.full(nbuckets, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    top = nbuckets - 1
    # roots for paths from outside a window: first in the bucket of their own key
    for si in range(pre.shape[0]):
        q = pre[si]
        key = dd[q]
        if tail[key] < 0:
            head[key] = q
        else:
            nxt[tail[key]] = q
        tail[key] = q
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


def flood_markers(d2: np.ndarray, inside: np.ndarray, markers: np.ndarray, *, outside=None) -> np.ndarray:
    """Marker flood of eq. 10's watershed on −D, with integer keys and a fixed tie rule.

    scikit-image's ``watershed(-D, markers, mask=inside)`` (connectivity 1) with keys
    D² instead of −D: a pixel is labelled when pushed, its key is min(D²(pixel), key of
    the pixel that pushed it), the largest key pops first, FIFO among equal keys,
    neighbours in the order up, left, right, down. Marker pixels are processed first, by
    decreasing D² and then in raster order (scikit-image: heap order among equal D).

    With ``outside`` (the window form of :func:`particle_labels_dask`), the given pixels
    stand for every path that enters the array from beyond its edge: they are labelled
    :data:`FROM_OUTSIDE` and queued first in the bucket of their own D², i.e. given the
    best cost any such path could bring them. A pixel that a marker still wins is labelled
    as in the flood of the whole image (see :func:`particle_labels_dask`).

    Parameters
    ----------
    d2 : (H, W) ndarray of int64
        Squared distances (:func:`squared_edt`), ≥ 0.
    inside : (H, W) ndarray of bool
        Pixels that may be labelled (the mask, B or one component of it).
    markers : (H, W) ndarray of int
        Marker labels > 0 and < :data:`FROM_OUTSIDE` (only inside ``inside`` counts);
        every pixel of ``inside`` with a larger D² than any unlabelled pixel must be a
        marker, as for markers D² ≥ t.
    outside : (H, W) ndarray of bool, optional
        Pixels reached from beyond the array (only non-marker pixels of ``inside`` count).

    Returns
    -------
    labels : (H, W) ndarray of int32
        Labels of the marker that floods each pixel (:data:`FROM_OUTSIDE` where a path
        from ``outside`` may win); 0 outside ``inside`` and on pixels nothing reaches.
    """
    d2 = np.ascontiguousarray(d2, dtype=np.int64)
    inside = np.ascontiguousarray(inside, dtype=bool)
    labels = np.where(inside, markers, 0).astype(np.int32)
    if labels.size == 0:
        return labels
    is_marker = labels > 0
    pre = np.zeros(0, np.int64)
    if outside is not None:
        roots = np.asarray(outside, dtype=bool) & inside & ~is_marker
        labels[roots] = FROM_OUTSIDE
        pre = np.flatnonzero(roots).astype(np.int64)
    free = inside & (labels == 0)
    if not free.any() or not (is_marker.any() or pre.size):
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
    if pre.size:
        nbuckets = max(nbuckets, int(d2.ravel()[pre].max()) + 1)
    return _flood_kernel(d2, inside, labels, seeds.astype(np.int64), pre, nbuckets)


#: D is quantised to 1/256 px for the h-maxima markers, so that their test is exact integer
#: arithmetic (no float rounding between D − h and its reconstruction).
_D_STEPS = 256


def h_quantum(marker_h_px: float | None) -> int | None:
    """h of the h-maxima markers in steps of 1/:data:`_D_STEPS` px (None: eq. 10's markers)."""
    if marker_h_px is None:
        return None
    h = float(marker_h_px)
    if not (math.isfinite(h) and h > 0):
        raise InputError(f"marker_h_px must be a finite number > 0 (h of the h-maxima markers, in px), got {h}")
    return max(1, int(round(h * _D_STEPS)))


@numba.njit(cache=True, nogil=True)
def _reconstruct_kernel(r, g, order, width):  # pragma: no cover - compiled
    n = r.size
    top = r[order[0]] if n else 0
    head = np.full(top + 1, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    seed = r.copy()
    height = n // width
    i = 0
    for level in range(top, 0, -1):
        # the pixels whose seed is this level, then those raised to it (each pixel is raised
        # at most once: later levels are lower, so min(level, g) cannot exceed it again)
        while True:
            if i < n and seed[order[i]] == level:
                p = order[i]
                i += 1
                if r[p] != level:
                    continue
            elif head[level] >= 0:
                p = head[level]
                head[level] = nxt[p]
            else:
                break
            y = p // width
            x = p - y * width
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= height:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if xx < 0 or xx >= width or (dy == 0 and dx == 0):
                        continue
                    q = yy * width + xx
                    v = g[q] if g[q] < level else level
                    if v > r[q]:
                        r[q] = v
                        nxt[q] = head[v]
                        head[v] = q
    return r


def reconstruct_by_dilation(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Morphological reconstruction by dilation of ``seed`` under ``mask`` (8-connected),
    non-negative integers with seed ≤ mask: R(p) = the largest min(seed(q), mask along a
    path from q to p). Equal to ``skimage.morphology.reconstruction(seed, mask)``; a
    priority flood on integer levels, linear in the pixels and levels."""
    seed = np.ascontiguousarray(seed, dtype=np.int64)
    mask = np.ascontiguousarray(mask, dtype=np.int64)
    if seed.shape != mask.shape or seed.ndim != 2:
        raise InputError(f"seed and mask must be 2D of one shape, got {seed.shape} and {mask.shape}")
    if seed.size == 0:
        return seed.copy()
    if seed.min() < 0 or np.any(seed > mask):
        raise InputError("seed must be non-negative integers at most mask")
    order = np.argsort(-seed.ravel(), kind="stable")
    return _reconstruct_kernel(seed.ravel().copy(), mask.ravel(), order, seed.shape[1]).reshape(seed.shape)


def h_maxima(d2: np.ndarray, inside: np.ndarray, hq: int) -> np.ndarray:
    """The h-maxima of D = √d2 on ``inside`` (Soille, *Morphological Image Analysis*, §6.3.4).

    R is the morphological reconstruction by dilation of D − h under D (the h-maxima
    transform); the h-maxima are R's regional maxima (8-connected plateaus higher than all
    their neighbours): one per dome of D that rises at least h above the saddle joining it
    to a higher or equal dome. Two touching particles keep a marker each when the neck
    between them lies at least h below the smaller one's largest D; a particle whose D has
    several summits closer than h (an elongated or rough one) keeps one. D is quantised to
    1/256 px (``hq`` in those steps), so the test is exact integer arithmetic. Outside
    ``inside`` D is 0.
    """
    from skimage.morphology import local_maxima

    dq = np.where(inside, np.floor(np.sqrt(d2.astype(np.float64)) * _D_STEPS), 0).astype(np.int64)
    rec = reconstruct_by_dilation(np.maximum(dq - hq, 0), dq)
    return inside & local_maxima(rec, connectivity=2, allow_borders=True).astype(bool)


def _component_particles(inside: np.ndarray, thr: int, hq: int | None = None):
    """Particles of one component K of B on its crop (K = ``inside``, the rest background).

    Markers: D² ≥ thr (eq. 10), and with ``hq`` (:func:`h_quantum`) only the h-maxima of
    D among them (:func:`h_maxima`).

    Returns (m, local, first): m particles; ``local`` the crop labels 1..m when m ≥ 2
    (else None: with m = 1 all of K is the particle); ``first`` the crop raster index of
    each particle's first pixel.
    """
    d2 = squared_edt(inside)
    mk = inside & (d2 >= thr)
    if hq is not None and mk.any():
        mk &= h_maxima(d2, inside, hq)
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
def particle_labels(phase: np.ndarray, *, marker_radius_px: float = 50.0,
                    marker_h_px: float | None = None) -> np.ndarray:
    """Particle-wise segmentation S_p of one phase map (eq. 8–10), numpy in and out.

    Parameters
    ----------
    phase : (H, W) ndarray of int
        Phase map S: 0 background, 1 particle, 2 crack.
    marker_radius_px : float
        r of eq. 10, in pixels: markers are the 8-connected components of D ≥ r.
    marker_h_px : float, optional
        Not in the paper: markers only at the h-maxima of D (:func:`h_maxima`, h in pixels)
        among D ≥ r, so that touching particles joined by a neck wider than 2r still get a
        marker each. None (default): eq. 10 as written.

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
    hq = h_quantum(marker_h_px)
    shape = phase.shape
    b = phase > 0
    if b.size == 0 or not b.any():
        return np.zeros(shape, np.uint32)
    if thr <= 1 and hq is None:
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
        return _component_particles(comp[cb] == k, thr, hq)

    big = sum(1 for _, cb in jobs if (cb[0].stop - cb[0].start) * (cb[1].stop - cb[1].start) > 1 << 16)
    threads = kernel_threads(limit=2) if big >= 2 else 1
    if threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:  # numba kernels release the GIL
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
def _particles_crop_kernel(oid, box, comp_crop, *, thr, width, hq=None):
    """map_object_crops kernel: (m, global first-pixel indices, local labels or None)."""
    m, local, first = _component_particles(comp_crop == oid, thr, hq)
    fy, fx = np.divmod(first, box[1].stop - box[1].start)
    return m, (fy + box[0].start) * np.int64(width) + fx + box[1].start, local


def _batch_meta(results):
    return [(r[0], r[1]) for r in results]


# --------------------------------------------------------------------------------------
# components larger than a window: chunk windows with roots for paths from outside
# --------------------------------------------------------------------------------------
#: Components with crops up to this size (px) are segmented whole whatever the chunks (a
#: crop costs about 33 bytes per pixel: 0.5 GiB), since windows cost more work than a crop.
_WHOLE_COMPONENT_PX = 1 << 24
#: Windows grow by this factor where a window left pixels undecided.
_HALO_GROWTH = 2
#: The flood's first halo is the largest D over this divisor. Measured on a percolating
#: 27 MP mosaic (``benchmarks.bench_memory`` tiles, particles up to D = 323 px), describe's
#: time with chunks of 2048 / 1024 / 700 px: halo 2·D (the earlier start) 12.3–13.2 s /
#: 19.6–21.4 s / 33.5–34.8 s; D/2 10.1–10.8 s / 15.0–17.4 s / 19.4–22.4 s; D/4 11.3 s at
#: 2048 px, with more chunks redone. Smaller windows cost less per chunk, and the few
#: chunks whose particles reach farther are redone with a larger halo.
_HALO_START_DIVISOR = 2


def _chunk_core(oid: int, bounds) -> tuple[slice, slice]:
    """Region of chunk ``oid`` (1 + row-major chunk index)."""
    ybounds, xbounds = bounds
    i, j = divmod(oid - 1, len(xbounds) - 1)
    return (slice(int(ybounds[i]), int(ybounds[i + 1])), slice(int(xbounds[j]), int(xbounds[j + 1])))


def _within(inner: tuple[slice, slice], outer: tuple[slice, slice]) -> tuple[slice, slice]:
    """``inner`` in the coordinates of ``outer`` (which holds it)."""
    return tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(inner, outer))  # type: ignore[return-value]


def _chunks_meeting(bounds, boxes) -> list[int]:
    """Chunk ids (1 + row-major index) whose region meets one of ``boxes``."""
    ybounds, xbounds = bounds
    nbx = len(xbounds) - 1
    hit = set()
    for by, bx in boxes:
        i0 = int(np.searchsorted(ybounds, by.start, side="right") - 1)
        i1 = int(np.searchsorted(ybounds, by.stop, side="left"))
        j0 = int(np.searchsorted(xbounds, bx.start, side="right") - 1)
        j1 = int(np.searchsorted(xbounds, bx.stop, side="left"))
        hit.update(1 + i * nbx + j for i in range(i0, i1) for j in range(j0, j1))
    return sorted(hit)


def _marker_window_kernel(oid, box, comp_crop, *, bounds, margin, big, thr):
    """Markers of the large components in one chunk, from the EDT of the chunk grown by
    ``margin``: (exact, largest D² there, marker mask of the chunk, components with a
    marker). D² on the chunk is exact when no pixel's D² exceeds margin² (every pixel
    outside the crop is farther than ``margin``); else ``exact`` is False."""
    core = _within(_chunk_core(oid, bounds), box)
    d2 = squared_edt(comp_crop > 0)[core]
    comp = comp_crop[core]
    inside = np.isin(comp, big)
    top = int(d2[inside].max()) if inside.any() else 0
    mk = inside & (d2 >= thr)
    return top <= margin * margin, top, mk, np.unique(comp[mk])


def _marker_meta(results):
    return [(r[0], r[1], r[3]) for r in results]


def _window_outside(window: tuple[slice, slice], shape) -> np.ndarray:
    """Edge pixels of ``window`` through which paths from the rest of the image enter."""
    h, w = window[0].stop - window[0].start, window[1].stop - window[1].start
    ring = np.zeros((h, w), bool)
    if window[0].start > 0:
        ring[0] = True
    if window[0].stop < shape[0]:
        ring[-1] = True
    if window[1].start > 0:
        ring[:, 0] = True
    if window[1].stop < shape[1]:
        ring[:, -1] = True
    return ring


def _flood_window_kernel(oid, box, comp_crop, marker_crop, *, bounds, halo, shape, big):
    """Particles of the large components in one chunk, flooded on the chunk grown by
    ``halo`` (the window) with roots for paths from outside the window on its edge; the
    crop ``box`` is the window grown so that D² is exact on it.

    Returns (undecided pixels of the chunk, global marker ids, their first pixels (global
    raster index), chunk labels as indices into the ids (1-based)); the last three are None
    when pixels are undecided."""
    core = _chunk_core(oid, bounds)
    window = crop_box(core, halo, shape)
    wrel = _within(window, box)
    d2 = squared_edt(comp_crop > 0)[wrel]
    inside = np.isin(comp_crop[wrel], big)
    markers = np.where(inside, marker_crop[wrel], 0).astype(np.int32)
    lab = flood_markers(d2, inside, markers, outside=_window_outside(window, shape))
    lab = lab[_within(core, window)]
    undecided = int(np.count_nonzero(lab == FROM_OUTSIDE))
    if undecided:
        return undecided, None, None, None
    ids = np.flatnonzero(np.bincount(lab.ravel()))  # length: the largest global marker id + 1
    ids = ids[ids > 0]
    lut = np.zeros(int(ids[-1]) + 1 if ids.size else 1, np.int64)
    lut[ids] = np.arange(1, ids.size + 1)
    local = lut[lab]
    first = first_pixels(local, ids.size)[1:]
    fy, fx = np.divmod(first, core[1].stop - core[1].start)
    firsts = (fy + core[0].start) * np.int64(shape[1]) + fx + core[1].start
    dtype = np.uint16 if ids.size < 65536 else np.uint32
    return 0, ids.astype(np.int64), firsts, local.astype(dtype)


def _flood_meta(results):
    return [(r[0], r[1], r[2]) for r in results]


def _windowed_particles(comp: da.Array, big_boxes: dict, *, thr: int, scratch: Scratch | None):
    """Particles of components too large for one crop, chunk by chunk (see
    :func:`particle_labels_dask`). Returns (first pixels, pieces): the first pixel (global
    raster index) of each particle, in the order of their marker ids, and for each chunk a
    (chunk box, source, path, positions in that order of its labels 1..m)."""
    shape = comp.shape
    bounds = (np.concatenate([[0], np.cumsum(comp.chunks[0])]).astype(np.int64),
              np.concatenate([[0], np.cumsum(comp.chunks[1])]).astype(np.int64))
    big = np.array(sorted(big_boxes), dtype=comp.dtype)
    todo = _chunks_meeting(bounds, big_boxes.values())

    def run(kernel, arrays, oids, margin, kwargs, summarize):
        boxes = {o: _chunk_core(o, bounds) for o in oids}
        batches = map_object_crops(kernel, arrays, boxes, margin=margin, max_batch_objects=1,
                                   kernel_kwargs=kwargs)
        metas, kept = keep([b.result for b in batches], summarize, scratch=scratch)
        return {b.ids[0]: (m[0], k) for b, m, k in zip(batches, metas, kept)}

    # 1. markers M = {D² ≥ t} (eq. 10), from windows wide enough for an exact D²
    margin, found = 8 * (math.isqrt(thr) + 1), {}
    while todo:
        got = run(_marker_window_kernel, [comp], todo, margin,
                  dict(bounds=bounds, margin=margin, big=big, thr=thr), _marker_meta)
        found.update({o: v for o, v in got.items() if v[0][0]})
        todo = [o for o, v in got.items() if not v[0][0]]
        if todo:
            need = max(v[0][1] for o, v in got.items() if o in todo)  # D² found ≥ the exact one
            grown = _HALO_GROWTH * margin
            margin = grown if need >= NO_BACKGROUND_D2 else max(grown, math.isqrt(need) + 1)
    top = max((m[1] for m, _ in found.values()), default=0)
    marked = np.unique(np.concatenate([m[2] for m, _ in found.values()] + [np.zeros(0, big.dtype)]))
    pieces = [Piece(_chunk_core(o, bounds), k, (0, 2)) for o, (_, k) in found.items()]
    mask = paste_crops(shape, comp.chunks, pieces, dtype=bool)
    markers, n_markers = label_components(mask, connectivity=2, scratch=scratch)
    (markers,) = persist(markers, scratch=scratch)  # every window reads its blocks
    if n_markers >= int(FROM_OUTSIDE):
        raise InputError(f"phase holds {n_markers} particle markers, more than this flood can label")
    big = big[np.isin(big, marked)]  # components without a marker stay 0
    if not big.size:
        return np.zeros(0, np.int64), []

    # 2. the flood, on windows that grow until a marker decides every pixel of the chunk
    reach = math.isqrt(top) + 1  # every inside pixel's nearest background is this close
    # the halo only sets how much work a chunk costs, never its result (the edge roots tell
    # when it was too small); half the largest D was the fastest start measured (_HALO_START_DIVISOR)
    halo = max(1, reach // _HALO_START_DIVISOR)
    todo = _chunks_meeting(bounds, [big_boxes[k] for k in big.tolist()])
    done = {}
    while todo:
        got = run(_flood_window_kernel, [comp, markers], todo, halo + reach,
                  dict(bounds=bounds, halo=halo, shape=shape, big=big), _flood_meta)
        done.update({o: v for o, v in got.items() if v[0][0] == 0})
        todo = [o for o, v in got.items() if v[0][0]]
        halo *= _HALO_GROWTH
    ids = np.concatenate([m[1] for m, _ in done.values()])
    firsts = np.concatenate([m[2] for m, _ in done.values()])
    uniq, inv = np.unique(ids, return_inverse=True)
    first_of = np.full(uniq.size, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first_of, inv, firsts)
    out = [(_chunk_core(o, bounds), k, (0, 3), np.searchsorted(uniq, m[1])) for o, (m, k) in done.items()]
    return first_of, out


def particle_labels_dask(phase, *, marker_radius_px: float = 50.0, scratch: Scratch | None = None,
                         max_component_px: int | None = None, marker_h_px: float | None = None) -> da.Array:
    """Particle-wise segmentation S_p of a chunked phase map (eq. 8–10).

    Runs the per-component method of :func:`particle_labels` on component crops read from
    the chunks (never the whole image in one task): global 4-connected components of B
    (:func:`~cathodeflow.tiling.components.label_components`), their bounding boxes, one
    batch of component crops per task, then a paste of the multi-particle crops onto the
    relabelled components. Intermediate results are persisted (computed) during the call:
    the component labels and the crop results in ``scratch`` when given (on disk, so memory
    does not grow with the image), else in memory; the returned array is lazy on top of
    them.

    A component whose crop exceeds ``max_component_px`` (touching particles whose solid
    percolates across a mosaic) is never held whole; it is segmented chunk by chunk:

    1. Markers: each chunk's D² from the EDT of the chunk grown by a margin m, exact where
       no D² exceeds m² (else the chunk is redone with a wider margin); M = {D² ≥ t} gets
       global 8-connected labels.
    2. Flood: each chunk is flooded on a window (the chunk grown by a halo, plus the reach
       of D) with every global marker in the window as a root, and with the window's edge
       pixels as extra roots labelled "from outside" that stand for every path entering
       from the rest of the image. This flood is the whole image's, restricted: a pixel's
       pop order is (its key, then its parent's pop order, ...), so the whole image's flood
       gives each pixel the label of the best such path from a marker, paths compared key
       by key from the pixel back to the marker (the marker's D², then raster index, last);
       an edge root gets the best cost any path through it could have (its own D² as key,
       ahead of every other pixel of that key). So where a marker of the window beats
       every edge root, no path from outside can beat it either, and the pixel's label is
       the whole image's. Chunks with pixels won by an edge root are redone with the halo
       doubled (the window stops growing at the image: then nothing enters from outside).
       The halo starts at half the largest D (:data:`_HALO_START_DIVISOR`): smaller
       windows cost less, and the chunks that need more are redone.

    Parameters
    ----------
    phase : (H, W) dask array (or array-like) of int
        Phase map S: 0 background, 1 particle, 2 crack.
    marker_radius_px : float
        r of eq. 10, in pixels.
    scratch : Scratch, optional
        On-disk store for the component labels; it must outlive the returned array's
        computations.
    max_component_px : int, optional
        Largest component crop (pixels) segmented whole; default 4 chunks' worth, at least
        2²⁴ px (16.8 MP).
    marker_h_px : float, optional
        h of the h-maxima markers (:func:`particle_labels`). They are found per component,
        so a component larger than ``max_component_px`` is refused (InputError) with them:
        the chunk-by-chunk scheme above is exact for the markers of eq. 10 only.

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
    hq = h_quantum(marker_h_px)
    shape = phase.shape
    if phase.size == 0:
        return da.zeros(shape, dtype=np.uint32, chunks=phase.chunks)
    lo, hi = compute(phase.min(), phase.max())
    check_phase_range(int(lo), int(hi), "phase")
    b = phase > 0
    if thr <= 1 and hq is None:
        lab, n = label_components(b, connectivity=2, scratch=scratch)  # canonical raster numbering
        if n > _UINT32_MAX:
            raise InputError(f"phase holds {n} particles, more than uint32 labels can number")
        return lab.astype(np.uint32)
    comp, ncomp = label_components(b, connectivity=1, scratch=scratch)
    if ncomp == 0:
        return da.zeros(shape, dtype=np.uint32, chunks=phase.chunks)
    if scratch is None:  # from scratch, comp is a stored block through a lookup table: cheap
        (comp,) = persist(comp)
    if max_component_px is None:
        max_component_px = max(4 * max(comp.chunks[0]) * max(comp.chunks[1]), _WHOLE_COMPONENT_PX)
    boxes = object_boxes(comp)
    boxes = {k: bx for k, bx in boxes.items() if _may_hold_marker(bx, shape, thr)}
    big = {k: bx for k, bx in boxes.items() if _box_px(crop_box(bx, 1, shape)) > max_component_px}
    boxes = {k: bx for k, bx in boxes.items() if k not in big}
    if big and hq is not None:
        px = max(_box_px(crop_box(bx, 1, shape)) for bx in big.values())
        raise InputError(f"marker_h_um (h-maxima markers) needs every connected component of solid + crack in one "
                         f"task, but one spans a {px}-px box, more than the {max_component_px} px a task holds "
                         "(the solid percolates across the image); leave marker_h_um unset (eq. 10's markers) "
                         "for this image")
    batches = map_object_crops(
        _particles_crop_kernel, [comp], boxes, margin=1, kernel_kwargs={"thr": thr, "width": shape[1], "hq": hq}
    )
    # with a scratch, the crops of multi-particle components go to disk; each paste task reads its own
    metas, results = keep([bt.result for bt in batches], _batch_meta, scratch=scratch)
    firsts = [f for meta in metas for (m, f) in meta if m]
    window_pieces = []
    if big:
        big_firsts, window_pieces = _windowed_particles(comp, big, thr=thr, scratch=scratch)
        firsts.append(big_firsts)
    if not firsts or not sum(f.size for f in firsts):
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
    window_ids = ids[pos:]  # the windowed components' particles, by marker id
    for box, source, path, which in window_pieces:
        pieces.append(Piece(box, source, path, np.concatenate([[0], window_ids[which]]).astype(np.uint32)))
    base = relabel(comp, comp_lut)
    return paste_crops(shape, comp.chunks, pieces, dtype=np.uint32, base=base)


def _box_px(box: tuple[slice, slice]) -> int:
    return (box[0].stop - box[0].start) * (box[1].stop - box[1].start)


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
