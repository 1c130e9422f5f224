"""The pipeline over a study store (DESIGN §2): ingest → sr → phase → labels → tables.

Each stage reads its input from the store and writes its output there; a stage is complete
only when its completion mark is written after all chunks, so an interrupted run resumes
where it stopped and recomputes only incomplete stages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import Params
from ..errors import CathodeflowError, InputError

STAGES = ("sr", "phase", "labels", "tables")


def ingest(files, *, store, condition, pixel_size_um=None, crop_databar=True) -> list[str]:
    """Read SEM files (pixel size from vendor metadata or ``pixel_size_um``) into the store.

    All files are read and checked before the store is touched, so a bad file leaves the
    store as it was. The store is created if it does not exist.
    """
    from ..io.phasefile import image_id_from_path
    from ..io.sem import read_sem
    from ..io.store import create_store, open_store

    if not isinstance(condition, str):
        raise InputError(f"condition must be a string, got {type(condition).__name__} {condition!r}")
    ids = [image_id_from_path(f) for f in files]
    same = {i: [str(f) for f, j in zip(files, ids) if j == i] for i in ids if ids.count(i) > 1}
    if same:
        first = next(iter(same))
        raise InputError(f"{same[first][1]}: image id {first!r} (the file name without its extension) is "
                         f"also that of {same[first][0]}; rename one of them, nothing was ingested")
    images = [read_sem(f, pixel_size_um=pixel_size_um, crop_databar=crop_databar) for f in files]
    store_path = Path(store)
    st = open_store(store_path) if store_path.exists() else create_store(store_path)
    clash = sorted(set(ids) & set(st.image_ids()))
    if clash:
        raise InputError(f"{store_path}: images already in the store: {clash}")
    for iid, im in zip(ids, images):
        st.add_image(
            iid,
            im.data,
            condition=condition,
            pixel_size_um=im.pixel_size_um,
            source={"path": str(im.source), "sha256": im.sha256},
            params={"databar_rows": im.databar_rows, "reader_metadata": im.metadata},
        )
    return ids


def _stage_range(from_stage, to_stage):
    i0 = STAGES.index(from_stage) if from_stage else 0
    i1 = STAGES.index(to_stage) if to_stage else len(STAGES) - 1
    if i0 > i1:
        raise InputError(f"--from {from_stage} comes after --to {to_stage}")
    return STAGES[i0 : i1 + 1]


def run_study(store, *, params: Params | None = None, scheduler=None, from_stage=None,
              to_stage=None, progress=False, force=False, force_pixel_size=False):
    """Run the stages on every image of the store; returns the tables (if computed).

    ``from_stage`` forces recomputation from that stage on; otherwise complete stages are
    skipped (resume). ``force_pixel_size`` lets the U-net resample images whose pixel size
    is far from the one it was trained for (refused otherwise).
    """
    from ..io.store import open_store
    from ..io.tables import write_tables
    from ..measure.describe import dcenter_tables, reduce_descriptions
    from ..config import SR_DEN, SR_NUM
    from ..stages.superres import superres_any_size_dask
    from .cluster import scheduler_context

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
    # or when an earlier stage of the same image was just recomputed (its input changed).
    forced = force or from_stage is not None
    dirty: set[str] = set()

    def todo(iid, *arrays):
        return forced or iid in dirty or any(not st.is_complete(iid, a) for a in arrays)

    if "phase" in stages and params.phase_method == "unet":
        _check_unet_inputs(st, ids, params, force_pixel_size)
    with scheduler_context(scheduler, n_tasks=len(ids)) as client:
        compute_kw = {"scheduler": client} if client is not None else {}
        dcenter = dcenter_tables(params) if "labels" in stages else None

        def process(iid):
            """sr → phase → labels of one image (each stage tiled on the store's chunks)."""
            if "sr" in stages and todo(iid, "sr"):
                raw = st.read_stage(iid, "raw")
                eta_lr = st.pixel_size_um(iid, "raw")
                sr = superres_any_size_dask(raw)
                eta = round(eta_lr * SR_DEN / SR_NUM, 12)  # η_lr · 13/35
                st.write_stage(iid, "sr", sr, pixel_size_um=eta,
                               params={"method": "baseline-interpolation"}, compute_kw=compute_kw)
                dirty.add(iid)
                say(f"{iid}: sr done")
            if "phase" in stages and todo(iid, "phase"):
                _phase_image(st, iid, params, compute_kw, force_pixel_size)
                dirty.add(iid)
                say(f"{iid}: phase done")
            if "labels" in stages and (
                todo(iid, "labels/cracks", "labels/particles") or not _has_partial(st, iid)
            ):
                _label_image(st, iid, params, client, dcenter)
                dirty.add(iid)
                say(f"{iid}: labels and measurements done")
            if bar is not None:
                bar.update(1)

        # Images are independent: run a few at once so that small images still fill the
        # workers (each image's own tasks are few). Errors surface in image order.
        n_parallel = min(len(ids), _parallel_images(client))
        if n_parallel > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n_parallel) as pool:
                for _ in pool.map(process, ids):
                    pass
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
            write_tables(tables, st.tables_dir)
            say(f"tables written to {st.tables_dir}")
    if bar is not None:
        bar.close()
    return tables


def _default_weights() -> str:
    from ..models.registry import DEFAULT_UNET

    return DEFAULT_UNET


def _check_unet_inputs(st, ids, params: Params, force_pixel_size: bool) -> None:
    """Before anything is written: the weights load (sha256, architecture) and every image's
    super-resolved pixel size suits them (or ``force_pixel_size``)."""
    from ..config import SR_DEN, SR_NUM
    from ..models.registry import load_unet
    from ..stages.unet import UNetSetup, check_pixel_size

    weights = params.unet_weights or _default_weights()
    load_unet(weights)
    setup = UNetSetup.from_weights(weights)
    for iid in ids:
        if st.is_complete(iid, "sr"):
            eta = st.pixel_size_um(iid, "sr")
        else:
            eta = st.pixel_size_um(iid, "raw") * SR_DEN / SR_NUM
        check_pixel_size(eta, setup.pixel_size_um, force=force_pixel_size,
                         name=f"{st.path}: image {iid!r} (super-resolved pixel size)")


def _phase_image(st, iid, params: Params, compute_kw, force_pixel_size: bool) -> None:
    """The phase stage of one image: the U-net's Ŷ (stored as ``prob``, float16) then eq. 7,
    or the classical baseline."""
    sr = st.read_stage(iid, "sr")
    eta = st.pixel_size_um(iid, "sr")
    if params.phase_method == "classical":
        from ..stages.phases import phases_baseline_dask

        ph = phases_baseline_dask(sr, pixel_size_um=eta)
        st.write_stage(iid, "phase", ph, pixel_size_um=eta, kind="labels",
                       params={"method": "baseline-classical"}, compute_kw=compute_kw)
        return
    import numpy as np

    from ..stages.phases import phase_from_probabilities_dask
    from ..stages.unet import segment_unet_dask

    prob, _, eta_out, prov = segment_unet_dask(
        sr, pixel_size_um=eta, weights=params.unet_weights or _default_weights(),
        tile_px=params.unet_tile_px, crack_threshold=params.crack_threshold,
        force=force_pixel_size, name=f"image {iid!r}",
    )
    sha = prov["weights_sha256"]
    st.write_stage(iid, "prob", prob.astype(np.float16).transpose(2, 0, 1), pixel_size_um=eta_out,
                   params=prov, weights_sha256=sha, compute_kw=compute_kw)
    # eq. 7 on the stored Ŷ, so that the phase map is what re-thresholding the store gives
    stored = st.read_stage(iid, "prob").transpose(1, 2, 0)
    ph = phase_from_probabilities_dask(stored, prov["crack_threshold"])
    st.write_stage(iid, "phase", ph, pixel_size_um=eta_out, kind="labels", params=prov,
                   weights_sha256=sha, compute_kw=compute_kw)


def _parallel_images(client) -> int:
    """How many images to process at once: the cluster's threads, or the local cores."""
    from .cluster import n_local_workers

    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # pragma: no cover - a client that cannot tell
            return 1
    return n_local_workers()


# Per-image partial results (the rows one image contributes, and its local-porosity counts)
# live beside the tables, so that the reduce step can resume without recomputing images.
_PARTS = ("images", "cracks", "particles")


def _partial_dir(st, image_id) -> Path:
    return Path(st.tables_dir) / "per_image" / image_id


def _has_partial(st, image_id) -> bool:
    return (_partial_dir(st, image_id) / "COMPLETE").exists()


def _save_partial(st, image_id, desc) -> None:
    import pandas as pd

    d = _partial_dir(st, image_id)
    (d / "COMPLETE").unlink(missing_ok=True)
    d.mkdir(parents=True, exist_ok=True)
    for name in _PARTS:
        getattr(desc, name if name != "images" else "image").to_parquet(d / f"{name}.parquet", index=False)
    rows = [
        {"model": m, "bin": j, "crack_px": int(c[j]), "solid_px": int(s[j])}
        for m, (c, s) in desc.local.items()
        for j in range(len(c))
    ]
    pd.DataFrame(rows, columns=["model", "bin", "crack_px", "solid_px"]).to_parquet(d / "local.parquet", index=False)
    (d / "COMPLETE").write_text("ok\n")


def _load_partial(st, image_id):
    import numpy as np
    import pandas as pd

    from ..io.tables import conform
    from ..measure.image import ImageDescription

    d = _partial_dir(st, image_id)
    parts = {n: conform(pd.read_parquet(d / f"{n}.parquet"), n) for n in _PARTS}
    loc = pd.read_parquet(d / "local.parquet")
    local = {}
    for m, g in loc.groupby("model", sort=False):
        g = g.sort_values("bin")
        local[m] = (g["crack_px"].to_numpy(np.int64), g["solid_px"].to_numpy(np.int64))
    return ImageDescription(image=parts["images"], cracks=parts["cracks"], particles=parts["particles"], local=local)


def _label_image(st, iid, params, client, dcenter):
    """Crack and particle labels (eq. 2, 8–10) and the image's rows, tiled on the store's chunks."""
    from ..measure.tiled import describe_phase_dask

    compute_kw = {"scheduler": client} if client is not None else {}
    phase = st.read_stage(iid, "phase")
    eta = st.pixel_size_um(iid, "phase")
    desc = describe_phase_dask(
        phase, image_id=iid, condition=st.condition(iid), pixel_size_um=eta, params=params,
        dcenter=dcenter, client=client, keep_labels=True,
    )
    st.write_stage(iid, "labels/cracks", desc.crack_labels, pixel_size_um=eta, kind="labels",
                   params={"convention": "DESIGN §4.4 items 1-4"}, compute_kw=compute_kw)
    st.write_stage(iid, "labels/particles", desc.particle_labels, pixel_size_um=eta, kind="labels",
                   params=params.to_dict(), compute_kw=compute_kw)
    _save_partial(st, iid, desc)


def report_study(store, out, *, truth=None) -> Path:
    """Build the report folder from the store's tables."""
    from ..io.store import open_store
    from ..io.tables import SCHEMAS, read_table
    from ..report.build import build_report

    st = open_store(store, mode="r")
    tdir = Path(st.tables_dir)
    missing = [n for n in SCHEMAS if not (tdir / f"{n}.parquet").exists()]
    if missing:
        raise CathodeflowError(f"{store}: tables {missing} not computed yet; run `cathodeflow run --store {store}` first")
    tables = {n: read_table(tdir / f"{n}.parquet", n) for n in SCHEMAS}
    return Path(build_report(tables, out, truth=truth))
