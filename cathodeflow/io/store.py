"""The study store (DESIGN §4.1, a contract): one Zarr v3 group per study.

Layout::

    study.zarr/                      group; attrs {"cathodeflow": {"kind": "study", "version": 1}}
      images/                        group
        <image_id>/                  group; attrs {"cathodeflow": {"condition", "source", ...}}
          raw/  sr/  prob/  phase/   one NGFF 0.5 single-scale image group per stage,
            0                        holding the pixels as array "0"
          labels/                    NGFF "labels" group; attrs {"ome": {"labels": [...]}}
            cracks/  particles/      NGFF image-label groups, array "0" each
      tables/                        group (zarr.json only) holding Parquet files, DESIGN §4.2

Stage ``s`` of image ``i`` lives at ``images/<i>/<s>`` (``labels/cracks`` and
``labels/particles`` included). It is a *group* holding array ``0`` because OME-Zarr keeps
``multiscales`` on a group that lists its arrays; so ``napari images/<i>/sr`` (ome-zarr
reader) opens a stage with its physical scale, and ``images/<i>/labels`` opens the label
images, which name the image they annotate (``image-label.source``, the ``sr`` or ``phase``
group on the same grid).

Each stage group's attributes hold
``{"ome": {"version": "0.5", "multiscales": [...], ["image-label": {...}]},
"cathodeflow": {"complete", "stage", "kind", "pixel_size_um", "shape", "dtype", "chunks",
"params", "package_version", "weights_sha256", "start_utc", "end_utc"}}``. Axes are
``y, x`` (``c, y, x`` for ``prob``) with unit ``micrometer``; the scale is the pixel size in
µm. The record sits on the stage's own group, so writing one stage never rewrites another
stage's attributes.

Completion: :meth:`Store.write_stage` first replaces the stage's attributes with
``complete: false`` (the "ome" metadata goes too, so no reader sees a half-written image),
then writes every chunk, then writes the metadata with ``complete: true``. A stage whose
write was interrupted therefore reads as incomplete; :meth:`Store.read_stage` refuses it and
the pipeline recomputes it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, StoreError, one_line

__all__ = [
    "Store",
    "create_store",
    "open_store",
    "STAGES",
    "IMAGE_STAGES",
    "LABEL_STAGES",
    "STORE_VERSION",
]

#: Version of the store layout written by this module.
STORE_VERSION = 1
#: Stages holding images (``prob`` has a leading channel axis).
IMAGE_STAGES = ("raw", "sr", "prob", "phase")
#: Stages holding label images (integer ids, 0 = background).
LABEL_STAGES = ("labels/cracks", "labels/particles")
#: Every stage name a store accepts.
STAGES = IMAGE_STAGES + LABEL_STAGES
#: Default chunk edge (px) of stored arrays when neither the caller nor a Dask input gives one.
DEFAULT_CHUNK_PX = 1024
NGFF_VERSION = "0.5"

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_STUDY_MARK = {"kind": "study", "version": STORE_VERSION}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _package_version() -> str:
    try:
        from .. import __version__  # type: ignore[attr-defined]

        return str(__version__)
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        return version("cathodeflow")
    except Exception:  # PackageNotFoundError or a broken install: provenance says so
        return "unknown"


def _json_clean(value: Any, name: str) -> Any:
    """``value`` as plain JSON (numpy scalars/arrays converted); InputError naming ``name``."""

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, (tuple, set, frozenset)):
            return list(o)
        raise TypeError(f"{type(o).__name__} is not JSON-serialisable")

    try:
        return json.loads(json.dumps(value, default=default, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InputError(one_line(f"{name} must be JSON-serialisable (str, numbers, lists, dicts): {e}")) from None


def _check_image_id(image_id: Any) -> str:
    if not isinstance(image_id, str):
        raise InputError(f"image_id must be a str, got {type(image_id).__name__} {image_id!r}")
    if not _ID_RE.match(image_id):
        raise InputError(
            f"image_id {image_id!r} is not a safe name: expected 1-128 characters from "
            "letters, digits, '.', '_', '-', starting with a letter or digit"
        )
    return image_id


def _check_stage(stage: Any) -> str:
    if stage not in STAGES:
        raise InputError(f"stage must be one of {', '.join(STAGES)}; got {stage!r}")
    return stage


def _check_pixel_size(pixel_size_um: Any) -> float:
    if isinstance(pixel_size_um, bool):
        raise InputError(f"pixel_size_um must be a number > 0, got {pixel_size_um!r}")
    try:
        ps = float(pixel_size_um)
    except (TypeError, ValueError):
        raise InputError(f"pixel_size_um must be a number > 0, got {pixel_size_um!r}") from None
    if not math.isfinite(ps) or ps <= 0:
        raise InputError(f"pixel_size_um must be finite and > 0, got {pixel_size_um!r}")
    return ps


def _ngff_axes(ndim: int) -> list[dict]:
    space = [{"name": n, "type": "space", "unit": "micrometer"} for n in ("y", "x")]
    return ([{"name": "c", "type": "channel"}] if ndim == 3 else []) + space


def _ngff_multiscales(name: str, ndim: int, pixel_size_um: float) -> list[dict]:
    """NGFF 0.5 ``multiscales`` for one single-scale array ``0`` (scale = pixel size in µm)."""
    scale = ([1.0] if ndim == 3 else []) + [pixel_size_um, pixel_size_um]
    return [
        {
            "name": name,
            "axes": _ngff_axes(ndim),
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        }
    ]


def _read_zarr_json(path: Path) -> dict | None:
    try:
        return json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise StoreError(one_line(f"{path}: unreadable zarr.json ({type(e).__name__}: {e})")) from None


def _identify(path: Path) -> str:
    """Raise StoreError unless ``path`` is a cathodeflow study store; return 'study'."""
    if not path.exists():
        raise StoreError(f"{path}: no study store here (the path does not exist)")
    if not path.is_dir():
        raise StoreError(f"{path}: is a file, not a study store (a Zarr v3 directory)")
    meta = _read_zarr_json(path)
    if meta is None:
        if (path / ".zgroup").exists() or (path / ".zarray").exists():
            raise StoreError(f"{path}: a Zarr v2 store, not a cathodeflow study store (Zarr v3)")
        entries = sorted(e.name for e in path.iterdir())
        if not entries:
            raise StoreError(f"{path}: an empty directory, not a study store (create one with create_store)")
        shown = ", ".join(entries[:5]) + (f", … ({len(entries)} entries)" if len(entries) > 5 else "")
        raise StoreError(f"{path}: a directory that is not a Zarr store (found {shown}); not a study store")
    if meta.get("node_type") != "group":
        raise StoreError(f"{path}: a Zarr {meta.get('node_type', 'node')}, not a study store (a Zarr group)")
    cf = (meta.get("attributes") or {}).get("cathodeflow")
    if not isinstance(cf, dict) or cf.get("kind") != "study":
        kind = f"kind {cf.get('kind')!r}" if isinstance(cf, dict) else "no cathodeflow study attribute"
        raise StoreError(f"{path}: a Zarr group of another kind ({kind}), not a cathodeflow study store")
    if cf.get("version") != STORE_VERSION:
        raise StoreError(
            f"{path}: study store version {cf.get('version')!r}; this cathodeflow reads version {STORE_VERSION}"
        )
    return "study"


def create_store(path: str | Path, *, exist_ok: bool = False) -> "Store":
    """Create a study store at ``path`` (a new or empty directory) and open it read-write.

    Parameters
    ----------
    path : str or Path
    exist_ok : bool
        If ``path`` already is a study store, open it instead of failing.

    Raises
    ------
    StoreError
        ``path`` is a file, a non-empty directory that is not a study store, a Zarr store of
        another kind, or (without ``exist_ok``) an existing study store. Nothing is written.
    """
    import zarr

    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise StoreError(f"{p}: is a file; cannot create a study store there")
        if any(p.iterdir()):
            _identify(p)  # raises for anything that is not a study store
            if not exist_ok:
                raise StoreError(f"{p}: already a study store; open it with open_store (or pass exist_ok=True)")
            return open_store(p, mode="r+")
    p.mkdir(parents=True, exist_ok=True)
    root = zarr.create_group(str(p), zarr_format=3, overwrite=False)
    root.create_group("images")
    root.create_group(
        "tables",
        attributes={"cathodeflow": {"kind": "tables", "note": "Parquet tables (DESIGN §4.2), plain files"}},
    )
    # the study mark last: a creation cut short is not mistaken for a study
    root.attrs.put({"cathodeflow": dict(_STUDY_MARK, created_utc=_now(), created_by=_package_version())})
    return Store(p, root, "r+")


def open_store(path: str | Path, mode: str = "r+") -> "Store":
    """Open an existing study store.

    Parameters
    ----------
    path : str or Path
    mode : {'r', 'r+'}
        Read-only or read-write.

    Raises
    ------
    StoreError
        Missing path, a file, a non-Zarr directory, a Zarr store of another kind or version.
        The path is only read to decide, never written.
    """
    import zarr

    if mode not in ("r", "r+"):
        raise InputError(f"mode must be 'r' or 'r+', got {mode!r}")
    p = Path(path)
    _identify(p)
    root = zarr.open_group(str(p), mode=mode, zarr_format=3)
    return Store(p, root, mode)


class Store:
    """A study store opened by :func:`open_store` or :func:`create_store`.

    Attributes
    ----------
    path : Path
        The store's directory.
    mode : {'r', 'r+'}
    """

    def __init__(self, path: Path, root, mode: str):
        self.path = Path(path)
        self.mode = mode
        self._root = root

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, mode={self.mode!r})"

    # ----------------------------------------------------------------- navigation

    @property
    def tables_dir(self) -> Path:
        """``<store>/tables``: the folder for Parquet tables (created with the store)."""
        return self.path / "tables"

    def _writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"{self.path}: opened read-only (mode='r'); open with mode='r+' to write")

    def _images(self):
        return self._group("images")

    def _group(self, rel: str):
        """Group at ``rel`` below the root, or None."""
        import zarr

        try:
            node = zarr.open_group(store=self._root.store, path=rel, mode="r", zarr_format=3)
        except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
            return None
        return node

    def _image_group(self, image_id: str):
        _check_image_id(image_id)
        g = self._group(f"images/{image_id}")
        if g is None:
            raise StoreError(f"{self.path}: no image {image_id!r} in the store")
        return g

    def image_ids(self) -> list[str]:
        """Ids of the images in the store, sorted."""
        images = self._images()
        if images is None:
            return []
        return sorted(name for name, _ in images.groups())

    def has_image(self, image_id: str) -> bool:
        """Whether ``images/<image_id>`` exists."""
        return self._group(f"images/{_check_image_id(image_id)}") is not None

    def _image_record(self, image_id: str) -> dict:
        rec = self._image_group(image_id).attrs.asdict().get("cathodeflow")
        if not isinstance(rec, dict):
            raise StoreError(f"{self.path}: image {image_id!r} has no cathodeflow attributes")
        return rec

    def condition(self, image_id: str) -> str:
        """The condition label of an image (e.g. ``"20C"``)."""
        return self._image_record(image_id)["condition"]

    def source(self, image_id: str) -> dict | None:
        """``{"path", "sha256", ...}`` of the file the image was ingested from, or None."""
        return self._image_record(image_id).get("source")

    def stage_info(self, image_id: str, stage: str) -> dict | None:
        """The stage's cathodeflow record (completion and provenance), or None if absent."""
        _check_stage(stage)
        g = self._group(f"images/{_check_image_id(image_id)}/{stage}")
        if g is None:
            return None
        rec = g.attrs.asdict().get("cathodeflow")
        return dict(rec) if isinstance(rec, dict) else None

    def is_complete(self, image_id: str, stage: str) -> bool:
        """True when the stage's completion mark is set and its array has the recorded shape."""
        import zarr

        rec = self.stage_info(image_id, stage)
        if not rec or rec.get("complete") is not True:
            return False
        try:
            arr = zarr.open_array(store=self._root.store, path=f"images/{image_id}/{stage}/0", mode="r", zarr_format=3)
        except Exception:  # missing or unreadable array: not complete
            return False
        return list(arr.shape) == list(rec.get("shape", []))

    def _complete_record(self, image_id: str, stage: str) -> dict:
        if not self.is_complete(image_id, stage):
            self._image_group(image_id)
            raise StoreError(
                f"{self.path}: stage {stage!r} of image {image_id!r} is not complete "
                "(never written or interrupted); recompute it"
            )
        return self.stage_info(image_id, stage)

    def pixel_size_um(self, image_id: str, stage: str = "raw") -> float:
        """Pixel size in µm of a complete stage."""
        return float(self._complete_record(image_id, _check_stage(stage))["pixel_size_um"])

    def read_stage(self, image_id: str, stage: str):
        """A complete stage as a Dask array (chunks = the stored chunks); StoreError otherwise.

        Returns
        -------
        dask.array.Array, shape (H, W), or (C, H, W) for ``prob``
        """
        import dask.array as da
        import zarr

        self._complete_record(image_id, _check_stage(stage))
        arr = zarr.open_array(store=self._root.store, path=f"images/{image_id}/{stage}/0", mode="r", zarr_format=3)
        return da.from_zarr(arr)

    # ----------------------------------------------------------------- writing

    def add_image(
        self,
        image_id: str,
        array,
        *,
        condition: str,
        pixel_size_um: float,
        source: dict | None = None,
        stage: str = "raw",
        chunks: tuple[int, ...] | None = None,
        params: dict | None = None,
        overwrite: bool = False,
        compute_kw: dict | None = None,
    ) -> None:
        """Add an image (group ``images/<image_id>``) and write its first stage.

        Parameters
        ----------
        image_id : str
            Safe name (letters, digits, ``. _ -``; ≤ 128 characters).
        array : ndarray or dask array, shape (H, W)
            The pixels of ``stage`` (``raw`` for SEM files; ``phase`` for imported maps).
        condition : str
            Condition label (e.g. ``"20C"``).
        pixel_size_um : float
            > 0, µm.
        source : dict, optional
            Where the pixels came from, e.g. ``{"path": ..., "sha256": ...}``.
        stage : str
            Which stage ``array`` is.
        chunks : tuple of int, optional
            Stored chunk shape.
        params : dict, optional
            Provenance parameters of the ingest (e.g. data-bar rows, pixel-size source).
        overwrite : bool
            Replace an image with the same id (all its stages) instead of failing.

        Raises
        ------
        InputError
            Invalid argument; nothing is written.
        StoreError
            Read-only store, or the image exists and ``overwrite`` is False.
        """
        self._writable()
        _check_image_id(image_id)
        if not isinstance(condition, str):
            raise InputError(f"condition must be a str, got {type(condition).__name__} {condition!r}")
        if not condition.strip():
            raise InputError("condition must be a non-empty str")
        _check_stage(stage)
        ps = _check_pixel_size(pixel_size_um)
        if source is not None and not isinstance(source, dict):
            raise InputError(f"source must be a dict (path, sha256) or None, got {type(source).__name__}")
        source = _json_clean(source, "source")
        params = _json_clean(params or {}, "params")
        data, kind, zchunks = self._check_array(array, stage, None, chunks)
        import zarr

        images = zarr.open_group(store=self._root.store, path="images", mode="a", zarr_format=3)
        if image_id in images:
            if not overwrite:
                raise StoreError(f"{self.path}: image {image_id!r} is already in the store (pass overwrite=True to replace it)")
            del images[image_id]
        images.create_group(
            image_id,
            attributes={"cathodeflow": {"condition": condition, "source": source, "added_utc": _now()}},
        )
        self._write(image_id, stage, data, kind, zchunks, ps, params, None, compute_kw)

    def write_stage(
        self,
        image_id: str,
        stage: str,
        array,
        *,
        pixel_size_um: float,
        params: dict,
        kind: str | None = None,
        chunks: tuple[int, ...] | None = None,
        weights_sha256: str | None = None,
        compute_kw: dict | None = None,
    ) -> None:
        """Write (or rewrite) one stage of an image; marks it complete after the last chunk.

        Parameters
        ----------
        image_id : str
            An image already added with :meth:`add_image`.
        stage : str
            One of :data:`STAGES`.
        array : ndarray or dask array
            Shape (H, W); (C, H, W) for ``prob``. A Dask array is written chunk by chunk
            (rechunked to the stored chunks), never materialised whole.
        pixel_size_um : float
            Pixel size of this stage's grid, µm.
        params : dict
            The stage's parameters (JSON-serialisable), kept as provenance.
        kind : {'image', 'labels'}, optional
            Default: 'labels' for ``labels/*`` (required there), else 'image'. 'labels'
            needs an integer dtype and adds NGFF ``image-label`` metadata (e.g. ``phase``
            opened as a label layer).
        chunks : tuple of int, optional
            Stored chunk shape; default: the Dask array's chunk size, else 1024 px squares
            (all channels of ``prob`` in one chunk).
        weights_sha256 : str, optional
            SHA-256 of the model weights used (SR, U-net).
        compute_kw : dict, optional
            Passed to ``dask.array.store`` (e.g. ``{"scheduler": client}``).

        Raises
        ------
        InputError
            Invalid argument; nothing is written.
        StoreError
            Read-only store or unknown image.

        Notes
        -----
        The completion mark is cleared before the first chunk is written and set after the
        last, so an exception (or a killed process) leaves the stage incomplete.
        """
        self._writable()
        _check_image_id(image_id)
        _check_stage(stage)
        ps = _check_pixel_size(pixel_size_um)
        if not isinstance(params, dict):
            raise InputError(f"params must be a dict, got {type(params).__name__}")
        params = _json_clean(params, "params")
        if weights_sha256 is not None and not (isinstance(weights_sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", weights_sha256)):
            raise InputError(f"weights_sha256 must be 64 hex digits, got {weights_sha256!r}")
        data, kind, zchunks = self._check_array(array, stage, kind, chunks)
        self._image_group(image_id)
        self._write(image_id, stage, data, kind, zchunks, ps, params, weights_sha256, compute_kw)

    def mark_incomplete(self, image_id: str, stage: str) -> None:
        """Clear a stage's completion mark (it will be recomputed); no-op if absent."""
        self._writable()
        _check_stage(stage)
        g = self._group(f"images/{_check_image_id(image_id)}/{stage}")
        if g is None:
            return
        import zarr

        g = zarr.open_group(store=self._root.store, path=f"images/{image_id}/{stage}", mode="r+", zarr_format=3)
        rec = dict(g.attrs.asdict().get("cathodeflow") or {})
        rec["complete"] = False
        g.attrs.put({"cathodeflow": rec})

    # ----------------------------------------------------------------- internals

    @staticmethod
    def _check_array(array, stage: str, kind: str | None, chunks):
        """Validate the data of a stage; returns (numpy-or-dask array, kind, zarr chunks)."""
        import dask.array as da

        is_dask = isinstance(array, da.Array)
        data = array if is_dask else np.asarray(array)
        want_ndim = 3 if stage == "prob" else 2
        if data.ndim != want_ndim:
            shape_txt = "(C, H, W)" if want_ndim == 3 else "(H, W)"
            raise InputError(f"array for stage {stage!r} must have shape {shape_txt}, got shape {tuple(data.shape)}")
        if any(not isinstance(s, (int, np.integer)) or s < 1 for s in data.shape):
            raise InputError(f"array for stage {stage!r} must be non-empty with known shape, got {tuple(data.shape)}")
        dt = np.dtype(data.dtype)
        if dt.kind not in "buif":
            raise InputError(f"array for stage {stage!r} must be numeric, got dtype {dt}")
        if kind is None:
            kind = "labels" if stage in LABEL_STAGES else "image"
        if kind not in ("image", "labels"):
            raise InputError(f"kind must be 'image' or 'labels', got {kind!r}")
        if stage in LABEL_STAGES and kind != "labels":
            raise InputError(f"stage {stage!r} holds labels; kind must be 'labels', got {kind!r}")
        if kind == "labels" and dt.kind not in "ui":
            raise InputError(f"label array for stage {stage!r} must have an integer dtype, got {dt}")
        if kind == "labels" and stage == "prob":
            raise InputError("stage 'prob' holds probabilities; kind must be 'image'")
        if dt.kind == "b":
            data = data.astype(np.uint8)
        shape = tuple(int(s) for s in data.shape)
        if chunks is None:
            if is_dask:
                zchunks = tuple(int(c) for c in data.chunksize)
            else:
                zchunks = tuple(min(DEFAULT_CHUNK_PX, s) for s in shape)
            if want_ndim == 3:
                zchunks = (shape[0],) + zchunks[1:]
        else:
            try:
                zchunks = tuple(int(c) for c in chunks)
            except (TypeError, ValueError):
                raise InputError(f"chunks must be a tuple of {want_ndim} positive ints, got {chunks!r}") from None
            if len(zchunks) != want_ndim or any(c < 1 for c in zchunks):
                raise InputError(f"chunks must be a tuple of {want_ndim} positive ints, got {chunks!r}")
            zchunks = tuple(min(c, s) for c, s in zip(zchunks, shape))
        return data, kind, zchunks

    def _label_source(self, image_id: str, stage: str, shape: tuple[int, ...]) -> dict | None:
        """NGFF image-label ``source``: the sr (else phase) group on the same grid."""
        import zarr

        up = "../../" if stage in LABEL_STAGES else "../"
        for cand in ("sr", "phase"):
            if cand == stage:
                continue
            try:
                arr = zarr.open_array(store=self._root.store, path=f"images/{image_id}/{cand}/0", mode="r", zarr_format=3)
            except Exception:
                continue
            if tuple(arr.shape[-2:]) == tuple(shape[-2:]):
                return {"image": up + cand}
        return None

    def _write(self, image_id, stage, data, kind, zchunks, ps, params, weights_sha256, compute_kw):
        import dask.array as da
        import zarr

        store = self._root.store
        gpath = f"images/{image_id}/{stage}"
        shape = tuple(int(s) for s in data.shape)
        dtype = np.dtype(data.dtype)
        record = {
            "stage": stage,
            "complete": False,
            "kind": kind,
            "pixel_size_um": ps,
            "shape": list(shape),
            "dtype": str(dtype),
            "chunks": list(zchunks),
            "params": params,
            "package_version": _package_version(),
            "weights_sha256": weights_sha256,
            "start_utc": _now(),
            "end_utc": None,
        }
        # 1. clear the completion mark (and the NGFF metadata) before touching any chunk
        grp = zarr.open_group(store=store, path=gpath, mode="a", zarr_format=3)
        grp.attrs.put({"cathodeflow": record})
        # 2. the array, then every chunk
        dims = ("c", "y", "x") if len(shape) == 3 else ("y", "x")
        arr = grp.create_array(
            "0", shape=shape, dtype=dtype, chunks=zchunks, dimension_names=dims, fill_value=0, overwrite=True
        )
        if isinstance(data, da.Array):
            da.store(data.rechunk(zchunks), arr, lock=False, **(compute_kw or {}))
        else:
            for sl in _chunk_slabs(shape, zchunks):
                arr[sl] = data[sl]
        # 3. metadata and completion mark, after the last chunk
        ome: dict[str, Any] = {"version": NGFF_VERSION, "multiscales": _ngff_multiscales(stage.split("/")[-1], len(shape), ps)}
        if kind == "labels":
            label: dict[str, Any] = {}
            src = self._label_source(image_id, stage, shape)
            if src is not None:
                label["source"] = src
            ome["image-label"] = label
        record.update(complete=True, end_utc=_now())
        grp.attrs.put({"ome": ome, "cathodeflow": record})
        if stage in LABEL_STAGES:
            self._register_label(image_id, stage.split("/", 1)[1])

    def _register_label(self, image_id: str, name: str) -> None:
        import zarr

        lg = zarr.open_group(store=self._root.store, path=f"images/{image_id}/labels", mode="a", zarr_format=3)
        ome = dict(lg.attrs.asdict().get("ome") or {})
        names = list(ome.get("labels") or [])
        if name not in names:
            names.append(name)
        lg.attrs.put({"ome": {"version": NGFF_VERSION, "labels": names}})


def _chunk_slabs(shape: tuple[int, ...], chunks: tuple[int, ...]):
    """Slices of rows of whole chunks (one chunk row at a time), for numpy writes."""
    step = chunks[-2]
    lead = (slice(None),) * (len(shape) - 2)
    for y0 in range(0, shape[-2], step):
        yield lead + (slice(y0, min(y0 + step, shape[-2])), slice(None))
