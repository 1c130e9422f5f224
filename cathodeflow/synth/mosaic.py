"""Large synthetic mosaics, built block by block from a few distinct tiles.

A mosaic of any size is made of ``n`` distinct tiles (of the generator's own images,
:func:`~cathodeflow.synth.generate_image`, or any the caller gives) repeated over a grid: tile
(i, j) is ``tiles[(i + 2 j) % n]``, so no two neighbours along a row or column are the same
tile when n ≥ 3. :func:`mosaic_block` computes any rectangle of it from the tiles alone, and
:func:`mosaic_array` wraps it as a Dask array whose chunks are computed on demand: a
``dask.array.store`` into a Zarr array holds a few chunks in memory, never the mosaic.

Two connectivities (:data:`MODES`), by what each tile's outer :data:`FRAME_PX` pixels hold:

``sparse``
    background: no particle crosses a tile seam (the particles are as in the tiles, apart or
    touching within a tile); the size of every connected component of the solid is bounded
    by the tile.
``percolating``
    solid: the frames of all tiles join into one grid of solid lines to which every particle
    cut by a tile edge is attached, so one 4-connected component of the solid spans the
    whole mosaic (particles inside a tile, touching no edge, stay apart): the worst case of
    the particle stage (a component whose bounding box is the whole image). Not a realistic
    microstructure; a stress test.

The kind (:data:`KINDS`) is ``phase`` (the phase map S of eq. 1 on the high-resolution grid
η, uint8 0/1/2) or ``sem`` (the rendered low-resolution SEM image, η·35/13, uint8; the frame
painted at the tile's median background or solid grey).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

__all__ = ["MODES", "KINDS", "FRAME_PX", "frame_tile", "mosaic_block", "mosaic_array", "mosaic_tiles",
           "synthetic_mosaic"]

MODES = ("sparse", "percolating")
KINDS = ("phase", "sem")
#: Width (px) of the frame each tile gets (background or solid).
FRAME_PX = 2


def frame_tile(tile: np.ndarray, value, *, width: int = FRAME_PX) -> np.ndarray:
    """A copy of ``tile`` (H, W) with its outer ``width`` pixels set to ``value``."""
    t = np.array(tile, copy=True)
    t[:width], t[-width:], t[:, :width], t[:, -width:] = value, value, value, value
    return t


def mosaic_block(tiles: list[np.ndarray], rows: slice, cols: slice) -> np.ndarray:
    """Rows ``rows`` and columns ``cols`` (slices with start and stop) of the mosaic of
    ``tiles`` (equal shapes (t_h, t_w), one dtype): tile (i, j), covering rows
    [i·t_h, (i+1)·t_h) and columns [j·t_w, (j+1)·t_w), is ``tiles[(i + 2 j) % len(tiles)]``.

    Returns
    -------
    ndarray, shape (rows.stop - rows.start, cols.stop - cols.start), the tiles' dtype
    """
    th, tw = tiles[0].shape
    out = np.empty((rows.stop - rows.start, cols.stop - cols.start), tiles[0].dtype)
    for i in range(rows.start // th, (rows.stop - 1) // th + 1):
        y0, y1 = max(rows.start, i * th), min(rows.stop, (i + 1) * th)
        for j in range(cols.start // tw, (cols.stop - 1) // tw + 1):
            x0, x1 = max(cols.start, j * tw), min(cols.stop, (j + 1) * tw)
            tile = tiles[(i + 2 * j) % len(tiles)]
            out[y0 - rows.start:y1 - rows.start, x0 - cols.start:x1 - cols.start] = \
                tile[y0 - i * th:y1 - i * th, x0 - j * tw:x1 - j * tw]
    return out


def mosaic_array(tiles: list[np.ndarray], shape: tuple[int, int], *, chunk_px: int = 1024):
    """The mosaic of ``tiles`` (:func:`mosaic_block`) of ``shape`` (H, W) as a Dask array of
    ``chunk_px`` square chunks, each computed from the tiles when needed.

    Returns
    -------
    dask.array.Array, shape (H, W), the tiles' dtype
    """
    import dask.array as da

    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"shape must be two integers >= 1, got {shape!r}")
    if not tiles or any(t.shape != tiles[0].shape or t.dtype != tiles[0].dtype or t.ndim != 2 for t in tiles):
        raise InputError("tiles must be one or more 2-D arrays of one shape and dtype")
    chunks = tuple(min(int(chunk_px), s) for s in shape)

    def block(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        return mosaic_block(tiles, slice(y0, y1), slice(x0, x1))

    return da.map_blocks(block, chunks=da.core.normalize_chunks(chunks, shape), dtype=tiles[0].dtype,
                         meta=np.empty((0, 0), tiles[0].dtype))


def _lr_phase(phase_hr: np.ndarray, shape_lr: tuple[int, int]) -> np.ndarray:
    """The phase of each low-resolution pixel's centre (nearest high-resolution pixel)."""
    H, W = phase_hr.shape
    iy = np.minimum(((np.arange(shape_lr[0]) + 0.5) * H / shape_lr[0]).astype(int), H - 1)
    ix = np.minimum(((np.arange(shape_lr[1]) + 0.5) * W / shape_lr[1]).astype(int), W - 1)
    return phase_hr[np.ix_(iy, ix)]


def mosaic_tiles(*, kind: str = "phase", mode: str = "sparse", n_tiles: int = 4, tile_lr_px: int = 390,
                 condition: str = "20C", seed: int = 0) -> tuple[list[np.ndarray], float]:
    """``n_tiles`` framed tiles of :func:`~cathodeflow.synth.generate_image` images.

    Parameters
    ----------
    kind : {'phase', 'sem'}
        Phase map on the high-resolution grid, or low-resolution SEM image.
    mode : {'sparse', 'percolating'}
        Frame of background or of solid (module notes).
    n_tiles : int
        Distinct tiles (≥ 1; 3 or more: no two neighbours alike).
    tile_lr_px : int
        Edge of a tile's low-resolution image, px (multiple of 13, ≥ 26); the phase tile is
        ``tile_lr_px·35/13`` px.
    condition : str
        Crack amount (a key of :data:`~cathodeflow.synth.CONDITIONS`).
    seed : int
        Tile k is generated with seed ``(seed, k)``.

    Returns
    -------
    tiles : list of ndarray, (t, t) uint8
    pixel_size_um : float
        Of the tiles' grid (η for ``phase``, η·35/13 for ``sem``).
    """
    from .study import generate_image

    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(n_tiles, bool) or not isinstance(n_tiles, (int, np.integer)) or n_tiles < 1:
        raise InputError(f"n_tiles must be an integer >= 1, got {n_tiles!r}")
    tiles, ps = [], None
    for k in range(int(n_tiles)):
        img = generate_image(condition, seed=[int(seed), k], shape_lr=(tile_lr_px, tile_lr_px))
        if kind == "phase":
            tiles.append(frame_tile(img.phase.astype(np.uint8), 1 if mode == "percolating" else 0))
            ps = img.pixel_size_hr_um
        else:
            ph = _lr_phase(img.phase, img.lr.shape)
            grey = img.lr[ph == (1 if mode == "percolating" else 0)]
            tiles.append(frame_tile(img.lr, np.uint8(np.median(grey)) if grey.size else img.lr.min()))
            ps = img.pixel_size_lr_um
    return tiles, float(ps)


def synthetic_mosaic(megapixels: float, *, kind: str = "phase", mode: str = "sparse", n_tiles: int = 4,
                     tile_lr_px: int = 390, condition: str = "20C", seed: int = 0, chunk_px: int = 1024):
    """A square synthetic mosaic of about ``megapixels`` MP as a lazy Dask array.

    Parameters
    ----------
    megapixels : float
        Size; the side is ``round(sqrt(megapixels·10⁶))`` px.
    kind, mode, n_tiles, tile_lr_px, condition, seed
        As :func:`mosaic_tiles` (the tiles are generated now, the mosaic when computed).
    chunk_px : int
        Edge of the Dask chunks.

    Returns
    -------
    array : dask.array.Array, shape (side, side), uint8
    pixel_size_um : float
    """
    try:
        mp = float(megapixels)
    except (TypeError, ValueError):
        mp = math.nan
    if not (math.isfinite(mp) and mp > 0):
        raise InputError(f"megapixels must be a number > 0, got {megapixels!r}")
    side = max(1, int(round(math.sqrt(mp * 1e6))))
    tiles, ps = mosaic_tiles(kind=kind, mode=mode, n_tiles=n_tiles, tile_lr_px=tile_lr_px,
                             condition=condition, seed=seed)
    return mosaic_array(tiles, (side, side), chunk_px=chunk_px), ps
