"""Baseline super-resolution (×35/13): grid, interpolation exactness, tiled == whole."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cathodeflow.errors import InputError
from cathodeflow.stages.superres import (
    DEFAULT_HALO_LR,
    provenance,
    superres,
    superres_baseline,
    superres_baseline_dask,
    superres_dask,
)
from cathodeflow.tiling.geometry import hr_length, lr_coordinate, snap_chunks

TOL = 1e-5  # stated tolerance of tiled vs whole (float32 output); measured: 0 (bit-identical)


def _hr_centres_in_lr(n_hr: int) -> np.ndarray:
    # Written out by hand from the definition: hr pixel j covers [j, j+1) * 13/35 on the
    # low-res axis whose pixel i has its centre at i (covers [i - 0.5, i + 0.5)).
    return (np.arange(n_hr) + 0.5) * 13.0 / 35.0 - 0.5


def _interior(n_lr: int, n_hr: int) -> np.ndarray:
    # hr pixels whose four cubic taps floor(x)-1 .. floor(x)+2 all lie inside the image
    x = _hr_centres_in_lr(n_hr)
    f = np.floor(x)
    return (f - 1 >= 0) & (f + 2 <= n_lr - 1)


def _raise_if_computes():
    def scheduler(*args, **kwargs):
        raise RuntimeError("a lazy function computed")

    return dask.config.set(scheduler=scheduler)


def test_output_shape_is_input_times_35_over_13():
    out = superres_baseline(np.zeros((130, 182), dtype=np.uint8))
    assert out.shape == (350, 490)
    assert out.dtype == np.float32
    assert hr_length(26) == 70 and hr_length(13) == 35


def test_coordinate_map_matches_hand_formula():
    j = np.arange(100)
    np.testing.assert_allclose(lr_coordinate(j), _hr_centres_in_lr(100), rtol=0, atol=1e-12)
    # chunk edges coincide: hr pixel 70 starts exactly where low-res pixel 26 starts
    assert lr_coordinate(70) - 13 / 70 == pytest.approx(26 - 0.5)


def test_linear_ramp_is_reproduced_away_from_the_edge():
    ny, nx = 130, 182
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    ramp = 0.75 * y - 0.4 * x + 3.0
    out = superres_baseline(ramp)
    ty, tx = _hr_centres_in_lr(350), _hr_centres_in_lr(490)
    truth = 0.75 * ty[:, None] - 0.4 * tx[None, :] + 3.0
    inside = _interior(ny, 350)[:, None] & _interior(nx, 490)[None, :]
    assert inside.mean() > 0.95
    err = np.abs(out - truth)[inside]
    # float32 rounding of values up to |80|
    assert err.max() < 2e-5


def test_quadratic_is_reproduced_away_from_the_edge():
    # Keys' kernel with a = -1/2 is exact for polynomials of degree <= 2
    n = 65
    y, x = np.mgrid[:n, :n].astype(np.float64)
    q = 0.01 * (y - 20) ** 2 + 0.02 * x * y - 0.03 * x**2
    out = superres_baseline(q)
    t = _hr_centres_in_lr(175)
    truth = 0.01 * (t[:, None] - 20) ** 2 + 0.02 * t[None, :] * t[:, None] - 0.03 * t[None, :] ** 2
    inside = _interior(n, 175)[:, None] & _interior(n, 175)[None, :]
    assert np.abs(out - truth)[inside].max() < 1e-4


def test_constant_image_stays_constant_including_edges():
    out = superres_baseline(np.full((26, 39), 0.625))
    np.testing.assert_allclose(out, 0.625, rtol=0, atol=1e-7)


@pytest.mark.parametrize("chunk", [52, 78, (52, 78), 40, 130])
def test_tiled_equals_whole_on_130x182(chunk):
    rng = np.random.default_rng(1)
    img = rng.random((130, 182)).astype(np.float32)
    whole = superres_baseline(img)
    tiled = superres_baseline_dask(da.from_array(img, chunks=chunk))
    # every low-res chunk edge but the last is a multiple of 26 -> hr chunks multiples of 70
    for c in tiled.chunks:
        assert all(v % 70 == 0 for v in c[:-1])
    out = tiled.compute()
    assert out.shape == whole.shape
    assert np.abs(out - whole).max() <= TOL


def test_last_chunk_thinner_than_halo_is_merged_not_silently_rechunked():
    img = np.random.default_rng(2).random((130, 130))
    tiled = superres_baseline_dask(da.from_array(img, chunks=52), halo_lr=52)
    # 130 = 52 + 52 + 26 and the 26-px remainder is thinner than the 52-px halo -> 52 + 78
    assert tiled.chunks == ((140, 210), (140, 210))
    assert np.abs(tiled.compute() - superres_baseline(img)).max() <= TOL


def test_dask_version_is_lazy():
    img = da.random.random((130, 182), chunks=52)
    with _raise_if_computes():
        out = superres_baseline_dask(img)
    assert out.shape == (350, 490)


@settings(max_examples=25, deadline=None)
@given(
    ny=st.integers(1, 8),
    nx=st.integers(1, 8),
    cy=st.integers(1, 5),
    cx=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_tiled_equals_whole_for_any_grid(ny, nx, cy, cx, seed):
    shape = (13 * ny, 13 * nx)
    img = np.random.default_rng(seed).normal(size=shape)
    tiled = superres_baseline_dask(da.from_array(img, chunks=(26 * cy, 26 * cx)))
    assert np.abs(tiled.compute() - superres_baseline(img)).max() <= TOL


def test_snap_chunks_keeps_multiples_and_a_thick_last_chunk():
    assert snap_chunks(130, 52, multiple=26, min_last=26) == (52, 52, 26)
    assert snap_chunks(130, 60, multiple=26, min_last=26) == (52, 52, 26)
    assert snap_chunks(130, 52, multiple=26, min_last=52) == (52, 78)
    assert snap_chunks(20, 52, multiple=26, min_last=26) == (20,)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((26, 26, 3)), "2-D"),
        (np.zeros(26), "2-D"),
        (np.zeros((26, 27)), "multiple of 13"),
        (np.zeros((0, 26)), "empty"),
        (np.array([["a"] * 13] * 13), "numeric"),
        (np.full((13, 13), np.nan), "NaN"),
    ],
)
def test_bad_input_raises_input_error(bad, match):
    with pytest.raises(InputError, match=match):
        superres_baseline(bad)
    with pytest.raises(InputError, match=match):
        superres_baseline_dask(bad)


def test_bad_halo_raises_input_error():
    img = da.zeros((52, 52), chunks=26)
    with pytest.raises(InputError, match="halo_lr"):
        superres_baseline_dask(img, halo_lr=13)
    with pytest.raises(InputError, match="halo_lr"):
        superres_baseline_dask(img, halo_lr=2.5)


def test_model_option_only_baseline_for_now():
    img = np.zeros((13, 13))
    assert superres(img, model="baseline").shape == (35, 35)
    assert superres_dask(img, model="baseline").shape == (35, 35)
    with pytest.raises(InputError, match="not available yet"):
        superres(img, model="srgan")
    with pytest.raises(InputError, match="not available yet"):
        superres_dask(img, model="srgan")
    with pytest.raises(InputError, match="unknown"):
        superres(img, model="bicubic-ish")


def test_provenance_labels_the_baseline():
    p = provenance()
    assert p["method"] == "baseline-interpolation"
    assert p["factor"] == "35/13"
    assert p["halo_lr_px"] == DEFAULT_HALO_LR == 26


# ------------------------------------------------------------------ any image size
@pytest.mark.parametrize("shape", [(101, 77), (26, 39), (14, 200)])
def test_any_size_is_the_reflect_padded_image_super_resolved_then_cropped_inside_the_field(shape):
    import dask.array as da

    from cathodeflow.stages.superres import sr_shape, superres_any_size_dask, superres_baseline

    rng = np.random.default_rng(sum(shape))
    lr = rng.integers(0, 255, shape).astype(np.float32)
    padded = np.pad(lr, [(0, -n % 13) for n in shape], mode="symmetric")
    want = superres_baseline(padded)
    H, W = sr_shape(shape)
    assert (H, W) == (shape[0] * 35 // 13, shape[1] * 35 // 13)
    got = superres_any_size_dask(da.from_array(lr, chunks=(40, 52))).compute()
    assert got.shape == (H, W)
    assert np.array_equal(got, want[:H, :W])
    # the kept pixels lie inside the field of view: pixel j ends at (j + 1)·13/35 <= n
    assert (H * 13 <= shape[0] * 35) and (W * 13 <= shape[1] * 35)


def test_any_size_leaves_multiples_of_13_unpadded():
    from cathodeflow.stages.superres import superres_any_size_dask, superres_baseline

    lr = np.random.default_rng(1).integers(0, 255, (52, 65)).astype(np.float32)
    assert np.array_equal(superres_any_size_dask(lr).compute(), superres_baseline(lr))
