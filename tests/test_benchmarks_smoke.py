"""Smoke test of the benchmark harness (benchmarks/): a 300 × 400 map through the
``describe`` suite writes its results JSON, and the serial scikit-image script and
``cathodeflow.describe`` produce the same tables."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the repository, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402
from benchmarks.__main__ import main  # noqa: E402
from benchmarks.phasemaps import build_phase_map  # noqa: E402


@pytest.fixture
def restore_config():
    saved = dataclasses.replace(common.config)
    yield
    for f in dataclasses.fields(saved):
        setattr(common.config, f.name, getattr(saved, f.name))


def test_phase_map_builder_is_seeded_and_has_the_three_phases():
    a = build_phase_map((300, 400), radius_px=(60, 80), seed=3)
    b = build_phase_map((300, 400), radius_px=(60, 80), seed=3)
    assert a.dtype.name == "uint8" and a.shape == (300, 400)
    assert (a == b).all()
    assert set(np.unique(a).tolist()) == {0, 1, 2}
    # cracks lie inside particles and cover about the requested fraction (0.6 %)
    assert 0.004 < (a == 2).mean() < 0.012


def test_describe_suite_writes_json_and_tables_agree_with_serial_script(tmp_path, restore_config, capsys):
    rc = main([
        "describe", "--shape", "300x400", "--radius-px", "60,80", "--repeat", "1",
        "--only", "serial", "numpy", "tiled_threads", "--chunk-px", "128", "--out", str(tmp_path),
    ])
    assert rc == 0
    files = list(tmp_path.glob("describe-*.json"))
    assert len(files) == 1
    payload = json.loads(files[0].read_text())
    for key in ("cpu_model", "cores_usable", "ram_gib"):
        assert key in payload["machine"]
    for lib in ("python", "numpy", "scipy", "skimage", "dask", "cathodeflow"):
        assert payload["versions"][lib]
    (suite,) = payload["suites"]
    timings = suite["timings"]
    assert set(timings) == {"time_serial_reference", "time_describe_numpy", "time_describe_tiled_threads"}
    assert all(len(t["times_s"]) == 1 and t["median_s"] > 0 for t in timings.values())
    assert timings["time_serial_reference"]["first_call_s"] is None  # no warm-up for scipy/skimage
    assert timings["time_describe_numpy"]["first_call_s"] > 0  # warm-up timed apart
    assert suite["ratios"]["serial / describe numpy"] > 0
    info = suite["info"]
    assert info["counts_identical"]
    assert info["counts"]["serial"]["particles"] > 0 and info["counts"]["serial"]["cracks"] > 0
    # on this small map no watershed or nearest-curve tie occurs: the tables are equal
    assert info["tables_vs_serial"]["numpy"]["all_identical"]
    assert info["tables_vs_serial"]["tiled_threads"]["all_identical"]
    assert info["tiled_vs_numpy"] == {"tiled_threads": True}
    assert "serial / describe numpy" in capsys.readouterr().out
