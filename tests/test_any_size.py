"""Any image size through the command line (issue: almost no real frame is a multiple of 13)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cathodeflow.io.sem import write_tiff
from cathodeflow.io.store import open_store
from cathodeflow.synth import generate_image

CLI = [sys.executable, "-m", "cathodeflow.cli"]


def test_a_1001_by_997_image_ingests_runs_and_gives_tables_on_the_whole_field(tmp_path):
    """1001 = 7·11·13 is a multiple of 13 but not of 26; 997 is prime. The sr grid is
    ⌊n·35/13⌋ on each axis and every stage after it keeps that shape."""
    im = generate_image("30C", seed=5, image_id="big", shape_lr=(1014, 1014), r10_um=1.0, r50_um=1.3, r90_um=1.7,
                        crack_intensity_per_um2=1.0)
    lr = im.lr[:1001, :997]
    f = tmp_path / "frame.tif"
    write_tiff(f, lr, pixel_size_um=im.pixel_size_lr_um)
    store = tmp_path / "s.zarr"
    r = subprocess.run(CLI + ["ingest", str(f), "--store", str(store), "--condition", "30C"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads", "--chunk-size", "1024"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    st = open_store(store, mode="r")
    shape = (1001 * 35 // 13, 997 * 35 // 13)
    assert shape == (2695, 2684)
    for stage in ("sr", "phase", "labels/cracks", "labels/particles"):
        assert st.read_stage("frame", stage).shape == shape, stage
    images = pd.read_parquet(store / "tables" / "images.parquet")
    assert list(images["image_id"]) == ["frame"]
    phase = np.asarray(st.read_stage("frame", "phase"))
    # the tables count the stored phase map's pixels: nothing of the field was cut off
    assert int(images["solid_px"].iloc[0]) == int((phase == 1).sum())
    assert int(images["crack_px"].iloc[0]) == int((phase == 2).sum())
    assert int(images["n_cracks"].iloc[0]) > 0
    assert pytest.approx(st.pixel_size_um("frame", "sr"), rel=1e-9) == im.pixel_size_lr_um * 13 / 35
