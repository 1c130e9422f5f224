"""Object geometry columns of the cracks and particles tables (centroid, bounding box,
orientation, radial angle, distance, equivalent and Feret diameters): exact values on
hand-drawn shapes, and tiled == whole for every new column.

Coordinates are µm from the image's top-left pixel corner, y down: pixel (i, j) covers
[iη, (i+1)η) × [jη, (j+1)η) and its centre is ((i + ½)η, (j + ½)η).
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from skimage.draw import line

from _geometry import disc

from cathodeflow.config import Params
from cathodeflow.io.tables import OPTIONAL, SCHEMAS, conform
from cathodeflow.measure.image import describe_phase
from cathodeflow.measure.particles import feret_diameter_px
from cathodeflow.measure.tiled import describe_phase_dask

ETA = 0.05
PARAMS = Params(marker_radius_um=10 * ETA)  # r = 10 px
pytestmark = pytest.mark.filterwarnings("ignore::cathodeflow.errors.PixelSizeWarning")
CRACK_GEOMETRY = OPTIONAL["cracks"]
PARTICLE_GEOMETRY = OPTIONAL["particles"]


def describe_whole(phase):
    return describe_phase(phase, image_id="x", condition="c", pixel_size_um=ETA, params=PARAMS)


def one_crack_near(cracks, row, col):
    """The crack row whose centroid is within 1 px of pixel centre (row, col)."""
    d = np.hypot(cracks.centroid_y_um / ETA - (row + 0.5), cracks.centroid_x_um / ETA - (col + 0.5))
    hit = cracks[d < 1.0]
    assert len(hit) == 1, cracks
    return hit.iloc[0]


def disc_with(slits, *, shape=(200, 200), cy=100, cx=100, r=60):
    """A solid disc (one particle) with crack rectangles ``slits`` = [(r0, r1, c0, c1)]
    (inclusive pixel bounds) cut into it."""
    ph = disc(shape, cy, cx, r).astype(np.uint8)
    for r0, r1, c0, c1 in slits:
        ph[r0:r1 + 1, c0:c1 + 1] = 2
    return ph


def test_rectangle_crack_has_exact_centroid_bounding_box_and_horizontal_axis():
    # crack pixels rows 30..33, cols 40..59 (4 × 20) inside a disc
    out = describe_whole(disc_with([(30, 33, 40, 59)], cy=40, cx=50, r=35, shape=(90, 110)))
    c = out.cracks
    assert len(c) == 1 and c.area_px[0] == 80
    assert c.centroid_y_um[0] == 32 * ETA  # mean pixel centre: 31.5 + 0.5
    assert c.centroid_x_um[0] == 50 * ETA  # 49.5 + 0.5
    assert (c.bbox_y0_um[0], c.bbox_y1_um[0]) == (30 * ETA, 34 * ETA)
    assert (c.bbox_x0_um[0], c.bbox_x1_um[0]) == (40 * ETA, 60 * ETA)
    assert c.orientation_deg[0] == 0.0


def test_radial_slit_has_radial_angle_zero_and_tangential_slit_ninety():
    # disc centre (100, 100): a horizontal slit to its right (radial), a vertical slit
    # below it (horizontal line from the centre: tangential), each 3 px wide
    ph = disc_with([(99, 101, 125, 155), (130, 132, 85, 115)])
    out = describe_whole(ph)
    p = out.particles
    assert len(p) == 1
    assert (p.centroid_y_um[0], p.centroid_x_um[0]) == (100.5 * ETA, 100.5 * ETA)  # symmetric
    radial = one_crack_near(out.cracks, 100, 140)
    assert radial.particle_id == p.particle_id[0]
    assert radial.orientation_deg == 0.0
    assert radial.radial_angle_deg == 0.0
    assert radial.distance_to_particle_center_um == pytest.approx(40 * ETA, rel=1e-12)
    tangential = one_crack_near(out.cracks, 131, 100)
    assert tangential.orientation_deg == 0.0
    assert tangential.radial_angle_deg == 90.0
    assert tangential.distance_to_particle_center_um == pytest.approx(31 * ETA, rel=1e-12)


def diagonal_slit(ph, y0, x0, n, sign):
    """Pixels (y0 + k, x0 + sign·k) for k = 0..n, thickened by one pixel right (sign = 1) or
    left and one down: the set is symmetric about its diagonal line."""
    for k in range(n + 1):
        ph[y0 + k, x0 + sign * k] = ph[y0 + k, x0 + sign * (k + 1)] = ph[y0 + k + 1, x0 + sign * k] = 2


def test_diagonal_slits_orientation_is_counter_clockwise_as_displayed():
    ph = disc((200, 200), 100, 100, 60).astype(np.uint8)
    diagonal_slit(ph, 115, 115, 20, 1)  # on the line y = x through the centre (100, 100)
    diagonal_slit(ph, 60, 140, 20, -1)  # on the line y + x = 200 through the centre
    out = describe_whole(ph)
    down_right = one_crack_near(out.cracks, 125 + 1 / 3, 125 + 1 / 3)
    # y grows downwards, so a crack going down to the right is at -45° = 135° on screen
    assert down_right.orientation_deg == pytest.approx(135.0, abs=1e-9)
    assert down_right.radial_angle_deg == pytest.approx(0.0, abs=1e-9)
    assert down_right.distance_to_particle_center_um == pytest.approx(
        ETA * math.sqrt(2) * (25 + 1 / 3), rel=1e-12)
    up_right = one_crack_near(out.cracks, 70 + 1 / 3, 130 - 1 / 3)
    assert up_right.orientation_deg == pytest.approx(45.0, abs=1e-9)
    assert up_right.radial_angle_deg == pytest.approx(0.0, abs=1e-9)


def test_crack_in_no_particle_has_geometry_but_no_radial_angle_or_distance():
    ph = disc((120, 160), 60, 50, 40).astype(np.uint8)
    ph[100:103, 120:130] = 2  # a crack island in the background: no marker, no particle
    c = describe_whole(ph).cracks
    assert len(c) == 1 and c.particle_id[0] == 0
    assert c.centroid_y_um[0] == 101.5 * ETA and c.centroid_x_um[0] == 125 * ETA
    assert c.orientation_deg[0] == 0.0
    assert np.isnan(c.radial_angle_deg[0]) and np.isnan(c.distance_to_particle_center_um[0])


def test_disc_particle_equivalent_diameter_is_2r_within_pixelation_and_box_is_exact():
    r = 60
    p = describe_whole(disc((200, 200), 100, 100, r).astype(np.uint8)).particles
    assert len(p) == 1
    # pixels with centres within r cover the disc of radius r up to a band of half-diagonal
    # √2/2 px: |#P − πr²| ≤ π((r + √2/2)² − r²), so |d_eq − 2r| < √2/2 px
    assert abs(p.equivalent_diameter_um[0] / ETA - 2 * r) < math.sqrt(2) / 2
    assert (p.bbox_y0_um[0], p.bbox_y1_um[0]) == ((100 - r) * ETA, (100 + r + 1) * ETA)
    assert (p.bbox_x0_um[0], p.bbox_x1_um[0]) == ((100 - r) * ETA, (100 + r + 1) * ETA)
    # Feret over pixel corners: at least the box width 2r + 1; every corner lies within
    # r + √2/2 of the centre, so at most 2r + √2
    assert 2 * r + 1 <= p.feret_diameter_um[0] / ETA + 1e-9 <= 2 * r + math.sqrt(2)


def test_rectangle_particle_feret_is_its_diagonal_and_centroid_its_centre():
    ph = np.zeros((80, 100), np.uint8)
    ph[10:40, 20:70] = 1  # 30 × 50 px
    p = describe_whole(ph).particles
    assert len(p) == 1 and p.area_px[0] == 1500
    assert p.feret_diameter_um[0] == ETA * math.sqrt(30**2 + 50**2)
    assert (p.centroid_y_um[0], p.centroid_x_um[0]) == (25 * ETA, 45 * ETA)
    assert (p.bbox_y0_um[0], p.bbox_x0_um[0], p.bbox_y1_um[0], p.bbox_x1_um[0]) == (
        10 * ETA, 20 * ETA, 40 * ETA, 70 * ETA)
    assert p.equivalent_diameter_um[0] == 2 * ETA * math.sqrt(1500 / math.pi)


@pytest.mark.parametrize(
    "mask, expected",
    [
        (np.ones((1, 1), bool), math.sqrt(2)),  # one pixel: its square's diagonal
        (np.ones((3, 7), bool), math.sqrt(3**2 + 7**2)),
        (np.eye(5, dtype=bool), 5 * math.sqrt(2)),  # diagonal line: corner (0,0) to (5,5)
        (np.pad(np.eye(4, dtype=bool)[::-1], 2), 4 * math.sqrt(2)),  # padding changes nothing
        (np.array([[1, 0, 0, 0], [1, 1, 1, 1]], bool), math.sqrt(2**2 + 4**2)),  # L shape
    ],
)
def test_feret_diameter_is_the_largest_distance_between_pixel_corners(mask, expected):
    assert feret_diameter_px(mask) == pytest.approx(expected, rel=1e-15)


def geometry_map(shape=(170, 230)):
    """Discs cut by chunk boundaries of 37 and 41 px, with straight cracks crossing them."""
    ph = np.zeros(shape, np.uint8)
    for cy, cx, r in [(45, 50, 38), (50, 150, 42), (125, 90, 40), (130, 195, 30), (0, 100, 15)]:
        ph[disc(shape, cy, cx, r)] = 1
    for k, (r0, c0, r1, c1) in enumerate([(20, 30, 70, 75), (50, 120, 52, 185), (100, 60, 150, 110),
                                          (115, 185, 145, 205), (30, 140, 80, 160), (2, 95, 8, 108)]):
        rr, cc = line(r0, c0, r1, c1)
        for w in range(1 + k % 3):
            rw = np.clip(rr + w, 0, shape[0] - 1)
            m = ph[rw, cc] > 0
            ph[rw[m], cc[m]] = 2
    ph[160:163, 10:20] = 2  # a crack island: in no particle
    return ph


@pytest.mark.parametrize("chunks", [(37, 41), (60, 23)])
def test_tiled_geometry_columns_equal_whole_image_ones(chunks):
    ph = geometry_map()
    kw = dict(image_id="x", condition="c", pixel_size_um=ETA, params=PARAMS)
    w = describe_phase(ph, **kw)
    t = describe_phase_dask(da.from_array(ph, chunks=chunks), scratch=False, **kw)
    # the map exercises the columns: cracks in particles and outside, several particles
    assert len(w.particles) >= 4 and (w.cracks.particle_id == 0).any()
    assert w.cracks.radial_angle_deg.notna().sum() >= 4
    assert w.particles[list(PARTICLE_GEOMETRY)].notna().all().all()
    pd.testing.assert_frame_equal(t.cracks[list(CRACK_GEOMETRY)], w.cracks[list(CRACK_GEOMETRY)],
                                  check_exact=True)
    pd.testing.assert_frame_equal(t.particles[list(PARTICLE_GEOMETRY)],
                                  w.particles[list(PARTICLE_GEOMETRY)], check_exact=True)


def test_tables_written_before_the_geometry_columns_read_them_as_nan():
    ph = np.zeros((80, 100), np.uint8)
    ph[10:40, 20:70] = 1
    old = describe_whole(ph).particles.drop(columns=list(PARTICLE_GEOMETRY))
    got = conform(old, "particles")
    assert list(got.columns) == list(SCHEMAS["particles"])
    assert got[list(PARTICLE_GEOMETRY)].isna().all().all()
