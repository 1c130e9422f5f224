"""Statistics across conditions: image-level bootstrap intervals, Holm, permutation tests,
trend test, Table 1 with intervals, undefined values, coverage (slow)."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from cathodeflow.errors import InputError
from cathodeflow.report.stats import (
    bootstrap_interval,
    cliffs_delta,
    condition_stats,
    format_table1,
    hedges_g,
    holm,
    mean_sample,
    median_sample,
    ordered_test,
    table1_intervals,
    write_table1,
)

ETA = 0.0143


def _images(rows) -> pd.DataFrame:
    """rows: (image_id, condition, solid_px, crack_px, n_cracks)."""
    out = []
    for img, cond, solid, crack, n in rows:
        part = solid + crack
        out.append(dict(image_id=img, condition=cond, solid_px=solid, crack_px=crack,
                        porosity=crack / part, n_cracks=n, n_cracks_unfiltered=n,
                        crack_intensity_per_um2=n / (part * ETA**2), area_um2=part * ETA**2,
                        pixel_size_um=ETA))
    return pd.DataFrame(out)


def _per_image(cond_values: dict[str, list[float]]) -> pd.DataFrame:
    """An images table whose per-image porosity and intensity are the given values."""
    rows = []
    for cond, vals in cond_values.items():
        for k, v in enumerate(vals):
            rows.append(dict(image_id=f"{cond}-{k}", condition=cond, solid_px=1000, crack_px=10,
                             porosity=v, n_cracks=5, n_cracks_unfiltered=5,
                             crack_intensity_per_um2=2 * v, area_um2=1.0, pixel_size_um=ETA))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- intervals by hand
def test_all_images_equal_gives_a_zero_width_interval_at_the_common_value():
    for method in ("expanded", "percentile", "bca"):
        est, lo, hi, _ = bootstrap_interval(mean_sample([0.04] * 7), n_boot=500, method=method)
        assert est == lo == hi == pytest.approx(0.04, abs=1e-15)


def test_two_images_interval_is_their_min_and_max():
    # resamples of 2 images: mean a (p = 1/4), (a+b)/2 (1/2), b (1/4); the 2.5 % and 97.5 %
    # quantiles of that distribution are exactly a and b
    for method in ("expanded", "percentile"):
        est, lo, hi, _ = bootstrap_interval(mean_sample([0.02, 0.05]), n_boot=4000, method=method)
        assert (est, lo, hi) == (pytest.approx(0.035), pytest.approx(0.02), pytest.approx(0.05))


def test_median_sample_equals_np_median_of_objects_repeated_by_image_multiplicity():
    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, size=40)
    owner = rng.integers(0, 6, size=40)
    sample = median_sample(values, owner, 6)
    w = rng.integers(0, 4, size=(50, 6))
    w[0] = 0  # no image drawn: undefined
    got = sample.statistic(w)
    assert np.isnan(got[0])
    for r in range(1, 50):
        expect = np.median(np.repeat(values, w[r, owner]))
        assert got[r] == pytest.approx(expect, rel=0, abs=0)


def test_interval_resamples_whole_images_not_cracks():
    # image A: 99 cracks of size 1; image B: one crack of size 10. Resampling cracks would
    # give a median of 1 every time; resampling images gives {B, B} (p = 1/4) → median 10.
    values = np.r_[np.ones(99), 10.0]
    owner = np.r_[np.zeros(99, int), 1]
    est, lo, hi, _ = bootstrap_interval(median_sample(values, owner, 2), n_boot=2000,
                                        method="percentile")
    assert (est, lo, hi) == (1.0, 1.0, 10.0)


def test_one_image_interval_is_undefined_not_nan():
    est, lo, hi, note = bootstrap_interval(mean_sample([0.03]), n_boot=100)
    assert est == 0.03 and lo is None and hi is None and note == "n = 1"


def test_zero_images_is_an_input_error():
    with pytest.raises(InputError, match="no images"):
        bootstrap_interval(mean_sample([]), n_boot=100)


def test_bad_options_are_input_errors():
    for kw in (dict(n_boot=3), dict(level=95), dict(method="studentized")):
        with pytest.raises(InputError):
            bootstrap_interval(mean_sample([1.0, 2.0]), **kw)


# ---------------------------------------------------------------- tests and effect sizes
def test_holm_on_known_p_values():
    p = [0.01, 0.04, np.nan, 0.03, 0.005]
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → max(0.04, 0.06) = 0.06
    got = holm(p)
    assert np.isnan(got[2])
    np.testing.assert_allclose(got[[0, 1, 3, 4]], [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_two_group_permutation_p_equals_scipy_exact_mann_whitney():
    rng = np.random.default_rng(5)
    for _ in range(5):
        a, b = rng.normal(size=5), rng.normal(0.8, size=6)
        u, p, delta = ordered_test([a, b], n_perm=9999)
        ref = mannwhitneyu(b, a, alternative="two-sided", method="exact")
        assert u == ref.statistic
        assert p == pytest.approx(ref.pvalue, rel=1e-12)
        assert delta == pytest.approx(cliffs_delta(a, b), rel=1e-12)


def test_jonckheere_on_three_single_values_has_p_one_third():
    # 6 orderings of 3 distinct values; JT ∈ {3, 2, 2, 1, 1, 0}, centre 1.5: |JT−1.5| ≥ 1.5
    # for JT = 3 and JT = 0 → p = 2/6
    jt, p, tau = ordered_test([[1.0], [2.0], [3.0]])
    assert (jt, tau) == (3.0, 1.0)
    assert p == pytest.approx(1 / 3)


def test_cliffs_delta_and_hedges_g_by_hand():
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 5.0]
    # pairs (a, b): 9; b > a: 7, b == a: 1 (2, 2), b < a: 1 (3 > 2) → δ = 6/9
    assert cliffs_delta(a, b) == pytest.approx(6 / 9)
    sp = np.sqrt((2 * 1.0 + 2 * statistics.variance(b)) / 4)
    j = 1 - 3 / (4 * 6 - 9)
    assert hedges_g(a, b) == pytest.approx((11 / 3 - 2) / sp * j, rel=1e-12)
    assert hedges_g([1.0], b) is None


def _trend_study(slope: float, rng, names=("20C", "30C", "40C", "100C"), m=12) -> pd.DataFrame:
    vals = {c: list(0.04 + slope * k + rng.normal(0, 0.005, m)) for k, c in enumerate(names)}
    return _per_image(vals)


def test_trend_test_detects_a_planted_monotone_trend_in_natural_condition_order():
    rng = np.random.default_rng(11)
    st = condition_stats({"images": _trend_study(0.004, rng)}, quantities=["rho"], n_boot=200,
                         n_perm=999)
    tr = st[st["kind"] == "trend"].iloc[0]
    assert tr["condition"] == "20C < 30C < 40C < 100C"  # 100C last, not first
    assert tr["p"] < 0.005 and tr["effect"] > 0.4  # expected τ_JT ≈ 0.61


def test_trend_test_rejects_flat_studies_at_about_the_nominal_rate():
    rng = np.random.default_rng(12)
    p = [condition_stats({"images": _trend_study(0.0, rng, m=6)}, quantities=["rho"],
                         n_boot=20, n_perm=499).query("kind == 'trend'")["p"].iloc[0]
         for _ in range(30)]
    # expected 1.5 of 30 below 0.05; P(≥ 6) < 0.002 under the null
    assert sum(x < 0.05 for x in p) <= 5
    assert np.mean(p) > 0.3


def test_pairwise_rows_have_holm_over_the_pairs_of_a_quantity():
    rng = np.random.default_rng(2)
    st = condition_stats({"images": _trend_study(0.003, rng, m=5)}, quantities=["rho", "lambda"],
                         n_boot=200, n_perm=999)
    pw = st[st["kind"] == "pairwise"]
    assert len(pw) == 2 * 6
    for q in ("rho", "lambda"):
        g = pw[pw["quantity"] == q]
        np.testing.assert_allclose(g["p_holm"].to_numpy(float), holm(g["p"].to_numpy(float)))


# ---------------------------------------------------------------- Table 1 with intervals
HAND = [
    ("a1", "30C", 10000, 400, 12), ("a2", "30C", 12000, 300, 10),
    ("b1", "20C", 10000, 100, 5), ("b2", "20C", 10000, 100, 5), ("b3", "20C", 10000, 100, 5),
    ("c1", "5C", 9000, 900, 20),
]


def test_table1_with_intervals_equals_hand_aggregation(tmp_path):
    images = _images(HAND)
    t1 = table1_intervals({"images": images}, n_boot=3000)
    assert list(t1["condition"]) == ["5C", "20C", "30C"]
    assert list(t1["n_images"]) == [1, 3, 2]
    r30 = t1.iloc[2]
    rho = [400 / 10400, 300 / 12300]
    lam = [12 / (10400 * ETA**2), 10 / (12300 * ETA**2)]
    assert r30["porosity_mean_1e-3"] == pytest.approx(1e3 * statistics.mean(rho), rel=1e-12)
    assert r30["porosity_std_1e-3"] == pytest.approx(1e3 * statistics.stdev(rho), rel=1e-12)
    assert r30["porosity_ci_low_1e-3"] == pytest.approx(1e3 * min(rho), rel=1e-12)  # two images
    assert r30["porosity_ci_high_1e-3"] == pytest.approx(1e3 * max(rho), rel=1e-12)
    assert r30["intensity_mean_1e-2_per_um2"] == pytest.approx(1e2 * statistics.mean(lam), rel=1e-12)
    assert r30["intensity_ci_low_1e-2_per_um2"] == pytest.approx(1e2 * min(lam), rel=1e-12)
    r20 = t1.iloc[1]  # three equal images: std 0, zero-width interval
    assert r20["porosity_std_1e-3"] == 0
    assert r20["porosity_ci_low_1e-3"] == r20["porosity_ci_high_1e-3"] == pytest.approx(1e3 / 101)
    r5 = t1.iloc[0]  # one image: undefined, not NaN
    assert r5["porosity_mean_1e-3"] == pytest.approx(1e3 * 900 / 9900, rel=1e-12)
    for c in ("porosity_std_1e-3", "porosity_ci_low_1e-3", "intensity_ci_high_1e-2_per_um2"):
        assert r5[c] is pd.NA
    assert r5["note"] == "n = 1"

    md = format_table1(t1, "markdown")
    assert f"{1e3 * statistics.mean(rho):.1f} ± {1e3 * statistics.stdev(rho):.1f} " \
           f"[{1e3 * min(rho):.1f}, {1e3 * max(rho):.1f}]" in md
    assert "90.9 (n = 1)" in md and "nan" not in md.lower()
    tex = write_table1(t1, tmp_path / "t1.tex").read_text()
    assert "\\toprule" in tex and "$\\pm$" in tex and "(n = 1)" in tex and "nan" not in tex.lower()
    csv = pd.read_csv(write_table1(t1, tmp_path / "t1.csv"), keep_default_na=False)
    assert csv.loc[0, "porosity_std_1e-3"] == "" and csv.loc[0, "note"] == "n = 1"
    with pytest.raises(InputError, match="suffix"):
        write_table1(t1, tmp_path / "t1.docx")


def test_one_image_per_condition_gives_undefined_intervals_and_tests():
    st = condition_stats({"images": _per_image({"20C": [0.03], "30C": [0.04], "40C": [0.05]})},
                         n_boot=100)
    iv = st[st["kind"] == "interval"]
    assert iv["ci_low"].isna().all() and iv["std"].isna().all() and iv["estimate"].notna().all()
    assert (iv["note"] == "n = 1").all()
    tests = st[st["kind"] != "interval"]
    assert len(tests) and tests["p"].isna().all() and (tests["note"] == "n = 1").all()


def test_condition_without_images_is_an_input_error():
    images = _per_image({"20C": [0.03, 0.04], "30C": [0.05, 0.06]})
    with pytest.raises(InputError, match=r"\['40C'\]: no images"):
        condition_stats({"images": images}, order=["20C", "30C", "40C"], n_boot=100)
    cracks = pd.DataFrame(dict(image_id=["x"], condition=["50C"], d_um=[0.2], length_um=[0.5],
                               width_um=[0.05], kept=[True], adjusted=[True]))
    with pytest.raises(InputError, match=r"\['50C'\]: no images"):
        condition_stats({"images": images, "cracks": cracks}, n_boot=100)


def test_crack_medians_use_kept_cracks_and_explicit_order():
    images = _per_image({"hot": [0.03, 0.04], "cold": [0.05, 0.06]})
    cracks = pd.DataFrame(dict(
        image_id=["hot-0", "hot-0", "hot-1", "cold-0", "cold-1", "cold-1"],
        condition=["hot", "hot", "hot", "cold", "cold", "cold"],
        d_um=[1.0, 9.0, 3.0, 2.0, 4.0, 100.0], length_um=1.0, width_um=1.0,
        kept=[True, False, True, True, True, False], adjusted=True))
    st = condition_stats({"images": images, "cracks": cracks}, order=["cold", "hot"],
                         quantities=["d_um_median"], n_boot=200)
    iv = st[st["kind"] == "interval"].set_index("condition")
    assert list(iv.index) == ["cold", "hot"]
    assert iv.loc["hot", "estimate"] == 2.0 and iv.loc["cold", "estimate"] == 3.0
    pw = st[st["kind"] == "pairwise"].iloc[0]
    assert (pw["condition"], pw["condition_b"], pw["estimate"]) == ("cold", "hot", -1.0)


# ---------------------------------------------------------------- coverage (slow)
def coverage(m: int, method: str, *, n_studies: int, n_boot: int, seed: int) -> dict[str, float]:
    """Share of studies whose interval covers the true mean of per-image ρ and λ.

    Per-image values are drawn from known distributions: ρ⁽ⁱ⁾ ~ LogNormal(log 0.04, 0.2)
    (true mean 0.04·e^0.02), λ⁽ⁱ⁾ ~ Gamma(shape 20, scale 0.012) (true mean 0.24 µm⁻²).
    """
    rng = np.random.default_rng(seed)
    truth = {"rho": 0.04 * np.exp(0.02), "lambda": 20 * 0.012}
    hits = {"rho": 0, "lambda": 0}
    for s in range(n_studies):
        draws = {"rho": rng.lognormal(np.log(0.04), 0.2, m), "lambda": rng.gamma(20, 0.012, m)}
        for q, x in draws.items():
            _, lo, hi, _ = bootstrap_interval(mean_sample(x), n_boot=n_boot, method=method,
                                              seed=s, key=(q,))
            hits[q] += lo <= truth[q] <= hi
    return {q: h / n_studies for q, h in hits.items()}


@pytest.mark.slow
def test_expanded_interval_covers_the_truth_at_95_percent_with_12_images():
    # 12 images per condition as in the paper (m = 12); 2000 studies: binomial sd 0.5 %
    cov = coverage(12, "expanded", n_studies=2000, n_boot=1000, seed=2024)
    for q, c in cov.items():
        assert abs(c - 0.95) <= 0.03, (q, c)
