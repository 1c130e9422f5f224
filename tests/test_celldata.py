"""Cell data (capacity fade, LAM, LLI; the paper's Fig. 6) linked to the crack descriptors:
reading and refusing CSVs, joining to the study's conditions, correlations with a bootstrap
over conditions and a permutation p, the scatter grid, the report fragment, the CLI check."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr

from cathodeflow.cli import main
from cathodeflow.errors import InputError
from cathodeflow.report.celldata import (
    DESCRIPTORS,
    CellDataWarning,
    cell_data_report,
    cell_links_figure,
    correlations,
    link_cell_data,
    read_cell_data,
)

CONDS = ["20C", "30C", "40C", "50C"]
#: Cell metric per condition (the CSV) and per-image porosities built so that the mean
#: porosity of each condition, ×10³ (Table 1 units), is exactly 3 × fade + 2.
FADE = [5.0, 7.0, 12.0, 20.0]
LAM = [1.0, 3.0, 2.0, 8.0]
DELTA = 0.0005  # ± spread of the two images of a condition around its mean
WIDTHS = {"20C": [0.05, 0.07, 0.30], "30C": [0.04, 0.06, 0.20], "40C": [0.09, 0.10, 0.11],
          "50C": [0.02, 0.08, 0.50]}
PART_POROSITY = {"20C": [0.01, 0.03], "30C": [0.02, 0.06], "40C": [0.05, 0.05], "50C": [0.1, 0.2]}


def _tables() -> dict[str, pd.DataFrame]:
    images, cracks, particles = [], [], []
    for c, fade in zip(CONDS, FADE):
        rho = (3 * fade + 2) / 1e3
        for k, v in enumerate((rho - DELTA, rho + DELTA)):
            images.append(dict(image_id=f"{c}-{k}", condition=c, solid_px=1000, crack_px=10,
                               porosity=v, n_cracks=3, n_cracks_unfiltered=4,
                               crack_intensity_per_um2=100 * v, area_um2=1.0, pixel_size_um=0.0143))
        for i, w in enumerate(WIDTHS[c]):
            cracks.append(dict(image_id=f"{c}-{i % 2}", condition=c, crack_id=i, area_px=10,
                               skeleton_px=5, d_um=2 * w, length_um=10 * w, width_um=w,
                               particle_id=1, kept=True, adjusted=False))
        # a dropped crack (kept=False) with a huge width: must not move the median
        cracks.append(dict(image_id=f"{c}-0", condition=c, crack_id=99, area_px=1, skeleton_px=1,
                           d_um=50.0, length_um=50.0, width_um=50.0, particle_id=1, kept=False,
                           adjusted=False))
        for i, p in enumerate(PART_POROSITY[c]):
            particles.append(dict(image_id=f"{c}-{i}", condition=c, particle_id=i, area_px=100,
                                  area_um2=1.0, section_radius_um=1.0, porosity=p,
                                  ssa_per_um=1.0, n_cracks=1, touches_border=False))
    return {"images": pd.DataFrame(images), "cracks": pd.DataFrame(cracks),
            "particles": pd.DataFrame(particles)}


def _csv(tmp_path, text: str, name: str = "cell.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _good_csv(tmp_path, conds=CONDS):
    rows = ["condition,capacity_fade_percent,lam_percent,lli_percent"]
    for c in conds:
        i = CONDS.index(c) if c in CONDS else 0
        rows.append(f"{c},{FADE[i]},{LAM[i]},{30 - 2 * FADE[i]}")
    return _csv(tmp_path, "\n".join(rows) + "\n")


# ---------------------------------------------------------------- reading
def test_read_cell_data_gives_strings_and_floats_and_blank_cells_are_nan(tmp_path):
    path = _csv(tmp_path, "condition, capacity_fade_percent ,lam_percent\n 20C ,5.5,\n30C,-1e-1,2\n")
    cell = read_cell_data(path)
    assert list(cell.columns) == ["condition", "capacity_fade_percent", "lam_percent"]
    assert list(cell["condition"]) == ["20C", "30C"]
    assert cell["capacity_fade_percent"].tolist() == [5.5, -0.1]
    assert math.isnan(cell["lam_percent"][0]) and cell["lam_percent"][1] == 2.0


@pytest.mark.parametrize("text, expected", [
    ("cond,capacity_fade_percent\n20C,1\n", "no 'condition' column"),
    ("condition\n20C\n", "only a 'condition' column"),
    ("condition,lam_percent\n", "no data rows"),
    ("condition,lam_percent\n20C,1\n30C,abc\n", "column 'lam_percent', line 3 (condition '30C'): 'abc'"),
    ("condition,lam_percent\n20C,inf\n", "'inf' is not a finite number"),
    ("condition,lam_percent\n20C,1\n30C,2\n20C,3\n", "condition '20C' on lines 2 and 4"),
    ("condition,lam_percent\n20C,1\n ,2\n", "line 3: blank condition"),
    ("condition,lam_percent,lam_percent\n20C,1,2\n", "repeated or unnamed"),
])
def test_bad_cell_csv_is_refused_in_one_line_naming_file_and_place(tmp_path, text, expected):
    path = _csv(tmp_path, text)
    with pytest.raises(InputError) as e:
        read_cell_data(path)
    msg = str(e.value)
    assert expected in msg and str(path) in msg and "\n" not in msg


def test_missing_cell_csv_is_refused_naming_it(tmp_path):
    with pytest.raises(InputError, match="nope.csv: no such file"):
        read_cell_data(tmp_path / "nope.csv")


# ---------------------------------------------------------------- linking
def test_link_gives_table1_rho_lambda_kept_crack_medians_and_mean_particle_porosity(tmp_path):
    linked = link_cell_data(_tables(), _good_csv(tmp_path))
    assert list(linked["condition"]) == CONDS
    assert list(linked["n_images"]) == [2, 2, 2, 2]
    np.testing.assert_allclose(linked["porosity_mean_1e-3"], 3 * np.array(FADE) + 2, rtol=1e-12)
    np.testing.assert_allclose(linked["intensity_mean_1e-2_per_um2"],
                               1e2 * 100 * (3 * np.array(FADE) + 2) / 1e3, rtol=1e-12)
    med = np.array([np.median(WIDTHS[c]) for c in CONDS])  # the kept=False crack is left out
    np.testing.assert_allclose(linked["crack_width_median_um"], med, rtol=1e-12)
    np.testing.assert_allclose(linked["crack_d_median_um"], 2 * med, rtol=1e-12)
    np.testing.assert_allclose(linked["crack_length_median_um"], 10 * med, rtol=1e-12)
    np.testing.assert_allclose(linked["particle_porosity_mean"],
                               [np.mean(PART_POROSITY[c]) for c in CONDS], rtol=1e-12)
    assert linked["lam_percent"].tolist() == LAM
    assert linked.attrs["metrics"] == ["capacity_fade_percent", "lam_percent", "lli_percent"]


def test_study_condition_missing_from_cell_data_is_refused_listing_both_sets(tmp_path):
    path = _good_csv(tmp_path, conds=["20C", "30C", "40C"])
    with pytest.raises(InputError) as e:
        link_cell_data(_tables(), path)
    msg = str(e.value)
    assert "no row for study conditions ['50C']" in msg
    assert "study: ['20C', '30C', '40C', '50C']" in msg and "cell data: ['20C', '30C', '40C']" in msg
    assert str(path) in msg and "\n" not in msg


def test_extra_cell_data_rows_are_dropped_with_a_warning_naming_them(tmp_path):
    path = _csv(tmp_path, "condition,lam_percent\n20C,1\n30C,3\n40C,2\n50C,8\n60C,9\n")
    with pytest.warns(CellDataWarning, match=r"\['60C'\]"):
        linked = link_cell_data(_tables(), path)
    assert list(linked["condition"]) == CONDS and linked["lam_percent"].tolist() == LAM


def test_metric_named_like_a_descriptor_is_refused(tmp_path):
    path = _csv(tmp_path, "condition,crack_width_median_um\n20C,1\n30C,1\n40C,1\n50C,1\n")
    with pytest.raises(InputError, match="crack_width_median_um"):
        link_cell_data(_tables(), path)


# ---------------------------------------------------------------- correlations
def _row(corr, metric, descriptor):
    r = corr[(corr["metric"] == metric) & (corr["descriptor"] == descriptor)]
    assert len(r) == 1
    return r.iloc[0]


def test_exact_linear_relation_gives_r_one_and_interval_up_to_one(tmp_path):
    corr = correlations(link_cell_data(_tables(), _good_csv(tmp_path)), n_boot=400, seed=1)
    assert len(corr) == 3 * len(DESCRIPTORS)
    up = _row(corr, "capacity_fade_percent", "porosity_mean_1e-3")  # ρ = 3·fade + 2
    assert up["n"] == 4
    assert up["pearson_r"] == pytest.approx(1.0, abs=1e-12)
    assert up["pearson_ci_high"] == pytest.approx(1.0, abs=1e-12)
    assert up["pearson_ci_low"] == pytest.approx(1.0, abs=1e-12)  # every defined resample: r = 1
    assert up["spearman_r"] == pytest.approx(1.0, abs=1e-12)
    # ranks 1..4: only the identity and the reversal of 4! = 24 pairings reach |r_s| = 1
    assert up["spearman_p"] == pytest.approx(2 / 24, abs=1e-12)
    assert "n = 4 conditions" in up["note"] and "1/24" in up["note"]
    down = _row(corr, "lli_percent", "porosity_mean_1e-3")  # lli = 30 − 2·fade
    assert down["pearson_r"] == pytest.approx(-1.0, abs=1e-12)
    assert down["pearson_ci_low"] == pytest.approx(-1.0, abs=1e-12)


def test_r_and_rs_agree_with_scipy_and_interval_holds_the_estimate(tmp_path):
    linked = link_cell_data(_tables(), _good_csv(tmp_path))
    corr = correlations(linked, n_boot=400, seed=3, level=0.9)
    for des in DESCRIPTORS:
        x = linked[des].to_numpy(float)
        y = linked["lam_percent"].to_numpy(float)
        r = _row(corr, "lam_percent", des)
        assert r["pearson_r"] == pytest.approx(pearsonr(x, y)[0], abs=1e-12)
        assert r["spearman_r"] == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
        assert -1 <= r["pearson_ci_low"] <= r["pearson_r"] <= r["pearson_ci_high"] <= 1
        assert r["level"] == 0.9


def test_permutation_p_of_four_conditions_counts_all_24_pairings(tmp_path):
    linked = link_cell_data(_tables(), _good_csv(tmp_path))
    r = _row(correlations(linked, n_boot=100), "lam_percent", "porosity_mean_1e-3")
    x = linked["porosity_mean_1e-3"].to_numpy(float)
    y = np.array(LAM)
    from itertools import permutations
    null = [abs(pearsonr(x, y[list(p)])[0]) for p in permutations(range(4))]
    expected = np.mean(np.array(null) >= abs(pearsonr(x, y)[0]) - 1e-12)
    assert r["pearson_p"] == pytest.approx(expected, abs=1e-12)


def test_blank_metric_cells_reduce_n_and_fewer_than_three_give_no_correlation(tmp_path):
    path = _csv(tmp_path, "condition,a_percent,b_percent\n20C,1,1\n30C,,2\n40C,3,\n50C,4,\n")
    corr = correlations(link_cell_data(_tables(), path), n_boot=100)
    a = _row(corr, "a_percent", "porosity_mean_1e-3")
    b = _row(corr, "b_percent", "porosity_mean_1e-3")
    assert a["n"] == 3 and not pd.isna(a["pearson_r"])
    assert b["n"] == 2 and pd.isna(b["pearson_r"]) and pd.isna(b["pearson_ci_high"])
    assert "fewer than 3" in b["note"]


# ---------------------------------------------------------------- figure and report
def test_figure_has_one_panel_per_pair_with_the_condition_points(tmp_path):
    linked = link_cell_data(_tables(), _good_csv(tmp_path))
    corr = correlations(linked, n_boot=100)
    fig = cell_links_figure(linked, corr)
    axes = np.array(fig.axes).reshape(3, len(DESCRIPTORS))
    for i, met in enumerate(["capacity_fade_percent", "lam_percent", "lli_percent"]):
        for j, des in enumerate(DESCRIPTORS):
            ax = axes[i, j]
            pts = ax.collections[0].get_offsets()
            np.testing.assert_allclose(pts, np.c_[linked[des], linked[met]], rtol=1e-12)
            assert [t.get_text() for t in ax.texts] == ["20 °C", "30 °C", "40 °C", "50 °C"]
            row = _row(corr, met, des)
            assert ax.get_title().startswith(f"r = {row['pearson_r']:.2f} [")
            assert ax.get_title().endswith("n = 4")


def test_cell_data_report_writes_tables_figures_and_an_html_fragment(tmp_path):
    res = cell_data_report(_tables(), _good_csv(tmp_path), tmp_path / "rep", n_boot=100)
    for p in list(res["tables"].values()) + list(res["figures"].values()):
        assert p.exists() and p.stat().st_size > 0
    assert set(res["figures"]) == {"cell_links.png", "cell_links.svg"}
    back = pd.read_csv(res["tables"]["cell_correlations.csv"])
    assert len(back) == len(res["correlations"]) == 3 * len(DESCRIPTORS)
    frag = res["html"]
    assert frag.startswith("<h2>Cell data</h2>") and "data:image/png;base64," in frag
    assert "n = 4 conditions" in frag and frag.count("<tr>") == 1 + 3 * len(DESCRIPTORS)


def test_cli_report_refuses_a_bad_cell_csv_before_building(tmp_path, capsys):
    path = _csv(tmp_path, "condition,lam_percent\n20C,x\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["report", "--tables", str(tmp_path / "no_tables"), "--out",
                     str(tmp_path / "rep"), "--cell-data", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "'x' is not a finite number" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()


def test_report_with_cell_data_has_the_cell_section_and_its_files(tmp_path):
    from cathodeflow.report.build import build_report

    csv = _csv(tmp_path, "condition,capacity_fade_percent\n" + "".join(f"{c},{f}\n" for c, f in zip(CONDS, FADE)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = build_report(_tables(), tmp_path / "rep", cell_data=csv, n_boot=200)
    page = index.read_text(encoding="utf-8")
    assert page.count("<h2>Cell data</h2>") == 1
    assert page.index("<h2>Cell data</h2>") < page.index("<h2>Provenance</h2>")
    linked = pd.read_csv(tmp_path / "rep" / "cell_data.csv")
    assert list(linked["capacity_fade_percent"]) == FADE
    assert (tmp_path / "rep" / "cell_links.png").stat().st_size > 0
