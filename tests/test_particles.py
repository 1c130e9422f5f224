"""Tests of the particle-wise segmentation (paper eq. 8–10; DESIGN §4.4 item 7)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage.segmentation import watershed

from cathodeflow.errors import InputError
import cathodeflow.stages.particles as particles_module
from cathodeflow.stages.particles import (
    FROM_OUTSIDE,
    flood_markers,
    marker_threshold,
    particle_labels,
    particle_labels_dask,
    squared_edt,
    watershed_reference,
)
from cathodeflow.tiling.components import first_pixels

EIGHT = np.ones((3, 3), bool)


# ---------------------------------------------------------------- helpers (ground truth)
def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def random_discs(rng, shape=(200, 300), n=(4, 14), radius=(8.0, 30.0), cracks=6):
    """Discs (some overlapping, some cut by the frame) with thin crack lines inside."""
    ph = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(*n)):
        ph[disc(shape, rng.uniform(-10, shape[0] + 10), rng.uniform(-10, shape[1] + 10), rng.uniform(*radius))] = 1
    for _ in range(cracks):
        y, x, a = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(0, np.pi)
        for s in np.linspace(0, 30, 61):
            py, px = int(y + s * np.sin(a)), int(x + s * np.cos(a))
            if 0 <= py < shape[0] and 0 <= px < shape[1] and ph[py, px]:
                ph[py, px] = 2
    return ph


def pixel_agreement(ref: np.ndarray, ours: np.ndarray) -> tuple[int, int]:
    """(# pixels of B where the two labelings disagree under the best label matching, #B)."""
    b = ref > 0
    pairs, counts = np.unique(np.stack([ref[b], ours[b]]), axis=1, return_counts=True)
    best = {}
    for r, c in zip(pairs[0], counts):
        best[r] = max(best.get(r, 0), c)
    return int(b.sum() - sum(best.values())), int(b.sum())


def markers_of(ph, r):
    """Marker components (eq. 10) from scipy's EDT of the whole image (independent path)."""
    d = ndi.distance_transform_edt(ph > 0)
    return ndi.label(d >= r, structure=EIGHT)[0]


# ---------------------------------------------------------------- hand geometry
def test_two_touching_discs_split_along_the_neck():
    shape = (140, 300)
    ph = (disc(shape, 70, 100, 60) | disc(shape, 70, 218, 60)).astype(np.uint8)  # neck at x = 159
    lab = particle_labels(ph)
    assert lab.dtype == np.uint32 and lab.max() == 2
    xx = np.broadcast_to(np.arange(shape[1]), shape)
    # the left disc's first pixel (40, 100) comes before the right one's (40, 218)
    assert xx[lab == 1].max() <= 159 and xx[lab == 2].min() >= 159
    np.testing.assert_array_equal(lab > 0, ph > 0)
    assert lab[70, 100] == 1 and lab[70, 218] == 2


def test_disc_cut_by_the_image_frame_is_kept():
    shape = (150, 300)
    d = disc(shape, 10, 150, 60)  # centre 10 px from the top edge; the frame is not background
    lab = particle_labels(d.astype(np.uint8))
    np.testing.assert_array_equal(lab, d.astype(np.uint32))


def test_component_without_marker_stays_zero():
    shape = (200, 300)
    big, small = disc(shape, 100, 80, 60), disc(shape, 100, 240, 20)  # small: D ≤ 21 < 50
    lab = particle_labels((big | small).astype(np.uint8))
    np.testing.assert_array_equal(lab, big.astype(np.uint32))


def test_disc_with_inner_crack_is_one_particle_including_the_crack():
    shape = (160, 160)
    d = disc(shape, 80, 80, 70)
    ph = d.astype(np.uint8)
    ph[40:120, 78:80] = 2  # a 2-px crack through the centre, inside the disc
    ph[80, 20:140] = 2
    lab = particle_labels(ph)
    np.testing.assert_array_equal(lab, d.astype(np.uint32))


def test_marker_radius_is_inclusive():
    ph = np.zeros((9, 9), np.uint8)
    ph[1:8, 1:8] = 1  # 7×7 square: centre has D = 4 exactly
    assert particle_labels(ph, marker_radius_px=4.0).max() == 1
    assert particle_labels(ph, marker_radius_px=4.0001).max() == 0


def test_radius_at_most_one_gives_8_connected_components():
    ph = np.zeros((6, 6), np.uint8)
    ph[1, 1] = ph[2, 2] = 1  # diagonal: one 8-component
    ph[4, 4:6] = 2
    lab = particle_labels(ph, marker_radius_px=1.0)
    want = np.zeros((6, 6), np.uint32)
    want[1, 1] = want[2, 2] = 1
    want[4, 4:6] = 2
    np.testing.assert_array_equal(lab, want)
    np.testing.assert_array_equal(particle_labels_dask(da.from_array(ph, chunks=2), marker_radius_px=0.5).compute(), want)


def test_empty_inputs_give_zero_labels():
    for shape in [(0, 0), (0, 7), (5, 0)]:
        assert particle_labels(np.zeros(shape, np.uint8)).shape == shape
    np.testing.assert_array_equal(particle_labels(np.zeros((30, 40), np.int64)), 0)
    out = particle_labels_dask(da.zeros((30, 40), dtype=np.uint8, chunks=16)).compute()
    assert out.dtype == np.uint32 and not out.any()
    assert particle_labels_dask(da.zeros((0, 4), dtype=np.uint8)).shape == (0, 4)


def test_image_without_background_is_one_particle():
    lab = particle_labels(np.ones((20, 30), np.uint8), marker_radius_px=50)
    np.testing.assert_array_equal(lab, 1)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 4), np.float32), "dtype float32"),
        (np.zeros((4, 4), bool), "dtype bool"),
        (np.array([[0, 1], [2, 3]], np.uint8), "from 0 to 3"),
        (np.full((4, 4), -1, np.int16), "from -1 to -1"),
        (np.zeros((2, 4, 4), np.uint8), "shape"),
    ],
)
def test_invalid_phase_maps_are_rejected_with_a_named_argument(bad, match):
    with pytest.raises(InputError, match="phase") as e:
        particle_labels(bad)
    assert match in str(e.value)
    with pytest.raises(InputError, match=match):
        particle_labels_dask(da.from_array(bad))


@pytest.mark.parametrize("r", [0, -1, float("nan"), float("inf"), "abc"])
def test_invalid_marker_radius_is_rejected(r):
    with pytest.raises(InputError, match="marker_radius_px"):
        particle_labels(np.zeros((4, 4), np.uint8), marker_radius_px=r)


def test_marker_threshold_matches_float_comparison():
    for r in [0.3, 1.0, 1.5, 2**0.5, 7.07, 49.99, 50.0, 50.0000001, 123.456]:
        t = marker_threshold(r)
        assert np.sqrt(float(t)) >= r and (t == 0 or np.sqrt(float(t - 1)) < r)


# ---------------------------------------------------------------- kernels
@settings(max_examples=80, deadline=None)
@given(hnp.arrays(bool, st.tuples(st.integers(1, 30), st.integers(1, 30)), elements=st.booleans()))
def test_squared_edt_is_exact_against_scipy(fg):
    d2 = squared_edt(fg)
    if fg.all():
        assert (d2 > 10**15).all()  # no background: D = ∞
        return
    d = ndi.distance_transform_edt(fg)
    np.testing.assert_array_equal(np.sqrt(d2.astype(np.float64)), d)
    np.testing.assert_array_equal(d2, np.rint(d * d).astype(np.int64))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(bool, st.tuples(st.integers(2, 40), st.integers(2, 40)), elements=st.booleans()))
def test_component_crop_with_others_as_background_gives_the_exact_edt(fg):
    """Module claim: D on K from K's crop (+1 px margin, non-K = background) equals D."""
    if fg.all():
        return
    whole = ndi.distance_transform_edt(fg)
    comp, n = ndi.label(fg)
    for k, box in enumerate(ndi.find_objects(comp), start=1):
        cb = tuple(slice(max(0, s.start - 1), min(dim, s.stop + 1)) for s, dim in zip(box, fg.shape))
        inside = comp[cb] == k
        if inside.all():
            continue
        d = np.sqrt(squared_edt(inside).astype(np.float64))
        np.testing.assert_array_equal(d[inside], whole[cb][inside])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_flood_equals_skimage_when_marker_keys_are_distinct(seed):
    """Without ties among marker pixels the bucket flood is scikit-image's flood exactly."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(3, 30, 2)
    inside = rng.random((h, w)) < rng.uniform(0.5, 1.0)
    d2 = rng.integers(0, rng.integers(1, 12), (h, w)).astype(np.int64)
    markers = np.zeros((h, w), np.int32)
    idx = rng.choice(h * w, size=min(h * w, int(rng.integers(1, 8))), replace=False)
    markers.flat[idx] = rng.integers(1, 4, idx.size)
    d2.flat[idx] = 100 + rng.permutation(idx.size)  # distinct, above every other key
    markers = np.where(inside, markers, 0)
    ours = flood_markers(d2, inside, markers)
    ref = watershed(-d2.astype(np.float64), markers, mask=inside)
    np.testing.assert_array_equal(ours, ref)


def test_roots_from_outside_split_a_strip_with_the_marker_by_key_then_arrival():
    """A 1 × 10 strip, marker on the left, a path from outside entering on the right: both
    fronts fall through equal keys 4, 3, 2, 1 one step apart, so they meet in the middle;
    without the outside root the marker takes the whole strip."""
    d2 = np.array([[9, 4, 3, 2, 1, 1, 2, 3, 4, 5]], np.int64)
    inside = np.ones_like(d2, bool)
    markers = np.zeros_like(d2, np.int32)
    markers[0, 0] = 7
    edge = np.zeros_like(inside)
    edge[0, -1] = True
    o = FROM_OUTSIDE
    np.testing.assert_array_equal(flood_markers(d2, inside, markers, outside=edge), [[7] * 5 + [o] * 5])
    np.testing.assert_array_equal(flood_markers(d2, inside, markers), [[7] * 10])


def _window_edge(window, shape):
    ring = np.zeros((window[0].stop - window[0].start, window[1].stop - window[1].start), bool)
    ring[0] |= window[0].start > 0
    ring[-1] |= window[0].stop < shape[0]
    ring[:, 0] |= window[1].start > 0
    ring[:, -1] |= window[1].stop < shape[1]
    return ring


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_window_flood_labels_every_pixel_a_marker_wins_as_the_whole_flood_does(seed):
    """The exactness rule of the windowed flood: on any window, with the window's inner
    edge as roots from outside, a pixel won by a marker has the whole array's label, and a
    pixel nothing reaches is 0 in the whole array too (random keys with many ties)."""
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(3, 40, 2))
    inside = rng.random((h, w)) < rng.uniform(0.6, 1.0)
    d2 = rng.integers(0, rng.integers(1, 6), (h, w)).astype(np.int64)
    markers = np.zeros((h, w), np.int32)
    idx = rng.choice(h * w, size=min(h * w, int(rng.integers(1, 10))), replace=False)
    markers.flat[idx] = rng.integers(1, 5, idx.size)
    d2.flat[idx] = 10 + rng.integers(0, 3, idx.size)  # ties among markers too
    markers = np.where(inside, markers, 0)
    whole = flood_markers(d2, inside, markers)
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
    win = (slice(y0, int(rng.integers(y0 + 1, h + 1))), slice(x0, int(rng.integers(x0 + 1, w + 1))))
    part = flood_markers(d2[win], inside[win], markers[win], outside=_window_edge(win, (h, w)))
    decided = part != FROM_OUTSIDE
    np.testing.assert_array_equal(part[decided], whole[win][decided])


def percolating_mosaic(shape=(260, 330), tile=(90, 110), seed=0, r=(9.0, 16.0)):
    """Tiles of overlapping discs with a solid frame, so the solid is one component
    across the map (like whole-slide cross-sections of touching particles)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint8)
    for y in range(0, shape[0], tile[0]):
        for x in range(0, shape[1], tile[1]):
            t = random_discs(rng, shape=tile, n=(6, 12), radius=r, cracks=4)
            t[0], t[-1], t[:, 0], t[:, -1] = 1, 1, 1, 1
            out[y : y + tile[0], x : x + tile[1]] = t[: shape[0] - y, : shape[1] - x]
    return out


@pytest.mark.parametrize("chunks", [(37, 53), (64, 90), (130, 41)])
def test_percolating_solid_is_segmented_in_windows_equal_to_the_whole_image(chunks, monkeypatch):
    """A component spanning the map, larger than ``max_component_px``: it is flooded
    in chunk windows (some redone with a wider halo), none covering the whole component,
    and the labels equal the whole-image flood exactly."""
    ph = percolating_mosaic()
    comp, _ = ndi.label(ph > 0)
    spanning = np.intersect1d(comp[0], comp[-1])
    assert spanning[spanning > 0].size == 1  # one component from the top row to the bottom row
    whole = particle_labels(ph, marker_radius_px=6.0)
    assert whole.max() >= 30
    windows = []
    kernel = particles_module._flood_window_kernel

    def spy(oid, box, *crops, **kw):
        out = kernel(oid, box, *crops, **kw)
        windows.append(((box[0].stop - box[0].start) * (box[1].stop - box[1].start), out[0] > 0))
        return out

    monkeypatch.setattr(particles_module, "_flood_window_kernel", spy)
    tiled = particle_labels_dask(da.from_array(ph, chunks=chunks), marker_radius_px=6.0, max_component_px=5000)
    np.testing.assert_array_equal(tiled.compute(scheduler="sync"), whole)
    n_chunks = len(tiled.chunks[0]) * len(tiled.chunks[1])
    assert len(windows) > n_chunks  # some chunks were redone with a wider halo
    assert any(undecided for _, undecided in windows)
    assert max(a for a, _ in windows) < ph.size


def test_percolating_windows_on_a_multiprocess_cluster_with_scratch_equal_the_whole_image():
    """The windowed flood through two worker processes, its intermediate results in an
    on-disk scratch store that every worker reads."""
    distributed = pytest.importorskip("distributed")
    from cathodeflow.tiling.scratch import Scratch

    ph = percolating_mosaic(seed=3)
    whole = particle_labels(ph, marker_radius_px=6.0)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster), Scratch() as scratch:
        tiled = particle_labels_dask(da.from_array(ph, chunks=(64, 90)), marker_radius_px=6.0,
                                     scratch=scratch, max_component_px=5000).compute()
    np.testing.assert_array_equal(tiled, whole)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.floats(1.5, 8.0), st.integers(16, 60), st.integers(16, 60))
def test_windowed_components_equal_the_whole_image_for_any_chunks(seed, r, cy, cx):
    rng = np.random.default_rng(seed)
    ph = random_discs(rng, shape=(80, 110), n=(6, 30), radius=(3.0, 22.0), cracks=4)
    want = particle_labels(ph, marker_radius_px=r)
    got = particle_labels_dask(da.from_array(ph, chunks=(cy, cx)), marker_radius_px=r, max_component_px=200)
    np.testing.assert_array_equal(got.compute(scheduler="sync"), want)


# ---------------------------------------------------------------- invariants
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.floats(1.2, 9.0))
def test_particles_partition_the_components_that_hold_a_marker(seed, r):
    rng = np.random.default_rng(seed)
    ph = random_discs(rng, shape=(60, 80), n=(1, 8), radius=(2.0, 14.0), cracks=3)
    lab = particle_labels(ph, marker_radius_px=r)
    b = ph > 0
    markers = markers_of(ph, r)
    comp, _ = ndi.label(b)
    with_marker = np.isin(comp, np.unique(comp[markers > 0])) & b
    np.testing.assert_array_equal(lab > 0, with_marker)  # labels>0 ⊆ B, no component lost
    n = int(lab.max())
    assert n == markers.max()  # one particle per marker component
    for k in range(1, n + 1):
        p = lab == k
        assert ndi.label(p)[1] == 1  # 4-connected
        assert np.unique(markers[p & (markers > 0)]).size == 1  # holds exactly one marker
    first = first_pixels(lab, n)[1:]
    assert np.all(np.diff(first) > 0)  # numbered in raster order of first pixels


def test_agreement_with_scikit_image_watershed():
    rng = np.random.default_rng(2023)
    bad = total = 0
    for _ in range(25):
        ph = random_discs(rng)
        r = rng.uniform(3, 12)
        ref, ours = watershed_reference(ph, r), particle_labels(ph, marker_radius_px=r)
        np.testing.assert_array_equal(ref > 0, ours > 0)
        assert ref.max() == ours.max()
        d, n = pixel_agreement(ref, ours)
        bad, total = bad + d, total + n
    assert total > 200_000
    assert bad / total <= 1e-3, f"{bad} of {total} pixels differ from scikit-image"


def test_only_the_order_of_tied_marker_pixels_differs_from_scikit_image():
    """scikit-image fed marker priorities in our stated order (D² descending, then raster)
    reproduces our labels exactly: every remaining difference is a tie among markers."""
    rng = np.random.default_rng(5)
    for _ in range(30):
        ph = random_discs(rng, n=(3, 20), radius=(5.0, 40.0))
        r = rng.uniform(1.5, 15)
        b = ph > 0
        d = ndi.distance_transform_edt(b)
        markers = markers_of(ph, r)
        idx = np.flatnonzero(markers)
        order = idx[np.lexsort((idx, -np.rint(d * d).ravel()[idx]))]
        image = -d
        image.flat[order] = -1e9 + np.arange(order.size)  # distinct, below every other value
        ref = watershed(image, markers, mask=b)
        assert pixel_agreement(ref, particle_labels(ph, marker_radius_px=r))[0] == 0


# ---------------------------------------------------------------- tiled == whole
CHUNKS = [(37, 53), (64, 41), (200, 300), (13, 300), (200, 17)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiled_equals_whole_threaded(seed):
    rng = np.random.default_rng(seed)
    ph = random_discs(rng)
    r = [4.0, 7.5, 10.0][seed]
    whole = particle_labels(ph, marker_radius_px=r)
    assert whole.max() >= 3
    for chunks in CHUNKS:
        tiled = particle_labels_dask(da.from_array(ph, chunks=chunks), marker_radius_px=r)
        assert tiled.dtype == np.uint32 and tiled.chunks == da.from_array(ph, chunks=chunks).chunks
        np.testing.assert_array_equal(tiled.compute(scheduler="threads"), whole)


def test_tiled_equals_whole_distributed():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(7)
    ph = random_discs(rng, n=(10, 16))
    whole = particle_labels(ph, marker_radius_px=6.0)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster):
        for chunks in [(37, 53), (64, 41)]:
            tiled = particle_labels_dask(da.from_array(ph, chunks=chunks), marker_radius_px=6.0).compute()
            np.testing.assert_array_equal(tiled, whole)


def test_dask_input_may_be_a_numpy_array():
    ph = disc((50, 60), 25, 30, 20).astype(np.uint8)
    np.testing.assert_array_equal(particle_labels_dask(ph, marker_radius_px=10).compute(), ph.astype(np.uint32))


@pytest.mark.slow
def test_paper_radius_on_a_large_map_matches_reference_and_tiles():
    rng = np.random.default_rng(11)
    ph = random_discs(rng, shape=(1500, 2000), n=(30, 40), radius=(60.0, 160.0), cracks=60)
    ours = particle_labels(ph)
    ref = watershed_reference(ph)
    np.testing.assert_array_equal(ours > 0, ref > 0)
    d, n = pixel_agreement(ref, ours)
    assert d / n <= 1e-3
    tiled = particle_labels_dask(da.from_array(ph, chunks=(512, 700))).compute()
    np.testing.assert_array_equal(tiled, ours)


# ---------------------------------------------------------------- h-maxima markers (not in the paper)
def two_discs_with_a_wide_neck():
    """Discs of radius 60 px, centres 90 px apart: D is 60 at the centres and 40 on the neck
    (half-width √(60² − 45²) = 39.7 px), so the dome of each disc rises 20 px above the
    saddle between them."""
    shape = (160, 260)
    ph = (disc(shape, 80, 80, 60) | disc(shape, 80, 170, 60)).astype(np.uint8)
    d = ndi.distance_transform_edt(ph > 0)
    assert d[80, 125] == 40.0 and round(d.max()) == 60
    return ph


def test_h_maxima_markers_split_touching_discs_whose_neck_is_wider_than_2r():
    ph = two_discs_with_a_wide_neck()
    assert particle_labels(ph, marker_radius_px=30).max() == 1  # eq. 10: D ≥ 30 joins both discs
    lab = particle_labels(ph, marker_radius_px=30, marker_h_px=15)  # dynamic 20 ≥ 15: split
    assert lab.max() == 2
    left, right = lab[80, 80], lab[80, 170]
    assert left != right and left > 0 and right > 0
    # the boundary runs through the neck, the line x = 125 of the symmetric pair
    cols = np.nonzero(ph[:, :125].any(axis=0))[0]
    assert np.all(lab[:, cols][ph[:, cols] > 0] == left)
    assert np.all(lab[:, 126:][ph[:, 126:] > 0] == right)
    # a dome lower than h is no marker of its own: one particle again
    assert particle_labels(ph, marker_radius_px=30, marker_h_px=25).max() == 1


def test_h_maxima_markers_leave_a_single_particle_whole_and_keep_the_radius_rule():
    shape = (120, 120)
    one = disc(shape, 60, 60, 40).astype(np.uint8)
    np.testing.assert_array_equal(particle_labels(one, marker_radius_px=30, marker_h_px=5),
                                  particle_labels(one, marker_radius_px=30))
    # D ≥ r still applies: a disc of radius 20 has no marker with r = 30, whatever h
    small = disc(shape, 60, 60, 20).astype(np.uint8)
    assert particle_labels(small, marker_radius_px=30, marker_h_px=5).max() == 0


@pytest.mark.parametrize("h", [0, -1.0, float("nan")])
def test_invalid_h_is_rejected(h):
    with pytest.raises(InputError, match="marker_h_px"):
        particle_labels(np.ones((5, 5), np.uint8), marker_radius_px=2, marker_h_px=h)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.floats(1.5, 12.0), st.floats(0.5, 10.0),
       st.sampled_from(CHUNKS))
def test_h_maxima_markers_tiled_equal_whole_for_any_chunks(seed, r, h, chunks):
    ph = random_discs(np.random.default_rng(seed))
    whole = particle_labels(ph, marker_radius_px=r, marker_h_px=h)
    tiled = particle_labels_dask(da.from_array(ph, chunks=chunks), marker_radius_px=r, marker_h_px=h)
    np.testing.assert_array_equal(tiled.compute(scheduler="sync"), whole)


def test_h_maxima_markers_refuse_a_component_too_large_for_one_task():
    ph = two_discs_with_a_wide_neck()
    with pytest.raises(InputError, match="marker_h_um"):
        particle_labels_dask(da.from_array(ph, chunks=64), marker_radius_px=30, marker_h_px=15,
                             max_component_px=1000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 1.0))
def test_reconstruction_by_dilation_equals_scikit_image(seed, h, w, density):
    from skimage.morphology import reconstruction

    from cathodeflow.stages.particles import reconstruct_by_dilation

    rng = np.random.default_rng(seed)
    mask = rng.integers(0, 50, (h, w))
    marker = np.minimum(mask, rng.integers(0, 60, (h, w))) * (rng.random((h, w)) < density)
    want = reconstruction(marker.astype(float), mask.astype(float), method="dilation")
    np.testing.assert_array_equal(reconstruct_by_dilation(marker, mask), want.astype(np.int64))
