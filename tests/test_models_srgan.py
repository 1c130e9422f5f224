"""The SRGAN (paper §2.3.1, Fig. 3, eq. 4–5): grids 26 → 35 → 70, the fixed 35/26 resize and
its tiling property, the receptive field, the discriminator, losses, weights round trip, a
second backend and a short adversarial training run on synthetic lr/hr pairs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from cathodeflow.errors import InputError

keras = pytest.importorskip("keras")

from cathodeflow.models.losses import adversarial_bce, perceptual_loss, vgg19_features  # noqa: E402
from cathodeflow.models.registry import load_srgan_generator, load_unet, save_model_weights  # noqa: E402
from cathodeflow.models.srgan import (  # noqa: E402
    SRGANConfig,
    build_discriminator,
    build_generator,
    interpolation_matrix,
    measure_srgan_receptive_field_radius,
    srgan_receptive_field_radius,
)
from cathodeflow.models.training import TrainLoopConfig, fit_srgan  # noqa: E402

TINY = SRGANConfig(n_blocks=1, filters=8, upsample_filters=32, disc_filters=8, disc_dense=16)


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64)


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(1)
    return build_generator(TINY)


# ---------------------------------------------------------------------------------------------
# grids and the fixed 35/26 resize
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3])
def test_generator_maps_26k_by_26m_lowres_px_to_70k_by_70m_highres_px(generator, k):
    for m in (1, 2, 3):
        x = np.random.default_rng(k * 10 + m).random((2, 26 * k, 26 * m, 1), dtype=np.float32)
        assert tuple(generator(x, training=False).shape) == (2, 70 * k, 70 * m, 1)


def test_interpolation_matrix_reproduces_a_ramp_at_half_pixel_centres():
    # output pixel j has its centre at input coordinate (j + 1/2)·26/35 − 1/2, clamped to the image
    for n in (26, 78):
        M = interpolation_matrix(n)
        j = np.arange(n * 35 // 26)
        assert M.shape == (n * 35 // 26, n)
        expected = np.clip((j + 0.5) * 26 / 35 - 0.5, 0, n - 1)
        np.testing.assert_allclose(M.astype(np.float64) @ np.arange(n), expected, atol=2e-5, rtol=0)
        np.testing.assert_allclose(M.sum(axis=1), 1.0, atol=1e-6)
        assert np.all(np.count_nonzero(M, axis=1) <= 2)


@pytest.mark.parametrize("start, blocks", [(1, 1), (2, 3), (1, 4)])
def test_resize_of_a_crop_at_a_multiple_of_26_equals_the_crop_of_the_whole_resize(start, blocks):
    whole = interpolation_matrix(26 * 6)
    crop = interpolation_matrix(26 * blocks)
    rows = slice(35 * start, 35 * (start + blocks))
    cols = slice(26 * start, 26 * (start + blocks))
    # bitwise equal (26-periodic weights) except the first and last output row of the crop,
    # whose centres lie 9/70 px outside the crop: they read one pixel beyond it (halo 1)
    np.testing.assert_array_equal(whole[rows, cols][1:-1], crop[1:-1])
    outside = np.delete(whole[rows], np.arange(26 * start, 26 * (start + blocks)), axis=1)
    assert np.all(outside[1:-1] == 0)
    assert whole[35 * start, 26 * start - 1] > 0 and whole[35 * (start + blocks) - 1, 26 * (start + blocks)] > 0


def test_generator_tile_with_a_halo_of_the_receptive_field_equals_the_whole_image(generator):
    R = srgan_receptive_field_radius(TINY)
    halo = -(-R // 26) * 26
    x = np.random.default_rng(3).random((1, 26 * 6, 26 * 5, 1), dtype=np.float32)
    whole = _np(generator(x, training=False))
    a, b = 52, 104  # the low-res chunk [52, 104)² and its halo
    tile = _np(generator(x[:, a - halo:b + halo, a - halo:b + halo], training=False))
    h0, h1 = halo * 70 // 26, (halo + b - a) * 70 // 26
    np.testing.assert_allclose(tile[:, h0:h1, h0:h1], whole[:, a * 70 // 26:b * 70 // 26, a * 70 // 26:b * 70 // 26],
                               atol=1e-5, rtol=0)


def _linear_35_13(x: np.ndarray) -> np.ndarray:
    """Linear interpolation by 35/13 with half-pixel centres (output pixel j at input coordinate
    (j + 1/2)·13/35 − 1/2, edges clamped), written out with np.interp per axis."""
    def axis(a, n):
        pos = np.clip((np.arange(n * 35 // 13) + 0.5) * 13 / 35 - 0.5, 0, n - 1)
        return np.apply_along_axis(lambda v: np.interp(pos, np.arange(n), v), 0, a)

    return axis(axis(x, x.shape[0]).T, x.shape[1]).T


def test_generator_with_the_input_skip_starts_as_linear_interpolation_by_35_13():
    keras.utils.set_random_seed(6)
    g = build_generator(SRGANConfig(n_blocks=1, filters=4, upsample_filters=8, input_skip=1))
    x = np.random.default_rng(6).random((26 * 2, 26 * 3), dtype=np.float32)
    y = _np(g(x[None, ..., None], training=False))[0, ..., 0]
    np.testing.assert_allclose(y, _linear_35_13(x.astype(np.float64)), atol=1e-5, rtol=0)


def test_generator_with_the_input_skip_tiles_with_the_same_halo_as_without():
    cfg = SRGANConfig(n_blocks=1, filters=8, upsample_filters=32, input_skip=1)
    keras.utils.set_random_seed(7)
    g = build_generator(cfg)
    g.get_layer("out_conv").set_weights([w + 0.01 for w in g.get_layer("out_conv").get_weights()])  # not 0
    assert srgan_receptive_field_radius(cfg) == srgan_receptive_field_radius(TINY)
    halo = -(-srgan_receptive_field_radius(cfg) // 26) * 26
    x = np.random.default_rng(7).random((1, 26 * 6, 26 * 5, 1), dtype=np.float32)
    whole = _np(g(x, training=False))
    a, b = 52, 104
    tile = _np(g(x[:, a - halo:b + halo, a - halo:b + halo], training=False))
    h0, h1 = halo * 70 // 26, (halo + b - a) * 70 // 26
    np.testing.assert_allclose(tile[:, h0:h1, h0:h1], whole[:, a * 70 // 26:b * 70 // 26, a * 70 // 26:b * 70 // 26],
                               atol=1e-5, rtol=0)
    assert measure_srgan_receptive_field_radius(g, size=78) == srgan_receptive_field_radius(cfg)


# ---------------------------------------------------------------------------------------------
# receptive field
# ---------------------------------------------------------------------------------------------
def test_measured_receptive_field_equals_the_closed_form():
    cfg = SRGANConfig(n_blocks=2, filters=4, upsample_filters=16, input_kernel=5, output_kernel=7)
    keras.utils.set_random_seed(2)
    model = build_generator(cfg)
    R = srgan_receptive_field_radius(cfg)
    assert measure_srgan_receptive_field_radius(model, size=78) == R
    # trunk (k9: 4, 16 blocks · 2 k3 convs, post conv 1) = 37, head (k9 out, shuffle, k3, linear) = 3
    assert srgan_receptive_field_radius(SRGANConfig()) == 40


# ---------------------------------------------------------------------------------------------
# discriminator and losses
# ---------------------------------------------------------------------------------------------
def test_discriminator_gives_one_probability_in_0_1_per_crop_of_any_size():
    keras.utils.set_random_seed(4)
    d = build_discriminator(TINY)
    for shape in ((3, 70, 70, 1), (2, 258, 258, 1), (1, 33, 47, 1)):
        p = _np(d(np.random.default_rng(0).normal(size=shape).astype(np.float32), training=False))
        assert p.shape == (shape[0], 1)
        assert np.all((p > 0) & (p < 1))


def test_content_and_adversarial_losses_equal_hand_computations():
    rng = np.random.default_rng(5)
    a, b = rng.random((2, 8, 6, 1)), rng.random((2, 8, 6, 1))
    assert float(_np(perceptual_loss(content="mse")(a, b))) == pytest.approx(np.mean((a - b) ** 2), rel=1e-5)
    pool = keras.Sequential([keras.Input((None, None, 1)), keras.layers.AveragePooling2D(2)])
    fa, fb = a.reshape(2, 4, 2, 3, 2, 1).mean((2, 4)), b.reshape(2, 4, 2, 3, 2, 1).mean((2, 4))
    got = float(_np(perceptual_loss(content="features", feature_model=pool)(a, b)))
    assert got == pytest.approx(np.mean((fa - fb) ** 2), rel=1e-5)
    y, d = np.array([[1.0], [0.0], [1.0]]), np.array([[0.9], [0.2], [0.4]])
    expected = -(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3
    assert float(_np(adversarial_bce(y, d))) == pytest.approx(expected, rel=1e-5)


def test_perceptual_loss_choices_are_explicit_and_vgg_weights_come_only_from_a_given_file(tmp_path):
    for call, text in [(lambda: perceptual_loss(content="features"), "feature_model"),
                       (lambda: perceptual_loss(content="vgg"), "content"),
                       (lambda: vgg19_features(tmp_path / "missing.h5"), "not found")]:
        with pytest.raises(InputError, match=text) as e:
            call()
        assert "\n" not in str(e.value)
    bad = tmp_path / "bad.h5"
    bad.write_text("not weights")
    with pytest.raises(InputError, match="does not load into VGG19") as e:
        vgg19_features(bad)
    assert "\n" not in str(e.value)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # TF variables, numpy 2
def test_vgg19_features_are_block2_conv2_of_the_given_weights_on_caffe_preprocessed_grey(tmp_path):
    keras.utils.set_random_seed(8)
    src = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    src.save_weights(tmp_path / "vgg.weights.h5")  # random weights stand in for ImageNet's
    features = vgg19_features(tmp_path / "vgg.weights.h5")
    x = np.random.default_rng(9).random((1, 32, 32, 1), dtype=np.float32)
    ref = keras.Model(src.input, src.get_layer("block2_conv2").output)
    bgr = np.repeat(x * 255, 3, axis=-1) - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_allclose(_np(features(x)), _np(ref(bgr)), rtol=1e-5, atol=1e-4)
    assert tuple(features(x).shape) == (1, 16, 16, 128) and not features.trainable_weights


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
def _save(generator, folder):
    return save_model_weights(generator, folder / "sr.weights.h5", architecture={"kind": "srgan", **TINY.to_dict()},
                              training={"note": "random"}, pixel_size_um=0.0385,
                              normalisation={"method": "percentile", "q": [0.5, 99.5]})


def test_saved_srgan_generator_loads_with_identical_outputs_and_only_as_srgan(generator, tmp_path):
    record = _save(generator, tmp_path)
    loaded, rec = load_srgan_generator(record.path, cache=False)
    assert rec.architecture == {"kind": "srgan", **TINY.to_dict()}
    x = np.random.default_rng(6).random((1, 52, 26, 1), dtype=np.float32)
    np.testing.assert_array_equal(_np(loaded(x, training=False)), _np(generator(x, training=False)))
    with pytest.raises(InputError, match="expected 'unet'"):
        load_unet(record.path)


SCRIPT = r"""
import sys
import numpy as np
import keras
from cathodeflow.models.losses import perceptual_loss
from cathodeflow.models.registry import load_srgan_generator
from cathodeflow.models.srgan import SRGANConfig, build_discriminator
from cathodeflow.models.training import TrainLoopConfig, fit_srgan

weights, data, out = sys.argv[1:4]
x = np.load(data)["x"]
g, _ = load_srgan_generator(weights, cache=False)
y = keras.ops.convert_to_numpy(g(x, training=False))
d = build_discriminator(SRGANConfig.from_dict({k: v for k, v in _.architecture.items() if k != "kind"}))
d_before = [w.copy() for w in d.get_weights()]
d.train_on_batch = lambda *a, **k: {"loss": 0.0}  # only G steps: D must stay as it is
hr = np.zeros((1, 70, 70, 1), np.float32)
h = fit_srgan(g, d, sample_batch=lambda rng: (x[:, :26, :26], hr), val_batches=[(x[:, :26, :26], hr)],
              content_loss=perceptual_loss(content="mse"), loop=TrainLoopConfig(max_steps=2, val_every=2),
              pretrain=TrainLoopConfig(max_steps=1, val_every=1))
same_d = all(np.array_equal(a, b) for a, b in zip(d_before, d.get_weights()))
np.savez(out, y=y, g_loss=np.array(h.gan.train["g_loss"]), pre=np.array(h.pretrain.val_loss), same_d=same_d)
print(keras.backend.backend())
"""


def test_generator_weights_saved_under_tensorflow_give_the_same_output_and_train_under_torch(generator, tmp_path):
    if importlib.util.find_spec("torch") is None:
        pytest.skip(f"torch is not installed in {sys.executable}")
    if keras.backend.backend() == "torch":
        pytest.skip("this session already runs on the torch backend; nothing to compare with")
    record = _save(generator, tmp_path)
    x = np.random.default_rng(7).random((1, 52, 78, 1), dtype=np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(record.path), str(tmp_path / "data.npz"),
                        str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "KERAS_BACKEND": "torch"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "torch"
    got = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(got["y"], _np(generator(x, training=False)), atol=1e-5, rtol=0)
    assert got["g_loss"].shape == (2,) and np.all(np.isfinite(got["g_loss"])) and got["pre"].shape == (1,)
    assert bool(got["same_d"])  # the G step left the frozen discriminator unchanged


# ---------------------------------------------------------------------------------------------
# a short adversarial training run on synthetic pairs
# ---------------------------------------------------------------------------------------------
def _crops(rng, pair, n):
    """n random aligned 26-px lr / 70-px hr crops (lr origins on multiples of 13)."""
    lr, hr = [], []
    h, w = pair.lr.shape
    for _ in range(n):
        a, b = (rng.integers(0, (s - 26) // 13 + 1) * 13 for s in (h, w))
        A, B = a * 35 // 13, b * 35 // 13
        lr.append(pair.lr[a:a + 26, b:b + 26])
        hr.append(pair.hr[A:A + 70, B:B + 70])
    return (np.stack(lr)[..., None] / np.float32(255)).astype(np.float32), \
        (np.stack(hr)[..., None] / np.float32(255)).astype(np.float32)


def test_short_srgan_run_lowers_the_validation_loss_and_restores_the_best_weights():
    from cathodeflow.synth.training import FAMILIES_TRAIN, make_training_pair

    pairs = [make_training_pair(s, family=FAMILIES_TRAIN[0], shape_lr=(78, 78)) for s in range(3)]
    val = [_crops(np.random.default_rng(99), pairs[2], 8)]
    keras.utils.set_random_seed(0)
    g, d = build_generator(TINY), build_discriminator(TINY)
    loss = perceptual_loss(content="mse")
    calls = []

    def sample_batch(rng):
        # 16 steps on true pairs, then 8 on targets shifted by +1: the last checks get worse by design
        calls.append(1)
        lr, hr = _crops(rng, pairs[rng.integers(0, 2)], 2)
        return (lr, hr) if len(calls) <= 16 else (lr, hr + 1)

    def val_loss():
        return float(np.mean([_np(loss(hr, g(lr, training=False))) for lr, hr in val]))

    before = val_loss()
    h = fit_srgan(g, d, sample_batch=sample_batch, val_batches=val, content_loss=loss, learning_rate=1e-3,
                  loop=TrainLoopConfig(max_steps=24, val_every=4, patience=10))
    hist = h.gan
    assert h.pretrain is None and set(hist.train) == {"g_loss", "content", "adversarial", "d_loss"}
    assert hist.val_steps == [4, 8, 12, 16, 20, 24]
    assert hist.best_val_loss < 0.8 * before
    assert hist.val_loss[-1] > 1.5 * hist.best_val_loss  # the last check is far from the best ...
    assert val_loss() == pytest.approx(hist.best_val_loss, rel=1e-6)  # ... yet the best weights are back
