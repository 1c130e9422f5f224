"""Style families and training pairs: each family looks as documented, measured on rendered
images with the phase truth (or a hand-drawn scene) as mask; geometry variants are exact."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from cathodeflow.config import ETA_UM
from cathodeflow.errors import InputError
from cathodeflow.synth import CONDITIONS, SynthOptions, generate_image
from cathodeflow.synth.render import RenderParams, grain_index, grain_seeds
from cathodeflow.synth.study import generate_section
from cathodeflow.synth.style import (
    FAMILIES,
    Style,
    acquire,
    render_style,
    sample_style,
    style_scene,
)
from cathodeflow.synth.training import (
    FAMILIES_HELD_OUT,
    FAMILIES_TRAIN,
    add_porous_cores,
    families_figure,
    make_training_pair,
)

SMALL_LR = (130, 169)  # hr 350 × 455
SEEDS = range(6)


# --------------------------------------------------------------------------- hand-drawn scene
# Two discs (particles 1 and 2) with a 13-px crack band each, binder around them: masks far
# from every edge make the grey levels measurable without blur or rims.
H, W = 420, 560
_yy, _xx = np.mgrid[:H, :W]
LABELS = np.zeros((H, W), np.int32)
LABELS[(_yy - 150) ** 2 + (_xx - 160) ** 2 <= 125**2] = 1
LABELS[(_yy - 280) ** 2 + (_xx - 420) ** 2 <= 120**2] = 2
PHASE = (LABELS > 0).astype(np.uint8)
PHASE[(LABELS == 1) & (np.abs(_yy - 150) <= 6) & (np.abs(_xx - 160) <= 90)] = 2
PHASE[(LABELS == 2) & (np.abs(_xx - 420) <= 6) & (np.abs(_yy - 280) <= 80)] = 2
SPACING = 25.0
SEEDS_XY = grain_seeds(np.random.default_rng(0), (H, W), SPACING)
GRAINS = grain_index(LABELS > 0, SEEDS_XY)
_DS = ndi.distance_transform_edt(PHASE == 1)
_DB = ndi.distance_transform_edt(PHASE == 0)
SOLID_IN = _DS >= 8  # solid ≥ 8 px from any edge
BINDER_FAR = _DB >= 50  # binder ≥ 50 px from any particle
CRACK_MID = ndi.distance_transform_edt(PHASE == 2) >= 5  # centre rows of the bands
# binder 4–30 px behind a particle along the scan (→) and 4–30 px before one
_col = np.arange(W)[None, :]
_last = np.maximum.accumulate(np.where(PHASE == 1, _col, -(10**6)), axis=1)
_next = np.minimum.accumulate(np.where(PHASE == 1, _col, 10**6)[:, ::-1], axis=1)[:, ::-1]
BEHIND = (PHASE == 0) & (_col - _last >= 4) & (_col - _last < 30) & (_next - _col >= 30)
BEFORE = (PHASE == 0) & (_next - _col >= 4) & (_next - _col < 30) & (_col - _last >= 30)


@pytest.fixture(scope="module")
def drawn():
    """hr image of the hand-drawn scene per (family, seed); one seed gives every family the
    same uniform variates, so paired families differ only in their own knobs."""
    out = {}
    for f in FAMILIES:
        for s in SEEDS:
            rng = np.random.default_rng([s, 99])
            st = sample_style(rng, f)
            out[f, s] = render_style(
                rng, phase=PHASE, labels=LABELS, grains=GRAINS, seeds=SEEDS_XY,
                grain_spacing_px=SPACING, pixel_um=ETA_UM, style=st, out_shape=(H, W),
            ).astype(np.float64) / 255.0
    return out


def _solid_binder(img):
    return img[SOLID_IN].mean(), img[BINDER_FAR].mean()


@pytest.fixture(scope="module")
def pairs():
    return {(f, s): make_training_pair(s, family=f, shape_lr=SMALL_LR) for f in FAMILIES
            for s in range(2)}


# --------------------------------------------------------------------------- rendering
def test_default_style_renders_exactly_the_images_of_generate_image():
    kw = dict(r10_um=0.61, r50_um=0.8, r90_um=1.04)
    im = generate_image("30C", seed=3, shape_lr=(130, 130), **kw)
    rng = np.random.default_rng(3)
    sec = generate_section(
        CONDITIONS["30C"], rng=rng, shape_hr=im.hr.shape, pixel_size_hr_um=ETA_UM,
        options=SynthOptions(), **kw,
    )
    np.testing.assert_array_equal(sec.phase, im.phase)
    scene = style_scene(
        rng, phase=sec.phase, labels=sec.labels, grains=sec.grains, seeds=sec.seeds,
        grain_spacing_px=sec.grain_spacing_px, pixel_um=ETA_UM, style=Style(),
    )
    hr = acquire(rng, scene, style=Style(), out_shape=im.hr.shape, scene_pixel_um=ETA_UM)
    lr = acquire(rng, scene, style=Style(), out_shape=im.lr.shape, scene_pixel_um=ETA_UM)
    np.testing.assert_array_equal(hr, im.hr)
    np.testing.assert_array_equal(lr, im.lr)


def test_every_family_gives_a_deterministic_pair_with_35_13_shapes_on_one_geometry(pairs):
    ref = pairs["classic", 0]
    for f in FAMILIES:
        p, again = pairs[f, 0], make_training_pair(0, family=f, shape_lr=SMALL_LR)
        assert p.family == f and p.params["family"] == f
        assert p.lr.shape == SMALL_LR and p.hr.shape == (350, 455) and p.phase.shape == (350, 455)
        assert p.lr.dtype == p.hr.dtype == p.phase.dtype == np.uint8
        assert p.pixel_size_hr_um == ETA_UM
        assert p.pixel_size_lr_um == pytest.approx(ETA_UM * 35 / 13)
        for a, b in ((p.hr, again.hr), (p.lr, again.lr), (p.phase, again.phase)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(p.phase, ref.phase)  # geometry depends on the seed only
        assert set(np.unique(p.phase)) == {0, 1, 2}
        if f != "classic":
            assert np.mean(p.hr != ref.hr) > 0.5
    assert not np.array_equal(pairs["classic", 1].phase, ref.phase)


def test_style_draws_stay_in_the_documented_family_ranges():
    rng = np.random.default_rng(0)
    for f in FAMILIES:
        for _ in range(40):
            s = sample_style(rng, f)
            r = s.render
            assert r.psf_lr_um > r.psf_hr_um and r.noise_lr > r.noise_hr
            assert 0.0 <= s.crack_fill <= 0.8 + 1e-12
            assert (s.charge_glow_gain > 0) == (s.charge_tail_gain > 0) == (f == "charging")
            assert (s.curtain_sd > 0) == (f == "curtain")
            if f == "filled-cracks":
                assert 0.55 <= s.crack_fill <= 0.80
            else:
                assert s.crack_fill <= 0.50
            if f == "lowcontrast":
                assert 0.30 <= r.solid_level <= 0.44 and 0.75 <= s.binder_ratio <= 0.92
                assert 0.08 <= r.noise_hr <= 0.14 and 0.02 <= s.read_noise_hr <= 0.05
            if f == "bright-binder":
                assert 0.62 <= s.binder_ratio <= 0.85
            if f == "channelling":
                assert 0.09 <= r.grain_sd <= 0.17
            if f == "soft":
                assert 0.028 <= r.psf_hr_um <= 0.055
            if f == "classic":
                assert 0.25 <= s.binder_ratio <= 0.42 and 0.008 <= r.psf_hr_um <= 0.016
    assert Style().crack_fill == pytest.approx(0.49, abs=0.01)  # RenderParams() cracks


def test_lowcontrast_solid_binder_contrast_is_under_half_of_classic(drawn, pairs):
    for s in SEEDS:
        lo, cl = (np.subtract(*_solid_binder(drawn[f, s])) for f in ("lowcontrast", "classic"))
        assert 0 < lo < 0.25 and lo < 0.5 * cl
    # the same on generated pairs (phase truth as mask, ≥ 6 px from edges)
    for s in range(2):
        c = {}
        for f in ("lowcontrast", "classic"):
            p = pairs[f, s]
            ds = ndi.distance_transform_edt(p.phase == 1)
            db = ndi.distance_transform_edt(p.phase == 0)
            c[f] = (p.hr[ds >= 6].mean() - p.hr[db >= 6].mean()) / 255
        assert 0 < c["lowcontrast"] < 0.5 * c["classic"]


def test_bright_binder_is_at_least_half_as_bright_as_the_solid_classic_under_a_third(drawn):
    for s in SEEDS:
        sb, bb = _solid_binder(drawn["bright-binder", s])
        sc, bc = _solid_binder(drawn["classic", s])
        assert bb / sb > 0.45 and bc / sc < 0.33


def test_filled_cracks_are_dark_grey_half_way_or_more_to_the_binder(drawn):
    for s in SEEDS:
        fill = {f: drawn[f, s][CRACK_MID].mean() / _solid_binder(drawn[f, s])[1]
                for f in ("filled-cracks", "classic")}
        assert 0.5 < fill["filled-cracks"] < 0.9  # documented 0.55–0.80
        assert 0.05 < fill["classic"] < 0.55  # documented 0.10–0.50
        assert fill["filled-cracks"] > fill["classic"]


def test_channelling_grain_to_grain_grey_spread_is_twice_classic(drawn):
    g = GRAINS[SOLID_IN]
    n = np.bincount(g)
    for s in SEEDS:
        sd = {}
        for f in ("channelling", "classic"):
            means = np.bincount(g, drawn[f, s][SOLID_IN]) / np.maximum(n, 1)
            sd[f] = means[n >= 30].std()
        assert sd["channelling"] > 2.0 * sd["classic"] and sd["channelling"] > 0.07


def _column_streaks(img):
    """σ of the high-passed column means of the solid interior, grain means removed."""
    g = GRAINS[SOLID_IN]
    v = img[SOLID_IN]
    r = v - (np.bincount(g, v) / np.maximum(np.bincount(g), 1))[g]
    col = np.nonzero(SOLID_IN)[1]
    n = np.bincount(col, minlength=W)
    m = (np.bincount(col, r, minlength=W) / np.maximum(n, 1))[n >= 60]
    return np.std(m - ndi.uniform_filter1d(m, 31))


def test_curtain_has_column_streaks_over_twice_classic(drawn):
    for s in SEEDS:
        assert _column_streaks(drawn["curtain", s]) > 2.0 * _column_streaks(drawn["classic", s])


def test_charging_brightens_the_binder_behind_particles_along_the_scan(drawn):
    for s in SEEDS:
        asym = {}
        for f in ("charging", "classic"):
            img = drawn[f, s]
            sb = np.subtract(*_solid_binder(img))
            asym[f] = (img[BEHIND].mean() - img[BEFORE].mean()) / sb
        assert asym["charging"] > asym["classic"] + 0.02


def test_soft_edges_are_less_than_half_as_steep_as_classic(drawn):
    edge = (_DS == 1) | (_DB == 1)
    for s in SEEDS:
        steep = {}
        for f in ("soft", "classic"):
            img = drawn[f, s]
            steep[f] = np.hypot(*np.gradient(img))[edge].mean() / np.subtract(*_solid_binder(img))
        assert steep["soft"] < 0.5 * steep["classic"]


# --------------------------------------------------------------------------- geometry
def _edt_by_crack(phase):
    crack = phase == 2
    e = ndi.distance_transform_edt(crack)
    lab, n = ndi.label(crack, structure=np.ones((3, 3), bool))
    return e[crack], ndi.maximum(e, lab, np.arange(1, n + 1))


def test_hairline_cracks_are_one_pixel_wide_default_ones_are_wider():
    for s in range(2):
        e, emax = _edt_by_crack(make_training_pair(s, family="classic", geometry="hairline",
                                                   shape_lr=(156, 208)).phase)
        assert len(emax) >= 2 and np.mean(emax == 1) >= 0.8  # whole cracks of width 1 px
        assert np.mean(e == 1) > 0.99  # (only a few pixels where arms of a star meet)
        e, emax = _edt_by_crack(make_training_pair(s, family="classic", geometry="classic",
                                                   shape_lr=(156, 208)).phase)
        assert np.mean(e >= 2) > 0.15 and np.all(emax > 1)


@pytest.fixture(scope="module")
def section():
    rng = np.random.default_rng(5)
    sec = generate_section(
        CONDITIONS["30C"], rng=rng, shape_hr=(420, 560), pixel_size_hr_um=ETA_UM,
        r10_um=0.71, r50_um=0.93, r90_um=1.21, options=SynthOptions(),
    )
    assert np.count_nonzero((sec.labels > 0) & (sec.reldist < 0.15)) > 300  # cut near cores
    return sec


def test_hollow_cores_are_crack_inside_their_particle_within_the_core_radius(section):
    sec = section
    out, n = add_porous_cores(
        np.random.default_rng(1), sec.phase, sec.labels, sec.reldist, pixel_um=ETA_UM,
        particle_probability=1.0, core_range=(0.3, 0.3), hollow_probability=1.0,
    )
    new = (out == 2) & (sec.phase != 2)
    assert n >= 2 and new.sum() > 1000
    assert np.all(sec.labels[new] > 0) and sec.reldist[new].max() < 0.3 * 1.5
    assert np.all(out[(sec.labels > 0) & (sec.reldist < 0.3 * 0.6)] == 2)
    assert np.array_equal(out[out != 2], sec.phase[out != 2])  # nothing else changed


def test_porous_cores_hold_about_the_requested_pore_share(section):
    sec = section
    core = (sec.labels > 0) & (sec.reldist < 0.2) & (sec.phase == 1)
    for q in (0.2, 0.5):
        share = np.mean([
            (add_porous_cores(
                np.random.default_rng(s), sec.phase, sec.labels, sec.reldist, pixel_um=ETA_UM,
                particle_probability=1.0, core_range=(0.3, 0.3), hollow_probability=0.0,
                pore_fraction_range=(q, q), pore_um_range=(0.03, 0.03),
            )[0][core] == 2).mean()
            for s in range(4)
        ])
        assert abs(share - q) < 0.07


def test_porous_geometry_shows_cores_in_most_crops_and_porosity_counts_them():
    ps = [make_training_pair(s, family="classic", geometry="porous", shape_lr=(156, 208))
          for s in range(4)]
    assert sum(p.params["n_porous_cores"] >= 1 for p in ps) >= 3
    for p in ps:
        assert p.params["porous_core_probability"] >= 0.5 and p.params["r_scale"] <= 0.6
        assert p.params["crack_px"] == np.count_nonzero(p.phase == 2)
        assert p.params["porosity_true"] == p.params["crack_px"] / np.count_nonzero(p.phase)


def test_random_geometry_varies_particle_size_shape_and_crack_options():
    ps = [make_training_pair(s, family="classic", shape_lr=(26, 26)).params for s in range(12)]
    assert {p["r_scale"] == 1.0 for p in ps} == {True, False}
    assert min(p["r_scale"] for p in ps) >= 0.2
    assert len({p["options"]["max_overlap"] for p in ps}) == 12
    assert len({p["options"]["perturbation"] for p in ps}) == 12


# --------------------------------------------------------------------------- API
def test_two_families_are_held_out_and_lowcontrast_snr_is_below_every_training_family():
    assert len(FAMILIES_HELD_OUT) == 2 and len(FAMILIES) == 8
    assert set(FAMILIES_TRAIN) | set(FAMILIES_HELD_OUT) == set(FAMILIES)
    assert not set(FAMILIES_TRAIN) & set(FAMILIES_HELD_OUT)
    rng = np.random.default_rng(1)

    def snr(f):  # (solid − mean binder) / per-pixel noise σ at the solid level
        s = sample_style(rng, f)
        r = s.render
        sd = np.hypot(r.noise_hr * np.sqrt(r.solid_level / 0.5), s.read_noise_hr)
        return (r.solid_level - s.binder_mean_level) / sd

    low = max(snr("lowcontrast") for _ in range(300))
    assert low < min(snr(f) for f in FAMILIES_TRAIN for _ in range(300))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(family="sepia"), "family"),
        (dict(family="classic", geometry="cubes"), "geometry"),
        (dict(family="classic", shape_lr=(100, 130)), "shape_lr"),
        (dict(family="classic", seed=-1), "seed"),
        (dict(family="classic", seed=1.5), "seed"),
    ],
)
def test_bad_arguments_raise_input_error_naming_them(kwargs, word):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(InputError, match=word):
        make_training_pair(kwargs.pop("seed"), **kwargs)
    if word == "family":
        with pytest.raises(InputError, match=word):
            sample_style(np.random.default_rng(0), "sepia")


def test_a_default_training_pair_takes_under_three_seconds():
    make_training_pair(0, family="classic")  # warm caches
    t = time.perf_counter()
    p = make_training_pair(1, family="curtain")
    assert p.lr.shape == (234, 312) and p.hr.shape == (630, 840)
    assert time.perf_counter() - t < 3.0


def test_families_figure_is_a_small_png(tmp_path):
    path = families_figure(tmp_path / "f.png", shape_lr=(78, 104))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size < 400_000


def test_style_is_a_frozen_record_of_render_params():
    s = Style()
    assert s.render == RenderParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.curtain_sd = 1.0
