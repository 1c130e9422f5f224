"""Method parameters mean what they say (DESIGN §4.1, §4.3): lengths in µm converted with each
image's pixel size, old pixel keys refused, absurd pixel sizes refused, parameter sets hashed
per stage, and tables that carry their parameters."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest

import cathodeflow
from cathodeflow.config import (
    LAYOUT_PARAMS,
    SR_AUTO_MAX_PIXEL_UM,
    STAGE_PARAMS,
    Params,
    check_pixel_size_um,
    load_params,
    params_changes,
    params_hash,
    params_record,
    stage_params,
    warn_marker_radius,
    warn_sr_input,
)
from cathodeflow.errors import InputError, PixelSizeWarning
from cathodeflow.io.tables import read_table, read_table_metadata, write_tables
from cathodeflow.study.describe import describe
from cathodeflow.stages.particles import marker_threshold


def two_touching_discs(scale: int) -> np.ndarray:
    """Phase map (1 = solid) of two discs of radius 20·scale px whose centres are 34·scale px
    apart: the neck between them is √(20² − 17²)·scale ≈ 10.5·scale px half-wide."""
    shape = (60 * scale, 90 * scale)
    yy, xx = np.mgrid[: shape[0], : shape[1]] + 0.5  # pixel centres
    ph = np.zeros(shape, np.uint8)
    for cx in (28, 62):
        ph[(yy - 30 * scale) ** 2 + (xx - cx * scale) ** 2 <= (20 * scale) ** 2] = 1
    return ph


# ------------------------------------------------------------------ lengths in µm
def test_paper_marker_radius_is_exactly_50_px_at_the_paper_pixel_size():
    p = Params()
    assert p.marker_radius_um == 0.715
    assert p.marker_radius_px_at(0.0143) == 50.0  # not 50.000000000000007
    assert marker_threshold(p.marker_radius_px_at(0.0143)) == 2500  # D >= 50 <=> D² >= 2500
    assert Params(marker_radius_um=10 * 0.0143).marker_radius_px_at(0.0143) == 10.0
    assert p.marker_radius_px_at(0.0143 / 2) == 100.0
    assert Params(min_particle_area_um2=1000 * 0.0143**2).min_particle_area_px_at(0.0143) == 1000.0


def test_same_radius_in_um_gives_the_same_particles_on_a_geometry_scaled_by_two():
    # r = 0.28 µm: 14 px at 0.02 µm, 28 px at 0.01 µm; the neck is 10.5 resp. 21 px half-wide,
    # so {D >= r} has one component per disc at both scales: two particles of half the union each
    params = Params(marker_radius_um=0.28, stereology_models=("paper",))
    coarse, fine = two_touching_discs(1), two_touching_discs(2)
    out = {eta: describe(ph, pixel_size_um=eta, params=params, scheduler="sync")["particles"]
           for eta, ph in ((0.02, coarse), (0.01, fine))}
    for eta, ph in ((0.02, coarse), (0.01, fine)):
        half_union_um2 = eta**2 * np.count_nonzero(ph) / 2
        assert len(out[eta]) == 2
        np.testing.assert_allclose(out[eta].area_um2, half_union_um2, rtol=0.01)
    np.testing.assert_allclose(out[0.02].area_um2, out[0.01].area_um2, rtol=0.01)
    # the same 14 in pixels at the fine scale (the old meaning) is half the physical radius:
    # r < the neck's half-width, one marker, the two discs become one particle
    old = describe(fine, pixel_size_um=0.01, params=Params(marker_radius_um=14 * 0.01), scheduler="sync")
    assert len(old["particles"]) == 1


def test_min_particle_area_is_in_square_micrometres():
    # a disc of radius 20 px and one of 6 px (0.4 and 0.12 µm at 0.02 µm), apart; at both
    # scales a threshold of 0.2 µm² (500 px, resp. 2000 px) keeps the big particle only
    params = Params(marker_radius_um=0.1, min_particle_area_um2=0.2, stereology_models=("paper",))
    for eta, scale in ((0.02, 1), (0.01, 2)):
        yy, xx = np.mgrid[: 60 * scale, : 90 * scale] + 0.5
        ph = np.zeros(yy.shape, np.uint8)
        big = (yy - 30 * scale) ** 2 + (xx - 28 * scale) ** 2 <= (20 * scale) ** 2
        ph[big] = 1
        ph[(yy - 30 * scale) ** 2 + (xx - 70 * scale) ** 2 <= (6 * scale) ** 2] = 1
        parts = describe(ph, pixel_size_um=eta, params=params, scheduler="sync")["particles"]
        assert parts.area_px.tolist() == [np.count_nonzero(big)]
        everything = describe(ph, pixel_size_um=eta, params=params.replace(min_particle_area_um2=0.0),
                              scheduler="sync")["particles"]
        assert len(everything) == 2  # the small disc is a particle, left out by its area


@pytest.mark.parametrize("old, new, conversion", [
    ("marker_radius_px", "marker_radius_um", "0.715 µm"),
    ("min_particle_area_px", "min_particle_area_um2", "0.2045 µm²"),
])
def test_old_pixel_keys_are_refused_naming_the_new_key_and_the_conversion(tmp_path, old, new, conversion):
    cfg = tmp_path / "p.toml"
    cfg.write_text(f"[params]\n{old} = 50\n")
    with pytest.raises(InputError) as e:
        load_params(cfg)
    msg = str(e.value)
    assert "\n" not in msg and str(cfg) in msg and new in msg and conversion in msg
    with pytest.raises(InputError, match=new):
        load_params(**{old: 50})
    with pytest.raises(TypeError):
        Params(**{old: 50})


@pytest.mark.parametrize("field, value", [("marker_radius_um", 0), ("marker_radius_um", -0.5),
                                          ("marker_radius_um", float("nan")), ("marker_radius_um", "1"),
                                          ("min_particle_area_um2", -1.0), ("min_crack_d_factor", True)])
def test_bad_parameter_values_are_refused_naming_the_field(field, value):
    with pytest.raises(InputError, match=field):
        Params(**{field: value})


# ------------------------------------------------------------------ pixel sizes
@pytest.mark.parametrize("value", [14.3, 38.5, 10.0001, 1e-5, 9.9e-5])
def test_absurd_pixel_sizes_are_refused_as_a_unit_slip(value):
    with pytest.raises(InputError) as e:
        check_pixel_size_um(value, name="x.tif")
    msg = str(e.value)
    assert msg.startswith("x.tif:") and "in µm" in msg and "unit slip" in msg and "\n" not in msg


@pytest.mark.parametrize("value", [1e-4, 0.0027, 0.0143, 0.0385, 10.0])
def test_plausible_pixel_sizes_are_accepted(value):
    assert check_pixel_size_um(value, name="x") == value


def test_describe_refuses_a_pixel_size_in_nm():
    ph = two_touching_discs(1)
    with pytest.raises(InputError, match=r"img: pixel_size_um.*14\.3 µm.*in µm"):
        describe({"img": ph}, pixel_size_um=14.3, scheduler="sync")


@pytest.mark.parametrize("eta, warns", [(0.0143, False), (0.0027, False), (0.2, True), (0.001, True)])
def test_marker_radius_of_under_5_or_over_500_px_warns(eta, warns):
    # 0.715 µm: 50 px, 265 px, 3.6 px, 715 px
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_marker_radius(Params(), eta)
    hits = [w for w in caught if issubclass(w.category, PixelSizeWarning)]
    assert len(hits) == warns
    if warns:
        assert f"{0.715 / eta:.4g} px" in str(hits[0].message)


def _pixel_size_warnings(warn, eta) -> list[str]:
    """The PixelSizeWarning messages of ``warn(eta, name="image(s) a")``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn(eta, name="image(s) a")
    return [str(w.message) for w in caught if issubclass(w.category, PixelSizeWarning)]


@pytest.mark.parametrize("eta, warns", [(0.0385, False), (0.0193, False), (0.077, False),
                                        (0.019, True), (0.0771, True), (0.007344, True)])
def test_raw_pixel_size_more_than_2x_from_385_nm_warns(eta, warns):
    hits = _pixel_size_warnings(warn_sr_input, eta)
    assert len(hits) == warns
    if warns:  # the way out is named only for images finer than the sr stage's input
        assert ("--sr-method none" in hits[0] and "--phase-method unet" in hits[0]) == (eta < 0.0385)


@pytest.mark.parametrize("eta, method", [(0.0143, "none"), (0.007344, "none"), (0.02346, "none"),
                                         (0.02347, "baseline"), (0.0385, "baseline"), (0.1, "baseline")])
def test_sr_method_auto_leaves_images_up_to_23_5_nm_as_they_are_and_interpolates_coarser_ones(eta, method):
    # 23.46 nm = sqrt(14.3 nm · 38.5 nm): as far (as a ratio) from the phase stage's grid as
    # from the sr stage's 38.5 nm input
    assert SR_AUTO_MAX_PIXEL_UM == pytest.approx((0.0143 * 0.0385) ** 0.5, abs=1e-6)
    p = Params().for_image(eta)
    assert p.sr_method == method
    assert p.replace(sr_method="auto") == Params()  # nothing else changes
    for fixed in ("baseline", "none", "srgan"):  # a method chosen by the user stays
        assert Params(sr_method=fixed).for_image(eta).sr_method == fixed


# ------------------------------------------------------------------ parameter sets per stage
def test_every_parameter_belongs_to_one_stage_or_only_to_the_tiling():
    fields = [f.name for f in dataclasses.fields(Params)]
    owners = {f: [s for s, names in STAGE_PARAMS.items() if f in names] for f in fields}
    unclassified = [f for f in fields if not owners[f] and f not in LAYOUT_PARAMS]
    assert unclassified == []  # a new field must say which stage's results it changes
    assert all(len(o) <= 1 for o in owners.values())
    assert not set(LAYOUT_PARAMS) & set().union(*STAGE_PARAMS.values())
    assert set().union(*STAGE_PARAMS.values()) <= set(fields)


def test_params_hash_is_sha256_of_canonical_json_and_ignores_int_vs_float():
    import hashlib

    values = stage_params(Params(), "labels")
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert params_hash(values) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert params_hash(dict(reversed(list(values.items())))) == params_hash(values)
    assert params_record(Params(marker_radius_um=1), "labels") == params_record(Params(marker_radius_um=1.0), "labels")
    assert params_record(Params(marker_radius_um=0.5), "labels")["params_hash"] != params_hash(values)
    # a parameter of another stage, or of the tiling only, leaves the labels' hash alone
    assert params_record(Params(lambda_pristine_per_um2=0.0, chunk_px=64, unet_tile_px=64), "labels") == \
        params_record(Params(), "labels")


def test_params_changes_names_each_changed_parameter_with_old_and_new_values():
    old = stage_params(Params(), "labels")
    new = stage_params(Params(marker_radius_um=0.5, bins=(0.0, 0.5, 1.0)), "labels")
    assert params_changes(old, new) == "marker_radius_um 0.715 -> 0.5, bins [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, " \
        "0.6, 0.7, 0.8, 0.9, 1.0] -> [0.0, 0.5, 1.0]"
    assert params_changes(None, new) == "its parameters were not recorded"


# ------------------------------------------------------------------ tables carry their parameters
def test_tables_carry_params_hash_and_package_version_in_their_parquet_metadata(tmp_path):
    params = Params(marker_radius_um=0.3)
    tables = describe({"a": two_touching_discs(1)}, pixel_size_um=0.02, params=params, scheduler="sync")
    rec = params_record(params, "labels", "tables")
    paths = write_tables(tables, tmp_path, metadata=rec)
    for name, path in paths.items():
        meta = read_table_metadata(path)
        assert meta == {**rec, "package_version": cathodeflow.__version__}
        assert meta["params"]["marker_radius_um"] == 0.3
        pd.testing.assert_frame_equal(read_table(path, name), tables[name])  # dtypes kept
    tables["images"].to_parquet(tmp_path / "plain.parquet")
    assert read_table_metadata(tmp_path / "plain.parquet") == {}


def test_marker_h_is_in_the_labels_record_only_when_set_so_older_records_stay_current():
    unset = stage_params(Params(), "labels")
    assert "marker_h_um" not in unset  # a store made before the field existed keeps its hash
    p = Params(marker_h_um=0.286)
    assert stage_params(p, "labels")["marker_h_um"] == 0.286
    assert params_record(p, "labels")["params_hash"] != params_record(Params(), "labels")["params_hash"]
    assert p.marker_h_px_at(0.0143) == 20.0 and Params().marker_h_px_at(0.0143) is None
    for bad in (0, -0.1, float("inf")):
        with pytest.raises(InputError, match="marker_h_um"):
            Params(marker_h_um=bad)
