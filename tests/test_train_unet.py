"""The U-net trainer's augmentation (cathodeflow.study.train_unet.degrade / augment) and its
config keys: noise σ in its configured range (measured on constant images), shot-like noise
∝ sqrt(signal), contrast compression toward the mean, labels that move with the pixels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cathodeflow.errors import InputError
from cathodeflow.study.train_unet import (CURVE_PIECES, Sample, TrainUNetConfig, _batch, augment, degrade,
                                          load_train_config, lr_grid_noise, random_curve, sr_weights_arg,
                                          validation_batches)

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "cathodeflow" / "models" / "weights"
V2_RECIPE = WEIGHTS_DIR / "unet-small-v2.train.toml"


def test_noise_sigma_on_a_constant_image_lies_in_the_configured_range_and_is_log_uniform():
    lo, hi = 0.01, 0.2
    cfg = TrainUNetConfig(noise_min=lo, noise_max=hi, poisson_prob=0.5, contrast_min=0.3, blur_prob=0.0)
    rng = np.random.default_rng(3)
    flat = np.full((128, 128), 0.5, np.float32)  # shot-like noise has σ exactly at mid-grey 0.5
    sig = np.array([degrade(flat, rng, cfg).std() for _ in range(300)])
    # std of 16384 normal samples: relative error ~0.6 %, so 3 % is > 5 standard errors
    assert sig.min() >= lo * 0.97 and sig.max() <= hi * 1.03
    assert sig.min() < lo * 1.2 and sig.max() > hi / 1.2  # the whole range is drawn
    # log-uniform: median at the geometric mean sqrt(lo·hi) = 0.045 (uniform would give 0.105)
    assert np.median(sig) == pytest.approx(np.sqrt(lo * hi), rel=0.25)


def test_shot_like_noise_scales_with_the_square_root_of_the_signal():
    cfg = TrainUNetConfig(noise_min=0.1, noise_max=0.1, poisson_prob=1.0, contrast_min=1.0, blur_prob=0.0)
    img = np.full((256, 256), 0.5, np.float32)
    img[:, :128] = 0.125
    out = degrade(img, np.random.default_rng(0), cfg)
    assert out[:, :128].std() == pytest.approx(0.1 * np.sqrt(0.125 / 0.5), rel=0.03)
    assert out[:, 128:].std() == pytest.approx(0.1, rel=0.03)


def test_contrast_is_compressed_toward_the_mean_by_a_factor_in_its_range():
    cfg = TrainUNetConfig(noise_min=0.0, noise_max=0.0, contrast_min=0.3, blur_prob=0.0)
    img = np.full((64, 64), 0.8, np.float32)
    img[:, :16] = 0.2  # mean 0.65
    rng = np.random.default_rng(1)
    factors = []
    for _ in range(200):
        out = degrade(img, rng, cfg)
        assert out.mean() == pytest.approx(0.65, abs=1e-5)
        factors.append((out[0, -1] - out[0, 0]) / 0.6)
    assert 0.3 - 1e-5 <= min(factors) < 0.35 and 0.95 < max(factors) <= 1 + 1e-5


def test_augmented_labels_move_with_their_pixels():
    """Every step of augment is monotone in the intensity, so with image = label / 2 the
    classes stay separated by intensity only if the labels were rotated/flipped with them."""
    cfg = TrainUNetConfig(noise_min=0.0, noise_max=0.0, contrast_min=1.0, blur_prob=0.0)
    rng = np.random.default_rng(2)
    lab = np.zeros((48, 64), np.uint8)
    lab[5:20, 3:40] = 1
    lab[30:33, 10:60] = 2
    for _ in range(16):
        x, y = augment(lab / 2.0, lab, rng, cfg)
        assert x.shape == y.shape and sorted(np.unique(y)) == [0, 1, 2]
        assert x[y == 0].max() < x[y == 1].min() and x[y == 1].max() < x[y == 2].min()


def test_v2_recipe_loads_its_degradation_keys_into_the_recorded_config():
    cfg = load_train_config(V2_RECIPE)
    rec = cfg.to_dict()
    assert (rec["noise_min"], rec["noise_max"], rec["poisson_prob"], rec["contrast_min"], rec["blur_prob"]) == (
        0.005, 0.25, 0.5, 0.3, 0.3)


def _power_above(x: np.ndarray, f_cut: float) -> float:
    """Share of the power of ``x`` (mean removed) at spatial frequencies above ``f_cut``
    (cycles per pixel) along either axis."""
    p = np.abs(np.fft.fft2(x - x.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(x.shape[0]), np.fft.fftfreq(x.shape[1]), indexing="ij")
    return float(p[(np.abs(fy) > f_cut) | (np.abs(fx) > f_cut)].sum() / p.sum())


@pytest.mark.parametrize("shape", [(256, 256), (97, 300)])
def test_lr_grid_noise_is_band_limited_to_the_low_res_grid_unlike_white_noise(shape):
    """Noise drawn on the 38.5 nm grid and interpolated by 35/13 keeps little power above that
    grid's Nyquist frequency (13/70 cycles per 14.3 nm px: about a tenth, the cubic kernel's
    leakage; at most 16 % in 50 draws of 64² to 256²); white noise has 1 − (13/35)² ≈ 86 % of
    its power there."""
    rng = np.random.default_rng(0)
    f_lr = 0.5 * 13 / 35
    n = lr_grid_noise(shape, rng)
    assert n.shape == shape and n.dtype == np.float32
    assert 0.6 < n.std() < 1.0  # cubic interpolation averages neighbours: per-pixel σ below 1
    assert _power_above(n, f_lr) < 0.2
    assert _power_above(rng.standard_normal(shape), f_lr) > 0.8


def test_noise_on_lr_grid_reaches_sr_crops_only_and_is_read_from_the_recipe():
    cfg = TrainUNetConfig(noise_min=0.1, noise_max=0.1, contrast_min=1.0, blur_prob=0.0, noise_on_lr_grid=True)
    flat = np.full((128, 128), 0.5, np.float32)
    rng = np.random.default_rng(6)
    f_lr = 0.5 * 13 / 35
    assert _power_above(degrade(flat, rng, cfg, lr_grid=True), f_lr) < 0.2
    assert _power_above(degrade(flat, rng, cfg), f_lr) > 0.8
    # through _batch: a crop's noise follows its sample's source
    img, lab = _two_level((128, 128))
    img[:] = 0.5
    for source, band_limited in [("sr", True), ("hr", False)]:
        samples = [Sample(image=img, phase=lab, family="classic", source=source)]
        x, _ = _batch(samples, np.random.default_rng(7), 128, 4, cfg, 16)
        shares = [_power_above(v[..., 0], f_lr) for v in x]
        assert all((s < 0.2) if band_limited else (s > 0.8) for s in shares), (source, shares)
    assert load_train_config(WEIGHTS_DIR / "unet-small-v12.train.toml").noise_on_lr_grid is True
    assert TrainUNetConfig().noise_on_lr_grid is False
    with pytest.raises(InputError, match="noise_on_lr_grid must be true or false"):
        TrainUNetConfig(noise_on_lr_grid=1)


def _two_level(shape=(64, 64)):
    img = np.full(shape, 0.7, np.float32)
    img[:, : shape[1] // 2] = 0.3
    lab = (img > 0.5).astype(np.uint8)
    return img, lab


def _noisy(x, lab):
    """True when either flat half of an augmented two-level image has picked up noise."""
    return max(float(x[lab == 0].std()), float(x[lab == 1].std())) > 1e-4


def test_degrade_prob_is_the_share_of_crops_that_get_noise():
    img, lab = _two_level()
    # 400 Bernoulli(0.5) draws: standard deviation 10, so 160–240 is ±4 standard deviations
    for p, lo, hi in [(0.0, 0, 0), (0.5, 160, 240), (1.0, 400, 400)]:
        cfg = TrainUNetConfig(noise_min=0.05, noise_max=0.1, degrade_prob=p)
        rng = np.random.default_rng(5)
        n = sum(_noisy(*augment(img, lab, rng, cfg)) for _ in range(400))
        assert lo <= n <= hi


def test_validation_crops_are_raw_unless_val_degraded_then_noisy_and_fixed_by_the_seed():
    img, lab = _two_level((96, 96))
    samples = [Sample(image=img, phase=lab, family="classic", source="hr")]
    common = dict(crop_px=64, n_val_crops=6, noise_min=0.05, noise_max=0.1, seed=4)
    raw = validation_batches(samples, TrainUNetConfig(**common), 16)
    assert len(raw) == 6 and not any(_noisy(x[0, ..., 0], y[0]) for x, y in raw)
    assert all(set(np.unique(x)) <= {np.float32(0.3), np.float32(0.7)} for x, _ in raw)
    cfg = TrainUNetConfig(val_degraded=True, **common)
    deg = validation_batches(samples, cfg, 16)
    assert all(_noisy(x[0, ..., 0], y[0]) for x, y in deg)  # degrade_prob 1: every crop
    again = validation_batches(samples, cfg, 16)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(deg, again))


def test_v3_recipe_degrades_half_the_crops_and_validates_on_degraded_crops():
    rec = load_train_config(WEIGHTS_DIR / "unet-small-v3.train.toml").to_dict()
    assert (rec["degrade_prob"], rec["val_degraded"]) == (0.5, True)


@pytest.mark.parametrize("bad, key", [({"noise_min": 0.3, "noise_max": 0.2}, "noise_min"),
                                      ({"noise_min": 0.0, "noise_max": 0.1}, "noise_min"),
                                      ({"contrast_min": 0.0}, "contrast_min"),
                                      ({"poisson_prob": 1.5}, "poisson_prob"),
                                      ({"blur_prob": -0.1}, "blur_prob"),
                                      ({"degrade_prob": 1.2}, "degrade_prob"),
                                      ({"curve_prob": 1.5}, "curve_prob"),
                                      ({"curve_strength": 0.5}, "curve_strength"),
                                      ({"curve_strength": True}, "curve_strength")])
def test_bad_degradation_settings_are_refused_in_one_line_naming_the_key(bad, key):
    with pytest.raises(InputError, match=f"training.{key}") as e:
        TrainUNetConfig(**bad)
    assert "\n" not in str(e.value)


def test_sr_weights_by_registry_name_reach_the_generator_as_a_name_and_paths_as_absolute_paths(tmp_path,
                                                                                             monkeypatch):
    """``sr_weights = "srgan-small-v1"`` in a recipe: the data processes get the name (the shipped
    file has no sidecar; its record is the registry's), and the generator runs with it."""
    from cathodeflow.models.registry import DEFAULT_SRGAN, resolve_weights
    from cathodeflow.stages.srgan import srgan_superres

    arg = sr_weights_arg(DEFAULT_SRGAN)
    assert arg == DEFAULT_SRGAN
    lr = np.random.default_rng(0).integers(0, 255, (26, 26)).astype(np.uint8)
    assert srgan_superres(lr, weights=arg).shape == (70, 70)
    # a weights file with its sidecar, named relative to the working directory
    shipped = resolve_weights(DEFAULT_SRGAN)

    shutil.copy(shipped.path, tmp_path / "g.weights.h5")
    (tmp_path / "g.json").write_text(json.dumps(shipped.to_dict() | {"name": "g", "file": "g.weights.h5"}))
    monkeypatch.chdir(tmp_path)
    assert sr_weights_arg("g.weights.h5") == str(tmp_path / "g.weights.h5")
    with pytest.raises(InputError, match="not a registry name"):
        sr_weights_arg("no-such-generator")


@pytest.mark.parametrize("recipe", sorted(p.name for p in WEIGHTS_DIR.glob("unet-*.train.toml")))
def test_every_unet_recipe_in_the_package_loads_and_names_its_own_command(recipe):
    """The recipes are how weights are reproduced: each must load as it stands, and its first
    line must be the command that runs it."""
    path = WEIGHTS_DIR / recipe
    cfg = load_train_config(path)
    assert cfg.architecture["depth"] >= 1 and cfg.max_steps >= 1
    first = path.read_text().splitlines()[0]
    assert first.startswith("# `cathodeflow train unet --config cathodeflow/models/weights/" + recipe)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), strength=st.floats(1.0, 50.0))
def test_random_curve_maps_0_1_onto_itself_increasing_with_slopes_within_the_strength(seed, strength):
    """The curve's pieces, read back at the knots (equal pieces of [0, 1]): it starts at 0,
    ends at 1, rises on every piece, and no slope is more than ``strength`` times another."""
    knots = np.linspace(0.0, 1.0, CURVE_PIECES + 1)
    y = random_curve(knots, np.random.default_rng(seed), strength).astype(np.float64)
    assert y[0] == 0.0 and y[-1] == pytest.approx(1.0, abs=1e-6)
    slopes = np.diff(y)
    assert slopes.min() > 0
    assert slopes.max() / slopes.min() <= strength * (1 + 1e-4)
    # between the knots it is the straight line (np.interp), so a fine ramp is non-decreasing
    ramp = random_curve(np.linspace(-0.5, 1.5, 1001), np.random.default_rng(seed), strength)
    assert np.all(np.diff(ramp) >= 0) and ramp[0] == 0.0


def test_random_curve_of_strength_one_is_the_identity():
    x = np.linspace(0.0, 1.0, 257)
    assert np.allclose(random_curve(x, np.random.default_rng(0), 1.0), x, atol=1e-6)


def test_transfer_curves_move_the_phases_grey_levels_apart_or_together_but_keep_their_order():
    """Three flat phases at 0.2, 0.5, 0.8: the middle one's place between the other two,
    (m2 − m1) / (m3 − m1), is 0.5 up to gamma without curves, and spread far wider with
    ``curve_prob = 1``; the order of the three levels never changes."""
    lab = np.zeros((64, 64), np.uint8)
    lab[:, 20:40], lab[:, 40:] = 1, 2
    img = np.choose(lab, [0.2, 0.5, 0.8]).astype(np.float32)

    def places(cfg, seed):
        rng, out = np.random.default_rng(seed), []
        for _ in range(200):
            x, y = augment(img, lab, rng, cfg)
            m = [float(x[y == k].mean()) for k in range(3)]
            assert m[0] < m[1] < m[2]
            out.append((m[1] - m[0]) / (m[2] - m[0]))
        return np.array(out)

    common = dict(noise_min=0.0, noise_max=0.0, contrast_min=1.0, blur_prob=0.0)
    plain = places(TrainUNetConfig(**common), 5)
    curved = places(TrainUNetConfig(curve_prob=1.0, curve_strength=8.0, **common), 5)
    spread = lambda v: np.quantile(v, 0.95) - np.quantile(v, 0.05)  # noqa: E731
    assert spread(curved) > 2.0 * spread(plain)
    assert curved.min() < 0.3 and curved.max() > 0.7


def test_v13_recipe_reads_its_transfer_curves_and_older_recipes_have_none():
    assert (load_train_config(WEIGHTS_DIR / "unet-small-v13.train.toml").curve_prob, ) == (0.5, )
    assert load_train_config(WEIGHTS_DIR / "unet-small-v12.train.toml").curve_prob == 0.0
