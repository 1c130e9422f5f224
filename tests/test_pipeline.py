"""The pipeline over a real study store: ingest real TIFF files, run every stage, resume.

Small synthetic scenes (small particles, marker radius 10 px) keep this fast; the full-size
study is what `make demo` runs.
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cathodeflow.config import Params
from cathodeflow.errors import InputError
from cathodeflow.io.sem import write_tiff
from cathodeflow.io.store import open_store
from cathodeflow.measure.frame import frame_fraction
from cathodeflow.report.build import report_tables
from cathodeflow.stages.resample import resampled_shape
from cathodeflow.study.describe import describe
from cathodeflow.study.pipeline import current_tables_dir, ingest, run_study
from cathodeflow.synth import generate_image

PARAMS = Params(marker_radius_um=0.143)  # 10 px at the sr grid's 0.0143 µm
SMALL = dict(shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)
CLI = [sys.executable, "-m", "cathodeflow.cli"]


def _write_study(tmp_path, conditions=("20C", "50C")):
    files = {}
    truth = {}
    for k, cond in enumerate(conditions):
        im = generate_image(cond, seed=k, image_id=f"{cond}_000", **SMALL)
        path = tmp_path / f"{im.image_id}.tif"
        write_tiff(path, im.lr, pixel_size_um=im.pixel_size_lr_um)
        files[cond] = path
        truth[im.image_id] = im
    return files, truth


@pytest.fixture
def study(tmp_path):
    files, truth = _write_study(tmp_path)
    store = tmp_path / "study.zarr"
    for cond, path in files.items():
        ingest([path], store=store, condition=cond)
    return store, truth


# run's labels stage computes an image of at most whole_image_px pixels in one task (the
# default for these small images), a larger one tiled on the stored chunks: both must give
# describe()'s tables and labels
@pytest.mark.parametrize("params", [PARAMS, PARAMS.replace(chunk_px=128, whole_image_px=0)],
                         ids=["whole-image labels", "tiled labels, 3 x 4 chunks"])
def test_pipeline_tables_equal_describe_on_the_stored_phase_maps(study, params, tiled_describe_calls):
    store, truth = study
    tables = run_study(store, params=params, scheduler="threads")
    assert len(tiled_describe_calls) == (0 if params.whole_image_px else len(truth))
    st = open_store(store, mode="r")
    assert sorted(tables["images"]["image_id"]) == sorted(truth)
    assert dict(zip(tables["images"]["image_id"], tables["images"]["condition"])) == {
        i: im.condition for i, im in truth.items()
    }
    # every stage is complete, on the high-resolution grid of the generator
    for iid, im in truth.items():
        for stage in ("raw", "sr", "phase", "labels/cracks", "labels/particles"):
            assert st.is_complete(iid, stage), stage
        assert st.read_stage(iid, "phase").shape == im.phase.shape
        assert st.pixel_size_um(iid, "phase") == pytest.approx(im.pixel_size_hr_um)
    # the tables of the pipeline (per image, then pooled) equal describe() on the stored
    # phase maps (whole images)
    phases = {i: st.read_stage(i, "phase").compute() for i in st.image_ids()}
    ref = describe(phases, pixel_size_um=[st.pixel_size_um(i, "phase") for i in phases],
                   condition=[st.condition(i) for i in phases], params=PARAMS, scheduler="sync")
    assert all(st.read_stage(i, "phase").chunksize[0] <= params.chunk_px for i in phases)
    # frame_fraction is measured on the raw image at ingest; a phase map alone does not know it
    raw_frame = [frame_fraction(np.asarray(st.read_stage(i, "raw"))) for i in tables["images"]["image_id"]]
    assert tables["images"]["frame_fraction"].tolist() == raw_frame
    assert ref["images"]["frame_fraction"].isna().all()
    tables["images"]["frame_fraction"] = np.nan
    for name in ref:
        pd.testing.assert_frame_equal(tables[name], ref[name], check_exact=False, rtol=1e-12)
    # and the stored labels are the ones describe() segments
    from cathodeflow.stages.particles import particle_labels

    for iid, ph in phases.items():
        np.testing.assert_array_equal(
            st.read_stage(iid, "labels/particles").compute(), particle_labels(ph, marker_radius_px=10)
        )
    # parquet tables and a report land where the README says
    assert (Path(st.tables_dir) / "conditions.parquet").exists()
    index = report_tables(current_tables_dir(store), store.parent / "report")
    assert index.exists() and (index.parent / "table1.csv").exists()


def test_run_labels_in_task_on_a_cluster_writes_what_the_threaded_run_writes(study):
    """``tiled_images='in-task'``: each image's tiled labels stage is one task, in which a
    worker reads the phase map, labels and measures it tile by tile and writes the labels and
    the image's rows to the store itself; tables and labels equal the threaded (spread) run's."""
    from distributed import get_task_stream

    from cathodeflow.study.cluster import local_cluster

    store, truth = study
    params = PARAMS.replace(chunk_px=128, whole_image_px=0)
    ref = run_study(store, params=params, scheduler="threads")
    st = open_store(store, mode="r")
    ref_labels = {(i, a): st.read_stage(i, a).compute() for i in truth for a in ("labels/cracks", "labels/particles")}
    ends = {i: st.stage_info(i, "labels/particles")["end_utc"] for i in truth}
    with local_cluster(2) as client:
        with get_task_stream(client=client) as ts:
            got = run_study(store, params=params.replace(tiled_images="in-task"), scheduler=client,
                            from_stage="labels")
    keys = [str(r["key"]) for r in ts.data]
    assert sum("_label_image_here" in k for k in keys) == len(truth) == len(keys), keys
    st = open_store(store, mode="r")
    assert all(st.stage_info(i, "labels/particles")["end_utc"] > ends[i] for i in truth)  # rewritten
    for (i, a), lab in ref_labels.items():
        assert st.is_complete(i, a)
        np.testing.assert_array_equal(st.read_stage(i, a).compute(), lab)
    for name in ref:
        pd.testing.assert_frame_equal(got[name], ref[name], check_exact=True)


def test_interrupted_stage_is_recomputed_and_complete_stages_are_kept(study):
    store, truth = study
    run_study(store, params=PARAMS, scheduler="threads")
    st = open_store(store)
    a, b = sorted(truth)
    before = {(i, s): st.stage_info(i, s)["end_utc"] for i in (a, b) for s in ("sr", "phase", "labels/particles")}
    phase_a = st.read_stage(a, "phase").compute()
    st.mark_incomplete(a, "phase")  # as if the run had died while writing a's phase
    time.sleep(0.01)
    run_study(store, params=PARAMS, scheduler="threads")
    st = open_store(store)
    after = {(i, s): st.stage_info(i, s)["end_utc"] for i in (a, b) for s in ("sr", "phase", "labels/particles")}
    assert after[(a, "sr")] == before[(a, "sr")]  # complete: kept
    assert after[(a, "phase")] != before[(a, "phase")]  # incomplete: recomputed
    assert after[(a, "labels/particles")] != before[(a, "labels/particles")]  # its input changed
    assert all(after[(b, s)] == before[(b, s)] for s in ("sr", "phase", "labels/particles"))
    np.testing.assert_array_equal(st.read_stage(a, "phase").compute(), phase_a)


def _labels(store):
    st = open_store(store, mode="r")
    return {(i, s): st.read_stage(i, s).compute() for i in st.image_ids() for s in ("labels/cracks", "labels/particles")}


# on a cluster, a whole-image task's label arrays are written to the store by the workers
# (they never come back to the client): the same tables and the same stored labels
def test_pipeline_on_a_real_local_cluster_equals_threads(study):
    store, _ = study
    t1 = run_study(store, params=PARAMS, scheduler="threads")
    labels1 = _labels(store)
    t2 = run_study(store, params=PARAMS, scheduler="local", from_stage="sr")
    for name in t1:
        pd.testing.assert_frame_equal(t1[name], t2[name])
    labels2 = _labels(store)
    assert labels2.keys() == labels1.keys() and len(labels1) == 4
    for key, lab in labels1.items():
        assert lab.max() > 0
        np.testing.assert_array_equal(labels2[key], lab)


def test_whole_image_labels_on_a_cluster_come_back_as_arrays_of_the_workers_result(study):
    import dask.array as da
    from distributed import Client, LocalCluster

    from cathodeflow.measure.describe import whole_image_task
    from cathodeflow.measure.image import describe_phase
    from cathodeflow.study.pipeline import _whole_on_cluster

    store, _ = study
    run_study(store, params=PARAMS, scheduler="threads")
    st = open_store(store, mode="r")
    iid = st.image_ids()[0]
    phase = st.read_stage(iid, "phase").compute()
    kw = dict(image_id=iid, condition="20C", pixel_size_um=st.pixel_size_um(iid, "phase"), params=PARAMS,
              keep_labels=True)
    local = describe_phase(phase, **kw)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        with _whole_on_cluster(whole_image_task(phase, **kw), phase.shape, client) as desc:
            assert isinstance(desc.crack_labels, da.Array) and isinstance(desc.particle_labels, da.Array)
            np.testing.assert_array_equal(desc.crack_labels.compute(scheduler=client), local.crack_labels)
            np.testing.assert_array_equal(desc.particle_labels.compute(scheduler=client), local.particle_labels)
            pd.testing.assert_frame_equal(desc.particles, local.particles)
        assert desc.crack_labels is None and desc.particle_labels is None
        assert not client.futures  # the worker's result released on leaving


def test_ingest_refuses_non_string_condition_and_leaves_store_unchanged(study):
    store, truth = study
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    with pytest.raises(InputError, match="condition must be a string"):
        ingest([next(iter(Path(store).parent.glob("*.tif")))], store=store, condition=20)
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def _snapshot(path: Path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["missing", "truncated", "no_pixel_size", "other_store"])
def test_cli_ingest_bad_input_one_line_error_exit_2_store_unchanged(tmp_path, study, case):
    store, _ = study
    good = next(Path(store).parent.glob("*.tif"))
    target = store
    if case == "missing":
        f = tmp_path / "nope.tif"
    elif case == "truncated":
        f = tmp_path / "cut.tif"
        f.write_bytes(good.read_bytes()[:3000])
    elif case == "no_pixel_size":
        import tifffile

        f = tmp_path / "plain.tif"
        tifffile.imwrite(f, np.zeros((26, 26), np.uint8))
    else:
        import zarr

        target = tmp_path / "other.zarr"
        zarr.open_group(str(target), mode="w").attrs["something"] = "else"
        f = good
    before = _snapshot(target)
    r = subprocess.run(CLI + ["ingest", str(f), "--store", str(target), "--condition", "20C"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cathodeflow: error:")
    assert (str(target) if case == "other_store" else f.name) in lines[0]
    assert _snapshot(target) == before


def test_cli_run_and_report_on_the_store(study, tmp_path):
    store, _ = study
    r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads",
                              "--marker-radius-um", "0.143"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(CLI + ["report", "--store", str(store), "--out", str(tmp_path / "rep")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    t1 = pd.read_csv(tmp_path / "rep" / "table1.csv")
    assert list(t1["condition"]) == ["20C", "50C"]


def test_cli_ingest_and_run_an_image_whose_size_is_no_multiple_of_13(tmp_path):
    im = generate_image("20C", seed=3, image_id="odd", **SMALL)
    lr = im.lr[:101, :149]  # 101 x 149: neither is a multiple of 13
    f = tmp_path / "odd.tif"
    write_tiff(f, lr, pixel_size_um=im.pixel_size_lr_um)
    store = tmp_path / "s.zarr"
    r = subprocess.run(CLI + ["ingest", str(f), "--store", str(store), "--condition", "20C"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads", "--marker-radius-um", "0.143"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    st = open_store(store, mode="r")
    assert st.read_stage("odd", "sr").shape == (101 * 35 // 13, 149 * 35 // 13) == st.read_stage("odd", "phase").shape
    assert st.pixel_size_um("odd", "sr") == pytest.approx(im.pixel_size_lr_um * 13 / 35, rel=1e-9)
    assert (store / "tables" / "images.parquet").exists()


def _fine_copy(im, factor: int):
    """The generator's 14.3 nm image interpolated onto pixels ``factor`` times finer (linear,
    pixel centres kept), standing in for an acquisition at η / factor."""
    from scipy import ndimage as ndi

    H, W = im.hr.shape
    ys = (np.arange(H * factor) + 0.5) / factor - 0.5
    xs = (np.arange(W * factor) + 0.5) / factor - 0.5
    return ndi.map_coordinates(im.hr.astype(np.float32), np.meshgrid(ys, xs, indexing="ij"), order=1,
                               mode="nearest").round().astype(im.hr.dtype)


def test_classical_phase_stage_segments_an_image_at_another_pixel_size_on_the_143_nm_grid(tmp_path):
    """--sr-method none on an image at η/2: the classical method's options in pixels were
    chosen at η, so the phase stage resamples it onto the η grid (field of view kept) and
    the phase map matches the generator's truth there; the provenance says so; chunked ==
    one chunk."""
    im = generate_image("20C", seed=5, image_id="fine", **SMALL)
    f = tmp_path / "fine.tif"
    write_tiff(f, _fine_copy(im, 2), pixel_size_um=im.pixel_size_hr_um / 2)
    phases = {}
    for chunk in (4096, 160):
        store = tmp_path / f"s{chunk}.zarr"
        ingest([f], store=store, condition="20C")
        r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads", "--marker-radius-um",
                                  "0.143", "--sr-method", "none", "--chunk-size", str(chunk)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "warning" not in r.stderr  # nothing to warn about: it is resampled
        st = open_store(store, mode="r")
        assert st.pixel_size_um("fine", "sr") == pytest.approx(im.pixel_size_hr_um / 2)
        assert st.pixel_size_um("fine", "phase") == pytest.approx(0.0143, rel=1e-12)
        prov = st.stage_info("fine", "phase")["params"]
        assert prov["resampled"] is True and prov["input_pixel_size_um"] == pytest.approx(im.pixel_size_hr_um / 2)
        assert prov["input_shape"] == [2 * n for n in im.phase.shape]
        phases[chunk] = np.asarray(st.read_stage("fine", "phase"))
        assert (store / "tables" / "images.parquet").exists()
    assert phases[4096].shape == im.phase.shape
    assert np.mean(phases[4096] == im.phase) > 0.95
    np.testing.assert_array_equal(phases[160], phases[4096])


def test_an_image_acquired_at_high_resolution_is_segmented_as_it_is_by_default(tmp_path):
    # the generator's 14.3 nm image: the default sr method (auto) leaves it as it is, as
    # --sr-method none does (same pixel size, same shape), so the phase map is on the
    # truth's grid; both record the method they used, 'none', so neither recomputes the other
    im = generate_image("20C", seed=5, image_id="hr", **SMALL)
    f = tmp_path / "hr.tif"
    write_tiff(f, im.hr, pixel_size_um=im.pixel_size_hr_um)
    store = tmp_path / "s.zarr"
    ingest([f], store=store, condition="20C")
    r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads", "--marker-radius-um", "0.143"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr  # no pixel-size warning
    st = open_store(store, mode="r")
    np.testing.assert_array_equal(np.asarray(st.read_stage("hr", "sr")), np.asarray(st.read_stage("hr", "raw")))
    assert st.pixel_size_um("hr", "sr") == st.pixel_size_um("hr", "phase") == pytest.approx(im.pixel_size_hr_um)
    assert st.stage_info("hr", "sr")["params"]["method"] == "none"
    assert st.stage_info("hr", "sr")["params"]["params"]["sr_method"] == "none"
    phase = np.asarray(st.read_stage("hr", "phase"))
    assert phase.shape == im.phase.shape and np.mean(phase == im.phase) > 0.95
    assert st.stage_info("hr", "phase")["params"]["resampled"] is False
    r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads", "--marker-radius-um", "0.143",
                              "--sr-method", "none"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "recomputed" not in r.stderr and " done" not in r.stderr, r.stderr
    # --sr-method baseline interpolates it by 35/13 again, and says how to avoid that; the
    # classical phase stage then takes the 5.3 nm image back to the 14.3 nm grid
    r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads", "--marker-radius-um", "0.143",
                              "--sr-method", "baseline"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "hr: sr recomputed (sr_method \"none\" -> \"baseline\")" in r.stderr
    assert "--sr-method none" in r.stderr
    st = open_store(store, mode="r")
    assert st.read_stage("hr", "sr").shape == tuple(n * 35 // 13 for n in im.phase.shape)
    assert st.read_stage("hr", "phase").shape == im.phase.shape
    assert st.pixel_size_um("hr", "phase") == pytest.approx(0.0143, rel=1e-12)


def test_auto_super_resolves_the_low_res_image_and_leaves_the_high_res_one_of_one_store(tmp_path):
    im = generate_image("20C", seed=6, image_id="x", **SMALL)
    for name, image, px in (("lr", im.lr, im.pixel_size_lr_um), ("hr", im.hr, im.pixel_size_hr_um)):
        write_tiff(tmp_path / f"{name}.tif", image, pixel_size_um=px)
    store = tmp_path / "s.zarr"
    ingest([tmp_path / "lr.tif", tmp_path / "hr.tif"], store=store, condition="20C")
    run_study(store, params=Params(marker_radius_um=0.143), scheduler="sync", to_stage="phase")
    st = open_store(store, mode="r")
    assert [st.stage_info(i, "sr")["params"]["method"] for i in ("lr", "hr")] == ["baseline-interpolation", "none"]
    assert st.read_stage("lr", "sr").shape == tuple(n * 35 // 13 for n in im.lr.shape)
    assert st.read_stage("hr", "sr").shape == im.hr.shape
    # both phase maps on the 14.3 nm grid, the same field of view
    assert st.pixel_size_um("lr", "phase") == pytest.approx(0.0143) == st.pixel_size_um("hr", "phase")


@pytest.mark.slow
def test_demo_runs_end_to_end_with_one_image_per_condition(tmp_path):
    from cathodeflow.study.demo import run_demo

    demo = run_demo(tmp_path / "demo", n_images=1, scheduler="threads")
    index = report_tables(current_tables_dir(demo.store), tmp_path / "demo" / "report", truth=demo.truth)
    t1 = pd.read_csv(index.parent / "table1.csv")
    assert list(t1["condition"]) == ["20C", "30C", "40C", "50C"]


ZEISS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tio2-sem-bam" / "images" / "1908248.tif"


@pytest.mark.skipif(not ZEISS.exists(), reason=f"real Zeiss example not present at {ZEISS} (shared/data beside the repo)")
def test_real_zeiss_frame_of_712_rows_runs_end_to_end_and_the_unet_refuses_it_super_resolved(tmp_path):
    store = tmp_path / "z.zarr"
    r = subprocess.run(CLI + ["ingest", str(ZEISS), "--store", str(store), "--condition", "real"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    st = open_store(store, mode="r")
    assert st.read_stage("1908248", "raw").shape == (712, 1024)
    # 7.344 nm: high resolution already, so the sr stage (auto) leaves it as it is, and the
    # classical phase stage works on the 14.3 nm grid (field of view kept)
    assert st.read_stage("1908248", "sr").shape == (712, 1024)
    assert st.read_stage("1908248", "phase").shape == resampled_shape((712, 1024), 0.007344, 0.0143)
    assert st.pixel_size_um("1908248", "phase") == pytest.approx(0.0143, rel=1e-12)
    before = {p: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}
    # super-resolved by 35/13, 2.7 nm: 0.19× the U-net's 14.3 nm, refused without --force
    r = subprocess.run(CLI + ["run", "--store", str(store), "--phase-method", "unet", "--sr-method", "baseline",
                              "--from", "sr"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--force" in r.stderr and "1908248" in r.stderr
    assert {p: p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()} == before


def test_cli_ingest_of_two_files_with_one_stem_refuses_both_and_writes_nothing(tmp_path):
    im = generate_image("20C", seed=4, image_id="x", **SMALL)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    f1, f2 = tmp_path / "a" / "same.tif", tmp_path / "b" / "same.tif"
    for f in (f1, f2):
        write_tiff(f, im.lr, pixel_size_um=im.pixel_size_lr_um)
    store = tmp_path / "s.zarr"
    ingest([f1], store=store, condition="20C")
    (tmp_path / "c").mkdir()
    f3 = tmp_path / "c" / "other.tif"
    write_tiff(f3, im.lr, pixel_size_um=im.pixel_size_lr_um)
    before = _snapshot(store)
    r = subprocess.run(CLI + ["ingest", str(f3), str(f2), str(tmp_path / "a" / "same.tif"), "--store", str(store),
                              "--condition", "20C"], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "'same'" in lines[0] and "nothing was ingested" in lines[0]
    assert _snapshot(store) == before
