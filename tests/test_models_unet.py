"""U-net (paper §2.3.2): configuration, architecture, receptive field, tile inference, and the
keras-free input normalisation."""

from __future__ import annotations

import subprocess
import sys

import dask.array as da
import numpy as np
import pytest

from cathodeflow.errors import InputError
from cathodeflow.models.normalise import intensity_range, normalise_image

keras = pytest.importorskip("keras")

from cathodeflow.models.unet import (  # noqa: E402
    UNetConfig,
    build_unet,
    measure_receptive_field_radius,
    model_multiple,
    predict_tile,
    receptive_field_radius,
)

SMALL = UNetConfig(depth=3, filters=4, dilation=2)


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(1)
    return build_unet(SMALL)


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
def test_config_defaults_are_the_paper_values():
    c = UNetConfig()
    assert (c.depth, c.filters, c.dilation, c.n_classes) == (5, 32, 4, 3)
    assert c.multiple == 16


def test_config_round_trips_through_dict_and_rejects_unknown_keys_and_bad_values():
    assert UNetConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(InputError, match="dpeth"):
        UNetConfig.from_dict({**SMALL.to_dict(), "dpeth": 3})
    for key, bad in [("depth", 0), ("filters", "8"), ("dilation", 1.5), ("kernel_size", 4),
                     ("convs_per_level", True), ("n_classes", 1)]:
        with pytest.raises(InputError, match=f"UNetConfig.{key}"):
            UNetConfig.from_dict({**SMALL.to_dict(), key: bad})


# ---------------------------------------------------------------------------------------------
# architecture
# ---------------------------------------------------------------------------------------------
def _hand_parameter_count(depth, f, k, n, classes):
    """Parameters of the architecture as described in the module docstring, by hand."""
    total, cin = 0, 1
    for level in range(depth):  # encoder (level depth-1 is the bottom)
        cout = f * 2**level
        for _ in range(n):
            total += k * k * cin * cout + cout
            cin = cout
    for level in range(depth - 2, -1, -1):  # decoder
        cout = f * 2**level
        total += 2 * 2 * cin * cout + cout  # transposed 2x2 conv
        cin = 2 * cout  # concatenated skip
        for _ in range(n):
            total += k * k * cin * cout + cout
            cin = cout
    return total + cin * classes + classes


def test_paper_unet_has_the_hand_counted_parameters_and_keeps_a_64px_input_shape():
    model = build_unet()
    assert model.count_params() == _hand_parameter_count(5, 32, 3, 2, 3) == 7_759_587
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
             and not isinstance(layer, keras.layers.Conv2DTranspose) and layer.name != "classes"]
    assert len(convs) == 2 * 5 + 2 * 4
    assert all(c.dilation_rate == (4, 4) and c.padding == "same" for c in convs)
    assert not any("normalization" in type(layer).__name__.lower() for layer in model.layers)
    x = np.random.default_rng(0).random((1, 64, 64, 1), dtype=np.float32)
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (1, 64, 64, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


def test_layer_names_are_deterministic_across_builds():
    a = [layer.name for layer in build_unet(SMALL).layers]
    b = [layer.name for layer in build_unet(SMALL).layers]
    assert a == b
    assert {"enc0_conv0", "enc2_conv1", "enc1_pool", "dec0_up", "dec1_concat", "dec0_conv1", "classes"} <= set(a)


# ---------------------------------------------------------------------------------------------
# receptive field
# ---------------------------------------------------------------------------------------------
def test_receptive_field_radius_of_hand_worked_configs():
    # two 3x3 convs with dilation 3 at full resolution: 3 + 3 px
    assert receptive_field_radius(UNetConfig(depth=1, dilation=3)) == 6
    # depth 2, one 3x3 conv per level: enc0 1 px, enc1 1 px at stride 2 (2 px), dec0 1 px,
    # plus the pooling/upsampling asymmetry of one fine pixel: 1 + 2 + 1 + 1
    assert receptive_field_radius(UNetConfig(depth=2, dilation=1, convs_per_level=1)) == 5
    assert receptive_field_radius(UNetConfig()) == 383  # the paper's network


@pytest.mark.parametrize("config", [
    SMALL,
    UNetConfig(depth=2, filters=4, dilation=1, convs_per_level=1),
    UNetConfig(depth=3, filters=4, dilation=1, kernel_size=5, convs_per_level=1),
], ids=["d3f4dil2", "d2n1", "d3k5n1"])
def test_measured_receptive_field_equals_the_computed_radius(config):
    keras.utils.set_random_seed(0)
    model = build_unet(config)
    r = receptive_field_radius(config)
    size = (2 * r // config.multiple + 3) * config.multiple
    assert measure_receptive_field_radius(model, size=size) == r


def test_measurement_refuses_a_size_the_influence_reaches_across(small_model):
    with pytest.raises(InputError, match="larger size"):
        measure_receptive_field_radius(small_model, size=32)  # R = 43 > 32 / 2
    with pytest.raises(InputError, match="multiple of 4"):
        measure_receptive_field_radius(small_model, size=30)


# ---------------------------------------------------------------------------------------------
# tile inference
# ---------------------------------------------------------------------------------------------
def test_predict_tile_pads_by_symmetric_reflection_and_crops(small_model):
    rng = np.random.default_rng(2)
    tile = rng.random((37, 42), dtype=np.float32)
    prob = predict_tile(small_model, tile)
    assert prob.shape == (37, 42, 3) and prob.dtype == np.float32
    # bottom/right mirror including the edge pixel (rows 36, 35, 34 appended; cols 41, 40)
    padded = np.concatenate([tile, tile[::-1][:3]], axis=0)
    padded = np.concatenate([padded, padded[:, ::-1][:, :2]], axis=1)
    assert padded.shape == (40, 44)
    full = keras.ops.convert_to_numpy(small_model(padded[None, ..., None], training=False))[0]
    np.testing.assert_array_equal(prob, full[:37, :42])


def test_predict_tile_of_a_batch_equals_tile_by_tile(small_model):
    tiles = np.random.default_rng(3).random((3, 20, 28), dtype=np.float32)
    batch = predict_tile(small_model, tiles)
    assert batch.shape == (3, 20, 28, 3)
    for b in range(3):
        np.testing.assert_allclose(batch[b], predict_tile(small_model, tiles[b]), atol=1e-6)


def test_tile_with_a_receptive_field_halo_equals_the_whole_image(small_model):
    r = receptive_field_radius(SMALL)  # 43 px
    image = np.random.default_rng(4).random((160, 160), dtype=np.float32)
    whole = predict_tile(small_model, image)
    core = slice(64, 96)
    halo = 44  # >= r and a multiple of 4, so the pooling grid of the tile matches the image's
    assert halo >= r
    tile = predict_tile(small_model, image[64 - halo: 96 + halo, 64 - halo: 96 + halo])
    np.testing.assert_allclose(tile[halo:-halo, halo:-halo], whole[core, core], atol=1e-5)
    short = 12  # a halo well inside the receptive field changes the core: the check can fail
    tile = predict_tile(small_model, image[64 - short: 96 + short, 64 - short: 96 + short])
    assert np.abs(tile[short:-short, short:-short] - whole[core, core]).max() > 1e-4


def test_predict_tile_refuses_integer_or_misshapen_input(small_model):
    with pytest.raises(InputError, match="dtype"):
        predict_tile(small_model, np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="shape"):
        predict_tile(small_model, np.zeros((1, 2, 8, 8), np.float32))
    assert model_multiple(small_model) == 4


# ---------------------------------------------------------------------------------------------
# normalisation (numpy only)
# ---------------------------------------------------------------------------------------------
def test_intensity_range_of_a_uniform_ramp_is_its_percentiles():
    # values 0..9999 each once, shuffled: the q-th percentile is 9999 q / 100
    img = np.random.default_rng(5).permutation(10_000).reshape(100, 100).astype(np.float64)
    lo, hi = intensity_range(img)
    assert lo == pytest.approx(0.005 * 9999) and hi == pytest.approx(0.995 * 9999)


def test_intensity_range_from_a_strided_sample_is_the_same_for_numpy_and_dask():
    rng = np.random.default_rng(6)
    img = rng.normal(100.0, 10.0, (600, 500))
    lo, hi = intensity_range(img, max_samples=10_000)  # stride 6: 100 x 84 samples
    # N(100, 10): the 0.5 % / 99.5 % quantiles are 100 -/+ 25.76; sampling error ~1
    assert lo == pytest.approx(100 - 25.758, abs=2.5) and hi == pytest.approx(100 + 25.758, abs=2.5)
    assert intensity_range(da.from_array(img, chunks=128), max_samples=10_000) == (lo, hi)


def test_normalise_maps_lo_to_0_and_hi_to_1_without_clipping():
    out = normalise_image(np.array([[10.0, 20.0, 30.0, 0.0]]), lo=10.0, hi=30.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0, -0.5]])
    with pytest.raises(InputError, match="lo < hi"):
        normalise_image(np.ones((4, 4)), lo=1.0, hi=1.0)
    with pytest.raises(InputError, match="q"):
        intensity_range(np.ones((4, 4)), q=(99, 1))
    with pytest.raises(InputError, match="finite"):
        intensity_range(np.full((4, 4), np.nan))


def test_models_package_and_normalise_import_without_keras():
    code = ("import sys, cathodeflow.models, cathodeflow.models.normalise;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'torch', 'jax')];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
