"""Reading SEM image files: pixels, pixel size from vendor metadata, data-bar crop.

:func:`read_sem` turns one SEM file into a 2-D grayscale array with its pixel size in µm
(the low-resolution pixel size of the paper's eq. 1 grid, e.g. 38.5 nm) and the
microscope's data bar removed. :func:`write_tiff` writes a TIFF that :func:`read_sem` (and
ImageJ/Fiji, GIMP, tifffile) reads back with its pixel size.

The metadata part works without the pixels (the lazy reader of :mod:`cathodeflow.io.mosaic`
uses it): :func:`read_tiff_metadata` collects what a TIFF's tags and a JEOL sidecar say into
a :class:`SemMeta`, and :func:`decide_pixel_size` and :func:`decide_databar_rows` make
:func:`read_sem`'s decisions from it, by the rules below.

Where the pixel size comes from, first found wins:

1. Zeiss SmartSEM TIFF: the ``CZ_SEM`` tag (34118), parsed by tifffile; entry
   ``ap_image_pixel_size`` (fallback ``ap_pixel_size``), e.g. ``('Image Pixel Size',
   7.344, 'nm')``.
2. FEI / Thermo Fisher TIFF: the ``FEI_HELIOS`` (34682) or ``FEI_SFEG`` (34680) INI text,
   ``[Scan] PixelWidth`` (fallback ``[EScan] PixelWidth``), in metres.
3. JEOL: a sidecar text file with the image's stem and suffix ``.txt``, lines ``$KEY
   value``: pixel size = ``$$SM_MICRON_MARKER`` (a length with its unit, e.g. ``5um``) /
   ``$$SM_MICRON_BAR`` (the same length in pixels), the convention of JEOL's own scale bar.
   The bar is measured on the ``$CM_FULL_SIZE`` grid; when the file's width differs from
   it (a resized export), the sidecar is not trusted and the pixel size must be given.
   ``$CM_MAG`` is not used: converting magnification to a pixel size needs the reference
   display width, which the file does not state.
4. A TIFF written by :func:`write_tiff` (JSON ``{"cathodeflow": {...}}`` in
   ImageDescription).
5. ImageJ/Fiji TIFF: ``unit`` in the ImageJ description (micron, µm, um, nm, mm) and
   ``XResolution`` in pixels per unit.
6. Standard TIFF resolution tags (ResolutionUnit inch or centimetre) or the PNG ``pHYs``
   chunk, only when they imply a pixel size below 10 µm: desktop software writes 72-600 dpi
   print resolutions (85-350 µm) that say nothing about the specimen.

A ``pixel_size_um`` given by the user overrides all of them; when metadata also gives one
and the two differ by more than 1 %, a warning names both.

Data bar (the strip of text the microscope burns into the bottom of the image):

- FEI/Thermo: ``[Image] ResolutionY`` smaller than the file's height; the rows below it.
- JEOL: ``$CM_FULL_SIZE`` height smaller than the file's height.
- Files written by :func:`write_tiff` have none.
- Otherwise (Zeiss, whose metadata does not state the data-zone height, and unknown files)
  it is detected from the pixels by :func:`detect_databar`: a band at the bottom whose rows
  are mostly one exact value (the bar's fill), that spans the width, carries contrasting
  text, and starts with a sharp edge. On the Zeiss example 1908248.tif this finds the black
  box at rows 712-765 (two image rows below it are cropped too).

Colour: palette images are mapped through their colour map (grey entries as they are,
8-bit when the map is an 8-bit ramp scaled by 257); RGB(A) images whose channels are
equal keep one channel; others become ITU-R BT.709 luma ``0.2125 R + 0.7154 G + 0.0721 B``
(the coefficients of ``skimage.color.rgb2gray``), rounded to the input's integer type,
with a warning. Alpha is dropped.

Grey values are stored as 8- or 16-bit unsigned integers (:func:`_to_unsigned`): other
integer types and integer-valued floats are kept exactly when their values fit 16 bits
(shifted by their minimum when only their range does), other real values are mapped
linearly onto 0–65535 with a warning; the conversion is recorded in the metadata's notes.
NaN or infinite pixels are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CathodeflowWarning, InputError, one_line

__all__ = [
    "SemImage",
    "SemMeta",
    "TIFF_MAGIC",
    "read_sem",
    "read_tiff_metadata",
    "decide_pixel_size",
    "decide_databar_rows",
    "write_tiff",
    "detect_databar",
    "sha256_file",
]

#: Resolution tags / pHYs implying a larger pixel than this (µm) are print settings.
MAX_PLAUSIBLE_TAG_PIXEL_UM = 10.0
#: Relative difference between a user pixel size and the metadata's that triggers a warning.
PIXEL_SIZE_WARN_RTOL = 0.01
#: Luma coefficients (ITU-R BT.709, as ``skimage.color.rgb2gray``).
LUMA_709 = (0.2125, 0.7154, 0.0721)

_UNIT_TO_UM = {
    "m": 1e6,
    "mm": 1e3,
    "um": 1.0,
    "µm": 1.0,  # micro sign U+00B5
    "μm": 1.0,  # greek mu U+03BC
    "micron": 1.0,
    "microns": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
}
#: First bytes of a TIFF or BigTIFF file (little- and big-endian).
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class SemImage:
    """One SEM image, ready for the study store.

    Attributes
    ----------
    data : ndarray, shape (H, W), uint8 or uint16
        Grayscale pixels, data bar removed.
    pixel_size_um : float
        Edge of one pixel in µm (square pixels).
    source : Path
        Absolute path of the file read.
    sha256 : str
        SHA-256 of the file's bytes (hex).
    metadata : dict
        JSON-serialisable: ``vendor`` (zeiss, fei, jeol, cathodeflow, imagej or None),
        ``format``, ``pixel_size_source``, ``pixel_size_candidates_um`` (every source
        found), ``raw_tags`` (the vendor entries used), ``databar_source``, ``color``,
        ``file_shape``, ``file_dtype``.
    databar_rows : int
        Rows removed from the bottom of the file's image.
    """

    data: np.ndarray
    pixel_size_um: float
    source: Path
    sha256: str
    metadata: dict = field(default_factory=dict)
    databar_rows: int = 0


# --------------------------------------------------------------------------- helpers


def sha256_file(path: str | Path, *, block_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, hex, read in blocks of ``block_bytes``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_bytes), b""):
            h.update(block)
    return h.hexdigest()


def _to_um(value: Any, unit: str) -> float | None:
    """``value`` in ``unit`` as µm, or None when the unit is unknown or the value unusable."""
    factor = _UNIT_TO_UM.get(str(unit).strip())
    if factor is None:
        factor = _UNIT_TO_UM.get(str(unit).strip().lower())
    try:
        v = float(value) * factor if factor is not None else None
    except (TypeError, ValueError):
        return None
    if v is None or not math.isfinite(v) or v <= 0:
        return None
    return v


def _jsonable(obj: Any) -> Any:
    """Vendor values (tuples, numpy scalars, bytes) as plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _fail(path: Path | str, problem: str) -> InputError:
    return InputError(one_line(f"{path}: {problem}"))


# --------------------------------------------------------------------------- data bar


def detect_databar(
    image: np.ndarray,
    *,
    max_fraction: float = 0.25,
    fill_min: float = 0.5,
) -> int:
    """Number of rows of the microscope's data bar at the bottom of ``image`` (0 if none).

    A numpy kernel on the whole (small) image; no metadata.

    Parameters
    ----------
    image : ndarray, shape (H, W), integer
        Grayscale image as stored in the file.
    max_fraction : float
        The bar must start within the bottom ``max_fraction`` of the rows.
    fill_min : float
        A row belongs to the bar when at least this fraction of its pixels equal the bar's
        fill value (the most frequent value in the bottom ``max_fraction`` of the rows).

    Returns
    -------
    int
        Rows to remove from the bottom (the bar and up to ``max(2, 1 %)`` image rows
        below it), or 0.

    Notes
    -----
    Accepted as a bar only when all hold: the band of fill rows is at least ``max(4, 2 %
    of H)`` rows high and ends within ``max(2, 1 % of H)`` rows of the bottom; one of its
    rows is at least 90 % fill (the bar's uniform background); at least 90 % of the
    columns are fill in at least a quarter of the band's rows (it spans the width); the
    three rows above it are at most 25 % fill (a sharp horizontal edge); at least 0.5 % of
    the band's pixels are text contrasting with the fill by at least a quarter of the
    image's value range. A dark or saturated region of the specimen fails the width,
    edge or text tests; a bar without a uniform fill is not found (pass the row count).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise InputError(f"image must be 2-D (H, W), got shape {img.shape}")
    h, w = img.shape
    if h < 16 or w < 16:
        return 0
    n_search = max(1, int(h * max_fraction))
    bottom = img[h - n_search :]
    if bottom.dtype in (np.uint8, np.uint16, np.bool_):
        fill = bottom.dtype.type(np.argmax(np.bincount(bottom.ravel())))
    else:
        vals, counts = np.unique(bottom, return_counts=True)
        fill = vals[np.argmax(counts)]
    is_fill = bottom == fill
    frac = is_fill.mean(axis=1)

    tail_max = max(2, int(round(0.01 * h)))
    i = n_search - 1
    tail = 0
    while i >= 0 and frac[i] < fill_min and tail < tail_max:
        i -= 1
        tail += 1
    if i < 0 or frac[i] < fill_min:
        return 0
    end = i
    while i >= 0 and frac[i] >= fill_min:
        i -= 1
    if i < 0:  # fill rows reach the top of the search region: not a bar at the bottom
        return 0
    top = i + 1
    band_rows = end - top + 1
    if band_rows < max(4, math.ceil(0.02 * h)):
        return 0
    band = frac[top : end + 1]
    if band.max() < 0.9:
        return 0
    col_fill = is_fill[top : end + 1].mean(axis=0)
    if (col_fill >= 0.25).mean() < 0.9:
        return 0
    above = frac[max(0, top - 3) : top]
    if above.size and above.max() > 0.25:
        return 0
    band_px = bottom[top : end + 1]
    text = band_px[~is_fill[top : end + 1]]
    if text.size < 0.005 * band_px.size:
        return 0
    value_range = float(img.max()) - float(img.min())
    if value_range <= 0:
        return 0
    contrast = np.abs(text.astype(np.float64) - float(fill))
    if np.median(contrast) < 0.25 * value_range:
        return 0
    return int(n_search - top)


# --------------------------------------------------------------------------- colour


def _rgb_to_gray(rgb: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """(H, W, 3|4) → (H, W); equal channels kept as they are, else BT.709 luma."""
    c = rgb[..., :3]
    if np.array_equal(c[..., 0], c[..., 1]) and np.array_equal(c[..., 0], c[..., 2]):
        return np.ascontiguousarray(c[..., 0]), "rgb-equal-channels"
    if c.dtype.kind not in "ub":
        raise _fail(path, f"RGB pixel type {c.dtype} is not supported (expected 8- or 16-bit unsigned)")
    warnings.warn(
        one_line(f"{path}: colour image converted to grayscale with BT.709 luma (0.2125 R + 0.7154 G + 0.0721 B)"),
        CathodeflowWarning,
        stacklevel=3,
    )
    y = c[..., 0] * LUMA_709[0] + c[..., 1] * LUMA_709[1] + c[..., 2] * LUMA_709[2]
    info = np.iinfo(c.dtype) if c.dtype.kind == "u" else np.iinfo(np.uint8)
    return np.clip(np.rint(y), 0, info.max).astype(c.dtype), "rgb-luminance"


def _palette_to_gray(index: np.ndarray, colormap: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """Palette indices through a (3, N) uint16 TIFF colour map to grayscale."""
    cmap = np.asarray(colormap, dtype=np.float64)
    if cmap.ndim != 2 or cmap.shape[0] != 3:
        raise _fail(path, f"palette colour map has shape {cmap.shape}, expected (3, N)")
    grey = (cmap[0] == cmap[1]) & (cmap[0] == cmap[2])
    lut = np.where(grey, cmap[0], LUMA_709[0] * cmap[0] + LUMA_709[1] * cmap[1] + LUMA_709[2] * cmap[2])
    if np.all(np.mod(cmap, 257) == 0):
        lut8 = np.rint(lut / 257.0).astype(np.uint8)
        out = lut8[index]
    else:
        out = np.clip(np.rint(lut), 0, 65535).astype(np.uint16)[index]
    used = np.unique(index)
    if not np.all(grey[used[used < grey.size]]):
        return out, "palette-with-colour"
    return out, "palette"


def _to_gray(arr: np.ndarray, axes: str, path: Path) -> tuple[np.ndarray, str]:
    """Pixel array as stored → (H, W) grayscale plus a colour note."""
    if arr.ndim == 2:
        return arr, "gray"
    if arr.ndim == 3 and axes.endswith("S") and arr.shape[-1] in (3, 4):
        return _rgb_to_gray(arr, path)
    if arr.ndim == 3 and axes.startswith("S") and arr.shape[0] in (3, 4):
        return _rgb_to_gray(np.moveaxis(arr, 0, -1), path)
    if arr.ndim == 3 and arr.shape[-1] == 2 and axes.endswith("S"):  # gray + alpha
        return np.ascontiguousarray(arr[..., 0]), "gray-alpha-dropped"
    raise _fail(path, f"pixel array of shape {arr.shape} (axes {axes or '?'}) is not a single 2-D grayscale or RGB image")


#: Pixel types stored as they are.
STORED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def check_grey_dtype(path: Path | str, dtype) -> np.dtype:
    """``dtype`` if grey values of it can be stored (booleans, integers, reals), else an
    InputError naming ``path``."""
    dt = np.dtype(dtype)
    if dt != np.bool_ and dt.kind not in "iuf":
        raise _fail(path, f"pixel type {dt} is not supported (expected integer or real grayscale values)")
    return dt


@dataclass(frozen=True)
class GreyConversion:
    """How an image's grey values become the 8- or 16-bit unsigned integers stored
    (:func:`grey_conversion`): ``(value - offset) * scale``, rounded, as ``dtype``."""

    dtype: np.dtype
    offset: float = 0.0
    scale: float = 1.0
    note: str | None = None  # None: the values are kept as they are

    def apply(self, block: np.ndarray) -> np.ndarray:
        """The converted values of ``block`` (any part of the image)."""
        block = np.asarray(block)
        if block.dtype == np.bool_:
            return block.astype(np.uint8) * np.uint8(255)
        if self.note is None:
            return block
        if self.scale == 1.0 and block.dtype.kind in "iu":  # exact in integers
            return (block.astype(np.int64) - int(self.offset)).astype(self.dtype)
        return np.rint((block.astype(np.float64) - self.offset) * self.scale).astype(self.dtype)


def grey_conversion(path: Path | str, dtype, lo, hi, *, integral: bool, nonfinite: int,
                    stacklevel: int = 2) -> GreyConversion:
    """The conversion of grey values of type ``dtype`` whose minimum is ``lo`` and maximum
    ``hi`` (None for an image without pixels) into 8- or 16-bit unsigned integers.

    * uint8 and uint16 are kept; booleans become 0 / 255.
    * Other integer types (signed 16-bit, 32-bit, …) and floats whose values are all
      integers (``integral``) in 0–65535 are kept as uint16 (e.g. a 12-bit detector stored
      as int16, or a 16-bit image that Fiji converted to 32-bit float); integers whose range
      spans at most 65536 levels are shifted by their minimum. Both lose nothing.
    * Any other real values (floats with fractions, integers of a wider range) are mapped
      linearly from [lo, hi] onto 0–65535 and rounded, with a warning: the phase stages
      normalise intensities with percentiles, so only the levels' order and spacing matter.
    * ``nonfinite`` NaN or infinite values, complex numbers and other types are refused
      (InputError naming ``path``).

    ``stacklevel`` is that of the warning, counted from the caller.
    """
    dt = check_grey_dtype(path, dtype)
    if dt == np.bool_:
        return GreyConversion(np.dtype(np.uint8))
    if dt in STORED_DTYPES:
        return GreyConversion(dt)
    if nonfinite:
        raise _fail(path, f"NaN or infinite values in {nonfinite} pixels (expected finite grey values)")
    u16 = np.dtype(np.uint16)
    if lo is None:
        return GreyConversion(u16, note=f"{dt} pixels stored as uint16")
    if (integral or dt.kind in "iu") and lo >= 0 and hi <= 65535:
        return GreyConversion(u16, note=f"{dt} pixels (integers {lo:g} to {hi:g}) stored as uint16 unchanged")
    if dt.kind in "iu" and int(hi) - int(lo) <= 65535:
        return GreyConversion(u16, offset=int(lo), note=f"{dt} pixels ({int(lo)} to {int(hi)}) shifted by {-int(lo):+d} to uint16")
    span = float(hi) - float(lo)
    note = f"{dt} pixels mapped linearly from [{float(lo):.6g}, {float(hi):.6g}] to 0-65535 (uint16)"
    warnings.warn(one_line(f"{path}: {note}"), CathodeflowWarning, stacklevel=stacklevel + 1)
    return GreyConversion(u16, offset=float(lo), scale=65535.0 / span if span > 0 else 0.0, note=note)


def _to_unsigned(gray: np.ndarray, path: Path) -> tuple[np.ndarray, str | None]:
    """``gray`` as stored (:func:`grey_conversion` from its own range), and the note saying
    how it was converted (None when kept as it is)."""
    if gray.dtype in STORED_DTYPES:
        return gray, None
    nonfinite = int(gray.size - np.count_nonzero(np.isfinite(gray))) if gray.dtype.kind == "f" else 0
    lo, hi = (gray.min(), gray.max()) if gray.size and not nonfinite else (None, None)
    integral = gray.dtype.kind in "iub" or bool(np.all(gray == np.floor(gray)))
    conv = grey_conversion(path, gray.dtype, lo, hi, integral=integral, nonfinite=nonfinite, stacklevel=3)
    return conv.apply(gray), conv.note


# --------------------------------------------------------------------------- format readers


@dataclass
class SemMeta:
    """What one SEM file's metadata says, before any decision; read without the pixels.

    Filled by :func:`read_tiff_metadata` (or, for other formats, by :func:`read_sem`'s
    Pillow reader); :func:`decide_pixel_size` and :func:`decide_databar_rows` decide from it.

    Attributes
    ----------
    format : str
        ``"tiff"``, ``"png"``, or the file's suffix for other formats Pillow reads.
    shape : tuple of int
        Shape of the pixel array as stored: (H, W), (H, W, S) or (S, H, W) for S samples.
    axes : str
        tifffile axis letters of ``shape`` (``"YX"``, ``"YXS"``, ``"SYX"``).
    dtype : numpy.dtype
        Pixel type as stored.
    photometric : str or None
        TIFF photometric interpretation (``"MINISBLACK"``, ``"RGB"``, ``"PALETTE"``, ...).
    colormap : ndarray, shape (3, N), or None
        A palette image's colour map.
    vendor : str or None
        ``zeiss``, ``fei``, ``jeol``, ``cathodeflow``, ``imagej`` or None.
    candidates : list of (str, float)
        Every pixel size found, (source, µm), in the priority order of the module notes.
    raw_tags : dict
        The vendor entries used.
    databar_hint : (int, str) or None
        Data-bar rows the metadata states, with their source.
    notes : list of str
        Sources found but ignored (e.g. a print resolution).
    sidecar_problem : str or None
        Why a JEOL sidecar beside the file could not give the pixel size.
    """

    format: str
    shape: tuple[int, ...]
    axes: str
    dtype: np.dtype
    photometric: str | None = None
    colormap: np.ndarray | None = None
    vendor: str | None = None
    candidates: list[tuple[str, float]] = field(default_factory=list)
    raw_tags: dict[str, Any] = field(default_factory=dict)
    databar_hint: tuple[int, str] | None = None
    notes: list[str] = field(default_factory=list)
    sidecar_problem: str | None = None

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the image, whatever the place of the samples axis."""
        if "Y" in self.axes and "X" in self.axes:
            return self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]
        return self.shape[0], self.shape[1]

    def record(self, *, pixel_size_source: str, databar_source: str, color: str) -> dict:
        """The JSON-serialisable ``metadata`` of a :class:`SemImage` read with these decisions."""
        return {
            "vendor": self.vendor,
            "format": self.format,
            "pixel_size_source": pixel_size_source,
            "pixel_size_candidates_um": {src: um for src, um in self.candidates},
            "raw_tags": _jsonable(self.raw_tags),
            "databar_source": databar_source,
            "color": color,
            "file_shape": [int(n) for n in self.shape],
            "file_dtype": str(self.dtype),
            "notes": list(self.notes) + ([self.sidecar_problem] if self.sidecar_problem else []),
        }


def _zeiss(sem: dict, info: SemMeta) -> None:
    info.vendor = "zeiss"
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = sem.get(key)
        if isinstance(entry, (tuple, list)) and len(entry) >= 3:
            um = _to_um(entry[1], entry[2])
            info.raw_tags[key] = _jsonable(entry)
            if um is not None:
                info.candidates.append((f"zeiss:CZ_SEM:{key}", um))
                break
    for key in ("dp_image_store", "ap_width", "ap_height", "dp_sem"):
        if key in sem:
            info.raw_tags[key] = _jsonable(sem[key])


def _fei(fei: dict, info: SemMeta, shape: tuple[int, ...]) -> None:
    info.vendor = "fei"
    for section in ("Scan", "EScan"):
        sec = fei.get(section) or {}
        if "PixelWidth" in sec:
            info.raw_tags[f"{section}.PixelWidth"] = _jsonable(sec["PixelWidth"])
            um = _to_um(sec["PixelWidth"], "m")
            if um is not None:
                info.candidates.append((f"fei:[{section}]PixelWidth", um))
                break
    image = fei.get("Image") or {}
    try:
        res_y = int(image.get("ResolutionY", 0))
        res_x = int(image.get("ResolutionX", shape[1]))
    except (TypeError, ValueError):
        res_y, res_x = 0, 0
    if res_y:
        info.raw_tags["Image.ResolutionY"] = res_y
        info.raw_tags["Image.ResolutionX"] = res_x
    if 0 < res_y < shape[0] and res_x == shape[1]:
        info.databar_hint = (shape[0] - res_y, "fei:[Image]ResolutionY")
    elif res_y == shape[0]:
        info.databar_hint = (0, "fei:[Image]ResolutionY")


def _cathodeflow_description(desc: str | None, info: SemMeta) -> None:
    if not desc or not desc.lstrip().startswith("{"):
        return
    try:
        d = json.loads(desc)
    except ValueError:
        return
    cf = d.get("cathodeflow") if isinstance(d, dict) else None
    if not isinstance(cf, dict):
        return
    info.vendor = info.vendor or "cathodeflow"
    info.raw_tags["cathodeflow"] = _jsonable(cf)
    um = _to_um(cf.get("pixel_size_um"), "um")
    if um is not None:
        info.candidates.append(("cathodeflow:ImageDescription", um))
    rows = cf.get("databar_rows")
    if isinstance(rows, int) and rows >= 0 and info.databar_hint is None:
        info.databar_hint = (rows, "cathodeflow:ImageDescription")


def _imagej(ij: dict, xres: float | None, info: SemMeta) -> None:
    unit = str(ij.get("unit", "")).strip()
    unit = {"micron": "um", "microns": "um", "\\u00b5m": "um"}.get(unit.lower(), unit)
    if xres and unit:
        um = _to_um(1.0 / xres, unit)
        if um is not None:
            info.vendor = info.vendor or "imagej"
            info.raw_tags["imagej.unit"] = ij.get("unit")
            info.raw_tags["XResolution"] = xres
            info.candidates.append(("imagej:unit+XResolution", um))


def _resolution_tags(xres: float | None, unit: int | None, info: SemMeta, label: str) -> None:
    if not xres or xres <= 0:
        return
    if unit == 2:
        um = 25400.0 / xres
    elif unit == 3:
        um = 1e4 / xres
    else:
        return
    info.raw_tags[f"{label}"] = {"resolution_per_unit": xres, "unit": {2: "inch", 3: "cm"}[unit]}
    if um < MAX_PLAUSIBLE_TAG_PIXEL_UM:
        info.candidates.append((f"{label}", um))
    else:
        info.notes.append(f"{label} implies {um:.4g} µm pixels (a print resolution), ignored")


def read_tiff_metadata(path: str | Path) -> SemMeta:
    """Metadata of one TIFF (and of a JEOL sidecar beside it), without reading its pixels.

    Parameters
    ----------
    path : str or Path
        A TIFF file; a JEOL sidecar ``<stem>.txt`` beside it is read when present.

    Returns
    -------
    SemMeta
        Shape, axes, dtype, colour map and every pixel-size candidate and data-bar hint of
        the module notes, in their priority order; decide with :func:`decide_pixel_size`
        and :func:`decide_databar_rows`.

    Raises
    ------
    InputError
        One line naming the file: no image, a stack of images, or tags tifffile cannot parse.
    """
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tf:
            if len(tf.pages) == 0:
                raise _fail(path, "TIFF holds no image")
            page = tf.pages.first
            series = tf.series[0]
            extra = {ax: n for ax, n in zip(series.axes, series.shape) if ax not in "YXS" and n > 1}
            if extra:
                raise _fail(
                    path,
                    f"holds a stack of images (shape {series.shape}, axes {series.axes}); "
                    "expected one 2-D image per file",
                )
            kept = [(ax, int(n)) for ax, n in zip(series.axes, series.shape) if ax in "YXS" or n > 1]
            photometric = page.photometric
            info = SemMeta(
                format="tiff",
                shape=tuple(n for _, n in kept),
                axes="".join(ax for ax, _ in kept),
                dtype=np.dtype(series.dtype),
                photometric=getattr(photometric, "name", str(photometric)),
            )
            if int(photometric) == 3 and page.colormap is not None:  # PALETTE
                info.colormap = np.asarray(page.colormap)
            if tf.is_sem and tf.sem_metadata:
                _zeiss(tf.sem_metadata, info)
            if tf.is_fei and tf.fei_metadata:
                _fei(tf.fei_metadata, info, info.shape)
            _cathodeflow_description(page.description, info)
            tags = page.tags
            xres = None
            if "XResolution" in tags:
                num, den = tags["XResolution"].value
                xres = num / den if den else None
            unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
            if tf.is_imagej and tf.imagej_metadata:
                _imagej(tf.imagej_metadata, xres, info)
            else:
                _resolution_tags(xres, unit, info, "tiff:XResolution")
    except InputError:
        raise
    except Exception as e:  # any parser failure on a user file is an unreadable file
        raise _fail(path, f"unreadable TIFF ({type(e).__name__}: {e})") from None
    _jeol_sidecar(path, info)
    return info


def _tiff_pixels(path: Path, meta: SemMeta) -> np.ndarray:
    """The pixels of the TIFF :func:`read_tiff_metadata` described, shape ``meta.shape``."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            arr = tf.series[0].asarray()
    except Exception as e:  # any decoder failure on a user file is an unreadable file
        raise _fail(path, f"unreadable TIFF ({type(e).__name__}: {e})") from None
    return arr.reshape(meta.shape)


def _read_pil(path: Path, fmt: str) -> tuple[SemMeta, np.ndarray]:
    """Metadata (with a JEOL sidecar's) and pixels of a PNG or another format Pillow reads."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib
        raise _fail(path, f"reading {fmt.upper()} needs Pillow (pip install pillow)") from None
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            dpi = im.info.get("dpi")
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
                mode = im.mode
            arr = np.asarray(im)
    except Exception as e:
        raise _fail(path, f"unreadable {fmt.upper()} ({type(e).__name__}: {e})") from None
    if mode.startswith("I;16") or (mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535):
        arr = arr.astype(np.uint16)  # Pillow reads 16-bit PNGs as 32-bit "I"
    info = SemMeta(format=fmt, shape=tuple(int(n) for n in arr.shape), axes="YXS"[: arr.ndim], dtype=arr.dtype)
    if dpi:
        try:
            _resolution_tags(float(dpi[0]), 2, info, f"{fmt}:dpi")
        except (TypeError, ValueError, IndexError):
            pass
    _jeol_sidecar(path, info)
    return info, arr


def _jeol_sidecar(path: Path, info: SemMeta) -> None:
    """Read a JEOL ``.txt`` sidecar into ``info``; ``info.sidecar_problem`` says why its
    scale bar cannot be trusted."""
    side = None
    for suffix in (".txt", ".TXT"):
        cand = path.with_suffix(suffix)
        if cand.is_file():
            side = cand
            break
    if side is None:
        return
    try:
        text = side.read_text(encoding="latin-1")
    except OSError:
        return
    entries: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("$"):
            continue
        key, _, value = line.partition(" ")
        entries.setdefault(key, value.strip())
    bar = entries.get("$$SM_MICRON_BAR") or entries.get("$SM_MICRON_BAR")
    marker = entries.get("$$SM_MICRON_MARKER") or entries.get("$SM_MICRON_MARKER")
    full = entries.get("$CM_FULL_SIZE")
    if bar is None and marker is None and full is None:
        return
    info.vendor = info.vendor or "jeol"
    used = ("$CM_FORMAT", "$CM_INSTRUMENT", "$CM_MAG", "$CM_FULL_SIZE", "$$SM_MICRON_BAR",
            "$SM_MICRON_BAR", "$$SM_MICRON_MARKER", "$SM_MICRON_MARKER")
    info.raw_tags["jeol_sidecar"] = str(side)
    info.raw_tags.update({k: entries[k] for k in used if k in entries})
    full_wh = None
    if full:
        try:
            fw, fh = (int(float(t)) for t in full.split()[:2])
            full_wh = (fw, fh)
        except ValueError:
            full_wh = None
    h, w = info.image_shape
    if full_wh is not None and full_wh[0] == w and 0 < full_wh[1] <= h:
        info.databar_hint = (h - full_wh[1], "jeol:$CM_FULL_SIZE")
    if bar is None or marker is None:
        return
    m = re.match(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*([A-Za-zµμ]+)\s*$", marker)
    try:
        bar_px = float(bar.split()[0])
    except (ValueError, IndexError):
        bar_px = 0.0
    um = _to_um(float(m.group(1)) / bar_px, m.group(2)) if (m and bar_px > 0) else None
    if um is None:
        info.sidecar_problem = (
            f"JEOL sidecar {side.name} has an unusable scale bar ($$SM_MICRON_MARKER {marker!r}, $$SM_MICRON_BAR {bar!r})"
        )
        return
    if full_wh is not None and full_wh[0] != w:
        info.sidecar_problem = (
            f"JEOL sidecar {side.name} measures its scale bar on a {full_wh[0]}x{full_wh[1]} grid "
            f"but the image is {w}x{h} (resized export)"
        )
        return
    # after Zeiss/FEI tags, before generic sources (module docstring order)
    pos = sum(1 for src, _ in info.candidates if src.startswith(("zeiss:", "fei:")))
    info.candidates.insert(pos, ("jeol:$$SM_MICRON_MARKER/$$SM_MICRON_BAR", um))


# --------------------------------------------------------------------------- decisions


def _user_pixel_size(path: Path, pixel_size_um: Any) -> float | None:
    """A user's ``pixel_size_um`` as a float (None stays None); InputError unless finite and > 0."""
    if pixel_size_um is None:
        return None
    try:
        ps = float(pixel_size_um)
    except (TypeError, ValueError):
        raise _fail(path, f"pixel_size_um must be a number, got {pixel_size_um!r}") from None
    if not math.isfinite(ps) or ps <= 0:
        raise _fail(path, f"pixel_size_um must be finite and > 0, got {pixel_size_um!r}")
    return ps


def _user_databar_rows(path: Path, databar_rows: Any) -> int | None:
    """A user's ``databar_rows`` as an int (None stays None); InputError unless an integer >= 0."""
    if databar_rows is None:
        return None
    if isinstance(databar_rows, bool) or not isinstance(databar_rows, (int, np.integer)) or databar_rows < 0:
        raise _fail(path, f"databar_rows must be an integer >= 0, got {databar_rows!r}")
    return int(databar_rows)


def decide_pixel_size(
    meta: SemMeta,
    *,
    path: str | Path,
    pixel_size_um: float | None = None,
    stacklevel: int = 2,
) -> tuple[float, str]:
    """The pixel size of an image and its source: the user's, else the first candidate.

    Parameters
    ----------
    meta : SemMeta
        What the file's metadata says (:func:`read_tiff_metadata`).
    path : str or Path
        The file, named in errors and warnings.
    pixel_size_um : float, optional
        The user's pixel size in µm; wins, with a warning naming both when the metadata's
        differs by more than :data:`PIXEL_SIZE_WARN_RTOL`.
    stacklevel : int
        Of the warning, counted from the caller of this function (as ``warnings.warn``).

    Returns
    -------
    (float, str)
        Pixel size in µm and its source (``"user"`` or the candidate's, e.g.
        ``"zeiss:CZ_SEM:ap_image_pixel_size"``).

    Raises
    ------
    InputError
        One line naming the file: ``pixel_size_um`` not finite and > 0, or no pixel size
        given and none in the metadata (with the JEOL sidecar's problem when there is one).
    """
    p = Path(path)
    user_ps = _user_pixel_size(p, pixel_size_um)
    meta_src, meta_ps = meta.candidates[0] if meta.candidates else (None, None)
    if user_ps is not None:
        if meta_ps is not None and abs(meta_ps - user_ps) > PIXEL_SIZE_WARN_RTOL * meta_ps:
            warnings.warn(
                one_line(
                    f"{p}: pixel_size_um={user_ps:g} µm given, but the file's metadata ({meta_src}) "
                    f"says {meta_ps:g} µm; using {user_ps:g} µm"
                ),
                CathodeflowWarning,
                stacklevel=stacklevel + 1,
            )
        return user_ps, "user"
    if meta_ps is not None:
        return float(meta_ps), meta_src
    if meta.sidecar_problem is not None:
        raise _fail(p, f"{meta.sidecar_problem}; pass --pixel-size-um")
    raise _fail(p, "no pixel size in the file's metadata; pass --pixel-size-um")


def decide_databar_rows(
    meta: SemMeta,
    *,
    path: str | Path,
    databar_rows: int | None = None,
    crop_databar: bool = True,
    pixels: np.ndarray | None = None,
) -> tuple[int, str]:
    """Rows of the data bar to remove from the bottom of an image, and where that comes from.

    Parameters
    ----------
    meta : SemMeta
        What the file's metadata says (:func:`read_tiff_metadata`).
    path : str or Path
        The file, named in errors.
    databar_rows : int, optional
        The user's row count; wins over everything.
    crop_databar : bool
        False: remove nothing (unless ``databar_rows`` is given).
    pixels : ndarray, shape (H, W), optional
        The grayscale image, for :func:`detect_databar` when the metadata states no bar;
        None (a lazy read): no bar unless the metadata states one.

    Returns
    -------
    (int, str)
        Rows to remove (< H) and their source.

    Raises
    ------
    InputError
        One line naming the file: ``databar_rows`` not an integer >= 0, or a bar as high
        as the image.
    """
    p = Path(path)
    user_rows = _user_databar_rows(p, databar_rows)
    if user_rows is not None:
        rows, source = user_rows, "user"
    elif not crop_databar:
        rows, source = 0, "not cropped (crop_databar=False)"
    elif meta.databar_hint is not None:
        rows, source = meta.databar_hint
    elif pixels is None:
        rows, source = 0, "none stated by the metadata (not detected from pixels: read lazily)"
    else:
        rows = detect_databar(pixels)
        source = "detected from pixels" if rows else "none found"
    h = meta.image_shape[0]
    if rows >= h:
        raise _fail(p, f"data bar of {rows} rows leaves no image (the image has {h} rows)")
    return int(rows), source


# --------------------------------------------------------------------------- public API


def read_sem(
    path: str | Path,
    *,
    pixel_size_um: float | None = None,
    crop_databar: bool = True,
    databar_rows: int | None = None,
) -> SemImage:
    """Read one SEM image file (TIFF, PNG, or another format Pillow reads).

    Parameters
    ----------
    path : str or Path
        The image file. A JEOL sidecar ``<stem>.txt`` beside it is read when present.
    pixel_size_um : float, optional
        Pixel size in µm; overrides the file's metadata (warning when they differ by > 1 %).
        Required when the file states none.
    crop_databar : bool
        Remove the microscope's data bar (vendor metadata, else :func:`detect_databar`).
    databar_rows : int, optional
        Remove exactly this many bottom rows instead (overrides detection and metadata).

    Returns
    -------
    SemImage
        ``data`` of shape (H - databar_rows, W), uint8 or uint16 (other grey values
        converted by :func:`grey_conversion`; the note is in ``metadata["notes"]``).

    Raises
    ------
    InputError
        One line naming the file: missing, unreadable or truncated, unsupported pixel type
        or layout, NaN or infinite pixels, no pixel size anywhere, invalid arguments.
    """
    p = Path(path)
    if not p.exists():
        raise _fail(p, "file not found")
    if not p.is_file():
        raise _fail(p, "is not a file")
    _user_pixel_size(p, pixel_size_um)  # argument errors before the file's
    _user_databar_rows(p, databar_rows)

    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise _fail(p, f"cannot be read ({e.strerror or e})") from None
    if len(head) == 0:
        raise _fail(p, "is empty (0 bytes)")
    if head.startswith(TIFF_MAGIC):
        meta = read_tiff_metadata(p)
        raw = _tiff_pixels(p, meta)
    else:
        meta, raw = _read_pil(p, "png" if head.startswith(_PNG_MAGIC) else p.suffix.lstrip(".").lower() or "image")

    if meta.colormap is not None and raw.ndim == 2 and raw.dtype.kind == "u":
        if raw.size and int(raw.max()) >= np.asarray(meta.colormap).shape[-1]:
            raise _fail(p, f"palette index {int(raw.max())} beyond the colour map's {np.asarray(meta.colormap).shape[-1]} entries")
        gray, color = _palette_to_gray(raw, meta.colormap, p)
    else:
        gray, color = _to_gray(raw, meta.axes, p)
    check_grey_dtype(p, gray.dtype)
    if gray.shape[0] < 1 or gray.shape[1] < 1:
        raise _fail(p, f"image has no pixels (shape {gray.shape})")

    h = gray.shape[0]
    rows, bar_source = decide_databar_rows(
        meta, path=p, databar_rows=databar_rows, crop_databar=crop_databar, pixels=gray
    )
    data = np.ascontiguousarray(gray[: h - rows]) if rows else gray
    data, converted = _to_unsigned(data, p)  # the grey scale of the image, not of the data bar
    if converted:
        meta.notes.append(converted)
    if color == "palette-with-colour":
        # colour overlay entries (e.g. Zeiss annotation colours) left after the crop
        _, used_colour = _palette_to_gray(raw[: h - rows], meta.colormap, p)
        if used_colour == "palette-with-colour":
            warnings.warn(one_line(f"{p}: colour palette entries in the image converted to BT.709 luma"),
                          CathodeflowWarning, stacklevel=2)
    ps, ps_source = decide_pixel_size(meta, path=p, pixel_size_um=pixel_size_um, stacklevel=2)

    return SemImage(
        data=data,
        pixel_size_um=float(ps),
        source=p.resolve(),
        sha256=sha256_file(p),
        metadata=meta.record(pixel_size_source=ps_source, databar_source=bar_source, color=color),
        databar_rows=int(rows),
    )


def write_tiff(
    path: str | Path,
    array: np.ndarray,
    *,
    pixel_size_um: float,
    compression: str | None = None,
) -> Path:
    """Write a 2-D grayscale TIFF whose pixel size :func:`read_sem` and other tools read.

    The pixel size goes into the standard resolution tags (``XResolution`` =
    ``YResolution`` = pixels per centimetre, ``ResolutionUnit`` = centimetre, read by
    ImageJ/Fiji, GIMP, Pillow, tifffile) and, exactly, into a JSON ImageDescription
    ``{"cathodeflow": {"pixel_size_um": ..., "databar_rows": 0}}``, which also tells
    :func:`read_sem` that the file has no data bar.

    Parameters
    ----------
    path : str or Path
        Output file (overwritten).
    array : ndarray, shape (H, W), uint8 or uint16
    pixel_size_um : float
        > 0, in µm.
    compression : str, optional
        tifffile compression name (e.g. ``"zlib"``); None writes uncompressed.

    Returns
    -------
    Path
        ``path``.
    """
    import tifffile

    arr = np.asarray(array)
    if arr.ndim != 2:
        raise InputError(f"array must be 2-D (H, W), got shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(f"array must be uint8 or uint16, got {arr.dtype}")
    try:
        ps = float(pixel_size_um)
    except (TypeError, ValueError):
        raise InputError(f"pixel_size_um must be a number, got {pixel_size_um!r}") from None
    if not math.isfinite(ps) or ps <= 0:
        raise InputError(f"pixel_size_um must be finite and > 0, got {pixel_size_um!r}")
    per_cm = 1e4 / ps
    desc = json.dumps({"cathodeflow": {"pixel_size_um": ps, "databar_rows": 0}})
    p = Path(path)
    tifffile.imwrite(
        p,
        arr,
        photometric="minisblack",
        resolution=(per_cm, per_cm),
        resolutionunit="CENTIMETER",
        description=desc,
        metadata=None,
        software="cathodeflow",
        compression=compression,
    )
    return p
