"""register_pair: an HR sub-region found inside its LR image (offset, scale, aligned crops).

Ground truth comes from the generator: make_training_pair renders one scene at both pixel
sizes over the same field (HR = LR·35/13), so an HR crop starting at HR pixel (Y, X) has its
field's corner at LR (Y, X)·13/35 (non-integer unless Y, X are multiples of 35), and an HR
crop resampled by a factor f has the scale 35/13·f.
"""

import functools
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import map_coordinates

from cathodeflow.errors import InputError
from cathodeflow.stages.register import LR_MULTIPLE, MIN_CORRELATION, register_pair
from cathodeflow.synth.training import make_training_pair

S = 35 / 13
SHAPE_LR = (182, 208)  # HR (490, 560)
HR_FIELD = (300, 340)  # HR px of the crop: 111 × 126 LR px


@functools.lru_cache(maxsize=None)
def _pair(seed: int, family: str = "classic"):
    return make_training_pair(seed, family=family, shape_lr=SHAPE_LR)


def _crop(p, y, x, shape=HR_FIELD):
    return p.hr[y:y + shape[0], x:x + shape[1]]


def _zoom(img, f):
    """``img`` resampled by the factor ``f`` (> 1) about its top-left corner (corner convention:
    output pixel j's centre is at input coordinate (j + 0.5)/f − 0.5)."""
    n = (int(img.shape[0] * f) - 2, int(img.shape[1] * f) - 2)
    yy, xx = np.meshgrid((np.arange(n[0]) + 0.5) / f - 0.5, (np.arange(n[1]) + 0.5) / f - 0.5, indexing="ij")
    return map_coordinates(img.astype(np.float64), [yy, xx], order=3, mode="nearest")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(y=st.integers(0, 490 - HR_FIELD[0]), x=st.integers(0, 560 - HR_FIELD[1]), seed=st.integers(0, 2))
def test_offset_of_an_hr_subregion_is_recovered_within_half_an_lr_pixel(y, x, seed):
    reg = register_pair(_pair(seed).lr, _crop(_pair(seed), y, x))
    assert abs(reg.offset[0] - y / S) < 0.5 and abs(reg.offset[1] - x / S) < 0.5, (reg.offset, (y / S, x / S))
    assert abs(reg.scale / S - 1) < 0.005
    assert reg.correlation >= MIN_CORRELATION


@pytest.mark.parametrize("family", ["channelling", "curtain", "soft"])
def test_non_integer_offset_recovered_in_other_style_families(family):
    p = _pair(1, family)
    y, x = 47, 83  # LR (17.457, 30.829)
    reg = register_pair(p.lr, _crop(p, y, x))
    assert abs(reg.offset[0] - y / S) < 0.5 and abs(reg.offset[1] - x / S) < 0.5
    assert abs(reg.scale / S - 1) < 0.005


def test_scale_off_by_1p5_percent_from_nominal_is_refined_within_half_a_percent():
    p = _pair(2)
    y, x, f = 60, 90, 1.015
    reg = register_pair(p.lr, _zoom(_crop(p, y, x), f))
    assert abs(reg.scale / (S * f) - 1) < 0.005, reg.scale / S
    assert abs(reg.offset[0] - y / S) < 0.5 and abs(reg.offset[1] - x / S) < 0.5


def test_crops_lie_on_the_generator_grid_and_match_the_scene():
    p = _pair(0)
    y, x = 47, 83
    reg = register_pair(p.lr, _crop(p, y, x))
    h, w = reg.lr_crop.shape
    assert h % LR_MULTIPLE == 0 and w % LR_MULTIPLE == 0 and h > 0 and w > 0
    assert reg.hr_crop.shape == (h * 35 // 13, w * 35 // 13)
    y0, x0 = reg.lr_origin
    np.testing.assert_array_equal(reg.lr_crop, p.lr[y0:y0 + h, x0:x0 + w])
    # the block lies inside the HR field: [y/S, (y + 300)/S) LR px
    assert y0 >= y / S and y0 + h <= (y + HR_FIELD[0]) / S
    assert x0 >= x / S and x0 + w <= (x + HR_FIELD[1]) / S
    # HR-crop pixel j is full-HR pixel coordinate y0·35/13 + j (geometry of the generator)
    yy, xx = np.meshgrid(y0 * S + np.arange(reg.hr_crop.shape[0]), x0 * S + np.arange(reg.hr_crop.shape[1]),
                         indexing="ij")
    truth = map_coordinates(p.hr.astype(np.float64), [yy, xx], order=3, mode="nearest")
    rel = np.sqrt(np.mean((reg.hr_crop - truth) ** 2)) / truth.std()
    assert rel < 0.1, rel
    assert reg.hr_crop.dtype == np.float32


def test_unrelated_images_are_refused_naming_both_and_the_correlation():
    lr, hr = _pair(0).lr, _crop(_pair(3), 47, 83)
    with pytest.raises(InputError, match=r"HR\.tif and LR\.tif: no match") as e:
        register_pair(lr, hr, names=("LR.tif", "HR.tif"))
    rho = float(re.search(r"cross-correlation (-?[0-9.]+)", str(e.value)).group(1))
    assert rho < MIN_CORRELATION
    assert "\n" not in str(e.value)


def test_min_correlation_is_the_refusal_threshold():
    p = _pair(0)
    reg = register_pair(p.lr, _crop(p, 47, 83))
    with pytest.raises(InputError, match="min_correlation"):
        register_pair(p.lr, _crop(p, 47, 83), min_correlation=math.nextafter(reg.correlation, 2.0))


def test_hr_field_larger_than_lr_field_is_refused():
    p = _pair(0)
    with pytest.raises(InputError, match="not inside the field of low"):
        register_pair(p.lr[:100, :100], p.hr[:300, :300])


def test_hr_field_smaller_than_one_generator_block_is_refused():
    p = _pair(0)  # 70 HR px = 26 LR px: no whole 26-px LR block fits for a general offset
    with pytest.raises(InputError, match="expected at least 27 × 27"):
        register_pair(p.lr, _crop(p, 0, 0, shape=(70, 300)))


@pytest.mark.parametrize("scale", [1.0, 0.5, float("nan")])
def test_scale_not_above_one_is_refused(scale):
    p = _pair(0)
    with pytest.raises(InputError, match="scale"):
        register_pair(p.lr, _crop(p, 0, 0), scale=scale)


def test_constant_hr_image_is_refused():
    with pytest.raises(InputError, match="constant"):
        register_pair(_pair(0).lr, np.full(HR_FIELD, 7, np.uint8))
