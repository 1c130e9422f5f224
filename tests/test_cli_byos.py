"""Bring your own segmentation: ``cathodeflow describe --manifest / --phase-values / --overwrite``
and ``cathodeflow report --tables`` (phase maps made elsewhere, e.g. ilastik -> tables -> report).

Ground truth is the geometry of the phase maps written here (pixel counts of each phase).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

from cathodeflow.cli import main
from cathodeflow.errors import InputError
from cathodeflow.io.phasefile import validate_phase
from cathodeflow.io.tables import read_table, read_table_metadata

ETA = 0.0143
TABLES = ("images", "cracks", "particles", "local_porosity", "local_porosity_images", "conditions")
ILASTIK = (1, 2, 3)  # background, solid, crack as an ilastik export of three labels stores them


def phase_map(crack_len: int) -> np.ndarray:
    """S (0/1/2), shape (130, 150): one disc particle (r = 58 px) with two straight cracks."""
    yy, xx = np.mgrid[:130, :150]
    ph = np.zeros((130, 150), np.uint8)
    ph[(yy - 64) ** 2 + (xx - 70) ** 2 <= 58**2] = 1
    ph[64, 40 : 40 + crack_len] = 2
    ph[30:33, 60:75] = 2
    return ph


def coded(ph: np.ndarray, values) -> np.ndarray:
    """``ph`` with 0, 1, 2 stored as ``values``."""
    return np.asarray(values, np.uint16)[ph]


def run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err.strip()


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def study(tmp_path):
    """A manifest of three ilastik-coded TIFFs in two conditions; one relative to a subfolder,
    one with its own image id, one with its own pixel size."""
    maps = {"a": phase_map(20), "b": phase_map(35), "c": phase_map(50)}
    (tmp_path / "maps").mkdir()
    for name, ph in maps.items():
        tifffile.imwrite(tmp_path / "maps" / f"{name}.tif", coded(ph, ILASTIK))
    manifest = tmp_path / "study.csv"
    manifest.write_text("file,condition,pixel_size_um,image_id\n"
                        "maps/a.tif,20C,,\n"
                        f"{tmp_path / 'maps' / 'b.tif'},20C,0.02,\n"
                        "maps/c.tif,45C,,c45\n", encoding="utf-8")
    return tmp_path, manifest, maps


def describe_study(capsys, manifest, out, *extra):
    return run(capsys, "describe", "--manifest", manifest, "--pixel-size-um", ETA, "--out", out,
               "--phase-values", "1,2,3", "--scheduler", "sync", *extra)


# ------------------------------------------------------------------ manifest + phase values
def test_manifest_of_two_conditions_with_ilastik_values_gives_tables_of_both(study, capsys):
    tmp, manifest, maps = study
    code, err = describe_study(capsys, manifest, tmp / "out")
    assert code == 0, err
    images = read_table(tmp / "out" / "images.parquet", "images").set_index("image_id")
    assert list(images.index) == ["a", "b", "c45"]
    assert images.condition.tolist() == ["20C", "20C", "45C"]
    assert images.pixel_size_um.tolist() == [ETA, 0.02, ETA]  # column value wins over the option
    truth = {"a": maps["a"], "b": maps["b"], "c45": maps["c"]}
    for iid, ph in truth.items():  # the codes 1/2/3 were read as background/solid/crack
        assert images.loc[iid, "solid_px"] == int((ph == 1).sum())
        assert images.loc[iid, "crack_px"] == int((ph == 2).sum())
    conditions = read_table(tmp / "out" / "conditions.parquet", "conditions")
    assert sorted(conditions.condition) == ["20C", "45C"]
    assert read_table_metadata(tmp / "out" / "images.parquet")["phase_values"] == list(ILASTIK)


def test_a_value_outside_phase_values_is_refused_naming_the_file_and_the_value(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "plain.tif", phase_map(20))  # 0/1/2: 0 is no ilastik code
    code, err = run(capsys, "describe", tmp_path / "plain.tif", "--pixel-size-um", ETA,
                    "--out", tmp_path / "o", "--phase-values", "1,2,3", "--scheduler", "sync")
    assert code == 2 and "\n" not in err, err
    assert "plain.tif" in err and "[0]" in err and "1, 2, 3" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text", ["1,2", "1,1,2", "a,b,c", "1,2,3,4"])
def test_phase_values_that_are_not_three_distinct_integers_are_refused(tmp_path, capsys, text):
    tifffile.imwrite(tmp_path / "a.tif", phase_map(20))
    code, err = run(capsys, "describe", tmp_path / "a.tif", "--pixel-size-um", ETA, "--out", tmp_path / "o",
                    "--phase-values", text)
    assert code == 2 and "--phase-values" in err and repr(text) in err and "\n" not in err, err


def test_lazy_input_is_mapped_per_chunk_and_checked_when_computed():
    ph = phase_map(20)
    lazy = validate_phase(da.from_array(coded(ph, (5, 9, 7)), chunks=64), name="lazy", values=(5, 9, 7))
    assert isinstance(lazy, da.Array) and lazy.dtype == np.uint8
    np.testing.assert_array_equal(lazy.compute(), ph)
    bad = validate_phase(da.from_array(coded(ph, (5, 9, 8)), chunks=64), name="lazy", values=(5, 9, 7))
    with pytest.raises(InputError, match=r"lazy: phase map holds values \[8\]"):
        bad.compute()


@pytest.mark.parametrize(
    "row, words",
    [
        ("maps/missing.tif,20C,,", ["row 3, column file", "missing.tif", "not found"]),
        ("maps/a.tif,20C,abc,", ["row 3, column pixel_size_um", "abc"]),
        ("maps/c.tif,45C,,a", ["row 3", "'a'", "row 2"]),
    ],
)
def test_a_bad_manifest_row_is_refused_naming_row_and_column(study, capsys, row, words):
    tmp, manifest, _ = study
    manifest.write_text(f"file,condition,pixel_size_um,image_id\nmaps/a.tif,20C,,\n{row}\n", encoding="utf-8")
    code, err = describe_study(capsys, manifest, tmp / "out")
    assert code == 2 and "\n" not in err, err
    for w in words:
        assert w in err, err
    assert not (tmp / "out").exists()


def test_a_row_without_pixel_size_needs_the_option(study, capsys):
    tmp, manifest, _ = study
    code, err = run(capsys, "describe", "--manifest", manifest, "--out", tmp / "out", "--phase-values", "1,2,3")
    assert code == 2 and "row 2, column pixel_size_um" in err and "--pixel-size-um" in err, err


@pytest.mark.parametrize("extra, named", [(["maps/a.tif"], "FILES"), (["--condition", "20C"], "--condition")])
def test_files_or_condition_with_a_manifest_are_refused(study, capsys, extra, named):
    tmp, manifest, _ = study
    code, err = describe_study(capsys, manifest, tmp / "out", *extra)
    assert code == 2 and named in err and "--manifest" in err, err


# ------------------------------------------------------------------ --out that holds tables
def test_out_holding_tables_is_refused_without_overwrite_and_left_byte_identical(study, capsys):
    tmp, manifest, _ = study
    assert describe_study(capsys, manifest, tmp / "out")[0] == 0
    before = snapshot(tmp / "out")
    code, err = describe_study(capsys, manifest, tmp / "out")
    assert code == 2 and "\n" not in err and str(tmp / "out") in err and "--overwrite" in err, err
    assert snapshot(tmp / "out") == before


def test_overwrite_replaces_the_tables_and_a_failed_overwrite_keeps_the_old_ones(study, capsys):
    tmp, manifest, maps = study
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("mine")  # not a table: left alone
    assert describe_study(capsys, manifest, tmp / "out")[0] == 0
    tifffile.imwrite(tmp / "d.tif", maps["a"])  # 0/1/2-coded
    code, err = run(capsys, "describe", tmp / "d.tif", "--pixel-size-um", ETA, "--out", tmp / "out",
                    "--condition", "60C", "--overwrite", "--scheduler", "sync")
    assert code == 0, err
    images = read_table(tmp / "out" / "images.parquet", "images")
    assert images.image_id.tolist() == ["d"] and images.condition.tolist() == ["60C"]
    before = snapshot(tmp / "out")
    # a run that fails (0 is not an ilastik code) leaves the tables as they were
    code, err = run(capsys, "describe", tmp / "d.tif", "--pixel-size-um", ETA, "--out", tmp / "out",
                    "--overwrite", "--phase-values", "1,2,3", "--scheduler", "sync")
    assert code == 2 and "d.tif" in err, err
    assert snapshot(tmp / "out") == before and "notes.txt" in before
    assert sorted(p.name for p in tmp.iterdir()) == ["d.tif", "maps", "out", "study.csv"]  # no temp folder left


# ------------------------------------------------------------------ report --tables
def test_report_from_a_describe_folder_names_both_conditions(study, capsys):
    tmp, manifest, _ = study
    assert describe_study(capsys, manifest, tmp / "out")[0] == 0
    code, err = run(capsys, "report", "--tables", tmp / "out", "--out", tmp / "report")
    assert code == 0, err
    html = (tmp / "report" / "index.html").read_text(encoding="utf-8")
    assert "20 °C" in html and "45 °C" in html  # Table 1 shows a condition "20C" as 20 °C


@pytest.mark.parametrize("source", [[], ["--store", "s.zarr", "--tables", "t"]])
def test_report_needs_exactly_one_of_store_and_tables(tmp_path, source):
    with pytest.raises(SystemExit) as e:
        main(["report", *source, "--out", str(tmp_path / "r")])
    assert e.value.code == 2


def test_report_from_a_folder_without_tables_is_refused_naming_it(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = run(capsys, "report", "--tables", tmp_path / "empty", "--out", tmp_path / "r")
    assert code == 2 and str(tmp_path / "empty") in err and "images" in err and "\n" not in err, err


def test_files_without_pixel_size_are_refused_in_one_line(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "a.tif", phase_map(20))
    code, err = run(capsys, "describe", tmp_path / "a.tif", "--out", tmp_path / "o")
    assert code == 2 and "--pixel-size-um" in err and "\n" not in err, err
    assert not (tmp_path / "o").exists()


def test_a_tiff_without_an_image_is_refused_in_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "empty.tif").write_bytes(b"II*\x00\x00\x00\x00\x00")
    code, err = run(capsys, "describe", tmp_path / "empty.tif", "--pixel-size-um", ETA,
                    "--out", tmp_path / "o", "--scheduler", "sync")
    assert code == 2 and err.strip() == f"cathodeflow: error: {tmp_path / 'empty.tif'}: TIFF holds no image", err
    assert not (tmp_path / "o").exists()
