"""Quality flags of the ``images`` table, from geometry drawn by hand: a disc, a ring (a
hollow particle), a disc cut by the frame, a small blob and a crack line that hold no marker
(r = 10 px), and a crack inside the disc. Whole image and tiled give the same row."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _geometry import disc

from cathodeflow.config import Params
from cathodeflow.io.tables import SCHEMAS, conform, empty_table
from cathodeflow.measure.image import QUALITY_FLAGS, describe_phase, flag_summary
from cathodeflow.measure.tiled import describe_phase_dask
from cathodeflow.report.build import build_report, flagged_images
from cathodeflow.study.inventory import format_summary

ETA = 0.0143
PARAMS = Params(marker_radius_um=10 * ETA)  # r = 10 px
pytestmark = pytest.mark.filterwarnings("ignore::cathodeflow.errors.PixelSizeWarning")
SHAPE = (130, 220)
BLOB = disc(SHAPE, 105, 40, 5)  # inscribed radius < 10 px: no marker
CRACK_ROW, CRACK_COLS = 110, range(100, 141)  # 41 px of S = 2 on background


def hand_drawn():
    ph = np.zeros(SHAPE, np.uint8)
    ph[disc(SHAPE, 40, 40, 25)] = 1  # plain disc
    ph[disc(SHAPE, 50, 120, 32) & ~disc(SHAPE, 50, 120, 8)] = 1  # ring: hollow particle
    ph[disc(SHAPE, 0, 190, 20)] = 1  # cut by the top frame
    ph[BLOB] = 1
    ph[CRACK_ROW, list(CRACK_COLS)] = 2  # crack in no particle (a component of B of its own)
    ph[40, 30:51] = 2  # crack inside the disc
    return ph


def _row(desc):
    return desc.image.iloc[0]


def _describe(ph, **kw):
    return describe_phase(ph, image_id="h", condition="c", pixel_size_um=ETA, params=PARAMS, **kw)


@pytest.fixture(scope="module")
def whole():
    return _describe(hand_drawn())


def test_hand_drawn_map_has_three_particles(whole):
    # precondition of the flag tests: disc, ring and cut disc are particles, blob and line not
    assert len(whole.particles) == 3
    assert whole.particles["touches_border"].tolist().count(True) == 1


def test_blob_and_crack_line_are_the_unmarked_components_with_their_area(whole):
    row = _row(whole)
    assert row["unmarked_components"] == 2
    px = int(BLOB.sum()) + len(CRACK_COLS)
    assert row["unmarked_area_um2"] == pytest.approx(px * ETA**2, rel=1e-12)


def test_ring_is_the_one_particle_with_a_hole(whole):
    assert _row(whole)["particles_with_holes"] == 1


def test_crack_line_on_background_is_the_one_crack_outside_particles(whole):
    assert _row(whole)["cracks_outside_particles"] == 1
    assert len(whole.cracks) == 2  # the line and the crack in the disc


def test_cut_fraction_is_one_particle_of_three(whole):
    assert _row(whole)["particles_cut_fraction"] == pytest.approx(1 / 3, rel=1e-12)


def test_filled_ring_and_no_blob_or_line_raise_no_flag():
    ph = hand_drawn()
    ph[disc(SHAPE, 50, 120, 8)] = 1  # fill the hole
    ph[BLOB] = 0
    ph[CRACK_ROW, list(CRACK_COLS)] = 0
    row = _row(_describe(ph))
    assert (row["unmarked_components"], row["particles_with_holes"], row["cracks_outside_particles"]) == (0, 0, 0)
    assert row["unmarked_area_um2"] == 0.0
    assert flag_summary(row) == "33% cut"


def test_background_bay_open_to_the_frame_is_not_a_hole():
    ph = np.zeros((60, 60), np.uint8)
    ph[disc(ph.shape, 0, 30, 28) & ~disc(ph.shape, 0, 30, 8)] = 1  # half ring on the frame
    desc = _describe(ph)
    assert len(desc.particles) >= 1  # precondition: the half ring holds particles
    assert _row(desc)["particles_with_holes"] == 0


@pytest.mark.parametrize("chunks", [(37, 53), (130, 41), (29, 220)])
def test_tiled_flags_equal_whole_image_flags(whole, chunks):
    tiled = describe_phase_dask(
        da.from_array(hand_drawn(), chunks=chunks), image_id="h", condition="c",
        pixel_size_um=ETA, params=PARAMS)
    pd.testing.assert_frame_equal(tiled.image, whole.image)


def test_images_without_particles_have_nan_cut_fraction_and_zero_counts():
    row = _row(_describe(np.zeros((20, 30), np.uint8)))
    assert np.isnan(row["particles_cut_fraction"])
    assert row["unmarked_components"] == 0 and row["particles_with_holes"] == 0


def test_old_images_tables_without_flags_conform_with_missing_values_and_empty_keeps_dtypes():
    old = {c: [v] for c, v in zip(
        ["image_id", "condition", "solid_px", "crack_px", "porosity", "n_cracks",
         "n_cracks_unfiltered", "crack_intensity_per_um2", "area_um2", "pixel_size_um"],
        ["a", "c", 10, 1, 1 / 11, 1, 1, 1.0, 1.0, 0.1])}
    got = conform(pd.DataFrame(old), "images")
    assert list(got.columns) == list(SCHEMAS["images"])
    assert got[list(QUALITY_FLAGS)].isna().all().all()
    assert flag_summary(got.iloc[0]) == "–"
    empty = empty_table("images")
    assert {c: str(empty[c].dtype) for c in QUALITY_FLAGS} == {c: SCHEMAS["images"][c] for c in QUALITY_FLAGS}


def test_flag_summary_words_and_report_lists_only_flagged_images(whole, tmp_path):
    assert flag_summary(_row(whole)) == "2 unmarked, 1 holed, 1 crack outside, 33% cut"
    clean = whole.image.assign(image_id="clean", unmarked_components=0, particles_with_holes=0,
                               cracks_outside_particles=0, particles_cut_fraction=0.0)
    images = pd.concat([whole.image, clean], ignore_index=True)
    assert flagged_images(images)["image_id"].tolist() == ["h"]
    index = build_report({"images": images, "particles": whole.particles, "cracks": whole.cracks},
                         tmp_path)
    text = index.read_text(encoding="utf-8")
    assert "Quality flags" in text and "2 unmarked, 1 holed, 1 crack outside, 33% cut" in text
    assert "<td>clean</td>" not in text


def test_ls_prints_the_flags_column_once_tables_hold_flags():
    stages = {s: {"status": "complete", "method": "m", "params_sha256": "abc", "end_utc": None}
              for s in ("sr", "prob", "phase", "labels/cracks", "labels/particles")}
    summary = {
        "store": "s.zarr", "n_images": 2,
        "images": [{"image_id": "h", "condition": "c", "shape_raw": [10, 10], "pixel_size_raw_um": 0.04,
                    "stages": stages, "flags": "2 unmarked, 1 holed"},
                   {"image_id": "g", "condition": "c", "shape_raw": [10, 10], "pixel_size_raw_um": 0.04,
                    "stages": stages, "flags": None}],
        "parameter_sets": {s: [] for s in stages},
        "tables": {"state": "absent", "reason": None, "written_utc": None, "image_ids": []},
    }
    lines = format_summary(summary).splitlines()
    assert lines[1].split()[-1] == "flags"
    assert lines[2].endswith("2 unmarked, 1 holed") and lines[3].endswith("–")
    summary["images"][0]["flags"] = None  # no tables yet: no flags column
    assert "flags" not in format_summary(summary).splitlines()[1]


def test_a_ring_particle_encloses_the_background_of_its_core_and_a_c_shape_does_not():
    from cathodeflow.measure.image import encloses_background

    yy, xx = np.mgrid[:41, :41]
    r2 = (yy - 20) ** 2 + (xx - 20) ** 2
    ring = (r2 <= 18**2) & (r2 > 6**2)
    phase = ring.astype(np.uint8)  # core: background (S = 0)
    assert encloses_background(phase, ring)
    c_shape = ring & ~((yy > 17) & (yy < 23) & (xx > 20))  # a 5-px gap opens the core
    assert not encloses_background(c_shape.astype(np.uint8), c_shape)
    cracked_core = phase.copy()
    cracked_core[r2 <= 6**2] = 2  # a core of crack, not background
    assert not encloses_background(cracked_core, ring)
    diagonal = np.zeros((5, 5), bool)  # background joined to the edge only diagonally is enclosed
    diagonal[1:4, 1:4] = True
    diagonal[2, 2] = False
    diagonal[0, 0] = True
    assert encloses_background(diagonal.astype(np.uint8), diagonal)


@given(bits=st.lists(st.booleans(), min_size=12 * 14, max_size=12 * 14),
       values=st.lists(st.integers(0, 2), min_size=12 * 14, max_size=12 * 14))
@settings(max_examples=300, deadline=None)
def test_encloses_background_agrees_with_scipys_fill_holes(bits, values):
    from scipy import ndimage as ndi

    from cathodeflow.measure.image import encloses_background

    mask = np.array(bits).reshape(12, 14)
    phase = np.array(values, np.uint8).reshape(12, 14)
    holes = ndi.binary_fill_holes(mask) & ~mask  # the definition: 4-connected propagation from the edge
    assert encloses_background(phase, mask) == bool(np.any(holes & (phase == 0)))
