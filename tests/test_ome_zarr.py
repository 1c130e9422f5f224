"""The study store as OME-Zarr 0.5 (DESIGN §4.1): validated with ome-zarr-models, and opened
with the ome-zarr reader (what napari-ome-zarr uses), which must find the label images of
``sr`` (phase, cracks, particles) from the ``sr`` image itself."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from ome_zarr_models import open_ome_zarr
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel
from ome_zarr_models.v05.labels import Labels

from cathodeflow.io.store import create_store

RAW_ETA = 0.0385
SR_ETA = RAW_ETA * 13 / 35
LABELS = ("phase", "cracks", "particles")
STAGE_OF = {"phase": "phase", "cracks": "labels/cracks", "particles": "labels/particles"}


def _study(tmp_path, *, label_eta: float | None = None):
    """A store with image ``img-1`` and every stage. ``prob``, the phase map and the label
    images are on sr's grid, or (``label_eta``) on another one, as when the U-net resamples.

    Returns (store, {stage: array}, pixel size of the phase/label grid in µm).
    """
    rng = np.random.default_rng(7)
    st = create_store(tmp_path / "study.zarr")
    st.add_image("img-1", rng.integers(0, 200, (150, 170), dtype=np.uint8), condition="20C", pixel_size_um=RAW_ETA)
    sr = rng.integers(0, 200, (403, 457), dtype=np.uint8)
    st.write_stage("img-1", "sr", sr, pixel_size_um=SR_ETA, params={})
    eta = label_eta or SR_ETA
    shape = (403, 457) if label_eta is None else (round(403 * SR_ETA / eta), round(457 * SR_ETA / eta))
    phase = rng.integers(0, 3, shape).astype(np.uint8)
    arrays = {
        "raw": None,
        "sr": sr,
        "prob": rng.random((3,) + shape).astype(np.float16),
        "phase": phase,
        "labels/cracks": np.where(phase == 2, rng.integers(1, 50, shape), 0).astype(np.int32),
        "labels/particles": np.where(phase == 1, rng.integers(1, 9, shape), 0).astype(np.int64),
    }
    for stage in ("prob", "phase", "labels/cracks", "labels/particles"):
        st.write_stage("img-1", stage, arrays[stage], pixel_size_um=eta, params={})
    arrays["raw"] = st.read_stage("img-1", "raw").compute()
    return st, arrays, eta


def _attrs(path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]


# ------------------------------------------------------------------ the metadata, by the spec's text


def test_metadata_follows_ngff_05_as_written_in_the_spec(tmp_path):
    st, arrays, eta = _study(tmp_path)
    root = st.path
    assert _attrs(root)["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
    assert _attrs(root / "OME")["ome"] == {"version": "0.5", "series": ["images/img-1/raw", "images/img-1/sr"]}
    for stage, arr in arrays.items():
        group = root / st.stage_path("img-1", stage)
        meta = json.loads((group / "zarr.json").read_text())
        assert meta["node_type"] == "group" and meta["zarr_format"] == 3
        ome = meta["attributes"]["ome"]
        assert ome["version"] == "0.5"
        (ms,) = ome["multiscales"]
        assert "version" not in ms  # 0.5 keeps the version only under "ome"
        names = [a["name"] for a in ms["axes"]]
        assert names == (["c", "y", "x"] if stage == "prob" else ["y", "x"])
        assert all(a["unit"] == "micrometer" for a in ms["axes"] if a["type"] == "space")
        (ds,) = ms["datasets"]
        ps = RAW_ETA if stage == "raw" else SR_ETA if stage == "sr" else eta
        assert ds["coordinateTransformations"] == [
            {"type": "scale", "scale": ([1.0] if stage == "prob" else []) + [ps, ps]}]
        arr_meta = json.loads((group / ds["path"] / "zarr.json").read_text())
        assert arr_meta["node_type"] == "array" and arr_meta["dimension_names"] == names
        assert arr_meta["shape"] == list(arr.shape)
        if stage in STAGE_OF.values():
            label = ome["image-label"]
            assert label["source"] == {"image": "../../"}
            # the source resolves to the sr image, relative to the label image's group
            assert (group / label["source"]["image"]).resolve() == (root / "images/img-1/sr").resolve()
            assert np.dtype(arr_meta["data_type"]).kind in "ui"
        else:
            assert "image-label" not in ome
    assert _attrs(root / "images/img-1/sr/labels")["ome"] == {"version": "0.5", "labels": list(LABELS)}
    phase = _attrs(root / "images/img-1/sr/labels/phase")["ome"]["image-label"]
    assert phase["colors"] == [{"label-value": 0, "rgba": [0, 0, 0, 0]},
                               {"label-value": 1, "rgba": [128, 128, 128, 255]},
                               {"label-value": 2, "rgba": [255, 0, 0, 255]}]
    assert "colors" not in _attrs(root / "images/img-1/sr/labels/cracks")["ome"]["image-label"]


# ------------------------------------------------------------------ ome-zarr-models (pydantic models of the 0.5 spec)


def test_ome_zarr_models_validates_the_root_every_listed_image_and_sr_labels(tmp_path):
    st, _, _ = _study(tmp_path)
    root = zarr.open_group(str(st.path), mode="r")
    collection = BioFormats2Raw.from_zarr(root)
    assert collection.ome_attributes.bioformats2raw_layout == 3
    series = root["OME"].attrs["ome"]["series"]
    assert series == ["images/img-1/raw", "images/img-1/sr"]
    for path in series:
        Image.from_zarr(root[path])
    sr = Image.from_zarr(root["images/img-1/sr"])
    assert "labels" in sr.members  # the labels group was found and validated as part of sr
    labels = Labels.from_zarr(root["images/img-1/sr/labels"])
    assert labels.label_paths == list(LABELS)
    for name in LABELS:
        label = ImageLabel.from_zarr(root[f"images/img-1/sr/labels/{name}"])
        assert label.ome_attributes.image_label.source.image == "../../"
    phase = ImageLabel.from_zarr(root["images/img-1/sr/labels/phase"])
    assert [(c.label_value, tuple(c.rgba)) for c in phase.ome_attributes.image_label.colors] == [
        (0, (0, 0, 0, 0)), (1, (128, 128, 128, 255)), (2, (255, 0, 0, 255))]
    Image.from_zarr(root["images/img-1/sr/prob"])  # prob: an image of its own inside sr
    assert type(open_ome_zarr(root["images/img-1/sr/labels/cracks"], version="0.5")) is ImageLabel
    # the image group itself is a plain group, not an image: the validator says so
    with pytest.raises(ValueError, match="does not contain an 'ome' key"):
        Image.from_zarr(root["images/img-1"])


def test_ome_zarr_models_validates_labels_on_the_unets_own_grid(tmp_path):
    st, arrays, eta = _study(tmp_path, label_eta=0.02)
    assert arrays["phase"].shape != arrays["sr"].shape
    root = zarr.open_group(str(st.path), mode="r")
    Image.from_zarr(root["images/img-1/sr"])
    for name in LABELS:
        ImageLabel.from_zarr(root[f"images/img-1/sr/labels/{name}"])


# ------------------------------------------------------------------ the ome-zarr reader (napari-ome-zarr)


def _read(path):
    loc = parse_url(str(path))
    assert loc is not None, f"ome-zarr cannot open {path}"
    return list(Reader(loc)())


def test_reader_opening_sr_finds_phase_cracks_and_particles_with_colours(tmp_path, caplog):
    st, arrays, _ = _study(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ome_zarr"):
        nodes = _read(st.path / "images/img-1/sr")
    image = nodes[0]
    assert any(isinstance(s, Multiscales) for s in image.specs)
    assert not any(isinstance(s, Label) for s in image.specs)
    np.testing.assert_array_equal(np.asarray(image.data[0]), arrays["sr"])
    assert image.metadata["coordinateTransformations"][0][0]["scale"] == [SR_ETA, SR_ETA]
    labels = {n.metadata["name"]: n for n in nodes if any(isinstance(s, Label) for s in n.specs)}
    assert sorted(labels) == sorted(LABELS)
    for name, node in labels.items():
        np.testing.assert_array_equal(np.asarray(node.data[0]), arrays[STAGE_OF[name]])
        assert node.metadata["coordinateTransformations"][0][0]["scale"] == [SR_ETA, SR_ETA]
    assert labels["phase"].metadata["color"] == {0: [0, 0, 0, 0], 1: [128 / 255] * 3 + [1.0], 2: [1.0, 0, 0, 1.0]}
    assert labels["cracks"].metadata["color"] == {}
    # every label's source resolved to an existing image (the reader warns otherwise)
    assert not [r for r in caplog.records if "no parent found" in r.getMessage()]
    # prob sits inside sr but is not one of its labels: opened on its own, with its channels
    assert not any(np.asarray(n.data[0]).dtype == np.float16 for n in nodes if n.data)
    (prob,) = _read(st.path / "images/img-1/sr/prob")
    assert prob.data[0].shape == arrays["prob"].shape and prob.data[0].dtype == np.float16


def test_reader_shows_labels_of_another_grid_with_their_own_scale(tmp_path):
    st, arrays, eta = _study(tmp_path, label_eta=0.02)
    nodes = _read(st.path / "images/img-1/sr")
    labels = {n.metadata["name"]: n for n in nodes if any(isinstance(s, Label) for s in n.specs)}
    assert sorted(labels) == sorted(LABELS)
    for node in labels.values():
        assert node.data[0].shape == arrays["phase"].shape != arrays["sr"].shape
        assert node.metadata["coordinateTransformations"][0][0]["scale"] == [eta, eta]
