"""Realistic phase maps S (eq. 1: 0 background, 1 solid, 2 crack) for the benchmarks.

The default map mirrors the one of ``PERFORMANCE.md``: 4478 × 5972 px (26.7 MP at
η = 14.3 nm), ~60 particle sections of radius 250–330 px (slightly elliptic, with a wavy
outline), some touching their neighbours (so the watershed of eq. 10 has to split them) and
some cut by the image frame, and ~200 thin branching cracks 1–5 px wide inside the particles
covering ~0.6 % of the pixels. Everything is drawn from one seeded generator, so a seed gives
the same map on every machine.

:func:`synth_phase_map` offers the project's own synthetic generator
(:func:`cathodeflow.synth.generate_image`) as a second input, cropped to the same shape.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line

#: Shape of the paper's super-resolved images (η = 14.3 nm): 26.7 MP.
PAPER_SHAPE = (4478, 5972)

__all__ = ["PAPER_SHAPE", "PhaseMapInfo", "build_phase_map", "load_phase_map", "synth_phase_map", "map_summary"]


@dataclass(frozen=True)
class PhaseMapInfo:
    """What was drawn (before rasterisation merged or clipped anything)."""

    n_particles: int
    n_cracks_drawn: int
    crack_fraction: float
    seed: int


def _lattice_centres(rng, shape, spacing, jitter, margin):
    """Jittered hexagonal lattice of centres covering the frame plus ``margin`` (so that
    the particles near the edge are cut by the frame)."""
    H, W = shape
    dy = spacing * math.sqrt(3) / 2
    oy, ox = rng.uniform(0, dy), rng.uniform(0, spacing)
    ys = np.arange(-margin + oy, H + margin, dy)
    pts = []
    for k, y in enumerate(ys):
        shift = 0.5 * spacing if k % 2 else 0.0
        xs = np.arange(-margin + ox + shift, W + margin, spacing)
        pts.append(np.column_stack([np.full(xs.size, y), xs]))
    pts = np.concatenate(pts)
    ang = rng.uniform(0, 2 * math.pi, len(pts))
    rad = jitter * np.sqrt(rng.uniform(0, 1, len(pts)))
    return pts + np.column_stack([rad * np.sin(ang), rad * np.cos(ang)])


def _particle_mask(rng, r_px):
    """One particle on its own crop: an ellipse (axis ratio ≤ 1.25) with a wavy outline.
    Returns the mask and the crop's centre offset."""
    ecc = rng.uniform(0.0, 0.1)
    a, b = r_px * (1 + ecc), r_px * (1 - ecc)
    theta = rng.uniform(0, math.pi)
    harm = rng.normal(0, 0.015, 4)  # low harmonics of the outline (2..5 lobes)
    phase = rng.uniform(0, 2 * math.pi, 4)
    R = int(math.ceil(max(a, b) * (1 + np.abs(harm).sum()))) + 2
    yy, xx = np.mgrid[-R : R + 1, -R : R + 1].astype(np.float64)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    phi = np.arctan2(yy, xx)
    wave = 1 + sum(h * np.cos((k + 2) * phi + p) for k, (h, p) in enumerate(zip(harm, phase)))
    return rho <= wave, R


def _overlap(a, oa, b, ob) -> int:
    """Number of pixels two placed masks share (``oa``, ``ob``: top-left corners)."""
    y0, x0 = max(oa[0], ob[0]), max(oa[1], ob[1])
    y1 = min(oa[0] + a.shape[0], ob[0] + b.shape[0])
    x1 = min(oa[1] + a.shape[1], ob[1] + b.shape[1])
    if y0 >= y1 or x0 >= x1:
        return 0
    sa = a[y0 - oa[0] : y1 - oa[0], x0 - oa[1] : x1 - oa[1]]
    sb = b[y0 - ob[0] : y1 - ob[0], x0 - ob[1] : x1 - ob[1]]
    return int(np.count_nonzero(sa & sb))


def _centre(p):
    mask, (y0, x0), _ = p
    return np.array([y0 + mask.shape[0] / 2, x0 + mask.shape[1] / 2])


def _make_contacts(rng, placed, fraction):
    """Move a ``fraction`` of the particles towards their nearest neighbour until the two
    share a lens of ~4c³/(3r) px (a neck of half-width c ∈ [5, 40] px); a move that would
    touch a third particle is undone."""
    n = len(placed)
    if n < 2 or fraction <= 0:
        return
    moved = set()
    for i in rng.permutation(n)[: int(round(fraction * n))]:
        if i in moved:
            continue
        ci = _centre(placed[i])
        dist = [np.hypot(*(_centre(q) - ci)) if k != i else np.inf for k, q in enumerate(placed)]
        j = int(np.argmin(dist))
        if j in moved:
            continue
        c = rng.uniform(5, 40)
        r = placed[i][2]
        target = max(1, int(4 * c**3 / (3 * r)))
        u = (_centre(placed[j]) - ci) / dist[j]
        o0 = placed[i][1]
        lo_s, hi_s = 0.0, float(dist[j])
        best = None
        for _ in range(30):
            s = 0.5 * (lo_s + hi_s)
            o = (o0[0] + int(round(s * u[0])), o0[1] + int(round(s * u[1])))
            ov = _overlap(placed[i][0], o, placed[j][0], placed[j][1])
            if ov < target:
                lo_s = s
            else:
                hi_s, best = s, o
            if hi_s - lo_s < 0.5:
                break
        if best is None:
            continue
        clash = any(
            _overlap(placed[i][0], best, q[0], q[1]) for k, q in enumerate(placed) if k not in (i, j)
        )
        if not clash:
            placed[i][1] = best
            moved.update((i, j))


def _polyline(rng, start, direction, length, step=(12.0, 30.0), turn=0.3):
    pts = [np.asarray(start, float)]
    done = 0.0
    while done < length:
        s = min(rng.uniform(*step), length - done)
        direction = direction + rng.normal(0, turn)
        pts.append(pts[-1] + s * np.array([math.sin(direction), math.cos(direction)]))
        done += s
    return np.array(pts)


def _raster(lines, width, box_shape, origin):
    """Rasterise polylines (image coordinates) into a crop, then thicken to ``width`` px."""
    m = np.zeros(box_shape, bool)
    oy, ox = origin
    for pl in lines:
        p = np.rint(pl).astype(np.int64) - (oy, ox)
        for (y0, x0), (y1, x1) in zip(p[:-1], p[1:]):
            rr, cc = line(int(y0), int(x0), int(y1), int(x1))
            ok = (rr >= 0) & (rr < box_shape[0]) & (cc >= 0) & (cc < box_shape[1])
            m[rr[ok], cc[ok]] = True
    if width > 1:
        fp = np.ones((width, width), bool)
        if width >= 3:  # round ends: a disc of diameter ``width``
            yy, xx = np.mgrid[:width, :width] - (width - 1) / 2
            fp = yy**2 + xx**2 <= ((width - 1) / 2) ** 2 + 0.5
        m = ndi.binary_dilation(m, structure=fp)
    return m


def build_phase_map(
    shape: tuple[int, int] = PAPER_SHAPE,
    *,
    radius_px: tuple[float, float] = (250.0, 330.0),
    n_particles: int | None = None,
    crack_fraction: float = 0.006,
    crack_width_px: tuple[int, ...] = (1, 2, 3, 4, 5),
    touch_fraction: float = 0.3,
    seed: int = 0,
    return_info: bool = False,
):
    """A seeded, realistic phase map S of ``shape`` (uint8: 0 background, 1 solid, 2 crack).

    Parameters
    ----------
    shape : (H, W)
        Image shape in pixels (default: the paper's 4478 × 5972).
    radius_px : (lo, hi)
        Range of the particles' mean section radius, px (default 250–330, i.e. 3.6–4.7 µm
        at η = 14.3 nm).
    n_particles : int, optional
        Approximate number of particle sections with pixels in the frame; default: as many
        as cover ~60 % of the frame (60 on the default shape).
    crack_fraction : float
        Cracks are added until this fraction of all pixels is crack (default 0.6 %).
    crack_width_px : tuple of int
        Widths a crack may have (px), drawn with decreasing probability (thin ones common).
    touch_fraction : float
        Fraction of the particles moved towards their nearest neighbour until they touch
        through a narrow neck (half-width 5–40 px, narrower than the marker radius 50 px, so
        the pair is one component of B with two markers that the watershed must split).
    seed : int
        Seed of ``numpy.random.default_rng``.
    return_info : bool
        Also return a :class:`PhaseMapInfo`.

    Returns
    -------
    phase : (H, W) ndarray of uint8
    info : PhaseMapInfo, only with ``return_info``.

    Notes
    -----
    Particle centres lie on a jittered hexagonal lattice (spacing from ``n_particles``), so
    neighbours are ~20 % of a diameter apart on average, then ``touch_fraction`` of them are
    moved into contact with a neighbour; lattice sites up to ~0.6 radius outside
    the frame make particles cut by the frame. Cracks are random-walk polylines (segments of
    12–30 px, direction noise 0.3 rad), 0.6–1.6 particle radii long, 60 % of them
    with a branch, clipped to their particle.
    """
    H, W = (int(v) for v in shape)
    lo, hi = (float(v) for v in radius_px)
    if not (H > 0 and W > 0 and 0 < lo <= hi):
        raise ValueError(f"shape {shape} and radius_px {radius_px} must be positive, lo <= hi")
    rng = np.random.default_rng(seed)
    r_mean = 0.5 * (lo + hi)
    if n_particles is None:
        n_particles = max(1, round(0.6 * H * W / (math.pi * r_mean**2)))
    # lattice spacing so that ~n_particles sites fall in the frame
    spacing = math.sqrt(2 * H * W / (math.sqrt(3) * n_particles))
    centres = _lattice_centres(rng, (H, W), spacing, jitter=0.12 * spacing, margin=0.6 * r_mean)

    placed = []  # [mask, top-left (y0, x0) in the image (may be negative), radius]
    for cy, cx in centres:
        r = rng.uniform(lo, hi)
        mask, R = _particle_mask(rng, r)
        placed.append([mask, (int(round(cy)) - R, int(round(cx)) - R), r])
    _make_contacts(rng, placed, touch_fraction)

    phase = np.zeros((H, W), np.uint8)
    particles = []  # (mask crop clipped to the frame, (y0, x0) of the crop, radius)
    for mask, (y0, x0), r in placed:
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + mask.shape[0], H), min(x0 + mask.shape[1], W)
        if ya >= yb or xa >= xb:
            continue
        crop = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
        if not crop.any():
            continue
        phase[ya:yb, xa:xb][crop] = 1
        particles.append((crop, (ya, xa), r))

    target = int(round(crack_fraction * H * W))
    widths = np.asarray(crack_width_px, int)
    wprob = 1.0 / np.sqrt(np.arange(1, widths.size + 1))
    wprob /= wprob.sum()
    n_crack_px = 0
    n_drawn = 0
    guard = 0
    while particles and n_crack_px < target and guard < 100_000:
        guard += 1
        crop, (ya, xa), r = particles[rng.integers(len(particles))]
        ys, xs = np.nonzero(crop)
        k = rng.integers(ys.size)
        start = (ys[k] + ya, xs[k] + xa)
        length = rng.uniform(0.6, 1.6) * r
        main = _polyline(rng, start, rng.uniform(0, 2 * math.pi), length)
        lines = [main]
        if rng.uniform() < 0.6:
            j = rng.integers(len(main))
            d = math.atan2(*(main[min(j + 1, len(main) - 1)] - main[max(j - 1, 0)])) if len(main) > 1 else 0.0
            lines.append(_polyline(rng, main[j], d + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2),
                                   rng.uniform(0.2, 0.5) * length))
        w = int(rng.choice(widths, p=wprob))
        m = _raster(lines, w, crop.shape, (ya, xa)) & crop
        view = phase[ya : ya + crop.shape[0], xa : xa + crop.shape[1]]
        new = m & (view == 1)
        if new.sum() < 5:
            continue
        view[new] = 2
        n_crack_px += int(new.sum())
        n_drawn += 1
    if return_info:
        return phase, PhaseMapInfo(len(particles), n_drawn, n_crack_px / (H * W), int(seed))
    return phase


def synth_phase_map(shape: tuple[int, int] = PAPER_SHAPE, *, seed: int = 0, condition: str = "20C") -> np.ndarray:
    """The phase map of :func:`cathodeflow.synth.generate_image` (3D sphere packing, planar
    section, cracks), generated at the smallest low-resolution shape whose high-resolution
    grid (×35/13) covers ``shape`` and cropped to it. Slower than :func:`build_phase_map`
    (it also renders the SEM images)."""
    from cathodeflow.config import SR_DEN, SR_NUM
    from cathodeflow.synth import generate_image

    H, W = shape
    lr = tuple(SR_DEN * math.ceil(math.ceil(v * SR_DEN / SR_NUM) / SR_DEN) for v in (H, W))
    img = generate_image(condition, seed=seed, shape_lr=lr)
    return np.ascontiguousarray(img.phase[:H, :W]).astype(np.uint8)


def map_summary(phase: np.ndarray, marker_radius_px: float = 50.0) -> dict:
    """Plain facts about a phase map (for the results JSON): size, phase fractions, and the
    number of connected components of B = {S > 0} by their number of markers (eq. 10)."""
    b = phase > 0
    counts = np.bincount(phase.ravel(), minlength=3)
    comp, ncomp = ndi.label(b)
    d = ndi.distance_transform_edt(b)
    markers, nmark = ndi.label(d >= marker_radius_px, structure=np.ones((3, 3), bool))
    per_comp = np.zeros(ncomp + 1, np.int64)
    if nmark:
        _, first = np.unique(markers.ravel(), return_index=True)
        owner = comp.ravel()[first[1:]]
        per_comp = np.bincount(owner, minlength=ncomp + 1)
    per_comp = per_comp[1:]
    crack_comp = ndi.label(phase == 2, structure=np.ones((3, 3), bool))[1]
    return {
        "shape": [int(v) for v in phase.shape],
        "megapixels": round(phase.size / 1e6, 3),
        "background_px": int(counts[0]),
        "solid_px": int(counts[1]),
        "crack_px": int(counts[2]),
        "crack_fraction": round(float(counts[2]) / phase.size, 6),
        "markers": int(nmark),
        "components_of_B": int(ncomp),
        "components_without_marker": int((per_comp == 0).sum()),
        "components_with_one_marker": int((per_comp == 1).sum()),
        "components_with_several_markers": int((per_comp >= 2).sum()),
        "crack_components_8conn": int(crack_comp),
    }


@functools.lru_cache(maxsize=1)
def load_phase_map(shape=PAPER_SHAPE, source: str = "discs", seed: int = 0, radius_px=None) -> np.ndarray:
    """The benchmark input, built once per process (read-only): ``source`` is ``"discs"``
    (:func:`build_phase_map`) or ``"synth"`` (:func:`synth_phase_map`)."""
    shape = tuple(int(v) for v in shape)
    if source == "discs":
        kw = {} if radius_px is None else {"radius_px": tuple(radius_px)}
        phase = build_phase_map(shape, seed=seed, **kw)
    elif source == "synth":
        phase = synth_phase_map(shape, seed=seed)
    else:
        raise ValueError(f"source must be 'discs' or 'synth', got {source!r}")
    phase.setflags(write=False)
    return phase
