"""Descriptors from raw counts (eq. 11–22) against numbers computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from cathodeflow.io.tables import SCHEMAS
from cathodeflow.measure.descriptors import (
    conditions_table,
    crack_rows,
    image_row,
    majority_pairs,
    mark_adjusted,
)

ETA = 0.0143


def raw(rows):
    return pd.DataFrame(rows, columns=["crack_id", "area_px", "skeleton_px", "width_sum_px"])


def test_crack_formulas_d_length_width():
    df = crack_rows(raw([(1, 30, 10, 40.0)]), image_id="a", condition="c", pixel_size_um=ETA)
    r = df.iloc[0]
    assert r.d_um == pytest.approx(2 * ETA * math.sqrt(30 / math.pi))  # eq. 13
    assert r.length_um == pytest.approx(ETA * 10)  # eq. 14
    assert r.width_um == pytest.approx(ETA * 40.0 / 10)  # eq. 16


def test_size_filter_drops_4px_keeps_5px():
    # d = 2η√(#C/π): 4 px → 2.257η < 2.5η (dropped); 5 px → 2.523η ≥ 2.5η (kept)
    df = crack_rows(raw([(1, 4, 2, 4.0), (2, 5, 2, 4.0)]), image_id="a", condition="c",
                    pixel_size_um=ETA)
    assert df["kept"].tolist() == [False, True]


def test_image_row_porosity_and_intensity():
    row = image_row(image_id="a", condition="c", solid_px=900, crack_px=100,
                    n_cracks_kept=3, n_cracks_unfiltered=5, pixel_size_um=0.5).iloc[0]
    assert row.porosity == pytest.approx(0.1)  # 100 / 1000
    assert row.area_um2 == pytest.approx(1000 * 0.25)
    assert row.crack_intensity_per_um2 == pytest.approx(3 / 250.0)


def test_image_without_particles_has_nan_not_a_number():
    row = image_row(image_id="a", condition="c", solid_px=0, crack_px=0,
                    n_cracks_kept=0, n_cracks_unfiltered=0, pixel_size_um=0.5).iloc[0]
    assert math.isnan(row.porosity) and math.isnan(row.crack_intensity_per_um2)


def test_adjusted_removes_n_pristine_smallest_kept_cracks_with_stable_ties():
    # two images, one condition; area 100 µm² in all, λ_pristine = 0.03 → n_pristine = 3
    cr = pd.concat([
        crack_rows(raw([(1, 50, 5, 5.0), (2, 10, 5, 5.0), (3, 2, 1, 2.0)]),
                   image_id="b", condition="c", pixel_size_um=ETA),
        crack_rows(raw([(1, 10, 5, 5.0), (2, 80, 5, 5.0)]),
                   image_id="a", condition="c", pixel_size_um=ETA),
    ], ignore_index=True)
    images = pd.DataFrame({"condition": ["c", "c"], "area_um2": [60.0, 40.0]})
    out = mark_adjusted(cr, images, lambda_pristine_per_um2=0.03)
    adj = out[out.adjusted][["image_id", "crack_id"]].values.tolist()
    # kept: b1(50) b2(10) a1(10) a2(80); smallest 3 by (d, image_id, crack_id): a1, b2, b1
    assert adj == [["a", 2]]
    assert not out.loc[(out.image_id == "b") & (out.crack_id == 3), "adjusted"].item()


def test_adjusted_clips_n_pristine_to_number_of_cracks():
    cr = crack_rows(raw([(1, 50, 5, 5.0)]), image_id="a", condition="c", pixel_size_um=ETA)
    images = pd.DataFrame({"condition": ["c"], "area_um2": [1e6]})
    assert not mark_adjusted(cr, images).adjusted.any()


def test_conditions_table_mean_std_and_pooled():
    imgs = pd.concat([
        image_row(image_id=f"i{k}", condition="20C", solid_px=s, crack_px=c, n_cracks_kept=n,
                  n_cracks_unfiltered=n, pixel_size_um=1.0)
        for k, (s, c, n) in enumerate([(90, 10, 2), (80, 20, 4), (70, 30, 3)])
    ], ignore_index=True)
    t = conditions_table(imgs, pd.DataFrame(columns=SCHEMAS["cracks"]),
                         pd.DataFrame({"condition": ["20C"] * 5})).iloc[0]
    assert t.porosity_mean == pytest.approx(0.2)
    assert t.porosity_std == pytest.approx(0.1)  # sample std of .1 .2 .3
    assert t.porosity_pooled == pytest.approx(60 / 300)
    assert t.intensity_mean == pytest.approx(0.03)
    assert t.intensity_pooled_per_um2 == pytest.approx(9 / 300)
    assert (t.n_images, t.n_cracks, t.n_particles) == (3, 9, 5)


def test_majority_assignment_ties_go_to_smaller_id_and_zero_when_outside():
    keys = np.array([1, 1, 1, 1, 2, 2, 3])
    vals = np.array([5, 5, 7, 7, 0, 9, 0])
    assert majority_pairs(keys, vals) == {1: 5, 2: 9, 3: 0}


def test_empty_inputs_give_typed_empty_tables():
    df = crack_rows(raw([]), image_id="a", condition="c", pixel_size_um=ETA)
    assert len(df) == 0 and list(df.columns) == list(SCHEMAS["cracks"])
    assert str(df["d_um"].dtype) == "float64"


def test_majority_assignment_with_weights_equals_repeated_entries():
    keys, vals, w = np.array([1, 1, 2]), np.array([5, 7, 9]), np.array([2, 3, 1])
    rep = majority_pairs(np.repeat(keys, w), np.repeat(vals, w))
    assert majority_pairs(keys, vals, w) == rep == {1: 7, 2: 9}
