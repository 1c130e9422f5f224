"""Registered low/high-resolution SEM pairs for SRGAN training (``cathodeflow pair``).

:func:`pair_files` reads an LR and an HR SEM file (:func:`cathodeflow.io.sem.read_sem`,
pixel sizes from their metadata or given), registers the HR field inside the LR field
(:func:`cathodeflow.stages.register.register_pair`, scale = pixel size LR / pixel size HR)
and writes the aligned pair into a folder (:func:`write_pair`); :func:`read_pairs` reads a
folder of such pairs back for :func:`cathodeflow.study.train_sr.train_sr`
(``training.pairs_dir``).

A pair ``<id>`` (the HR file's stem) is three files in the folder:

- ``<id>.lr.tif``: the LR block, (26·k, 26·m) px, the LR file's pixels and dtype unchanged,
  at the LR pixel size;
- ``<id>.hr.tif``: the HR image resampled onto that block's exact 35/13 grid, (70·k, 70·m)
  px, at pixel size LR·13/35, rounded to the HR file's dtype (uint8 or uint16: the files
  stay readable by :func:`~cathodeflow.io.sem.read_sem`, ImageJ/Fiji and tifffile; the
  rounding, at most half a grey level, is below the quantisation of the HR file itself);
- ``<id>.pair.json``: offset (LR px), scale, correlation and nrmse
  (:meth:`~cathodeflow.stages.register.Registration.summary`), the pixel sizes, and each
  source file's absolute path and sha256.

The three files are written to temporary names and then renamed, so a failure leaves no
partial pair; a pair of the same id is replaced.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import SR_DEN, SR_NUM
from ..errors import InputError

__all__ = ["StoredPair", "pair_files", "write_pair", "read_pairs", "PAIR_SUFFIX"]

#: Suffix of a pair's record; :func:`read_pairs` finds pairs by it.
PAIR_SUFFIX = ".pair.json"
#: Relative tolerance on the stored pixel sizes' ratio (35/13) when reading pairs.
PIXEL_RATIO_RTOL = 1e-6


@dataclass(frozen=True)
class StoredPair:
    """One pair read back from a folder.

    Attributes
    ----------
    lr : ndarray, shape (26·k, 26·m), uint8 or uint16
    hr : ndarray, shape (70·k, 70·m), uint8 or uint16
    record : dict — the ``<id>.pair.json`` contents.
    path : Path — the record file.
    """

    lr: np.ndarray
    hr: np.ndarray
    record: dict
    path: Path


def _as_dtype(a: np.ndarray, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.rint(a), info.min, info.max).astype(dtype)


def write_pair(reg, out_dir, *, pair_id: str, low, high) -> Path:
    """Write a registration's aligned crops and record into ``out_dir`` (created).

    Parameters
    ----------
    reg : :class:`cathodeflow.stages.register.Registration`
    out_dir : folder of pairs.
    pair_id : file name stem of the pair.
    low, high : :class:`cathodeflow.io.sem.SemImage` — the two source images (pixel sizes,
        paths, sha256 and the HR dtype come from them).

    Returns
    -------
    Path of the record ``<out_dir>/<pair_id>.pair.json``.
    """
    from ..io.sem import write_tiff

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"out_dir {out}: exists and is not a folder")
    ps_lr = float(low.pixel_size_um)
    ps_hr = ps_lr * SR_DEN / SR_NUM
    record = {
        "pair_id": pair_id,
        **reg.summary(),
        "pixel_size_lr_um": ps_lr,
        "pixel_size_hr_um": ps_hr,
        "low": {"path": str(low.source), "sha256": low.sha256, "pixel_size_um": ps_lr},
        "high": {"path": str(high.source), "sha256": high.sha256, "pixel_size_um": float(high.pixel_size_um)},
        "files": {"lr": f"{pair_id}.lr.tif", "hr": f"{pair_id}.hr.tif"},
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        final = [out / record["files"]["lr"], out / record["files"]["hr"], out / f"{pair_id}{PAIR_SUFFIX}"]
        tmp = [p.with_name(f".{p.name}.tmp") for p in final]
        try:
            write_tiff(tmp[0], reg.lr_crop, pixel_size_um=ps_lr)
            write_tiff(tmp[1], _as_dtype(reg.hr_crop, high.data.dtype), pixel_size_um=ps_hr)
            tmp[2].write_text(json.dumps(record, indent=1) + "\n")
            for t, f in zip(tmp, final):
                os.replace(t, f)
        finally:
            for t in tmp:
                t.unlink(missing_ok=True)
    except OSError as e:
        raise InputError(f"out_dir {out}: cannot write the pair ({e.strerror or e})") from None
    return final[2]


def pair_files(
    low_path,
    high_path,
    *,
    out_dir,
    pixel_size_low_um: float | None = None,
    pixel_size_high_um: float | None = None,
    min_correlation: float | None = None,
):
    """Read, register and store one LR/HR file pair (nothing is written when it fails).

    Parameters
    ----------
    low_path, high_path : the LR and HR SEM files.
    out_dir : folder of pairs (created).
    pixel_size_low_um, pixel_size_high_um : override the files' pixel sizes (µm).
    min_correlation : least NCC accepted; None = :data:`~cathodeflow.stages.register.MIN_CORRELATION`.

    Returns
    -------
    (Registration, Path) — the registration and the written record.

    Raises
    ------
    InputError
        A file unreadable or without a pixel size, HR pixels not smaller than LR pixels, the
        HR field not inside the LR field, or no match (naming both files).
    """
    from ..io.sem import read_sem
    from ..stages.register import MIN_CORRELATION, register_pair

    low = read_sem(low_path, pixel_size_um=pixel_size_low_um)
    high = read_sem(high_path, pixel_size_um=pixel_size_high_um)
    scale = low.pixel_size_um / high.pixel_size_um
    if scale <= 1:
        raise InputError(f"{high_path}: pixel size {high.pixel_size_um:g} µm is not smaller than that of "
                         f"{low_path} ({low.pixel_size_um:g} µm); expected LOW then HIGH resolution")
    reg = register_pair(low.data, high.data, scale=scale,
                        min_correlation=MIN_CORRELATION if min_correlation is None else min_correlation,
                        names=(str(low_path), str(high_path)))
    return reg, write_pair(reg, out_dir, pair_id=Path(high_path).stem, low=low, high=high)


def read_pairs(pairs_dir) -> list[StoredPair]:
    """Every pair in a folder written by :func:`write_pair`, sorted by id.

    Raises
    ------
    InputError
        The folder is missing or holds no pair; a pair's files are missing, of the wrong
        shapes (not 26·k and 70·k) or pixel sizes (not in the ratio 35/13).
    """
    from ..io.sem import read_sem

    d = Path(pairs_dir)
    if not d.is_dir():
        raise InputError(f"pairs_dir {d}: not a folder")
    records = sorted(d.glob(f"*{PAIR_SUFFIX}"))
    if not records:
        raise InputError(f"pairs_dir {d}: holds no *{PAIR_SUFFIX}; expected the --out of `cathodeflow pair`")
    pairs = []
    for path in records:
        try:
            rec = json.loads(path.read_text())
            lr = read_sem(d / rec["files"]["lr"], crop_databar=False)
            hr = read_sem(d / rec["files"]["hr"], crop_databar=False)
        except (OSError, ValueError, KeyError, TypeError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"{path}: not a pair record ({type(e).__name__}: {e})") from None
        (h, w), (hh, ww) = lr.data.shape, hr.data.shape
        if h % (2 * SR_DEN) or w % (2 * SR_DEN) or (hh, ww) != (h * SR_NUM // SR_DEN, w * SR_NUM // SR_DEN):
            raise InputError(f"{path}: lr {h} × {w} and hr {hh} × {ww} px; expected lr a multiple of "
                             f"{2 * SR_DEN} and hr = lr·{SR_NUM}/{SR_DEN}")
        ratio = lr.pixel_size_um / hr.pixel_size_um
        if abs(ratio * SR_DEN / SR_NUM - 1) > PIXEL_RATIO_RTOL:
            raise InputError(f"{path}: pixel sizes {lr.pixel_size_um:g} and {hr.pixel_size_um:g} µm "
                             f"(ratio {ratio:.6g}); expected the ratio {SR_NUM}/{SR_DEN}")
        pairs.append(StoredPair(lr=lr.data, hr=hr.data, record=rec, path=path))
    return pairs
