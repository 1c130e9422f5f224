"""What the report says: Table 1 with intervals, statistics, sample sizes, provenance
(weights sha256 of a U-net run), warnings (baseline stages, noisy acquisitions, pixel size, cut particles) and
one-line errors for a report asked too early or a condition without images."""

from __future__ import annotations

import hashlib
import re
import statistics
from html import unescape

import pandas as pd
import pytest
from test_report import _images, _tables

from cathodeflow.config import Params
from cathodeflow.errors import CathodeflowError, InputError
from cathodeflow.io.sem import write_tiff
from cathodeflow.report.build import build_report, report_store
from cathodeflow.report.stats import table1_intervals
from cathodeflow.study.pipeline import ingest, run_study
from cathodeflow.synth import generate_image

SMALL = dict(shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)
N_BOOT = 200  # intervals are compared with table1_intervals at the same n_boot and seed


def _visible(html: str) -> str:
    """The page without its embedded images (base64 may contain any letters)."""
    return unescape(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html))


def _ingest(tmp_path, specs) -> object:
    store = tmp_path / "s.zarr"
    for k, (cond, n) in enumerate(specs):
        for j in range(n):
            im = generate_image(cond, seed=10 * k + j, image_id=f"{cond}_{j}", **SMALL)
            path = tmp_path / f"{im.image_id}.tif"
            write_tiff(path, im.lr, pixel_size_um=im.pixel_size_lr_um)
            ingest([path], store=store, condition=cond)
    return store


def test_table1_with_intervals_files_and_page_equal_table1_intervals(tmp_path):
    tables = _tables()
    index = build_report(tables, tmp_path, n_boot=N_BOOT, seed=4)
    ref = table1_intervals(tables, n_boot=N_BOOT, seed=4)
    csv = pd.read_csv(tmp_path / "table1_intervals.csv")
    assert list(csv["condition"]) == ["20C", "30C", "100C"]
    for col in ("porosity_mean_1e-3", "porosity_std_1e-3", "porosity_ci_low_1e-3",
                "porosity_ci_high_1e-3", "intensity_ci_low_1e-2_per_um2",
                "intensity_ci_high_1e-2_per_um2"):
        assert csv[col].tolist() == pytest.approx(ref[col].astype(float).tolist(), rel=1e-12)
    # the means are the plain means of the per-image porosities (hand-computed)
    img = _images()
    hand = [1e3 * statistics.mean(img.loc[img["condition"] == c, "porosity"]) for c in ("20C", "30C", "100C")]
    assert csv["porosity_mean_1e-3"].tolist() == pytest.approx(hand, rel=1e-12)
    assert r"\begin{tabular}" in (tmp_path / "table1_intervals.tex").read_text()
    r = ref.iloc[0]
    cell = (f"{r['porosity_mean_1e-3']:.1f} ± {r['porosity_std_1e-3']:.1f} "
            f"[{r['porosity_ci_low_1e-3']:.1f}, {r['porosity_ci_high_1e-3']:.1f}]")
    assert cell in (tmp_path / "table1_intervals.md").read_text()
    html = _visible(index.read_text())
    assert f"<td>{cell}</td>" in html
    # statistics: Holm-adjusted pairwise tests and the trend test over 3 conditions
    assert "mann-whitney-u" in html and "jonckheere-terpstra" in html
    assert len(pd.read_csv(tmp_path / "stats.csv")) > 0


def test_one_image_condition_reads_undefined_and_no_nan_is_printed(tmp_path):
    tables = _tables()
    keep = tables["images"]["image_id"] != "img1"  # 30C keeps one image (img0)
    tables["images"] = tables["images"][keep]
    for name in ("cracks", "particles"):
        tables[name] = tables[name][tables[name]["image_id"] != "img1"]
    tables.pop("conditions")  # derived from images
    index = build_report(tables, tmp_path, n_boot=N_BOOT)
    html = _visible(index.read_text())
    assert "n = 1 (undefined)" in html and "(n = 1, undefined)" in html
    assert not re.search(r"\bnan\b", html, re.IGNORECASE)
    sizes = re.search(r"<h2>Sample sizes</h2>(.*?)</table>", html, re.S).group(1)
    assert "<td>30 °C</td><td>1 (n = 1: undefined spread)</td><td>12 / 12</td><td>3</td>" in sizes
    for name in ("table1.md", "table1_intervals.md", "table1_intervals.tex"):
        assert "nan" not in (tmp_path / name).read_text().lower(), name


def test_a_condition_with_particles_but_no_image_is_refused_with_one_line(tmp_path):
    tables = _tables()
    extra = tables["particles"].iloc[:1].assign(condition="70C", image_id="ghost")
    tables["particles"] = pd.concat([tables["particles"], extra], ignore_index=True)
    with pytest.raises(InputError, match=r"70C.*no images") as e:
        build_report(tables, tmp_path)
    assert "\n" not in str(e.value)


def test_pixel_size_far_from_the_expected_one_and_cut_particles_are_warned(tmp_path):
    tables = _tables()
    tables["images"].loc[tables["images"]["image_id"] == "img2", "pixel_size_um"] = 0.05
    tables["particles"].loc[tables["particles"]["image_id"] == "img0", "touches_border"] = True
    html = _visible(build_report(tables, tmp_path, n_boot=N_BOOT).read_text())
    warn = re.search(r'<div class="warn">(.*?)</div>', html, re.S).group(1)
    assert "Image img2 (100C): pixel size 0.05 µm" in warn
    assert "30 °C: 3 of 6 particles are cut by the image frame" in warn
    assert "Baseline stage" not in warn  # no store: nothing known about the stages
    assert warn.count("<li>") == 2


def test_report_before_run_finished_is_one_line_naming_run(tmp_path):
    store = _ingest(tmp_path, [("20C", 1)])
    with pytest.raises(CathodeflowError, match="not computed yet; run `cathodeflow run") as e:
        report_store(store, tmp_path / "rep")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "rep").exists()


def test_baseline_run_is_warned_and_its_overlays_link_full_size_images(tmp_path):
    store = _ingest(tmp_path, [("20C", 1), ("50C", 1)])
    run_study(store, params=Params(marker_radius_um=0.143), scheduler="sync")
    index = report_store(store, tmp_path / "rep")
    html = _visible(index.read_text())
    warn = re.search(r'<div class="warn">(.*?)</div>', html, re.S).group(1)
    assert "Baseline stage: super-resolution by interpolation ('baseline')" in warn
    assert "Baseline stage: phases from classical thresholds ('classical')" in warn
    from PIL import Image

    for iid in ("20C_0", "50C_0"):
        full = tmp_path / "rep" / "images" / f"{iid}.png"
        assert f'<a href="images/{iid}.png"><img src="" alt="{iid}">' in html  # data URI stripped
        with Image.open(full) as im:
            assert im.width > 320  # the full-size image is larger than the thumbnail
    prov = pd.read_csv(tmp_path / "rep" / "provenance.csv")
    assert prov["stage"].tolist() == ["raw", "sr", "phase", "labels/cracks", "labels/particles"]
    im = generate_image("20C", seed=0, image_id="20C_0", **SMALL)  # the generator's pixel sizes
    assert prov["pixel_size_um"].astype(float).tolist()[:2] == pytest.approx(
        [im.pixel_size_lr_um, im.pixel_size_hr_um], rel=1e-3)  # 4 significant digits shown


def test_a_noisy_acquisition_is_warned_by_name_and_a_clean_one_is_not(tmp_path):
    """Gaussian noise added to one of two images: the classical segmentation smooths it
    with a larger σ (recorded with its phase stage) and the report names that image."""
    import numpy as np

    store = tmp_path / "s.zarr"
    rng = np.random.default_rng(0)
    for iid, noise in (("clean", 0.0), ("noisy", 60.0)):
        im = generate_image("20C", seed=1, image_id=iid, **SMALL)
        lr = np.clip(im.lr.astype(np.float64) + noise * rng.standard_normal(im.lr.shape), 0, 255)
        write_tiff(tmp_path / f"{iid}.tif", lr.astype(np.uint8), pixel_size_um=im.pixel_size_lr_um)
        ingest([tmp_path / f"{iid}.tif"], store=store, condition="20C")
    run_study(store, params=Params(marker_radius_um=0.143), scheduler="sync")
    html = _visible(report_store(store, tmp_path / "rep").read_text())
    warn = re.search(r'<div class="warn">(.*?)</div>', html, re.S).group(1)
    noisy = [li for li in warn.split("<li>") if "Noisy acquisition" in li]
    assert len(noisy) == 1
    assert "1 image(s) (noisy)" in noisy[0] and "clean" not in noisy[0]
    sigma = float(re.search(r"σ = ([0-9.]+) px", noisy[0]).group(1))
    assert sigma > 1.5


def test_provenance_lists_the_unet_weights_sha256(tmp_path):
    pytest.importorskip("keras")
    from _unet import tiny_weights

    weights = tiny_weights(tmp_path)
    sha = hashlib.sha256(open(weights, "rb").read()).hexdigest()
    store = _ingest(tmp_path, [("20C", 1)])
    run_study(store, params=Params(marker_radius_um=0.143, phase_method="unet", unet_weights=weights),
              scheduler="sync")
    html = _visible(report_store(store, tmp_path / "rep").read_text())
    prov = re.search(r"<h2>Provenance</h2>(.*?)</table>", html, re.S).group(1)
    assert f"<td>{sha}</td>" in prov
    warn = re.search(r'<div class="warn">(.*?)</div>', html, re.S).group(1)
    assert "('baseline')" in warn and "('classical')" not in warn
