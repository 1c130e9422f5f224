"""Report folder: Table 1 numbers, figures that are real PNGs, HTML tying them together."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from cathodeflow.errors import InputError
from cathodeflow.io.tables import empty_table
from cathodeflow.report.build import build_report
from cathodeflow.report.figures import natural_key

FIGURES = ("table1.png", "crack_boxplots.png", "particle_boxplots.png", "local_porosity.png")
ETA = 0.0143

# per image: (condition, solid_px, crack_px, n_cracks) -- hand-made, 2–3 images per condition,
# conditions deliberately out of order and with a 3-digit one to check natural sorting
IMAGES = [
    ("30C", 10000, 400, 12),
    ("30C", 12000, 300, 10),
    ("100C", 9000, 900, 20),
    ("100C", 9500, 500, 15),
    ("100C", 8000, 800, 18),
    ("20C", 11000, 200, 5),
    ("20C", 10000, 250, 8),
]


def _images() -> pd.DataFrame:
    rows = []
    for k, (c, solid, crack, n) in enumerate(IMAGES):
        part = solid + crack
        rows.append(dict(
            image_id=f"img{k}", condition=c, solid_px=solid, crack_px=crack,
            porosity=crack / part, n_cracks=n, n_cracks_unfiltered=n + 2,
            crack_intensity_per_um2=n / (part * ETA**2), area_um2=part * ETA**2,
            pixel_size_um=ETA,
        ))
    return pd.DataFrame(rows)


def _hand_conditions(images: pd.DataFrame, n_particles: dict) -> pd.DataFrame:
    """Mean and sample std (ddof = 1) computed with the statistics module, row by row."""
    rows = []
    for c in sorted(set(images["condition"])):
        g = images[images["condition"] == c]
        rho = list(g["porosity"])
        lam = list(g["crack_intensity_per_um2"])
        part = (g["solid_px"] + g["crack_px"]).sum()
        rows.append(dict(
            condition=c,
            porosity_mean=statistics.mean(rho), porosity_std=statistics.stdev(rho),
            porosity_pooled=g["crack_px"].sum() / part,
            intensity_mean=statistics.mean(lam), intensity_std=statistics.stdev(lam),
            intensity_pooled_per_um2=g["n_cracks"].sum() / (part * ETA**2),
            n_images=len(g), n_cracks=int(g["n_cracks"].sum()),
            n_cracks_unfiltered=int(g["n_cracks_unfiltered"].sum()),
            n_particles=n_particles[c],
        ))
    return pd.DataFrame(rows)


def _tables() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    images = _images()
    cracks, particles, local = [], [], []
    n_particles = {}
    for row in images.itertuples():
        for i in range(row.n_cracks):
            d = float(rng.uniform(0.04, 0.5))
            cracks.append(dict(
                image_id=row.image_id, condition=row.condition, crack_id=i + 1, area_px=50,
                skeleton_px=10, d_um=d, length_um=3 * d, width_um=d / 4, particle_id=1,
                kept=True, adjusted=d > 0.15,
            ))
        for p in range(3):
            particles.append(dict(
                image_id=row.image_id, condition=row.condition, particle_id=p + 1,
                area_px=4000, area_um2=4000 * ETA**2, section_radius_um=0.5,
                porosity=float(rng.uniform(0, 0.1)), ssa_per_um=float(rng.uniform(0.5, 2)),
                n_cracks=2, touches_border=False,
            ))
        n_particles[row.condition] = n_particles.get(row.condition, 0) + 3
    for c in set(images["condition"]):
        for m in ("paper", "wicksell"):
            edges = [0.0, 0.25, 0.5, 0.75, 1.0, math.inf]
            for lo, hi in zip(edges[:-1], edges[1:]):
                local.append(dict(condition=c, method=m, bin_lo=lo, bin_hi=hi, crack_um2=1.0,
                                  solid_um2=20.0, porosity=1 / 21))
    return {
        "images": images,
        "cracks": pd.DataFrame(cracks),
        "particles": pd.DataFrame(particles),
        "local_porosity": pd.DataFrame(local),
        "conditions": _hand_conditions(images, n_particles),
    }


def _assert_png(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    # not blank: some pixels are dark (text, axes)
    assert img[..., :3].min() < 0.3


def _check_csv_against_hand(csv: pd.DataFrame):
    hand = _hand_conditions(_images(), {"20C": 6, "30C": 6, "100C": 9})
    assert list(csv["condition"]) == ["20C", "30C", "100C"]  # natural order
    for c in ("20C", "30C", "100C"):
        r = csv[csv["condition"] == c].iloc[0]
        h = hand[hand["condition"] == c].iloc[0]
        assert r["porosity_mean_1e-3"] == pytest.approx(1e3 * h["porosity_mean"], rel=1e-12)
        assert r["porosity_std_1e-3"] == pytest.approx(1e3 * h["porosity_std"], rel=1e-12)
        assert r["porosity_pooled_1e-3"] == pytest.approx(1e3 * h["porosity_pooled"], rel=1e-12)
        assert r["intensity_mean_1e-2_per_um2"] == pytest.approx(1e2 * h["intensity_mean"], rel=1e-12)
        assert r["intensity_std_1e-2_per_um2"] == pytest.approx(1e2 * h["intensity_std"], rel=1e-12)
        assert r["n_images"] == h["n_images"]
        assert r["n_cracks"] == h["n_cracks"]
        assert r["n_particles"] == h["n_particles"]


def test_table1_csv_equals_hand_computed_means_and_stds(tmp_path):
    index = build_report(_tables(), tmp_path)
    assert index == tmp_path / "index.html"
    _check_csv_against_hand(pd.read_csv(tmp_path / "table1.csv"))


def test_table1_is_derived_from_images_when_conditions_is_empty(tmp_path):
    t = _tables()
    t["conditions"] = empty_table("conditions")
    build_report(t, tmp_path)
    _check_csv_against_hand(pd.read_csv(tmp_path / "table1.csv"))


def test_markdown_shows_paper_units_and_mean_pm_std(tmp_path):
    build_report(_tables(), tmp_path)
    md = (tmp_path / "table1.md").read_text()
    assert "[10⁻³]" in md and "[10⁻² µm⁻²]" in md
    hand = _hand_conditions(_images(), {"20C": 6, "30C": 6, "100C": 9})
    h = hand[hand["condition"] == "20C"].iloc[0]
    assert f"{1e3 * h['porosity_mean']:.1f} ± {1e3 * h['porosity_std']:.1f}" in md
    lines = [ln for ln in md.splitlines() if ln.startswith("| ") and "°C" in ln]
    assert [ln.split("|")[1].strip() for ln in lines] == ["20 °C", "30 °C", "100 °C"]


def test_files_exist_pngs_are_images_and_html_references_each_figure(tmp_path):
    index = build_report(_tables(), tmp_path, title="hand-made study")
    for name in FIGURES:
        _assert_png(tmp_path / name)
    html = index.read_text()
    for name in FIGURES:  # embedded: the page opens alone (tests/test_report_browser.py)
        assert '<img src="data:image/png;base64,' in html and f'alt="{name}"' in html
    assert "<table>" in html and "hand-made study" in html
    table = html[html.index("<h2>Table 1</h2>"):html.index("<h3>Table 1 with bootstrap")]
    assert table.count("<tr>") == 1 + 3  # header + three conditions
    assert 'href="table1.csv"' in html


def test_truth_columns_sit_next_to_the_measurement(tmp_path):
    truth = pd.DataFrame({
        "condition": ["100C", "20C", "30C"],
        "true_porosity": [0.07, 0.02, 0.03],
        "true_intensity_per_um2": [30.0, 5.0, 8.0],
    })
    build_report(_tables(), tmp_path, truth=truth)
    csv = pd.read_csv(tmp_path / "table1.csv")
    assert list(csv["porosity_true_1e-3"]) == pytest.approx([20.0, 30.0, 70.0])
    assert list(csv["intensity_true_1e-2_per_um2"]) == pytest.approx([500.0, 800.0, 3000.0])
    md = (tmp_path / "table1.md").read_text()
    assert "true ρ" in md and "true λ" in md
    _assert_png(tmp_path / "table1.png")


def test_per_image_truth_is_averaged_per_condition(tmp_path):
    truth = pd.DataFrame({
        "condition": ["20C", "20C", "30C"],
        "porosity": [0.01, 0.03, 0.05],
        "crack_intensity_per_um2": [1.0, 3.0, 2.0],
    })
    build_report(_tables(), tmp_path, truth=truth)
    csv = pd.read_csv(tmp_path / "table1.csv").set_index("condition")
    assert csv.loc["20C", "porosity_true_1e-3"] == pytest.approx(20.0)
    assert csv.loc["20C", "porosity_true_std_1e-3"] == pytest.approx(1e3 * statistics.stdev([0.01, 0.03]))
    assert csv.loc["30C", "intensity_true_1e-2_per_um2"] == pytest.approx(200.0)
    assert math.isnan(csv.loc["100C", "porosity_true_1e-3"])


def test_empty_tables_still_give_a_report(tmp_path):
    index = build_report({}, tmp_path / "empty")
    for name in FIGURES:
        _assert_png(tmp_path / "empty" / name)
    csv = pd.read_csv(tmp_path / "empty" / "table1.csv")
    assert len(csv) == 0 and "porosity_mean_1e-3" in csv.columns
    assert "no data" in (tmp_path / "empty" / "table1.md").read_text()
    assert "no data" in index.read_text()


def test_no_cracks_at_all_still_gives_a_report(tmp_path):
    t = _tables()
    t["cracks"] = empty_table("cracks")
    t["local_porosity"] = empty_table("local_porosity")
    build_report(t, tmp_path)
    for name in FIGURES:
        _assert_png(tmp_path / name)
    _check_csv_against_hand(pd.read_csv(tmp_path / "table1.csv"))


def test_natural_condition_order():
    names = ["50C", "100C", "20C", "30C", "-10C"]
    assert sorted(names, key=natural_key) == ["-10C", "20C", "30C", "50C", "100C"]
    assert sorted(["T2", "T10", "T1"], key=natural_key) == ["T1", "T2", "T10"]


def test_bad_tables_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="unknown table"):
        build_report({"cracks_typo": pd.DataFrame()}, tmp_path)
    with pytest.raises(InputError, match="images"):
        build_report({"images": pd.DataFrame({"image_id": ["a"]})}, tmp_path)
    with pytest.raises(InputError, match="truth"):
        build_report(_tables(), tmp_path, truth=pd.DataFrame({"condition": ["20C"], "x": [1]}))


def test_report_module_does_not_import_pyplot_or_keras():
    import subprocess
    import sys

    code = (
        "import sys, cathodeflow.report.build, cathodeflow.report.figures;"
        "bad=[m for m in ('matplotlib.pyplot','keras','tensorflow') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _per_image_local(images: pd.DataFrame) -> pd.DataFrame:
    """Per image and bin: crack 1 + k µm², solid 20 µm² (k = the image's index), so the
    images of a condition differ and each bin's pooled ratio is known by hand."""
    rows = []
    edges = [0.0, 0.5, 1.0, math.inf]
    for k, row in enumerate(images.itertuples()):
        for m in ("paper", "wicksell"):
            for lo, hi in zip(edges[:-1], edges[1:]):
                rows.append(dict(image_id=row.image_id, condition=row.condition, method=m,
                                 bin_lo=lo, bin_hi=hi, crack_um2=1.0 + k, solid_um2=20.0,
                                 porosity=(1.0 + k) / (21.0 + k)))
    return pd.DataFrame(rows)


def test_per_image_local_porosity_gives_bin_estimates_pooled_by_hand_with_intervals(tmp_path):
    tables = _tables()
    tables["local_porosity_images"] = _per_image_local(tables["images"])
    build_report(tables, tmp_path, n_boot=200)
    stats = pd.read_csv(tmp_path / "stats.csv")
    local = stats[(stats["kind"] == "interval") & stats["quantity"].str.startswith("local_porosity:")]
    assert set(local["quantity"]) == {f"local_porosity:{m}:[{lo:g},{hi:g})" for m in ("paper", "wicksell")
                                      for lo, hi in ((0, 0.5), (0.5, 1), (1, math.inf))}
    ks = {c: [k for k, (cc, *_) in enumerate(IMAGES) if cc == c] for c in ("20C", "30C", "100C")}
    for row in local.itertuples():
        k = ks[row.condition]
        assert row.estimate == pytest.approx(sum(1.0 + i for i in k) / sum(21.0 + i for i in k), rel=1e-12)
        assert row.n_images == len(k)
        # the interval lies between the smallest and largest image's ratio, around the estimate
        assert min((1.0 + i) / (21.0 + i) for i in k) - 1e-12 <= row.ci_low <= row.estimate
        assert row.estimate <= row.ci_high <= max((1.0 + i) / (21.0 + i) for i in k) + 1e-12
        assert row.ci_high > row.ci_low
    pairs = stats[(stats["kind"] == "pairwise") & stats["quantity"].str.startswith("local_porosity:")]
    assert len(pairs) == 6 * 3  # 6 bins × 3 pairs of conditions, each tested


def test_pooled_local_porosity_alone_gives_estimates_without_intervals(tmp_path):
    build_report(_tables(), tmp_path, n_boot=200)  # tables written before the per-image one
    stats = pd.read_csv(tmp_path / "stats.csv")
    local = stats[stats["quantity"].str.startswith("local_porosity:")]
    assert len(local) and (local["kind"] == "interval").all()
    assert local["ci_low"].isna().all()
    np.testing.assert_allclose(local["estimate"], 1 / 21, rtol=1e-12)
    assert local["note"].str.contains("pooled").all()


def test_tables_folder_without_per_image_local_porosity_still_reports(tmp_path):
    from cathodeflow.io.tables import write_tables
    from cathodeflow.report.build import report_tables

    write_tables(_tables(), tmp_path / "tables")  # as written before local_porosity_images existed
    assert not (tmp_path / "tables" / "local_porosity_images.parquet").exists()
    index = report_tables(tmp_path / "tables", tmp_path / "report")
    assert index.exists()
    stats = pd.read_csv(tmp_path / "report" / "stats.csv")
    assert stats[stats["quantity"].str.startswith("local_porosity:")]["note"].str.contains("pooled").all()
    (tmp_path / "tables" / "images.parquet").unlink()  # a table of the contract missing: refused
    with pytest.raises(InputError, match=r"\['images'\] not found"):
        report_tables(tmp_path / "tables", tmp_path / "report2")
