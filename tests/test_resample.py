"""Reflected windows and resampling onto another pixel size: tiled == whole, geometry by hand."""

import dask.array as da
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cathodeflow.stages.resample import needs_resampling, resample_dask, resampled_shape
from cathodeflow.tiling.windows import read_window, reflect_index


def test_reflect_index_equals_numpy_symmetric_padding_for_any_pad_width():
    a = np.arange(5)
    for pad in (0, 3, 5, 12):
        want = np.pad(a, pad, mode="symmetric")
        got = a[reflect_index(np.arange(-pad, 5 + pad), 5)]
        assert np.array_equal(got, want)
    img = np.arange(35).reshape(5, 7)
    assert np.array_equal(read_window(img, (-9, 14, -3, 10)), np.pad(img, ((9, 9), (3, 3)), mode="symmetric"))


def test_resampling_tiled_equals_whole_and_keeps_a_linear_ramp():
    yy, xx = np.mgrid[:60, :90].astype(np.float32)
    ramp = 2.0 * yy + 0.5 * xx
    whole = resample_dask(da.from_array(ramp), 1.0, 0.8, tile_px=1000).compute()
    tiled = resample_dask(da.from_array(ramp, chunks=17), 1.0, 0.8, tile_px=16).compute()
    assert np.array_equal(whole, tiled)
    # an upsampled linear ramp is the ramp at the new pixel centres (away from the borders)
    Ho, Wo = whole.shape
    cy = (np.arange(Ho) + 0.5) * 60 / Ho - 0.5
    cx = (np.arange(Wo) + 0.5) * 90 / Wo - 0.5
    want = 2.0 * cy[:, None] + 0.5 * cx[None, :]
    np.testing.assert_allclose(whole[2:-2, 2:-2], want[2:-2, 2:-2], atol=1e-3)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(5, 70), w=st.integers(5, 70), ratio=st.floats(0.3, 3.0), chunk=st.integers(4, 40),
       tile=st.integers(4, 40), seed=st.integers(0, 2**16))
def test_resampling_tiled_equals_whole_for_any_chunks_tiles_and_ratio(h, w, ratio, chunk, tile, seed):
    img = np.random.default_rng(seed).normal(size=(h, w)).astype(np.float32)
    whole = resample_dask(da.from_array(img), 1.0, ratio, tile_px=10_000).compute()
    tiled = resample_dask(da.from_array(img, chunks=chunk), 1.0, ratio, tile_px=tile).compute()
    assert whole.shape == resampled_shape((h, w), 1.0, ratio)
    # equal up to float32 rounding (the interpolation weights come from window-relative
    # coordinates, which round differently in the last bit)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)


def test_shrinking_by_two_averages_pixel_pairs_of_a_constant_and_keeps_the_field_of_view():
    img = np.full((40, 60), 3.5, np.float32)
    out = resample_dask(da.from_array(img, chunks=16), 0.01, 0.02, tile_px=8).compute()
    assert out.shape == (20, 30)
    np.testing.assert_allclose(out, 3.5, rtol=1e-6)
    # a vertical step edge at x = 30 px (0.30 µm) stays at 0.30 µm: output columns 0..14 dark
    step = np.zeros((40, 60), np.float32)
    step[:, 30:] = 1.0
    out = resample_dask(da.from_array(step), 0.01, 0.02).compute()
    assert np.all(out[:, :14] < 0.1) and np.all(out[:, 16:] > 0.9)
    np.testing.assert_allclose(out[:, 14] + out[:, 15], 1.0, atol=1e-6)  # symmetric about the edge


def test_pixel_sizes_within_two_percent_are_used_as_they_are():
    assert not needs_resampling(0.0143, 0.0143)
    assert not needs_resampling(0.0143 * 1.019, 0.0143) and not needs_resampling(0.0143 * 0.981, 0.0143)
    assert needs_resampling(0.0143 * 1.021, 0.0143) and needs_resampling(0.0143 * 0.979, 0.0143)
