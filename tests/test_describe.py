"""Acceptance tests of ``cathodeflow.describe`` on phase maps whose truth is known by
construction (paper eq. 11–22, 37–40; DESIGN §4.2 and §4.4).

Every expected value is computed here from the geometry that was drawn (pixel counts of
the drawn discs and lines, the formulas of the paper), never from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage.morphology import skeletonize

import cathodeflow
from _geometry import disc

from cathodeflow.config import Params
from cathodeflow.errors import InputError
from cathodeflow.io.tables import SCHEMAS
from cathodeflow.study import describe as describe_mod
from cathodeflow.study.describe import describe

ETA = 0.0143
P10 = Params(marker_radius_um=10 * ETA)  # r = 10 px
# Marker radii of a few px are on purpose here (tiny maps): their PixelSizeWarning is expected.
pytestmark = pytest.mark.filterwarnings("ignore::cathodeflow.errors.PixelSizeWarning")
TABLES = ("images", "cracks", "particles", "local_porosity", "local_porosity_images", "conditions")


# ------------------------------------------------------------------ drawing helpers
def ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def run(phases, params=P10, **kw):
    kw.setdefault("pixel_size_um", ETA)
    kw.setdefault("scheduler", "sync")
    return describe(phases, params=params, **kw)


def assert_schema(tables):
    for name in TABLES:
        df = tables[name]
        assert list(df.columns) == list(SCHEMAS[name]), name
        assert {c: str(t) for c, t in df.dtypes.items()} == SCHEMAS[name], name


def one_crack_disc(width=1, length=31, shape=(100, 120), r=40):
    ph = np.zeros(shape, np.uint8)
    ph[disc(shape, 50, 60, r)] = 1
    ph[50 : 50 + width, 40 : 40 + length] = 2
    return ph


# ------------------------------------------------------------------ API surface
def test_describe_is_exported_at_package_level_and_returns_the_contract_tables_and_per_image_local_porosity():
    assert cathodeflow.describe is describe
    out = run(one_crack_disc())
    assert tuple(out) == TABLES
    assert_schema(out)


def test_image_ids_of_xarray_and_dask_inputs():
    import dask.array as da
    import xarray as xr

    ph = one_crack_disc()
    out = run([xr.DataArray(ph, dims=("y", "x"), name="sample7"), da.from_array(ph)],
              scheduler="threads", progress=True)
    # an xarray name is an id; a Dask array's .name is a graph key, not an id
    assert out["images"].image_id.tolist() == ["sample7", "image_001"]
    ref = run(ph)
    for name in ("cracks", "particles"):
        got = out[name][out[name].image_id == "image_001"].reset_index(drop=True)
        exp = ref[name].assign(image_id="image_001").astype(ref[name].dtypes)
        pd.testing.assert_frame_equal(got.drop(columns="adjusted", errors="ignore"),
                                      exp.drop(columns="adjusted", errors="ignore"))


# ------------------------------------------------------------------ cracks: d, ℓ, b (eq. 13–16)
@pytest.mark.parametrize("length", [5, 31, 57])
def test_one_px_wide_straight_crack_has_area_and_skeleton_equal_to_length_and_width_2_eta(length):
    ph = one_crack_disc(width=1, length=length)
    disc_px = int(np.count_nonzero(ph))
    out = run(ph)
    cr = out["cracks"]
    assert len(cr) == 1
    c = cr.iloc[0]
    assert c.area_px == length  # #C
    assert c.skeleton_px == length  # #L: the Lee skeleton of a 1-px line is the line
    assert c.d_um == pytest.approx(2 * ETA * math.sqrt(length / math.pi), rel=1e-12)  # eq. 13
    assert c.length_um == pytest.approx(ETA * length, rel=1e-12)  # eq. 14
    assert c.width_um == pytest.approx(2 * ETA, rel=1e-12)  # eq. 16, r_disk = 1 everywhere
    assert c.particle_id == 1 and c.kept
    p = out["particles"].iloc[0]
    assert p.area_px == disc_px
    assert p.porosity == pytest.approx(length / disc_px, rel=1e-12)  # eq. 20
    assert p.n_cracks == 1
    im = out["images"].iloc[0]
    assert (im.solid_px, im.crack_px) == (disc_px - length, length)
    assert im.porosity == pytest.approx(length / disc_px, rel=1e-12)  # eq. 11
    assert im.crack_intensity_per_um2 == pytest.approx(1 / (ETA**2 * disc_px), rel=1e-12)  # eq. 12
    assert im.area_um2 == pytest.approx(ETA**2 * disc_px, rel=1e-12)


def test_two_px_wide_crack_has_width_2_eta_and_one_skeleton_row():
    L = 30
    ph = one_crack_disc(width=2, length=L)
    c = run(ph)["cracks"].iloc[0]
    skel = skeletonize(ph == 2, method="lee")  # independent: scikit-image itself
    assert c.area_px == 2 * L
    assert c.skeleton_px == int(skel.sum())
    assert len(np.unique(np.nonzero(skel)[0])) == 1  # one row
    # every skeleton pixel of a 2-px band has a solid 4-neighbour: r_disk = 1
    assert c.width_um == pytest.approx(2 * ETA, rel=1e-12)


def test_three_px_wide_crack_uses_r_disk_2_inside_and_1_at_the_two_ends():
    L = 30
    ph = one_crack_disc(width=3, length=L)
    c = run(ph)["cracks"].iloc[0]
    skel = skeletonize(ph == 2, method="lee")
    rows, cols = np.nonzero(skel)
    assert set(rows) == {51}  # centre row
    assert (cols.min(), cols.max(), len(cols)) == (40, 40 + L - 1, L)
    assert c.area_px == 3 * L and c.skeleton_px == L
    # centre-row pixel at column x: nearest S<2 pixel is 2 rows up/down or just past an end
    r_disk = [min(2, x - 39, 40 + L - x) for x in range(40, 40 + L)]
    assert r_disk.count(1) == 2
    assert c.width_um == pytest.approx(ETA * sum(2 * r for r in r_disk) / L, rel=1e-12)
    assert c.length_um == pytest.approx(ETA * L, rel=1e-12)
    assert c.d_um == pytest.approx(2 * ETA * math.sqrt(3 * L / math.pi), rel=1e-12)


@pytest.mark.parametrize("gap", [1, 2])
def test_parallel_cracks_a_gap_of_one_or_two_px_apart_are_two_cracks(gap):
    L = 25
    ph = one_crack_disc(width=1, length=L)
    ph[50 + gap + 1, 40 : 40 + L] = 2
    out = run(ph)
    cr = out["cracks"]
    assert len(cr) == 2 and cr.kept.all()
    assert cr.area_px.tolist() == [L, L]
    assert cr.skeleton_px.tolist() == [L, L]
    assert np.allclose(cr.width_um, 2 * ETA)
    assert cr.crack_id.tolist() == [1, 2]  # raster order: upper line first
    assert out["particles"].n_cracks.tolist() == [2]


def test_cracks_of_4_and_5_px_straddle_the_2_5_eta_filter_and_only_kept_ones_are_counted():
    ph = np.zeros((100, 120), np.uint8)
    ph[disc(ph.shape, 50, 60, 40)] = 1
    ph[40, 40:44] = 2  # 4 px: d = 2η√(4/π) ≈ 2.26 η < 2.5 η → dropped
    ph[60, 60:65] = 2  # 5 px: d = 2η√(5/π) ≈ 2.52 η ≥ 2.5 η → kept
    ph[70, 45:47] = 2  # 2 px: dropped
    ph[30:32, 70:72] = 2  # 2×2 square, 4 px: dropped
    out = run(ph)
    cr = out["cracks"].set_index("area_px")
    assert sorted(cr.index) == [2, 4, 4, 5]  # every crack found
    assert cr.loc[5, "kept"]
    assert not cr.drop(index=5).kept.any()
    im = out["images"].iloc[0]
    assert (im.n_cracks, im.n_cracks_unfiltered) == (1, 4)
    fg = int(np.count_nonzero(ph))
    assert im.crack_intensity_per_um2 == pytest.approx(1 / (ETA**2 * fg), rel=1e-12)
    assert out["particles"].n_cracks.tolist() == [1]
    assert (out["cracks"].particle_id == 1).all()
    assert out["conditions"].n_cracks.tolist() == [1]
    assert out["conditions"].n_cracks_unfiltered.tolist() == [4]


# ------------------------------------------------------------------ particles (eq. 20, 21, 34)
def test_solid_disc_has_porosity_zero_and_ssa_close_to_4_over_pi_perimeter_over_area():
    R = 30
    ph = np.zeros((80, 90), np.uint8)
    ph[disc(ph.shape, 40, 45, R)] = 1
    n = int(ph.sum())
    p = run(ph)["particles"].iloc[0]
    assert p.area_px == n and p.porosity == 0.0 and p.n_cracks == 0
    assert p.area_um2 == pytest.approx(ETA**2 * n, rel=1e-12)
    assert p.section_radius_um == pytest.approx(ETA * math.sqrt(n / math.pi), rel=1e-12)  # eq. 34
    # eq. 21 with perimeter 2πR and area πR²: a = (4/π)·2πR/(πR²·η); scikit-image's
    # 4-neighbourhood perimeter estimator overestimates a digital circle by ~5 %.
    expected = (4 / math.pi) * 2 * math.pi * R / (math.pi * R * R * ETA)
    assert p.ssa_per_um == pytest.approx(expected, rel=0.07)
    assert not p.touches_border


def test_ellipse_is_one_particle_with_its_drawn_area_and_ssa_from_its_perimeter():
    a, b = 45, 24
    ph = np.zeros((70, 110), np.uint8)
    ph[ellipse(ph.shape, 35, 55, b, a)] = 1
    ph[35, 30:80] = 2  # a crack along the major axis
    n = int(np.count_nonzero(ph))
    out = run(ph)
    p = out["particles"]
    assert len(p) == 1
    p = p.iloc[0]
    assert p.area_px == n
    assert p.porosity == pytest.approx(50 / n, rel=1e-12)
    # Ramanujan's perimeter of the ellipse, plus both faces of the 50-px crack
    h = ((a - b) / (a + b)) ** 2
    perim = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h))) + 2 * 50
    assert p.ssa_per_um == pytest.approx((4 / math.pi) * perim / (n * ETA), rel=0.07)
    assert out["cracks"].particle_id.tolist() == [1]


def test_touching_discs_are_split_and_each_crack_goes_to_its_own_disc():
    shape = (90, 160)
    ph = np.zeros(shape, np.uint8)
    left, right = disc(shape, 48, 45, 30), disc(shape, 42, 105, 30)
    assert not (left & right).any()
    ph[left | right] = 1
    ph[40:50, 70:82] = 1  # a 10-px neck joins them: one component of B, two markers
    ph[48, 30:40] = 2  # 10 px in the left disc
    ph[35:55, 110] = 2  # 20 px in the right disc (vertical)
    out = run(ph)
    parts = out["particles"]
    assert len(parts) == 2
    # ids in raster order of the first pixel: the right disc's top pixel (row 12) comes
    # before the left disc's (row 18)
    right_id, left_id = 1, 2
    cr = out["cracks"].set_index("area_px")
    assert cr.loc[10, "particle_id"] == left_id
    assert cr.loc[20, "particle_id"] == right_id
    assert parts.set_index("particle_id").n_cracks.to_dict() == {1: 1, 2: 1}
    assert parts.area_px.sum() == np.count_nonzero(ph)  # one component, fully split
    pa = parts.set_index("particle_id")
    assert pa.loc[left_id, "porosity"] == pytest.approx(10 / pa.loc[left_id, "area_px"])
    assert pa.loc[right_id, "porosity"] == pytest.approx(20 / pa.loc[right_id, "area_px"])


def test_crack_across_two_particles_goes_to_the_one_holding_most_of_its_pixels():
    shape = (70, 130)
    ph = np.zeros(shape, np.uint8)
    ph[disc(shape, 35, 35, 28) | disc(shape, 35, 92, 28)] = 1
    ph[30:40, 55:72] = 1  # neck
    ph[35, 50:100] = 2  # ~14 px left of the neck's middle, ~36 px right
    out = run(ph)
    assert len(out["particles"]) == 2
    labels_right = 2  # same top row for both discs: left first in raster order → left = 1
    cr = out["cracks"]
    assert len(cr) == 1 and cr.particle_id.iloc[0] == labels_right
    assert out["particles"].set_index("particle_id").n_cracks.to_dict() == {1: 0, 2: 1}


def test_particles_cut_by_the_frame_are_kept_and_flagged():
    shape = (100, 160)
    ph = np.zeros(shape, np.uint8)
    ph[disc(shape, 0, 40, 25)] = 1  # cut by the top edge
    ph[disc(shape, 60, 159, 25)] = 1  # cut by the right edge
    ph[disc(shape, 60, 70, 25)] = 1  # inside
    ph[2, 30:45] = 2  # crack in the top half-disc
    out = run(ph)
    p = out["particles"].set_index("particle_id")
    assert len(p) == 3
    # ids by raster order of first pixels: top disc (row 0), right disc (row 35), inner (35, col 70 < 159)
    assert p.touches_border.to_dict() == {1: True, 2: False, 3: True}
    assert p.loc[1, "area_px"] == disc(shape, 0, 40, 25).sum()
    assert p.loc[3, "area_px"] == disc(shape, 60, 159, 25).sum()
    assert p.loc[1, "n_cracks"] == 1
    assert out["cracks"].particle_id.tolist() == [1]


def test_crack_in_a_component_too_small_for_a_marker_belongs_to_no_particle():
    shape = (100, 140)
    ph = np.zeros(shape, np.uint8)
    ph[disc(shape, 50, 45, 35)] = 1
    ph[disc(shape, 50, 115, 7)] = 1  # D < r = 10 everywhere: no marker, not a particle
    ph[50, 110:120] = 2
    out = run(ph)
    assert len(out["particles"]) == 1
    cr = out["cracks"]
    assert len(cr) == 1 and cr.particle_id.iloc[0] == 0 and cr.kept.iloc[0]
    assert out["particles"].n_cracks.tolist() == [0]
    # the image's phase counts still include the small component (eq. 11–12)
    im = out["images"].iloc[0]
    assert im.solid_px + im.crack_px == np.count_nonzero(ph)
    assert im.n_cracks == 1


def test_crack_in_a_particle_left_out_by_min_area_gets_particle_id_zero():
    shape = (100, 150)
    ph = np.zeros(shape, np.uint8)
    ph[disc(shape, 50, 45, 40)] = 1  # ~5000 px: listed
    ph[disc(shape, 50, 120, 15)] = 1  # ~700 px: a particle, but below min_particle_area_um2
    ph[50, 30:60] = 2
    ph[50, 112:128] = 2
    out = describe(ph, pixel_size_um=ETA, params=Params(marker_radius_um=10 * ETA, min_particle_area_um2=1000 * ETA**2))
    assert out["particles"].particle_id.tolist() == [1]
    cr = out["cracks"].sort_values("crack_id")
    assert cr.particle_id.tolist() == [1, 0]
    assert set(cr.particle_id[cr.particle_id > 0]) <= set(out["particles"].particle_id)
    assert out["particles"].n_cracks.tolist() == [1]


def test_local_porosity_pools_exactly_the_particle_pixels_per_model():
    shape = (100, 120)
    ph = np.zeros(shape, np.uint8)
    ph[disc(shape, 50, 60, 45)] = 1
    ph[50, 30:90] = 2
    ph[20:80, 60] = 2
    eta = 0.1  # a 4.5 µm section, like the paper's particles
    out = run(ph, pixel_size_um=eta, params=Params(marker_radius_um=10 * eta))
    lp = out["local_porosity"]
    assert set(lp.method) == {"paper", "wicksell"}
    assert len(lp) == 2 * len(P10.bins)  # 10 bins + the overflow bin, per model
    n_crack, n_solid = int((ph == 2).sum()), int((ph == 1).sum())
    for _, g in lp.groupby("method"):
        assert g.crack_um2.sum() == pytest.approx(eta**2 * n_crack, rel=1e-12)
        assert g.solid_um2.sum() == pytest.approx(eta**2 * n_solid, rel=1e-12)
        assert g.bin_lo.tolist() == list(P10.bins)
        assert g.bin_hi.tolist()[-1] == math.inf
        empty = (g.crack_um2 + g.solid_um2) == 0
        assert g.porosity[empty].isna().all()
        assert (g.porosity[~empty] == g.crack_um2[~empty] / (g.crack_um2 + g.solid_um2)[~empty]).all()


def test_per_image_local_porosity_holds_each_images_own_pixels_and_sums_to_the_pooled_rows():
    shape = (100, 120)
    a = np.zeros(shape, np.uint8)
    a[disc(shape, 50, 60, 45)] = 1
    a[50, 30:90] = 2
    b = np.zeros(shape, np.uint8)
    b[disc(shape, 50, 60, 40)] = 1
    b[20:80, 60] = 2
    b[40:44, 40:50] = 2
    etas = {"a": 0.1, "b": 0.12}  # pooled areas must weight each image by its own η²
    out = run([a, b], pixel_size_um=[0.1, 0.12], image_ids=["a", "b"], condition="20C",
              params=Params(marker_radius_um=1.0))
    per = out["local_porosity_images"]
    assert sorted(set(per.image_id)) == ["a", "b"] and set(per.condition) == {"20C"}
    assert len(per) == 2 * 2 * len(P10.bins)  # images × models × (bins + overflow)
    for iid, ph in (("a", a), ("b", b)):
        eta = etas[iid]
        for _, g in per[per.image_id == iid].groupby("method"):
            assert g.crack_um2.sum() == pytest.approx(eta**2 * int((ph == 2).sum()), rel=1e-12)
            assert g.solid_um2.sum() == pytest.approx(eta**2 * int((ph == 1).sum()), rel=1e-12)
            assert g.bin_lo.tolist() == list(P10.bins)
    summed = per.groupby(["method", "bin_lo"])[["crack_um2", "solid_um2"]].sum().sort_index()
    pooled = out["local_porosity"].set_index(["method", "bin_lo"])[["crack_um2", "solid_um2"]].sort_index()
    np.testing.assert_allclose(summed.to_numpy(), pooled.to_numpy(), rtol=1e-12, atol=0)
    empty = (per.crack_um2 + per.solid_um2) == 0
    assert per.porosity[empty].isna().all()
    assert np.allclose(per.porosity[~empty], (per.crack_um2 / (per.crack_um2 + per.solid_um2))[~empty])


# ------------------------------------------------------------------ adjusted data set (eq. 18–19)
def _ladder(lengths, shape=(120, 120)):
    """One disc with horizontal 1-px cracks of the given lengths, 3 rows apart."""
    ph = np.zeros(shape, np.uint8)
    ph[disc(shape, 60, 60, 55)] = 1
    for k, L in enumerate(lengths):
        ph[30 + 3 * k, 40 : 40 + L] = 2
    return ph


def test_adjusted_removes_the_n_pristine_smallest_kept_cracks_pooled_over_a_condition():
    a, b = _ladder([7, 12, 3, 20]), _ladder([9, 5, 15])
    c = _ladder([6, 8])
    fg_x = np.count_nonzero(a) + np.count_nonzero(b)
    area_x = ETA**2 * fg_x  # A of eq. 18 for condition x
    lam = 3.5 / area_x  # n_pristine = ⌊A λ⌋ = 3 for x; for y: ⌊A_y λ⌋
    area_y = ETA**2 * np.count_nonzero(c)
    n_y = math.floor(area_y * lam)
    assert n_y == 1
    out = run({"a": a, "b": b, "c": c}, condition=["x", "x", "y"],
              params=Params(marker_radius_um=10 * ETA, lambda_pristine_per_um2=lam))
    cr = out["cracks"]
    by = {(r.image_id, r.area_px): r for r in cr.itertuples()}
    assert not by[("a", 3)].kept and not by[("a", 3)].adjusted  # dropped by the size filter
    # condition x, kept cracks 5, 7, 9, 12, 15, 20: the 3 smallest (5, 7, 9) are removed
    adj_x = sorted(r.area_px for r in cr.itertuples() if r.condition == "x" and r.adjusted)
    assert adj_x == [12, 15, 20]
    # condition y: 1 removed (the 6)
    adj_y = sorted(r.area_px for r in cr.itertuples() if r.condition == "y" and r.adjusted)
    assert adj_y == [8]


def test_adjusted_with_lambda_zero_keeps_all_kept_cracks_and_huge_lambda_removes_all():
    ph = _ladder([4, 6, 9])
    out0 = run(ph, params=Params(marker_radius_um=10 * ETA, lambda_pristine_per_um2=0.0))
    assert (out0["cracks"].adjusted == out0["cracks"].kept).all()
    out1 = run(ph, params=Params(marker_radius_um=10 * ETA, lambda_pristine_per_um2=1e9))
    assert not out1["cracks"].adjusted.any()


def test_adjusted_ties_in_d_are_broken_by_image_id_then_crack_id():
    a, b = _ladder([6, 6]), _ladder([6])
    area = ETA**2 * (np.count_nonzero(a) + np.count_nonzero(b))
    out = run({"b": b, "a": a}, params=Params(marker_radius_um=10 * ETA, lambda_pristine_per_um2=2.5 / area))
    cr = out["cracks"]
    # removed: the two first of (a,1), (a,2), (b,1)
    assert cr.loc[cr.adjusted, ["image_id", "crack_id"]].values.tolist() == [["b", 1]]


# ------------------------------------------------------------------ several images
def test_several_images_keep_their_ids_conditions_and_pixel_sizes():
    a, b = one_crack_disc(length=20), one_crack_disc(length=30)
    out = run({"img-a": a, "img-b": b}, pixel_size_um=[0.01, 0.02], condition=["hot", "cold"])
    im = out["images"]
    assert im.image_id.tolist() == ["img-a", "img-b"]
    assert im.condition.tolist() == ["hot", "cold"]
    assert im.area_um2.tolist() == pytest.approx([1e-4 * np.count_nonzero(a), 4e-4 * np.count_nonzero(b)])
    assert out["cracks"].length_um.tolist() == pytest.approx([0.01 * 20, 0.02 * 30])
    cond = out["conditions"].set_index("condition")
    assert cond.n_images.to_dict() == {"hot": 1, "cold": 1}
    assert cond.porosity_std.isna().all()  # one image per condition: ddof=1 std undefined
    # ids from image_ids and from a list
    out2 = run([a, b], image_ids=["p", "q"], scheduler="threads")
    assert out2["images"].image_id.tolist() == ["p", "q"]
    out3 = run([a, b], scheduler="threads")
    assert out3["images"].image_id.tolist() == ["image_000", "image_001"]


def test_conditions_table_is_mean_and_sample_std_over_images():
    imgs = {f"i{k}": one_crack_disc(length=L) for k, L in enumerate([10, 20, 40])}
    out = run(imgs, condition="c", scheduler="threads")
    fg = np.count_nonzero(imgs["i0"])  # same disc in all three
    rho = np.array([10, 20, 40]) / fg
    c = out["conditions"].iloc[0]
    assert c.porosity_mean == pytest.approx(rho.mean())
    assert c.porosity_std == pytest.approx(rho.std(ddof=1))
    assert c.porosity_pooled == pytest.approx(70 / (3 * fg))
    assert (c.n_images, c.n_cracks, c.n_particles) == (3, 3, 3)


# ------------------------------------------------------------------ hypothesis invariants
_DCENTER = describe_mod.dcenter_tables
_DCENTER_CACHE: dict = {}


def _cached_dcenter(params):
    """The d_center tables, computed once per parameter set (speeds up the hypothesis test)."""
    if params not in _DCENTER_CACHE:
        _DCENTER_CACHE[params] = _DCENTER(params)
    return _DCENTER_CACHE[params]


@st.composite
def phase_maps(draw):
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["noise", "blobs"]))
    if kind == "noise":
        return draw(hnp.arrays(np.uint8, (h, w), elements=st.integers(0, 2)))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    ph = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(0, 5)):
        ph[disc((h, w), rng.uniform(-5, h + 5), rng.uniform(-5, w + 5), rng.uniform(2, 15))] = 1
    mask = (rng.random((h, w)) < rng.uniform(0, 0.3)) & (ph > 0)
    ph[mask] = 2
    return ph


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ph=phase_maps(), r=st.sampled_from([1.0, 2.0, 3.5]), lam=st.sampled_from([0.0, 50.0, 1e4]))
def test_invariants_on_random_phase_maps(ph, r, lam):
    params = Params(marker_radius_um=r * 0.05, lambda_pristine_per_um2=lam)  # r px at 0.05 µm
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(describe_mod, "dcenter_tables", _cached_dcenter)
        out = describe(ph, pixel_size_um=0.05, params=params, scheduler="sync")
    assert_schema(out)
    im = out["images"].iloc[0]
    n_solid, n_crack = int((ph == 1).sum()), int((ph == 2).sum())
    assert (im.solid_px, im.crack_px) == (n_solid, n_crack)
    if n_solid + n_crack == 0:
        assert math.isnan(im.porosity) and math.isnan(im.crack_intensity_per_um2)
    else:
        assert 0.0 <= im.porosity <= 1.0
        assert im.porosity == n_crack / (n_solid + n_crack)
    cr, pa = out["cracks"], out["particles"]
    assert cr.area_px.sum() == n_crack  # every crack pixel is in a labelled crack
    assert (cr.area_px >= 1).all() and (cr.skeleton_px >= 1).all()
    assert (cr.skeleton_px <= cr.area_px).all()
    assert cr.crack_id.tolist() == list(range(1, len(cr) + 1))
    assert (cr.kept == (cr.area_px >= 5)).all()
    assert not (cr.adjusted & ~cr.kept).any()  # adjusted ⊆ kept
    assert im.n_cracks == cr.kept.sum() and im.n_cracks_unfiltered == len(cr)
    assert (cr.width_um > 0).all()
    assert pa.area_px.sum() <= n_solid + n_crack
    assert ((pa.porosity >= 0) & (pa.porosity <= 1)).all()
    assert pa.particle_id.is_unique
    assert set(cr.particle_id) <= set(pa.particle_id) | {0}
    kept_per_p = cr[cr.kept & (cr.particle_id > 0)].particle_id.value_counts()
    assert pa.set_index("particle_id").n_cracks.sum() == kept_per_p.sum()
    lp = out["local_porosity"]
    total_area = 0.05**2 * pa.area_px.sum()
    for _, g in lp.groupby("method"):
        assert g.crack_um2.sum() + g.solid_um2.sum() <= total_area * (1 + 1e-9)
        assert ((g.porosity >= 0) & (g.porosity <= 1) | g.porosity.isna()).all()



# ------------------------------------------------------------------ empty and bad input
def test_image_without_cracks_gives_an_empty_typed_cracks_table_and_zero_intensity():
    ph = np.zeros((60, 60), np.uint8)
    ph[disc(ph.shape, 30, 30, 25)] = 1
    out = run(ph)
    assert_schema(out)
    assert len(out["cracks"]) == 0
    im = out["images"].iloc[0]
    assert im.n_cracks == 0 and im.crack_intensity_per_um2 == 0.0 and im.porosity == 0.0
    assert out["particles"].n_cracks.tolist() == [0]
    assert out["conditions"].n_cracks.tolist() == [0]


def test_all_background_gives_empty_tables_and_nan_porosity_without_error():
    out = run(np.zeros((50, 70), np.uint8))
    assert_schema(out)
    assert len(out["cracks"]) == 0 and len(out["particles"]) == 0
    im = out["images"]
    assert len(im) == 1
    assert (im.solid_px.iloc[0], im.crack_px.iloc[0], im.n_cracks.iloc[0]) == (0, 0, 0)
    assert im.porosity.isna().all() and im.crack_intensity_per_um2.isna().all()
    assert im.area_um2.iloc[0] == 0.0
    lp = out["local_porosity"]
    assert (lp.crack_um2 == 0).all() and (lp.solid_um2 == 0).all() and lp.porosity.isna().all()
    c = out["conditions"].iloc[0]
    assert math.isnan(c.porosity_mean) and math.isnan(c.porosity_pooled)
    assert math.isnan(c.intensity_pooled_per_um2)
    assert (c.n_images, c.n_cracks, c.n_particles) == (1, 0, 0)


def test_image_that_is_all_crack_is_one_crack_of_infinite_width():
    ph = np.full((12, 15), 2, np.uint8)
    out = run(ph, params=Params(marker_radius_um=3 * ETA))
    im = out["images"].iloc[0]
    assert im.porosity == 1.0 and im.crack_px == 180
    assert out["cracks"].area_px.sum() == 180
    assert np.isinf(out["cracks"].width_um).all()  # no S<2 pixel: r_disk = +inf (min of ∅)


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.array([[0, 1], [3, 2]], np.uint8), ["image_000", "3", "0, 1, 2"]),
        (np.array([[0, -1], [1, 2]], np.int16), ["image_000", "-1"]),
        (np.zeros((5, 5), np.float32), ["image_000", "float32"]),
        (np.zeros((5, 5), bool), ["image_000", "bool"]),
        (np.zeros((5, 5, 3), np.uint8), ["image_000", "RGB"]),
        (np.zeros((0, 0), np.uint8), ["image_000", "empty"]),
        (np.zeros((4,), np.uint8), ["image_000", "2D"]),
    ],
)
def test_bad_phase_maps_raise_input_error_naming_the_image(bad, words):
    with pytest.raises(InputError) as e:
        run(bad)
    for w in words:
        assert w in str(e.value)


def test_bad_value_in_one_chunk_of_a_dask_array_raises_input_error():
    import dask.array as da

    ph = np.zeros((80, 80), np.uint8)
    ph[70, 70] = 7
    with pytest.raises(InputError, match="7"):
        run({"m": da.from_array(ph, chunks=40)}, scheduler="threads")


@pytest.mark.parametrize("size", [None, 0, -1.0, float("nan"), float("inf"), "0.0143"])
def test_bad_pixel_size_raises_input_error_naming_pixel_size(size):
    with pytest.raises(InputError, match="pixel"):
        run(one_crack_disc(), pixel_size_um=size)


def test_numpy_scalar_pixel_sizes_are_accepted():
    ref = run(one_crack_disc())
    for s in (np.float32(ETA), np.float64(ETA)):
        out = run(one_crack_disc(), pixel_size_um=s)
        assert out["cracks"].length_um.iloc[0] == pytest.approx(ref["cracks"].length_um.iloc[0], rel=1e-6)


@pytest.mark.parametrize("cond", [20, 3.5, b"20C", ["a", 1]])
def test_non_string_condition_raises_input_error(cond):
    ph = one_crack_disc()
    with pytest.raises(InputError, match="condition"):
        run([ph, ph] if isinstance(cond, list) else ph, condition=cond, scheduler="threads")


def test_mismatched_lengths_and_duplicate_ids_raise_input_error():
    ph = one_crack_disc()
    with pytest.raises(InputError, match="pixel_size_um"):
        run([ph, ph], pixel_size_um=[ETA])
    with pytest.raises(InputError, match="image_ids"):
        run([ph, ph], image_ids=["a"])
    with pytest.raises(InputError, match="unique"):
        run([ph, ph], image_ids=["a", "a"])
    with pytest.raises(InputError, match="no phase maps"):
        run([])


@pytest.mark.parametrize("chunk", [0, -5, 2.5])
def test_bad_chunk_size_raises_input_error(chunk):
    with pytest.raises(InputError, match="chunk_px"):
        run(one_crack_disc(), chunk_px=chunk)


def test_label_count_beyond_uint32_is_refused_by_the_particle_id_guard():
    from cathodeflow.stages import particles as sp

    class Huge:  # stands for an array of 2**32 first-pixel indices without allocating it
        size = 2**32

    with pytest.raises(InputError, match="uint32"):
        sp._canonical(Huge())
