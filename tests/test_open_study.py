"""``cathodeflow.open_study``: a study store as a lazy xarray DataTree, and its ``.cathode``
accessor (Table 1, boxplots, overlays).

The reference values are read straight from the store's files (zarr arrays, their NGFF
``scale``, the Parquet tables), never through the code under test. One small synthetic
study (2 images, 104 × 156 px raw) is run through the pipeline once per module (~10 s).
"""

import json
import shutil
import subprocess
import sys
import warnings

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr
from scipy import ndimage

import cathodeflow
from cathodeflow.config import Params
from cathodeflow.errors import CathodeflowWarning, InputError
from cathodeflow.io.sem import write_tiff
from cathodeflow.io.store import create_store, open_store
from cathodeflow.io.tables import SCHEMAS, read_table
from cathodeflow.report.build import table1
from cathodeflow.study.pipeline import ingest, run_study
from cathodeflow.synth import generate_image

PARAMS = Params(marker_radius_um=0.143)  # 10 px at the sr grid's 0.0143 µm
SMALL = dict(shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)
#: data variable -> group of its array below images/<id>/ (README "Results (contract)")
PATHS = {"raw": "raw", "sr": "sr", "phase": "sr/labels/phase", "cracks": "sr/labels/cracks",
         "particles": "sr/labels/particles"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("open_study")
    path = tmp / "study.zarr"
    for k, cond in enumerate(("20C", "50C")):
        im = generate_image(cond, seed=k, image_id=f"{cond}_000", **SMALL)
        tif = write_tiff(tmp / f"{im.image_id}.tif", im.lr, pixel_size_um=im.pixel_size_lr_um)
        ingest([tif], store=path, condition=cond)
    run_study(path, params=PARAMS, scheduler="threads")
    return path


@pytest.fixture(scope="module")
def tree(store):
    return cathodeflow.open_study(store)


def _zarr_group(store, rel):
    return zarr.open_group(str(store / rel), mode="r", zarr_format=3)


def _scale(store, rel):
    """The NGFF scale (µm per pixel) of a stage group, from its zarr.json."""
    meta = json.loads((store / rel / "zarr.json").read_text())
    return meta["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][-1]


def _red_medians(ax):
    return [line.get_ydata()[0] for line in ax.lines if line.get_color() == "red"]


def test_every_stored_array_is_a_lazy_dask_array_equal_to_the_zarr_array(store, tree):
    ids = sorted(p.name for p in (store / "images").iterdir() if p.is_dir())
    assert sorted(tree["images"].children) == ids == ["20C_000", "50C_000"]
    for iid in ids:
        ds = tree[f"images/{iid}"].to_dataset()
        assert sorted(ds.data_vars) == sorted(PATHS)  # classical phases: no prob stored
        for var, rel in PATHS.items():
            z = zarr.open_array(str(store / "images" / iid / rel / "0"), mode="r", zarr_format=3)
            arr = ds[var]
            assert isinstance(arr.data, da.Array)
            assert arr.data.chunksize == z.chunks and arr.dtype == z.dtype
            np.testing.assert_array_equal(arr.values, z[...])
        assert ds.attrs["condition"] == iid[:3]


def test_coordinates_are_pixel_index_times_each_arrays_own_ngff_scale(store, tree):
    ds = tree["images/20C_000"].to_dataset()
    eta_sr = _scale(store, "images/20C_000/sr")
    eta_raw = _scale(store, "images/20C_000/raw")
    assert eta_raw / eta_sr == pytest.approx(35 / 13, rel=1e-6)  # two grids, two scales
    for var, rel in PATHS.items():
        eta = _scale(store, f"images/20C_000/{rel}")
        arr = ds[var]
        ydim, xdim = arr.dims
        assert (ydim, xdim) == (("y_raw", "x_raw") if var == "raw" else ("y", "x"))
        np.testing.assert_allclose(arr[ydim].values, np.arange(arr.shape[0]) * eta, rtol=0, atol=1e-12)
        np.testing.assert_allclose(arr[xdim].values, np.arange(arr.shape[1]) * eta, rtol=0, atol=1e-12)
        assert arr[xdim].attrs["units"] == "µm"
        assert arr.attrs["pixel_size_um"] == eta
        rec = _zarr_group(store, f"images/20C_000/{rel}").attrs["cathodeflow"]
        assert arr.attrs["params"] == rec["params"] and arr.attrs["end_utc"] == rec["end_utc"]


def test_arrays_on_another_grid_get_their_own_dimensions_and_are_read_only_when_computed(tmp_path):
    # a U-net that resampled the image leaves prob and the labels on a grid of their own
    st = create_store(tmp_path / "s.zarr")
    st.add_image("a", np.arange(30 * 40, dtype=np.uint8).reshape(30, 40), condition="c", pixel_size_um=0.04)
    st.write_stage("a", "sr", np.ones((80, 100), np.float32), pixel_size_um=0.015, params={})
    st.write_stage("a", "prob", np.full((3, 60, 70), 0.5, np.float16), pixel_size_um=0.02, params={})
    st.write_stage("a", "phase", np.ones((60, 70), np.uint8), pixel_size_um=0.02, params={})
    with pytest.warns(CathodeflowWarning, match="no tables"):
        ds = cathodeflow.open_study(tmp_path / "s.zarr")["images/a"].to_dataset()
    assert ds["sr"].dims == ("y", "x")
    assert ds["prob"].dims == ("c", "y_prob", "x_prob") and ds["phase"].dims == ("y_prob", "x_prob")
    assert ds["raw"].dims == ("y_raw", "x_raw")
    np.testing.assert_allclose(ds["x_prob"].values, np.arange(70) * 0.02, atol=1e-12)
    np.testing.assert_allclose(ds["y_raw"].values, np.arange(30) * 0.04, atol=1e-12)
    assert list(ds["c"].values) == ["background", "solid", "crack"]
    # lazy: the pixels are read when computed, not when opened
    zarr.open_array(str(tmp_path / "s.zarr/images/a/sr/0"), mode="r+")[...] = 7.0
    assert float(ds["sr"].max()) == 7.0
    assert "cracks" not in ds and ds.attrs["incomplete"] == []
    # an imported phase map (no sr) is on (y, x); raw alone keeps (y_raw, x_raw)
    st.add_image("b", np.ones((20, 30), np.uint8), condition="c", pixel_size_um=0.01, stage="phase")
    st.add_image("c", np.ones((20, 30), np.uint8), condition="c", pixel_size_um=0.04)
    st.write_stage("a", "labels/cracks", np.ones((60, 70), np.uint32), pixel_size_um=0.02, params={})
    st.mark_incomplete("a", "labels/cracks")
    with pytest.warns(CathodeflowWarning):
        tree = cathodeflow.open_study(tmp_path / "s.zarr")
    assert tree["images/b"]["phase"].dims == ("y", "x") and tree["images/c"]["raw"].dims == ("y_raw", "x_raw")
    assert "cracks" not in tree["images/a"].data_vars and tree["images/a"].attrs["incomplete"] == ["cracks"]


def test_table_variables_equal_the_parquet_tables_and_carry_units_from_their_names(store, tree):
    expected = {
        "images": {"crack_intensity_per_um2": "µm^-2", "area_um2": "µm^2", "pixel_size_um": "µm",
                   "solid_px": "px", "porosity": "1", "n_cracks": "1"},
        "cracks": {"d_um": "µm", "length_um": "µm", "width_um": "µm", "area_px": "px", "kept": "1",
                   "radial_angle_deg": "degree", "centroid_x_um": "µm"},
        "particles": {"ssa_per_um": "µm^-1", "area_um2": "µm^2", "section_radius_um": "µm"},
        "local_porosity": {"bin_lo": "1", "crack_um2": "µm^2", "porosity": "1"},
        "conditions": {"intensity_mean": "µm^-2", "intensity_pooled_per_um2": "µm^-2",
                       "porosity_std": "1"},
    }
    assert sorted(tree["tables"].children) == sorted(SCHEMAS)
    for name, units in expected.items():
        ds = tree[f"tables/{name}"].to_dataset()
        for col, u in units.items():
            assert ds[col].attrs["units"] == u, (name, col)
        for col in SCHEMAS[name]:  # every numeric column has units, identifiers none
            if col in ds.variables and ds[col].dtype.kind in "biuf" and not col.endswith("_id"):
                assert "units" in ds[col].attrs, (name, col)
    ref = read_table(store / "tables" / "cracks.parquet", "cracks")
    got = tree["tables/cracks"].to_dataset()
    np.testing.assert_array_equal(got["width_um"].values, ref["width_um"].to_numpy())
    assert list(got["image_id"].values) == list(ref["image_id"])


def test_accessor_tables_round_trip_and_table1_equals_report_table1_on_the_parquet_files(store, tree):
    parquet = {n: read_table(store / "tables" / f"{n}.parquet", n) for n in SCHEMAS}
    got = tree.cathode.tables()
    for name in ("images", "cracks", "particles", "conditions"):
        pd.testing.assert_frame_equal(got[name], parquet[name])
    keys = ["condition", "method", "bin_lo"]
    pd.testing.assert_frame_equal(got["local_porosity"].sort_values(keys).reset_index(drop=True),
                                  parquet["local_porosity"].sort_values(keys).reset_index(drop=True))
    pd.testing.assert_frame_equal(tree.cathode.table1(), table1(parquet))
    assert list(tree.cathode.table1()["condition"]) == ["20C", "50C"]


def test_boxplot_median_lines_equal_the_column_median_per_condition(store, tree):
    cracks = pd.read_parquet(store / "tables" / "cracks.parquet")
    kept = cracks[cracks["kept"]]
    ax = tree.cathode.boxplot("width_um", by="condition", query="kept")
    want = [kept.loc[kept["condition"] == c, "width_um"].median() for c in ("20C", "50C")]
    np.testing.assert_allclose(_red_medians(ax), want, rtol=1e-12)
    assert ax.get_ylabel() == "width_um [µm]"
    ax = tree.cathode.boxplot("ssa_per_um", by="image_id")
    parts = pd.read_parquet(store / "tables" / "particles.parquet")
    want = [parts.loc[parts["image_id"] == i, "ssa_per_um"].median() for i in ("20C_000", "50C_000")]
    np.testing.assert_allclose(_red_medians(ax), want, rtol=1e-12)


def test_boxplot_of_an_ambiguous_or_unknown_column_is_a_one_line_input_error(tree):
    with pytest.raises(InputError, match="images, particles; pass table="):
        tree.cathode.boxplot("porosity")
    with pytest.raises(InputError, match="'width'"):
        tree.cathode.boxplot("width")
    with pytest.raises(InputError, match="query 'nonsense >'"):
        tree.cathode.boxplot("width_um", query="nonsense >")
    ax = tree.cathode.boxplot("porosity", table="particles")
    assert len(_red_medians(ax)) == 2


def test_overlay_draws_the_sr_image_and_the_label_outlines_in_micrometres(store, tree):
    sr = zarr.open_array(str(store / "images/20C_000/sr/0"), mode="r")[...]
    eta = _scale(store, "images/20C_000/sr")
    ax = tree.cathode.overlay("20C_000")
    bg, particles, cracks = ax.images
    np.testing.assert_array_equal(bg.get_array(), sr)
    h, w = sr.shape
    np.testing.assert_allclose(bg.get_extent(), [-eta / 2, (w - 0.5) * eta, (h - 0.5) * eta, -eta / 2])
    cross = ndimage.generate_binary_structure(2, 1)
    for img, name in ((particles, "particles"), (cracks, "cracks")):
        lab = zarr.open_array(str(store / f"images/20C_000/sr/labels/{name}/0"), mode="r")[...]
        edge = (ndimage.maximum_filter(lab, footprint=cross, mode="nearest")
                != ndimage.minimum_filter(lab, footprint=cross, mode="nearest")) & (lab > 0)
        assert edge.any()
        np.testing.assert_array_equal(np.asarray(img.get_array())[..., 3] > 0, edge)


def test_overlay_fill_and_region_select_by_micrometres(store, tree):
    lab = zarr.open_array(str(store / "images/50C_000/sr/labels/particles/0"), mode="r")[...]
    eta = _scale(store, "images/50C_000/sr")
    ax = tree.cathode.overlay("50C_000", labels=["particles"], style="fill", y=slice(0.5, 3.5), x=slice(1.0, 5.0))
    bg, fill = ax.images
    y, x = np.arange(lab.shape[0]) * eta, np.arange(lab.shape[1]) * eta
    rows, cols = np.flatnonzero((y >= 0.5) & (y <= 3.5)), np.flatnonzero((x >= 1.0) & (x <= 5.0))
    sub = lab[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    rgba = np.asarray(fill.get_array())
    assert rgba.shape == sub.shape + (4,)
    np.testing.assert_array_equal(rgba[..., 3] > 0, sub > 0)
    # one colour per particle: pixels of a label share it, different labels differ
    colours = {int(v): tuple(rgba[sub == v][0]) for v in np.unique(sub[sub > 0])}
    for v, c in colours.items():
        assert (rgba[sub == v] == c).all()
    assert len(set(colours.values())) == len(colours) >= 2
    with pytest.raises(InputError, match="'nope'"):
        tree.cathode.overlay("nope")


def test_stale_tables_are_left_out_with_a_warning_and_table1_says_why(store, tmp_path):
    copy = tmp_path / "study.zarr"
    shutil.copytree(store, copy)
    open_store(copy, mode="r+").remove_images(["50C_000"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tree = cathodeflow.open_study(copy)
    assert any(issubclass(w.category, CathodeflowWarning) and "older than the store" in str(w.message)
               for w in caught)
    assert "tables" not in tree.children and sorted(tree["images"].children) == ["20C_000"]
    with pytest.raises(InputError, match="no current tables"):
        tree.cathode.table1()


@pytest.mark.parametrize("case", ["missing", "file", "plain_dir"])
def test_a_path_that_is_not_a_study_store_is_a_one_line_input_error(tmp_path, case):
    path = tmp_path / "x"
    if case == "file":
        path.write_text("hello")
    elif case == "plain_dir":
        path.mkdir()
        (path / "a.txt").write_text("x")
    with pytest.raises(InputError) as err:
        cathodeflow.open_study(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "study store" in msg and msg.startswith("open_study path")


def test_import_cathodeflow_is_light_and_dir_lists_describe_and_open_study():
    code = (
        "import sys, cathodeflow; names = dir(cathodeflow);"
        "heavy = {'xarray', 'matplotlib', 'dask', 'keras', 'tensorflow'};"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & heavy);"
        "print(heavy, 'describe' in names, 'open_study' in names);"
        "f = cathodeflow.open_study; import xarray as xr; print(hasattr(xr.DataTree, 'cathode'))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[] True True", "True"]


def test_overlay_of_an_image_added_as_a_phase_map_draws_on_the_phase_map(tmp_path):
    from cathodeflow.cli import main

    store = tmp_path / "m.zarr"
    assert main(["synth-mosaic", "--store", str(store), "--megapixels", "0.3", "--tiles", "1", "--tile-px", "130"]) == 0
    assert main(["run", "--store", str(store), "--scheduler", "threads"]) == 0
    tree = cathodeflow.open_study(store)
    ax = tree.cathode.overlay("mosaic")
    phase = open_store(store, mode="r").read_stage("mosaic", "phase").compute()
    np.testing.assert_array_equal(ax.images[0].get_array(), phase)  # the background is S
    assert len(ax.images) == 3 and "phase + particles, cracks" in ax.get_title(loc="left")
    with pytest.raises(InputError, match="no complete 'sr'"):
        tree.cathode.overlay("mosaic", image="sr")
