"""The study store (DESIGN §4.1, a contract): one Zarr v3 group per study, OME-Zarr 0.5 inside.

Layout (store version 2)::

    study.zarr/                        group; attrs {"ome": {"version": "0.5",
      │                                  "bioformats2raw.layout": 3},
      │                                  "cathodeflow": {"kind": "study", "version": 2, ...}}
      OME/                             group; attrs {"ome": {"version": "0.5",
      │                                  "series": ["images/<id>/raw", "images/<id>/sr", ...]}}
      images/                          plain group
        <image_id>/                    plain group; attrs {"cathodeflow": {"condition", "source", ...}}
          raw/                         NGFF image (as acquired, ~38.5 nm); array "0" (y, x)
          sr/                          NGFF image (~14.3 nm); array "0" (y, x)
            prob/                      NGFF image, not listed by sr: array "0" (c, y, x) float16
            labels/                    NGFF labels group; attrs {"ome": {"labels": [
              phase/                     "phase", "cracks", "particles"]}}: NGFF image-labels,
              cracks/                    array "0" (y, x) each, integer dtype,
              particles/                 "image-label": {"source": {"image": "../../"}}
      tables/                          group (zarr.json only) holding Parquet files, DESIGN §4.2

Stage names map to groups below ``images/<image_id>/`` in one place, :data:`STAGE_PATHS`
(``prob`` → ``sr/prob``, ``phase`` → ``sr/labels/phase``, ``labels/cracks`` →
``sr/labels/cracks``, ...); :meth:`Store.stage_path` gives a stage's path in the store.

How OME-Zarr readers find things. The root uses the bioformats2raw layout of NGFF 0.5
(§ "bf2raw"): ``"bioformats2raw.layout": 3`` in the root's ``ome`` attributes and the group
``OME`` whose ``series`` lists the path of every NGFF image in the store (``raw`` and ``sr`` of
each image, sorted by image id; kept current by :meth:`Store.add_image`,
:meth:`Store.write_stage` of ``raw``/``sr`` and :meth:`Store.remove_images`). The image group
``images/<id>`` itself is a plain Zarr group: a reader opens ``images/<id>/sr`` (or ``raw``)
as an image, and an image reader (``napari images/<id>/sr`` with napari-ome-zarr, or
``ome_zarr.reader.Reader``) finds the ``labels`` group inside it and shows ``phase``, ``cracks``
and ``particles`` as label layers over ``sr``; ``phase`` carries fixed colours (0 transparent,
1 grey, 2 red), cracks and particles none (the viewer's palette). ``sr/labels`` carries its
NGFF ``labels`` list from the first label write on (a label is listed once complete). The
U-net's ``prob`` is an image of its own inside ``sr``, not listed by it (NGFF 0.5 does not
forbid other groups in an image group; ome-zarr-models accepts it, readers ignore it): open
``images/<id>/sr/prob``. No ``OME/METADATA.ome.xml`` is written (a SHOULD of the layout).

Grids. Everything under ``sr`` has its own ``multiscales`` scale (the pixel size in µm of its
own grid). When the U-net resamples an image whose pixel size is far from its own, ``prob``,
``phase`` and the label images are on the U-net's grid, not ``sr``'s: they stay under ``sr``
with their own scale, so a viewer that applies the scale (napari) still aligns them
physically; their shape then differs from ``sr``'s. A phase map added with
:meth:`Store.add_image` (``stage="phase"``, no ``sr``) lives in ``sr/labels`` of an ``sr``
group that holds no image (not listed in ``OME/series``).

Each stage group's attributes hold
``{"ome": {"version": "0.5", "multiscales": [...], ["image-label": {...}]},
"cathodeflow": {"complete", "stage", "kind", "pixel_size_um", "shape", "dtype", "chunks",
"params", "package_version", "weights_sha256", "start_utc", "end_utc"}}``. Axes are
``y, x`` (``c, y, x`` for ``prob``) with unit ``micrometer``; the scale is the pixel size in
µm. The record sits on the stage's own group, so writing one stage never rewrites another
stage's attributes (the ``sr`` group's attributes are ``sr``'s alone; its children keep
theirs).

Completion: :meth:`Store.write_stage` first replaces the stage's attributes with
``complete: false`` (the "ome" metadata goes too, so no reader sees a half-written image),
then writes every chunk, then writes the metadata with ``complete: true``. A stage whose
write was interrupted therefore reads as incomplete; :meth:`Store.read_stage` refuses it and
the pipeline recomputes it.

Chunk-level resume: a write with ``resume=True`` (:meth:`Store.write_stage`) also keeps the
array ``chunks_done`` (:data:`CHUNK_MARKS`) in the stage's group while it runs: one element
per chunk of ``0`` (shape: the chunk grid), each its own one-element Zarr chunk, set to 1
right after that chunk of ``0`` is written (one object written whole, so the mark is atomic
and concurrent tasks never rewrite each other's marks). A later ``resume=True`` write whose
record equals the interrupted one in :data:`RESUME_KEYS` keeps ``0`` and writes only the
chunks not marked; any other write, and :meth:`Store.mark_incomplete`, drops the marks (the
stage is then rewritten whole). The marks go once the completion mark is written.

Location. A store is a local folder or lives at an fsspec URL (``s3://bucket/study.zarr``):
:func:`open_store` and :func:`create_store` take either (:mod:`cathodeflow.io.location`; a
URL's Zarr store is a ``zarr.storage.FsspecStore``, :attr:`Store.path` a
:class:`~cathodeflow.io.location.RemotePath`). A URL that cannot be reached (no credentials,
a missing bucket) is refused with one line before anything is written.

Versions. Version 1 (the first layout) kept every stage as a sibling
(``images/<id>/{raw,sr,prob,phase}``, ``images/<id>/labels/{cracks,particles}``) and had no
root listing. :func:`open_store` refuses it with the command that converts it,
``cathodeflow migrate STORE`` (:func:`migrate_store`): the groups are moved (directory
renames), their metadata rewritten, and the version bumped last, so an interrupted
migration leaves a version-1 store that the same command finishes.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, StoreError, one_line
from .location import RemotePath, as_path, check_reachable, zarr_store

__all__ = [
    "Store",
    "check_image_id",
    "create_store",
    "open_store",
    "migrate_store",
    "STAGES",
    "IMAGE_STAGES",
    "LABEL_STAGES",
    "STAGE_PATHS",
    "STORE_VERSION",
    "CHUNK_MARKS",
    "RESUME_KEYS",
]

#: Version of the store layout written by this module.
STORE_VERSION = 2
#: Stages holding NGFF images (``prob`` has a leading channel axis).
IMAGE_STAGES = ("raw", "sr", "prob")
#: Stages holding NGFF label images (integer values, 0 = background), in ``sr/labels``.
LABEL_STAGES = ("phase", "labels/cracks", "labels/particles")
#: Every stage name a store accepts.
STAGES = ("raw", "sr", "prob", "phase", "labels/cracks", "labels/particles")
#: Where each stage lives below ``images/<image_id>/``: the one map from names to paths.
STAGE_PATHS = {
    "raw": "raw",
    "sr": "sr",
    "prob": "sr/prob",
    "phase": "sr/labels/phase",
    "labels/cracks": "sr/labels/cracks",
    "labels/particles": "sr/labels/particles",
}
#: Stages that are top-level NGFF images, listed in the root's ``OME/series``.
SERIES_STAGES = ("raw", "sr")
#: The NGFF labels group below ``images/<image_id>/`` (parent of the label stages).
LABELS_GROUP = "sr/labels"
#: ``image-label`` colours of the phase map (RGBA, 0-255): background transparent, solid
#: grey, crack red. Crack and particle labels get none (a viewer's own palette).
PHASE_COLORS = (
    {"label-value": 0, "rgba": [0, 0, 0, 0]},
    {"label-value": 1, "rgba": [128, 128, 128, 255]},
    {"label-value": 2, "rgba": [255, 0, 0, 255]},
)
#: Array beside a stage's ``0`` marking its written chunks during a resumable write (module
#: docstring, "Chunk-level resume"); absent once the stage is complete.
CHUNK_MARKS = "chunks_done"
#: Fields of a stage record that must equal those of an interrupted write for its written
#: chunks to be kept by a resumed one.
RESUME_KEYS = ("stage", "kind", "pixel_size_um", "shape", "dtype", "chunks", "params", "weights_sha256")
#: Default chunk edge (px) of stored arrays when neither the caller nor a Dask input gives one.
DEFAULT_CHUNK_PX = 1024
NGFF_VERSION = "0.5"

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_STUDY_MARK = {"kind": "study", "version": STORE_VERSION}
#: Serialises read-modify-write of ``OME/series`` between the threads of one process (the
#: pipeline writes several images at once; one writer process per store, see io/lock.py).
_SERIES_LOCK = threading.Lock()


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


def check_image_id(image_id: Any) -> str:
    """``image_id`` if it is a safe image id (the name of its group), else InputError.

    Safe: 1-128 characters from letters, digits, ``.``, ``_``, ``-``, starting with a letter
    or digit (so an id is a valid file and Zarr node name everywhere).
    """
    return _check_image_id(image_id)


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


def _label_name(stage: str) -> str:
    """Name of a label stage's group inside ``sr/labels`` (``labels/cracks`` → ``cracks``)."""
    return STAGE_PATHS[stage].rsplit("/", 1)[1]


def _stage_ome(stage: str, shape, pixel_size_um: float) -> dict:
    """The ``ome`` attributes of a complete stage: NGFF 0.5 image, or image-label whose
    source is ``sr`` (``../../`` from ``sr/labels/<name>``)."""
    ome: dict[str, Any] = {
        "version": NGFF_VERSION,
        "multiscales": _ngff_multiscales(stage.split("/")[-1], len(shape), pixel_size_um),
    }
    if stage in LABEL_STAGES:
        label: dict[str, Any] = {"source": {"image": "../../"}}
        if stage == "phase":
            label["colors"] = [dict(c) for c in PHASE_COLORS]
        ome["image-label"] = label
    return ome


def _labels_ome(names) -> dict:
    """The ``ome`` attributes of ``sr/labels``: ``names`` in the order of :data:`LABEL_STAGES`."""
    order = [_label_name(s) for s in LABEL_STAGES]
    return {"version": NGFF_VERSION, "labels": [n for n in order if n in set(names)]}


#: The root's ``ome`` attributes: an NGFF 0.5 bioformats2raw-layout collection.
_ROOT_OME = {"version": NGFF_VERSION, "bioformats2raw.layout": 3}


def _series_ome(series: list[str]) -> dict:
    """The ``ome`` attributes of the ``OME`` group: the image paths, sorted."""
    return {"version": NGFF_VERSION, "series": sorted(series, key=_series_key)}


def _series_key(path: str):
    """Sort key of an ``OME/series`` entry ``images/<id>/<raw|sr>``: by id, raw before sr."""
    _, iid, grid = (path.split("/", 2) + ["", ""])[:3]
    return (iid, SERIES_STAGES.index(grid) if grid in SERIES_STAGES else len(SERIES_STAGES), grid)


def _rel(image_id: str, stage: str) -> str:
    """A stage's group path relative to the store root (ids and stage already checked)."""
    return f"images/{image_id}/{STAGE_PATHS[stage]}"


def _read_zarr_json(path: Path) -> dict | None:
    try:
        return json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise StoreError(one_line(f"{path}: unreadable zarr.json ({type(e).__name__}: {e})")) from None


def _study_version(path: Path) -> Any:
    """The layout version of the cathodeflow study store at ``path`` (any version);
    StoreError (one line) for anything that is not a study store (or an object store that
    cannot be reached)."""
    check_reachable(path)
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
    return cf.get("version")


def _identify(path: Path) -> str:
    """Raise StoreError unless ``path`` is a study store of :data:`STORE_VERSION`; return 'study'."""
    version = _study_version(path)
    if version == 1:
        raise StoreError(
            f"{path}: a study store of layout version 1 (before OME-Zarr labels inside sr); "
            f"convert it in place with `cathodeflow migrate {path}`"
        )
    if version != STORE_VERSION:
        raise StoreError(
            f"{path}: study store version {version!r}; this cathodeflow reads version {STORE_VERSION} "
            "(a newer cathodeflow wrote it?)"
        )
    return "study"


def create_store(path: str | Path, *, exist_ok: bool = False, storage_options: dict | None = None) -> "Store":
    """Create a study store at ``path`` (a new or empty directory) and open it read-write.

    Parameters
    ----------
    path : str or Path
        A local folder, or an fsspec URL (``s3://bucket/study.zarr``) in an existing bucket
        (:mod:`cathodeflow.io.location`).
    exist_ok : bool
        If ``path`` already is a study store, open it instead of failing.
    storage_options : dict, optional
        Options of a URL's fsspec filesystem (default: the environment's configuration).

    Raises
    ------
    StoreError
        ``path`` is a file, a non-empty directory that is not a study store, a Zarr store of
        another kind, or (without ``exist_ok``) an existing study store; an object store
        that cannot be reached (credentials, missing bucket). Nothing is written.
    """
    import zarr

    p = _absolute(as_path(path, storage_options=storage_options))
    check_reachable(p)
    if p.exists():
        if not p.is_dir():
            raise StoreError(f"{p}: is a file; cannot create a study store there")
        if any(p.iterdir()):
            _identify(p)  # raises for anything that is not a study store
            if not exist_ok:
                raise StoreError(f"{p}: already a study store; open it with open_store (or pass exist_ok=True)")
            return open_store(p, mode="r+")
    p.mkdir(parents=True, exist_ok=True)
    try:
        root = zarr.create_group(zarr_store(p, read_only=False), zarr_format=3, overwrite=False)
    except PermissionError as e:  # an object store readable but not writable with these credentials
        if not isinstance(p, RemotePath):
            raise
        raise StoreError(one_line(f"STORE {p}: cannot write there (PermissionError: {e}); expected credentials "
                                  "that may write to the bucket")) from None
    root.create_group("OME", attributes={"ome": _series_ome([])})
    root.create_group("images")
    root.create_group(
        "tables",
        attributes={"cathodeflow": {"kind": "tables", "note": "Parquet tables (DESIGN §4.2), plain files"}},
    )
    # the study mark last: a creation cut short is not mistaken for a study
    root.attrs.put({
        "ome": _ROOT_OME,
        "cathodeflow": dict(_STUDY_MARK, created_utc=_now(), created_by=_package_version()),
    })
    return Store(p, root, "r+")


def _absolute(p):
    """A local path made absolute (tasks open the store by it, maybe in another working
    directory); a URL as it is."""
    return p if isinstance(p, RemotePath) else Path(p).absolute()


def open_store(path: str | Path, mode: str = "r+", *, storage_options: dict | None = None) -> "Store":
    """Open an existing study store.

    Parameters
    ----------
    path : str or Path
        A local folder, or an fsspec URL (``s3://bucket/study.zarr``;
        :mod:`cathodeflow.io.location`).
    mode : {'r', 'r+'}
        Read-only or read-write.
    storage_options : dict, optional
        Options of a URL's fsspec filesystem (default: the environment's configuration).

    Raises
    ------
    StoreError
        Missing path, a file, a non-Zarr directory, a Zarr store of another kind or version;
        an object store that cannot be reached (credentials, missing bucket). The path is
        only read to decide, never written.
    """
    import zarr

    if mode not in ("r", "r+"):
        raise InputError(f"mode must be 'r' or 'r+', got {mode!r}")
    p = _absolute(as_path(path, storage_options=storage_options))
    _identify(p)
    root = zarr.open_group(zarr_store(p, read_only=mode == "r"), mode=mode, zarr_format=3)
    return Store(p, root, mode)


class Store:
    """A study store opened by :func:`open_store` or :func:`create_store`.

    Attributes
    ----------
    path : Path or RemotePath
        The store's directory, or its URL's key prefix (:mod:`cathodeflow.io.location`).
    mode : {'r', 'r+'}
    """

    def __init__(self, path: Path, root, mode: str):
        self.path = path if isinstance(path, RemotePath) else Path(path)
        self.mode = mode
        self._root = root

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, mode={self.mode!r})"

    # ----------------------------------------------------------------- navigation

    @property
    def tables_dir(self) -> Path:
        """``<store>/tables``: the folder for Parquet tables (created with the store); a
        :class:`~cathodeflow.io.location.RemotePath` for a store at a URL."""
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

    def stage_path(self, image_id: str, stage: str) -> str:
        """Path of a stage's NGFF group relative to the store root (its array is ``<path>/0``),
        e.g. ``images/<image_id>/sr/labels/phase``; whether or not it exists."""
        return _rel(_check_image_id(image_id), _check_stage(stage))

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
        g = self._group(self.stage_path(image_id, stage))
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
            arr = zarr.open_array(store=self._root.store, path=f"{_rel(image_id, stage)}/0", mode="r", zarr_format=3)
        except Exception:  # missing or unreadable array: not complete
            return False
        return list(arr.shape) == list(rec.get("shape", []))

    def stage_status(self, image_id: str, stage: str) -> str:
        """``'complete'``, ``'incomplete'`` (written without its completion mark: interrupted,
        or marked for recomputation) or ``'absent'`` (never written)."""
        if self.stage_info(image_id, stage) is None:
            return "absent"
        return "complete" if self.is_complete(image_id, stage) else "incomplete"

    def chunks_written(self, image_id: str, stage: str) -> tuple[int, int] | None:
        """(chunks marked written, chunks in all) of an interrupted resumable write of the
        stage (module docstring, "Chunk-level resume"); None when it has no chunk marks
        (complete, absent, or written without ``resume``)."""
        g = self._group(self.stage_path(image_id, stage))
        if g is None or CHUNK_MARKS not in g:
            return None
        marks = np.asarray(g[CHUNK_MARKS][...])
        return int(np.count_nonzero(marks)), int(marks.size)

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

        _check_seen(self._root.store, "")  # in a Dask task: not a store of another machine's disk
        self._complete_record(image_id, _check_stage(stage))
        arr = zarr.open_array(store=self._root.store, path=f"{_rel(image_id, stage)}/0", mode="r", zarr_format=3)
        return da.from_array(_SeenArray(arr), chunks=arr.chunks)

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
            self._update_series(drop=[image_id])  # unlisted before its groups go
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
        resume: bool = False,
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
            Follows from the stage (checked when given): 'labels' for :data:`LABEL_STAGES`
            (``phase``, ``labels/*``: integer dtype, NGFF ``image-label`` metadata, listed in
            ``sr/labels``), 'image' for :data:`IMAGE_STAGES`.
        chunks : tuple of int, optional
            Stored chunk shape; default: the Dask array's chunk size, else 1024 px squares
            (all channels of ``prob`` in one chunk).
        weights_sha256 : str, optional
            SHA-256 of the model weights used (SR, U-net).
        compute_kw : dict, optional
            Passed to ``dask.compute`` / ``dask.array.store`` (e.g. ``{"scheduler": client}``).
        resume : bool
            Mark every chunk once written (array :data:`CHUNK_MARKS`), and resume an
            interrupted write: when the stage's record equals this write's in
            :data:`RESUME_KEYS`, the chunks it marked are kept and only the others are
            computed and written (the record keeps its ``start_utc`` and gets
            ``resumed_utc`` and ``chunks_kept``); a stage already complete with an equal
            record is left as it is. Otherwise the stage is written whole.

        Raises
        ------
        InputError
            Invalid argument; nothing is written.
        StoreError
            Read-only store or unknown image.

        Notes
        -----
        The completion mark is cleared before the first chunk is written and set after the
        last, so an exception (or a killed process) leaves the stage incomplete; with
        ``resume``, the chunks written up to then stay marked.
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
        self._write(image_id, stage, data, kind, zchunks, ps, params, weights_sha256, compute_kw, resume=bool(resume))

    def remove_images(self, image_ids) -> list[str]:
        """Remove images (their groups, every stage) from the store, all or nothing.

        Parameters
        ----------
        image_ids : sequence of str
            Ids of images in the store; repeats are removed once.

        Returns
        -------
        list of str
            The removed ids, in the order given.

        Raises
        ------
        InputError
            No ids, or an id that is not in the store (all such ids named); nothing is removed.
        StoreError
            Read-only store.

        Notes
        -----
        Only the ``images/<id>`` groups are removed (after their entries in the root's
        ``OME/series``); files that other layers keep beside the images (tables under
        :attr:`tables_dir`) are theirs to update.
        """
        import zarr

        self._writable()
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            raise InputError(f"{self.path}: no image ids given to remove")
        held = set(self.image_ids())
        unknown = [i for i in ids if not (isinstance(i, str) and i in held)]
        if unknown:
            listed = ", ".join(repr(i) for i in unknown)
            raise InputError(
                f"{self.path}: no image {listed} in the store (it holds {len(held)}: "
                f"{_shorten(sorted(held))}); nothing was removed"
            )
        self._update_series(drop=ids)  # unlisted before their groups go
        images = zarr.open_group(store=self._root.store, path="images", mode="r+", zarr_format=3)
        for iid in ids:
            del images[iid]
        return ids

    def mark_incomplete(self, image_id: str, stage: str) -> None:
        """Clear a stage's completion mark and its chunk marks (it will be recomputed whole,
        not resumed); no-op if absent."""
        self._writable()
        rel = self.stage_path(image_id, stage)
        if self._group(rel) is None:
            return
        import zarr

        g = zarr.open_group(store=self._root.store, path=rel, mode="r+", zarr_format=3)
        rec = dict(g.attrs.asdict().get("cathodeflow") or {})
        rec["complete"] = False
        g.attrs.put({"cathodeflow": rec})
        _drop_marks(g)

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
            raise InputError(f"stage {stage!r} is an NGFF label image (in sr/labels); kind must be 'labels', got {kind!r}")
        if stage in IMAGE_STAGES and kind != "image":
            raise InputError(f"stage {stage!r} is an NGFF image; kind must be 'image', got {kind!r}")
        if kind == "labels" and dt.kind not in "ui":
            raise InputError(f"label array for stage {stage!r} must have an integer dtype, got {dt}")
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

    def _write(self, image_id, stage, data, kind, zchunks, ps, params, weights_sha256, compute_kw, resume=False):
        import dask.array as da
        import zarr

        store = self._root.store
        gpath = _rel(image_id, stage)
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
        if stage in LABEL_STAGES:
            self._register_label(image_id)  # sr/labels is an NGFF labels group from the start
        grp = zarr.open_group(store=store, path=gpath, mode="a", zarr_format=3)
        old = grp.attrs.asdict().get("cathodeflow")
        arr, marks = _resumable(grp, record, old) if resume else (None, None)
        if arr is not None and marks is None:  # complete, with this record: nothing to write
            self._list_stage(image_id, stage)
            return
        done = None
        if arr is None:  # 2. a new array (and new chunk marks), then every chunk
            _drop_marks(grp)  # before the new record: no marks of another write may sit under it
            grp.attrs.put({"cathodeflow": record})
            dims = ("c", "y", "x") if len(shape) == 3 else ("y", "x")
            arr = grp.create_array(
                "0", shape=shape, dtype=dtype, chunks=zchunks, dimension_names=dims, fill_value=0, overwrite=True
            )
            if resume:
                grid = tuple(-(-s // c) for s, c in zip(shape, zchunks))
                marks = grp.create_array(CHUNK_MARKS, shape=grid, dtype=np.uint8, chunks=(1,) * len(grid),
                                         fill_value=0, overwrite=True)
                done = np.zeros(grid, bool)
        else:  # 2'. the interrupted write's array, then the chunks it did not mark
            done = np.asarray(marks[...]) != 0
            record.update(start_utc=old.get("start_utc"), resumed_utc=_now(), chunks_kept=int(done.sum()))
            grp.attrs.put({"cathodeflow": record})
        if marks is not None:
            _write_marked(data, arr, marks, done, compute_kw)
        elif isinstance(data, da.Array):
            da.store(data.rechunk(zchunks), _SeenArray(arr), lock=False, **(compute_kw or {}))
        else:
            for sl in _chunk_slabs(shape, zchunks):
                arr[sl] = data[sl]
        # 3. metadata and completion mark, after the last chunk; then the listings
        record.update(complete=True, end_utc=_now())
        grp.attrs.put({"ome": _stage_ome(stage, shape, ps), "cathodeflow": record})
        _drop_marks(grp)
        self._list_stage(image_id, stage)

    def _list_stage(self, image_id: str, stage: str) -> None:
        """List a complete stage where readers look: ``sr/labels`` for a label image, the
        root's ``OME/series`` for ``raw`` and ``sr``."""
        if stage in LABEL_STAGES:
            self._register_label(image_id, _label_name(stage))
        if stage in SERIES_STAGES:
            self._update_series(add=[_rel(image_id, stage)])

    def _register_label(self, image_id: str, name: str | None = None) -> None:
        """List ``name`` (None: none) in the image's ``sr/labels`` group, created if missing
        and always carrying its NGFF ``labels`` metadata (an empty list at first)."""
        import zarr

        lg = zarr.open_group(store=self._root.store, path=f"images/{image_id}/{LABELS_GROUP}", mode="a", zarr_format=3)
        ome = lg.attrs.asdict().get("ome")
        names = list((ome or {}).get("labels") or [])
        new = _labels_ome(names + ([name] if name else []))
        if new != ome:
            lg.attrs.put({"ome": new})

    def _update_series(self, *, add=(), drop=()) -> None:
        """Add image paths to, and drop every path of the images ``drop`` from, ``OME/series``."""
        import zarr

        with _SERIES_LOCK:
            g = zarr.open_group(store=self._root.store, path="OME", mode="a", zarr_format=3)
            old = list((g.attrs.asdict().get("ome") or {}).get("series") or [])
            gone = set(drop)
            series = [p for p in old if _series_key(p)[0] not in gone]
            series += [p for p in add if p not in series]
            new = _series_ome(series)
            if new["series"] != old:
                g.attrs.put({"ome": new})


# --------------------------------------------------------------------------- migration


def migrate_store(path: str | Path) -> dict:
    """Convert a study store of layout version 1 into the current layout, in place.

    Parameters
    ----------
    path : str or Path
        A local study store (a folder; a store at a URL is refused: migrate a local copy).

    Returns
    -------
    dict
        ``{"from_version": int, "to_version": int, "images": int, "moved": int,
        "recompute": [str]}``: the version found, the number of images, of groups moved,
        and the stages (``"<image_id>: <stage>"``) that cannot be label images (a phase map
        of non-integer dtype) and were marked for recomputation. A store already of
        :data:`STORE_VERSION` is left untouched (``moved`` 0).

    Raises
    ------
    StoreError
        Not a study store, an unknown version, an image group holding something else where
        a stage must go (nothing is moved then), or another process holds the store's lock.

    Notes
    -----
    Under the store's writer lock (``cathodeflow.lock``): (1) every image is checked before
    anything is written; (2) the groups move by directory renames: ``prob`` → ``sr/prob``,
    ``phase`` → ``sr/labels/phase``, ``labels/{cracks,particles}`` →
    ``sr/labels/{cracks,particles}``, and the old ``labels`` group goes; (3) the metadata
    is rewritten from each stage's record (image-label source ``../../``, phase colours,
    ``sr/labels`` listing); (4) the root gets the ``OME/series`` listing; (5) the version is
    bumped last. Provenance (parameters, times) is kept, so tables stay current. Every step
    is idempotent: an interrupted migration leaves a version-1 store, which
    :func:`open_store` refuses and which running this again finishes.
    """
    import zarr

    from .lock import store_lock

    p = as_path(path)
    if isinstance(p, RemotePath):
        raise StoreError(f"STORE {p}: migrate works on local stores only (it renames folders); expected a local "
                         "path: copy the store to a local folder, migrate it there and copy it back")
    version = _study_version(p)
    if version not in (1, STORE_VERSION):
        raise StoreError(f"{p}: study store version {version!r}; cathodeflow migrates version 1 only")
    if version == STORE_VERSION:
        n = len(open_store(p, mode="r").image_ids())
        return {"from_version": version, "to_version": STORE_VERSION, "images": n, "moved": 0, "recompute": []}
    with store_lock(p, command="cathodeflow migrate"):
        images_dir = p / "images"
        ids = sorted(d.name for d in images_dir.iterdir() if (d / "zarr.json").exists()) if images_dir.is_dir() else []
        # 1. check every image before moving anything
        moves = []
        for iid in ids:
            base = images_dir / iid
            for stage in STAGES:
                src, dst = base / stage, base / STAGE_PATHS[stage]
                if src == dst or not src.exists():
                    continue
                if dst.exists():
                    raise StoreError(one_line(
                        f"{p}: image {iid!r} holds stage {stage!r} both at {stage} (version 1) and at "
                        f"{STAGE_PATHS[stage]} (version 2); remove one and run `cathodeflow migrate {p}` again"))
                moves.append((src, dst))
            old_labels = base / "labels"
            extra = sorted(set(os.listdir(old_labels)) - {"zarr.json", "cracks", "particles"}) if old_labels.is_dir() else []
            if extra:
                raise StoreError(one_line(
                    f"{old_labels}: holds {', '.join(extra)} besides cracks and particles; expected only "
                    "those in a version-1 store; move them away and run the migration again"))
        root = zarr.open_group(str(p), mode="r+", zarr_format=3)

        def group(rel: str, *, create: bool = False):
            try:
                return zarr.open_group(store=root.store, path=rel, mode="a" if create else "r+", zarr_format=3)
            except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
                return None

        # 2. move the groups
        for src, dst in moves:
            group(str(dst.parent.relative_to(p)), create=True)  # sr and sr/labels (plain until written)
            os.rename(src, dst)
        for iid in ids:
            old_labels = images_dir / iid / "labels"
            if old_labels.is_dir() and set(os.listdir(old_labels)) <= {"zarr.json"}:
                (old_labels / "zarr.json").unlink(missing_ok=True)
                old_labels.rmdir()
        # 3. metadata of every stage, from its record
        recompute, series = [], []
        for iid in ids:
            names = []
            for stage in STAGES:
                g = group(_rel(iid, stage))
                attrs = g.attrs.asdict() if g is not None else {}
                rec = attrs.get("cathodeflow")
                if not isinstance(rec, dict):
                    continue
                rec = dict(rec, kind="labels" if stage in LABEL_STAGES else "image")
                bad = stage in LABEL_STAGES and np.dtype(rec.get("dtype", "float64")).kind not in "ui"
                if bad:  # a v1 phase map written as a float image: not a label image, recompute
                    rec["complete"] = False
                    recompute.append(f"{iid}: {stage}")
                if stage in LABEL_STAGES and not bad:  # listed again when recomputed
                    names.append(_label_name(stage))
                new = {k: v for k, v in attrs.items() if k != "ome"}
                new["cathodeflow"] = rec
                if not bad and (rec.get("complete") is True or "ome" in attrs):
                    new["ome"] = _stage_ome(stage, rec["shape"], float(rec["pixel_size_um"]))
                if new != attrs:
                    g.attrs.put(new)
                if stage in SERIES_STAGES:
                    series.append(_rel(iid, stage))
            labels = group(f"images/{iid}/{LABELS_GROUP}")
            if labels is not None:
                labels.attrs.put({"ome": _labels_ome(names)})
        # 4. the root's listing
        group("OME", create=True).attrs.put({"ome": _series_ome(series)})
        attrs = root.attrs.asdict()
        root.attrs.put({**attrs, "ome": _ROOT_OME})
        # 5. the version, last
        mark = dict(attrs["cathodeflow"], version=STORE_VERSION, migrated_from=1, migrated_utc=_now())
        root.attrs.put({**attrs, "ome": _ROOT_OME, "cathodeflow": mark})
    return {"from_version": 1, "to_version": STORE_VERSION, "images": len(ids), "moved": len(moves),
            "recompute": recompute}


def _shorten(names: list[str], n: int = 8) -> str:
    """``a, b, c, … (+k more)``: a list for a one-line message."""
    if not names:
        return "none"
    more = f", … (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _drop_marks(grp) -> None:
    """Remove the chunk marks (:data:`CHUNK_MARKS`) of a stage's group, if any."""
    if CHUNK_MARKS in grp:
        del grp[CHUNK_MARKS]


def _resumable(grp, record: dict, old) -> tuple:
    """What a ``resume`` write of ``record`` keeps of the stage group ``grp``, whose record
    is ``old``: ``(array 0, None)`` when the stage is complete with a record equal in
    :data:`RESUME_KEYS`; ``(array 0, chunk marks)`` when an interrupted write of such a
    record left its marks; else ``(None, None)`` (write it whole)."""
    import zarr

    if not isinstance(old, dict) or any(old.get(k) != record[k] for k in RESUME_KEYS):
        return None, None
    try:
        arr = grp["0"]
        marks = grp[CHUNK_MARKS] if old.get("complete") is not True else None
    except KeyError:
        return None, None
    if not isinstance(arr, zarr.Array) or (list(arr.shape), list(arr.chunks), str(arr.dtype)) != (
            record["shape"], record["chunks"], record["dtype"]):
        return None, None
    if marks is None:
        return arr, None
    grid = [-(-s // c) for s, c in zip(record["shape"], record["chunks"])]
    if not isinstance(marks, zarr.Array) or list(marks.shape) != grid:
        return None, None
    return arr, marks


# The processes that read and write a store's chunks must see its folder: a Dask worker on
# another machine would read every chunk as missing, i.e. zeros, and write the chunks to its
# own disk. `run` checks its workers before it starts (study.cluster.check_store_shared);
# these checks, in the tasks themselves, also cover workers that join later and callers of
# the Python API.
_SEEN: set[tuple[str, str]] = set()


def _check_seen(store, path: str) -> None:
    """Refuse (StoreError) to read or write the Zarr node (group or array) at ``path`` of
    ``store``, a store in a local folder, from a process in which that folder does not hold
    it (no ``zarr.json`` there). Checked once per node and process; a store at a URL looks
    the same from everywhere. (The worker is found here, not with tiling's
    ``current_worker``: io sits below tiling.)"""
    import zarr

    if not isinstance(store, zarr.storage.LocalStore):
        return
    key = (str(store.root), path)
    if key in _SEEN:
        return
    if not os.path.isfile(os.path.join(store.root, path, "zarr.json")):
        try:
            from distributed import get_worker

            where = f"the Dask worker {get_worker().address}"
        except (ImportError, ValueError):
            import socket

            where = f"this process (host {socket.gethostname()})"
        root = str(store.root).removesuffix(os.sep)
        raise StoreError(f"{root}: {where} does not see the store folder (on another machine's disk?): it would "
                         f"read {path or 'it'} as empty and write its chunks to its own disk; give a store folder every "
                         "worker mounts at the same path, or an s3:// URL")
    _SEEN.add(key)


class _SeenArray:
    """A stage's Zarr array as Dask tasks read and write it: :func:`_check_seen` of it first."""

    def __init__(self, arr):
        self.arr = arr
        self.shape, self.dtype, self.ndim, self.chunks = arr.shape, arr.dtype, arr.ndim, arr.chunks

    def __getitem__(self, key):
        _check_seen(self.arr.store, self.arr.path)
        return self.arr[key]

    def __setitem__(self, key, value) -> None:
        _check_seen(self.arr.store, self.arr.path)
        self.arr[key] = value

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("cathodeflow-stage-array", tokenize(self.arr))


def _write_chunk(arr, marks, region: tuple, index: tuple, block) -> None:
    """One chunk of ``arr`` at ``region``, then its mark at ``index`` (chunk-grid index)."""
    _check_seen(arr.store, arr.path)
    arr[region] = block
    marks[index] = 1


def _write_marked(data, arr, marks, done: np.ndarray, compute_kw) -> None:
    """Compute and write the chunks of ``data`` (numpy or Dask; shape of ``arr``) that
    ``done`` (bool, shape: the chunk grid of ``arr``) does not hold, each followed by its
    mark in ``marks``; a Dask graph is culled to those chunks, so the others are neither
    computed nor written."""
    import dask
    import dask.array as da

    zchunks = arr.chunks
    lazy = isinstance(data, da.Array)
    blocks = data.rechunk(zchunks).to_delayed() if lazy else None
    tasks = []
    for index in np.ndindex(*done.shape):
        if done[index]:
            continue
        region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, zchunks, arr.shape))
        if lazy:
            tasks.append(dask.delayed(_write_chunk, pure=False)(arr, marks, region, index, blocks[index]))
        else:
            _write_chunk(arr, marks, region, index, data[region])
    if tasks:
        dask.compute(*tasks, **(compute_kw or {}))


def _chunk_slabs(shape: tuple[int, ...], chunks: tuple[int, ...]):
    """Slices of rows of whole chunks (one chunk row at a time), for numpy writes."""
    step = chunks[-2]
    lead = (slice(None),) * (len(shape) - 2)
    for y0 in range(0, shape[-2], step):
        yield lead + (slice(y0, min(y0 + step, shape[-2])), slice(None))
