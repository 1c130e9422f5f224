"""Reading phase maps (S: 0 background, 1 solid, 2 crack; eq. 1) that users bring.

Files that code the phases with other values (an ilastik export: 1, 2, 3) are mapped to S
while they are validated (:func:`validate_phase` with ``values``), chunk by chunk if lazy.

Formats: TIFF (tifffile), PNG (Pillow), NPY (memory-mapped), Zarr arrays (lazy, as Dask).
Every problem raises :class:`~cathodeflow.errors.InputError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

PHASE_SUFFIXES = (".tif", ".tiff", ".png", ".npy", ".zarr")


def image_id_from_path(path: str | Path) -> str:
    """The image id of a file: its name without the extension (DESIGN §4.2)."""
    p = Path(path)
    name = p.name
    for suf in PHASE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return p.stem


def read_phase_file(path: str | Path):
    """Read a phase map from ``path``; returns a numpy array (or a Dask array for Zarr).

    The values are validated later by :func:`validate_phase`; here only the file is read.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    suffix = p.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(p)
        if suffix == ".png":
            from PIL import Image

            with Image.open(p) as im:
                return np.asarray(im)
        if suffix == ".npy":
            return np.load(p, mmap_mode="r", allow_pickle=False)
        if suffix == ".zarr" or (p.is_dir() and (p / "zarr.json").exists()):
            import dask.array as da
            import zarr

            arr = zarr.open_array(str(p.absolute()), mode="r")  # tasks read it, maybe elsewhere
            return da.from_zarr(arr)
    except InputError:
        raise
    except Exception as e:  # the reader's own message, on one line, with the file name
        raise InputError(f"{p}: cannot read as a phase map ({type(e).__name__}: {e})") from None
    raise InputError(
        f"{p}: unsupported phase-map format {suffix!r}; expected one of {', '.join(PHASE_SUFFIXES)}"
    )


#: The stored values of background, solid and crack that :func:`validate_phase` expects by default.
DEFAULT_PHASE_VALUES = (0, 1, 2)


def check_phase_values(values, *, name: str = "phase_values") -> tuple[int, int, int]:
    """The stored values (B, S, C) meaning background, solid, crack, checked.

    Parameters
    ----------
    values : str or sequence of int
        Three distinct integers, or their comma-separated text (``"1,2,3"``: an ilastik
        export of three labels).
    name : str
        The argument's name, leading every message.

    Returns
    -------
    tuple of int, shape (3,)
    """
    text = values if isinstance(values, str) else None
    try:
        out = tuple(int(v) for v in (text.split(",") if text is not None else values))
        if text is None and any(isinstance(v, bool) or int(v) != v for v in values):
            raise ValueError
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or len(set(out)) != 3:
        raise InputError(f"{name}: got {values!r}; expected three distinct integers B,S,C: the stored "
                         "values of background, solid, crack (0,1,2 by default; 1,2,3 for an ilastik export)")
    return out


def validate_phase(phase, *, name: str = "phase", values=DEFAULT_PHASE_VALUES):
    """Check that ``phase`` is a 2D integer array of the values ``values``; return S as uint8.

    Works on numpy arrays (checked and mapped now) and Dask arrays (dtype and shape checked
    now, values checked and mapped per chunk when computed, inside the graph). ``name`` (a
    file name or argument name) leads every message.

    Parameters
    ----------
    phase : array, shape (rows, cols)
        Integer phase map (numpy, Dask or xarray).
    name : str
    values : sequence of int, shape (3,)
        The stored values (B, S, C) of background, solid, crack; each is mapped to 0, 1, 2
        (S of eq. 1) and any other value is refused, naming ``name`` and the values found.

    Returns
    -------
    numpy.ndarray or dask.array.Array of uint8, shape (rows, cols)
    """
    import dask.array as da

    values = check_phase_values(values)
    arr = phase
    if hasattr(arr, "data") and hasattr(arr, "dims") and not isinstance(arr, np.ndarray):
        arr = arr.data  # xarray.DataArray
    if not isinstance(arr, (np.ndarray, da.Array)):
        arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        raise InputError(
            f"{name}: got an RGB(A) image of shape {arr.shape}; expected a 2D phase map with "
            "values {} (background), {} (solid), {} (crack)".format(*values)
        )
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2D phase map, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name}: the phase map is empty (shape {arr.shape})")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iu":
        raise InputError(
            f"{name}: phase map has dtype {arr.dtype}; expected integers " + "/".join(map(str, values))
            + " (a probability or float image must be thresholded first, eq. 7)"
        )
    if isinstance(arr, np.ndarray):
        return _to_phase(arr, values, name)
    return arr.map_blocks(_to_phase, values, name, dtype=np.uint8)


def _to_phase(arr: np.ndarray, values: tuple[int, int, int], name: str) -> np.ndarray:
    """``arr`` with the values (B, S, C) mapped to 0, 1, 2 as uint8; InputError for any other value."""
    if values == DEFAULT_PHASE_VALUES:  # no mapping: one min/max pass, no copy of uint8 input
        bad = _bad_values(arr)
        out = None if bad else np.asarray(arr).astype(np.uint8, copy=False)
    else:
        arr = np.asarray(arr)
        out = np.full(arr.shape, 255, np.uint8)
        for k, v in enumerate(values):
            out[arr == v] = k
        other = out == 255
        bad = [int(v) for v in np.unique(arr[other])[:5]] if other.any() else []
    if bad:
        raise InputError(f"{name}: phase map holds values {bad}; expected only "
                         "{}, {}, {} (background, solid, crack; other codes: --phase-values / "
                         "phase_values)".format(*values))
    return out


def _bad_values(arr: np.ndarray) -> list[int]:
    """Up to five values of ``arr`` outside {0, 1, 2} (one min/max pass when there are none)."""
    arr = np.asarray(arr)
    if arr.size == 0 or (arr.min() >= 0 and arr.max() <= 2):
        return []
    vals = np.unique(arr[(arr < 0) | (arr > 2)])
    return [int(v) for v in vals[:5]]


def check_phase_array(phase, name: str = "phase"):
    """Shape and dtype checks of a phase map S, numpy or Dask (no pass over the values).

    The segmentation stages call this (and :func:`check_phase_range`) on their inputs;
    :func:`validate_phase` is the fuller check for user input (RGB, empty, file names).
    """
    if not hasattr(phase, "ndim") or not hasattr(phase, "dtype"):
        phase = np.asarray(phase)
    if phase.ndim != 2:
        raise InputError(
            f"{name} must be a 2D phase map (rows, cols), got an array of shape {tuple(phase.shape)}"
        )
    if not np.issubdtype(phase.dtype, np.integer):
        raise InputError(
            f"{name} must have an integer dtype with values in {{0, 1, 2}} "
            f"(0 background, 1 solid, 2 crack), got dtype {phase.dtype}"
        )
    return phase


def check_phase_range(lo: int, hi: int, name: str = "phase", where: str = "") -> None:
    """InputError unless the values of a phase map, from ``lo`` to ``hi``, lie in {0, 1, 2}."""
    if lo < 0 or hi > 2:
        raise InputError(
            f"{name} must hold only the values 0, 1, 2 (background, solid, crack); found values "
            f"from {lo} to {hi}{where}"
        )


#: Phase-map formats read by :func:`phase_file_array` inside the tasks (Zarr: by
#: :func:`~cathodeflow.io.phasefile.read_phase_file`, lazily too).
_WINDOWED = (".tif", ".tiff", ".png", ".npy")


def phase_file_array(path, *, chunk_px: int | None = None):
    """A phase-map file as a Dask array whose tasks read their own chunk from the file.

    Only the header is read now (shape, dtype); each chunk task opens the file and reads its
    window (TIFF: the strips or tiles it covers; NPY: memory-mapped; PNG: the whole image,
    which a PNG cannot avoid). Any worker that sees the path can run any chunk, again.

    Parameters
    ----------
    path : str or Path
        TIFF, PNG, NPY or Zarr phase map (values not checked here: see
        :func:`~cathodeflow.io.phasefile.validate_phase`).
    chunk_px : int, optional
        Square chunk edge; default one chunk for the whole image.

    Returns
    -------
    dask.array.Array, shape (H, W) (or as stored, e.g. (H, W, 3) for RGB)

    Raises
    ------
    InputError
        Missing file, unsupported format, or a header that cannot be read, naming the file.
    """
    import dask.array as da
    from dask.base import tokenize

    p = Path(path)
    if not p.exists() or p.suffix.lower() not in _WINDOWED:
        arr = read_phase_file(p)  # its errors (not found, unsupported format); Zarr lazily
        return arr.rechunk(chunk_px) if chunk_px is not None and hasattr(arr, "rechunk") else arr
    source = _PhaseFile(p)
    chunks = tuple(source.shape) if chunk_px is None else chunk_px
    stat = p.stat()
    name = "phase-file-" + tokenize(str(p.resolve()), stat.st_size, stat.st_mtime_ns, chunks)
    return da.from_array(source, chunks=chunks, name=name, lock=False, asarray=True, fancy=False,
                         inline_array=True)


class _PhaseFile:
    """What a task needs to read a window of a phase-map file: its path, shape and dtype
    (small: it travels in the graph). ``self[key]`` reads the window ``key`` (a tuple of slices)."""

    def __init__(self, path: Path):
        self.path = str(Path(path).absolute())  # read by tasks, maybe in another working directory
        try:
            self.shape, self.dtype = _header(path)
        except InputError:
            raise
        except Exception as e:  # the reader's own message, on one line, with the file name
            raise InputError(f"{path}: cannot read as a phase map ({type(e).__name__}: {e})") from None
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        try:
            out = _read_window(Path(self.path), key)
        except Exception as e:  # changed or damaged since its header was read
            raise InputError(f"{self.path}: cannot read as a phase map ({type(e).__name__}: {e})") from None
        if out.dtype != self.dtype:
            raise InputError(f"{self.path}: read dtype {out.dtype}, its header said {self.dtype}; "
                             "was the file replaced during the run?")
        return out


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the array that reading ``path`` whole gives, from its header."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(f"{path}: TIFF holds no image")
            series = tif.series[0]
            return tuple(series.shape), np.dtype(series.dtype)
    if suffix == ".npy":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return tuple(arr.shape), arr.dtype
    from PIL import Image, ImageMode

    with Image.open(path) as im:
        mode = ImageMode.getmode(im.mode)
        w, h = im.size
        bands = len(mode.bands)
        return ((h, w) if bands == 1 else (h, w, bands)), np.dtype(mode.typestr)


def _read_window(path: Path, key) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile
        import zarr

        with tifffile.imread(path, aszarr=True, series=0, level=0) as store:
            return np.asarray(zarr.open_array(store, mode="r")[key])
    if suffix == ".npy":
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False)[key])
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)[key]
