"""Chunk-level resume inside a stage (``cathodeflow run`` interrupted mid-stage).

A real failure is injected into the stage's own Dask graph: the stage function's output goes
through a block function that raises once ``FAIL_AFTER`` blocks have been computed, so the
run dies with k of n chunks written. The rerun must write only the n − k missing chunks.

Ground truth, never the code under test: which chunks were written comes from the store's
chunk files (``<stage>/0/c/<i>/<j>``: their inode and mtime change whenever Zarr writes a
chunk, atomically through a new file), which chunks were computed from the test's own block
function, and the expected arrays and tables from an uninterrupted run of the same image.
The pipeline tests are marked slow (a few runs of one 104 × 156 px image); the store's own
tests are fast. tests/test_s3_store.py resumes a stage on an s3:// store the same way.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import dask.array as da

from cathodeflow.config import Params
from cathodeflow.io.sem import write_tiff
from cathodeflow.io.store import CHUNK_MARKS, create_store, open_store
from cathodeflow.study.pipeline import ingest, run_study
from cathodeflow.synth import generate_image

CHUNK = 64  # px: the sr grid (280 × 420 px) in 5 × 7 = 35 chunks
PARAMS = Params(marker_radius_um=0.143, chunk_px=CHUNK)  # marker radius 10 px at 0.0143 µm
SMALL = dict(shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)
N_CHUNKS = 5 * 7
FAIL_AFTER = 12  # blocks computed before the injected failure


class Injected(RuntimeError):
    """The failure the test injects (not an error of cathodeflow)."""


class Blocks:
    """A block function for ``map_blocks``: records each block it computes (by its chunk
    index) and raises :class:`Injected` instead of computing block ``fail_after + 1``."""

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.computed: list[tuple[int, ...]] = []

    def __call__(self, block, block_info=None):
        if self.fail_after is not None and len(self.computed) >= self.fail_after:
            raise Injected(f"injected after {len(self.computed)} blocks")
        self.computed.append(tuple(block_info[0]["chunk-location"]))
        return block

    def wrap(self, array):
        """``array`` on the stored chunks, through this block function."""
        array = array.rechunk(CHUNK)
        return array.map_blocks(self, dtype=array.dtype, meta=np.empty((0,) * array.ndim, array.dtype))


def _inject(monkeypatch, module, name, blocks: Blocks, *, pos: int = 0):
    """Route the output of ``module.name`` (element ``pos`` of a tuple result) through ``blocks``."""
    real = getattr(module, name)

    def stage(*args, **kwargs):
        out = real(*args, **kwargs)
        if isinstance(out, tuple):
            return (*out[:pos], blocks.wrap(out[pos]), *out[pos + 1:])
        return blocks.wrap(out)

    monkeypatch.setattr(module, name, stage)


def _chunk_files(store, iid: str, rel: str) -> dict[tuple[int, int], tuple[int, int]]:
    """Chunk index -> (inode, mtime_ns) of every chunk file of a stored array (ground truth
    of what was written, read from the folder)."""
    root = store / "images" / iid / rel / "0" / "c"
    out = {}
    for f in root.rglob("*"):
        if f.is_file():
            st = f.stat()
            out[tuple(int(p) for p in f.relative_to(root).parts)] = (st.st_ino, st.st_mtime_ns)
    return out


def _grid() -> set[tuple[int, int]]:
    return {(i, j) for i in range(5) for j in range(7)}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    im = generate_image("20C", seed=3, image_id="20C_000", **SMALL)  # no chunk of its phase map is all 0
    return write_tiff(tmp / "20C_000.tif", im.lr, pixel_size_um=im.pixel_size_lr_um)


@pytest.fixture(scope="module")
def reference(image, tmp_path_factory):
    """The uninterrupted run: (store, tables)."""
    store = tmp_path_factory.mktemp("reference") / "study.zarr"
    ingest([image], store=store, condition="20C")
    tables = run_study(store, params=PARAMS, scheduler="sync")
    for rel in ("sr", "sr/labels/phase"):  # every chunk holds data, so each write leaves a file
        assert set(_chunk_files(store, "20C_000", rel)) == _grid(), rel
    return store, tables


def _assert_equal_to_reference(store, tables, reference):
    ref_store, ref_tables = reference
    st, ref = open_store(store, mode="r"), open_store(ref_store, mode="r")
    for stage in ("sr", "phase", "labels/cracks", "labels/particles"):
        np.testing.assert_array_equal(st.read_stage("20C_000", stage).compute(),
                                      ref.read_stage("20C_000", stage).compute(), err_msg=stage)
    assert len(ref_tables["particles"]) > 0 and len(ref_tables["cracks"]) > 0  # not an empty comparison
    for name, table in ref_tables.items():
        pd.testing.assert_frame_equal(tables[name], table, obj=name)


def _interrupt_and_resume(store, monkeypatch, module, name, stage, rel):
    """Run with ``module.name``'s output failing after FAIL_AFTER blocks, then again; check
    that the rerun computed and wrote only the chunks the first run had not written (chunk
    files of ``rel``). Returns (k chunks kept, the rerun's tables)."""
    with monkeypatch.context() as mp:
        _inject(mp, module, name, Blocks(fail_after=FAIL_AFTER))
        with pytest.raises(Injected):
            run_study(store, params=PARAMS, scheduler="sync")
    assert open_store(store, mode="r").stage_status("20C_000", stage) == "incomplete"
    written = _chunk_files(store, "20C_000", rel)
    assert 0 < len(written) < N_CHUNKS

    spy = Blocks()
    with monkeypatch.context() as mp:
        _inject(mp, module, name, spy)
        tables = run_study(store, params=PARAMS, scheduler="sync")
    after = _chunk_files(store, "20C_000", rel)
    assert set(after) == _grid()
    assert {c for c in after if after[c] == written.get(c)} == set(written)  # the k chunks kept, untouched
    assert sorted(spy.computed) == sorted(_grid() - set(written))  # only the n − k others computed
    return len(written), tables


@pytest.mark.slow  # runs the pipeline (this file's pipeline tests: ~30 s of CPU in all)
def test_a_run_failing_mid_sr_resumes_with_only_the_unwritten_sr_chunks(image, reference, tmp_path, monkeypatch):
    import cathodeflow.stages.superres as superres

    store = tmp_path / "study.zarr"
    ingest([image], store=store, condition="20C")
    k, tables = _interrupt_and_resume(store, monkeypatch, superres, "superres_any_size_dask", "sr", "sr")
    rec = open_store(store, mode="r").stage_info("20C_000", "sr")
    assert rec["complete"] is True and rec["chunks_kept"] == k
    assert not (store / "images" / "20C_000" / "sr" / CHUNK_MARKS).exists()  # the marks go with completion
    _assert_equal_to_reference(store, tables, reference)


@pytest.mark.slow  # runs the pipeline (this file's pipeline tests: ~30 s of CPU in all)
def test_a_run_failing_mid_phase_keeps_sr_and_resumes_with_only_the_unwritten_phase_chunks(
        image, reference, tmp_path, monkeypatch):
    import cathodeflow.stages.phases as phases

    store = tmp_path / "study.zarr"
    ingest([image], store=store, condition="20C")
    run_study(store, params=PARAMS, scheduler="sync", to_stage="sr")
    sr_files = _chunk_files(store, "20C_000", "sr")
    _, tables = _interrupt_and_resume(store, monkeypatch, phases, "phases_baseline_dask", "phase",
                                      "sr/labels/phase")
    assert _chunk_files(store, "20C_000", "sr") == sr_files  # the complete sr stage was not rewritten
    _assert_equal_to_reference(store, tables, reference)


@pytest.mark.slow  # runs the pipeline (this file's pipeline tests: ~30 s of CPU in all)
def test_from_forces_an_interrupted_stage_to_be_rewritten_whole(image, reference, tmp_path, monkeypatch):
    import cathodeflow.stages.superres as superres

    store = tmp_path / "study.zarr"
    ingest([image], store=store, condition="20C")
    with monkeypatch.context() as mp:
        _inject(mp, superres, "superres_any_size_dask", Blocks(fail_after=FAIL_AFTER))
        with pytest.raises(Injected):
            run_study(store, params=PARAMS, scheduler="sync", to_stage="sr")
    written = _chunk_files(store, "20C_000", "sr")
    assert 0 < len(written) < N_CHUNKS
    spy = Blocks()
    with monkeypatch.context() as mp:
        _inject(mp, superres, "superres_any_size_dask", spy)
        run_study(store, params=PARAMS, scheduler="sync", from_stage="sr", to_stage="sr")
    after = _chunk_files(store, "20C_000", "sr")
    assert sorted(spy.computed) == sorted(_grid())  # every chunk computed again
    assert all(after[c] != written[c] for c in written)  # and rewritten
    rec = open_store(store, mode="r").stage_info("20C_000", "sr")
    assert rec["complete"] is True and "chunks_kept" not in rec
    np.testing.assert_array_equal(open_store(store, mode="r").read_stage("20C_000", "sr").compute(),
                                  open_store(reference[0], mode="r").read_stage("20C_000", "sr").compute())


# ------------------------------------------------------------------ the store itself


def _lazy(values: np.ndarray, chunks, blocks: Blocks):
    """``values`` as a Dask array of ``chunks`` through ``blocks``."""
    return da.from_array(values, chunks=chunks).map_blocks(blocks, dtype=values.dtype,
                                                           meta=np.empty((0, 0), values.dtype))


def _ramp(shape=(100, 130)) -> np.ndarray:
    return (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1.0)  # no chunk is all zero


@pytest.mark.parametrize("change, kept", [({}, True), ({"params": {"run": 2}}, False),
                                          ({"pixel_size_um": 0.03}, False), ({"chunks": (25, 26)}, False)])
def test_a_resumed_write_keeps_the_marked_chunks_only_when_its_record_is_the_interrupted_ones(
        tmp_path, change, kept):
    truth = _ramp()
    st = create_store(tmp_path / "s.zarr")
    st.add_image("a", truth[:10, :10], condition="C", pixel_size_um=0.05)
    base = dict(pixel_size_um=0.02, params={"run": 1}, chunks=(20, 26))  # 5 × 5 chunks

    with pytest.raises(Injected):
        st.write_stage("a", "sr", _lazy(truth, (20, 26), Blocks(fail_after=7)), resume=True,
                       compute_kw={"scheduler": "sync"}, **base)
    written = _chunk_files(tmp_path / "s.zarr", "a", "sr")
    k = len(written)
    assert 0 < k <= 7 and st.stage_status("a", "sr") == "incomplete"

    spy = Blocks()
    args = {**base, **change}
    st.write_stage("a", "sr", _lazy(truth, args["chunks"], spy), resume=True, compute_kw={"scheduler": "sync"},
                   **args)
    n = (-(-100 // args["chunks"][0])) * (-(-130 // args["chunks"][1]))
    assert len(spy.computed) == (n - k if kept else n)
    after = _chunk_files(tmp_path / "s.zarr", "a", "sr")
    assert len(after) == n
    assert sum(after.get(c) == written[c] for c in written) == (k if kept else 0)
    np.testing.assert_array_equal(st.read_stage("a", "sr").compute(), truth)


def test_a_resumed_write_of_a_complete_stage_with_the_same_record_writes_nothing(tmp_path):
    truth = _ramp()
    st = create_store(tmp_path / "s.zarr")
    st.add_image("a", truth[:10, :10], condition="C", pixel_size_um=0.05)
    kw = dict(pixel_size_um=0.02, params={"run": 1}, chunks=(20, 26), compute_kw={"scheduler": "sync"})
    st.write_stage("a", "sr", da.from_array(truth, chunks=(20, 26)), resume=True, **kw)
    files, rec = _chunk_files(tmp_path / "s.zarr", "a", "sr"), st.stage_info("a", "sr")
    spy = Blocks()
    st.write_stage("a", "sr", _lazy(truth, (20, 26), spy), resume=True, **kw)
    assert spy.computed == [] and _chunk_files(tmp_path / "s.zarr", "a", "sr") == files
    assert st.stage_info("a", "sr") == rec
    st.mark_incomplete("a", "sr")  # marked for recomputation: written whole
    st.write_stage("a", "sr", _lazy(truth, (20, 26), spy), resume=True, **kw)
    assert len(spy.computed) == 25 and st.is_complete("a", "sr")


@pytest.mark.slow  # the U-net (keras) on one image, three times: ~40 s
def test_a_unet_run_failing_mid_prob_resumes_prob_and_other_parameters_rewrite_it_whole(image, tmp_path, monkeypatch):
    """``prob`` (the U-net's Ŷ, float16: every chunk non-zero) is resumed chunk by chunk; a
    changed crack threshold t (eq. 7) makes the phase stage, ``prob`` included, be written
    whole, as a phase stage made with other parameters is (DESIGN §4.1)."""
    import cathodeflow.stages.unet as unet
    from _unet import tiny_weights

    params = Params(marker_radius_um=0.143, chunk_px=CHUNK, phase_method="unet", unet_tile_px=64,
                    unet_weights=tiny_weights(tmp_path))
    store = tmp_path / "study.zarr"
    ingest([image], store=store, condition="20C")
    run_study(store, params=params, scheduler="sync", to_stage="sr")
    with monkeypatch.context() as mp:
        _inject(mp, unet, "unet_stage_dask", Blocks(fail_after=FAIL_AFTER))
        with pytest.raises(Injected):
            run_study(store, params=params, scheduler="sync", to_stage="phase")
    written = {(i, j): v for (_, i, j), v in _chunk_files(store, "20C_000", "sr/prob").items()}
    k = len(written)
    assert 0 < k < N_CHUNKS

    spy = Blocks()
    with monkeypatch.context() as mp:
        _inject(mp, unet, "unet_stage_dask", spy)
        run_study(store, params=params, scheduler="sync", to_stage="phase")
    after = {(i, j): v for (_, i, j), v in _chunk_files(store, "20C_000", "sr/prob").items()}
    assert set(after) == _grid() and {c for c in after if after[c] == written.get(c)} == set(written)
    assert sorted((i, j) for i, j, _ in spy.computed) == sorted(_grid() - set(written))
    resumed = open_store(store, mode="r").read_stage("20C_000", "prob").compute()

    reference = tmp_path / "reference.zarr"  # uninterrupted
    ingest([image], store=reference, condition="20C")
    run_study(reference, params=params, scheduler="sync", to_stage="phase")
    ref = open_store(reference, mode="r")
    np.testing.assert_array_equal(resumed, ref.read_stage("20C_000", "prob").compute())
    np.testing.assert_array_equal(open_store(store, mode="r").read_stage("20C_000", "phase").compute(),
                                  ref.read_stage("20C_000", "phase").compute())

    spy = Blocks()
    with monkeypatch.context() as mp:
        _inject(mp, unet, "unet_stage_dask", spy)
        run_study(store, params=replace(params, crack_threshold=0.3), scheduler="sync", to_stage="phase")
    again = {(i, j): v for (_, i, j), v in _chunk_files(store, "20C_000", "sr/prob").items()}
    assert sorted((i, j) for i, j, _ in spy.computed) == sorted(_grid())  # all recomputed
    assert all(again[c] != after[c] for c in _grid())  # and rewritten
    assert open_store(store, mode="r").stage_info("20C_000", "phase")["params"]["crack_threshold"] == 0.3


def test_ls_shows_how_many_chunks_an_interrupted_stage_keeps(tmp_path):
    from cathodeflow.study.inventory import format_summary, summarize_store

    truth = _ramp()
    st = create_store(tmp_path / "s.zarr")
    st.add_image("a", truth[:10, :10], condition="C", pixel_size_um=0.05)
    kw = dict(pixel_size_um=0.02, params={"run": 1}, chunks=(20, 26), compute_kw={"scheduler": "sync"})
    with pytest.raises(Injected):
        st.write_stage("a", "sr", _lazy(truth, (20, 26), Blocks(fail_after=7)), resume=True, **kw)
    k = len(_chunk_files(tmp_path / "s.zarr", "a", "sr"))  # ground truth: the chunk files written
    assert 0 < k < 25 and st.chunks_written("a", "sr") == (k, 25)
    entry = summarize_store(tmp_path / "s.zarr")["images"][0]["stages"]["sr"]
    assert entry["status"] == "incomplete" and entry["chunks_written"] == [k, 25]
    assert f"…{k}/25" in format_summary(summarize_store(tmp_path / "s.zarr"))
    st.write_stage("a", "sr", _lazy(truth, (20, 26), Blocks()), resume=True, **kw)
    assert st.chunks_written("a", "sr") is None  # complete: the marks are gone
    assert summarize_store(tmp_path / "s.zarr")["images"][0]["stages"]["sr"]["chunks_written"] is None
