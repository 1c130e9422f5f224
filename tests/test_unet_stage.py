"""The U-net stage: tiled == whole, any size, pixel size handling, eq. 7 with the stored t."""

import dask.array as da
import numpy as np
import pytest
from _unet import TINY_ARCH
from _unet import tiny_weights as _tiny_weights

from cathodeflow.errors import InputError
from cathodeflow.stages.resample import resampled_shape
from cathodeflow.stages.unet import (
    UNetSetup,
    check_pixel_size,
    unet_stage_dask,
    tile_grid,
    unet_probabilities,
    unet_probabilities_dask,
)

ARCH = TINY_ARCH


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Random (untrained) weights of a small U-net, saved and registered like real ones."""
    return _tiny_weights(tmp_path_factory.mktemp("w"))


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = 80 + 100 * ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (min(shape) / 3) ** 2)
    return (img + rng.normal(0, 10, shape)).clip(0, 255).astype(np.uint8)


def test_tile_windows_start_on_the_network_grid_and_cover_the_image():
    grid = tile_grid((100, 70), tile_px=32, halo=16, multiple=8)
    covered = np.zeros((100, 70), int)
    for row in grid:
        for t in row:
            a, b, c, d = t.window
            assert a % 8 == 0 and c % 8 == 0 and (b - a) % 8 == 0 and (d - c) % 8 == 0
            assert a <= t.y0 - 16 and b >= t.y1 + 16 and c <= t.x0 - 16 and d >= t.x1 + 16
            covered[t.y0:t.y1, t.x0:t.x1] += 1
    assert (covered == 1).all()


@pytest.mark.parametrize("shape,tile", [((101, 77), 32), ((64, 64), 48), ((150, 97), 64)])
def test_tiled_probabilities_equal_the_whole_image_call(tiny_weights, shape, tile):
    img = _image(shape)
    whole = unet_probabilities(img, weights=tiny_weights)
    assert whole.shape == shape + (3,)
    np.testing.assert_allclose(whole.sum(-1), 1.0, atol=1e-5)
    setup = UNetSetup.from_weights(tiny_weights)
    tiled = unet_probabilities_dask(da.from_array(img, chunks=50), setup=setup, tile_px=tile, batch=2)
    got = tiled.compute(scheduler="threads")
    assert np.abs(got - whole).max() < 1e-4


def test_halo_is_the_computed_receptive_field_rounded_to_the_network_grid(tiny_weights):
    from cathodeflow.models.unet import UNetConfig, receptive_field_radius

    setup = UNetSetup.from_weights(tiny_weights)
    r = receptive_field_radius(UNetConfig.from_dict(ARCH))
    assert setup.halo >= r and setup.halo % setup.multiple == 0 and setup.halo - r < setup.multiple


def test_provenance_takes_t_from_the_weights_and_caps_t_low_at_t(tiny_weights):
    img = _image((64, 80))
    prob, eta, prov = unet_stage_dask(da.from_array(img, chunks=40), pixel_size_um=0.0143,
                                      weights=tiny_weights, tile_px=32)
    assert prov["crack_threshold"] == 0.4 and eta == 0.0143 and not prov["resampled"]
    assert prov["crack_threshold_low"] == 0.3  # the default, below the weights' t
    assert prov["prob_sigma_um"] == 0.0143 and prov["prob_sigma_px"] == pytest.approx(1.0)
    assert prob.shape == (64, 80, 3)
    _, _, prov2 = unet_stage_dask(da.from_array(img), pixel_size_um=0.0143, weights=tiny_weights,
                                  crack_threshold=0.2)
    assert prov2["crack_threshold"] == 0.2 and prov2["crack_threshold_source"] == "parameter"
    assert prov2["crack_threshold_low"] == 0.2
    _, _, prov3 = unet_stage_dask(da.from_array(img), pixel_size_um=0.0143, weights=tiny_weights,
                                  crack_threshold_low=0.1)
    assert prov3["crack_threshold_low"] == 0.1


def test_an_image_at_another_pixel_size_is_resampled_to_the_model_grid(tiny_weights):
    img = _image((90, 120))
    prob, eta, prov = unet_stage_dask(da.from_array(img, chunks=64), pixel_size_um=0.0143 * 1.5,
                                      weights=tiny_weights, tile_px=64)
    assert prov["resampled"] and eta == 0.0143
    assert prob.shape[:2] == (135, 180) == resampled_shape((90, 120), 0.0143 * 1.5, 0.0143)
    assert prob.compute().shape == (135, 180, 3)


def test_pixel_size_far_from_the_models_is_refused_unless_forced():
    with pytest.raises(InputError, match="image 'a'.*--force"):
        check_pixel_size(38.5, 0.0143, name="image 'a'")
    with pytest.raises(InputError, match="pixel size"):
        check_pixel_size(-1, 0.0143)
    assert check_pixel_size(38.5, 0.0143, force=True) is True
    assert check_pixel_size(0.0144, 0.0143) is False
