"""The study store (DESIGN §4.1): layout, OME-Zarr metadata, completion, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from datetime import datetime
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr

from cathodeflow.errors import InputError, StoreError
from cathodeflow.io.store import STAGES, create_store, migrate_store, open_store


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
    with pytest.raises(InputError, match="'phase' is an NGFF label image"):
        study.write_stage("img-1", "phase", np.zeros((5, 5), np.uint8), pixel_size_um=0.1, params={}, kind="image")
    with pytest.raises(InputError, match="integer"):
        study.write_stage("img-1", "phase", np.zeros((5, 5), np.float32), pixel_size_um=0.1, params={})
    with pytest.raises(InputError, match="'sr' is an NGFF image"):
        study.write_stage("img-1", "sr", np.zeros((5, 5), np.uint8), pixel_size_um=0.1, params={}, kind="labels")
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
        assert sorted(name for name, _ in root.members()) == ["OME", "images", "tables"]
    # a recursive listing reaches the Parquet files: zarr warns about them but works
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "img-1" in str(root.tree())
    np.testing.assert_array_equal(st.read_stage("img-1", "raw").compute().shape, (150, 170))
    assert pd.read_parquet(tdir / "images.parquet")["a"].tolist() == [1, 2]


# ------------------------------------------------------------------ layout (store version 2)

#: The layout of DESIGN §4.1, written out: each stage's array below images/<id>/.
LAYOUT = {
    "raw": "raw/0", "sr": "sr/0", "prob": "sr/prob/0", "phase": "sr/labels/phase/0",
    "labels/cracks": "sr/labels/cracks/0", "labels/particles": "sr/labels/particles/0",
}


def _series(path: Path) -> list[str]:
    return json.loads((path / "OME" / "zarr.json").read_text())["attributes"]["ome"]["series"]


def test_every_stage_lives_where_design_4_1_puts_it(study):
    eta = 0.0143
    arrays = {
        "sr": _image((40, 50), seed=1),
        "prob": np.random.default_rng(2).random((3, 40, 50)).astype(np.float16),
        "phase": _image((40, 50), seed=3) % 3,
        "labels/cracks": _image((40, 50), seed=4, dtype=np.int32),
        "labels/particles": _image((40, 50), seed=5, dtype=np.int64),
    }
    for stage, a in arrays.items():
        study.write_stage("img-1", stage, a, pixel_size_um=eta, params={})
    base = study.path / "images" / "img-1"
    assert sorted(p.name for p in base.iterdir()) == ["raw", "sr", "zarr.json"]
    for stage, rel in LAYOUT.items():
        assert study.stage_path("img-1", stage) + "/0" == f"images/img-1/{rel}"
        meta = json.loads((base / rel / "zarr.json").read_text())
        assert meta["node_type"] == "array"
        if stage in arrays:
            np.testing.assert_array_equal(zarr.open_array(str(base / rel), mode="r")[...], arrays[stage])
    # the image group is a plain group: no OME-Zarr metadata of its own
    assert set(json.loads((base / "zarr.json").read_text())["attributes"]) == {"cathodeflow"}


def test_root_series_lists_raw_and_sr_of_every_image_and_follows_adds_and_removals(study):
    root = json.loads((study.path / "zarr.json").read_text())["attributes"]
    assert root["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
    assert _series(study.path) == ["images/img-1/raw"]
    study.add_image("b", _image((20, 20)), condition="20C", pixel_size_um=0.0385)
    study.add_image("a", _image((20, 20)), condition="20C", pixel_size_um=0.0385)
    study.write_stage("b", "sr", _image((54, 54)), pixel_size_um=0.0143, params={})
    study.write_stage("b", "sr", _image((54, 54)), pixel_size_um=0.0143, params={})  # listed once
    assert _series(study.path) == ["images/a/raw", "images/b/raw", "images/b/sr", "images/img-1/raw"]
    # a phase map imported without sr: its sr group holds no image and is not listed
    study.add_image("c", _image((20, 20)) % 3, condition="20C", pixel_size_um=0.0143, stage="phase")
    assert study.is_complete("c", "phase") and study.stage_status("c", "sr") == "absent"
    assert "images/c/sr" not in _series(study.path)
    study.add_image("b", _image((20, 20)), condition="20C", pixel_size_um=0.0385, overwrite=True)
    assert _series(study.path) == ["images/a/raw", "images/b/raw", "images/img-1/raw"]
    assert study.remove_images(["img-1", "a"]) == ["img-1", "a"]
    assert _series(study.path) == ["images/b/raw"]
    for entry in _series(study.path):
        assert (study.path / entry / "0" / "zarr.json").exists()


# ------------------------------------------------------------------ migration from store version 1

T0, T1 = "2025-01-02T03:04:05.000+00:00", "2025-01-02T03:04:06.000+00:00"


def _write_v1_store(path: Path) -> dict:
    """A store of layout version 1 written with zarr alone (the layout before version 2):
    every stage a sibling group images/<id>/<stage>, labels in images/<id>/labels. Image "a"
    has every stage, "b" a phase map imported without sr, "c" a float phase map (allowed
    in version 1 as kind 'image'). Returns {(id, stage): (array, record)}."""
    rng = np.random.default_rng(20)
    root = zarr.create_group(str(path), zarr_format=3)
    root.create_group("images")
    root.create_group("tables", attributes={"cathodeflow": {"kind": "tables"}})
    written = {}

    def stage(iid, name, arr, ps, *, kind="image", label_source=None):
        axes = ([{"name": "c", "type": "channel"}] if arr.ndim == 3 else []) + [
            {"name": n, "type": "space", "unit": "micrometer"} for n in ("y", "x")]
        ome = {"version": "0.5", "multiscales": [{"name": name.split("/")[-1], "axes": axes, "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * (arr.ndim - 2) + [ps, ps]}]}]}]}
        if kind == "labels":
            ome["image-label"] = {"source": {"image": label_source}} if label_source else {}
        rec = {"stage": name, "complete": True, "kind": kind, "pixel_size_um": ps, "shape": list(arr.shape),
               "dtype": str(arr.dtype), "chunks": list(arr.shape), "params": {"run": 1}, "package_version": "0.1.0",
               "weights_sha256": None, "start_utc": T0, "end_utc": T1}
        g = root.create_group(f"images/{iid}/{name}", attributes={"ome": ome, "cathodeflow": rec})
        g.create_array("0", shape=arr.shape, dtype=arr.dtype, chunks=arr.shape,
                       dimension_names=("c", "y", "x")[3 - arr.ndim:])[...] = arr
        written[(iid, name)] = (arr, rec)

    for iid in ("a", "b", "c"):
        root.create_group(f"images/{iid}", attributes={"cathodeflow": {"condition": "20C", "source": None,
                                                                       "added_utc": T0}})
        stage(iid, "raw", rng.integers(0, 255, (30, 40), dtype=np.uint8), 0.0385)
    sr = rng.integers(0, 255, (81, 108), dtype=np.uint8)
    phase = (sr % 3).astype(np.uint8)
    stage("a", "sr", sr, 0.0143)
    stage("a", "prob", rng.random((3, 81, 108)).astype(np.float16), 0.0143)
    stage("a", "phase", phase, 0.0143, kind="labels", label_source="../sr")
    stage("a", "labels/cracks", (phase == 2).astype(np.int32), 0.0143, kind="labels", label_source="../../sr")
    stage("a", "labels/particles", (phase == 1).astype(np.int64), 0.0143, kind="labels", label_source="../../sr")
    root["images/a/labels"].attrs.put({"ome": {"version": "0.5", "labels": ["cracks", "particles"]}})
    stage("b", "phase", phase[:50, :60], 0.0143, kind="labels")
    stage("c", "sr", sr, 0.0143)
    stage("c", "phase", rng.random((81, 108)).astype(np.float32), 0.0143)
    root.attrs.put({"cathodeflow": {"kind": "study", "version": 1, "created_utc": T0, "created_by": "0.1.0"}})
    return written


def test_version_1_store_is_refused_with_the_command_that_converts_it(tmp_path):
    v1 = tmp_path / "old.zarr"
    _write_v1_store(v1)
    before = _snapshot(v1)
    for attempt in (lambda: open_store(v1, mode="r"), lambda: create_store(v1, exist_ok=True)):
        with pytest.raises(StoreError) as err:
            attempt()
        msg = str(err.value)
        assert "version 1" in msg and f"`cathodeflow migrate {v1}`" in msg and "\n" not in msg
    assert _snapshot(v1) == before


def test_migrate_moves_every_stage_and_keeps_pixels_and_provenance(tmp_path):
    v1 = tmp_path / "old.zarr"
    written = _write_v1_store(v1)
    done = migrate_store(v1)
    # moved: prob, phase, cracks, particles of a; phase of b and of c
    assert done == {"from_version": 1, "to_version": 2, "images": 3, "moved": 6, "recompute": ["c: phase"]}
    assert not (v1 / "cathodeflow.lock").exists()
    st = open_store(v1, mode="r")
    assert st.image_ids() == ["a", "b", "c"]
    for (iid, stage), (arr, rec) in written.items():
        assert (v1 / "images" / iid / LAYOUT[stage]).is_dir()
        got = st.stage_info(iid, stage)
        if (iid, stage) == ("c", "phase"):
            assert st.stage_status(iid, stage) == "incomplete" and got["kind"] == "labels"
            continue
        assert {k: v for k, v in got.items() if k != "kind"} == {k: v for k, v in rec.items() if k != "kind"}
        np.testing.assert_array_equal(st.read_stage(iid, stage).compute(), arr)
    for iid in ("a", "b", "c"):
        assert sorted(p.name for p in (v1 / "images" / iid).iterdir()) == ["raw", "sr", "zarr.json"]
    assert st.stage_status("b", "sr") == "absent"  # b's sr group only holds the imported labels
    assert _series(v1) == ["images/a/raw", "images/a/sr", "images/b/raw", "images/c/raw", "images/c/sr"]
    labels = {i: json.loads((v1 / "images" / i / "sr/labels/zarr.json").read_text())["attributes"]["ome"]["labels"]
              for i in ("a", "b", "c")}
    assert labels == {"a": ["phase", "cracks", "particles"], "b": ["phase"], "c": []}  # c's listed when redone
    for rel in ("a/sr/labels/phase", "a/sr/labels/cracks", "b/sr/labels/phase"):
        label = json.loads((v1 / "images" / rel / "zarr.json").read_text())["attributes"]["ome"]["image-label"]
        assert label["source"] == {"image": "../../"}
    root = json.loads((v1 / "zarr.json").read_text())["attributes"]
    assert root["cathodeflow"]["version"] == 2 and root["cathodeflow"]["created_utc"] == T0
    assert migrate_store(v1)["moved"] == 0  # a second run finds version 2: nothing to do


def _tree(path: Path) -> dict[str, object]:
    """Every file below ``path``: zarr.json parsed (the root's migration time left out), other
    files as their bytes."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(path))
            if p.name == "zarr.json":
                meta = json.loads(p.read_text())
                meta.get("attributes", {}).get("cathodeflow", {}).pop("migrated_utc", None)
                out[rel] = meta
            else:
                out[rel] = p.read_bytes()
    return out


@pytest.mark.parametrize("where", ["third rename", "root listing"])
def test_interrupted_migration_is_refused_then_finished_by_running_it_again(tmp_path, monkeypatch, where):
    import cathodeflow.io.store as store_mod

    ref, cut = tmp_path / "ref.zarr", tmp_path / "cut.zarr"
    _write_v1_store(ref)
    _write_v1_store(cut)
    migrate_store(ref)
    with monkeypatch.context() as m:
        if where == "third rename":
            calls, rename = [], os.rename

            def dying_rename(src, dst):
                calls.append(src)
                if len(calls) == 3:
                    raise OSError("killed")
                rename(src, dst)

            m.setattr(store_mod.os, "rename", dying_rename)
        else:
            m.setattr(store_mod, "_series_ome", lambda series: (_ for _ in ()).throw(OSError("killed")))
        with pytest.raises(OSError, match="killed"):
            migrate_store(cut)
    with pytest.raises(StoreError, match="cathodeflow migrate"):
        open_store(cut)
    assert migrate_store(cut)["from_version"] == 1
    assert _tree(cut) == _tree(ref)


def test_migrate_refuses_a_stage_in_both_places_and_moves_nothing(tmp_path):
    v1 = tmp_path / "old.zarr"
    _write_v1_store(v1)
    zarr.create_group(str(v1 / "images" / "a" / "sr" / "prob"), zarr_format=3)
    before = _snapshot(v1)
    with pytest.raises(StoreError, match="'prob' both at prob"):
        migrate_store(v1)
    assert _snapshot(v1) == before


def test_cli_migrate_converts_once_then_has_nothing_to_do(tmp_path, capsys):
    from cathodeflow.cli import main

    v1 = tmp_path / "old.zarr"
    _write_v1_store(v1)
    assert main(["migrate", str(v1)]) == 0
    out = capsys.readouterr().out
    assert "from store version 1 to 2" in out and "3 image(s)" in out and "c: phase" in out
    assert main(["migrate", str(v1)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    (tmp_path / "plain").mkdir()
    assert main(["migrate", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cathodeflow: error:") and "not a study store" in err and err.count("\n") == 1


# ------------------------------------------------------------------ Dask workers


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
