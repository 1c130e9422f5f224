"""Store commands through the command line: ls, rm, ingest --image-id / --manifest, size
checks at ingest, and report refusing tables older than the store (DESIGN §4.1, §4.3).

Ground truth is what the test wrote: the pixel arrays and pixel sizes of its TIFF files, the
parameters it gave each stage, the files it put in the store.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cathodeflow.cli import main
from cathodeflow.io.sem import write_tiff
from cathodeflow.io.store import create_store, open_store
from cathodeflow.study import pipeline
from cathodeflow.synth import generate_image

SMALL = dict(shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)


def _tree_hash(root: Path) -> str:
    """SHA-256 over every path below ``root`` and every file's bytes."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes() if p.is_file() else b"<dir>")
    return h.hexdigest()


def _noise(shape, seed):
    """Random 8-bit pixels: no uniform band at the bottom, so no data bar is detected."""
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("cathodeflow: error:"), err
    return err[0]


def _ls_json(store, capsys) -> dict:
    capsys.readouterr()
    assert main(["ls", str(store), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def ran_store(tmp_path_factory):
    """Two synthetic images (20C_000, 50C_000) ingested and run through every stage."""
    d = tmp_path_factory.mktemp("ran")
    store = d / "study.zarr"
    for k, cond in enumerate(("20C", "50C")):
        im = generate_image(cond, seed=k, image_id=f"{cond}_000", **SMALL)
        write_tiff(d / f"{im.image_id}.tif", im.lr, pixel_size_um=im.pixel_size_lr_um)
        assert main(["ingest", str(d / f"{im.image_id}.tif"), "--store", str(store), "--condition", cond]) == 0
    assert main(["run", "--store", str(store), "--scheduler", "sync"]) == 0
    return store


@pytest.fixture
def ran(ran_store, tmp_path):
    """A private copy of the run store."""
    dst = tmp_path / "study.zarr"
    shutil.copytree(ran_store, dst)
    return dst


# ------------------------------------------------------------------ ls


def test_ls_of_a_fresh_store_lists_no_images_and_no_tables(tmp_path, capsys):
    create_store(tmp_path / "s.zarr")
    assert main(["ls", str(tmp_path / "s.zarr")]) == 0
    out = capsys.readouterr().out
    assert "0 image(s)" in out and "no images" in out and "tables: not computed" in out
    summary = _ls_json(tmp_path / "s.zarr", capsys)
    assert summary["n_images"] == 0 and summary["images"] == [] and summary["tables"]["state"] == "absent"


def test_ls_after_ingest_shows_condition_raw_shape_pixel_size_and_absent_stages(tmp_path, capsys):
    shapes = {"a": (64, 80), "b": (100, 120)}
    sizes = {"a": 0.0385, "b": 0.05}
    for k, (iid, shape) in enumerate(shapes.items()):
        write_tiff(tmp_path / f"{iid}.tif", _noise(shape, k), pixel_size_um=sizes[iid])
        assert main(["ingest", str(tmp_path / f"{iid}.tif"), "--store", str(tmp_path / "s.zarr"),
                     "--condition", f"C{k}"]) == 0
    summary = _ls_json(tmp_path / "s.zarr", capsys)
    rows = {r["image_id"]: r for r in summary["images"]}
    assert sorted(rows) == ["a", "b"]
    for k, iid in enumerate(shapes):
        assert rows[iid]["condition"] == f"C{k}"
        assert rows[iid]["shape_raw"] == list(shapes[iid])
        assert rows[iid]["pixel_size_raw_um"] == pytest.approx(sizes[iid], rel=1e-12)
        assert {s: v["status"] for s, v in rows[iid]["stages"].items()} == dict.fromkeys(
            ("sr", "prob", "phase", "labels/cracks", "labels/particles"), "absent")
    assert main(["ls", str(tmp_path / "s.zarr")]) == 0
    table = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines() if ln.split()}
    assert table["a"] == ["a", "C0", "64×80", "0.0385", "–", "–", "–", "–", "–"]
    assert table["b"] == ["b", "C1", "100×120", "0.05", "–", "–", "–", "–", "–"]


def test_ls_shows_complete_incomplete_absent_and_the_parameters_that_differ(tmp_path, capsys):
    st = create_store(tmp_path / "s.zarr")
    for k, iid in enumerate(("a", "b", "c")):
        st.add_image(iid, _noise((40, 50), k), condition="20C", pixel_size_um=0.04)
        # same method, k differs for c; per-image measurements (intensity_range) never split a set
        st.write_stage(iid, "sr", _noise((100, 130), k), pixel_size_um=0.015,
                       params={"method": "m", "k": 2 if iid == "c" else 1, "intensity_range": [k, 9]})
    st.write_stage("b", "phase", np.ones((100, 130), np.uint8), pixel_size_um=0.015, kind="labels",
                   params={"method": "p"})
    st.mark_incomplete("b", "phase")
    for iid, r in (("a", 0.5), ("b", 0.7)):  # pipeline parameters nested under "params"
        st.write_stage(iid, "labels/particles", np.ones((100, 130), np.int32), pixel_size_um=0.015,
                       params={"convention": "x", "params": {"r_um": r, "t": 1}, "params_hash": f"h{r}"})
    summary = _ls_json(tmp_path / "s.zarr", capsys)
    status = {r["image_id"]: {s: v["status"] for s, v in r["stages"].items()} for r in summary["images"]}
    assert [status[i]["sr"] for i in "abc"] == ["complete"] * 3
    assert [status[i]["phase"] for i in "abc"] == ["absent", "incomplete", "absent"]
    sets = {tuple(g["image_ids"]): g for g in summary["parameter_sets"]["sr"]}
    assert sorted(sets) == [("a", "b"), ("c",)]
    assert sets[("a", "b")]["params"] == {"method": "m", "k": 1} and sets[("c",)]["params"]["k"] == 2
    assert summary["parameter_sets"]["phase"] == []  # incomplete stages have no parameter set
    nested = {tuple(g["image_ids"]): g["params"] for g in summary["parameter_sets"]["labels/particles"]}
    assert nested == {("a",): {"convention": "x", "r_um": 0.5, "t": 1},
                      ("b",): {"convention": "x", "r_um": 0.7, "t": 1}}
    assert main(["ls", str(tmp_path / "s.zarr")]) == 0
    lines = capsys.readouterr().out.splitlines()
    row_b = next(ln.split() for ln in lines if ln.startswith("b "))
    assert row_b[4:] == ["✓", "–", "…", "–", "✓"]
    assert any("sr: the parameter sets differ in k:" in ln for ln in lines)
    assert any("k=1" in ln and "(2: a, b)" in ln for ln in lines)
    assert any("k=2" in ln and "(1: c)" in ln for ln in lines)
    assert any("labels/particles: the parameter sets differ in r_um:" in ln for ln in lines)


@pytest.mark.parametrize("what", ["missing", "plain_dir"])
def test_ls_of_something_that_is_not_a_store_is_one_line_exit_2(tmp_path, capsys, what):
    path = tmp_path / "x"
    if what == "plain_dir":
        path.mkdir()
        (path / "notes.txt").write_text("hi")
    assert main(["ls", str(path)]) == 2
    assert str(path) in _one_error_line(capsys)


# ------------------------------------------------------------------ rm


def test_rm_removes_the_image_its_partial_tables_and_the_combined_tables(ran, capsys):
    tables = ran / "tables"
    assert (tables / "per_image" / "20C_000").is_dir() and (tables / "images.parquet").exists()
    assert main(["rm", str(ran), "20C_000"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 image(s)" in out and "20C_000" in out and "deleted" in out
    assert open_store(ran, mode="r").image_ids() == ["50C_000"]
    assert not (ran / "images" / "20C_000").exists()
    assert not (tables / "per_image" / "20C_000").exists() and (tables / "per_image" / "50C_000").is_dir()
    assert list(tables.glob("*.parquet")) == []
    # report refuses until the tables are rebuilt; they then hold the remaining image only
    assert main(["report", "--store", str(ran), "--out", str(ran.parent / "rep")]) == 2
    assert "not computed" in _one_error_line(capsys)
    assert main(["run", "--store", str(ran), "--from", "tables", "--scheduler", "sync"]) == 0
    import pandas as pd

    assert list(pd.read_parquet(tables / "images.parquet")["image_id"]) == ["50C_000"]


def test_rm_with_an_unknown_id_removes_nothing_and_names_it(ran, capsys):
    before = _tree_hash(ran)
    assert main(["rm", str(ran), "20C_000", "nope", "../x"]) == 2
    line = _one_error_line(capsys)
    assert "'nope'" in line and "'../x'" in line and "nothing was removed" in line and "'20C_000'" not in line
    assert _tree_hash(ran) == before


# ------------------------------------------------------------------ ingest


def test_ingest_image_id_names_the_one_file(tmp_path, capsys):
    write_tiff(tmp_path / "scan 7.tif", _noise((64, 64), 0), pixel_size_um=0.04)
    assert main(["ingest", str(tmp_path / "scan 7.tif"), "--store", str(tmp_path / "s.zarr"),
                 "--condition", "20C", "--image-id", "S7"]) == 0
    st = open_store(tmp_path / "s.zarr", mode="r")
    assert st.image_ids() == ["S7"]
    np.testing.assert_array_equal(st.read_stage("S7", "raw").compute(), _noise((64, 64), 0))


def test_ingest_image_id_with_two_files_is_refused(tmp_path, capsys):
    for k in range(2):
        write_tiff(tmp_path / f"f{k}.tif", _noise((64, 64), k), pixel_size_um=0.04)
    assert main(["ingest", str(tmp_path / "f0.tif"), str(tmp_path / "f1.tif"), "--store",
                 str(tmp_path / "s.zarr"), "--condition", "20C", "--image-id", "x"]) == 2
    assert "--image-id" in _one_error_line(capsys)
    assert not (tmp_path / "s.zarr").exists()


def _manifest_files(tmp_path):
    """Three TIFFs in tmp/data: two without metadata (tifffile), one with a pixel size."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    arrays = {"a": _noise((64, 96), 1), "b": _noise((120, 100), 2), "c": _noise((80, 80), 3)}
    tifffile.imwrite(data / "a.tif", arrays["a"])
    tifffile.imwrite(data / "sub" / "b.tif", arrays["b"])
    write_tiff(data / "c.tif", arrays["c"], pixel_size_um=0.0385)
    return data, arrays


def test_manifest_ingest_resolves_relative_paths_and_takes_each_rows_values(tmp_path, capsys):
    data, arrays = _manifest_files(tmp_path)
    (data / "m.csv").write_text(
        "file,condition,pixel_size_um,image_id\n"
        "a.tif,20C,0.04,\n"
        "sub/b.tif,50C,0.05,bee\n"
        "\n"
        f"{data / 'c.tif'},50C,,\n"
    )
    assert main(["ingest", "--manifest", str(data / "m.csv"), "--store", str(tmp_path / "s.zarr")]) == 0
    assert "a, bee, c" in capsys.readouterr().out
    st = open_store(tmp_path / "s.zarr", mode="r")
    expect = {"a": ("a", "20C", 0.04), "bee": ("b", "50C", 0.05), "c": ("c", "50C", 0.0385)}
    assert st.image_ids() == sorted(expect)
    for iid, (name, cond, ps) in expect.items():
        assert st.condition(iid) == cond
        assert st.pixel_size_um(iid) == pytest.approx(ps, rel=1e-12)
        np.testing.assert_array_equal(st.read_stage(iid, "raw").compute(), arrays[name])


@pytest.mark.parametrize(
    "row, column",
    [
        ("a.tif,20C,abc,", "pixel_size_um"),
        ("a.tif,20C,-1,", "pixel_size_um"),
        ("missing.tif,20C,0.04,", "file"),
        ("a.tif,,0.04,", "condition"),
        ("a.tif,20C,0.04,bad/id", "image_id"),
        ("a.tif,20C,0.04,old", "image_id"),  # the id is already in the store
        ("tiny.tif,20C,0.04,", "file"),  # 20 x 40 px: below 32 px on a side
        ("sub/b.tif,20C,,", "pixel_size_um"),  # no pixel size in the file, none in the row
    ],
)
def test_manifest_with_a_bad_row_names_row_and_column_and_leaves_the_store_byte_identical(
        tmp_path, capsys, row, column):
    data, _ = _manifest_files(tmp_path)
    tifffile.imwrite(data / "tiny.tif", _noise((20, 40), 4))
    store = tmp_path / "s.zarr"
    create_store(store).add_image("old", _noise((64, 64), 5), condition="20C", pixel_size_um=0.04)
    (data / "m.csv").write_text(f"file,condition,pixel_size_um,image_id\nc.tif,50C,,\n{row}\n")
    before = _tree_hash(store)
    assert main(["ingest", "--manifest", str(data / "m.csv"), "--store", str(store)]) == 2
    line = _one_error_line(capsys)
    if column == "image_id" and row.endswith("old"):
        assert "'old' (" in line and "row 3)" in line and "already in the store" in line
    else:
        assert f"m.csv row 3, column {column}:" in line
    assert _tree_hash(store) == before


def test_manifest_with_an_unknown_column_or_given_with_files_is_refused(tmp_path, capsys):
    data, _ = _manifest_files(tmp_path)
    (data / "m.csv").write_text("file,condition,pixel_size\na.tif,20C,0.04\n")
    assert main(["ingest", "--manifest", str(data / "m.csv"), "--store", str(tmp_path / "s.zarr")]) == 2
    assert "'pixel_size'" in _one_error_line(capsys)
    (data / "m.csv").write_text("file,condition,pixel_size_um\na.tif,20C,0.04\n")
    assert main(["ingest", str(data / "c.tif"), "--manifest", str(data / "m.csv"), "--store",
                 str(tmp_path / "s.zarr"), "--condition", "20C"]) == 2
    line = _one_error_line(capsys)
    assert "FILES" in line and "--condition" in line
    assert not (tmp_path / "s.zarr").exists()


def test_ingest_refuses_an_image_over_the_pixel_limit_and_writes_nothing(tmp_path, capsys, monkeypatch):
    write_tiff(tmp_path / "big.tif", _noise((64, 64), 0), pixel_size_um=0.04)
    monkeypatch.setattr(pipeline, "MAX_PIXELS", 64 * 64 - 1)
    assert main(["ingest", str(tmp_path / "big.tif"), "--store", str(tmp_path / "s.zarr"), "--condition", "C"]) == 2
    line = _one_error_line(capsys)
    assert "big.tif" in line and "64×64" in line and f"at most {64 * 64 - 1} pixels" in line
    assert not (tmp_path / "s.zarr").exists()
    monkeypatch.setattr(pipeline, "MAX_PIXELS", 64 * 64)  # exactly at the limit: accepted
    assert main(["ingest", str(tmp_path / "big.tif"), "--store", str(tmp_path / "s.zarr"), "--condition", "C"]) == 0


def test_ingest_of_a_float_export_warns_in_one_line_stores_16_bits_and_records_the_mapping(tmp_path, capsys):
    x = _noise((64, 64), 3).astype(np.float32) / 255 * 2.5 - 0.5  # grey values in [-0.5, 2.0]
    tifffile.imwrite(tmp_path / "export.tif", x)
    assert main(["ingest", str(tmp_path / "export.tif"), "--store", str(tmp_path / "s.zarr"), "--condition", "C",
                 "--pixel-size-um", "0.04"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == [f"cathodeflow: warning: {tmp_path / 'export.tif'}: float32 pixels mapped linearly from "
                   "[-0.5, 2] to 0-65535 (uint16)"]
    st = open_store(tmp_path / "s.zarr", mode="r")
    raw = st.read_stage("export", "raw").compute()
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, np.rint((x.astype(np.float64) + 0.5) / 2.5 * 65535).astype(np.uint16))
    notes = st.stage_info("export", "raw")["params"]["reader_metadata"]["notes"]
    assert notes == ["float32 pixels mapped linearly from [-0.5, 2] to 0-65535 (uint16)"]


def test_ingest_of_an_image_with_nan_pixels_is_one_line_exit_2_and_the_store_byte_identical(tmp_path, capsys):
    write_tiff(tmp_path / "ok.tif", _noise((64, 64), 0), pixel_size_um=0.04)
    assert main(["ingest", str(tmp_path / "ok.tif"), "--store", str(tmp_path / "s.zarr"), "--condition", "C"]) == 0
    before = _tree_hash(tmp_path / "s.zarr")
    x = _noise((64, 64), 1).astype(np.float32)
    x[10, 10] = np.nan
    tifffile.imwrite(tmp_path / "holes.tif", x)
    capsys.readouterr()
    assert main(["ingest", str(tmp_path / "holes.tif"), "--store", str(tmp_path / "s.zarr"), "--condition", "C",
                 "--pixel-size-um", "0.04"]) == 2
    assert _one_error_line(capsys) == (f"cathodeflow: error: {tmp_path / 'holes.tif'}: NaN or infinite values "
                                       "in 1 pixels (expected finite grey values)")
    assert _tree_hash(tmp_path / "s.zarr") == before


# ------------------------------------------------------------------ report


def test_report_accepts_current_tables_and_ls_says_current(ran, capsys):
    assert main(["ls", str(ran)]) == 0
    assert "tables: current" in capsys.readouterr().out
    assert main(["report", "--store", str(ran), "--out", str(ran.parent / "rep")]) == 0
    assert (ran.parent / "rep" / "index.html").exists()


@pytest.mark.parametrize("change", ["image_added", "stage_recomputed", "image_gone"])
def test_report_refuses_tables_older_than_the_store(ran, tmp_path, capsys, change):
    if change == "image_added":
        write_tiff(tmp_path / "new.tif", _noise((64, 64), 0), pixel_size_um=0.04)
        assert main(["ingest", str(tmp_path / "new.tif"), "--store", str(ran), "--condition", "20C"]) == 0
        expect = "new"
    elif change == "stage_recomputed":
        st = open_store(ran)
        phase = st.read_stage("50C_000", "phase").compute()
        st.write_stage("50C_000", "phase", phase, pixel_size_um=st.pixel_size_um("50C_000", "phase"),
                       kind="labels", params={"method": "edited"})
        expect = "phase of 50C_000"
    else:  # the group removed behind the tables' back (not with `rm`, which deletes them)
        open_store(ran).remove_images(["20C_000"])
        expect = "20C_000 no longer in the store"
    capsys.readouterr()
    assert main(["report", "--store", str(ran), "--out", str(tmp_path / "rep")]) == 2
    line = _one_error_line(capsys)
    assert "older than the store" in line and expect in line and "cathodeflow run --store" in line
    assert not (tmp_path / "rep").exists()
