"""Weights registry: .weights.h5 + sha256-checked sidecar, the shipped registry, refusals."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import cathodeflow
from cathodeflow.errors import InputError

keras = pytest.importorskip("keras")

from cathodeflow.models import registry  # noqa: E402
from cathodeflow.models.registry import (  # noqa: E402
    DEFAULT_UNET,
    load_unet,
    resolve_weights,
    save_model_weights,
    update_record,
)
from cathodeflow.models.unet import UNetConfig, build_unet  # noqa: E402

CONFIG = UNetConfig(depth=3, filters=4, dilation=2)
NORM = {"method": "percentile", "q": [0.5, 99.5]}


def _save(model, path, config=CONFIG, **kw):
    return save_model_weights(model, path, architecture={"kind": "unet", **config.to_dict()},
                              training={"steps": 3, "families": ["a"]}, pixel_size_um=0.0143,
                              normalisation=NORM, **kw)


@pytest.fixture(autouse=True)
def fresh_cache():
    registry._clear_model_cache()
    yield
    registry._clear_model_cache()


@pytest.fixture
def saved(tmp_path):
    keras.utils.set_random_seed(3)
    model = build_unet(CONFIG)
    record = _save(model, tmp_path / "net.weights.h5")
    return model, record, tmp_path


def _out(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _one_line_error(fn, match):
    with pytest.raises(InputError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_save_then_load_gives_identical_outputs(saved):
    model, record, _ = saved
    loaded, rec = load_unet(record.path)
    assert loaded is not model
    x = np.random.default_rng(0).random((2, 24, 32, 1), dtype=np.float32)
    assert np.array_equal(_out(loaded, x), _out(model, x))
    assert rec == record


def test_sidecar_holds_sha256_architecture_pixel_size_and_provenance(saved):
    _, record, folder = saved
    sidecar = json.loads((folder / "net.json").read_text())
    assert sidecar["sha256"] == hashlib.sha256((folder / "net.weights.h5").read_bytes()).hexdigest()
    assert sidecar["file"] == "net.weights.h5" and sidecar["name"] == "net"
    assert sidecar["architecture"] == {"kind": "unet", "depth": 3, "filters": 4, "dilation": 2,
                                       "kernel_size": 3, "convs_per_level": 2, "n_classes": 3}
    assert sidecar["pixel_size_um"] == 0.0143 and sidecar["crack_threshold"] == 0.5
    assert sidecar["normalisation"] == NORM and sidecar["training"]["steps"] == 3
    assert sidecar["package_version"] == cathodeflow.__version__
    assert datetime.fromisoformat(sidecar["created_utc"]).utcoffset().total_seconds() == 0
    assert sorted(p.name for p in folder.iterdir()) == ["net.json", "net.weights.h5"]  # no temp files


def test_a_weights_path_and_its_sidecar_resolve_to_the_same_record(saved):
    _, record, folder = saved
    assert resolve_weights(folder / "net.json") == resolve_weights(str(folder / "net.weights.h5")) == record


def test_loaded_models_are_cached_per_path_and_sha256(saved):
    _, record, folder = saved
    a, _ = load_unet(record.path)
    b, _ = load_unet(folder / "net.json")
    assert a is b
    keras.utils.set_random_seed(4)
    _save(build_unet(CONFIG), record.path)  # new weights, new sha256: a new model
    c, rec = load_unet(record.path)
    assert c is not a and rec.sha256 != record.sha256
    private, _ = load_unet(record.path, cache=False)  # e.g. to fine-tune without touching the shared one
    assert private is not c and load_unet(record.path)[0] is c


def test_a_truncated_file_is_refused_in_one_line(saved):
    _, record, _ = saved
    data = record.path.read_bytes()
    record.path.write_bytes(data[: len(data) // 2])
    _one_line_error(lambda: load_unet(record.path), r"sha256 [0-9a-f]{64} does not match the sidecar \(expected "
                    + record.sha256 + r"\); the file is corrupt")
    _one_line_error(lambda: load_unet(record.path, verify=False), "weights of another architecture or corrupt")


def test_a_sha256_mismatch_is_refused(saved):
    _, record, folder = saved
    sidecar = folder / "net.json"
    d = json.loads(sidecar.read_text())
    d["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(d))
    msg = _one_line_error(lambda: load_unet(sidecar), "does not match the sidecar")
    assert str(record.path) in msg and "0" * 64 in msg


def test_weights_of_another_architecture_are_refused(saved):
    _, record, folder = saved
    sidecar = folder / "net.json"
    d = json.loads(sidecar.read_text())
    d["architecture"]["depth"] = 4  # the sha256 still matches the file: only the shapes differ
    sidecar.write_text(json.dumps(d))
    msg = _one_line_error(lambda: load_unet(sidecar), "weights of another architecture or corrupt")
    assert str(record.path) in msg
    d["architecture"]["kind"] = "srgan"
    sidecar.write_text(json.dumps(d))
    _one_line_error(lambda: load_unet(sidecar), "expected 'unet'")


@pytest.fixture
def tmp_registry(tmp_path, monkeypatch):
    """A registry folder of our own in place of the shipped one."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(registry, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(registry, "REGISTRY_FILE", folder / "registry.json")
    return folder


def _register(folder, name, record):
    doc = {"version": 1, "weights": {name: record.to_dict()}}
    (folder / "registry.json").write_text(json.dumps(doc))


def test_a_registry_name_loads_its_file_relative_to_the_registry_folder(saved, tmp_registry):
    model, record, _ = saved
    rec = _save(model, tmp_registry / "my-net.weights.h5")
    _register(tmp_registry, "my-net", rec)
    loaded, got = load_unet("my-net")
    assert got.path == (tmp_registry / "my-net.weights.h5").resolve() and got.source == tmp_registry / "registry.json"
    x = np.random.default_rng(1).random((1, 16, 16, 1), dtype=np.float32)
    assert np.array_equal(_out(loaded, x), _out(model, x))
    (tmp_registry / "my-net.weights.h5").write_bytes(b"junk")
    _one_line_error(lambda: load_unet("my-net"), "does not match the registry")


def test_an_unknown_registry_name_is_refused_listing_the_known_names(saved, tmp_registry):
    _, record, _ = saved
    _register(tmp_registry, "my-net", record)
    msg = _one_line_error(lambda: resolve_weights("no-such-net"), "not a registry name")
    assert "'my-net'" in msg


def test_missing_shipped_weights_say_how_to_train_them(saved, tmp_registry):
    _, record, _ = saved
    (tmp_registry / "registry.json").write_text('{"version": 1, "weights": {}}')
    _one_line_error(lambda: load_unet(DEFAULT_UNET), "missing.*cathodeflow train unet")
    _register(tmp_registry, DEFAULT_UNET, record)  # an entry whose file is not in the folder
    _one_line_error(lambda: load_unet(DEFAULT_UNET), "missing.*not found.*cathodeflow train unet")


def test_update_record_stores_a_calibrated_threshold_and_keeps_the_file_valid(saved, tmp_registry):
    model, record, folder = saved
    new = update_record(folder / "net.json", crack_threshold=0.37)
    assert new.crack_threshold == 0.37 and new.sha256 == record.sha256
    assert resolve_weights(record.path).crack_threshold == 0.37
    assert load_unet(record.path)[1].crack_threshold == 0.37
    rec = _save(model, tmp_registry / "my-net.weights.h5")
    _register(tmp_registry, "my-net", rec)
    update_record("my-net", crack_threshold=0.42)
    assert json.loads((tmp_registry / "registry.json").read_text())["weights"]["my-net"]["crack_threshold"] == 0.42
    _one_line_error(lambda: update_record(record.path, sha256="0" * 64), "cannot set")
    _one_line_error(lambda: update_record(record.path, crack_threshold=1.5), r"\[0, 1\]")


def test_the_shipped_registry_is_a_valid_version_1_registry():
    doc = json.loads((Path(registry.__file__).parent / "weights" / "registry.json").read_text())
    assert doc["version"] == 1 and isinstance(doc["weights"], dict)
    for name, rec in doc["weights"].items():
        assert rec["name"] == name and rec["architecture"]["kind"] in ("unet", "srgan")


def test_a_weights_path_that_does_not_exist_is_refused_naming_it(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    msg = _one_line_error(lambda: load_unet(missing), "weights file not found")
    assert str(missing) in msg and "nope.json" in msg
