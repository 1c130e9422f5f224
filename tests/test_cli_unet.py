"""The U-net through the store and the command line: prob stage, eq. 7, provenance,
`train unet`, `calibrate`, and bad input (one line, exit 2, nothing written)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _unet import TINY_ARCH, tiny_weights

from cathodeflow.config import DEFAULT_CRACK_THRESHOLD_LOW, DEFAULT_MIN_CRACK_AREA_UM2, DEFAULT_PROB_SIGMA_UM, Params
from cathodeflow.errors import InputError
from cathodeflow.io.sem import write_tiff
from cathodeflow.io.store import open_store
from cathodeflow.stages.phases import phase_from_probabilities
from cathodeflow.study.pipeline import ingest, run_study
from cathodeflow.synth import generate_image

CLI = [sys.executable, "-m", "cathodeflow.cli"]
SMALL = dict(shape_lr=(104, 130), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)


def _snapshot(path: Path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _one_line_error(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("cathodeflow: error:"), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def store(tmp_path):
    im = generate_image("30C", seed=1, image_id="a", **SMALL)
    f = tmp_path / "a.tif"
    write_tiff(f, im.lr, pixel_size_um=im.pixel_size_lr_um)
    s = tmp_path / "study.zarr"
    ingest([f], store=s, condition="30C")
    return s


def test_unet_stage_stores_float16_probabilities_and_the_phase_of_eq7_with_hysteresis_and_provenance(store, weights):
    from cathodeflow.models.registry import resolve_weights

    run_study(store, params=Params(marker_radius_um=0.143, phase_method="unet", unet_weights=weights, unet_tile_px=64), scheduler="threads")
    st = open_store(store, mode="r")
    prob = np.asarray(st.read_stage("a", "prob"))
    phase = np.asarray(st.read_stage("a", "phase"))
    sr = st.read_stage("a", "sr")
    assert prob.dtype == np.float16 and prob.shape == (3,) + sr.shape == (3,) + phase.shape
    np.testing.assert_allclose(prob.astype(np.float32).sum(0), 1.0, atol=3e-3)
    eta = st.pixel_size_um("a", "phase")
    min_px = int(DEFAULT_MIN_CRACK_AREA_UM2 / eta**2 * (1 + 1e-9))
    assert np.array_equal(phase, phase_from_probabilities(
        prob.transpose(1, 2, 0), 0.4, t_low=min(0.4, DEFAULT_CRACK_THRESHOLD_LOW), sigma_px=DEFAULT_PROB_SIGMA_UM / eta,
        min_crack_px=min_px))
    info = st.stage_info("a", "phase")
    sha = resolve_weights(weights).sha256
    assert info["weights_sha256"] == sha and info["params"]["crack_threshold"] == 0.4
    assert info["params"]["crack_threshold_low"] == min(0.4, DEFAULT_CRACK_THRESHOLD_LOW)
    assert info["params"]["prob_sigma_px"] == pytest.approx(DEFAULT_PROB_SIGMA_UM / eta)
    assert (info["params"]["min_crack_area_um2"], info["params"]["min_crack_px"]) == (DEFAULT_MIN_CRACK_AREA_UM2, min_px)
    assert info["params"]["method"] == "unet" and info["params"]["halo_px"] >= 43
    assert st.stage_info("a", "prob")["weights_sha256"] == sha


def test_unet_options_with_the_classical_method_are_refused_in_one_line(store, weights):
    before = _snapshot(store)
    for extra in (["--weights", weights], ["--crack-threshold", "0.3"], ["--crack-threshold-low", "0.2"],
                  ["--prob-sigma-um", "0.02"], ["--min-crack-area-um2", "0.01"], ["--force"]):
        r = subprocess.run(CLI + ["run", "--store", str(store), *extra], capture_output=True, text=True, timeout=120)
        assert "unet" in _one_line_error(r)
    assert _snapshot(store) == before


def test_min_crack_area_reaches_the_phase_map_and_its_provenance(store, weights):
    """The same stored Ŷ thresholded at its 97th percentile of Ŷ3 (the tiny net's Ŷ is not a
    segmentation, but its crack phase is in pieces), first with no crack dropped, then with
    cracks up to 0.01 µm² (48 px at 14.3 nm) dropped: the second run recomputes the phase
    stage (the parameter is part of its record) and equals eq. 7 of the stored Ŷ with that
    many pixels dropped; the drop is not empty."""
    from scipy import ndimage as ndi

    base = Params(marker_radius_um=0.143, phase_method="unet", unet_weights=weights, unet_tile_px=64)
    run_study(store, params=base.replace(min_crack_area_um2=0.0), scheduler="threads", to_stage="phase")
    st = open_store(store, mode="r")
    prob = np.asarray(st.read_stage("a", "prob")).astype(np.float32).transpose(1, 2, 0)
    t = float(np.quantile(prob[..., 2], 0.97))
    base = base.replace(crack_threshold=t, crack_threshold_low=1.0, prob_sigma_um=0.0)  # eq. 7 alone
    run_study(store, params=base.replace(min_crack_area_um2=0.0), scheduler="threads", to_stage="phase")
    first = np.asarray(open_store(store, mode="r").read_stage("a", "phase"))
    run_study(store, params=base.replace(min_crack_area_um2=0.01), scheduler="threads", to_stage="phase")
    st = open_store(store, mode="r")
    eta = st.pixel_size_um("a", "phase")
    info = st.stage_info("a", "phase")["params"]
    assert info["min_crack_area_um2"] == 0.01 and info["min_crack_px"] == int(0.01 / eta**2) == 48
    second = np.asarray(st.read_stage("a", "phase"))
    assert np.array_equal(first, phase_from_probabilities(prob, t))
    assert np.array_equal(second, phase_from_probabilities(prob, t, min_crack_px=48))
    labels, n = ndi.label(first == 2, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    assert (sizes <= 48).any() and (sizes > 48).any()
    assert (second == 2).sum() == sizes[sizes > 48].sum()


def test_classical_method_writes_no_probabilities(store):
    run_study(store, params=Params(marker_radius_um=0.143, phase_method="classical"), scheduler="threads", to_stage="phase")
    st = open_store(store, mode="r")
    assert st.stage_info("a", "phase")["params"]["method"] == "baseline-classical"
    assert not st.is_complete("a", "prob")
    # the σ the noise chose and the contrasts the blur chose are recorded, and they are the
    # ones that give the stored phase map
    from cathodeflow.stages.phases import adapted_options, baseline_options, segment_phases_baseline

    sr = np.asarray(st.read_stage("a", "sr"))
    eta = st.pixel_size_um("a", "sr")
    params = st.stage_info("a", "phase")["params"]
    chosen = {k: params[k] for k in ("sigma_px", "min_crack_area_px", "crack_contrast", "line_contrast")}
    opts = adapted_options(sr, pixel_size_um=eta)
    assert chosen == {k: getattr(opts, k) for k in chosen}
    assert chosen["min_crack_area_px"] == round(40 * (chosen["sigma_px"] / 1.5) ** 2)
    assert params["min_enclosed_solidity"] == baseline_options().min_enclosed_solidity
    np.testing.assert_array_equal(
        np.asarray(st.read_stage("a", "phase")),
        segment_phases_baseline(sr, pixel_size_um=eta, max_noise=0, max_blur_px=0, **chosen))


@pytest.mark.parametrize("case", ["corrupt", "sha_mismatch", "other_architecture", "missing", "far_pixel_size"])
def test_cli_run_with_bad_weights_or_pixel_size_fails_in_one_line_and_writes_nothing(case, store, weights, tmp_path):
    from cathodeflow.models.registry import file_sha256, resolve_weights

    w = weights
    rec = resolve_weights(weights)
    if case in ("corrupt", "sha_mismatch", "other_architecture"):
        d = tmp_path / case
        d.mkdir()
        if case == "other_architecture":
            # a real weights file of another network, with a record that claims the tiny one
            other = tiny_weights(d, name="other", arch=dict(TINY_ARCH, depth=2))
            w = other
            side = Path(rec.source)
            meta = json.loads(side.read_text())
            meta.update(file=Path(other).name, sha256=file_sha256(other), name="other")
            Path(other[: -len(".weights.h5")] + ".json").write_text(json.dumps(meta))
        else:
            w = str(d / "tiny.weights.h5")
            data = Path(rec.path).read_bytes()
            Path(w).write_bytes(data[: len(data) // 2] if case == "corrupt" else data)
            meta = json.loads(Path(rec.source).read_text())
            if case == "sha_mismatch":
                meta["sha256"] = "0" * 64
            else:
                meta["sha256"] = file_sha256(w)
            (d / Path(rec.source).name).write_text(json.dumps(meta))
    elif case == "missing":
        w = str(tmp_path / "nowhere.weights.h5")
    if case == "far_pixel_size":
        f = tmp_path / "far.tif"
        write_tiff(f, np.full((52, 52), 100, np.uint8), pixel_size_um=3.85)  # 100× the U-net's grid
        ingest([f], store=store, condition="30C")
    before = _snapshot(store)
    r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads", "--phase-method", "unet",
                              "--weights", w],
                       capture_output=True, text=True, timeout=300)
    line = _one_line_error(r)
    assert {"corrupt": "tiny.weights.h5", "sha_mismatch": "sha256", "other_architecture": "other.weights.h5",
            "missing": "nowhere", "far_pixel_size": "'far'"}[case] in line
    if case == "far_pixel_size":
        assert "--force" in line
    assert _snapshot(store) == before


def test_cli_calibrate_stores_t_with_the_weights_and_refuses_bad_annotations(weights, tmp_path):
    from cathodeflow.models.registry import resolve_weights

    w = tmp_path / "w"
    w.mkdir()
    own = tiny_weights(w)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 96), dtype=np.uint8)
    ann = rng.integers(0, 3, (64, 96), dtype=np.uint8)
    write_tiff(tmp_path / "img.tif", img, pixel_size_um=0.0143)
    write_tiff(tmp_path / "ann.tif", ann, pixel_size_um=0.0143)
    side = Path(resolve_weights(own).source)
    for bad, what in [(np.full((64, 96), 3, np.uint8), "expected only 0, 1, 2"), (np.zeros((60, 96), np.uint8), "shape")]:
        write_tiff(tmp_path / "bad.tif", bad, pixel_size_um=0.0143)
        before = side.read_bytes()
        r = subprocess.run(CLI + ["calibrate", "--weights", own, "--annotated", str(tmp_path / "img.tif"),
                                  str(tmp_path / "bad.tif")], capture_output=True, text=True, timeout=300)
        line = _one_line_error(r)
        assert "bad.tif" in line and what in line
        assert side.read_bytes() == before
    r = subprocess.run(CLI + ["calibrate", "--weights", own, "--annotated", str(tmp_path / "img.tif"),
                              str(tmp_path / "ann.tif")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rec = resolve_weights(own)
    t = float(r.stdout.split("t = ")[1].split(":")[0])
    assert rec.crack_threshold == pytest.approx(t, abs=1e-4) and rec.crack_threshold != 0.4
    assert rec.training["calibration"]["n_pixels"] == 64 * 96


def test_cli_train_unet_short_run_writes_weights_curves_and_a_calibrated_t(tmp_path):
    from cathodeflow.models.registry import load_unet

    cfg = tmp_path / "small.toml"
    cfg.write_text(
        "[unet]\ndepth = 2\nfilters = 4\ndilation = 1\n"
        "[training]\nmax_steps = 6\nval_every = 3\npatience = 5\ncrop_px = 64\nbatch_size = 2\n"
        "learning_rate = 0.003\nn_val_crops = 2\nn_train_images = 2\nn_val_images = 1\nshape_lr = [104, 104]\n"
    )
    r = subprocess.run(CLI + ["train", "unet", "--config", str(cfg), "--out", str(tmp_path / "o"), "--name", "m"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "o"
    assert (out / "m.weights.h5").exists() and (out / "m.loss.png").stat().st_size > 1000
    hist = json.loads((out / "m.history.json").read_text())
    assert hist["val_steps"] == [3, 6]
    model, rec = load_unet(str(out / "m.weights.h5"))
    assert rec.architecture["depth"] == 2 and rec.pixel_size_um == 0.0143
    assert rec.training["config"]["max_steps"] == 6 and "calibration" in rec.training
    assert 0 < rec.crack_threshold <= 1


def test_cli_train_unet_refuses_unknown_config_keys_in_one_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[training]\nmax_stepz = 3\n")
    r = subprocess.run(CLI + ["train", "unet", "--config", str(cfg), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert "max_stepz" in _one_line_error(r)
    assert not (tmp_path / "o").exists()


def test_cli_train_max_seconds_reaches_the_unet_config_and_is_refused_for_sr(tmp_path):
    cfg = tmp_path / "small.toml"
    cfg.write_text("[unet]\ndepth = 2\nfilters = 4\ndilation = 1\n[training]\nmax_steps = 6\n")
    r = subprocess.run(CLI + ["train", "unet", "--config", str(cfg), "--out", str(tmp_path / "o"),
                              "--max-seconds", "-1"], capture_output=True, text=True, timeout=120)
    assert "training.max_seconds" in _one_line_error(r)  # the option reached the config's check
    r = subprocess.run(CLI + ["train", "sr", "--config", str(cfg), "--out", str(tmp_path / "s"),
                              "--max-seconds", "60"], capture_output=True, text=True, timeout=120)
    assert "--max-seconds" in _one_line_error(r) and "train unet" in _one_line_error(r)
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists()


def test_a_phase_stage_is_recomputed_when_the_weights_behind_its_path_or_their_t_change(store, tmp_path):
    """The parameters name the weights by path, so retraining into the same file or
    recalibrating t (``calibrate``) leaves them equal: the stored sha256 and t decide."""
    from cathodeflow.models.registry import resolve_weights, update_record

    path = tiny_weights(tmp_path, name="mine", seed=3)
    params = Params(marker_radius_um=0.143, phase_method="unet", unet_weights=path, unet_tile_px=64)
    run_study(store, params=params, scheduler="threads")
    st = open_store(store, mode="r")
    first = st.stage_info("a", "phase")
    assert first["weights_sha256"] == resolve_weights(path).sha256

    run_study(store, params=params, scheduler="threads")  # nothing changed: nothing recomputed
    assert open_store(store, mode="r").stage_info("a", "phase")["start_utc"] == first["start_utc"]

    tiny_weights(tmp_path, name="mine", seed=4)  # retrained into the same file
    new_sha = resolve_weights(path).sha256
    assert new_sha != first["weights_sha256"]
    run_study(store, params=params, scheduler="threads")
    second = open_store(store, mode="r").stage_info("a", "phase")
    assert second["weights_sha256"] == new_sha and second["start_utc"] > first["start_utc"]
    assert open_store(store, mode="r").stage_info("a", "labels/particles")["start_utc"] > second["start_utc"]

    update_record(path, crack_threshold=0.55)  # recalibrated: same file, another t
    run_study(store, params=params, scheduler="threads")
    third = open_store(store, mode="r").stage_info("a", "phase")
    assert third["params"]["crack_threshold"] == 0.55 and third["start_utc"] > second["start_utc"]

    with pytest.raises(InputError, match=r"its phase stage was made with other parameters \(weights .*mine"
                                         r"\.weights\.h5: calibrated t 0\.55 -> 0\.6\)"):
        update_record(path, crack_threshold=0.6)
        run_study(store, params=params, scheduler="threads", from_stage="labels")
