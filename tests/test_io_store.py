"""The study store (DESIGN §4.1): layout, OME-Zarr metadata, completion, refusals."""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import datetime
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr

from cathodeflow.errors import InputError, StoreError
from cathodeflow.io.store import STAGES, create_store, open_store


def _snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` with the SHA-256 of its bytes (directories too)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


def _image(shape, seed=0, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, 200, size=shape).astype(dtype)


@pytest.fixture
def study(tmp_path):
    st = create_store(tmp_path / "study.zarr")
    st.add_image(
        "img-1",
        _image((150, 170)),
        condition="20C",
        pixel_size_um=0.0385,
        source={"path": "/data/img-1.tif", "sha256": "ab" * 32},
    )
    return st


# ------------------------------------------------------------------ round trips


def test_numpy_round_trip_keeps_pixels_condition_and_source(tmp_path):
    img = _image((301, 257), seed=1)
    st = create_store(tmp_path / "s.zarr")
    st.add_image("a", img, condition="30C", pixel_size_um=0.0385, source={"path": "/x/a.tif", "sha256": "0" * 64},
                 chunks=(64, 100))
    st = open_store(tmp_path / "s.zarr", mode="r")
    assert st.image_ids() == ["a"]
    assert st.condition("a") == "30C"
    assert st.source("a") == {"path": "/x/a.tif", "sha256": "0" * 64}
    assert st.pixel_size_um("a", "raw") == 0.0385
    out = st.read_stage("a", "raw")
    assert isinstance(out, da.Array) and out.dtype == np.uint8
    assert out.chunksize == (64, 100)
    np.testing.assert_array_equal(out.compute(), img)


def test_dask_round_trip_with_chunks_that_do_not_divide_the_shape(study):
    img = _image((413, 389), seed=2, dtype=np.uint16)
    seen = []

    def spy(block):
        if block.size:  # not dask's meta inference on an empty block
            seen.append(block.shape)
        return block

    lazy = da.from_array(img, chunks=(100, 90)).map_blocks(spy, dtype=img.dtype)
    study.write_stage("img-1", "sr", lazy, pixel_size_um=0.0143, params={"method": "test"}, chunks=(128, 150))
    out = study.read_stage("img-1", "sr")
    assert out.chunksize == (128, 150)
    np.testing.assert_array_equal(out.compute(), img)
    # the input was computed block by block, never as one whole image
    assert len(seen) >= 5 * 5 and max(s[0] for s in seen) <= 100 and max(s[1] for s in seen) <= 90


def test_prob_stage_has_a_channel_axis(study):
    prob = np.random.default_rng(3).random((3, 150, 170)).astype(np.float32)
    study.write_stage("img-1", "prob", da.from_array(prob, chunks=(3, 64, 64)), pixel_size_um=0.0143, params={})
    out = study.read_stage("img-1", "prob")
    assert out.shape == (3, 150, 170) and out.chunksize[0] == 3
    np.testing.assert_array_equal(out.compute(), prob)


def test_provenance_is_recorded(study):
    study.write_stage("img-1", "phase", _image((150, 170)) % 3, pixel_size_um=0.0143,
                      params={"t": np.float32(0.5), "bins": (0.0, 0.1)}, weights_sha256="f" * 64)
    rec = study.stage_info("img-1", "phase")
    assert rec["complete"] is True
    assert rec["params"] == {"t": 0.5, "bins": [0.0, 0.1]}
    assert rec["weights_sha256"] == "f" * 64
    assert isinstance(rec["package_version"], str) and rec["package_version"]
    t0, t1 = datetime.fromisoformat(rec["start_utc"]), datetime.fromisoformat(rec["end_utc"])
    assert t0.utcoffset().total_seconds() == 0 and t0 <= t1


def test_add_image_twice_needs_overwrite(study):
    with pytest.raises(StoreError, match="already"):
        study.add_image("img-1", _image((10, 10)), condition="20C", pixel_size_um=0.1)
    study.add_image("img-1", _image((10, 12)), condition="40C", pixel_size_um=0.1, overwrite=True)
    assert study.condition("img-1") == "40C" and study.read_stage("img-1", "raw").shape == (10, 12)


def test_read_only_store_refuses_writes(study):
    ro = open_store(study.path, mode="r")
    with pytest.raises(StoreError, match="read-only"):
        ro.write_stage("img-1", "sr", _image((5, 5)), pixel_size_um=0.1, params={})


# ------------------------------------------------------------------ completion


def test_stage_is_incomplete_while_its_chunks_are_written(study):
    """The completion mark is cleared before the first chunk and set after the last."""
    seen = []

    def probe(block):
        if block.size:  # not dask's meta inference on an empty block
            seen.append(open_store(study.path, mode="r").is_complete("img-1", "sr"))
        return block

    study.write_stage("img-1", "sr", da.from_array(_image((100, 100)), chunks=50), pixel_size_um=0.02, params={})
    assert study.is_complete("img-1", "sr")
    lazy = da.from_array(_image((100, 100), seed=5), chunks=50).map_blocks(probe, dtype=np.uint8)
    study.write_stage("img-1", "sr", lazy, pixel_size_um=0.02, params={}, compute_kw={"scheduler": "sync"})
    assert seen == [False] * 4
    assert study.is_complete("img-1", "sr")


def test_interrupted_write_leaves_the_stage_incomplete_and_it_is_recomputed(study):
    good = _image((120, 120), seed=6)
    study.write_stage("img-1", "sr", good, pixel_size_um=0.02, params={"run": 1})
    assert study.is_complete("img-1", "sr")

    def boom(block, block_info=None):
        if block_info[0]["chunk-location"] == (1, 1):
            raise RuntimeError("worker died")
        return block

    failing = da.from_array(good, chunks=40).map_blocks(boom, dtype=good.dtype)
    with pytest.raises(RuntimeError, match="worker died"):
        study.write_stage("img-1", "sr", failing, pixel_size_um=0.02, params={"run": 2})
    assert not study.is_complete("img-1", "sr")
    with pytest.raises(StoreError, match="not complete"):
        study.read_stage("img-1", "sr")
    with pytest.raises(StoreError, match="not complete"):
        study.pixel_size_um("img-1", "sr")
    # an NGFF reader does not see the half-written image either
    attrs = zarr.open_group(str(study.path / "images/img-1/sr"), mode="r").attrs.asdict()
    assert "ome" not in attrs
    # recompute
    study.write_stage("img-1", "sr", good, pixel_size_um=0.02, params={"run": 3})
    assert study.is_complete("img-1", "sr")
    assert study.stage_info("img-1", "sr")["params"] == {"run": 3}
    np.testing.assert_array_equal(study.read_stage("img-1", "sr").compute(), good)


def test_killed_before_the_mark_reads_as_incomplete(study):
    study.write_stage("img-1", "sr", _image((20, 20)), pixel_size_um=0.02, params={})
    study.mark_incomplete("img-1", "sr")  # what a kill between last chunk and mark leaves
    assert not study.is_complete("img-1", "sr")


def test_unwritten_stages_are_incomplete(study):
    assert study.is_complete("img-1", "raw")
    assert [s for s in STAGES if study.is_complete("img-1", s)] == ["raw"]
    with pytest.raises(StoreError, match="no image"):
        study.read_stage("other", "raw")


# ------------------------------------------------------------------ refusals leave the store unchanged


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"condition": 20}, "condition must be a str, got int"),
        ({"condition": None}, "condition must be a str, got NoneType"),
        ({"condition": ""}, "condition"),
        ({"pixel_size_um": 0}, "pixel_size_um"),
        ({"pixel_size_um": float("nan")}, "pixel_size_um"),
        ({"image_id": "../escape"}, "image_id"),
        ({"image_id": "a/b"}, "image_id"),
        ({"array": np.zeros((4, 4, 4), np.uint8)}, "shape"),
        ({"array": np.array([["a"]])}, "numeric"),
        ({"source": {"path": object()}}, "source"),
    ],
)
def test_bad_add_image_is_refused_and_store_unchanged(study, kwargs, match):
    before = _snapshot(study.path)
    args = {"image_id": "img-2", "array": _image((20, 20)), "condition": "20C", "pixel_size_um": 0.1}
    args.update(kwargs)
    image_id, array = args.pop("image_id"), args.pop("array")
    with pytest.raises(InputError, match=match):
        study.add_image(image_id, array, **args)
    assert _snapshot(study.path) == before


def test_bad_write_stage_is_refused_and_store_unchanged(study):
    before = _snapshot(study.path)
    with pytest.raises(InputError, match="integer"):
        study.write_stage("img-1", "labels/cracks", np.zeros((5, 5), np.float32), pixel_size_um=0.1, params={})
    with pytest.raises(InputError, match="stage must be one of"):
        study.write_stage("img-1", "labels/grains", np.zeros((5, 5), np.int32), pixel_size_um=0.1, params={})
    with pytest.raises(InputError, match="params"):
        study.write_stage("img-1", "sr", np.zeros((5, 5), np.uint8), pixel_size_um=0.1, params={"x": float("nan")})
    with pytest.raises(InputError, match="weights_sha256"):
        study.write_stage("img-1", "sr", np.zeros((5, 5), np.uint8), pixel_size_um=0.1, params={}, weights_sha256="abc")
    assert _snapshot(study.path) == before


def test_zarr_group_of_another_kind_is_refused_and_left_unchanged(tmp_path):
    other = tmp_path / "other.zarr"
    g = zarr.create_group(str(other), zarr_format=3, attributes={"project": "someone else's"})
    g.create_array("data", shape=(10, 10), dtype="uint8", chunks=(5, 5))[:] = 7
    before = _snapshot(other)
    with pytest.raises(StoreError, match="another kind") as err:
        open_store(other)
    assert str(other) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StoreError, match="another kind"):
        create_store(other, exist_ok=True)
    assert _snapshot(other) == before


@pytest.mark.parametrize("what", ["file", "plain-dir", "empty-dir", "missing", "zarr-array", "zarr-v2"])
def test_things_that_are_not_study_stores_are_refused(tmp_path, what):
    p = tmp_path / "thing"
    if what == "file":
        p.write_text("x")
    elif what == "plain-dir":
        p.mkdir()
        (p / "notes.txt").write_text("x")
    elif what == "empty-dir":
        p.mkdir()
    elif what == "zarr-array":
        zarr.create_array(str(p), shape=(4,), dtype="uint8", zarr_format=3)
    elif what == "zarr-v2":
        zarr.create_group(str(p), zarr_format=2)
    before = _snapshot(p) if p.is_dir() else None
    with pytest.raises(StoreError) as err:
        open_store(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)
    if before is not None:
        assert _snapshot(p) == before


def test_create_store_over_a_study_needs_exist_ok(study):
    with pytest.raises(StoreError, match="already a study store"):
        create_store(study.path)
    again = create_store(study.path, exist_ok=True)
    assert again.image_ids() == ["img-1"]


def test_create_store_refuses_a_non_empty_plain_directory(tmp_path):
    p = tmp_path / "results"
    p.mkdir()
    (p / "keep.csv").write_text("a,b\n")
    with pytest.raises(StoreError, match="not a Zarr store"):
        create_store(p)
    assert sorted(x.name for x in p.iterdir()) == ["keep.csv"]


def test_create_store_in_an_empty_directory(tmp_path):
    p = tmp_path / "empty"
    p.mkdir()
    assert create_store(p).image_ids() == []


# ------------------------------------------------------------------ tables folder


def test_tables_folder_with_parquet_files_does_not_disturb_zarr(study):
    import pandas as pd

    tdir = Path(study.tables_dir)
    assert tdir == study.path / "tables" and tdir.is_dir()
    pd.DataFrame({"a": [1, 2]}).to_parquet(tdir / "images.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not recognized as a component" warning
        st = open_store(study.path, mode="r")
        assert st.image_ids() == ["img-1"]
        root = zarr.open_group(str(study.path), mode="r")
        assert sorted(name for name, _ in root.members()) == ["images", "tables"]
    # a recursive listing reaches the Parquet files: zarr warns about them but works
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "img-1" in str(root.tree())
    np.testing.assert_array_equal(st.read_stage("img-1", "raw").compute().shape, (150, 170))
    assert pd.read_parquet(tdir / "images.parquet")["a"].tolist() == [1, 2]


# ------------------------------------------------------------------ OME-Zarr (NGFF 0.5) metadata


def _full_study(study):
    eta = 0.0385 * 13 / 35
    sr = _image((403, 457), seed=7)
    prob = np.random.default_rng(8).random((3, 403, 457)).astype(np.float32)
    phase = (sr % 3).astype(np.uint8)
    study.write_stage("img-1", "sr", sr, pixel_size_um=eta, params={})
    study.write_stage("img-1", "prob", prob, pixel_size_um=eta, params={})
    study.write_stage("img-1", "phase", phase, pixel_size_um=eta, params={}, kind="labels")
    study.write_stage("img-1", "labels/cracks", (phase == 2).astype(np.int32), pixel_size_um=eta, params={})
    study.write_stage("img-1", "labels/particles", (phase == 1).astype(np.int64), pixel_size_um=eta, params={})
    return eta


def test_ngff_05_metadata_structure(study):
    """Checked against the NGFF 0.5 spec by hand (no third-party validator needed)."""
    eta = _full_study(study)
    root = study.path / "images" / "img-1"
    for stage in STAGES:
        meta = json.loads((root / stage / "zarr.json").read_text())
        assert meta["node_type"] == "group" and meta["zarr_format"] == 3
        ome = meta["attributes"]["ome"]
        assert ome["version"] == "0.5"
        (ms,) = ome["multiscales"]
        assert "version" not in ms  # 0.5 keeps the version only under "ome"
        names = [a["name"] for a in ms["axes"]]
        assert names == (["c", "y", "x"] if stage == "prob" else ["y", "x"])
        for a in ms["axes"]:
            assert a["type"] == ("channel" if a["name"] == "c" else "space")
            if a["type"] == "space":
                assert a["unit"] == "micrometer"
        (ds,) = ms["datasets"]
        ps = 0.0385 if stage == "raw" else eta
        assert ds["coordinateTransformations"] == [
            {"type": "scale", "scale": ([1.0] if stage == "prob" else []) + [ps, ps]}
        ]
        arr = json.loads((root / stage / ds["path"] / "zarr.json").read_text())
        assert arr["node_type"] == "array" and arr["dimension_names"] == names
        if stage.startswith("labels/") or stage == "phase":
            assert "image-label" in ome and np.dtype(arr["data_type"]).kind in "ui"
    labels = json.loads((root / "labels" / "zarr.json").read_text())["attributes"]["ome"]
    assert labels == {"version": "0.5", "labels": ["cracks", "particles"]}
    cracks = json.loads((root / "labels" / "cracks" / "zarr.json").read_text())["attributes"]["ome"]
    assert cracks["image-label"]["source"] == {"image": "../../sr"}
    assert (root / "labels" / "cracks" / cracks["image-label"]["source"]["image"] / "zarr.json").exists()


def test_ome_zarr_models_validates_every_stage(study):
    pytest.importorskip("ome_zarr_models", reason="ome-zarr-models not installed (optional test dependency)")
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel
    from ome_zarr_models.v05.labels import Labels

    _full_study(study)
    base = study.path / "images" / "img-1"
    for stage in ("raw", "sr", "prob", "phase"):
        Image.from_zarr(zarr.open_group(str(base / stage), mode="r"))
    for name in ("cracks", "particles"):
        ImageLabel.from_zarr(zarr.open_group(str(base / "labels" / name), mode="r"))
    assert Labels.from_zarr(zarr.open_group(str(base / "labels"), mode="r")).label_paths == ["cracks", "particles"]


def test_ome_zarr_reader_opens_image_and_labels_with_their_scale(study):
    pytest.importorskip("ome_zarr", reason="ome-zarr not installed (optional test dependency)")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    eta = _full_study(study)
    base = study.path / "images" / "img-1"
    (node,) = list(Reader(parse_url(str(base / "sr")))())
    assert any(isinstance(s, Multiscales) for s in node.specs)
    np.testing.assert_array_equal(np.asarray(node.data[0]), study.read_stage("img-1", "sr").compute())
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [eta, eta]
    nodes = list(Reader(parse_url(str(base / "labels")))())
    label_nodes = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert len(label_nodes) == 2
    assert sorted(n.data[0].shape for n in label_nodes) == [(403, 457)] * 2


def test_write_stage_on_a_distributed_worker_process(study):
    """The zarr target travels to another process (pickled) and writes there."""
    distributed = pytest.importorskip("distributed")
    img = _image((130, 170), seed=11)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        study.write_stage("img-1", "sr", da.from_array(img, chunks=(64, 64)), pixel_size_um=0.02,
                          params={}, compute_kw={"scheduler": client})
    assert study.is_complete("img-1", "sr")
    np.testing.assert_array_equal(study.read_stage("img-1", "sr").compute(), img)


def test_tables_open_as_xarray_with_local_porosity_as_a_grid():
    from cathodeflow.io.tables import to_xarray

    lp = pd.DataFrame({
        "condition": ["20C", "20C", "50C", "50C"], "method": ["paper"] * 4,
        "bin_lo": [0.0, 0.5, 0.0, 0.5], "bin_hi": [0.5, 1.0, 0.5, 1.0],
        "crack_um2": [1.0, 2.0, 3.0, 4.0], "solid_um2": [9.0, 8.0, 7.0, 6.0],
        "porosity": [0.1, 0.2, 0.3, 0.4],
    })
    cr = pd.DataFrame({
        "image_id": ["a", "a"], "condition": ["20C"] * 2, "crack_id": [1, 2], "area_px": [5, 9],
        "skeleton_px": [3, 4], "d_um": [0.1, 0.2], "length_um": [0.3, 0.4], "width_um": [0.1, 0.1],
        "particle_id": [1, 1], "kept": [True, True], "adjusted": [False, True],
    })
    ds = to_xarray({"local_porosity": lp, "cracks": cr})
    grid = ds["local_porosity"].porosity
    assert grid.dims == ("condition", "method", "bin_lo")
    assert float(grid.sel({"condition": "50C", "method": "paper", "bin_lo": 0.5})) == 0.4
    assert ds["cracks"].sizes["crack"] == 2
    assert list(ds["cracks"].crack_id.values) == [1, 2]
