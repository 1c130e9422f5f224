"""Whole-slide mosaics: one large TIFF read lazily, or a grid of tile files, as a Dask array.

Two ways in, both ending in a :class:`~cathodeflow.io.sem.SemImage` whose ``data`` is a
Dask array of (H, W) uint8/uint16 in ``chunk_px`` squares, which
:meth:`cathodeflow.io.store.Store.add_image` writes chunk by chunk (``dask.array.store``):
peak memory is a few chunks (plus, for a TIFF stored in full-width strips, one band of
``chunk_px`` rows), never the image.

**One large TIFF** (:func:`open_tiff_lazily`). The pixels are read through tifffile's Zarr
interface (``TiffPageSeries.aszarr()``: one Zarr chunk per TIFF tile or strip), or, for an
uncompressed contiguous file, through a memory map; only the chunks a task needs are read.
:func:`read_image` (what ``cathodeflow ingest`` calls) reads a TIFF of more than
:data:`LAZY_MIN_PIXELS` pixels this way and every other file with
:func:`~cathodeflow.io.sem.read_sem`. The pixel size comes from the same vendor metadata as
:func:`~cathodeflow.io.sem.read_sem` (:func:`~cathodeflow.io.sem.read_tiff_metadata` and the
same decisions), read without the pixels.
Differences from an eager read: only 2-D grayscale TIFFs (no palette, RGB, stacks; grey
values other than uint8/uint16 are converted as :func:`~cathodeflow.io.sem.read_sem` converts
them, after one pass over the file for their range); the data bar is cropped when the
metadata states it (FEI, JEOL sidecar, files written by
:func:`~cathodeflow.io.sem.write_tiff`) or ``databar_rows`` is given, never detected from the
pixels (stitched mosaics carry none).

**A tile grid** (:func:`read_tile_grid`), a CSV (UTF-8, header row) with the columns

``file``
    a tile image (any format :func:`~cathodeflow.io.sem.read_sem` reads; relative paths are
    relative to the CSV's folder);
``y_px``, ``x_px``
    the row and column, in pixels of the mosaic, of the tile's top-left pixel (integers; any
    origin, the smallest becomes 0).

Tiles are placed whole (no data-bar crop) and may differ in size, but must have one dtype
and one pixel size (within :data:`GRID_PIXEL_SIZE_RTOL`), and must abut exactly. Tiles of
8- or 16-bit unsigned integers are stored as they are; TIFF tiles of other grey types
(32-bit float exports, signed integers) are converted together, after one pass over every
tile for the whole mosaic's range, by :func:`~cathodeflow.io.sem.grey_conversion`'s rules,
so that all tiles share one grey scale (converted one by one, each tile would get its own).
Otherwise: an overlap, or a gap between two tiles or inside the bounding box, is refused with
one line naming the two tiles (rows of the CSV) and the overlap or gap in px. Each tile is one task of the Dask graph
(read whole, then cut into the mosaic's chunks); a tile grid with ``rows × cols`` positions
needs only each tile's header to be checked (TIFF) or read once (other formats).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError, one_line
from .csvrows import read_csv_rows
from .sem import (
    STORED_DTYPES,
    TIFF_MAGIC,
    SemImage,
    SemMeta,
    check_grey_dtype,
    decide_databar_rows,
    decide_pixel_size,
    grey_conversion,
    read_sem,
    read_tiff_metadata,
    sha256_file,
)
from .store import DEFAULT_CHUNK_PX

__all__ = [
    "LAZY_MIN_PIXELS",
    "GRID_COLUMNS",
    "GRID_PIXEL_SIZE_RTOL",
    "read_image",
    "open_tiff_lazily",
    "read_tile_grid",
    "preview",
]

#: TIFFs with more pixels than this (8192², 64 MiB at 8 bits) are read lazily by :func:`read_image`.
LAZY_MIN_PIXELS = 1 << 26
#: Columns of a tile-grid CSV.
GRID_COLUMNS = ("file", "y_px", "x_px")
#: Most relative difference between the pixel sizes of two tiles of one grid (0.1 %).
GRID_PIXEL_SIZE_RTOL = 1e-3
#: Largest preview (pixels) :func:`preview` returns of a lazy image.
PREVIEW_MAX_PIXELS = 1 << 24


def _fail(path, problem: str) -> InputError:
    return InputError(one_line(f"{path}: {problem}"))


def _is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in TIFF_MAGIC
    except OSError:
        return False


def _is_grid(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


# --------------------------------------------------------------------------- TIFF header


def _tiff_header(path: Path) -> SemMeta:
    """:func:`~cathodeflow.io.sem.read_tiff_metadata`; InputError for anything but one 2-D
    grayscale image of integer or real values."""
    meta = read_tiff_metadata(path)
    if meta.axes != "YX" or meta.photometric not in ("MINISWHITE", "MINISBLACK"):
        raise _fail(path, f"pixel array of shape {meta.shape} (axes {meta.axes}, photometric "
                          f"{meta.photometric}); a large TIFF read lazily must be one 2-D grayscale image")
    check_grey_dtype(path, meta.dtype)
    return meta


def _lazy_conversion(path: Path, data):
    """``data`` (a lazy image of any integer or real type) as uint8/uint16 by
    :func:`~cathodeflow.io.sem.grey_conversion`, and the note saying how (None: kept).
    Other types cost one pass over the file for their range, chunk by chunk."""
    import dask
    import dask.array as da

    if data.dtype in STORED_DTYPES:
        return data, None
    if data.dtype.kind == "f":
        finite = da.isfinite(data)
        nonfinite = data.size - da.count_nonzero(finite)
        lo, hi = da.where(finite, data, np.inf).min(), da.where(finite, data, -np.inf).max()
        integral = (~finite | (data == da.floor(data))).all()
    else:
        nonfinite, lo, hi, integral = 0, data.min(), data.max(), True
    nonfinite, lo, hi, integral = dask.compute(nonfinite, lo, hi, integral, scheduler="threads")
    conv = grey_conversion(path, data.dtype, lo if data.size else None, hi if data.size else None,
                           integral=bool(integral), nonfinite=int(nonfinite), stacklevel=4)
    return data.map_blocks(conv.apply, dtype=conv.dtype), conv.note


def _lazy_pixels(path: Path, chunk_px: int):
    """(H, W) Dask array of a 2-D TIFF's pixels, chunks of ``chunk_px`` squares, nothing read."""
    import dask.array as da
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tf:
        memmappable = tf.pages.first.is_memmappable and len(tf.series[0].pages) == 1
    if memmappable:  # uncompressed and contiguous: the OS reads the pages a chunk touches
        arr = da.from_array(tifffile.memmap(path, mode="r"), chunks=(chunk_px, chunk_px), name=False)
    else:  # one Zarr chunk per TIFF tile or strip, decoded on demand
        z = zarr.open_array(tifffile.imread(path, aszarr=True), mode="r")
        arr = da.from_zarr(z)
    arr = arr.reshape(tuple(s for s in arr.shape if s > 1) if arr.ndim > 2 else arr.shape)
    return arr.rechunk((min(chunk_px, arr.shape[0]), min(chunk_px, arr.shape[1])))


# --------------------------------------------------------------------------- public API


def open_tiff_lazily(
    path: str | Path,
    *,
    pixel_size_um: float | None = None,
    crop_databar: bool = True,
    databar_rows: int | None = None,
    chunk_px: int = DEFAULT_CHUNK_PX,
) -> SemImage:
    """Open one (large) 2-D grayscale TIFF without reading its pixels.

    Parameters
    ----------
    path : str or Path
        The TIFF (tiled, striped or contiguous; any compression tifffile decodes).
    pixel_size_um : float, optional
        Overrides the metadata (warning when they differ by > 1 %); required when it states none.
    crop_databar : bool
        Remove the data bar the metadata states (never detected from the pixels here).
    databar_rows : int, optional
        Remove exactly this many bottom rows instead.
    chunk_px : int
        Edge of the Dask chunks (and so of the stored chunks).

    Returns
    -------
    SemImage
        ``data``: Dask array, shape (H - databar_rows, W), uint8 or uint16, chunks
        (``chunk_px``, ``chunk_px``); ``sha256`` of the file (read in 1 MiB blocks).

    Raises
    ------
    InputError
        One line naming the file: missing, unreadable, not one 2-D grayscale image of finite
        integer or real values, no pixel size, a data bar as high as the image.
    """
    p = Path(path)
    if not p.is_file():
        raise _fail(p, "file not found" if not p.exists() else "is not a file")
    meta = _tiff_header(p)
    h = meta.shape[0]
    ps, ps_source = decide_pixel_size(meta, path=p, pixel_size_um=pixel_size_um)
    rows, bar_source = decide_databar_rows(meta, path=p, databar_rows=databar_rows, crop_databar=crop_databar)
    try:
        data = _lazy_pixels(p, int(chunk_px))
    except Exception as e:  # tifffile/zarr cannot map the file's layout
        raise _fail(p, f"cannot be read lazily ({type(e).__name__}: {e})") from None
    if rows:
        data = data[: h - rows]
    data, converted = _lazy_conversion(p, data)
    if converted:
        meta.notes.append(converted)
    metadata = {**meta.record(pixel_size_source=ps_source, databar_source=bar_source, color="gray"), "read": "lazy"}
    return SemImage(data=data, pixel_size_um=ps, source=p.resolve(), sha256=sha256_file(p),
                    metadata=metadata, databar_rows=rows)


def read_image(
    path: str | Path,
    *,
    pixel_size_um: float | None = None,
    crop_databar: bool = True,
) -> SemImage:
    """One image for ingest: a tile-grid CSV (:func:`read_tile_grid`), a TIFF of more than
    :data:`LAZY_MIN_PIXELS` pixels read lazily (:func:`open_tiff_lazily`), else
    :func:`~cathodeflow.io.sem.read_sem` (``data`` a numpy array).

    Parameters
    ----------
    path : str or Path
    pixel_size_um : float, optional
        Overrides the metadata (for a grid: of every tile).
    crop_databar : bool
        As in :func:`~cathodeflow.io.sem.read_sem` (tiles of a grid are never cropped).

    Returns
    -------
    SemImage
        ``data`` of shape (H, W): a Dask array for a grid or a large TIFF.
    """
    p = Path(path)
    if _is_grid(p):
        return read_tile_grid(p, pixel_size_um=pixel_size_um)
    if p.is_file() and _is_tiff(p):
        import tifffile

        try:
            with tifffile.TiffFile(p) as tf:
                n = math.prod(int(s) for s in tf.series[0].shape) if tf.series else 0
        except Exception:  # unreadable: read_sem says why
            n = 0
        if n > LAZY_MIN_PIXELS:
            return open_tiff_lazily(p, pixel_size_um=pixel_size_um, crop_databar=crop_databar)
    return read_sem(p, pixel_size_um=pixel_size_um, crop_databar=crop_databar)


def preview(array, *, max_pixels: int = PREVIEW_MAX_PIXELS) -> np.ndarray:
    """A numpy array as it is; a Dask array subsampled with one stride on both axes
    (``array[::k, ::k]``, the smallest k leaving ≤ ``max_pixels`` pixels), computed chunk by
    chunk. Used for whole-image flags (``frame_fraction``) of lazily read mosaics."""
    if isinstance(array, np.ndarray):
        return array
    h, w = array.shape
    k = max(1, math.ceil(math.sqrt(h * w / max_pixels)))
    return np.asarray(array[::k, ::k].compute())


# --------------------------------------------------------------------------- tile grid


def _read_grid_csv(path: Path) -> list[tuple[int, Path, int, int]]:
    """(CSV row number, file, y_px, x_px) per tile; InputError naming the row and column."""
    header, rows = read_csv_rows(path, what="tile grid")
    if sorted(header) != sorted(GRID_COLUMNS):
        found = ", ".join(repr(h) for h in header) or "nothing"
        raise InputError(f"{path}: tile grid header row has {found}; expected the columns "
                         f"{', '.join(GRID_COLUMNS)} (comma-separated)")
    out = []
    for number, row in rows:
        where = f"{path} row {number}"
        if len(row) != len(header):
            raise InputError(f"{where}: {len(row)} fields, the header has {len(header)} columns")
        cells = {c: row[k].strip() for k, c in enumerate(header)}
        if not cells["file"]:
            raise InputError(f"{where}, column file: empty; expected the path of a tile image")
        pos = []
        for col in ("y_px", "x_px"):
            try:
                pos.append(int(cells[col]))
            except ValueError:
                raise InputError(f"{where}, column {col}: {cells[col]!r} is not an integer (the tile's "
                                 "top-left pixel in the mosaic, px)") from None
        f = Path(cells["file"]).expanduser()
        out.append((number, f if f.is_absolute() else path.parent / f, pos[0], pos[1]))
    if not out:
        raise InputError(f"{path}: the tile grid lists no tiles (a header row and one row per tile expected)")
    return out


def _tile_header(where: str, file: Path, pixel_size_um):
    """(shape, dtype, pixel size µm, pixel-size source) of one tile."""
    try:
        if _is_tiff(file):
            meta = _tiff_header(file)
            ps, src = decide_pixel_size(meta, path=file, pixel_size_um=pixel_size_um)
            return meta.shape, meta.dtype, ps, src
        im = read_sem(file, pixel_size_um=pixel_size_um, crop_databar=False)
        if np.dtype(im.metadata["file_dtype"]) not in STORED_DTYPES:  # converted on its own already
            raise _fail(file, f"pixel type {im.metadata['file_dtype']} is supported in a tile grid only in "
                              "TIFF tiles (expected 8- or 16-bit unsigned integers)")
    except InputError as err:
        raise InputError(one_line(f"{where}, column file: {err}")) from None
    return im.data.shape, im.data.dtype, im.pixel_size_um, im.metadata["pixel_size_source"]


def _tile_pixels(file: str, pixel_size_um: float, shape, dtype) -> np.ndarray:
    """The whole pixel array of one tile, as stored in the file (a task of the grid's graph:
    a tile of another grey type than uint8/uint16 is converted with the others after)."""
    if np.dtype(dtype) in STORED_DTYPES:
        data = read_sem(file, pixel_size_um=pixel_size_um, crop_databar=False).data
    else:  # a 2-D grayscale TIFF (its header was checked)
        import tifffile

        data = tifffile.imread(file)
        data = data.reshape(tuple(shape)) if data.size == math.prod(shape) else data
    if data.shape != tuple(shape) or data.dtype != dtype:
        raise InputError(f"{file}: tile changed since it was checked: {data.shape} {data.dtype}, "
                         f"expected {tuple(shape)} {dtype}")
    return data


def _check_cover(wheres, y0, x0, y1, x1) -> None:
    """InputError unless the rectangles [y0, y1) × [x0, x1) tile their bounding box exactly."""
    name = lambda i: f"tile {wheres[i]}"  # noqa: E731  (file and CSV row)
    n = len(y0)
    for i in range(n - 1):  # overlaps: the first pair, in CSV order
        oy = np.minimum(y1[i], y1[i + 1:]) - np.maximum(y0[i], y0[i + 1:])
        ox = np.minimum(x1[i], x1[i + 1:]) - np.maximum(x0[i], x0[i + 1:])
        hit = np.flatnonzero((oy > 0) & (ox > 0))
        if hit.size:
            j = i + 1 + int(hit[0])
            raise InputError(one_line(
                f"tile grid: {name(i)} and {name(j)} overlap by {int(oy[hit[0]])}×{int(ox[hit[0]])} px (rows "
                f"{max(y0[i], y0[j])}-{min(y1[i], y1[j]) - 1}, columns {max(x0[i], x0[j])}-{min(x1[i], x1[j]) - 1} "
                "in the grid's coordinates); expected tiles that abut exactly"))
    Y0, X0, Y1, X1 = y0.min(), x0.min(), y1.max(), x1.max()
    if int(((y1 - y0) * (x1 - x0)).sum()) == int((Y1 - Y0) * (X1 - X0)):
        return
    sides = ((x0, x1, y0, y1, "x", X1, "to the right of"), (y0, y1, x0, x1, "y", Y1, "below"))
    for i in range(n):  # a gap between two tiles: the nearest neighbour right of / below a tile is too far
        for a0, a1, b0, b1, ax, edge, _ in sides:
            beside = (np.minimum(b1[i], b1) - np.maximum(b0[i], b0) > 0) & (a0 >= a1[i])
            if beside.any():
                j = int(np.flatnonzero(beside)[np.argmin(a0[beside])])
                if a0[j] > a1[i]:
                    raise InputError(one_line(
                        f"tile grid: gap of {int(a0[j] - a1[i])} px between {name(i)} (ends at {ax} = {a1[i]}) "
                        f"and {name(j)} (starts at {ax} = {a0[j]}); expected tiles that abut exactly"))
    for i in range(n):  # a gap at the mosaic's edge: no tile at all right of / below a tile
        for a0, a1, b0, b1, ax, edge, side in sides:
            beside = (np.minimum(b1[i], b1) - np.maximum(b0[i], b0) > 0) & (a0 >= a1[i])
            if a1[i] < edge and not beside.any():
                raise InputError(one_line(
                    f"tile grid: nothing {side} {name(i)} from {ax} = {a1[i]} to {edge} (the mosaic's edge); "
                    "expected tiles that cover the mosaic without gaps"))
    covered = int(((y1 - y0) * (x1 - x0)).sum())
    raise InputError(one_line(f"tile grid: the tiles cover {covered} of the {int((Y1 - Y0) * (X1 - X0))} px of "
                              "their bounding box (a gap); expected tiles that abut exactly"))


def read_tile_grid(
    grid: str | Path,
    *,
    pixel_size_um: float | None = None,
    chunk_px: int = DEFAULT_CHUNK_PX,
) -> SemImage:
    """A mosaic of tile files placed by a CSV (module notes), assembled lazily.

    Parameters
    ----------
    grid : str or Path
        CSV with the columns ``file``, ``y_px``, ``x_px`` (:data:`GRID_COLUMNS`).
    pixel_size_um : float, optional
        Pixel size of every tile, overriding their metadata.
    chunk_px : int
        Edge of the Dask chunks (and so of the stored chunks).

    Returns
    -------
    SemImage
        ``data``: Dask array, shape (H, W) = the tiles' bounding box, uint8 or uint16, chunks
        (``chunk_px``, ``chunk_px``); ``source`` and ``sha256`` of the CSV; ``metadata``
        with ``format`` ``"tile-grid"`` and ``tiles`` (file, y_px, x_px, shape each).

    Raises
    ------
    InputError
        One line naming the CSV row(s): a bad row, an unreadable tile, tiles of different
        dtypes or pixel sizes (more than :data:`GRID_PIXEL_SIZE_RTOL` apart), two tiles that
        overlap, a gap. Only headers (or small tiles of non-TIFF formats) are read to decide.
        Tiles of other grey types than uint8/uint16: NaN or infinite values, found in the
        pass over all tiles for their range (one line naming the CSV).
    """
    import dask
    import dask.array as da

    path = Path(grid)
    rows = _read_grid_csv(path)
    heads = [_tile_header(f"{path} row {n}", f, pixel_size_um) for n, f, _, _ in rows]
    wheres = [f"{f.name} (row {n})" for n, f, _, _ in rows]
    (h0, w0), dt0, ps0, src0 = heads[0]
    for k, (shape, dt, ps, _) in enumerate(heads[1:], start=1):
        if dt != dt0:
            raise InputError(one_line(f"tile grid {path}: tile {wheres[k]} is {dt} but tile {wheres[0]} is {dt0}; "
                                      "expected one pixel type for all tiles"))
        if abs(ps - ps0) > GRID_PIXEL_SIZE_RTOL * ps0:
            raise InputError(one_line(
                f"tile grid {path}: tile {wheres[k]} has a pixel size of {ps:g} µm but tile {wheres[0]} "
                f"{ps0:g} µm ({100 * abs(ps - ps0) / ps0:.2g} % apart); expected one pixel size (within "
                f"{100 * GRID_PIXEL_SIZE_RTOL:g} %)"))
    y0 = np.array([r[2] for r in rows], np.int64)
    x0 = np.array([r[3] for r in rows], np.int64)
    y1 = y0 + np.array([s[0][0] for s in heads], np.int64)
    x1 = x0 + np.array([s[0][1] for s in heads], np.int64)
    try:
        _check_cover(wheres, y0, x0, y1, x1)
    except InputError as err:
        raise InputError(one_line(f"{path}: {err}")) from None
    y0, y1, x0, x1 = y0 - y0.min(), y1 - y0.min(), x0 - x0.min(), x1 - x0.min()
    # cells between consecutive tile edges: each lies inside exactly one tile
    ys, xs = np.unique(np.concatenate([y0, y1])), np.unique(np.concatenate([x0, x1]))
    tiles = [da.from_delayed(dask.delayed(_tile_pixels, pure=True)(str(f), ps0, s[0], dt0), shape=s[0], dtype=dt0)
             for (_, f, _, _), s in zip(rows, heads)]
    owner = np.empty((len(ys) - 1, len(xs) - 1), np.int64)
    for k in range(len(rows)):
        owner[np.searchsorted(ys, y0[k]):np.searchsorted(ys, y1[k]), np.searchsorted(xs, x0[k]):np.searchsorted(xs, x1[k])] = k
    blocks = [[tiles[owner[a, b]][ys[a] - y0[owner[a, b]]:ys[a + 1] - y0[owner[a, b]],
                                 xs[b] - x0[owner[a, b]]:xs[b + 1] - x0[owner[a, b]]]
               for b in range(len(xs) - 1)] for a in range(len(ys) - 1)]
    data = da.block(blocks)
    data = data.rechunk((min(chunk_px, data.shape[0]), min(chunk_px, data.shape[1])))
    data, converted = _lazy_conversion(path, data)  # one grey scale for all tiles
    metadata = {
        "vendor": None, "format": "tile-grid", "read": "lazy",
        "pixel_size_source": src0 if pixel_size_um is None else "user",
        "pixel_size_candidates_um": {}, "raw_tags": {},
        "databar_source": "tiles placed whole (not cropped)", "color": "gray",
        "file_shape": [int(s) for s in data.shape], "file_dtype": str(dt0), "notes": [converted] if converted else [],
        "tiles": [{"file": str(f), "y_px": int(a), "x_px": int(b), "shape": [int(v) for v in s[0]]}
                  for (_, f, _, _), a, b, s in zip(rows, y0, x0, heads)],
    }
    return SemImage(data=data, pixel_size_um=float(ps0), source=path.resolve(), sha256=sha256_file(path),
                    metadata=metadata, databar_rows=0)
