"""Figures 7–9: the numbers behind the artists (whiskers, medians, counts, bins, intervals)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cathodeflow.errors import InputError
from cathodeflow.report.figures import (
    condition_samples,
    crack_boxplots_figure,
    draw_boxplot,
    local_porosity_data,
    local_porosity_figure,
    particle_boxplots_figure,
    plot_crack_boxplots,
    plot_local_porosity,
    select_particles,
)


def _axes():
    from matplotlib.figure import Figure

    return Figure().subplots()


def test_whiskers_are_the_5th_and_95th_percentiles_read_back_from_the_artists():
    rng = np.random.default_rng(0)
    samples = [rng.lognormal(0, 1, 37), rng.normal(5, 2, 200), np.array([]), rng.uniform(0, 1, 11)]
    art = draw_boxplot(_axes(), samples, ["a", "b", "c", "d"], "x", log=False)
    drawn = [s for s in samples if len(s)]
    assert art["positions"] == [1, 2, 4]  # the empty condition leaves a gap
    for k, x in enumerate(drawn):
        p5, q1, med, q3, p95 = np.percentile(x, [5, 25, 50, 75, 95])
        lower, upper = art["whiskers"][2 * k], art["whiskers"][2 * k + 1]
        assert lower.get_ydata()[1] == p5 and upper.get_ydata()[1] == p95
        assert lower.get_ydata()[0] == q1 and upper.get_ydata()[0] == q3
        assert set(art["medians"][k].get_ydata()) == {med}
        assert art["medians"][k].get_color() == "red"
        fl = np.sort(art["fliers"][k].get_ydata())
        np.testing.assert_array_equal(fl, np.sort(x[(x < p5) | (x > p95)]))
        assert len(fl) > 0  # 5 % of points on each side are outliers


def test_tick_labels_give_n_per_box_and_counts_sum_to_the_table():
    cracks = pd.DataFrame(dict(condition=["20C"] * 5 + ["100C"] * 3 + ["30C"] * 2,
                               d_um=[0.1, 0.2, np.nan, 0.4, 0.5, 1.0, 2.0, 3.0, 0.3, 0.2]))
    conds = ["20C", "30C", "100C"]
    samples = condition_samples(cracks, "d_um", conds)
    assert [len(s) for s in samples] == [4, 2, 3]
    assert sum(len(s) for s in samples) == int(cracks["d_um"].notna().sum())
    ax = _axes()
    draw_boxplot(ax, samples, conds, "d")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["20C\nn=4", "30C\nn=2", "100C\nn=3"]


def _cracks(rng):
    rows = []
    for cond, scale in (("20C", 1.0), ("30C", 1.5)):
        for i in range(80):
            d = float(rng.lognormal(np.log(0.2 * scale), 0.6))
            rows.append(dict(image_id=f"{cond}-{i % 4}", condition=cond, crack_id=i, d_um=d,
                             length_um=3 * d, width_um=d / 5, kept=True, adjusted=d > 0.25))
    return pd.DataFrame(rows)


def test_kept_and_adjusted_panels_of_a_quantity_share_one_axis_scale(tmp_path):
    cracks = _cracks(np.random.default_rng(1))
    fig = crack_boxplots_figure(cracks, ["20C", "30C"])
    axes = np.asarray(fig.axes).reshape(2, 3)
    for c in range(3):
        top, bottom = axes[0, c], axes[1, c]
        assert top.get_yscale() == bottom.get_yscale()
        assert top.get_ylim() == bottom.get_ylim()
        allv = cracks[["d_um", "length_um", "width_um"][c]]
        lo, hi = top.get_ylim()
        assert lo <= allv.min() and hi >= allv.max()  # every point, outliers too, is visible
    path = plot_crack_boxplots(cracks, ["20C", "30C"], tmp_path / "fig7.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "fig7.svg").read_text().lstrip().startswith("<?xml")


def test_particles_cut_by_the_frame_can_be_left_out():
    particles = pd.DataFrame(dict(condition=["20C"] * 4, porosity=[0.1, 0.2, 0.3, 0.9],
                                  ssa_per_um=1.0, touches_border=[False, False, False, True]))
    assert list(select_particles(particles, exclude_cut=True)["porosity"]) == [0.1, 0.2, 0.3]
    assert len(select_particles(particles)) == 4
    fig = particle_boxplots_figure(particles, ["20C"], exclude_cut=True)
    assert fig.axes[0].get_xticklabels()[0].get_text() == "20 °C\nn=3"  # display label
    with pytest.raises(InputError, match="touches_border"):
        select_particles(particles.drop(columns="touches_border"), exclude_cut=True)


EDGES = [0.0, 0.25, 0.5, 0.75, math.inf]


def _local_per_image():
    """Per-image rows; bin [0, 0.25) holds no pixel in any image of 30C."""
    rows = []
    areas = {  # (condition, image) -> [(crack, solid)] per bin
        ("20C", "a"): [(1, 9), (2, 18), (1, 19), (0, 5)],
        ("20C", "b"): [(3, 7), (2, 18), (1, 39), (0, 5)],
        ("20C", "c"): [(2, 8), (2, 18), (0, 0), (1, 4)],
        ("30C", "d"): [(0, 0), (5, 15), (2, 18), (1, 9)],
        ("30C", "e"): [(0, 0), (5, 15), (2, 18), (1, 9)],
    }
    for (cond, img), per_bin in areas.items():
        for (lo, hi), (c, s) in zip(zip(EDGES[:-1], EDGES[1:]), per_bin):
            rows.append(dict(image_id=img, condition=cond, method="paper", bin_lo=lo, bin_hi=hi,
                             crack_um2=float(c), solid_um2=float(s),
                             porosity=c / (c + s) if c + s else np.nan))
    return pd.DataFrame(rows), areas


def test_local_porosity_data_pools_images_per_bin_and_leaves_empty_bins_nan():
    local, areas = _local_per_image()
    d = local_porosity_data(local, ["20C", "30C"], n_boot=500)
    assert len(d) == 2 * 4
    for cond in ("20C", "30C"):
        g = d[d["condition"] == cond].reset_index(drop=True)
        per = np.array([v for (c, _), v in areas.items() if c == cond], dtype=float)
        crack, solid = per[..., 0].sum(axis=0), per[..., 1].sum(axis=0)
        np.testing.assert_array_equal(g["crack_um2"], crack)
        np.testing.assert_array_equal(g["solid_um2"], solid)
        # bin totals sum to the table's totals
        sel = local["condition"] == cond
        assert g["solid_um2"].sum() == local.loc[sel, "solid_um2"].sum()
        assert g["crack_um2"].sum() == local.loc[sel, "crack_um2"].sum()
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(g["porosity"], crack / (crack + solid), rtol=1e-12)
    g30 = d[d["condition"] == "30C"].reset_index(drop=True)
    assert np.isnan(g30.loc[0, "porosity"]) and g30.loc[0, "solid_um2"] == 0  # empty, not 0
    assert np.isnan(g30.loc[0, "ci_low"])
    # two identical images: zero-width interval at the common value
    assert g30.loc[1, "ci_low"] == pytest.approx(0.25) and g30.loc[1, "ci_high"] == pytest.approx(0.25)
    g20 = d[d["condition"] == "20C"].reset_index(drop=True)
    # bin [0.25, 0.5): every image 2/20 → zero width; bin [0, 0.25): images 0.1, 0.3, 0.2
    assert g20.loc[1, "ci_low"] == pytest.approx(0.1) and g20.loc[1, "ci_high"] == pytest.approx(0.1)
    assert 0.1 <= g20.loc[0, "ci_low"] < 0.2 < g20.loc[0, "ci_high"] <= 0.3


def test_pooled_local_table_gives_no_interval_and_missing_bins_are_nan():
    pooled = pd.DataFrame(dict(condition=["20C", "20C", "30C"], method="paper",
                               bin_lo=[0.0, 0.5, 0.5], bin_hi=[0.5, math.inf, math.inf],
                               crack_um2=[1.0, 2.0, 3.0], solid_um2=[9.0, 18.0, 27.0],
                               porosity=[0.1, 0.1, 0.1]))
    d = local_porosity_data(pooled)
    assert d["ci_low"].isna().all()
    row = d[(d["condition"] == "30C") & (d["bin_lo"] == 0.0)].iloc[0]  # bin absent for 30C
    assert np.isnan(row["porosity"]) and row["solid_um2"] == 0


def test_fig9_draws_nan_for_an_empty_bin_and_interval_bars(tmp_path):
    local, _ = _local_per_image()
    fig = local_porosity_figure(local, ["20C", "30C"], n_boot=300)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label() in ("20 °C", "30 °C")]
    y30 = np.asarray(lines[1].get_ydata(), dtype=float)
    assert np.isnan(y30[0]) and np.isfinite(y30[1:]).all()
    assert any(c.__class__.__name__ == "LineCollection" for c in ax.collections)  # error bars
    bars = [p.get_height() for p in fig.axes[1].patches]
    assert sum(bars) == pytest.approx(local["solid_um2"].sum())
    path = plot_local_porosity(local, ["20C", "30C"], tmp_path / "fig9.png", n_boot=100)
    assert path.exists() and (tmp_path / "fig9.svg").exists()
