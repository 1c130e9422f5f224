"""Phase maps: eq. 7 (probabilities → phases) and the classical baseline segmentation."""

from __future__ import annotations

import math
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi

from cathodeflow.errors import InputError
from cathodeflow.stages.phases import (
    _close_disk,
    _dilate_disk,
    _disk,
    adapted_options,
    baseline_halo_px,
    baseline_options,
    baseline_sigma_px,
    edge_blur_px,
    enclosed_solidity,
    estimate_levels,
    estimate_threshold,
    line_offsets,
    noise_index,
    noise_windows,
    phase_from_probabilities,
    phase_from_probabilities_dask,
    phase_scores,
    provenance,
    segment_phases_baseline,
    segment_phases_baseline_dask,
)

# ---------------------------------------------------------------------------------------------
# a synthetic SEM-like image drawn here, with its true phase map
# ---------------------------------------------------------------------------------------------


def render_sem_like(shape=(360, 480), seed=0):
    """Bright discs (particles) with thin dark lines (cracks, 1–3.5 px wide) strictly inside,
    on a darker, smoothly textured background, blurred slightly and with Gaussian noise."""
    rng = np.random.default_rng(seed)
    H, W = shape
    yy, xx = np.mgrid[:H, :W].astype(np.float64)
    truth = np.zeros(shape, np.uint8)
    discs = []
    for _ in range(400):
        if len(discs) == 6:
            break
        r, cy, cx = rng.uniform(45, 80), rng.uniform(0, H), rng.uniform(0, W)
        if all(np.hypot(cy - a, cx - b) > r + q + 8 for a, b, q in discs):
            discs.append((cy, cx, r))
    crack = np.zeros(shape, bool)
    for cy, cx, r in discs:
        rr = (yy - cy) ** 2 + (xx - cx) ** 2
        truth[rr <= r * r] = 1
        inner = rr <= (r - 3) ** 2
        for _ in range(int(rng.integers(2, 5))):
            ang, length, width = rng.uniform(0, np.pi), rng.uniform(0.6, 1.6) * r, rng.uniform(1.0, 3.5)
            oy, ox = cy + rng.uniform(-0.4, 0.4) * r, cx + rng.uniform(-0.4, 0.4) * r
            dy, dx = np.sin(ang), np.cos(ang)
            along = (yy - oy) * dy + (xx - ox) * dx
            across = np.abs(-(yy - oy) * dx + (xx - ox) * dy)
            crack |= (np.abs(along) <= length / 2) & (across <= width / 2) & inner
    truth[crack] = 2
    texture = ndi.gaussian_filter(rng.normal(size=shape), 6) * 6
    img = np.where(truth == 1, 0.70, np.where(truth == 2, 0.18, 0.25 + 0.06 * texture))
    img = ndi.gaussian_filter(img, 0.8) + rng.normal(0, 0.05, shape)
    return img.astype(np.float32), truth


def _hand_scores(pred, truth):
    out = {"accuracy": np.mean(pred == truth)}
    for k, name in enumerate(("background", "solid", "crack")):
        out[name] = np.sum((pred == k) & (truth == k)) / np.sum(truth == k)
    out["crack_precision"] = np.sum((pred == 2) & (truth == 2)) / np.sum(pred == 2)
    out["porosity_pred"] = np.sum(pred == 2) / np.sum(pred > 0)
    out["porosity_true"] = np.sum(truth == 2) / np.sum(truth > 0)
    return out


# Stated accuracy levels of the baseline on this sharp image, for three settings:
# * "sharp" (σ = 0.7 px, no dark-line test), measured for seeds 0 and 1: accuracy
#   0.998/0.998, background 0.9994/0.9997, solid 0.9968/0.9967, crack recall 0.945/0.914,
#   crack precision 0.937/0.929, porosity 0.0454 vs 0.0451 and 0.0396 vs 0.0403.
# * "pixel-test" (σ = 1.5 px, dark-line pixel contrast 0.3, no line test: the first
#   defaults), which widens sharp cracks: accuracy 0.989, background 0.999, solid
#   0.969/0.970, crack recall 0.956/0.977, crack precision 0.59/0.58, porosity 0.073 vs 0.045
#   and 0.068 vs 0.040.
# * the defaults (σ = 1.5 px, pixel contrast 0.2 and the line test, chosen for blurred
#   super-resolved images), which widen sharp cracks a little more: accuracy 0.985/0.988,
#   background 0.999/1.000, solid 0.956/0.967, crack recall 0.953/0.922, crack precision
#   0.51/0.54, porosity 0.085 vs 0.045 and 0.068 vs 0.040.
LEVELS = {
    "sharp": dict(
        options=dict(sigma_px=0.7, max_noise=0.0, crack_contrast=0.0),
        accuracy=0.99, background=0.99, solid=0.98, crack=0.85, crack_precision=0.80,
        porosity_error=0.006,
    ),
    "pixel-test": dict(
        options=dict(crack_contrast=0.3, line_contrast=0.0),
        accuracy=0.98, background=0.99, solid=0.95, crack=0.90, crack_precision=0.45,
        porosity_error=0.04,
    ),
    "defaults": dict(
        options={},
        accuracy=0.975, background=0.99, solid=0.94, crack=0.88, crack_precision=0.42,
        porosity_error=0.05,
    ),
}


@pytest.mark.parametrize("setting", sorted(LEVELS))
@pytest.mark.parametrize("seed", [0, 1])
def test_baseline_matches_drawn_truth_per_phase(seed, setting, record_property):
    level = LEVELS[setting]
    img, truth = render_sem_like(seed=seed)
    pred = segment_phases_baseline(img, **level["options"])
    s = _hand_scores(pred, truth)
    for k, v in s.items():
        record_property(k, round(float(v), 4))
    for name in ("accuracy", "background", "solid", "crack", "crack_precision"):
        assert s[name] > level[name], (name, s[name])
    assert abs(s["porosity_pred"] - s["porosity_true"]) < level["porosity_error"]


def _synth_generate_image():
    try:
        from cathodeflow.synth import generate_image
    except ImportError:
        return None
    return generate_image


@pytest.mark.skipif(_synth_generate_image() is None, reason="cathodeflow.synth not available")
def test_baseline_chain_on_a_synthetic_low_res_image():
    """Super-resolution (baseline) then phases (baseline) against the generator's truth.

    Loose levels: the baseline interpolation restores no detail, so thin cracks are found
    only in part (measured on 572×780 images: accuracy ≈ 0.98, crack recall 0.6–0.8,
    porosity within about ±30 % of the truth).
    """
    from cathodeflow.stages.superres import superres_baseline

    im = _synth_generate_image()("30C", seed=5, shape_lr=(260, 364))
    pred = segment_phases_baseline(superres_baseline(im.lr), pixel_size_um=im.pixel_size_hr_um)
    s = _hand_scores(pred, im.phase)
    assert s["accuracy"] > 0.95
    assert s["solid"] > 0.95 and s["background"] > 0.95
    assert s["crack"] > 0.3
    assert 0.4 < s["porosity_pred"] / s["porosity_true"] < 2.5


def test_phase_scores_agree_with_hand_counts():
    truth = np.array([[0, 0, 1, 1], [1, 2, 2, 1]])
    pred = np.array([[0, 1, 1, 1], [1, 2, 1, 1]])
    s = phase_scores(pred, truth)
    assert s["accuracy"] == pytest.approx(6 / 8)
    assert s["recall_background"] == pytest.approx(1 / 2)
    assert s["recall_solid"] == pytest.approx(1.0)
    assert s["recall_crack"] == pytest.approx(1 / 2)
    assert s["precision_solid"] == pytest.approx(4 / 6)
    assert s["porosity_true"] == pytest.approx(2 / 6)
    assert s["porosity_pred"] == pytest.approx(1 / 7)


def _band_image(band_px: int):
    # bright square 120 px with a vertical dark band through its middle, clean, no noise
    img = np.full((160, 160), 0.1, np.float32)
    img[20:140, 20:140] = 0.8
    lo = 80 - band_px // 2
    img[20:140, lo : lo + band_px] = 0.1
    return img, (slice(20, 140), slice(lo, lo + band_px))


def test_closing_bridges_cracks_up_to_the_stated_width():
    # pixel size η: 0.15 µm -> closing radius ceil(0.15 / 0.0286) = 6 px, bridges <= 12 px
    assert baseline_options(max_crack_width_um=0.15).close_radius_px == 6
    img, band = _band_image(8)
    closed = segment_phases_baseline(img, sigma_px=0, threshold=0.45, max_crack_width_um=0.15,
                                     open_necks=False)
    assert np.all(closed[band][3:-3] == 2)  # away from the square's top and bottom edge
    # the band crosses the whole particle: with open necks, its mouths (pixels within the
    # closing's 6 px of the background outside the envelope, whose boundary dips into the
    # band: 8 rows here) are background, like the neck between two touching particles
    s = segment_phases_baseline(img, sigma_px=0, threshold=0.45, max_crack_width_um=0.15)
    assert np.all(s[band][10:-10] == 2) and np.all(s[band][:8] == 0) and np.all(s[band][-8:] == 0)
    assert np.all(s[25:135, 25:70] == 1)
    assert np.all(s[:15] == 0)


def test_gap_wider_than_the_closing_disk_stays_background():
    img, band = _band_image(30)
    s = segment_phases_baseline(img, sigma_px=0, threshold=0.45, max_crack_width_um=0.15)
    assert np.all(s[band][:, 8:-8] == 0)


@pytest.mark.parametrize("chunks", [(97, 130), (150, 173), (360, 100), (64, 64)])
def test_tiled_equals_whole_exactly(chunks):
    img, _ = render_sem_like(seed=3)
    whole = segment_phases_baseline(img)
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=chunks)).compute()
    np.testing.assert_array_equal(tiled, whole)


def test_tiled_equals_whole_with_hole_filling_and_a_given_threshold():
    img, _ = render_sem_like(seed=4)
    opts = dict(max_hole_area_px=40, min_object_area_px=10, sigma_px=1.2)
    whole = segment_phases_baseline(img, threshold=0.5, **opts)
    tiled = segment_phases_baseline_dask(
        da.from_array(img, chunks=(111, 123)), threshold=0.5, **opts
    ).compute()
    np.testing.assert_array_equal(tiled, whole)


def test_threshold_is_one_global_value_shared_by_tiles():
    img, _ = render_sem_like(seed=0)
    from cathodeflow.stages.phases import estimate_threshold_dask

    t_dask = float(estimate_threshold_dask(da.from_array(img, chunks=77)).compute())
    assert t_dask == estimate_threshold(img)
    # between the dark and bright populations
    assert 0.3 < t_dask < 0.6


@settings(max_examples=20, deadline=None)
@given(
    cy=st.integers(20, 120),
    cx=st.integers(20, 120),
    seed=st.integers(0, 2**16),
)
def test_tiled_equals_whole_for_any_chunking(cy, cx, seed):
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random((150, 170)), 2).astype(np.float32)
    opts = dict(min_object_area_px=5, max_crack_width_um=0.06)
    whole = segment_phases_baseline(img, **opts)
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=(cy, cx)), **opts)
    np.testing.assert_array_equal(tiled.compute(), whole)


def test_dask_baseline_is_lazy_without_the_enclosed_background_step():
    # The enclosed-background step (on by default) needs global components, so the call
    # computes then (see test_enclosed_step_computes_each_image_chunk_once); switched off,
    # and with a fixed σ and fixed contrasts (what the noise and the blur would choose is
    # measured first), nothing is computed.
    img = da.random.random((300, 300), chunks=100)

    def scheduler(*a, **k):
        raise RuntimeError("computed")

    with dask.config.set(scheduler=scheduler):
        out = segment_phases_baseline_dask(img, max_enclosed_area_um2=0, max_noise=0, max_blur_px=0)
    assert out.shape == (300, 300) and out.dtype == np.uint8


def test_halo_is_the_sum_of_the_steps_reach():
    # gauss int(4*1.5+0.5)=6, then the longer of: opening 2*1 + small objects 30 +
    # closing 2*6 + holes 0 + open necks 6 = 50, and the dark-line chain: grey closing
    # 2*6 = 12 plus the larger of the line segments' half-length 10 and the edge test's 2 = 22; then small
    # crack components 40
    assert baseline_halo_px(max_noise=0) == 6 + 50 + 40
    assert baseline_halo_px(max_noise=0, open_necks=False) == 6 + 44 + 40
    # a noise-adaptive σ (the default) may grow to max_sigma_px = 6: gauss int(24.5) = 24,
    # and small crack components with σ²: 40 · (6 / 1.5)² = 640
    assert baseline_halo_px() == 24 + 50 + 640
    assert baseline_halo_px(max_sigma_px=3) == 12 + 50 + 160
    # (below, without the open necks the envelope chain is the closing's 12 px)
    assert baseline_halo_px(max_noise=0, min_object_area_px=0, open_radius_px=0) == 6 + 22 + 40  # envelope 12 + 6
    assert baseline_halo_px(max_noise=0, min_object_area_px=0, open_radius_px=0, open_necks=False, line_radius_px=3) == (
        6 + 15 + 40
    )
    # the line test off (either switch): the grey closing and the edge test's local peak (2 px)
    assert baseline_halo_px(max_noise=0, min_object_area_px=0, open_radius_px=0, open_necks=False, line_contrast=0) == (
        6 + 14 + 40
    )
    assert baseline_halo_px(max_noise=0, min_object_area_px=0, open_radius_px=0, open_necks=False, line_radius_px=0) == (
        6 + 14 + 40
    )
    # and the edge test off too: only the grey closing
    assert baseline_halo_px(max_noise=0, min_object_area_px=0, open_radius_px=0, open_necks=False, line_radius_px=0,
                            edge_fraction=0) == 6 + 12 + 40
    # a long segment makes the dark-line chain the longest
    assert baseline_halo_px(max_noise=0, line_radius_px=40) == 6 + (12 + 40) + 40
    assert baseline_halo_px(max_noise=0, sigma_px=0, open_radius_px=0, min_object_area_px=0,
                            max_crack_width_um=0, min_crack_area_px=0, line_radius_px=0) == 0
    # the enclosed-background step works on global components, not on the halo
    assert baseline_halo_px(max_enclosed_area_um2=1e6) == baseline_halo_px()


def test_provenance_labels_the_baseline():
    assert provenance()["method"] == "baseline-classical"


# ---------------------------------------------------------------------------------------------
# the line-mean test and the fast disk closing
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("radius, n", [(1, 1), (3, 4), (7, 12), (10, 8), (5, 7)])
def test_line_offsets_are_symmetric_connected_segments_within_the_radius(radius, n):
    off = line_offsets(radius, n)
    assert off.shape == (n, 2 * radius + 1, 2)
    for k in range(n):
        seg = off[k]
        # symmetric about the centre, which is the pixel itself
        np.testing.assert_array_equal(seg, -seg[::-1])
        assert tuple(seg[radius]) == (0, 0)
        # distinct pixels, 8-connected steps, all within Chebyshev distance `radius`
        assert len({tuple(p) for p in seg}) == 2 * radius + 1
        assert np.abs(np.diff(seg, axis=0)).max() <= 1
        assert np.abs(seg).max() == radius
    # k = 0 runs along a row
    np.testing.assert_array_equal(off[0, :, 0], 0)
    np.testing.assert_array_equal(off[0, :, 1], np.arange(-radius, radius + 1))
    if n % 2 == 0:  # k = n/2 runs along a column
        np.testing.assert_array_equal(off[n // 2, :, 1], 0)
    if n % 4 == 0:  # k = n/4 is the diagonal dy = dx
        np.testing.assert_array_equal(off[n // 4, :, 0], off[n // 4, :, 1])


@settings(max_examples=40, deadline=None)
@given(
    mask=arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))),
    radius=st.integers(0, 8),
)
def test_fast_disk_dilation_and_closing_equal_scipy(mask, radius):
    if radius == 0:
        np.testing.assert_array_equal(_dilate_disk(mask, 0), mask)
        return
    se = _disk(radius)
    dil = ndi.binary_dilation(mask, se, border_value=0)
    np.testing.assert_array_equal(_dilate_disk(mask, radius), dil)
    np.testing.assert_array_equal(
        _close_disk(mask, radius), ndi.binary_erosion(dil, se, border_value=1)
    )


def _dashed_line_image(seed, *, noise=0.08, line_depth=0.6, blob_depth=0.4):
    """Bright square (0.8) on a dark background (0.1); a 2-px dark line (rows 100–101,
    columns 50–209) drawn as 6-px dashes with 1-px gaps; six faint 7×7 blobs; Gaussian noise.
    The line and the blobs stay brighter than the threshold 0.45 after smoothing, so only
    the dark-line test can make them crack."""
    rng = np.random.default_rng(seed)
    img = np.full((200, 260), 0.1, np.float32)
    img[20:180, 20:240] = 0.8
    line = np.zeros(img.shape, bool)
    for x in range(50, 210, 7):
        line[100:102, x : min(x + 6, 210)] = True
    blobs = np.zeros(img.shape, bool)
    for y, x in [(50, 60), (50, 130), (50, 200), (150, 60), (150, 130), (150, 200)]:
        blobs[y - 3 : y + 4, x - 3 : x + 4] = True
    img[line] -= line_depth
    img[blobs] -= blob_depth
    img += rng.normal(0, noise, img.shape).astype(np.float32)
    return img, line, blobs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faint_dashed_line_in_noise_is_one_crack_and_faint_blobs_are_dropped(seed):
    # Measured for seeds 0-5: the defaults give one crack component covering 92-93 % of the
    # line (a few px are lost at each end, where the segments run off the line) and no crack
    # near the blobs; the pixel test alone at the same contrast (0.2) also finds the line
    # but keeps 220-270 px of crack at the blobs; at the first default contrast 0.3 it
    # breaks the line into 1-3 pieces and keeps the blobs.
    img, line, blobs = _dashed_line_image(seed)
    near_blobs = ndi.binary_dilation(blobs, iterations=4)
    s = segment_phases_baseline(img, threshold=0.45)
    labels, n = ndi.label(s == 2, structure=np.ones((3, 3)))
    assert n == 1
    assert np.mean(s[line] == 2) > 0.85
    assert not np.any(s[near_blobs] == 2)
    # the blobs are dark enough to pass the pixel test: the edge and line tests drop them
    pixel_only = segment_phases_baseline(img, threshold=0.45, line_contrast=0.0, edge_fraction=0.0)
    assert np.sum(pixel_only[near_blobs] == 2) > 100


@pytest.mark.parametrize("width, blur", [(7, 1.0), (7, 2.0), (8, 1.5)])
def test_edge_test_gives_a_blurred_crack_its_true_width(width, blur):
    # A straight crack of known width (px) at the background level across a solid, blurred
    # by a Gaussian: the pixel test's fixed contrast (0.2 Δμ) makes it 2 px too wide, the
    # edge test (h ≥ 0.5 of the local peak) gives the true width. (Measured limits: cracks
    # of 3-6 px stay 2 px too wide with and without it, and from 9 px on the threshold
    # alone gives the true width.)
    img = np.full((160, 200), 0.8)
    img[:, :20] = img[:, -20:] = 0.2
    img[40:120, 100 - width // 2 : 100 - width // 2 + width] = 0.2
    img = ndi.gaussian_filter(img, blur)
    kw = dict(threshold=0.5, max_noise=0, max_blur_px=0, max_enclosed_area_um2=0)
    rows = slice(60, 100)  # away from the crack's ends
    with_edges = segment_phases_baseline(img, **kw)[rows] == 2
    pixel_test = segment_phases_baseline(img, edge_fraction=0, **kw)[rows] == 2
    assert set(with_edges.sum(axis=1)) == {width}
    assert set(pixel_test.sum(axis=1)) == {width + 2}


def test_the_neck_between_two_touching_particles_is_not_crack():
    # Two disks of 60 px touching at one point: the envelope's closing fills the neck, and
    # without open_necks that fill is "crack" (it widened the neck until eq. 8-10 merged
    # touching particles); with it the map has no crack, and its foreground is the disks.
    yy, xx = np.mgrid[:200, :320]
    disks = ((yy - 100) ** 2 + (xx - 100) ** 2 <= 60**2) | ((yy - 100) ** 2 + (xx - 220) ** 2 <= 60**2)
    img = ndi.gaussian_filter(np.where(disks, 0.8, 0.2), 1.0)
    kw = dict(threshold=0.5, max_noise=0, max_blur_px=0)
    neck = (yy - 100) ** 2 + (xx - 160) ** 2 <= 15**2
    closed = segment_phases_baseline(img, open_necks=False, **kw)
    assert np.count_nonzero(closed[neck] == 2) > 20
    opened = segment_phases_baseline(img, **kw)
    assert not np.any(opened == 2)
    assert np.count_nonzero((opened > 0) & disks) / np.count_nonzero((opened > 0) | disks) > 0.99
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=(100, 160)), **kw).compute()
    np.testing.assert_array_equal(tiled, opened)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), lo=st.floats(0, 1), hi=st.floats(0, 1))
def test_raising_the_edge_fraction_only_removes_crack(seed, lo, hi):
    lo, hi = sorted((lo, hi))
    img, _ = render_sem_like(shape=(120, 150), seed=seed)
    s_lo = segment_phases_baseline(img, threshold=0.45, edge_fraction=lo)
    s_hi = segment_phases_baseline(img, threshold=0.45, edge_fraction=hi)
    assert not np.any((s_hi == 2) & (s_lo != 2))


def test_one_px_gaps_in_a_clean_dashed_line_are_joined():
    img, line, _ = _dashed_line_image(0, noise=0.0, blob_depth=0.0)
    s = segment_phases_baseline(img, threshold=0.45)
    labels, n = ndi.label(s == 2, structure=np.ones((3, 3)))
    assert n == 1
    # the gaps themselves (1 px between dashes) are crack, away from the line's ends
    gaps = np.zeros_like(line)
    gaps[100:102, 60:200] = True
    gaps &= ~line
    assert gaps.sum() == 2 * 20
    assert np.all(s[gaps] == 2)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), lo=st.floats(0, 0.5), hi=st.floats(0, 0.5))
def test_raising_the_line_contrast_only_removes_crack(seed, lo, hi):
    # The line test only removes candidates, and removing small components keeps the
    # inclusion (a kept component's superset is kept too): crack(hi) ⊆ crack(lo) ⊆ pixel test.
    lo, hi = sorted((lo, hi))
    img, _ = render_sem_like(shape=(120, 150), seed=seed)
    base = segment_phases_baseline(img, threshold=0.45, line_contrast=0.0)
    s_lo = segment_phases_baseline(img, threshold=0.45, line_contrast=lo)
    s_hi = segment_phases_baseline(img, threshold=0.45, line_contrast=hi)
    assert np.any(base == 2)  # the drawn cracks give the pixel test something to find
    assert not np.any((s_hi == 2) & (s_lo != 2))
    assert not np.any((s_lo == 2) & (base != 2))
    # solid ∪ crack (the envelope) does not depend on the dark-line test
    np.testing.assert_array_equal(s_hi > 0, base > 0)


@pytest.mark.parametrize("chunks", [(61, 70), (97, 130), (180, 240)])
@pytest.mark.parametrize(
    "opts",
    [
        dict(line_radius_px=4, line_orientations=5, line_contrast=0.25, crack_contrast=0.15),
        dict(line_radius_px=25, line_orientations=16, min_object_area_px=5,
             min_crack_area_px=10),
    ],
)
def test_tiled_equals_whole_with_the_line_test(chunks, opts):
    img, _ = render_sem_like(seed=5)
    whole = segment_phases_baseline(img, **opts)
    assert np.any(whole == 2)
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=chunks), **opts).compute()
    np.testing.assert_array_equal(tiled, whole)


def test_tiled_equals_whole_for_a_dashed_line_across_tile_borders():
    img, _, _ = _dashed_line_image(1)
    whole = segment_phases_baseline(img, threshold=0.45)
    # chunks of 100 x 130 px (both wider than the 90-px halo, so kept as given): the tile
    # border between rows 99 and 100 runs along the line's edge, the one at column 130
    # cuts it
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=(100, 130)), threshold=0.45)
    assert tiled.chunks == ((100, 100), (130, 130))
    assert np.any(whole[100:102, 120:140] == 2)
    np.testing.assert_array_equal(tiled.compute(), whole)


# ---------------------------------------------------------------------------------------------
# enclosed background -> crack (internal pores, hollow cores)
# ---------------------------------------------------------------------------------------------
#: Options that reduce the baseline to "solid = image > threshold" (no smoothing, no
#: morphology, no dark-line test; halo 0), so the enclosed-background step is all that acts.
RAW = dict(sigma_px=0, max_noise=0, open_radius_px=0, min_object_area_px=0, max_crack_width_um=0,
           crack_contrast=0, min_crack_area_px=0, threshold=0.5)


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _two_hollow_particles():
    """200 x 300 image, bright solid (0.9) on dark background (0.1), at 0.1 µm per pixel:
    A, disc r = 60 at (100, 105) with a square core rows 80-119, cols 85-124
    (40 x 40 = 1600 px = 16 µm²); B, disc r = 60 at (100, 230) with a square pore rows
    70-129, cols 200-259 (60 x 60 = 3600 px = 36 µm²); C, disc r = 40 at (195, 15), cut by
    the bottom and left frame, with a disc core r = 15 that reaches the bottom row."""
    shape = (200, 300)
    solid = _disc(shape, 100, 105, 60) | _disc(shape, 100, 230, 60) | _disc(shape, 195, 15, 40)
    core_a = np.zeros(shape, bool)
    core_a[80:120, 85:125] = True
    pore_b = np.zeros(shape, bool)
    pore_b[70:130, 200:260] = True
    core_c = _disc(shape, 195, 15, 15)
    solid &= ~(core_a | pore_b | core_c)
    img = np.where(solid, 0.9, 0.1).astype(np.float32)
    return img, solid, core_a, pore_b, core_c


def test_baseline_options_convert_the_enclosed_area_limit_to_pixels():
    # 30 / 0.0143² = 146 706.4 px; 16 / 0.1² is 1600 px exactly (not 1599 by rounding)
    assert baseline_options().max_enclosed_area_px == 146706
    opts = baseline_options(pixel_size_um=0.1, max_enclosed_area_um2=16)
    assert opts.max_enclosed_area_px == 1600
    assert baseline_options(max_enclosed_area_um2=0).max_enclosed_area_px == 0


def test_hollow_core_becomes_crack_and_a_pore_above_the_limit_stays_background():
    img, solid, core_a, pore_b, core_c = _two_hollow_particles()
    expected = solid.astype(np.uint8)
    # default limit 30 µm²: A's core (16 µm²) is crack, B's pore (36 µm²) is not, C's core
    # touches the frame and stays background
    s = segment_phases_baseline(img, pixel_size_um=0.1, **RAW)
    expected_a = expected.copy()
    expected_a[core_a] = 2
    np.testing.assert_array_equal(s, expected_a)
    # the limit is inclusive, in µm²: 16 µm² takes A's core, 15.99 does not
    s16 = segment_phases_baseline(img, pixel_size_um=0.1, max_enclosed_area_um2=16, **RAW)
    np.testing.assert_array_equal(s16, expected_a)
    s_below = segment_phases_baseline(img, pixel_size_um=0.1, max_enclosed_area_um2=15.99, **RAW)
    np.testing.assert_array_equal(s_below, expected)
    # 36 µm² takes B's pore too, 35.99 does not
    expected_ab = expected_a.copy()
    expected_ab[pore_b] = 2
    s36 = segment_phases_baseline(img, pixel_size_um=0.1, max_enclosed_area_um2=36, **RAW)
    np.testing.assert_array_equal(s36, expected_ab)
    s_b = segment_phases_baseline(img, pixel_size_um=0.1, max_enclosed_area_um2=35.99, **RAW)
    np.testing.assert_array_equal(s_b, expected_a)
    # C's core stays background at any limit: it is cut by the frame
    s_all = segment_phases_baseline(img, pixel_size_um=0.1, max_enclosed_area_um2=1e4, **RAW)
    assert np.all(s_all[core_c] == 0)


def test_option_zero_switches_the_enclosed_step_off():
    img, solid, *_ = _two_hollow_particles()
    s = segment_phases_baseline(img, pixel_size_um=0.1, max_enclosed_area_um2=0, **RAW)
    np.testing.assert_array_equal(s, solid.astype(np.uint8))


def test_annulus_pocket_open_to_the_frame_stays_background():
    # at 0.05 µm per pixel: an inner disc r = 25 and an outer ring 50 < d <= 70 around
    # (100, 150); the annular pocket 25 < d <= 50 (about 14.7 µm², below the limit) is
    # joined to the outside background by a 5-px slit through the ring's top
    shape = (200, 300)
    d2 = (np.mgrid[:200, :300][0] - 100) ** 2 + (np.mgrid[:200, :300][1] - 150) ** 2
    annulus = (d2 > 25**2) & (d2 <= 50**2)
    closed = (d2 <= 25**2) | ((d2 > 50**2) & (d2 <= 70**2))
    slit = np.zeros(shape, bool)
    slit[25:55, 148:153] = True
    open_ring = closed & ~slit
    s = segment_phases_baseline(np.where(open_ring, 0.9, 0.1), pixel_size_um=0.05, **RAW)
    np.testing.assert_array_equal(s, open_ring.astype(np.uint8))
    # control: without the slit the same pocket is enclosed and becomes crack when the
    # solidity rule lets it ((50² − 25²) / 50² = 0.75 of its hull) ...
    img = np.where(closed, 0.9, 0.1)
    s_closed = segment_phases_baseline(img, pixel_size_um=0.05, min_enclosed_solidity=0.75, **RAW)
    assert np.all(s_closed[annulus] == 2)
    np.testing.assert_array_equal(s_closed[~annulus], closed[~annulus].astype(np.uint8))
    # ... and stays background with the default 0.8, like a pocket between touching particles
    s_default = segment_phases_baseline(img, pixel_size_um=0.05, **RAW)
    np.testing.assert_array_equal(s_default, closed.astype(np.uint8))


def test_background_joined_only_diagonally_is_enclosed():
    # 4-connected background: the centre pixel touches the open pixel (3, 3) only at a
    # corner, so it is enclosed; (3, 3) is 4-connected to the frame and stays background
    solid = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 1, 0, 1, 0],
            [0, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    s = segment_phases_baseline(np.where(solid, 0.9, 0.1), **RAW)
    expected = solid.astype(np.uint8)
    expected[2, 2] = 2
    np.testing.assert_array_equal(s, expected)


@pytest.mark.parametrize("limit_um2", [0, 16, 30, 36, 1e4])
def test_tiled_equals_whole_with_holes_cut_by_chunks_and_the_frame(limit_um2):
    img, *_ = _two_hollow_particles()
    kw = dict(pixel_size_um=0.1, max_enclosed_area_um2=limit_um2, **RAW)
    whole = segment_phases_baseline(img, **kw)
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=(37, 53)), **kw)
    # the halo is 0, so the chunks are kept: row 111 and columns 106 and 212 cut the
    # holes of A and B, C is cut by the frame
    assert tiled.chunks == ((37,) * 5 + (15,), (53,) * 5 + (35,))
    np.testing.assert_array_equal(tiled.compute(), whole)


def _hollow_particle_image(seed=0):
    """300 x 400 image at 0.05 µm per pixel: a particle of radius 110 px (5.5 µm) at
    (150, 200) with a hollow core of radius 55 px (2.75 µm, π·2.75² ≈ 23.8 µm² < 30),
    a second, solid particle of radius 70 px cut by the right frame; solid 0.7, background
    0.2, slightly blurred, Gaussian noise σ = 0.03."""
    rng = np.random.default_rng(seed)
    shape = (300, 400)
    solid = (_disc(shape, 150, 200, 110) & ~_disc(shape, 150, 200, 55)) | _disc(
        shape, 80, 390, 70
    )
    img = ndi.gaussian_filter(np.where(solid, 0.7, 0.2), 0.8) + rng.normal(0, 0.03, shape)
    return img.astype(np.float32)


def test_hollow_particle_with_the_default_options():
    img = _hollow_particle_image()
    shape = img.shape
    core = _disc(shape, 150, 200, 50)  # 5 px inside the drawn core's rim
    ring = _disc(shape, 150, 200, 105) & ~_disc(shape, 150, 200, 60)
    outside = ~_disc(shape, 150, 200, 115) & ~_disc(shape, 80, 390, 75)
    s = segment_phases_baseline(img, pixel_size_um=0.05)
    assert np.all(s[core] == 2)
    assert np.mean(s[ring] == 1) > 0.99
    assert np.all(s[outside] == 0)
    # switched off, the core is background; nothing else changes but the core up to its rim
    off = segment_phases_baseline(img, pixel_size_um=0.05, max_enclosed_area_um2=0)
    assert np.all(off[core] == 0)
    changed = s != off
    assert np.all(off[changed] == 0) and np.all(s[changed] == 2)
    assert not np.any(changed & ~_disc(shape, 150, 200, 58))


def test_tiled_equals_whole_for_a_hollow_particle_with_the_default_options():
    img = _hollow_particle_image(seed=1)
    whole = segment_phases_baseline(img, pixel_size_um=0.05)
    assert np.all(whole[_disc(img.shape, 150, 200, 50)] == 2)
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=(37, 53)), pixel_size_um=0.05)
    # chunks thinner than the halo were merged; a chunk border still cuts the core
    rows = np.cumsum(tiled.chunks[0])[:-1]
    cols = np.cumsum(tiled.chunks[1])[:-1]
    assert np.any((rows > 95) & (rows < 205)) and np.any((cols > 145) & (cols < 255))
    np.testing.assert_array_equal(tiled.compute(), whole)


def _reference_hull_points(region: np.ndarray) -> int:
    """Independent reference: pixel centres in the convex hull of a region's pixel centres,
    by testing every centre of its bounding box against qhull's half-planes (a region whose
    centres are collinear has a segment for hull: the centres between its two ends)."""
    from scipy.spatial import ConvexHull, QhullError

    pts = np.argwhere(region)
    try:
        hull = ConvexHull(pts)
    except QhullError:
        d = np.abs(pts.max(0) - pts.min(0)) if len(pts) > 1 else np.zeros(2, int)
        return int(np.gcd(d[0], d[1])) + 1
    (y0, x0), (y1, x1) = pts.min(0), pts.max(0)
    grid = np.argwhere(np.ones((y1 - y0 + 1, x1 - x0 + 1), bool)) + (y0, x0)
    inside = np.all(grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9, axis=1)
    return int(inside.sum())


def _reference_enclosed_fill(solid, max_area_px, min_solidity=0.0):
    """Independent reference: scipy's hole filling finds the background not 4-connected to
    the frame; its 4-connected pieces of at most ``max_area_px`` pixels, of solidity (pixels
    over the centres in their hull, :func:`_reference_hull_points`) at least
    ``min_solidity``, become crack."""
    out = solid.astype(np.uint8)
    holes = ndi.binary_fill_holes(solid) & ~solid
    lab, n = ndi.label(holes)
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        region = lab[sl] == k
        if region.sum() <= max_area_px and region.sum() >= min_solidity * _reference_hull_points(region):
            out[sl][region] = 2
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), sigma=st.floats(0.8, 4.0), level=st.floats(0.3, 0.7))
def test_enclosed_solidity_counts_the_pixel_centres_in_the_hull_like_qhull(seed, sigma, level):
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random((60, 80)), sigma)
    lab, n = ndi.label(img > np.quantile(img, level))
    area = np.bincount(lab.ravel(), minlength=n + 1)
    chosen = np.ones(n + 1, bool)
    chosen[0] = False
    sol = enclosed_solidity(lab, area, chosen)
    assert sol[0] == 0
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        assert sol[k] == area[k] / _reference_hull_points(lab[sl] == k)
    assert np.all((sol[1:] > 0) & (sol[1:] <= 1))


def test_solidity_of_a_disc_an_annulus_and_a_pocket_between_three_touching_discs():
    yy, xx = np.mgrid[:121, :121]
    d2 = (yy - 60) ** 2 + (xx - 60) ** 2
    disc, annulus = d2 <= 40**2, (d2 <= 50**2) & (d2 > 25**2)
    # three discs of radius 100, centres 198 px apart (necks of 2 px): the pocket they
    # enclose is bounded by three convex arcs (between tangent discs its solidity would be
    # (√3 − π/2) / (√3 / 4) ≈ 0.37; the necks cut off its cusps)
    yy, xx = np.mgrid[:418, :418]
    discs = np.zeros(yy.shape, bool)
    for a in np.deg2rad([90, 210, 330]):
        discs |= (yy - 209 - 198 / np.sqrt(3) * np.cos(a)) ** 2 + (xx - 209 - 198 / np.sqrt(3) * np.sin(a)) ** 2 <= 100**2
    lab, _ = ndi.label(~discs)
    assert lab[209, 209] != lab[0, 0]  # enclosed
    pocket = lab == lab[209, 209]

    def solidity(region):
        r = region.astype(int)
        return enclosed_solidity(r, np.bincount(r.ravel()), np.array([False, True]))[1]

    assert solidity(disc) == 1.0
    assert solidity(annulus) == pytest.approx((50**2 - 25**2) / 50**2, abs=0.01)
    assert 0.37 < solidity(pocket) < 0.65


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    cy=st.integers(9, 90),
    cx=st.integers(9, 90),
    max_area_px=st.integers(0, 3000),
    min_solidity=st.sampled_from([0.0, 0.5, 0.7, 0.9, 1.0]),
)
def test_enclosed_fill_matches_a_reference_and_is_tiling_independent(seed, cy, cx, max_area_px, min_solidity):
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random((120, 150)), 2.5)
    img = (img - img.min()) / (np.ptp(img) + 1e-12)
    solid = img > 0.5
    # pixel 0.1 µm: the limit in µm² is max_area_px / 100
    kw = dict(pixel_size_um=0.1, max_enclosed_area_um2=max_area_px / 100, min_enclosed_solidity=min_solidity, **RAW)
    whole = segment_phases_baseline(img, **kw)
    np.testing.assert_array_equal(whole, _reference_enclosed_fill(solid, max_area_px, min_solidity))
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=(cy, cx)), **kw)
    np.testing.assert_array_equal(tiled.compute(), whole)


def test_enclosed_step_computes_each_image_chunk_once():
    img = _hollow_particle_image()
    calls = []

    def count(block):
        calls.append(block.shape)
        return block

    lazy = da.from_array(img, chunks=(150, 200)).map_blocks(
        count, dtype=img.dtype, meta=np.empty((0, 0), img.dtype)
    )
    out = segment_phases_baseline_dask(lazy, pixel_size_um=0.05).compute()
    # 2 x 2 chunks, each computed twice: once for the levels and the measuring windows that
    # set σ (so the halo) and the contrasts, once for the tiles and labels
    assert len(calls) == 8
    np.testing.assert_array_equal(out, segment_phases_baseline(img, pixel_size_um=0.05))
    calls.clear()  # with σ and the contrasts fixed the levels stay lazy: one pass
    segment_phases_baseline_dask(lazy, pixel_size_um=0.05, max_noise=0, max_blur_px=0).compute()
    assert len(calls) == 4


# ---------------------------------------------------------------------------------------------
# noise-adaptive smoothing
# ---------------------------------------------------------------------------------------------
def _two_levels(shape=(400, 600), noise=0.0, seed=0):
    """Left half 0.2, right half 0.8 (Δμ = 0.6), plus white Gaussian noise of std ``noise``."""
    img = np.full(shape, 0.2)
    img[:, shape[1] // 2:] = 0.8
    return img + np.random.default_rng(seed).normal(0, noise, shape) if noise else img


def test_noise_windows_are_a_fixed_grid_from_corner_to_corner():
    w = noise_windows((2000, 3000))
    assert len(w) == 9
    assert {sy.start for sy, _ in w} == {0, 744, 1488} and {sx.start for _, sx in w} == {0, 1244, 2488}
    assert all(sy.stop - sy.start == 512 and sx.stop - sx.start == 512 for sy, sx in w)
    # an image thinner than a window: one window across that axis, its whole height
    w = noise_windows((100, 700))
    assert [(sy.start, sy.stop) for sy, _ in w] == [(0, 100)] * 3
    assert [(sx.start, sx.stop) for _, sx in w] == [(0, 512), (94, 606), (188, 700)]


def test_noise_index_of_white_noise_is_its_std_over_the_contrast():
    # unsmoothed (σ = 0), Immerkær's estimate is the noise's std: ν = s / Δμ = s / 0.6
    for s in (0.03, 0.06):
        nu = noise_index(_two_levels(noise=s, seed=1), sigma_px=0)
        assert nu == pytest.approx(s / 0.6, rel=0.03)
    # a clean image with one straight edge: the median ignores the edge
    assert noise_index(_two_levels(), sigma_px=1.5) == 0.0
    # smoothing lowers it; doubling the noise doubles it
    n1 = noise_index(_two_levels(noise=0.05, seed=2), sigma_px=1.5)
    n2 = noise_index(_two_levels(noise=0.10, seed=2), sigma_px=1.5)
    assert n1 < 0.05 / 0.6 / 2 and n2 == pytest.approx(2 * n1, rel=0.05)


def test_adaptive_sigma_stays_at_the_base_on_clean_images_and_grows_with_the_noise_to_the_cap():
    assert baseline_sigma_px(_two_levels()) == 1.5
    assert baseline_sigma_px(_two_levels(noise=0.15, seed=3)) == 1.5  # ν = 0.024 < 0.03
    for noise in (0.2, 0.3):  # σ = σ₀ · ν / max_noise above the limit (default 0.03)
        img = _two_levels(noise=noise, seed=3)
        nu = noise_index(img, sigma_px=1.5)
        assert nu > 0.03
        assert baseline_sigma_px(img) == round(1.5 * nu / 0.03, 2)
        assert baseline_sigma_px(img, max_noise=0.01) == min(6.0, round(1.5 * nu / 0.01, 2))
    noisy = _two_levels(noise=0.3, seed=3)  # ν ≈ 0.042: 1.5 · ν / 0.005 ≈ 12.5 px, capped
    assert baseline_sigma_px(noisy, max_noise=0.005) == 6.0
    assert baseline_sigma_px(noisy, max_noise=0.005, max_sigma_px=4.0) == 4.0
    assert baseline_sigma_px(_two_levels(noise=0.30, seed=3), max_noise=0) == 1.5  # fixed


def test_a_larger_sigma_scales_the_smallest_crack_component_with_its_square():
    opts = baseline_options()  # σ₀ = 1.5 px, 40 px
    assert opts.with_sigma(3.0).min_crack_area_px == 160
    assert opts.with_sigma(2.0).min_crack_area_px == round(40 * 16 / 9)  # 71
    assert opts.with_sigma(1.5) == baseline_options(max_noise=0)
    assert baseline_options(min_crack_area_px=0).with_sigma(6.0).min_crack_area_px == 0


def test_tiled_baseline_equals_whole_when_the_noise_raises_sigma():
    img, _ = render_sem_like(seed=4)
    img = img + np.random.default_rng(5).normal(0, 0.25, img.shape).astype(np.float32)
    assert baseline_sigma_px(img) > 2.0  # the halo grows with σ (6 px at σ = 1.5)
    whole = segment_phases_baseline(img)
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=(130, 170))).compute()
    np.testing.assert_array_equal(tiled, whole)


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_adaptive_sigma_rescues_a_low_dose_image_and_leaves_a_clean_one_alone(seed):
    # Truth from the generator. Measured for seeds 0/1: lowcontrast pixel accuracy 0.72/0.56
    # and crack area 9.8/25.7× the truth with σ fixed at 1.5 px (the solid riddled with
    # "crack"), 0.93/0.80 and 1.3/3.5× adaptive (σ 5.0/5.1 px); classic: σ stays 1.5 px, so
    # its phase map is what it was.
    from cathodeflow.stages.superres import superres_baseline
    from cathodeflow.synth.training import make_training_pair

    low = make_training_pair([777, seed], family="lowcontrast", shape_lr=(234, 312), geometry="classic")
    sr = superres_baseline(low.lr)
    fixed = segment_phases_baseline(sr, pixel_size_um=low.pixel_size_hr_um, max_noise=0)
    adaptive = segment_phases_baseline(sr, pixel_size_um=low.pixel_size_hr_um)
    crack_area = np.count_nonzero(low.phase == 2)
    assert np.mean(fixed == low.phase) < 0.75 and np.count_nonzero(fixed == 2) > 5 * crack_area
    assert np.mean(adaptive == low.phase) > 0.78 and np.count_nonzero(adaptive == 2) < 4 * crack_area
    clean = make_training_pair([777, seed], family="classic", shape_lr=(234, 312), geometry="classic")
    sr = superres_baseline(clean.lr)
    assert baseline_sigma_px(sr, pixel_size_um=clean.pixel_size_hr_um) == 1.5


# ---------------------------------------------------------------------------------------------
# blur-adaptive dark-line contrasts
# ---------------------------------------------------------------------------------------------
def test_two_level_image_gets_its_threshold_midway_between_the_levels():
    # Otsu's criterion is flat between two histogram spikes; the gap's middle is taken
    np.testing.assert_allclose(estimate_levels(_two_levels()), [0.5, 0.2, 0.8])


@pytest.mark.parametrize("s", [2.0, 3.0, 4.0, 6.0])
def test_edge_blur_of_a_gaussian_blurred_step_is_its_sigma_after_smoothing(s):
    # a step blurred by s, then smoothed by σ₀ = 1.5 px: σ_e = √(s² + σ₀²)
    img = ndi.gaussian_filter(_two_levels(), s)
    assert edge_blur_px(img) == pytest.approx(math.hypot(s, 1.5), rel=0.04)
    # noise makes the edges look steeper (the rule errs toward keeping the contrasts)
    noisy = img + np.random.default_rng(0).normal(0, 0.05, img.shape)
    assert edge_blur_px(noisy) < edge_blur_px(img)


def test_blurry_images_get_contrasts_scaled_by_the_squared_blur_ratio():
    sharp = ndi.gaussian_filter(_two_levels(), 1.0)  # σ_e ≈ 1.8 px < 2.5
    assert adapted_options(sharp) == baseline_options(max_noise=0, max_blur_px=0)
    blurry = ndi.gaussian_filter(_two_levels(), 4.0)
    factor = (2.5 / edge_blur_px(blurry)) ** 2
    opts = adapted_options(blurry)
    assert factor < 0.5
    assert opts.crack_contrast == round(0.2 * factor, 4) and opts.line_contrast == round(0.31 * factor, 4)
    assert opts.sigma_px == 1.5 and opts.min_crack_area_px == 40  # the blur changes nothing else
    assert adapted_options(blurry, max_blur_px=0) == baseline_options(max_noise=0, max_blur_px=0)
    assert adapted_options(blurry, max_blur_px=10).crack_contrast == 0.2


@pytest.mark.parametrize("seed", [0, 1])
def test_blur_adaptive_contrasts_find_the_cracks_of_a_blurry_image_and_leave_a_sharp_one_alone(seed):
    # Truth from the generator ("soft": strong probe blur, low noise). Measured for seeds 0/1:
    # σ_e 4.1/5.4 px; crack IoU 0.015/0.033 and crack area 0.02/0.04 of the truth with the
    # contrasts fixed, 0.46/0.43 and 1.12/1.13 adapted. Classic scenes keep the contrasts.
    from cathodeflow.stages.superres import superres_baseline
    from cathodeflow.synth.training import make_training_pair

    soft = make_training_pair([777, seed], family="soft", shape_lr=(234, 312), geometry="classic")
    sr = superres_baseline(soft.lr)
    eta = soft.pixel_size_hr_um
    truth = soft.phase == 2
    for pred, iou_range, area_range in (
        (segment_phases_baseline(sr, pixel_size_um=eta, max_blur_px=0), (0, 0.1), (0, 0.1)),
        (segment_phases_baseline(sr, pixel_size_um=eta), (0.35, 1), (0.8, 1.25)),
    ):
        crack = pred == 2
        iou = np.count_nonzero(crack & truth) / np.count_nonzero(crack | truth)
        assert iou_range[0] <= iou <= iou_range[1]
        assert area_range[0] <= np.count_nonzero(crack) / np.count_nonzero(truth) <= area_range[1]
    clean = make_training_pair([777, seed], family="classic", shape_lr=(234, 312), geometry="classic")
    opts = adapted_options(superres_baseline(clean.lr), pixel_size_um=eta)
    assert (opts.crack_contrast, opts.line_contrast) == (0.2, 0.31)


def test_tiled_baseline_equals_whole_when_the_blur_lowers_the_contrasts():
    img, _ = render_sem_like(seed=4)
    img = ndi.gaussian_filter(img, 3.0) + np.random.default_rng(5).normal(0, 0.01, img.shape)
    assert adapted_options(img).crack_contrast < 0.15
    whole = segment_phases_baseline(img)
    tiled = segment_phases_baseline_dask(da.from_array(img, chunks=(130, 170))).compute()
    np.testing.assert_array_equal(tiled, whole)


# ---------------------------------------------------------------------------------------------
# eq. 7
# ---------------------------------------------------------------------------------------------
def test_eq7_hand_made_cases():
    prob = np.array(
        [
            [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.3, 0.2]],
            [[0.2, 0.3, 0.5], [0.45, 0.1, 0.45], [0.0, 1.0, 0.0]],
        ]
    )
    # t = 0.5: crack iff p3 >= 0.5; else solid iff p2 >= p1 (ties -> solid)
    expected = np.array([[2, 1, 0], [2, 0, 1]], dtype=np.uint8)
    out = phase_from_probabilities(prob, 0.5)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    # t = 0.4: the tie p3 = 0.4 becomes crack, and p3 = 0.45 too
    np.testing.assert_array_equal(
        phase_from_probabilities(prob, 0.4), np.array([[2, 2, 0], [2, 2, 1]])
    )
    lazy = phase_from_probabilities_dask(da.from_array(prob, chunks=(1, 2, 1)), 0.5)
    np.testing.assert_array_equal(lazy.compute(), expected)


@settings(max_examples=50, deadline=None)
@given(
    p=arrays(np.float64, (6, 7, 3), elements=st.floats(0, 1)),
    t1=st.floats(0, 1),
    t2=st.floats(0, 1),
)
def test_eq7_invariants(p, t1, t2):
    lo, hi = sorted((t1, t2))
    s_lo, s_hi = phase_from_probabilities(p, lo), phase_from_probabilities(p, hi)
    np.testing.assert_array_equal(s_hi == 2, p[..., 2] >= hi)
    # raising t never adds crack pixels; non-crack pixels do not depend on t
    assert not np.any((s_hi == 2) & (s_lo != 2))
    keep = s_lo != 2
    np.testing.assert_array_equal(s_lo[keep], s_hi[keep])
    assert set(np.unique(s_lo)) <= {0, 1, 2}


def _crack_line_with_dip(p_dip):
    """A 1-px diagonal crack (Ŷ3 = 0.9) across solid (Ŷ2 high) whose Ŷ3 dips to ``p_dip`` at
    two pixels in the middle, plus an isolated weak blob (Ŷ3 = 0.5) away from it."""
    prob = np.zeros((20, 20, 3))
    prob[..., 1] = 0.9
    prob[..., 0] = 0.1
    for i in range(2, 18):
        prob[i, i] = (0.05, 0.05, 0.9)
    prob[9, 9, :] = prob[10, 10, :] = (0.05, 0.95 - p_dip, p_dip)
    prob[15:17, 2:4] = (0.1, 0.4, 0.5)
    return prob


def test_hysteresis_keeps_a_crack_whole_across_a_dip_and_drops_weak_isolated_responses():
    prob = _crack_line_with_dip(0.4)
    eq7 = phase_from_probabilities(prob, 0.7)
    # eq. 7: the dip breaks the crack in two 8-connected pieces; the blob is not crack
    assert ndi.label(eq7 == 2, structure=np.ones((3, 3)))[1] == 2
    hys = phase_from_probabilities(prob, 0.7, t_low=0.3)
    truth = np.zeros((20, 20), bool)
    truth[np.arange(2, 18), np.arange(2, 18)] = True
    np.testing.assert_array_equal(hys == 2, truth)  # one crack, the blob (0.5 < t) still out
    np.testing.assert_array_equal(hys[~truth], eq7[~truth])
    # a dip below t_low still breaks it
    assert ndi.label(phase_from_probabilities(_crack_line_with_dip(0.2), 0.7, t_low=0.3) == 2,
                     structure=np.ones((3, 3)))[1] == 2
    # t_low >= t is eq. 7 exactly
    np.testing.assert_array_equal(phase_from_probabilities(prob, 0.7, t_low=0.9), eq7)


@settings(max_examples=40, deadline=None)
@given(
    p=arrays(np.float64, (13, 11), elements=st.floats(0, 1)),
    t=st.floats(0.3, 1),
    frac=st.floats(0, 1),
    cy=st.integers(1, 13),
    cx=st.integers(1, 11),
)
def test_hysteresis_equals_geodesic_reconstruction_tiled_or_whole(p, t, frac, cy, cx):
    """Reference: seeds Ŷ3 ≥ t propagated (8-neighbours) inside Ŷ3 ≥ t_low
    (scipy's binary_propagation, an independent algorithm); any chunking gives the same map."""
    prob = np.stack([(1 - p) * 0.3, (1 - p) * 0.7, p], axis=-1)
    t_low = t * frac
    ref = ndi.binary_propagation(p >= t, structure=np.ones((3, 3), bool), mask=p >= t_low)
    whole = phase_from_probabilities(prob, t, t_low=t_low)
    np.testing.assert_array_equal(whole == 2, ref)
    np.testing.assert_array_equal(whole[~ref], phase_from_probabilities(prob, t)[~ref])
    with dask.config.set(scheduler="sync"):
        tiled = phase_from_probabilities_dask(da.from_array(prob, chunks=(cy, cx, 3)), t, t_low=t_low).compute()
    np.testing.assert_array_equal(tiled, whole)


def test_smallest_crack_components_go_back_to_solid_or_background_by_eq7():
    """Hand-built Ŷ: a 12-px crack line, a 3 × 3 speck on solid and a 2 × 2 speck on
    background. With min_crack_px = 9 both specks (9 and 4 px) leave the crack phase, each to
    the class eq. 7 gives its pixels without the crack channel; the line (12 px) stays."""
    prob = np.zeros((20, 20, 3))
    prob[..., :2] = (0.1, 0.9)  # solid everywhere ...
    prob[14:, 14:, :2] = (0.9, 0.1)  # ... but background in one corner
    prob[2, 2:14] = (0.05, 0.05, 0.9)
    prob[8:11, 8:11] = (0.05, 0.15, 0.8)
    prob[16:18, 16:18] = (0.15, 0.05, 0.8)
    eq7 = phase_from_probabilities(prob, 0.7)
    assert ndi.label(eq7 == 2, structure=np.ones((3, 3)))[1] == 3
    out = phase_from_probabilities(prob, 0.7, min_crack_px=9)
    expected = eq7.copy()
    expected[8:11, 8:11] = 1
    expected[16:18, 16:18] = 0
    np.testing.assert_array_equal(out, expected)
    only_small = eq7.copy()
    only_small[16:18, 16:18] = 0  # 8 px: the 9-px speck stays
    np.testing.assert_array_equal(phase_from_probabilities(prob, 0.7, min_crack_px=8), only_small)
    all_gone = np.where(eq7 == 2, np.where(prob[..., 1] >= prob[..., 0], 1, 0), eq7)  # 12 px: the line too
    np.testing.assert_array_equal(phase_from_probabilities(prob, 0.7, min_crack_px=12), all_gone)


@settings(max_examples=40, deadline=None)
@given(
    p=arrays(np.float64, (14, 12), elements=st.floats(0, 1)),
    min_px=st.integers(0, 12),
    sigma=st.sampled_from([0.0, 0.8]),
    cy=st.integers(1, 14),
    cx=st.integers(1, 12),
)
def test_smallest_cracks_removed_like_a_reference_tiled_or_whole(p, min_px, sigma, cy, cx):
    """Reference: skimage's remove_small_objects (8-connectivity, objects of at most
    min_px pixels) on the crack phase of the same map without the step; any chunking gives
    the whole-image map."""
    from skimage.morphology import remove_small_objects

    prob = np.stack([(1 - p) * 0.3, (1 - p) * 0.7 * p, p], axis=-1)
    base = phase_from_probabilities(prob, 0.6, t_low=0.4, sigma_px=sigma)
    whole = phase_from_probabilities(prob, 0.6, t_low=0.4, sigma_px=sigma, min_crack_px=min_px)
    kept = remove_small_objects(base == 2, max_size=min_px, connectivity=2)
    np.testing.assert_array_equal(whole == 2, kept)
    np.testing.assert_array_equal(whole[~(base == 2)], base[~(base == 2)])
    with dask.config.set(scheduler="sync"):
        tiled = phase_from_probabilities_dask(da.from_array(prob, chunks=(cy, cx, 3)), 0.6, t_low=0.4,
                                              sigma_px=sigma, min_crack_px=min_px).compute()
    np.testing.assert_array_equal(tiled, whole)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: phase_from_probabilities(np.zeros((4, 4, 2)), 0.5), r"\(H, W, 3\)"),
        (lambda: phase_from_probabilities(np.zeros((4, 4)), 0.5), r"\(H, W, 3\)"),
        (lambda: phase_from_probabilities(np.zeros((4, 4, 3)), 1.5), "t"),
        (lambda: phase_from_probabilities(np.zeros((4, 4, 3)), 0.5, t_low=-0.1), "t_low"),
        (lambda: phase_from_probabilities(np.zeros((4, 4, 3)), 0.5, t_low="x"), "t_low"),
        (lambda: phase_from_probabilities(np.zeros((4, 4, 3)), 0.5, min_crack_px=-1), "min_crack_px"),
        (lambda: phase_from_probabilities(np.zeros((4, 4, 3)), 0.5, min_crack_px=2.5), "min_crack_px"),
        (lambda: segment_phases_baseline(np.zeros((4, 4, 3))), "2-D"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), sigma_px=-1), "sigma_px"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), open_radius_px=1.5), "open_radius"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), pixel_size_um=0), "pixel_size"),
        (lambda: segment_phases_baseline_dask(np.zeros((3, 8, 8))), "2-D"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), line_contrast=-0.1), "line_contrast"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), line_radius_px=2.5), "line_radius"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), line_orientations=0),
         "line_orientations"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), crack_contrast="a"), "crack_contrast"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), max_enclosed_area_um2=-1),
         "max_enclosed_area_um2"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), max_enclosed_area_um2=float("inf")),
         "max_enclosed_area_um2"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), max_enclosed_area_um2=None),
         "max_enclosed_area_um2"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), max_noise=-0.1), "max_noise"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), max_noise="a"), "max_noise"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), max_sigma_px=float("nan")), "max_sigma_px"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), max_sigma_px=1.0), "max_sigma_px"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), max_blur_px=-1.0), "max_blur_px"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), edge_fraction=1.5), "edge_fraction"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), edge_fraction=-0.1), "edge_fraction"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), edge_radius_px=1.5), "edge_radius_px"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), open_necks="yes"), "open_necks"),
        (lambda: segment_phases_baseline(np.zeros((8, 8)), max_blur_px=float("inf")), "max_blur_px"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()


@settings(max_examples=25, deadline=None)
@given(
    p=arrays(np.float64, (15, 12), elements=st.floats(0, 1)),
    sigma=st.floats(0.3, 2.5),
    cy=st.integers(1, 15),
    cx=st.integers(1, 12),
)
def test_smoothed_eq7_tiled_equals_whole_and_smooths_like_a_reflected_gaussian(p, sigma, cy, cx):
    """Reference for the smoothing: the same Gaussian on an explicitly mirror-padded image
    (numpy 'symmetric' padding = scipy's 'reflect' border), cropped back."""
    prob = np.stack([(1 - p) * 0.3, (1 - p) * 0.7, p], axis=-1)
    r = int(4 * sigma + 0.5)
    padded = np.pad(p.astype(np.float32), r, mode="symmetric")
    ref_p3 = ndi.gaussian_filter(padded, sigma, mode="constant", truncate=4.0)[r:-r, r:-r]
    whole = phase_from_probabilities(prob, 0.6, t_low=0.3, sigma_px=sigma)
    ref = ndi.binary_propagation(ref_p3 >= 0.6, structure=np.ones((3, 3), bool), mask=ref_p3 >= 0.3)
    # values within float32 rounding of a threshold may fall either way
    near = (np.abs(ref_p3 - 0.6) < 1e-5) | (np.abs(ref_p3 - 0.3) < 1e-5)
    if not near.any():
        np.testing.assert_array_equal(whole == 2, ref)
    with dask.config.set(scheduler="sync"):
        tiled = phase_from_probabilities_dask(da.from_array(prob, chunks=(cy, cx, 3)), 0.6, t_low=0.3,
                                              sigma_px=sigma).compute()
    np.testing.assert_array_equal(tiled, whole)


REAL_SEM = Path(__file__).resolve().parents[2] / "shared" / "data" / "tio2-sem-bam"


@pytest.mark.skipif(not REAL_SEM.exists(), reason=f"real SEM examples not present at {REAL_SEM} (shared/data beside the repo)")
@pytest.mark.parametrize("image_id", ["1908248", "1908260", "1908300"])
def test_real_sem_images_keep_the_base_sigma_and_contrasts(image_id):
    # Real Zeiss InLens images (rows 0-711 are specimen): measured ν = 0.004-0.005, far below
    # the limit 0.03, so the adaptive smoothing leaves them as the fixed σ did.
    import tifffile

    img = tifffile.imread(REAL_SEM / "images" / f"{image_id}.tif")[:712].astype(np.float32)
    assert noise_index(img) < 0.01
    assert baseline_sigma_px(img, pixel_size_um=0.007344) == 1.5
    # and their edges are sharp (σ_e 0.9-1.0 px after σ₀ = 1.5 px; the InLens rims steepen
    # them): the dark-line contrasts stay as given
    assert edge_blur_px(img) < 2.0
    assert adapted_options(img, pixel_size_um=0.007344).crack_contrast == 0.2
