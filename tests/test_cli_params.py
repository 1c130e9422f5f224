"""Parameters through the command line (DESIGN §4.1, §4.3): a stage made with other parameters
is recomputed with the stages after it (and says so), unchanged parameters recompute nothing,
``--chunk-size`` sets the chunks of the stages ``run`` writes, tables record their parameters,
old pixel options and absurd pixel sizes are refused in one line, warnings are one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cathodeflow.cli import main
from cathodeflow.config import Params, params_record
from cathodeflow.io.sem import write_tiff
from cathodeflow.io.store import open_store
from cathodeflow.io.tables import read_table, read_table_metadata
from cathodeflow.study.describe import describe
from cathodeflow.study.pipeline import STAGES, ingest
from cathodeflow.synth import generate_image

SMALL = dict(shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)
IID = "20C_000"
R0 = "0.143"  # 10 px at the super-resolved 0.0143 µm
ARRAYS = ("sr", "phase", "labels/cracks", "labels/particles")


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(path: Path) -> dict:
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _ends(store) -> dict:
    st = open_store(store, mode="r")
    return {a: st.stage_info(IID, a)["end_utc"] for a in ARRAYS}


def _particles(store) -> pd.DataFrame:
    return read_table(Path(store) / "tables" / "particles.parquet", "particles")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    d = tmp_path_factory.mktemp("ingested")
    im = generate_image("20C", seed=0, image_id=IID, **SMALL)
    f = d / f"{IID}.tif"
    write_tiff(f, im.lr, pixel_size_um=im.pixel_size_lr_um)
    ingest([f], store=d / "s.zarr", condition="20C")
    return d / "s.zarr"


@pytest.fixture(scope="module")
def done(ingested, tmp_path_factory):
    """The store after one complete run with r = 0.143 µm and the default chunks."""
    store = tmp_path_factory.mktemp("done") / "s.zarr"
    shutil.copytree(ingested, store)
    assert main(["run", "--store", str(store), "--scheduler", "threads", "--marker-radius-um", R0]) == 0
    return store


@pytest.fixture
def store(done, tmp_path):
    shutil.copytree(done, tmp_path / "s.zarr")
    return tmp_path / "s.zarr"


# ------------------------------------------------------------------ recompute what changed
def test_changed_marker_radius_recomputes_the_labels_says_so_and_the_tables_record_it(store, capsys):
    before, particles_before = _ends(store), _particles(store)
    code, _, err = _cli(capsys, "run", "--store", store, "--scheduler", "threads", "--marker-radius-um", "0.1")
    assert code == 0, err
    assert [ln for ln in err.splitlines() if "recomputed" in ln] == [
        f"{IID}: labels recomputed (marker_radius_um 0.143 -> 0.1)"]
    after = _ends(store)
    assert after["sr"] == before["sr"] and after["phase"] == before["phase"]
    assert after["labels/cracks"] != before["labels/cracks"]
    assert after["labels/particles"] != before["labels/particles"]
    # the particle table is describe() of the stored phase map with the new radius (7 px)
    st = open_store(store, mode="r")
    phase = np.asarray(st.read_stage(IID, "phase"))
    new = Params(marker_radius_um=0.1)
    ref = describe({IID: phase}, pixel_size_um=st.pixel_size_um(IID, "phase"), condition="20C",
                   params=new, scheduler="sync")["particles"]
    pd.testing.assert_frame_equal(_particles(store), ref, check_exact=False, rtol=1e-12)
    assert len(ref) != len(particles_before)  # a smaller r finds more markers here
    meta = read_table_metadata(Path(store) / "tables" / "particles.parquet")
    assert meta["params"]["marker_radius_um"] == 0.1
    assert meta["params_hash"] == params_record(new, *STAGES)["params_hash"]
    rec = st.stage_info(IID, "labels/particles")["params"]
    assert rec["params"]["marker_radius_um"] == 0.1 and rec["params_hash"] == params_record(new, "labels")["params_hash"]


def test_unchanged_parameters_recompute_no_stage(store, capsys):
    before = _ends(store)
    code, _, err = _cli(capsys, "run", "--store", store, "--scheduler", "threads", "--marker-radius-um", R0)
    assert code == 0, err
    assert "recomputed" not in err and "done" not in err
    assert _ends(store) == before


def test_changed_bins_recompute_the_labels_and_lambda_pristine_only_the_tables(store, capsys):
    before = _ends(store)
    code, _, err = _cli(capsys, "run", "--store", store, "--scheduler", "threads", "--marker-radius-um", R0,
                        "--lambda-pristine", "0")
    assert code == 0, err
    assert _ends(store) == before  # λ_pristine acts on the pooled tables only (eq. 19)
    cracks = read_table(Path(store) / "tables" / "cracks.parquet", "cracks")
    assert len(cracks) and (cracks.adjusted == cracks.kept).all()  # n_pristine = ⌊A·0⌋ = 0
    assert read_table_metadata(Path(store) / "tables" / "cracks.parquet")["params"]["lambda_pristine_per_um2"] == 0
    code, _, err = _cli(capsys, "run", "--store", store, "--scheduler", "threads", "--marker-radius-um", R0,
                        "--bins", "0,0.5,1")
    assert code == 0, err
    assert f"{IID}: labels recomputed (bins [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] -> " \
           "[0.0, 0.5, 1.0])" in err
    lp = read_table(Path(store) / "tables" / "local_porosity.parquet", "local_porosity")
    assert sorted(set(lp.bin_lo)) == [0.0, 0.5, 1.0]  # two bins and the overflow bin


def test_from_tables_with_changed_label_parameters_is_refused_and_writes_nothing(store, capsys):
    before = _snapshot(store)
    code, _, err = _cli(capsys, "run", "--store", store, "--from", "tables", "--marker-radius-um", "0.1")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("cathodeflow: error:"), err
    assert "labels" in lines[0] and "marker_radius_um 0.143 -> 0.1" in lines[0] and "--from labels" in lines[0]
    assert _snapshot(store) == before


# ------------------------------------------------------------------ --chunk-size
def test_chunk_size_sets_the_chunks_of_every_stage_run_writes_and_not_the_result(ingested, done, tmp_path, capsys):
    store = tmp_path / "s.zarr"
    shutil.copytree(ingested, store)
    code, _, err = _cli(capsys, "run", "--store", store, "--scheduler", "threads", "--marker-radius-um", R0,
                        "--chunk-size", "64")
    assert code == 0, err
    small, default = open_store(store, mode="r"), open_store(done, mode="r")
    for a in ARRAYS:  # read_stage: a Dask array on the stored Zarr chunks
        assert small.read_stage(IID, a).chunksize == (64, 64), a
        assert small.stage_info(IID, a)["chunks"] == [64, 64], a
        whole = default.read_stage(IID, a)
        assert whole.chunksize == whole.shape, a  # default 2048 px: one chunk for this image
    for name in ("images", "cracks", "particles", "local_porosity"):
        a = read_table(store / "tables" / f"{name}.parquet", name)
        b = read_table(done / "tables" / f"{name}.parquet", name)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)  # tiled == whole


# ------------------------------------------------------------------ refused input
@pytest.mark.parametrize("args, words", [
    (["--marker-radius-px", "10"], ["--marker-radius-px was replaced by --marker-radius-um", "0.715 µm"]),
    (["--min-particle-area-px", "100"], ["--min-particle-area-um2", "µm²"]),
    (["--config", "CFG"], ["marker_radius_px was replaced by marker_radius_um", "0.715 µm"]),
])
def test_old_pixel_options_and_keys_are_refused_in_one_line(ingested, tmp_path, capsys, args, words):
    cfg = tmp_path / "old.toml"
    cfg.write_text("[params]\nmarker_radius_px = 50\n")
    before = _snapshot(ingested)
    for cmd in (["run", "--store", ingested], ["describe", tmp_path / "x.npy", "--pixel-size-um", "0.0143",
                                               "--out", tmp_path / "o"]):
        code, _, err = _cli(capsys, *cmd, *[str(cfg) if a == "CFG" else a for a in args])
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("cathodeflow: error:"), err
        assert all(w in lines[0] for w in words), lines[0]
    assert _snapshot(ingested) == before and not (tmp_path / "o").exists()


@pytest.mark.parametrize("size", ["38.5", "14.3", "0.00001"])
def test_absurd_pixel_sizes_are_refused_by_ingest_and_describe_in_one_line(ingested, tmp_path, capsys, size):
    import tifffile

    f = tmp_path / "new.tif"
    tifffile.imwrite(f, np.full((52, 52), 100, np.uint8))  # no pixel size: --pixel-size-um gives it
    np.save(tmp_path / "p.npy", np.ones((40, 40), np.uint8))
    before = _snapshot(ingested)
    for cmd in (["ingest", f, "--store", ingested, "--condition", "20C", "--pixel-size-um", size],
                ["describe", tmp_path / "p.npy", "--pixel-size-um", size, "--out", tmp_path / "o"]):
        code, _, err = _cli(capsys, *cmd)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("cathodeflow: error:"), err
        assert "in µm" in lines[0] and "unit slip" in lines[0], lines[0]
    assert _snapshot(ingested) == before and not (tmp_path / "o").exists()


# ------------------------------------------------------------------ warnings
def test_a_marker_radius_of_few_pixels_is_one_warning_line_for_all_images(tmp_path, capsys):
    for name in ("a", "b"):
        ph = np.zeros((40, 40), np.uint8)
        ph[5:35, 5:35] = 1
        np.save(tmp_path / f"{name}.npy", ph)
    code, _, err = _cli(capsys, "describe", tmp_path / "a.npy", tmp_path / "b.npy", "--pixel-size-um", "0.2",
                        "--out", tmp_path / "o")
    assert code == 0, err
    warned = [ln for ln in err.splitlines() if ln.startswith("cathodeflow: warning:")]
    assert len(warned) == 1 and "3.575 px" in warned[0] and "0.2 µm" in warned[0], err  # 0.715 / 0.2
    code, _, err = _cli(capsys, "describe", tmp_path / "a.npy", "--pixel-size-um", "0.0143", "--out", tmp_path / "o2")
    assert code == 0 and "warning" not in err


def test_raw_images_far_from_385_nm_are_one_warning_line_when_the_sr_stage_interpolates_them(tmp_path, capsys):
    store = tmp_path / "s.zarr"
    for name in ("a", "b"):
        write_tiff(tmp_path / f"{name}.tif", np.full((52, 52), 100, np.uint8), pixel_size_um=0.00385)
    assert main(["ingest", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "--store", str(store),
                 "--condition", "c"]) == 0
    capsys.readouterr()
    # the default (auto) leaves 3.85 nm images as they are: nothing to warn about
    code, _, err = _cli(capsys, "run", "--store", store, "--to", "sr", "--scheduler", "sync")
    assert code == 0 and "warning" not in err, err
    assert open_store(store, mode="r").stage_info("a", "sr")["params"]["method"] == "none"
    code, _, err = _cli(capsys, "run", "--store", store, "--to", "sr", "--scheduler", "sync", "--sr-method", "baseline")
    assert code == 0, err
    warned = [ln for ln in err.splitlines() if ln.startswith("cathodeflow: warning:")]
    assert len(warned) == 1 and "image(s) a, b" in warned[0] and "10x finer" in warned[0], err
    code, _, err = _cli(capsys, "run", "--store", store, "--to", "sr", "--scheduler", "sync", "--sr-method", "baseline")
    assert code == 0 and "warning" not in err  # sr complete: nothing to warn about


def test_describe_marker_h_um_splits_touching_particles_and_is_recorded(tmp_path, capsys):
    # discs of radius 60 px, centres 90 px apart: the neck's D (40 px) exceeds r = 30 px, so
    # eq. 10 gives one marker; each dome rises 20 px above the neck, more than h = 15 px
    yy, xx = np.mgrid[:160, :260]
    ph = (((yy - 80) ** 2 + (xx - 80) ** 2 <= 3600) | ((yy - 80) ** 2 + (xx - 170) ** 2 <= 3600)).astype(np.uint8)
    np.save(tmp_path / "pair.npy", ph)
    eta = 0.0143
    counts = {}
    for name, extra in (("paper", []), ("hmax", ["--marker-h-um", str(15 * eta)])):
        code, _, err = _cli(capsys, "describe", tmp_path / "pair.npy", "--pixel-size-um", eta, "--marker-radius-um",
                            30 * eta, "--out", tmp_path / name, *extra)
        assert code == 0, err
        counts[name] = len(read_table(tmp_path / name / "particles.parquet", "particles"))
        meta = read_table_metadata(tmp_path / name / "particles.parquet")
        assert (meta["params"].get("marker_h_um") == pytest.approx(15 * eta)) == (name == "hmax")
    assert counts == {"paper": 1, "hmax": 2}
