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


def _unet_macs_closed_form(depth: int, f: int, n_classes: int = 3) -> float:
    """Multiply-adds per full-resolution pixel of the 3×3, two-convs-per-level U-net, from its
    channel counts c_l = f·2^l on grids 2^l coarser per axis (the hand count in bench_unet)."""
    total = 9.0 * 1 * f + 9 * f * f  # level 0: 1 → f, f → f
    for level in range(1, depth):
        c_prev, c = f * 2 ** (level - 1), f * 2**level
        total += (9 * c_prev * c + 9 * c * c) / 4**level  # encoder level: c_prev → c, c → c
        # decoder level-1: up (one tap per output pixel) c → c_prev, conv 2·c_prev → c_prev, c_prev → c_prev
        total += (c * c_prev + 9 * 2 * c_prev * c_prev + 9 * c_prev * c_prev) / 4 ** (level - 1)
    return total + f * n_classes


def test_unet_flop_count_of_the_layer_walk_equals_the_hand_count_for_paper_and_small_nets():
    from benchmarks.bench_unet import conv_macs_per_pixel, flops_per_pixel
    from cathodeflow.models.unet import UNetConfig, build_unet

    assert _unet_macs_closed_form(5, 32) == 183_680 and _unet_macs_closed_form(4, 12) == 19_800
    for cfg in (UNetConfig(), UNetConfig(depth=4, filters=12, dilation=2), UNetConfig(depth=3, filters=5)):
        model = build_unet(cfg)
        macs = conv_macs_per_pixel(model)
        assert sum(macs.values()) == _unet_macs_closed_form(cfg.depth, cfg.filters)
        assert flops_per_pixel(model) == 2 * _unet_macs_closed_form(cfg.depth, cfg.filters)
        # the bottom level's second convolution: 9·c² on a grid 2^L coarser per axis
        c = cfg.filters * 2 ** (cfg.depth - 1)
        assert macs[f"enc{cfg.depth - 1}_conv1"] == 9 * c * c / 4 ** (cfg.depth - 1)


def test_unet_network_pixels_are_the_window_areas_of_tile_plus_halo():
    from benchmarks.bench_unet import network_pixels

    # whole 2048² image: one window of 2048 + 2·384; tiles of 1024: four windows of 1024 + 2·384
    assert network_pixels((2048, 2048), tile_px=2048, halo=384, multiple=16) == 2816**2
    assert network_pixels((2048, 2048), tile_px=1024, halo=384, multiple=16) == 4 * 1792**2
    # 100 px, halo 16: window 100 + 2·16 = 132, padded to the multiple 16 → 144
    assert network_pixels((100, 100), tile_px=100, halo=16, multiple=16) == 144**2


def test_unet_suite_runs_small_net_whole_and_tiled_and_writes_json(tmp_path, restore_config, monkeypatch):
    from benchmarks.bench_unet import UNetInferenceSmall

    monkeypatch.setattr(UNetInferenceSmall, "matmul_n", 256)
    rc = main(["unet.UNetInferenceSmall", "--shape", "64x96", "--chunk-px", "32", "--repeat", "1",
               "--only", "whole", "tiled", "--out", str(tmp_path)])
    assert rc == 0
    (path,) = tmp_path.glob("unet-UNetInferenceSmall-*.json")
    (suite,) = json.loads(path.read_text())["suites"]
    assert set(suite["timings"]) == {"time_whole", "time_tiled"}
    assert suite["ratios"]["tiled / whole"] > 0
    info = suite["info"]
    # the shipped net (depth 5, dilation 2): radius 199 px, halo 208 (a multiple of 16)
    assert info["image_shape"] == [64, 96] and info["tile_px"] == 32 and info["halo_px"] == 208
    # tiles of 32 (6 of them) each see a (32 + 2·208)² window; the whole call one (64|96 + 416) window
    assert info["network_pixels"]["tiled_mpx"] * 1e6 == 6 * 448**2
    assert info["network_pixels"]["whole_mpx"] * 1e6 == 480 * 512
    assert info["tiled_vs_whole_max_abs_diff"] < 1e-5  # same probabilities tiled or whole
    assert suite["tracks"]["track_matmul_peak_gflops"]["value"] > 0
    assert set(info["variants"]) == {"whole", "tiled"}


@pytest.mark.slow  # the paper-size networks on the CPU: about a minute on 2 idle cores
def test_device_script_runs_both_networks_under_torch_without_tensorflow_dask_or_zarr(tmp_path):
    import importlib.util
    import subprocess

    if importlib.util.find_spec("torch") is None:
        pytest.skip(f"torch is not installed in {sys.executable}; the GPU script runs Keras on torch "
                    "(make install adds torch==2.13.0)")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "device_nets.py"
    r = subprocess.run([sys.executable, str(script), "--tile", "16", "--tile-lr", "26", "--batch", "2",
                        "--repeat", "1", "--whole", "2", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads((tmp_path / "device_nets.json").read_text())
    assert d["keras_backend"] == "torch" and d["heavy_modules_loaded"] == []
    unet, srgan = d["networks"]["unet"], d["networks"]["srgan"]
    # windows: U-net tile 16 + 2 x halo 384; SRGAN tile 26 + 2 x halo 52 -> 130 LR = 350 HR px
    assert (unet["halo_px"], unet["window_px"], unet["whole_window_px"]) == (384, 16 + 768, 32 + 768)
    assert (srgan["halo_lr_px"], srgan["window_lr_px"], srgan["window_hr_px"]) == (52, 130, 350)
    for net in (unet, srgan):
        (run,), (whole,) = net["runs"], net["whole_runs"]  # CPU: float32 only
        assert run["batch"] == 2 and run["variant"] == "float32" and run["median_s"] > 0
        assert run["max_abs_diff_vs_float32"] == 0.0 and whole["output_mpx_per_s"] > 0
    # output pixels exclude the halos: 2 tiles of 16^2 px per batch
    assert unet["runs"][0]["output_mpx_per_s"] == pytest.approx(2 * 16**2 / unet["runs"][0]["median_s"] / 1e6)
