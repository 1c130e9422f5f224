"""Stereology (paper §2.5, eq. 23–40): log-normal fit, densities, d_center table, local porosity.

Ground truths: closed forms (log-normal percentiles, the CDF of a section radius of a sphere
cut at a uniform height, d_center(r̃, r̃) = 1), independent adaptive quadrature with the
algebraic weight (r − r̃)^(−1/2) (scipy's QAWS), and Monte Carlo sampling of spheres and planes.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.special import ndtri

from cathodeflow.errors import InputError
from cathodeflow.io.tables import SCHEMAS
from cathodeflow.stereology import (
    DCenterTable,
    LogNormal,
    d_center,
    fit_lognormal_percentiles,
    joint_density,
    local_porosity_counts,
    local_porosity_table,
    particle_local_counts,
    radius_distributions,
    section_given_sphere_density,
    section_radius_density,
    sphere_given_section_density,
)

PAPER_PERCENTILES = (3.55, 4.65, 6.05)
F_V, F_R = radius_distributions(*PAPER_PERCENTILES)
MODELS = ("paper", "wicksell")


@pytest.fixture(scope="module")
def tables():
    return {m: DCenterTable(m, mu=F_V.mu, sigma=F_V.sigma) for m in MODELS}


# --- eq. 31–33: log-normal fit ------------------------------------------------------------


def test_fit_to_paper_percentiles_gives_paper_mu_and_sigma():
    f_v = fit_lognormal_percentiles(PAPER_PERCENTILES)
    assert round(f_v.mu, 2) == 1.53
    assert round(f_v.sigma, 3) == 0.208


def test_fit_is_the_least_squares_minimum_in_radius_units():
    f_v = fit_lognormal_percentiles(PAPER_PERCENTILES)
    z = ndtri(np.array([0.1, 0.5, 0.9]))
    r = np.array(PAPER_PERCENTILES)

    def cost(mu, sigma):
        return float(np.sum((np.exp(mu + sigma * z) - r) ** 2))

    best = cost(f_v.mu, f_v.sigma)
    for dmu, ds in [(1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3), (1e-3, 1e-3), (-1e-3, 1e-3)]:
        assert cost(f_v.mu + dmu, f_v.sigma + ds) > best


@settings(max_examples=40, deadline=None)
@given(mu=st.floats(-1.0, 3.0), sigma=st.floats(0.05, 1.0))
def test_fit_recovers_parameters_from_exact_percentiles(mu, sigma):
    r = np.exp(mu + sigma * ndtri(np.array([0.1, 0.5, 0.9])))
    f = fit_lognormal_percentiles(r)
    assert f.mu == pytest.approx(mu, abs=1e-7)
    assert f.sigma == pytest.approx(sigma, abs=1e-7)


def test_number_weighted_density_is_volume_density_over_r_cubed():
    c = quad(lambda r: F_V.pdf(r) / r**3, 0, np.inf, epsabs=0, epsrel=1e-12)[0]
    for r in (1.0, 2.5, 4.0, 6.0, 9.0):
        assert F_R.pdf(r) == pytest.approx(F_V.pdf(r) / r**3 / c, rel=1e-9)
    assert F_R.mu == pytest.approx(F_V.mu - 3 * F_V.sigma**2)


@pytest.mark.parametrize(
    "radii, percentiles",
    [((3.0, 2.0, 4.0), (10, 50, 90)), ((1.0, 2.0), (10, 50, 90)), ((1, 2, 3), (0, 50, 90))],
)
def test_fit_rejects_bad_input(radii, percentiles):
    with pytest.raises(InputError):
        fit_lognormal_percentiles(radii, percentiles=percentiles)


# --- eq. 24–27: densities --------------------------------------------------------------------


@pytest.mark.parametrize("x", [0.3, 1.5, 2.9, 3.0])
def test_section_density_matches_cdf_of_uniform_cut_height(x):
    # Height h ~ U(0, r): P(R̃ ≤ x) = P(h ≥ √(r² − x²)) = 1 − √(1 − x²/r²)
    r = 3.0
    if x < r:
        got = quad(lambda t: section_given_sphere_density(t, r), 0, x, epsabs=0, epsrel=1e-12)[0]
    else:  # the (r − t)^(−1/2) singularity as QAWS weight; the rest is t / (r √(r + t))
        got = quad(lambda t: t / (r * math.sqrt(r + t)), 0, r, weight="alg", wvar=(0, -0.5))[0]
    assert got == pytest.approx(1 - math.sqrt(1 - x * x / r / r), abs=1e-10)


@pytest.mark.parametrize("model", MODELS)
def test_marginal_section_density_integrates_to_one(model):
    total = quad(lambda t: section_radius_density(t, F_R, model=model), 0, 40, limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("r_tilde", [0.5, 3.0, 5.0, 9.0])
def test_marginal_is_integral_of_joint_density(model, r_tilde):
    # eq. 27 by QAWS on the joint density (singularity (r − r̃)^(−1/2) as the weight)
    def smooth(r):  # QAWS also samples r = r̃, where the limit is taken one ulp inside
        r = max(r, math.nextafter(r_tilde, math.inf))
        return joint_density(r, r_tilde, F_R, model=model) * math.sqrt(r - r_tilde)

    ref = quad(smooth, r_tilde, 60, weight="alg", wvar=(-0.5, 0), epsabs=0, epsrel=1e-12, limit=200)[0]
    assert section_radius_density(r_tilde, F_R, model=model) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("model", MODELS)
def test_conditional_radius_density_integrates_to_one(model):
    r_tilde = 4.0

    def smooth(r):  # QAWS also samples r = r̃, where the limit is taken one ulp inside
        r = max(r, math.nextafter(r_tilde, math.inf))
        return sphere_given_section_density(r, r_tilde, F_R, model=model) * math.sqrt(r - r_tilde)

    total = quad(smooth, r_tilde, 60, weight="alg", wvar=(-0.5, 0), epsabs=0, epsrel=1e-12, limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-9)


def test_wicksell_joint_is_size_biased_paper_joint():
    r, rt = np.array([3.0, 4.5, 7.0]), 2.0
    ratio = joint_density(r, rt, F_R, model="wicksell") / joint_density(r, rt, F_R, model="paper")
    np.testing.assert_allclose(ratio, r / F_R.moment(1), rtol=1e-12)


# --- eq. 30 / 36: d_center ----------------------------------------------------------------


def _d_center_qaws(r_tilde, d_b, model):
    """Independent reference: eq. 30 / eq. 26 in r with QAWS for the (r − r̃)^(−1/2) factor."""
    w = (lambda r: 1.0 / r) if model == "paper" else (lambda r: 1.0)
    hi = max(60.0, 2 * r_tilde)

    def base(r):
        return w(r) * float(F_R.pdf(r)) / math.sqrt(r + r_tilde)

    def num(r):
        return base(r) * math.sqrt(max((r - r_tilde) * (r + r_tilde), 0.0) + d_b * d_b) / r

    kw = dict(weight="alg", wvar=(-0.5, 0), epsabs=0, epsrel=1e-13, limit=500)
    return quad(num, r_tilde, hi, **kw)[0] / quad(base, r_tilde, hi, **kw)[0]


@pytest.mark.parametrize("model", MODELS)
def test_d_center_matches_adaptive_quadrature_with_algebraic_weight(model):
    worst = 0.0
    for rt in (0.01, 0.3, 1.0, 3.0, 4.5, 6.0, 8.0, 12.0):
        for db in (0.0, 1e-3, 0.01, 0.1 * rt, 0.5 * rt, rt, 2.0 * rt):
            got = float(d_center(rt, db, F_R, model=model))
            worst = max(worst, abs(got - _d_center_qaws(rt, db, model)))
    assert worst < 1e-10


@pytest.mark.parametrize("model", MODELS)
def test_d_center_is_one_on_the_section_rim(model):
    # d_b = r̃: √(r² − r̃² + r̃²) / r = 1 for every r, whatever f(r | r̃)
    for rt in (0.2, 2.0, 4.0, 7.0, 20.0):
        assert float(d_center(rt, rt, F_R, model=model)) == pytest.approx(1.0, abs=1e-13)


@settings(max_examples=60, deadline=None)
@given(rt=st.floats(0.05, 20.0), q=st.floats(0.0, 3.0))
def test_d_center_lies_between_q_and_one(rt, q):
    # √(1 − s² + q² s²) with s = r̃/R ∈ (0, 1) lies between q and 1
    d = float(d_center(rt, q * rt, F_R, model="paper"))
    assert min(q, 1.0) - 1e-12 <= d <= max(q, 1.0) + 1e-12


def test_d_center_increases_with_distance_to_barycentre(tables):
    for model, table in tables.items():
        for rt in (0.5, 3.0, 6.0, 15.0):
            d = table(rt, np.linspace(0, 3 * rt, 400))
            assert np.all(np.diff(d) > 0), (model, rt)


def test_paper_model_puts_pixels_closer_to_the_centre_than_wicksell(tables):
    # the paper model gives more weight to small spheres: R | r̃ is smaller, s = r̃/R larger,
    # so for q < 1 the estimated relative distance is smaller
    for rt in (1.0, 4.0, 7.0):
        db = np.linspace(0, 0.9 * rt, 50)
        assert np.all(tables["paper"](rt, db) < tables["wicksell"](rt, db))


def _sections(kind, n, rng):
    """Planar sections with a point uniform in each: (r̃, d_b, true relative distance D)."""
    if kind == "one cut per sphere":  # eq. 25 literally: each sphere cut once, h ~ U(0, R)
        R = F_R.sample(n, rng)
        h = R * rng.random(n)
    else:  # "plane through a box": centres uniform in a slab, the plane z = 0
        R = F_R.sample(8 * n, rng)
        z = rng.uniform(-25.0, 25.0, R.size)
        hit = np.abs(z) < R
        R, h = R[hit][:n], np.abs(z[hit][:n])
    rt = np.sqrt(R * R - h * h)
    db = rt * np.sqrt(rng.random(rt.size))
    return rt, db, np.sqrt(h * h + db * db) / R


@pytest.mark.parametrize(
    "kind, right, wrong, sign",
    [("one cut per sphere", "paper", "wicksell", -1), ("plane through a box", "wicksell", "paper", 1)],
)
def test_d_center_is_the_conditional_mean_under_its_own_sampling(tables, kind, right, wrong, sign):
    # eq. 30: d_center = E[D | r̃, d_b]; so E[D − d_center] = 0 when the sections are sampled
    # the way the model assumes, and is biased for the other model.
    rng = np.random.default_rng(7)
    rt, db, D = _sections(kind, 15000, rng)
    res = {}
    for m in (right, wrong):
        dc = np.array([tables[m](a, np.array([b]))[0] for a, b in zip(rt, db)])
        r = D - dc
        res[m] = (r.mean(), r.std() / math.sqrt(r.size))
    mean, se = res[right]
    assert abs(mean) < 4 * se
    mean_w, se_w = res[wrong]
    assert sign * mean_w > 8 * se_w  # measured: |bias| ≈ 0.008 ≈ 13 se


# --- the lookup table -------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_table_interpolation_error_below_1e_5(tables, model):
    table = tables[model]
    rng = np.random.default_rng(1)
    worst = 0.0
    for rt in np.concatenate([rng.uniform(0.001, table.r_tilde_max_um, 120), [0.02, 4.0, 13.9]]):
        db = np.concatenate([rng.uniform(0, 1.5 * rt, 100), rng.uniform(0, 0.02 * rt, 50)])
        worst = max(worst, float(np.max(np.abs(table(rt, db) - table.direct(rt, db)))))
    assert worst < 1e-5


def test_table_outside_its_grid_is_computed_directly(tables):
    table = tables["paper"]
    for rt in (table.r_tilde_max_um + 0.37, 25.0):  # r̃ beyond the grid
        db = np.linspace(0, 1.2 * rt, 30)
        np.testing.assert_allclose(table(rt, db), table.direct(rt, db), atol=1e-5)
    db = np.array([0.0, 5.0 * 2.0, 9.0 * 2.0])  # q beyond q_max
    np.testing.assert_allclose(table(2.0, db), table.direct(2.0, db), atol=1e-12)


def test_table_limit_of_small_section_radius(tables):
    table = tables["paper"]
    assert table(0.0, np.zeros(3)).tolist() == [1.0, 1.0, 1.0]  # r̃ = d_b = 0: at the pole
    # r̃ → 0 with q fixed: d_center → 1
    assert np.all(np.abs(table(1e-4, 1e-4 * np.array([0.0, 0.5, 1.0])) - 1) < 1e-6)
    # r̃ = 0, d_b > 0: E[√(R² + d_b²) / R], continuous in r̃
    np.testing.assert_allclose(table(0.0, np.array([1.0])), table(1e-7, np.array([1.0])), atol=1e-8)


def test_table_keeps_shape_and_rejects_bad_arguments(tables):
    table = tables["wicksell"]
    assert table(3.0, np.zeros((4, 5))).shape == (4, 5)
    assert table(3.0, np.zeros(0)).shape == (0,)
    with pytest.raises(InputError, match="r_tilde_um"):
        table(-1.0, np.zeros(2))
    with pytest.raises(InputError, match="r_tilde_um"):
        table(np.array([1.0, 2.0]), np.zeros(2))
    with pytest.raises(InputError, match="d_b_um"):
        table(1.0, np.array([-0.5]))
    with pytest.raises(InputError, match="model"):
        DCenterTable("saltykov", mu=1.5, sigma=0.2)


def test_table_pickles_to_the_same_lookup():
    table = DCenterTable.from_percentiles(*PAPER_PERCENTILES, model="paper")
    clone = pickle.loads(pickle.dumps(table))
    db = np.linspace(0, 8, 50)
    np.testing.assert_array_equal(clone(4.2, db), table(4.2, db))


def test_table_from_params_uses_the_configured_percentiles():
    from cathodeflow.config import Params

    t = DCenterTable.from_params(Params(), model="wicksell")
    assert t.model == "wicksell"
    assert t.f_v.mu == pytest.approx(F_V.mu)


# --- eq. 37–40: counts and the table --------------------------------------------------------


def test_counts_use_left_closed_bins_and_an_overflow_bin():
    bins = [0.0, 0.5, 1.0]
    d = np.array([0.0, 0.49, 0.5, 0.99, 1.0, 3.0, 0.2])
    crack = np.array([1, 0, 1, 1, 0, 1, 0], bool)
    c, s = local_porosity_counts(d, crack, bins)
    assert c.tolist() == [1, 2, 1]  # 0.0 | 0.5, 0.99 | 3.0
    assert s.tolist() == [2, 0, 1]  # 0.49, 0.2 | - | 1.0
    assert c.dtype == np.int64 and s.dtype == np.int64


def test_counts_drop_values_below_the_first_edge():
    c, s = local_porosity_counts([0.05, 0.2], [True, True], [0.1, 0.5])
    assert c.tolist() == [1, 0] and s.tolist() == [0, 0]


@settings(max_examples=50, deadline=None)
@given(
    d=st.lists(st.floats(0, 2.5, allow_nan=False), max_size=200),
    seed=st.integers(0, 2**31 - 1),
    split=st.integers(0, 200),
)
def test_counts_are_additive_and_match_a_loop(d, seed, split):
    d = np.array(d, dtype=float)
    crack = np.random.default_rng(seed).random(d.size) < 0.3
    bins = [0.0, 0.1, 0.35, 0.6, 1.0]
    c, s = local_porosity_counts(d, crack, bins)
    # brute force, one pixel at a time
    ref_c, ref_s = np.zeros(5, int), np.zeros(5, int)
    for x, k in zip(d, crack):
        i = next((j for j in range(4) if bins[j] <= x < bins[j + 1]), 4)
        (ref_c if k else ref_s)[i] += 1
    assert c.tolist() == ref_c.tolist() and s.tolist() == ref_s.tolist()
    c1, s1 = local_porosity_counts(d[:split], crack[:split], bins)
    c2, s2 = local_porosity_counts(d[split:], crack[split:], bins)
    assert (c1 + c2).tolist() == c.tolist() and (s1 + s2).tolist() == s.tolist()


@pytest.mark.parametrize(
    "bins", [[0.5], [0.0, 0.5, 0.5], [-0.1, 0.5], [0.0, np.inf]]
)
def test_counts_reject_bad_bins(bins):
    with pytest.raises(InputError, match="bins"):
        local_porosity_counts([0.1], [True], bins)


def test_counts_reject_mismatched_shapes():
    with pytest.raises(InputError, match="is_crack"):
        local_porosity_counts([0.1, 0.2], [True], [0, 1])


def _q_table(r_tilde_um, d_b_um):
    """A stand-in table: d_center = d_b / r̃ (the limit r̃ ≫ every sphere)."""
    return np.asarray(d_b_um) / r_tilde_um


def test_particle_counts_from_hand_geometry():
    # 3 × 4 particle (12 px), barycentre at (1, 1.5); η = 0.5 µm → r̃ = 0.5·√(12/π)
    eta = 0.5
    phase = np.array([[1, 1, 2, 1], [2, 1, 1, 1], [1, 1, 1, 2]])
    mask = np.ones((3, 4), bool)
    rt = eta * math.sqrt(12 / math.pi)
    bins = [0.0, 0.5, 1.0]
    c, s = particle_local_counts(phase, mask, (10, 20), eta, _q_table, bins)
    ref_c, ref_s = [0, 0, 0], [0, 0, 0]
    for i in range(3):
        for j in range(4):
            q = eta * math.hypot(i - 1, j - 1.5) / rt
            b = 0 if q < 0.5 else 1 if q < 1.0 else 2
            (ref_c if phase[i, j] == 2 else ref_s)[b] += 1
    assert c.tolist() == ref_c and s.tolist() == ref_s
    assert sum(c) == 3 and sum(s) == 9


def test_particle_counts_pass_eq_34_radius_and_eq_35_distances():
    seen = {}

    def spy(r_tilde_um, d_b_um):
        seen["rt"], seen["db"] = r_tilde_um, np.sort(np.asarray(d_b_um))
        return np.zeros(np.shape(d_b_um))

    phase = np.zeros((5, 5), int)
    mask = np.zeros((5, 5), bool)
    mask[1, 1:4] = True  # three pixels in a row, the middle one is a pore (S = 0)
    phase[1, 1], phase[1, 3] = 1, 2
    particle_local_counts(phase, mask, (0, 0), 0.1, spy, [0, 1])
    assert seen["rt"] == pytest.approx(0.1 * math.sqrt(3 / math.pi))  # #P counts the pore
    np.testing.assert_allclose(seen["db"], [0.1, 0.1])  # only S ∈ {1, 2} are binned


def test_particle_counts_of_chunks_add_up_to_the_whole(tables):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:60, :80]
    mask = ((yy - 29.3) / 25) ** 2 + ((xx - 41.0) / 33) ** 2 < 1
    phase = np.where(mask, 1 + (rng.random(mask.shape) < 0.2), 0)
    bins = np.round(np.arange(11) * 0.1, 10)
    eta = 0.0143 * 10
    whole = particle_local_counts(phase, mask, (100, 200), eta, tables["paper"], bins)
    rr, cc = np.nonzero(mask)
    area, cen = rr.size, (rr.mean() + 100, cc.mean() + 200)
    parts = [(slice(0, 27), slice(0, 50)), (slice(0, 27), slice(50, 80)), (slice(27, 60), slice(0, 80))]
    tot_c, tot_s = np.zeros(11, np.int64), np.zeros(11, np.int64)
    for sr, sc in parts:
        c, s = particle_local_counts(
            phase[sr, sc], mask[sr, sc], (100 + sr.start, 200 + sc.start), eta,
            tables["paper"], bins, area_px=area, centroid_rc=cen,
        )
        tot_c += c
        tot_s += s
    assert tot_c.tolist() == whole[0].tolist() and tot_s.tolist() == whole[1].tolist()
    assert whole[0].sum() + whole[1].sum() == area


def test_particle_counts_of_an_empty_mask_are_zero(tables):
    c, s = particle_local_counts(np.ones((3, 3)), np.zeros((3, 3), bool), (0, 0), 0.1,
                                 tables["paper"], [0, 0.5, 1])
    assert c.tolist() == [0, 0, 0] and s.tolist() == [0, 0, 0]


def test_particle_counts_reject_bad_arguments(tables):
    with pytest.raises(InputError, match="particle_mask_crop"):
        particle_local_counts(np.ones((3, 3)), np.ones((3, 4), bool), (0, 0), 0.1,
                              tables["paper"], [0, 1])
    with pytest.raises(InputError, match="pixel_size_um"):
        particle_local_counts(np.ones((3, 3)), np.ones((3, 3), bool), (0, 0), 0.0,
                              tables["paper"], [0, 1])
    with pytest.raises(InputError, match="centroid_rc"):
        particle_local_counts(np.ones((3, 3)), np.ones((3, 3), bool), (0, 0), 0.1,
                              tables["paper"], [0, 1], area_px=20)


def test_local_porosity_table_rows_units_and_empty_bins():
    bins = [0.0, 0.5, 1.0]
    counts = {"paper": ([2, 0, 1], [6, 0, 3]), "wicksell": ([1, 1, 0], [7, 1, 0])}
    df = local_porosity_table(counts, bins, pixel_size_um=0.5)
    assert list(df.columns) == ["method", "bin_lo", "bin_hi", "crack_um2", "solid_um2", "porosity"]
    assert len(df) == 6
    paper = df[df.method == "paper"]
    assert paper.bin_lo.tolist() == [0.0, 0.5, 1.0]
    assert paper.bin_hi.tolist() == [0.5, 1.0, np.inf]  # overflow bin [1, ∞)
    assert paper.crack_um2.tolist() == [0.5, 0.0, 0.25]  # η² · count
    assert paper.porosity.iloc[0] == pytest.approx(0.25)
    assert np.isnan(paper.porosity.iloc[1])  # empty bin → NaN, and only there
    wick = df[df.method == "wicksell"]
    assert wick.porosity.tolist()[:2] == [0.125, 0.5] and np.isnan(wick.porosity.iloc[2])
    assert df.porosity.isna().sum() == 2


def test_local_porosity_table_with_condition_follows_the_contract():
    df = local_porosity_table({"paper": ([1.0, 0.0], [3.0, 0.0])}, [0.0, 1.0], condition="40C")
    assert list(df.columns) == list(SCHEMAS["local_porosity"])
    assert df.dtypes.astype(str).tolist() == list(SCHEMAS["local_porosity"].values())
    assert df.porosity.iloc[0] == 0.25 and df.condition.iloc[0] == "40C"
    empty = local_porosity_table({}, [0.0, 1.0], condition="40C")
    assert len(empty) == 0 and list(empty.columns) == list(SCHEMAS["local_porosity"])


def test_local_porosity_table_pools_areas_across_pixel_sizes():
    # two images with different η: convert to µm² per image, then add (additive counts)
    bins = [0.0, 1.0]
    a = np.array([10, 0]) * 0.01**2, np.array([90, 0]) * 0.01**2
    b = np.array([5, 0]) * 0.02**2, np.array([5, 0]) * 0.02**2
    df = local_porosity_table({"paper": (a[0] + b[0], a[1] + b[1])}, bins)
    assert df.porosity.iloc[0] == pytest.approx((0.001 + 0.002) / (0.01 + 0.004))
    assert isinstance(df, pd.DataFrame)


def test_local_porosity_images_table_gives_each_image_its_own_units_rows_and_order():
    from cathodeflow.stereology.local_porosity import local_porosity_images_table

    bins = [0.0, 0.5]
    images = [("b", "40C", 0.5, {"paper": ([2, 0], [6, 0]), "wicksell": ([1, 1], [3, 0])}),
              ("a", "20C", 0.1, {"paper": ([0, 4], [0, 12])})]
    df = local_porosity_images_table(images, bins)
    assert list(df.columns) == list(SCHEMAS["local_porosity_images"])
    assert df.dtypes.astype(str).tolist() == list(SCHEMAS["local_porosity_images"].values())
    assert df.image_id.tolist() == ["b"] * 4 + ["a"] * 2  # images, then methods, then bins, in order
    assert df.condition.tolist() == ["40C"] * 4 + ["20C"] * 2
    assert df.method.tolist() == ["paper", "paper", "wicksell", "wicksell", "paper", "paper"]
    assert df.bin_hi.tolist() == [0.5, np.inf] * 3
    assert df.crack_um2.tolist() == pytest.approx([0.5, 0.0, 0.25, 0.25, 0.0, 0.04])  # η² · count per image
    assert df.solid_um2.tolist() == pytest.approx([1.5, 0.0, 0.75, 0.0, 0.0, 0.12])
    por = df.porosity.to_numpy()
    assert por[[0, 2, 3, 5]].tolist() == pytest.approx([0.25, 0.25, 1.0, 0.25])
    assert np.isnan(por[[1, 4]]).all()  # empty bins only
    empty = local_porosity_images_table([], bins)
    assert len(empty) == 0 and list(empty.columns) == list(SCHEMAS["local_porosity_images"])
    with pytest.raises(InputError, match="pixel_size_um"):
        local_porosity_images_table([("a", "20C", 0.0, {"paper": ([1, 0], [1, 0])})], bins)


def test_local_porosity_table_rejects_counts_of_the_wrong_length():
    with pytest.raises(InputError, match="overflow"):
        local_porosity_table({"paper": ([1, 2], [3, 4])}, [0.0, 0.5, 1.0])


def test_lognormal_rejects_non_positive_sigma():
    with pytest.raises(InputError, match="sigma"):
        LogNormal(1.0, 0.0)


def test_docstring_examples_run():
    import doctest

    from cathodeflow.stereology import dcenter

    result = doctest.testmod(dcenter, raise_on_error=False)
    assert result.attempted >= 1 and result.failed == 0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_fused_counts_of_all_models_equal_one_pass_per_model(seed):
    from cathodeflow.stereology import particle_local_counts_models

    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, size=2)
    phase = rng.integers(0, 3, size=(h, w)).astype(np.uint8)
    mask = rng.random((h, w)) < 0.7
    origin = tuple(int(v) for v in rng.integers(0, 500, size=2))
    eta = float(rng.choice([0.0143, 0.05, 0.3]))
    tables = {m: DCenterTable.from_percentiles(*PAPER_PERCENTILES, model=m) for m in ("paper", "wicksell")}
    bins = [0.0, 0.25, 0.5, 0.75, 1.0]
    fused = particle_local_counts_models(phase, mask, origin, eta, tables, bins)
    for m, t in tables.items():
        ref = particle_local_counts(phase, mask, origin, eta, t, bins)
        np.testing.assert_array_equal(fused[m][0], ref[0])
        np.testing.assert_array_equal(fused[m][1], ref[1])
