"""``cathodeflow describe`` (DESIGN §4.3): phase-map files in, the five Parquet tables out,
equal to the Python API; bad input exits with status 2 and a one-line message naming the file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from cathodeflow.cli import main
from cathodeflow.config import Params
from cathodeflow.io.tables import SCHEMAS, read_table
from cathodeflow.study.describe import describe

ETA = 0.0143
TABLES = ("images", "cracks", "particles", "local_porosity", "local_porosity_images", "conditions")
EXE = Path(sys.executable).with_name("cathodeflow")


def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def phase_map(crack_len):
    shape = (130, 150)
    ph = np.zeros(shape, np.uint8)
    ph[disc(shape, 64, 70, 58)] = 1  # big enough for the paper's marker radius r = 50 px
    ph[64, 40 : 40 + crack_len] = 2
    ph[30:33, 60:75] = 2
    return ph


@pytest.fixture
def files(tmp_path):
    maps = {"a": phase_map(20), "b": phase_map(35), "c": phase_map(50)}
    tifffile.imwrite(tmp_path / "a.tif", maps["a"])
    Image.fromarray(maps["b"]).save(tmp_path / "b.png")
    np.save(tmp_path / "c.npy", maps["c"])
    return tmp_path, [tmp_path / "a.tif", tmp_path / "b.png", tmp_path / "c.npy"], maps


def cli(*args, cwd=None):
    exe = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "cathodeflow.cli"]
    return subprocess.run(exe + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def read_out(out_dir):
    return {name: read_table(Path(out_dir) / f"{name}.parquet", name) for name in TABLES}


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("cathodeflow: error:")
    for w in words:
        assert w in err, err


# ------------------------------------------------------------------ the acceptance command
def test_describe_writes_five_parquet_tables_equal_to_the_python_api(files):
    tmp, paths, maps = files
    out = tmp / "out"
    proc = cli("describe", *paths, "--pixel-size-um", "0.0143", "--out", out, "--condition", "20C")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.parquet" for t in TABLES)
    got = read_out(out)
    for name in TABLES:  # the files hold the contract's columns
        assert list(pd.read_parquet(out / f"{name}.parquet").columns) == list(SCHEMAS[name])
    assert got["images"].image_id.tolist() == ["a", "b", "c"]
    assert set(got["images"].condition) == {"20C"}
    assert got["images"].crack_px.tolist() == [20 + 45, 35 + 45, 50 + 45]
    assert len(got["particles"]) == 3 and len(got["cracks"]) == 6
    api = describe([str(p) for p in paths], pixel_size_um=ETA, condition="20C", scheduler="sync")
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], api[name], obj=name)


def test_parameter_options_and_config_file_reach_describe(files, tiled_describe_calls):
    tmp, paths, maps = files
    (tmp / "p.toml").write_text("[params]\nmarker_radius_um = 0.143\nlambda_pristine_per_um2 = 0.0\n")
    assert main(["describe", str(paths[0]), "--pixel-size-um", "0.0143", "--out", str(tmp / "o1"),
                 "--config", str(tmp / "p.toml")]) == 0
    assert main(["describe", str(paths[0]), "--pixel-size-um", "0.0143", "--out", str(tmp / "o2"),
                 "--marker-radius-um", "0.143", "--lambda-pristine", "0", "--stereology-model",
                 "paper", "--chunk-size", "64", "--whole-image-px", "0", "--scheduler", "threads"]) == 0
    assert tiled_describe_calls == [1]  # --whole-image-px 0: this small map was tiled
    o1, o2 = read_out(tmp / "o1"), read_out(tmp / "o2")
    api = describe({"a": maps["a"]}, pixel_size_um=ETA, scheduler="sync",
                   params=Params(marker_radius_um=10 * ETA, lambda_pristine_per_um2=0.0))
    for name in TABLES:
        pd.testing.assert_frame_equal(o1[name], api[name], obj=name)
    for name in ("images", "cracks", "particles", "conditions"):  # tiled == whole
        pd.testing.assert_frame_equal(o2[name], api[name], obj=name)
    assert set(o2["local_porosity"].method) == {"paper"}
    assert o1["cracks"].adjusted.tolist() == o1["cracks"].kept.tolist()  # λ_pristine = 0


def test_tiled_images_option_decides_where_the_tiles_of_an_image_run(files, tiled_describe_calls,
                                                                     chunk_task_threads):
    """``--tiled-images in-task``: the per-chunk tasks of the tiled map run in the calling
    thread; ``spread``: on the threaded scheduler's pool. The tables are the same."""
    import threading

    tmp, paths, _ = files
    where = chunk_task_threads
    threads = {}
    for mode in ("in-task", "spread"):
        where.clear()
        assert main(["describe", str(paths[0]), "--pixel-size-um", "0.0143", "--out", str(tmp / mode),
                     "--chunk-size", "64", "--whole-image-px", "0", "--tiled-images", mode,
                     "--scheduler", "threads"]) == 0
        threads[mode] = set(where)
    assert threads["in-task"] == {threading.get_ident()}
    assert threads["spread"] and threading.get_ident() not in threads["spread"]
    assert tiled_describe_calls == [1, 1]
    a, b = read_out(tmp / "in-task"), read_out(tmp / "spread")
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


# ------------------------------------------------------------------ bad input: exit 2, one line
def test_missing_file_exits_2_naming_the_file(files):
    tmp, paths, _ = files
    proc = cli("describe", paths[0], tmp / "nope.tif", "--pixel-size-um", "0.0143", "--out", tmp / "o")
    assert_one_line_error(proc, "nope.tif", "not found")
    assert not (tmp / "o").exists()  # nothing written on bad input


def test_bad_value_exits_2_naming_the_file_and_the_value(files):
    tmp, paths, maps = files
    bad = maps["a"].copy()
    bad[3, 4] = 7
    np.save(tmp / "bad.npy", bad)
    proc = cli("describe", paths[0], tmp / "bad.npy", "--pixel-size-um", "0.0143", "--out", tmp / "o")
    assert_one_line_error(proc, "bad.npy", "7", "0, 1, 2")


def test_unsupported_extension_exits_2_naming_the_file(files):
    tmp, _, maps = files
    Image.fromarray(maps["a"]).save(tmp / "a.jpg")
    proc = cli("describe", tmp / "a.jpg", "--pixel-size-um", "0.0143", "--out", tmp / "o")
    assert_one_line_error(proc, "a.jpg", "unsupported")


def _run_main(args, capsys):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p, m: Image.fromarray(np.stack([m] * 3, -1)).save(p / "rgb.png") or "rgb.png",
         ["rgb.png", "RGB"]),
        (lambda p, m: tifffile.imwrite(p / "f.tif", m.astype(np.float32)) or "f.tif",
         ["f.tif", "float32"]),
        (lambda p, m: (p / "junk.tif").write_bytes(b"not a tiff at all") and "junk.tif",
         ["junk.tif", "cannot read"]),
        (lambda p, m: np.save(p / "e.npy", np.zeros((0, 0), np.uint8)) or "e.npy",
         ["e.npy", "empty"]),
        (lambda p, m: np.save(p / "v.npy", np.zeros(7, np.uint8)) or "v.npy",
         ["v.npy", "2D"]),
    ],
)
def test_other_bad_files_exit_2_with_one_line_naming_the_file(tmp_path, capsys, make, words):
    name = make(tmp_path, phase_map(20))
    code, err = _run_main(["describe", tmp_path / name, "--pixel-size-um", "0.0143",
                           "--out", tmp_path / "o"], capsys)
    assert code == 2 and "\n" not in err and err.startswith("cathodeflow: error:"), err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--pixel-size-um", "0"], ["pixel_size_um", "0.0"]),
        (["--pixel-size-um", "nan"], ["pixel_size_um", "nan"]),
        (["--pixel-size-um", "0.0143", "--marker-radius-um", "-3"], ["marker_radius_um"]),
        (["--pixel-size-um", "0.0143", "--bins", "0,0.5,x"], ["--bins"]),
        (["--pixel-size-um", "0.0143", "--config", "missing.toml"], ["missing.toml"]),
        (["--pixel-size-um", "0.0143", "--scheduler", "bogus"], ["scheduler", "bogus"]),
    ],
)
def test_bad_options_exit_2_with_one_line(files, capsys, extra, words):
    tmp, paths, _ = files
    code, err = _run_main(["describe", paths[0], "--out", tmp / "o", *extra], capsys)
    assert code == 2 and "\n" not in err, err
    for w in words:
        assert w in err, err


def test_out_that_is_an_existing_file_exits_2_before_any_work(files, capsys):
    tmp, paths, _ = files
    code, err = _run_main(["describe", paths[0], "--pixel-size-um", "0.0143", "--out", paths[1],
                           "--scheduler", "sync"], capsys)
    assert code == 2 and "\n" not in err and "--out" in err and "b.png" in err, err


def test_duplicate_image_ids_from_two_files_exit_2(files, capsys):
    tmp, paths, maps = files
    (tmp / "x").mkdir()
    np.save(tmp / "x" / "a.npy", maps["a"])
    code, err = _run_main(["describe", paths[0], tmp / "x" / "a.npy", "--pixel-size-um",
                           "0.0143", "--out", tmp / "o", "--scheduler", "sync"], capsys)
    assert code == 2 and "unique" in err and "'a'" in err, err


def test_missing_pixel_size_is_refused_in_one_line_naming_the_option(files, capsys):
    tmp, paths, _ = files
    assert main(["describe", str(paths[0]), "--out", str(tmp / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--pixel-size-um" in err[0]
    assert not (tmp / "o").exists()


# ------------------------------------------------------------------ --help
@pytest.mark.parametrize("command", ["demo", "ingest", "train", "calibrate", "run", "describe", "report"])
def test_help_works_for_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert f"usage: cathodeflow {command}" in capsys.readouterr().out


def test_help_of_the_installed_console_script_and_of_python_m():
    proc = cli("describe", "--help")
    assert proc.returncode == 0 and "--pixel-size-um" in proc.stdout and "--chunk-size" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "cathodeflow.cli", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    for command in ("demo", "ingest", "train", "run", "describe", "report"):
        assert command in proc.stdout
