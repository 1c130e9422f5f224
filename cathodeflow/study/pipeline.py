"""The pipeline over a study store (DESIGN §2): ingest → sr → phase → labels → tables.

Each stage reads its input from the store and writes its output there; a stage is complete
only when its completion mark is written after all chunks, so an interrupted run resumes
where it stopped and recomputes only incomplete stages. Inside the chunked array stages
(:data:`RESUMABLE`: ``sr``, ``prob`` and ``phase``) it resumes chunk by chunk: every chunk
is marked in the store once written (:meth:`cathodeflow.io.store.Store.write_stage` with
``resume``), and the next run computes only the chunks not marked, as long as the stage
is recomputed only because it is incomplete (not for ``--from``, other parameters or a
recomputed earlier stage: then it is written whole).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..config import Params
from ..errors import CathodeflowError, InputError, one_line

STAGES = ("sr", "phase", "labels", "tables")
#: Stages resumed chunk by chunk: each chunk of their arrays is written by one task, which
#: the graph can be culled to (``labels`` is not: its label arrays are written from scratch
#: files once the whole image is segmented, and its per-image rows need all of it).
RESUMABLE = ("sr", "phase")


#: Smallest image side ingest accepts, px: a smaller image is a thumbnail or a wrong file,
#: not a cross-section (one particle of the paper, 2·r50 = 9.3 µm, spans ~240 px at 38.5 nm).
MIN_SIDE_PX = 32
#: Most pixels ingest accepts per image (a 46 341 × 46 341 frame): the super-resolved grid
#: has (35/13)² ≈ 7.2 times as many, and its 3-channel float16 ``prob`` stage ~43 bytes per
#: input pixel, ~93 GB here; larger mosaics must be cut into tiles first.
MAX_PIXELS = 2**31
#: Columns of an ingest manifest (CSV): required, then optional.
MANIFEST_REQUIRED = ("file", "condition")
MANIFEST_OPTIONAL = ("pixel_size_um", "image_id", "frame_mask")


@dataclass(frozen=True)
class _Entry:
    """One image to ingest; ``where`` names it in errors (``None``: the file names itself)."""

    file: Path
    condition: object
    pixel_size_um: float | None
    image_id: str | None
    where: str | None = None
    frame_mask: Path | None = None


def _per_file(value, n: int, name: str) -> list:
    """``value`` repeated for ``n`` files, or the sequence itself when it has one per file."""
    if value is None or isinstance(value, (str, int, float)):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise InputError(f"{name}: {len(values)} values given for {n} files; expected one value or one per file")
    return values


def ingest(files, *, store, condition, pixel_size_um=None, crop_databar=True, image_ids=None,
           frame_masks=None) -> list[str]:
    """Read SEM files (pixel size from vendor metadata or ``pixel_size_um``) into the store.

    Parameters
    ----------
    files : sequence of str or Path
        SEM images (TIFF, PNG, …; see :func:`cathodeflow.io.sem.read_sem`); a TIFF larger than
        :data:`cathodeflow.io.mosaic.LAZY_MIN_PIXELS` is read lazily and a ``.csv`` is a tile
        grid (:func:`cathodeflow.io.mosaic.read_tile_grid`), both written chunk by chunk.
    store : str or Path
        The study store; created if the path does not exist.
    condition : str or sequence of str
        Condition label of all files, or one per file.
    pixel_size_um : float or sequence of (float or None), optional
        Pixel size in µm overriding the files' metadata (``None``: from the metadata), for
        all files or one per file.
    crop_databar : bool
        Remove the microscope's data bar.
    image_ids : sequence of (str or None), optional
        Image id per file; ``None`` (default) takes the file name without its extension.
    frame_masks : sequence of (str, Path or None), optional
        Per file, an image of its shape (before or after the data-bar crop) whose non-zero
        pixels lie outside the imaged field; they count in the ``frame_fraction`` quality
        flag together with the constant padding found in the image itself
        (:mod:`cathodeflow.measure.frame`).

    Returns
    -------
    list of str
        The new image ids, in the order of ``files``.

    Raises
    ------
    InputError
        A file that cannot be read, has no pixel size, is smaller than :data:`MIN_SIDE_PX`
        on a side or has more than :data:`MAX_PIXELS` pixels; an unsafe, repeated or
        already stored image id; a bad condition. Everything is read and checked before
        the store is touched, so nothing is written then.
    """
    files = [Path(f) for f in files]
    n = len(files)
    masks = [None if m is None else Path(m) for m in _per_file(
        None if frame_masks is None else list(frame_masks), n, "frame_masks")]
    entries = [
        _Entry(f, c, p, i, frame_mask=m)
        for f, c, p, i, m in zip(files, _per_file(condition, n, "condition"),
                                 _per_file(pixel_size_um, n, "pixel_size_um"), _per_file(image_ids, n, "image_ids"),
                                 masks)
    ]
    return _ingest(entries, store=store, crop_databar=crop_databar)


def ingest_manifest(manifest, *, store, crop_databar=True) -> list[str]:
    """Ingest the images listed in a CSV manifest, all or nothing.

    Parameters
    ----------
    manifest : str or Path
        CSV (UTF-8, comma-separated) with a header row and the columns ``file`` (path;
        relative paths are relative to the manifest's folder), ``condition``, and optionally
        ``pixel_size_um`` (µm; empty: from the file's metadata), ``image_id`` (empty: the
        file name without its extension) and ``frame_mask`` (empty: none; see :func:`ingest`). Rows are numbered as in a spreadsheet (header =
        row 1); blank rows are skipped.
    store : str or Path
        The study store; created if the path does not exist.
    crop_databar : bool
        Remove the microscope's data bar.

    Returns
    -------
    list of str
        The new image ids, in the manifest's order.

    Raises
    ------
    InputError
        One line naming the manifest's row and column (and the file) for the first problem;
        every row and file is read and checked before the store is touched.
    """
    return _ingest(_read_manifest(manifest), store=store, crop_databar=crop_databar)


def _read_manifest(path) -> list[_Entry]:
    """The rows of a manifest as entries; InputError naming the row and column."""
    import math

    from ..io.csvrows import read_csv_rows

    path = Path(path)
    header, rows = read_csv_rows(path, what="manifest")
    expected = ", ".join(MANIFEST_REQUIRED + MANIFEST_OPTIONAL)
    missing = [c for c in MANIFEST_REQUIRED if c not in header]
    unknown = [c for c in header if c not in MANIFEST_REQUIRED + MANIFEST_OPTIONAL]
    if missing or unknown:
        found = ", ".join(repr(h) for h in header) or "nothing"
        raise InputError(f"{path}: manifest header row has {found}; expected the columns {expected} "
                         f"(the last three optional), comma-separated")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise InputError(f"{path}: manifest header names column {repeated[0]!r} twice")
    entries = []
    for number, row in rows:
        where = f"{path} row {number}"
        if len(row) > len(header):
            raise InputError(f"{where}: {len(row)} fields, the header has {len(header)} columns")
        cells = {c: (row[k].strip() if k < len(row) else "") for k, c in enumerate(header)}
        if not cells["file"]:
            raise InputError(f"{where}, column file: empty; expected the path of an SEM image")
        if not cells["condition"]:
            raise InputError(f"{where}, column condition: empty; expected a condition label (e.g. 20C)")
        ps = None
        if cells.get("pixel_size_um"):
            try:
                ps = float(cells["pixel_size_um"])
            except ValueError:
                ps = math.nan
            if not (math.isfinite(ps) and ps > 0):
                raise InputError(f"{where}, column pixel_size_um: {cells['pixel_size_um']!r} is not a number > 0 "
                                 "(µm; leave it empty to take the pixel size from the file)")
        file = Path(cells["file"]).expanduser()
        mask = Path(cells["frame_mask"]).expanduser() if cells.get("frame_mask") else None
        entries.append(_Entry(file if file.is_absolute() else path.parent / file, cells["condition"], ps,
                              cells.get("image_id") or None, where,
                              None if mask is None else mask if mask.is_absolute() else path.parent / mask))
    if not entries:
        raise InputError(f"{path}: the manifest lists no images (a header row and one row per image expected)")
    return entries


def _frame_fraction(entry: _Entry, im) -> float:
    """Share of ``im`` outside the imaged field: its constant padding, and the non-zero
    pixels of the entry's frame mask (of the image's shape before or after the data-bar
    crop)."""
    import numpy as np

    from ..io.mosaic import preview
    from ..measure.frame import frame_mask

    if entry.frame_mask is not None and not isinstance(im.data, np.ndarray):
        raise _at(entry, "frame_mask", InputError(
            f"{entry.frame_mask}: frame masks are not supported for {entry.file}, a mosaic read lazily; "
            "expected no frame mask (the frame_fraction flag still counts the mosaic's constant padding)"))
    frame = frame_mask(preview(im.data))  # a lazily read mosaic: on a subsampled preview
    if entry.frame_mask is None:
        return float(frame.mean())
    from ..io.sem import read_sem

    try:
        mask = read_sem(entry.frame_mask, pixel_size_um=im.pixel_size_um, crop_databar=False).data
    except InputError as err:
        raise _at(entry, "frame_mask", err) from None
    h, w = im.data.shape
    if mask.shape == (h + im.databar_rows, w):
        mask = mask[:h]
    if mask.shape != (h, w):
        raise _at(entry, "frame_mask", InputError(
            f"{entry.frame_mask}: frame mask of {mask.shape[0]}×{mask.shape[1]} px; expected the shape of "
            f"{entry.file} ({h}×{w} px, or {h + im.databar_rows}×{w} with its data bar)"))
    return float((frame | (np.asarray(mask) != 0)).mean())


def _at(entry: _Entry, column: str, error: InputError) -> InputError:
    """``error`` prefixed with the manifest row and column of ``entry`` (if it has one)."""
    return InputError(one_line(f"{entry.where}, column {column}: {error}")) if entry.where else error


def _ingest(entries: list[_Entry], *, store, crop_databar) -> list[str]:
    """Check every entry (ids, conditions, files, sizes, the store) then add them all."""
    from ..config import check_pixel_size_um
    from ..io.phasefile import image_id_from_path
    from ..io.mosaic import read_image  # read_sem, or lazily: a large TIFF, a tile-grid CSV
    from ..io.store import check_image_id, create_store, open_store

    if not entries:
        raise InputError("no files to ingest")
    ids = []
    for e in entries:
        if not isinstance(e.condition, str):
            raise _at(e, "condition", InputError(
                f"condition must be a string, got {type(e.condition).__name__} {e.condition!r}"))
        if not e.condition.strip():
            raise _at(e, "condition", InputError("condition must be a non-empty string"))
        iid = e.image_id if e.image_id is not None else image_id_from_path(e.file)
        try:
            check_image_id(iid)
        except InputError as err:
            if e.image_id is not None:
                raise _at(e, "image_id", err) from None
            raise _at(e, "file", InputError(f"{e.file}: {err}; rename the file or give an image id")) from None
        ids.append(iid)
    first = {}
    for e, iid in zip(entries, ids):
        if iid in first:
            a, b = first[iid], e
            named = " (the file name without its extension)" if a.image_id is None and b.image_id is None else ""
            raise InputError(one_line(
                f"{b.where or b.file}: image id {iid!r}{named} is also that of {a.where or a.file}; "
                "rename one of them, nothing was ingested"))
        first[iid] = e
    images = []
    for e in entries:
        try:
            im = read_image(e.file, pixel_size_um=e.pixel_size_um, crop_databar=crop_databar)
        except InputError as err:
            raise _at(e, "pixel_size_um" if "no pixel size" in str(err) else "file", err) from None
        try:  # a pixel size in nm or m instead of µm (given, or misread from the metadata)
            check_pixel_size_um(im.pixel_size_um, name=str(e.file))
        except InputError as err:
            raise _at(e, "pixel_size_um", err) from None
        h, w = im.data.shape
        if min(h, w) < MIN_SIDE_PX or h * w > MAX_PIXELS:
            raise _at(e, "file", InputError(
                f"{e.file}: image of {h}×{w} px (after the data-bar crop); expected at least {MIN_SIDE_PX} px "
                f"on each side and at most {MAX_PIXELS} pixels (2^31; cut larger mosaics into tiles)"))
        images.append(im)
    frames = [_frame_fraction(e, im) for e, im in zip(entries, images)]
    from ..io.location import as_path
    from ..io.lock import store_lock

    store_path = as_path(store)  # a folder, or a URL (s3://bucket/study.zarr)
    st = open_store(store_path) if store_path.exists() else create_store(store_path)
    with store_lock(store_path, command="cathodeflow ingest"):  # not while a run writes
        clash = [f"{i!r} ({e.where})" if e.where else repr(i) for e, i in zip(entries, ids) if st.has_image(i)]
        if clash:
            raise InputError(f"{store_path}: images already in the store: {', '.join(clash)}; remove them "
                             f"first (`cathodeflow rm {store_path} ID…`) or give other ids; nothing was ingested")
        for e, iid, im, frame in zip(entries, ids, images, frames):
            st.add_image(
                iid,
                im.data,
                condition=e.condition,
                pixel_size_um=im.pixel_size_um,
                source={"path": str(im.source), "sha256": im.sha256},
                params={"databar_rows": im.databar_rows, "reader_metadata": im.metadata,
                        "frame_fraction": frame},
            )
    return ids


def _stage_range(from_stage, to_stage):
    i0 = STAGES.index(from_stage) if from_stage else 0
    i1 = STAGES.index(to_stage) if to_stage else len(STAGES) - 1
    if i0 > i1:
        raise InputError(f"--from {from_stage} comes after --to {to_stage}")
    return STAGES[i0 : i1 + 1]


#: Store arrays each per-image stage writes (``prob`` too for the phase stage, with the U-net).
_STAGE_ARRAYS = {"sr": ("sr",), "phase": ("prob", "phase"), "labels": ("labels/cracks", "labels/particles")}
#: The arrays whose records decide whether a stage is complete and current.
_STAGE_CHECKED = {"sr": ("sr",), "phase": ("phase",), "labels": ("labels/cracks", "labels/particles")}


def _stage_state(st, iid, stage: str, params: Params) -> tuple[bool, str | None]:
    """(whether ``stage`` of image ``iid`` is complete, and if it was made with parameters
    other than ``params``, or with other network weights (:func:`_weights_changed`): what
    changed, as ``"marker_radius_um 0.715 -> 0.5"``; else None)."""
    from ..config import params_changes, params_record

    arrays = _STAGE_CHECKED[stage]
    complete = all(st.is_complete(iid, a) for a in arrays) and (stage != "labels" or _has_partial(st, iid))
    want = params_record(params, stage)
    if not complete or not want["params"]:  # a stage without parameters cannot be outdated
        return complete, None
    for a in arrays:
        got = (st.stage_info(iid, a) or {}).get("params") or {}
        if got.get("params_hash") != want["params_hash"]:
            return True, params_changes(got.get("params"), want["params"])
    return True, _weights_changed(st, iid, stage, params)


def _weights_changed(st, iid, stage: str, params: Params) -> str | None:
    """What changed in the network weights that a complete ``sr`` (SRGAN) or ``phase`` (U-net)
    stage was made with, though its parameters did not: the file behind the same name or
    path has another sha256 (retrained, or another shipped default), or, for the U-net
    with no t given, the weights' calibrated t is another (``cathodeflow calibrate``).
    None when nothing did, and for stages made without weights."""
    from ..models.registry import resolve_weights

    if stage == "sr" and params.sr_method == "srgan":
        name = _sr_weights(params)
    elif stage == "phase" and params.phase_method == "unet":
        name = params.unet_weights or _default_weights()
    else:
        return None
    info = st.stage_info(iid, stage) or {}
    record = resolve_weights(name)
    if info.get("weights_sha256") != record.sha256:
        return f"weights {name}: sha256 {str(info.get('weights_sha256'))[:12]}… -> {record.sha256[:12]}…"
    made_t = (info.get("params") or {}).get("crack_threshold")
    if stage == "phase" and params.crack_threshold is None and made_t != record.crack_threshold:
        return f"weights {name}: calibrated t {made_t} -> {record.crack_threshold}"
    return None


def _given_stages(st, iid) -> tuple[str, ...]:
    """The per-image stages an image was given rather than computed: ``sr`` and ``phase``
    for a phase map added as such (no raw image, e.g. ``synth-mosaic --kind phase``), whose
    labels and tables ``run`` computes; none for an image ingested from an SEM file."""
    if st.stage_info(iid, "raw") is None and st.stage_info(iid, "phase") is not None:
        return ("sr", "phase")
    return ()


def _plan(st, ids, stages, per: dict[str, Params], forced: bool) -> tuple[dict[str, list[str]], list[str], set[str]]:
    """Which per-image stages of ``stages`` to compute for each image, one line per image
    whose complete stage is recomputed because the parameters changed (DESIGN §4.1), and the
    images whose first stage to compute is resumed chunk by chunk.

    A stage is computed when ``forced``, incomplete, made with other parameters
    (:data:`~cathodeflow.config.STAGE_PARAMS`), or after a stage that is computed; never
    when the image was given it (:func:`_given_stages`: its input, not a result). The first
    stage computed is resumed when it is in :data:`RESUMABLE` and computed only because it
    is incomplete (not forced, same parameters); the stages after it are written whole.
    ``per`` holds each image's parameters (:func:`_image_params`). Nothing is written here.

    Raises
    ------
    InputError
        A complete stage before ``stages`` (``--from``) was made with other parameters: the
        results would mix two parameter sets.
    """
    first = STAGES.index(stages[0])
    plan, notes, resume = {}, [], set()
    for iid in ids:
        todo: list[str] = []
        given = _given_stages(st, iid)
        for k, stage in enumerate(STAGES[:-1]):  # "tables" pools all images: every run writes it
            if stage in given:
                continue
            complete, changed = _stage_state(st, iid, stage, per[iid])
            if stage not in stages:
                if k < first and changed:
                    raise InputError(
                        f"{st.path}: image {iid!r}: its {stage} stage was made with other parameters "
                        f"({changed}); recompute it (--from {stage}) or give the parameters it was made with"
                    )
                continue
            if not todo and not forced and complete and changed:
                notes.append(f"{iid}: {stage} recomputed ({changed})")
            if not todo and not forced and not complete and stage in RESUMABLE:
                resume.add(iid)  # incomplete: `complete` is False, so `changed` is None
            if todo or forced or not complete or changed:
                todo.append(stage)
        plan[iid] = todo
    return plan, notes, resume


def _invalidate(st, iid, first: str, *, resume: bool = False) -> None:
    """Mark stage ``first`` of image ``iid`` and every stage after it incomplete (before any
    is recomputed), so that a run that stops midway, or ends at ``--to``, leaves no stage
    that looks current on top of a recomputed one. With ``resume``, ``first`` is left as
    it is (incomplete, its written chunks marked; an array of it that is complete, such as
    ``prob`` before an interrupted ``phase``, is kept), the stages after it lose their chunk
    marks too."""
    for stage in STAGES[STAGES.index(first) + bool(resume) : -1]:
        for a in _STAGE_ARRAYS[stage]:
            st.mark_incomplete(iid, a)
    (_partial_dir(st, iid) / "COMPLETE").unlink(missing_ok=True)


def _one_writer(run):
    """``run(store, …)`` holding the store's lock (DESIGN §4.1: one writer at a time; a second
    run on the store is refused with a :class:`~cathodeflow.errors.StoreError` before anything
    is written). Released on return and on any exception, an interrupt included."""
    import functools

    @functools.wraps(run)
    def locked(store, *args, **kwargs):
        from ..io.lock import store_lock
        from ..io.store import open_store

        open_store(store, mode="r")  # not a study store: its own error, and no lock file left there
        with store_lock(store):
            return run(store, *args, **kwargs)

    return locked


@_one_writer
def run_study(store, *, params: Params | None = None, scheduler=None, from_stage=None,
              to_stage=None, progress=False, force=False, force_pixel_size=False):
    """Run the stages on every image of the store; returns the tables (if computed).

    ``from_stage`` forces recomputation from that stage on; otherwise complete stages made
    with the same parameters (:data:`~cathodeflow.config.STAGE_PARAMS`, recorded with each
    stage) are skipped (resume), and a stage made with other parameters is recomputed with
    the stages after it (one line per image with ``progress``). A stage before
    ``from_stage`` made with other parameters is refused (InputError), before anything is
    written. The stages written are stored in chunks of ``params.chunk_px``.
    ``force_pixel_size`` lets the U-net resample images whose pixel size is far from the one
    it was trained for, and the SRGAN (``params.sr_method = 'srgan'``) super-resolve raw
    images far from its own (refused otherwise).
    """
    from ..io.store import open_store
    from ..io.tables import write_tables
    from ..measure.describe import dcenter_tables, reduce_descriptions
    from ..config import SR_DEN, SR_NUM
    from ..stages.srgan import srgan_stage_dask
    from ..stages.superres import superres_any_size_dask
    from ..measure.describe import fits_one_task
    from .cluster import (check_store_shared, each_on_threads, parallel_images, scheduler_context, tiled_in_task,
                          warn_in_task)

    params = params or Params()
    st = open_store(store)
    stages = _stage_range(from_stage, to_stage)
    ids = st.image_ids()
    if not ids:
        raise InputError(f"{store}: the store holds no images; add some with `cathodeflow ingest`")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), desc="images", unit="image", file=sys.stderr,
                   disable=None if not sys.stderr.isatty() else False)
    say = (lambda m: bar.write(m, file=sys.stderr)) if bar is not None else (lambda m: None)

    # A stage is recomputed when it is incomplete, when --from names it or an earlier stage,
    # when it was made with other parameters, or when an earlier stage of the same image is
    # recomputed (its input changes): see _plan.
    from ..config import params_record, warn_sr_input

    per = _image_params(st, ids, params)  # sr_method 'auto' chosen per image
    plan, notes, resume = _plan(st, ids, stages, per, forced=force or from_stage is not None)
    # the weights are checked whenever their stage is in the run; the pixel sizes of the
    # images that compute it
    if "sr" in stages and params.sr_method == "srgan":
        _check_srgan_inputs(st, [i for i in ids if "sr" in plan[i]], params, force_pixel_size)
    if "phase" in stages and params.phase_method == "unet":
        _check_unet_inputs(st, [i for i in ids if "phase" in plan[i]], params, per, force_pixel_size)
    _warn_per_pixel_size(warn_sr_input, [(st.pixel_size_um(i, "raw"), i) for i in ids
                                         if "sr" in plan[i] and per[i].sr_method != "none"])

    def todo(iid, stage):
        return stage in plan[iid]

    chunks = (params.chunk_px, params.chunk_px)  # of every stage this run writes
    with scheduler_context(scheduler, n_tasks=len(ids), announce=say if progress else None) as client:
        check_store_shared(client, st.path)  # before the first write, as the scratch below
        for note in notes:
            say(note)
        # tiled labels stages one per task (tiled_images, as describe does), counted over the
        # images whose labels stage runs, whole or tiled (a phase map not made yet has no size);
        # decided before the first write: spread on workers that do not share the scratch
        # directory is refused; auto runs in-task there, with a warning once an image is
        # processed tiled (none when every image fits one task)
        labels_in_task, why = (tiled_in_task(sum(todo(i, "labels") for i in ids), client, params)
                               if "labels" in stages else (False, None))
        warned = threading.Lock()  # why is given once, when the first image is processed in-task
        for iid in ids:  # the first write of this run (the scheduler is up)
            if plan[iid]:
                _invalidate(st, iid, plan[iid][0], resume=iid in resume)
        compute_kw = {"scheduler": client} if client is not None else {}
        dcenter = dcenter_tables(params) if "labels" in stages else None

        def labels_task_of(iid) -> bool:
            if client is None or not labels_in_task or fits_one_task(st.read_stage(iid, "phase").shape, params):
                return False
            if warned.acquire(blocking=False):
                warn_in_task(why)
            return True

        def process(iid):
            """sr → phase → labels of one image (each stage tiled on the store's chunks)."""
            params = per[iid]
            if "sr" in stages and todo(iid, "sr"):
                raw = st.read_stage(iid, "raw")
                eta_lr = st.pixel_size_um(iid, "raw")
                eta = round(eta_lr * SR_DEN / SR_NUM, 12)  # η_lr · 13/35
                if params.sr_method == "srgan":
                    sr, prov = srgan_stage_dask(raw, pixel_size_um=eta_lr, weights=_sr_weights(params),
                                                force=force_pixel_size, name=f"image {iid!r}")
                elif params.sr_method == "none":  # acquired at high resolution: as it is
                    sr, prov, eta = raw, {"method": "none"}, eta_lr
                else:
                    sr, prov = superres_any_size_dask(raw), {"method": "baseline-interpolation"}
                st.write_stage(iid, "sr", sr, pixel_size_um=eta, chunks=chunks, compute_kw=compute_kw,
                               weights_sha256=prov.get("weights_sha256"),
                               params={**prov, **params_record(params, "sr")}, resume=True)
                say(f"{iid}: sr done")
            if "phase" in stages and todo(iid, "phase"):
                _phase_image(st, iid, params, compute_kw, force_pixel_size)
                say(f"{iid}: phase done")
            if "labels" in stages and todo(iid, "labels"):
                if labels_task_of(iid):
                    _label_in_task(st, iid, params, client, dcenter)
                else:
                    _label_image(st, iid, params, client, dcenter)
                say(f"{iid}: labels and measurements done")
            if bar is not None:
                bar.update(1)

        # Images are independent: run a few at once so that small images still fill the
        # workers (each image's own tasks are few). Errors surface in image order.
        n_parallel = min(len(ids), parallel_images(client))
        if n_parallel > 1:
            each_on_threads(process, ids, n_parallel)
        else:
            for iid in ids:
                process(iid)
        tables = None
        if "tables" in stages:
            missing = [i for i in ids if not _has_partial(st, i)]
            if missing:
                raise CathodeflowError(
                    f"{store}: the labels stage is not complete for {missing}; "
                    f"run `cathodeflow run --store {store} --from labels`"
                )
            tables = reduce_descriptions([_load_partial(st, i) for i in ids], params=params)
            write_tables(tables, st.tables_dir, metadata=params_record(params, *STAGES))
            from .inventory import mark_tables_written

            mark_tables_written(st, ids)  # `report` refuses tables older than the store's stages
            say(f"tables written to {st.tables_dir}")
    if bar is not None:
        bar.close()
    return tables


def _default_weights() -> str:
    from ..models.registry import DEFAULT_UNET

    return DEFAULT_UNET


def _sr_weights(params: Params) -> str:
    from ..models.registry import DEFAULT_SRGAN

    return params.sr_weights or DEFAULT_SRGAN


def _image_params(st, ids, params: Params) -> dict[str, Params]:
    """Each image's parameters, ``sr_method = 'auto'`` chosen by its raw pixel size
    (:meth:`~cathodeflow.config.Params.for_image`). An image given as a phase map (no raw
    image, no sr or phase stage to compute) keeps ``params``."""
    return {iid: params if st.stage_info(iid, "raw") is None else params.for_image(st.pixel_size_um(iid, "raw"))
            for iid in ids}


def _check_srgan_inputs(st, ids, params: Params, force_pixel_size: bool) -> None:
    """Before anything is written: the SRGAN weights load (kind, sha256, architecture) and
    every image's raw pixel size suits them (or ``force_pixel_size``)."""
    from ..models.registry import load_srgan_generator
    from ..stages.srgan import SRGANSetup, check_sr_pixel_size

    weights = _sr_weights(params)
    setup = SRGANSetup.from_weights(weights)
    load_srgan_generator(weights)
    for iid in ids:
        check_sr_pixel_size(st.pixel_size_um(iid, "raw"), setup.pixel_size_um, force=force_pixel_size,
                            name=f"{st.path}: image {iid!r} (raw pixel size)")


def _check_unet_inputs(st, ids, params: Params, per: dict[str, Params], force_pixel_size: bool) -> None:
    """Before anything is written: the weights load (sha256, architecture) and every image's
    super-resolved pixel size suits them (or ``force_pixel_size``); ``per``: each image's
    parameters (:func:`_image_params`)."""
    from ..models.registry import load_unet
    from ..stages.unet import UNetSetup, check_pixel_size

    weights = params.unet_weights or _default_weights()
    load_unet(weights)
    setup = UNetSetup.from_weights(weights)
    for iid in ids:
        check_pixel_size(_phase_input_pixel_size(st, iid, per[iid]), setup.pixel_size_um, force=force_pixel_size,
                         name=f"{st.path}: image {iid!r} (super-resolved pixel size)")


def _phase_input_pixel_size(st, iid, params: Params) -> float:
    """The pixel size (µm) of the sr stage of ``params.sr_method`` for image ``iid``, the
    phase stage's input, whether the sr stage is written yet or not."""
    from ..config import SR_DEN, SR_NUM

    eta = st.pixel_size_um(iid, "raw")
    return eta if params.sr_method == "none" else eta * SR_DEN / SR_NUM


def _warn_per_pixel_size(warn, sizes) -> None:
    """``warn(pixel_size, name=...)`` once per distinct pixel size of ``sizes``, (pixel size,
    image id) pairs, naming the images of that size."""
    by_size: dict[float, list[str]] = {}
    for ps, iid in sizes:
        by_size.setdefault(round(ps, 12), []).append(iid)
    for ps, some in by_size.items():
        warn(ps, name=f"image(s) {', '.join(some)}")


def _phase_image(st, iid, params: Params, compute_kw, force_pixel_size: bool) -> None:
    """The phase stage of one image: the U-net's Ŷ (stored as ``prob``, float16) then eq. 7
    (Ŷ smoothed by ``Params.prob_sigma_um``, with hysteresis ``Params.crack_threshold_low``,
    cracks up to ``Params.min_crack_area_um2`` dropped),
    or the classical baseline; each on its own grid (the model's pixel size, or η for the
    classical baseline, whose options in pixels were chosen there), the input resampled
    onto it when its pixel size differs by more than
    :data:`~cathodeflow.stages.resample.RESAMPLE_TOLERANCE`."""
    from ..config import params_record

    sr = st.read_stage(iid, "sr")
    eta = st.pixel_size_um(iid, "sr")
    record = params_record(params, "phase")  # the parameters the phase map depends on
    chunks = (params.chunk_px, params.chunk_px)
    if params.phase_method == "classical":
        from ..config import ETA_UM
        from ..stages.phases import adapt_options, baseline_options, estimate_levels_dask, phases_baseline_dask
        from ..stages.resample import needs_resampling, resample_dask

        # its options in pixels were chosen at η: an image of another pixel size is
        # segmented on the η grid (same field of view), as the U-net is on its model's grid
        grid = {"input_pixel_size_um": eta, "input_shape": list(sr.shape), "resampled": needs_resampling(eta, ETA_UM)}
        if grid["resampled"]:
            sr, eta = resample_dask(sr, eta, ETA_UM, tile_px=params.chunk_px).rechunk(chunks), ETA_UM
        # the noise sets σ (and the halo), the edge blur the dark-line contrasts; both are
        # read first and what they chose is recorded with the stage
        opts, levels = adapt_options(sr, estimate_levels_dask(sr), baseline_options(pixel_size_um=eta))
        chosen = {k: getattr(opts, k) for k in ("sigma_px", "min_crack_area_px", "crack_contrast", "line_contrast")}
        ph = phases_baseline_dask(sr, pixel_size_um=eta, levels=levels, max_noise=0, max_blur_px=0, **chosen)
        st.write_stage(iid, "phase", ph, pixel_size_um=eta, kind="labels", chunks=chunks,
                       params={"method": "baseline-classical", **chosen,
                               "min_enclosed_solidity": opts.min_enclosed_solidity, **grid,
                               "output_pixel_size_um": eta, **record},
                       compute_kw=compute_kw, resume=True)
        return
    import numpy as np

    from ..stages.phases import phase_from_probabilities_dask
    from ..stages.unet import unet_stage_dask

    prob, eta_out, prov = unet_stage_dask(
        sr, pixel_size_um=eta, weights=params.unet_weights or _default_weights(),
        tile_px=params.unet_tile_px, crack_threshold=params.crack_threshold,
        crack_threshold_low=params.crack_threshold_low, prob_sigma_um=params.prob_sigma_um,
        min_crack_area_um2=params.min_crack_area_um2,
        force=force_pixel_size, name=f"image {iid!r}",
    )
    sha = prov["weights_sha256"]
    prov = {**prov, **record}
    st.write_stage(iid, "prob", prob.astype(np.float16).transpose(2, 0, 1), pixel_size_um=eta_out,
                   params=prov, weights_sha256=sha, chunks=(3,) + chunks, compute_kw=compute_kw, resume=True)
    # eq. 7 on the stored Ŷ, so that the phase map is what re-thresholding the store gives
    stored = st.read_stage(iid, "prob").transpose(1, 2, 0)
    ph = phase_from_probabilities_dask(stored, prov["crack_threshold"], t_low=prov["crack_threshold_low"],
                                       sigma_px=prov["prob_sigma_px"], min_crack_px=prov["min_crack_px"])
    st.write_stage(iid, "phase", ph, pixel_size_um=eta_out, kind="labels", params=prov,
                   weights_sha256=sha, chunks=chunks, compute_kw=compute_kw, resume=True)


# Per-image partial results (the rows one image contributes, and its local-porosity counts)
# live beside the tables, so that the reduce step can resume without recomputing images.
_PARTS = ("images", "cracks", "particles")


def _partial_dir(st, image_id) -> Path:
    return st.tables_dir / "per_image" / image_id


def _has_partial(st, image_id) -> bool:
    return (_partial_dir(st, image_id) / "COMPLETE").exists()


def _save_partial(st, image_id, desc) -> None:
    import pandas as pd

    from ..io.tables import write_parquet  # a folder's file, or an object at a URL

    d = _partial_dir(st, image_id)
    (d / "COMPLETE").unlink(missing_ok=True)
    d.mkdir(parents=True, exist_ok=True)
    for name in _PARTS:
        write_parquet(getattr(desc, name if name != "images" else "image"), d / f"{name}.parquet")
    rows = [
        {"model": m, "bin": j, "crack_px": int(c[j]), "solid_px": int(s[j])}
        for m, (c, s) in desc.local.items()
        for j in range(len(c))
    ]
    write_parquet(pd.DataFrame(rows, columns=["model", "bin", "crack_px", "solid_px"]), d / "local.parquet")
    (d / "COMPLETE").write_text("ok\n")


def _load_partial(st, image_id):
    import numpy as np

    from ..io.tables import read_parquet
    from ..measure.image import ImageDescription

    d = _partial_dir(st, image_id)
    # as written; reduce_descriptions conforms each table once, after joining the images'
    # rows (conforming each image's rows too tripled the time of a run's tables stage)
    parts = {n: read_parquet(d / f"{n}.parquet") for n in _PARTS}
    loc = read_parquet(d / "local.parquet")
    local = {}
    for m, g in loc.groupby("model", sort=False):
        g = g.sort_values("bin")
        local[m] = (g["crack_px"].to_numpy(np.int64), g["solid_px"].to_numpy(np.int64))
    return ImageDescription(image=parts["images"], cracks=parts["cracks"], particles=parts["particles"], local=local)


def _label_in_task(st, iid, params, client, dcenter) -> None:
    """:func:`_label_image` of a tiled image as one task on the cluster: the worker reads the
    phase map from the store chunk by chunk, labels and measures it in its own thread
    (scratch in the worker's local directory, or ``params.scratch_dir``) and writes the
    label arrays and the image's rows to the store itself (each image's own groups: images
    in parallel do not share a record). The marker radius warning is given here, where the
    run prints it."""
    from ..config import warn_marker_radius

    warn_marker_radius(params, st.pixel_size_um(iid, "phase"))
    client.submit(_label_image_here, st, iid, params, dcenter, pure=False).result()


def _label_image_here(st, iid, params, dcenter) -> None:
    import warnings

    from ..tiling.scheduler import in_this_thread

    with in_this_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # given on the client (_label_in_task)
        _label_image(st, iid, params, None, dcenter)


def _label_image(st, iid, params, client, dcenter):
    """Crack and particle labels (eq. 2, 8–10) and the image's rows: in one task for an image
    of at most ``params.whole_image_px`` pixels, else tiled on the store's chunks (the same
    labels and rows).

    Lengths of ``params`` are converted with the phase map's pixel size (a marker radius of
    under 5 or over 500 px gets a :class:`~cathodeflow.errors.PixelSizeWarning`); both label
    arrays record the parameters of the labels stage and their hash.
    """

    from ..config import params_record, warn_marker_radius
    from ..measure.describe import fits_one_task, whole_image_task
    from ..measure.tiled import describe_phase_dask
    from ..tiling.scheduler import compute_kw as tiled_compute_kw
    from ..tiling.scheduler import compute as tiled_compute
    from ..tiling.scratch import Scratch

    compute_kw = tiled_compute_kw(client)  # in _label_in_task's task: this thread
    phase = st.read_stage(iid, "phase")
    eta = st.pixel_size_um(iid, "phase")
    warn_marker_radius(params, eta)
    kw = dict(image_id=iid, condition=st.condition(iid), pixel_size_um=eta, params=params, dcenter=dcenter,
              keep_labels=True)
    # tiled, the label arrays are written to the store from the scratch files (not from
    # workers' memory, which a worker's death would lose), so the scratch stays until they
    # are; a whole-image task on a cluster keeps them there (_whole_on_cluster)
    whole = fits_one_task(phase.shape, params)
    with contextlib.ExitStack() as stack:
        if whole and client is not None:
            desc = stack.enter_context(_whole_on_cluster(whole_image_task(phase, **kw), phase.shape, client))
        elif whole:
            (desc,) = tiled_compute(whole_image_task(phase, **kw), **compute_kw)
        else:
            scratch = stack.enter_context(Scratch(directory=params.scratch_dir))
            desc = describe_phase_dask(phase, client=client, scratch=scratch, **kw)
        # measured on the raw image at ingest (stores ingested before that: not known)
        frame = ((st.stage_info(iid, "raw") or {}).get("params") or {}).get("frame_fraction")
        desc.image["frame_fraction"] = float("nan") if frame is None else float(frame)
        record = params_record(params, "labels")
        chunks = (params.chunk_px, params.chunk_px)
        st.write_stage(iid, "labels/cracks", desc.crack_labels, pixel_size_um=eta, kind="labels",
                       chunks=chunks, params={"convention": "DESIGN §4.4 items 1-4", **record},
                       compute_kw=compute_kw)
        st.write_stage(iid, "labels/particles", desc.particle_labels, pixel_size_um=eta, kind="labels",
                       chunks=chunks, params={"convention": "DESIGN §4.4 item 7", **record},
                       compute_kw=compute_kw)
    _save_partial(st, iid, desc)


def _split_labels(desc):
    """(``desc`` without its label arrays, their dtypes): what a worker sends back."""
    import dataclasses

    dtypes = (desc.crack_labels.dtype, desc.particle_labels.dtype)
    return dataclasses.replace(desc, crack_labels=None, particle_labels=None), dtypes


@contextlib.contextmanager
def _whole_on_cluster(task, shape, client):
    """The description computed by the whole-image ``task`` on the cluster, whose label arrays
    stay there: they come back as Dask arrays of the task's result (one chunk each), so the
    workers write their chunks to the store and the labels never pass through this process.
    On leaving, the result is released and the description loses the two arrays; a worker
    lost before then is recomputed by the scheduler from the task, like any other."""
    import dask
    import dask.array as da

    fut = client.compute(task)
    desc = None
    try:
        desc, dtypes = client.submit(_split_labels, fut, pure=False).result()
        desc.crack_labels, desc.particle_labels = (
            da.from_delayed(dask.delayed(getattr, pure=True)(fut, name), shape=tuple(shape), dtype=dt)
            for name, dt in zip(("crack_labels", "particle_labels"), dtypes))
        yield desc
    finally:
        if desc is not None:
            desc.crack_labels = desc.particle_labels = None
        client.cancel(fut)  # copies of the future in the arrays' graphs would keep it alive


def current_tables_dir(store) -> Path:
    """The folder of the store's tables, once checked complete and current (what a report reads).

    Parameters
    ----------
    store : str or Path
        The study store.

    Returns
    -------
    Path
        ``<store>/tables``, holding ``<name>.parquet`` for every table of DESIGN §4.2.

    Raises
    ------
    CathodeflowError
        One line, when the tables are missing or older than the store: an image added,
        removed or a stage recomputed after they were written
        (:func:`cathodeflow.study.inventory.check_tables_current`).
    """
    from ..io.store import open_store
    from ..io.tables import REQUIRED_TABLES
    from .inventory import check_tables_current

    st = open_store(store, mode="r")
    tdir = st.tables_dir  # a Path, or a RemotePath for a store at a URL
    missing = [n for n in REQUIRED_TABLES if not (tdir / f"{n}.parquet").exists()]
    if missing:
        raise CathodeflowError(f"{store}: tables {missing} not computed yet; run `cathodeflow run --store {store}` first")
    check_tables_current(st)
    return tdir


def write_synthetic_mosaic(store, *, megapixels: float, image_id: str = "mosaic", kind: str = "phase",
                           mode: str = "sparse", condition: str = "20C", n_tiles: int = 4, tile_lr_px: int = 390,
                           seed: int = 0, chunk_px: int | None = None) -> str:
    """Write a large synthetic mosaic (:mod:`cathodeflow.synth.mosaic`) straight into the store.

    Parameters
    ----------
    store : str or Path
        The study store (folder or URL); created if missing.
    megapixels : float
        Size of the square mosaic, MP.
    image_id : str
        Id of the new image (refused if the store holds it).
    kind : {'phase', 'sem'}
        ``phase``: the phase map S (eq. 1) on η = 14.3 nm, stored as the ``phase`` stage
        (``run --from labels`` describes it); ``sem``: the low-resolution SEM image
        (38.5 nm), stored as ``raw`` (``run`` processes it).
    mode : {'sparse', 'percolating'}
        Tiles framed by background (no particle crosses a seam) or by solid (one component).
    condition, n_tiles, tile_lr_px, seed
        See :func:`cathodeflow.synth.mosaic.mosaic_tiles`.
    chunk_px : int, optional
        Stored chunk edge (default :data:`cathodeflow.io.store.DEFAULT_CHUNK_PX`).

    Returns
    -------
    str
        ``image_id``. The mosaic is written chunk by chunk under the store's writer lock.
    """
    import math

    from ..io.location import as_path
    from ..io.lock import store_lock
    from ..io.store import DEFAULT_CHUNK_PX, check_image_id, create_store, open_store
    from ..synth.mosaic import synthetic_mosaic

    check_image_id(image_id)
    chunk_px = DEFAULT_CHUNK_PX if chunk_px is None else int(chunk_px)
    if chunk_px < MIN_SIDE_PX:
        raise InputError(f"chunk_px must be at least {MIN_SIDE_PX}, got {chunk_px}")
    ok = isinstance(megapixels, (int, float)) and not isinstance(megapixels, bool) and math.isfinite(megapixels)
    side = round(math.sqrt(megapixels * 1e6)) if ok and megapixels > 0 else 0
    if not MIN_SIDE_PX <= side <= math.isqrt(MAX_PIXELS):
        raise InputError(f"megapixels must give a side of at least {MIN_SIDE_PX} px and at most {MAX_PIXELS} "
                         f"pixels (2^31), got {megapixels!r}")
    store_path = as_path(store)
    if store_path.exists() and open_store(store_path, mode="r").has_image(image_id):
        raise InputError(f"{store_path}: image {image_id!r} is already in the store; remove it first "
                         f"(`cathodeflow rm {store_path} {image_id}`) or give another --image-id")
    data, ps = synthetic_mosaic(megapixels, kind=kind, mode=mode, n_tiles=n_tiles, tile_lr_px=tile_lr_px,
                                condition=condition, seed=seed, chunk_px=chunk_px)
    st = open_store(store_path) if store_path.exists() else create_store(store_path)
    with store_lock(store_path, command="cathodeflow synth-mosaic"):
        st.add_image(image_id, data, condition=condition, pixel_size_um=ps, stage="phase" if kind == "phase" else "raw",
                     source={"path": None, "synthetic": "cathodeflow.synth.mosaic"},
                     params={"megapixels": megapixels, "kind": kind, "mode": mode, "n_tiles": n_tiles,
                             "tile_lr_px": tile_lr_px, "seed": seed,
                             **({"frame_fraction": 0.0} if kind == "sem" else {})})  # no padding, by construction
    return image_id
