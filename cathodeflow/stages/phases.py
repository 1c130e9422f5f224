"""Phase-segmentation stage: image → phase map S ∈ {0 background, 1 solid, 2 crack} (eq. 1).

Two ways to a phase map live here:

* :func:`phase_from_probabilities` — eq. 7 of the paper, turning the U-net's three-channel
  output Ŷ into S with the crack threshold t. The U-net itself is not part of this module.
* :func:`segment_phases_baseline` — a **classical baseline** (no network, no learning)
  standing in for the U-net until it is trained: Gaussian smoothing, one global Otsu
  threshold (bright = solid), an opening and small-object removal against noise, then the
  particle envelope as the morphological closing of the solid with a disk whose diameter
  covers the widest crack; crack = envelope ∧ (¬solid ∨ dark line), background = the rest.
  A *dark line* is a pixel darker than its surroundings (black top-hat) that also lies on a
  short straight segment that is dark on average (an oriented line-mean test): thin cracks
  are long and thin, noise specks and grain texture are not, and the average along a
  segment gains the signal-to-noise ratio that one pixel lacks, so faint cracks come out in
  longer pieces and isolated dark specks are dropped. Last, every background region enclosed
  by the particles (a 4-connected component of S = 0 that does not touch the image frame)
  of at most ``max_enclosed_area_um2`` and about convex (solidity at least
  ``min_enclosed_solidity``) becomes crack: the paper's crack phase includes internal pores
  and hollow cores (:func:`fill_enclosed_background`). Its provenance says
  ``"method": "baseline-classical"``. It cannot tell a crack wider than the closing disk and
  open to the outside from background, and it calls narrow background gaps between touching
  particles, and small pockets enclosed by several touching particles, "crack".

Each has a numpy kernel and Dask glue. The baseline's halo is computed from its structuring
elements, line segments and size limits (:func:`baseline_halo_px`) and its threshold is one
global value for the whole image (:func:`estimate_threshold`, from a strided sample of the
whole image), and so is its smoothing σ, which grows with the image's noise
(:func:`noise_index`, measured on fixed windows), so the tiled result equals the whole-image
result exactly. The enclosed background step has no bounded reach (a hole can be as large as
the image); it runs on global connected components across chunks instead of a halo
(:func:`fill_enclosed_background_dask`).

None of the baseline's choices (line test, its length, orientations and thresholds) comes
from the paper; they are documented where they are made (:func:`baseline_options`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from importlib.metadata import PackageNotFoundError, version

import numba
import numpy as np

from ..config import ETA_UM
from ..errors import InputError
from .superres import check_grey_image

#: Phase codes of eq. 1.
BACKGROUND, SOLID, CRACK = 0, 1, 2
#: Samples the global threshold is estimated from (at most about this many pixels).
THRESHOLD_SAMPLES = 1 << 20
#: Bins of the threshold histogram.
THRESHOLD_BINS = 256


# ---------------------------------------------------------------------------------------------
# eq. 7: probabilities -> phases
# ---------------------------------------------------------------------------------------------
def _check_t(t) -> float:
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise InputError(f"t: crack threshold must be a number in [0, 1], got {t!r}") from None
    if not 0.0 <= t <= 1.0:
        raise InputError(f"t: crack threshold must be in [0, 1], got {t}")
    return t


def _check_t_low(t_low, t: float) -> float | None:
    """``t_low`` of the hysteresis variant of eq. 7: None, or a number in [0, t]."""
    if t_low is None:
        return None
    try:
        t_low = float(t_low)
    except (TypeError, ValueError):
        raise InputError(f"t_low: lower crack threshold must be a number in [0, t], got {t_low!r}") from None
    if not 0.0 <= t_low <= 1.0:
        raise InputError(f"t_low: lower crack threshold must be in [0, 1], got {t_low}")
    return min(t_low, t)


def _solid_or_background_kernel(prob: np.ndarray) -> np.ndarray:
    """Eq. 7 for a pixel that is not crack: solid where Ŷ(x, 2) ≥ Ŷ(x, 1), else background."""
    return np.where(prob[..., 1] >= prob[..., 0], SOLID, BACKGROUND).astype(np.uint8)


def _phase_from_prob_kernel(prob: np.ndarray, t: float) -> np.ndarray:
    out = _solid_or_background_kernel(prob)
    out[prob[..., 2] >= t] = CRACK
    return out


def _check_min_crack_px(min_crack_px) -> int:
    if isinstance(min_crack_px, bool) or not isinstance(min_crack_px, (int, np.integer)) or min_crack_px < 0:
        raise InputError(f"min_crack_px: expected an integer number of pixels >= 0, got {min_crack_px!r}")
    return int(min_crack_px)


def _check_prob(prob) -> None:
    shape = getattr(prob, "shape", None)
    if shape is None or len(shape) != 3 or shape[-1] != 3:
        raise InputError(f"prob: expected shape (H, W, 3), got {shape}")


def _check_sigma(sigma_px) -> float:
    try:
        sigma = float(sigma_px)
    except (TypeError, ValueError):
        raise InputError(f"sigma_px: expected a number >= 0, got {sigma_px!r}") from None
    if not (math.isfinite(sigma) and sigma >= 0):
        raise InputError(f"sigma_px: expected a finite number >= 0, got {sigma_px!r}")
    return sigma


def _smooth_kernel(prob: np.ndarray, sigma: float) -> np.ndarray:
    """Each channel of (H, W, 3) ``prob`` smoothed by a Gaussian of σ px (scipy's 'reflect'
    border, truncated at 4σ); float32."""
    from scipy import ndimage as ndi

    prob = np.asarray(prob, dtype=np.float32)
    return ndi.gaussian_filter(prob, sigma=(sigma, sigma, 0), mode="reflect", truncate=4.0)


def smoothing_halo_px(sigma_px: float) -> int:
    """Reach (px) of :func:`_smooth_kernel`: scipy's Gaussian radius ``int(4σ + 0.5)``."""
    return int(4.0 * _check_sigma(sigma_px) + 0.5)


def phase_from_probabilities(prob: np.ndarray, t: float, *, t_low: float | None = None,
                             sigma_px: float = 0.0, min_crack_px: int = 0) -> np.ndarray:
    """Phase map from the U-net's softmax output Ŷ (eq. 7), optionally smoothed first, with
    hysteresis, and without its smallest crack components.

    Eq. 7: ``S(x) = 2`` if ``Ŷ(x, 3) ≥ t``; ``1`` if ``Ŷ(x, 3) < t`` and
    ``Ŷ(x, 2) ≥ Ŷ(x, 1)``; ``0`` otherwise. Channels are 0-based here: ``prob[..., 0]`` =
    Ŷ(·, 1) background, ``prob[..., 1]`` = Ŷ(·, 2) solid, ``prob[..., 2]`` = Ŷ(·, 3) crack.

    With ``t_low < t`` (hysteresis, not in the paper): a pixel is crack when Ŷ(x, 3) ≥ t_low
    and it is 8-connected through pixels with Ŷ(x, 3) ≥ t_low to a pixel with Ŷ(x, 3) ≥ t.
    A thin crack whose Ŷ(·, 3) dips below t along its length then stays one crack instead
    of breaking into pieces (each piece would count in λ, eq. 12), while isolated weak
    responses (all below t) stay out. ``t_low = None`` or ``t_low = t`` is eq. 7 exactly.

    With ``sigma_px > 0`` (not in the paper), each channel of Ŷ is first smoothed by a
    Gaussian of σ = ``sigma_px`` (reflecting border): the crack phase's edges get less
    ragged, and each bump of a ragged edge would be a branch of the skeleton and so a crack
    of its own (eq. 2).

    With ``min_crack_px > 0`` (not in the paper), last: every 8-connected crack component
    of at most that many pixels is given back to eq. 7's other two classes (solid where
    Ŷ(x, 2) ≥ Ŷ(x, 1), else background, on the smoothed Ŷ): specks and short fragments of
    noise would each count as a crack in λ (eq. 12). (The paper drops cracks of size
    d < 2.5 η after the crack-wise segmentation, §2.4.2; this acts on the phase map, before
    it, and on area.)

    Parameters
    ----------
    prob : (H, W, 3) float array
        Per-pixel probabilities of background, solid, crack (not checked to sum to 1).
    t : float
        Crack threshold t of eq. 7, in [0, 1] (chosen by maximal accuracy against
        annotations; :attr:`cathodeflow.config.Params.crack_threshold`).
    t_low : float, optional
        Lower (hysteresis) threshold in [0, 1]; values above ``t`` are taken as ``t``.
    sigma_px : float
        σ (px) of the Gaussian smoothing of Ŷ; 0 (default) = none.
    min_crack_px : int
        Crack components (8-connected) of at most this many pixels are removed; 0 (default)
        = none.

    Returns
    -------
    S : (H, W) uint8 array with values in {0, 1, 2}.
    """
    from scipy import ndimage as ndi

    t = _check_t(t)
    t_low = _check_t_low(t_low, t)
    sigma = _check_sigma(sigma_px)
    min_crack_px = _check_min_crack_px(min_crack_px)
    _check_prob(prob)
    prob = np.asarray(prob)
    if prob.dtype.kind not in "fiu":
        raise InputError(f"prob: expected a numeric array, got dtype {prob.dtype}")
    if sigma > 0:
        prob = _smooth_kernel(prob, sigma)
    out = _phase_from_prob_kernel(prob, t)
    if t_low is not None and t_low < t:
        labels, n = ndi.label(prob[..., 2] >= t_low, structure=np.ones((3, 3), bool))
        keep = np.zeros(n + 1, bool)
        keep[labels[out == CRACK]] = True
        keep[0] = False
        out[keep[labels]] = CRACK
    if min_crack_px > 0:
        labels, n = ndi.label(out == CRACK, structure=np.ones((3, 3), bool))
        small = _small_lut(np.bincount(labels.ravel(), minlength=n + 1), min_crack_px)
        if small.any():
            drop = small[labels]
            out[drop] = _solid_or_background_kernel(prob[drop])
    return out


def _small_lut(area: np.ndarray, max_px: int) -> np.ndarray:
    """Per label (0 = none): True for components of at most ``max_px`` pixels."""
    small = np.asarray(area) <= max_px
    small[0] = False
    return small


def _seed_labels(labels: np.ndarray, p_crack: np.ndarray, t: float) -> np.ndarray:
    return np.unique(labels[(p_crack >= t) & (labels > 0)]).astype(np.int64)


def phase_from_probabilities_dask(prob, t: float, *, t_low: float | None = None, sigma_px: float = 0.0,
                                  min_crack_px: int = 0):
    """:func:`phase_from_probabilities` on a (H, W, 3) Dask array; the channel axis is put
    in one chunk. Eq. 7 alone is lazy and chunkwise; the smoothing too, with a halo of
    :func:`smoothing_halo_px` (reflecting at the image border as the whole-image call does). The hysteresis (``t_low < t``) needs
    global 8-connected components of ``Ŷ(·, 3) ≥ t_low``
    (:func:`~cathodeflow.tiling.components.label_components`, which persists its per-chunk
    labels); the components holding a pixel ``≥ t`` are found per chunk (computed here, a
    short list of ids per chunk) and a lookup table marks them. The smallest cracks
    (``min_crack_px``) likewise: global components of the crack phase, their areas summed
    from per-chunk counts, a lookup table. The result equals the whole-image call for any
    chunking."""
    import dask
    import dask.array as da

    t = _check_t(t)
    t_low = _check_t_low(t_low, t)
    sigma = _check_sigma(sigma_px)
    _check_prob(prob)
    if len(prob.chunks[2]) != 1:
        prob = prob.rechunk({2: 3})
    if sigma > 0:
        halo = smoothing_halo_px(sigma)
        if min(prob.shape[:2]) <= halo:  # smaller than the halo: one block
            prob = prob.rechunk({0: -1, 1: -1}).map_blocks(_smooth_kernel, sigma, dtype=np.float32)
        else:  # (dask widens chunks narrower than the halo)
            prob = prob.map_overlap(_smooth_kernel, depth={0: halo, 1: halo, 2: 0}, boundary="reflect",
                                    dtype=np.float32, sigma=sigma)
    min_crack_px = _check_min_crack_px(min_crack_px)
    meta = np.empty((0, 0), dtype=np.uint8)
    out = da.map_blocks(_phase_from_prob_kernel, prob, t, drop_axis=2, dtype=np.uint8, meta=meta)
    from ..tiling.components import label_components, relabel

    if t_low is not None and t_low < t:
        p_crack = prob[..., 2]
        labels, n = label_components(p_crack >= t_low, connectivity=2)
        if n:
            p_crack = p_crack.rechunk(labels.chunks)
            task = dask.delayed(_seed_labels, pure=True)
            parts = [task(lb, pc, t) for lb, pc in zip(labels.to_delayed(optimize_graph=False).ravel(),
                                                       p_crack.to_delayed(optimize_graph=False).ravel())]
            (parts,) = dask.compute(parts)
            keep = np.zeros(n + 1, bool)
            keep[np.concatenate(parts)] = True
            keep[0] = False
            out = da.where(relabel(labels, keep), np.uint8(CRACK), out)
    if min_crack_px > 0:
        labels, n = label_components(out == CRACK, connectivity=2)
        if n:
            small = _small_lut(_component_areas(labels, n), min_crack_px)
            if small.any():
                other = da.map_blocks(_solid_or_background_kernel, prob, drop_axis=2, dtype=np.uint8, meta=meta)
                out = da.where(relabel(labels, small), other.rechunk(labels.chunks), out.rechunk(labels.chunks))
    return out


def _component_areas(labels, n: int) -> np.ndarray:
    """Pixels of each label 0..n of a chunked label array (summed from per-chunk counts,
    computed here): an (n + 1,) int64 array."""
    import dask

    (parts,) = dask.compute(_count_tasks(labels))
    return _areas(parts, n)


def _count_tasks(labels) -> list:
    """One delayed (ids, counts) per chunk of ``labels``."""
    import dask

    task = dask.delayed(_label_counts, pure=True)
    return [task(b) for b in labels.to_delayed(optimize_graph=False).ravel()]


def _areas(parts, n: int) -> np.ndarray:
    ids = np.concatenate([p[0] for p in parts])
    return np.bincount(ids, weights=np.concatenate([p[1] for p in parts]), minlength=n + 1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# the classical baseline
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BaselineOptions:
    """Options of the classical baseline, in pixels (see :func:`baseline_options`)."""

    sigma_px: float
    open_radius_px: int
    min_object_area_px: int
    close_radius_px: int
    max_hole_area_px: int
    crack_contrast: float
    min_crack_area_px: int
    line_contrast: float = 0.0
    line_radius_px: int = 0
    line_orientations: int = 0
    edge_fraction: float = 0.0
    edge_radius_px: int = 0
    open_necks: bool = False
    max_enclosed_area_px: int = 0
    min_enclosed_solidity: float = 0.0
    max_noise: float = 0.0
    max_sigma_px: float = 0.0
    max_blur_px: float = 0.0

    @property
    def noise_adaptive(self) -> bool:
        """Whether σ still has to be chosen from the image's noise (:func:`adapt_options`)."""
        return self.max_noise > 0 and self.max_sigma_px > self.sigma_px > 0

    @property
    def blur_adaptive(self) -> bool:
        """Whether the dark-line contrasts still have to be chosen from the image's edge blur
        (:func:`adapt_options`)."""
        return self.max_blur_px > 0 and self.crack_contrast > 0

    @property
    def adaptive(self) -> bool:
        """Whether σ or the dark-line contrasts still depend on the image (:func:`adapt_options`)."""
        return self.noise_adaptive or self.blur_adaptive

    def with_sigma(self, sigma_px: float) -> "BaselineOptions":
        """These options with σ fixed at ``sigma_px`` and the smallest crack component scaled
        with the smoothing's correlation area: ``round(min_crack_area_px · (σ / σ₀)²)``, σ₀ =
        ``self.sigma_px`` (see :func:`baseline_options`, Notes)."""
        area = self.min_crack_area_px
        if self.sigma_px > 0:
            area = int(round(area * (sigma_px / self.sigma_px) ** 2))
        return replace(self, sigma_px=float(sigma_px), min_crack_area_px=area, max_noise=0.0)

    def with_contrast(self, factor: float) -> "BaselineOptions":
        """These options with both dark-line contrasts (``crack_contrast``, ``line_contrast``)
        multiplied by ``factor`` and rounded to 1e-4, and fixed (``max_blur_px = 0``)."""
        return replace(self, crack_contrast=round(self.crack_contrast * factor, 4),
                       line_contrast=round(self.line_contrast * factor, 4), max_blur_px=0.0)

    @property
    def edge_test(self) -> bool:
        """Whether dark-line pixels must reach ``edge_fraction`` of their local peak."""
        return self.crack_contrast > 0 and self.edge_fraction > 0 and self.edge_radius_px > 0

    @property
    def line_test(self) -> bool:
        """Whether the oriented line-mean test is part of the dark-line test."""
        return self.crack_contrast > 0 and self.line_contrast > 0 and self.line_radius_px > 0

    def halo_px(self) -> int:
        """Overlap (px) that makes a tile exact: the sum of every step's reach.

        Gaussian: ``int(4σ + 0.5)``; each opening or closing (binary or grey): twice its disk
        radius; removing components of at most M px (small objects, small holes): M px (a
        component of at most M px lies within M−1 px of any of its pixels, and one of more
        than M px has more than M px within M px of any of its pixels); the line-mean test:
        the segment's half-length ``line_radius_px`` (its pixels lie within that Chebyshev
        distance); the local peak of the edge test: ``edge_radius_px``. The envelope chain
        (opening, small objects, closing, holes, then the open necks: the closing's radius)
        and the dark-line chain (grey closing,
        2·radius, then the larger of the edge and line tests' reach: both read the top-hat
        around the pixel) run side by side on the
        smoothed image; removing small crack components (M px) comes after both. The
        enclosed-background step (``max_enclosed_area_px``) is not part of the halo: it works
        on global components (:func:`fill_enclosed_background_dask`).
        """
        if self.noise_adaptive:
            raise ValueError("halo_px: choose σ first (adapt_options), the halo depends on it")
        gauss = int(4.0 * self.sigma_px + 0.5) if self.sigma_px > 0 else 0
        envelope = (
            2 * self.open_radius_px
            + self.min_object_area_px
            + 2 * self.close_radius_px
            + self.max_hole_area_px
            + (self.close_radius_px if self.open_necks else 0)
        )
        lines = 0
        if self.crack_contrast > 0 and self.close_radius_px > 0:  # the kernel's condition
            lines = 2 * self.close_radius_px + max(self.edge_radius_px if self.edge_test else 0,
                                                   self.line_radius_px if self.line_test else 0)
        return gauss + max(envelope, lines) + self.min_crack_area_px


#: Default Gaussian σ (px) of the baseline's smoothing on an image that is not noisy (the
#: noise raises it, :func:`adapt_options`).
DEFAULT_SIGMA_PX = 1.5
#: Defaults of the dark-line test (see :func:`baseline_options`, Notes).
DEFAULT_CRACK_CONTRAST = 0.2
DEFAULT_LINE_CONTRAST = 0.31
DEFAULT_LINE_RADIUS_PX = 10
DEFAULT_LINE_ORIENTATIONS = 8
DEFAULT_EDGE_FRACTION = 0.5
DEFAULT_EDGE_RADIUS_PX = 2
#: Default largest enclosed background region that becomes crack, µm² (a hollow core of
#: radius ≈ 3 µm, π·3² ≈ 28 µm²; see :func:`baseline_options`).
DEFAULT_MAX_ENCLOSED_AREA_UM2 = 30.0
#: Default least solidity (pixels / pixels of its convex hull) of an enclosed background
#: region that becomes crack: a hollow core or pore is about convex, a pocket between
#: touching particles is not (see :func:`baseline_options`).
DEFAULT_MIN_ENCLOSED_SOLIDITY = 0.8
#: Default largest noise index ν of the smoothed image before σ grows (see
#: :func:`noise_index`, :func:`adapt_options`).
DEFAULT_MAX_NOISE = 0.03
#: Default largest σ (px) the noise may push the smoothing to (4 × the default σ = 1.5 px).
DEFAULT_MAX_SIGMA_PX = 6.0
#: Default largest edge blur σ_e (px, :func:`edge_blur_px`) at which the dark-line contrasts
#: stay as given; blurrier images get lower ones (:func:`adapt_options`).
DEFAULT_MAX_BLUR_PX = 2.5
#: The edge blur is read from this quantile of the gradient magnitude along solid edges.
EDGE_GRADIENT_QUANTILE = 0.9
#: The noise index is measured on up to NOISE_WINDOWS × NOISE_WINDOWS windows of this edge.
NOISE_WINDOW_PX = 512
NOISE_WINDOWS = 3


def baseline_options(
    *,
    pixel_size_um: float = ETA_UM,
    max_crack_width_um: float = 0.15,
    sigma_px: float = DEFAULT_SIGMA_PX,
    open_radius_px: int = 1,
    min_object_area_px: int = 30,
    max_hole_area_px: int = 0,
    crack_contrast: float = DEFAULT_CRACK_CONTRAST,
    min_crack_area_px: int = 40,
    line_contrast: float = DEFAULT_LINE_CONTRAST,
    line_radius_px: int = DEFAULT_LINE_RADIUS_PX,
    line_orientations: int = DEFAULT_LINE_ORIENTATIONS,
    edge_fraction: float = DEFAULT_EDGE_FRACTION,
    edge_radius_px: int = DEFAULT_EDGE_RADIUS_PX,
    open_necks: bool = True,
    max_enclosed_area_um2: float = DEFAULT_MAX_ENCLOSED_AREA_UM2,
    min_enclosed_solidity: float = DEFAULT_MIN_ENCLOSED_SOLIDITY,
    max_noise: float = DEFAULT_MAX_NOISE,
    max_sigma_px: float = DEFAULT_MAX_SIGMA_PX,
    max_blur_px: float = DEFAULT_MAX_BLUR_PX,
) -> BaselineOptions:
    """Validated options of the baseline, with physical sizes converted to pixels.

    Parameters
    ----------
    pixel_size_um : float
        Pixel size of the image (µm); default η = 0.0143 µm (super-resolved grid).
    max_crack_width_um : float
        Widest crack (µm) the particle envelope must bridge; the closing disk has radius
        ``ceil(max_crack_width_um / (2·pixel_size_um))`` px (6 px for the default 0.15 µm at η).
    sigma_px : float
        Gaussian smoothing σ (px) before thresholding; 0 switches smoothing off. With
        ``max_noise > 0`` it is the smallest σ: noisier images get more (:func:`adapt_options`).
    open_radius_px : int
        Radius (px) of the disk opening the solid phase (removes specks); 0 = off.
    min_object_area_px : int
        Solid components (8-connected) of at most this many pixels are dropped; 0 = off.
    max_hole_area_px : int
        Holes of the envelope (4-connected background components) of at most this many pixels
        are filled (become crack); 0 = off. Each pixel of it adds one pixel of halo.
    crack_contrast : float
        Dark-line test, pixel part: inside the envelope, a pixel is a dark-line candidate when
        its black top-hat h (grey closing of the smoothed image with a square of side
        ``2·radius + 1``, radius of the envelope's disk, minus the smoothed image) exceeds
        ``crack_contrast · Δμ``, Δμ = μ_solid − μ_background the difference of the two class
        means of the global threshold's sample. Finds thin cracks that blurring lifted above
        the global threshold. 0 switches the whole dark-line test off. (A square instead of a
        disk: 15× faster, same accuracy on the synthetic study.)
    min_crack_area_px : int
        Crack components (8-connected) of at most this many pixels become solid (noise and
        fragments of the dark-line test); 0 = off. Each pixel of it adds one pixel of halo.
    line_contrast : float
        Dark-line test, line part: a candidate is crack only when, for at least one of
        ``line_orientations`` directions, the mean of h over the straight segment of
        ``2·line_radius_px + 1`` pixels centred on it exceeds ``line_contrast · Δμ``
        (:func:`line_offsets` gives the segments). 0 = off: every candidate is crack (the
        pixel test alone, as in the first version of this baseline, which used
        ``crack_contrast = 0.3``).
    line_radius_px : int
        Half-length (px, along the segment's major axis) of the line segments; 0 = off.
        Adds ``line_radius_px`` of halo.
    line_orientations : int
        Number of segment directions, evenly spaced over 180° (≥ 1 when the line test is on).
    edge_fraction : float
        Dark-line test, edge part: a candidate is crack only when its top-hat h is at least
        ``edge_fraction`` of the largest h within ``edge_radius_px`` (a square of side
        ``2·edge_radius_px + 1``): the blurred crack's edge is placed where its depth falls
        to that fraction of the local peak instead of at the fixed ``crack_contrast``.
        0 = off. In [0, 1].
    edge_radius_px : int
        Half-side (px) of the square the local peak of h is taken over; 0 = off. Adds
        ``edge_radius_px`` of halo.
    open_necks : bool
        Pixels the envelope's closing added (not solid) within the closing disk's radius of
        the background outside the envelope go back to background: where two particles
        touch, the closing fills the neck between them, and as "crack" that fill widened
        the neck until eq. 8–10 merged the particles. Costs the mouth (up to that radius)
        of wide cracks open to the particle's surface. Adds the radius to the halo.
    max_enclosed_area_um2 : float
        Last step: every 4-connected background component of the phase map that does not
        touch the image frame and covers at most this area (µm²; at most
        ``floor(max_enclosed_area_um2 / pixel_size_um²)`` px) becomes crack
        (:func:`fill_enclosed_background`). 0 switches the step off. The default 30 µm²
        lets a hollow core of radius up to about 3 µm (π·3² ≈ 28 µm²) count, and keeps the
        large pores between particles background.
    min_enclosed_solidity : float
        An enclosed region of that step becomes crack only when its solidity, its pixel
        count over the number of pixels whose centres lie in the convex hull of its pixel
        centres (:func:`enclosed_solidity`), is at least this: hollow cores and pores are
        about convex (a disc: 1), while a pocket enclosed by several touching particles is
        bounded by their convex outlines and is not (between three tangent discs 0.37;
        necks between them cut its cusps off and raise it). In [0, 1]; 0 = every enclosed
        region (the rule before 2026-12-02). Default 0.8 (Notes).
    max_noise : float
        Largest noise index ν (:func:`noise_index`: noise of the σ-smoothed image over the
        solid–background contrast) the segmentation accepts before it smooths more: σ becomes
        ``min(max_sigma_px, sigma_px · ν / max_noise)`` when ν > ``max_noise``
        (:func:`adapt_options`). 0 = σ is ``sigma_px`` whatever the noise.
    max_sigma_px : float
        Largest σ (px) the noise may push the smoothing to (≥ ``sigma_px``). When σ grows,
        ``min_crack_area_px`` grows with σ² (:meth:`BaselineOptions.with_sigma`).
    max_blur_px : float
        Largest edge blur σ_e (px; :func:`edge_blur_px`, measured after smoothing with
        ``sigma_px``) at which ``crack_contrast`` and ``line_contrast`` apply as given. On a
        blurrier image both are multiplied by ``(max_blur_px / σ_e)²`` (:func:`adapt_options`),
        since blur makes thin cracks shallower. 0 = the contrasts are used whatever the blur.

    Notes
    -----
    None of these choices is from the paper (which segments with a U-net, §2.3.2). The
    defaults were chosen on synthetic studies of :mod:`cathodeflow.synth` (seeds 100–102,
    12 images each, super-resolved with the baseline interpolation), never on the seed-0
    study used to report results; they are not tuned on real SEM data:

    * σ = 1.5 px, 0.15 µm, 40 px: best crack IoU with the porosity closest to the truth for
      the pixel test alone.
    * The pixel test alone (contrast 0.3) gets the porosity ρ (eq. 11) within about ±5 % but
      the crack intensity λ (eq. 12) 1.5–2.3× too high: faint thin cracks come out as chains
      of fragments and noise adds dark specks. Averaging h along a segment raises the
      crack-to-noise ratio by about √(segment length) for line-like cracks only. With a lower
      pixel threshold (0.2, to let the faint parts of cracks through) and a segment of 21 px
      in 8 directions (22.5° apart; a segment 11.25° off a crack's direction drifts 2 px from
      it at its ends, within the blurred crack's width) at contrast 0.31, the per-condition
      λ/λ_true went from 1.5–2.3 to 0.90–1.10 and ρ/ρ_true stayed near 1 (0.90–1.13, against
      0.93–1.08: slightly more spread). Segments of 15 px at 0.33 and 12 directions gave
      about the same; longer segments or higher contrasts lose short cracks, lower ones
      bring the fragments back. Growing the kept pieces back into the candidates
      (hysteresis) or bridging gaps by directional closings raised ρ by 5–30 % for little
      gain in λ, so neither is part of the baseline.
    * The price: the lower pixel threshold widens the cracks it finds and the line test
      loses a few pixels at crack ends and along sharp bends, so the crack pixel IoU against
      the truth fell from about 0.58 to 0.52 (pixel accuracy 0.983 → 0.980); widths b
      (eq. 16) of thin cracks come out wider.
    * What this cannot fix: cracks too faint to see at the low resolution are missed, and
      the remaining breaks and the missed small cracks (voids of a few tens of pixels)
      partly cancel in λ.
    * Noise-adaptive σ: on low-dose images (the ``lowcontrast`` style family of
      :mod:`cathodeflow.synth.style`: binder at 75–92 % of the solid's grey, shot noise
      0.08–0.14) σ = 1.5 px leaves the solid riddled with dark specks, and the envelope and
      the dark-line test turn them into crack (20–35× the true crack area, pixel accuracy
      0.4–0.5). Smoothing a 2-D white-noise field with a Gaussian of σ divides its standard
      deviation by 2√π·σ, so the noise left falls as 1/σ and σ grows in proportion to the
      measured noise index. The limit ``max_noise = 0.03`` was chosen on the training style
      families only (seeds 777, 4 images of 630 × 840 px each, bicubic SR input, random
      geometry; before the crack-size scaling of the next item) as the one with the largest
      mean gain that lowered no family's crack IoU: it leaves σ at 1.5 px on the classic,
      channelling, curtain and soft images and raises the mean pixel accuracy over the six
      families from 0.928 to 0.934 and the mean crack IoU from 0.327 to 0.330
      (bright-binder 0.753 → 0.788 and 0.190 → 0.205). 0.02 gained
      more on average (0.938, 0.336) but smoothed thin cracks away on ordinary images
      (filled-cracks IoU 0.467 → 0.461; on one classic scene of the quality benchmark, ν =
      0.043 gave σ = 3.2 px and IoU fell). On the two families left out: lowcontrast
      accuracy 0.47 → 0.83, crack IoU 0.05 → 0.16, crack area 24× → 2.7× the truth (σ
      4.2–5.8 px); charging unchanged (σ stays 1.5 px).
    * The smallest crack component grows with σ²: smoothing with σ turns noise into blobs
      whose area grows as σ², so a limit set for σ₀ would let the larger noise blobs of a
      larger σ through as many small "cracks" and inflate λ. Measured with the adaptive σ
      (4 scenes of 630 × 840 px, then 2 of 1540 × 2100 px): on the training family where σ
      rose (bright-binder), crack components 8.0× → 4.1× and 6.9× → 5.1× the true number,
      crack IoU 0.205 → 0.210 and 0.159 → 0.160; on the left-out lowcontrast family 3.9× →
      2.2× and 4.3× → 2.2×, but crack IoU 0.159 → 0.122 and 0.165 → 0.134 (faint crack
      pieces go with the noise). With both, over the six training families: accuracy
      0.928 → 0.934, crack IoU 0.327 → 0.331; lowcontrast 0.47 → 0.84, crack IoU 0.05 →
      0.12, crack area 24× → 2.0× the truth.
    * Edge test: the pixel test's fixed contrast puts a blurred crack's edge where its
      depth falls to 0.2 Δμ, so cracks came out about twice as wide as they are (crack
      area per skeleton pixel 1.9× the truth on the classic family). Keeping only
      candidates whose h reaches a fraction of the largest h within 2 px moves the edge
      toward the crack's true edge (a flat-bottomed crack of 7–8 px blurred by 1–2 px comes
      out at its true width instead of 2 px wider; cracks of 3–6 px stay 2 px too wide).
      Chosen on the training families (same scenes as below, blur-adaptive contrasts on):
      the fraction trades crack IoU against crack area, since the cracks the test cannot see
      no longer hide behind the too-wide ones. Over 5 × 5 px, fractions 0.4, 0.5 and 0.6
      gave a mean crack IoU of 0.401, 0.417 and 0.430 (none 0.390; over 7 × 7 px 0.7 lost
      faint cracks, 11 × 11 px less), and a crack area on the classic family of 1.01×,
      0.93× and 0.83× the truth (1.04× without; on two scenes of 1540 × 2100 px with the
      paper's particle sizes 1.04×, 1.00× and 0.94×). 0.5 is the largest fraction that
      keeps that area within 10 % of the truth on both. With it every training family
      gained crack IoU: classic 0.553 → 0.597, curtain 0.412 → 0.443, filled-cracks 0.492 →
      0.521, channelling 0.280 → 0.301, bright-binder 0.210 → 0.242, soft 0.391 → 0.400;
      crack widths on classic 1.90× → 1.72× the truth. On the families left out: charging
      0.453 → 0.459, lowcontrast unchanged. The price: on the demo study (sharp images)
      the porosity fell from 0.93–1.01× to 0.84–0.91× the truth, and λ stayed where it
      was.
    * Blur-adaptive contrasts: a crack much narrower than the blur keeps its intensity
      deficit but spreads it, so its depth falls as 1/σ_e, and on strongly blurred images
      (the ``soft`` style family: probe blur 28–55 nm) the fixed contrasts found almost no
      crack (crack IoU 0.06, crack area 0.08× the truth). With ``max_blur_px`` both
      contrasts are multiplied by (max_blur_px / σ_e)² when σ_e (:func:`edge_blur_px`) is
      larger. The square, and the limit 2.5 px, were chosen on the training families only
      (seeds 777, 4 scenes of 630 × 840 px each, bicubic SR input, random geometry), by the
      rule used for ``max_noise``: the largest mean gain that lowers no family's crack IoU.
      With the factor (max_blur_px / σ_e)¹ soft scenes reached crack IoU 0.23 only. Limits of
      2.0 and 2.2 px lowered the classic family (crack IoU 0.553 → 0.519 and 0.545) and the
      curtain family (0.412 → 0.350 and 0.403); 2.4 px left every family's IoU as it was
      and gained as much as 2.5 px (filled-cracks 0.499 against 0.492), but sits among
      ordinary scenes (σ_e up to 2.33 px on classic, 2.42 px on channelling); 2.6 and 2.8 px
      gained less (soft 0.386, 0.340). At
      2.5 px: soft crack IoU 0.057 → 0.391, crack area 0.08× → 0.93× the truth,
      filled-cracks 0.475 → 0.492, the other training families unchanged. On the families
      left out: charging crack IoU 0.415 → 0.453 but crack components 0.9× → 2.1× the true
      number (one scene of four has σ_e = 3.1 px and its glow and tails pass the lowered
      line test); lowcontrast unchanged (its noise steepens the edges). Three real Zeiss
      InLens SEM images read σ_e = 0.9–1.0 px (bright edge rims) and keep the contrasts.
    * Open necks: where two particles touch, the envelope's closing fills the neck between
      them, and that fill counted as crack: it widened the neck until the marker watershed
      (eq. 8–10) merged the particles. On three real SEM images of agglomerated TiO₂
      nanoparticles with manual instance masks (7.3 nm px, closing radius 11 px, marker
      radius 10 px) the share of particles matched (IoU ≥ 0.5) went from 0.04 / 0.09 / 0.05
      to 0.15 / 0.22 / 0.13 (the masks as phase maps reach 0.44 / 0.46 / 0.35), the
      "crack" on these crack-free particles from 4.5 / 2.1 / 2.9 % to 3.0 / 1.5 / 1.2 %
      of the image, but the foreground IoU against the masks from 0.77 / 0.86 / 0.81 to
      0.78 / 0.84 / 0.75 (the necks' pixels belong to the particles there). On scenes with the paper's
      particle sizes (2 per family, 1540 × 2100 px): particles matched classic 0.52 → 0.56,
      filled-cracks 0.52 → 0.59, charging 0.39 → 0.42, crack IoU within ±0.002; but on the
      left-out low-contrast family 0.35 → 0.28 and crack IoU 0.072 → 0.046. On the small
      training scenes: bright-binder crack IoU 0.242 → 0.346 (its binder, as bright as the
      solid, had been closed into the particles), particles matched classic 0.57 → 0.62,
      and crack IoU 0.004–0.007 lower on classic, channelling, curtain and filled-cracks
      (mouths of cracks open to the surface). Half the closing's radius (3 px) gained less
      (classic particles unchanged).
    * Enclosed background: the paper's crack phase holds internal pores and hollow cores,
      which the envelope cannot bridge when they are wider than the closing disk (a
      cracked NMC811 slice with hollow particles came out split into wedges). A background
      component that does not touch the frame is enclosed, but so is a pocket between
      several touching particles: only the area limit keeps the larger inter-particle pores
      background, and pockets below it (between three touching particles of radius R about
      0.16·R², e.g. 3.5 µm² for R = 4.65 µm) become crack. Requiring the hole to be
      enclosed by *one* solid+crack component does not help: with 4-connected background
      and 8-connected solid+crack, every bounded background component is surrounded by
      exactly one 8-connected solid+crack component, and touching particles form one such
      component. Telling the particles apart needs eq. 8–10, which are computed from
      this phase map; their shape does not: a pocket is bounded by the convex outlines of
      the particles around it and is far from convex, a hollow core or pore is about
      convex. Hence ``min_enclosed_solidity``. Among the enclosed regions of four training
      families' scenes (classic and porous geometries, scikit-image's solidity), those of
      solidity below 0.7 were 91–100 % true background (by area); in the porous geometry
      those above 0.9 were 98 % true crack. Chosen on the six training families (2 scenes each of 1540 × 2100 px in
      the classic, porous and random geometries, high-res and SR input), by the mean of
      (1 − crack IoU) + |ln λ ratio| + |ln ρ ratio| over the 36 (family, geometry, input)
      cases: 1.90 without the rule, 1.51 / 1.48 / 1.47 / 1.45 / 1.45 / 1.46 at 0.6 / 0.7 /
      0.75 / 0.8 / 0.85 / 0.9; 0.8 is the lower of the two best, since the porous
      scenes (hollow cores) lose from 0.9 on. At 0.8: ρ on the random geometry (small,
      touching particles) 3.5–5.2× → 0.8–3.7× the truth (high-res) and 3.3–4.3× → 0.7–2.0×
      (SR); crack IoU on the classic geometry's high-res input 0.36–0.73 → 0.44–0.86;
      particles matched 0.10–0.38 → 0.27–0.46 on the random geometry's high-res input. On the two families
      left out (same scenes): the criterion 2.15 → 1.84 on average, better on all three
      geometries' high-res input and the random geometry's SR input, worse on the classic
      and porous geometries' SR input (1.95 → 2.04, 2.37 → 2.69), where the method finds
      too few crack pixels and the pockets had made up for them (ρ 0.48 → 0.22 and 1.21
      → 0.46 on the charging family). The price: an enclosed region that is crack but not
      convex, such as a wide annular gap between a particle's core and its shell
      (solidity of a ring r/2 < d ≤ r: 0.75), stays background. A hollow core cut by the
      image frame touches the frame and stays background.
    """
    if not (pixel_size_um > 0 and math.isfinite(pixel_size_um)):
        raise InputError(f"pixel_size_um must be > 0, got {pixel_size_um}")
    if not (max_crack_width_um >= 0 and math.isfinite(max_crack_width_um)):
        raise InputError(f"max_crack_width_um must be >= 0, got {max_crack_width_um}")
    if not (sigma_px >= 0 and math.isfinite(sigma_px)):
        raise InputError(f"sigma_px must be >= 0, got {sigma_px}")
    for name, v in (("max_noise", max_noise), ("max_sigma_px", max_sigma_px), ("max_blur_px", max_blur_px)):
        try:
            ok = not isinstance(v, bool) and v >= 0 and math.isfinite(v)
        except TypeError:
            ok = False
        if not ok:
            raise InputError(f"{name} must be a finite number >= 0, got {v!r}")
    if max_noise > 0 and max_sigma_px < sigma_px:
        raise InputError(f"max_sigma_px must be >= sigma_px ({sigma_px}) when max_noise > 0, got {max_sigma_px}")
    for name, v in (("crack_contrast", crack_contrast), ("line_contrast", line_contrast),
                    ("edge_fraction", edge_fraction)):
        try:
            ok = v >= 0 and math.isfinite(v)
        except TypeError:
            ok = False
        if not ok:
            raise InputError(f"{name} must be a number >= 0, got {v!r}")
    if not isinstance(open_necks, (bool, np.bool_)):
        raise InputError(f"open_necks must be True or False, got {open_necks!r}")
    if edge_fraction > 1:
        raise InputError(f"edge_fraction must be a fraction in [0, 1], got {edge_fraction!r}")
    ints = {
        "open_radius_px": open_radius_px,
        "min_object_area_px": min_object_area_px,
        "max_hole_area_px": max_hole_area_px,
        "min_crack_area_px": min_crack_area_px,
        "line_radius_px": line_radius_px,
        "line_orientations": line_orientations,
        "edge_radius_px": edge_radius_px,
    }
    for name, v in ints.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(f"{name} must be an integer >= 0, got {v!r}")
    if line_contrast > 0 and line_radius_px > 0 and line_orientations < 1:
        raise InputError(
            "line_orientations must be >= 1 when the line test is on "
            f"(line_contrast={line_contrast}, line_radius_px={line_radius_px}), got 0"
        )
    try:
        ok = max_enclosed_area_um2 >= 0 and math.isfinite(max_enclosed_area_um2)
    except TypeError:
        ok = False
    if not ok:
        raise InputError(
            "max_enclosed_area_um2 must be a finite number >= 0 (µm²), "
            f"got {max_enclosed_area_um2!r}"
        )
    try:
        ok = not isinstance(min_enclosed_solidity, bool) and 0 <= min_enclosed_solidity <= 1
    except TypeError:
        ok = False
    if not ok:
        raise InputError(f"min_enclosed_solidity must be a number in [0, 1], got {min_enclosed_solidity!r}")
    close_r = int(math.ceil(max_crack_width_um / (2.0 * pixel_size_um) - 1e-9))
    # relative slack against rounding, e.g. 16 / 0.1² = 1599.9999999999998
    enclosed_px = int(math.floor(max_enclosed_area_um2 / pixel_size_um**2 * (1 + 1e-12)))
    return BaselineOptions(
        sigma_px=float(sigma_px),
        open_radius_px=int(open_radius_px),
        min_object_area_px=int(min_object_area_px),
        close_radius_px=max(close_r, 0),
        max_hole_area_px=int(max_hole_area_px),
        crack_contrast=float(crack_contrast),
        min_crack_area_px=int(min_crack_area_px),
        line_contrast=float(line_contrast),
        line_radius_px=int(line_radius_px),
        line_orientations=int(line_orientations),
        edge_fraction=float(edge_fraction),
        edge_radius_px=int(edge_radius_px),
        open_necks=bool(open_necks),
        max_enclosed_area_px=enclosed_px,
        min_enclosed_solidity=float(min_enclosed_solidity),
        max_noise=float(max_noise),
        max_sigma_px=float(max_sigma_px),
        max_blur_px=float(max_blur_px),
    )


def baseline_halo_px(**options) -> int:
    """Halo (px) the tiled baseline needs for ``options`` (see :func:`baseline_options`) once
    σ is fixed; with a noise-adaptive σ, the halo of the largest σ it may choose."""
    opts = baseline_options(**options)
    if opts.noise_adaptive:
        opts = opts.with_sigma(opts.max_sigma_px)
    return opts.halo_px()


# ---------------------------------------------------------------------------------------------
# noise-adaptive smoothing
# ---------------------------------------------------------------------------------------------
#: Immerkær's noise operator: the difference of two discrete Laplacians; its response to white
#: noise of standard deviation s has standard deviation 6·s (the norm of the kernel).
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def noise_windows(shape) -> list[tuple[slice, slice]]:
    """The windows the noise index is measured on: a grid of at most ``NOISE_WINDOWS`` ×
    ``NOISE_WINDOWS`` windows of edge ``min(NOISE_WINDOW_PX, image edge)``, evenly spread from
    one corner to the other (duplicates dropped). They depend on the shape only, so the
    whole-image and the tiled segmentation read the same pixels."""
    axes = []
    for n in shape:
        side = min(NOISE_WINDOW_PX, int(n))
        starts = sorted({round(i * (int(n) - side) / (NOISE_WINDOWS - 1)) for i in range(NOISE_WINDOWS)})
        axes.append([slice(a, a + side) for a in starts])
    return [(sy, sx) for sy in axes[0] for sx in axes[1]]


def _smoothed(window, sigma_px: float) -> np.ndarray:
    """One measuring window smoothed by a Gaussian of σ (reflecting at the window's edge)."""
    from scipy import ndimage as ndi

    img = np.asarray(window, dtype=np.float32)
    if sigma_px > 0:
        img = ndi.gaussian_filter(img, sigma_px, mode="reflect", truncate=4.0)
    return img


def _noise_responses(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """|Immerkær response| of one σ-smoothed window on the grid of every ``ceil(2σ)``-th
    pixel, ``ceil(4σ)`` px away from the window's edge (where the reflection reaches)."""
    from scipy import ndimage as ndi

    step, edge = max(1, math.ceil(2 * sigma_px)), math.ceil(4 * sigma_px)
    grid = img[edge : img.shape[0] - edge : step, edge : img.shape[1] - edge : step]
    if min(grid.shape) < 3:
        return np.empty(0, dtype=np.float64)
    return np.abs(ndi.correlate(grid, _NOISE_KERNEL, mode="reflect")[1:-1, 1:-1]).ravel().astype(np.float64)


def _edge_gradients(img: np.ndarray, t: float, sigma_px: float) -> np.ndarray:
    """Gradient magnitude (central differences) of one σ-smoothed window at the solid's edge
    pixels (solid = ``img > t``, with a background 4-neighbour), ``ceil(4σ) + 1`` px away from
    the window's edge."""
    from scipy import ndimage as ndi

    solid = img > t
    edge_px = solid & ~ndi.binary_erosion(solid, border_value=1)
    e = math.ceil(4 * sigma_px) + 1
    inner = (slice(e, img.shape[0] - e), slice(e, img.shape[1] - e))
    gy, gx = np.gradient(img)
    return np.hypot(gx, gy)[inner][edge_px[inner]].astype(np.float64)


def _window_measures(windows, levels, sigma_px: float) -> tuple[float, float]:
    """(ν, σ_e) of :func:`noise_index` and :func:`edge_blur_px` from the measuring windows."""
    contrast = float(levels[2] - levels[1])
    if not contrast > 0:
        return 0.0, 0.0
    responses, gradients = [], []
    for w in windows:
        img = _smoothed(w, sigma_px)
        responses.append(_noise_responses(img, sigma_px))
        gradients.append(_edge_gradients(img, float(levels[0]), sigma_px))
    r, g = np.concatenate(responses), np.concatenate(gradients)
    nu = float(1.4826 * np.median(r) / 6.0 / contrast) if r.size else 0.0
    steepest = float(np.quantile(g, EDGE_GRADIENT_QUANTILE)) if g.size else 0.0
    blur = contrast / (math.sqrt(2 * math.pi) * steepest) if steepest > 0 else 0.0
    return nu, float(blur)


def _measure_image(image, levels, sigma_px: float):
    """(ν, σ_e, levels as float64 (3,)): the measuring windows and lazy levels computed
    together."""
    import dask.array as da

    windows = [image[w] for w in noise_windows(image.shape)]
    if isinstance(image, da.Array) or isinstance(levels, da.Array):
        import dask

        windows, levels = dask.compute(windows, levels)
    levels = np.asarray(levels, dtype=np.float64)
    if levels.shape != (3,):
        raise InputError(f"levels: expected 3 values [t, mu_bg, mu_solid], got {levels.shape}")
    return (*_window_measures(windows, levels, sigma_px), levels)


def noise_index(image, *, levels=None, sigma_px: float = 1.5) -> float:
    """Noise index ν of an image for the classical baseline (not from the paper).

    ν = σ̂ / Δμ: σ̂ is Immerkær's robust noise estimate (1.4826 · median |response| / 6 of
    the operator ``[[1,-2,1],[-2,4,-2],[1,-2,1]]``) of the image smoothed by a Gaussian of
    σ = ``sigma_px``, on the grid of every ``ceil(2σ)``-th pixel, so that the smoothed noise
    is nearly uncorrelated between grid points; Δμ = μ_solid − μ_background from the global
    levels (:func:`estimate_levels`). The median ignores edges and cracks, which are a small
    share of the grid. Measured on :func:`noise_windows` (at most 9 windows of 512 px), so it
    costs little on a mosaic; 0 when Δμ ≤ 0 or the image is too small to measure.

    Parameters
    ----------
    image : (H, W) numpy or dask array
    levels : (3,) array-like or dask array, optional
        :func:`estimate_levels` of the image; estimated when not given.
    sigma_px : float
        σ (px) of the smoothing whose residual noise is measured.
    """
    return _measure_image(image, _levels_of(image, levels, None), _check_sigma(sigma_px))[0]


def edge_blur_px(image, *, levels=None, sigma_px: float = 1.5) -> float:
    """Edge blur σ_e (px) of an image for the classical baseline (not from the paper).

    A step of height Δμ blurred by a Gaussian of standard deviation s has the steepest
    gradient Δμ / (√(2π)·s), so σ_e = Δμ / (√(2π)·g₉₀): g₉₀ is the 0.9 quantile of the
    gradient magnitude (central differences) over the solid's edge pixels (above the global
    threshold t, with a 4-neighbour below it) of the image smoothed by a Gaussian of σ =
    ``sigma_px``; Δμ = μ_solid − μ_background (:func:`estimate_levels`). For an image blurred by
    s, σ_e ≈ √(s² + σ²). The upper quantile reads the sharpest edges: edges that are not full
    solid–background steps (binder as bright as the solid, a particle tilted in the section)
    are less steep and would make the image look blurrier than it is, and noise and bright
    edge rims make edges steeper, so a noisy image reads as sharp. Measured on the same
    :func:`noise_windows` as ν; 0 when Δμ ≤ 0 or no edge is found. Parameters as for
    :func:`noise_index` (``sigma_px``: the smoothing before the gradient).
    """
    return _measure_image(image, _levels_of(image, levels, None), _check_sigma(sigma_px))[1]


def _levels_of(image, levels, threshold):
    import dask.array as da

    if levels is not None:
        return levels
    if isinstance(image, da.Array):
        return estimate_levels_dask(image, threshold=threshold)
    return estimate_levels(np.asarray(image), threshold=threshold)


def adapt_options(image, levels, opts: BaselineOptions):
    """``(opts, levels)`` with what depends on ``image`` chosen (see :func:`baseline_options`):

    * σ = ``min(max_sigma_px, σ₀ · max(1, ν / max_noise))`` rounded to 0.01 px, ν =
      :func:`noise_index` at σ₀ = ``opts.sigma_px``, with the smallest crack component scaled
      by (σ/σ₀)² (:meth:`BaselineOptions.with_sigma`);
    * both dark-line contrasts multiplied by ``min(1, (max_blur_px / σ_e)²)``, σ_e =
      :func:`edge_blur_px` at σ₀ (:meth:`BaselineOptions.with_contrast`);

    and the levels computed (with the measuring windows, in one pass when they are lazy).
    ``opts`` and ``levels`` are unchanged when nothing is adaptive."""
    if not opts.adaptive:
        return opts, levels
    nu, blur, levels = _measure_image(image, levels, opts.sigma_px)
    if opts.noise_adaptive:
        sigma = min(opts.max_sigma_px, opts.sigma_px * max(1.0, nu / opts.max_noise))
        opts = opts.with_sigma(round(sigma, 2))
    if opts.blur_adaptive:
        opts = opts.with_contrast(min(1.0, (opts.max_blur_px / blur) ** 2) if blur > 0 else 1.0)
    return opts, levels


def adapted_options(image, *, levels=None, threshold: float | None = None, **options) -> BaselineOptions:
    """The :class:`BaselineOptions` the classical baseline segments ``image`` with, for
    ``options`` (see :func:`adapt_options`). Reads the strided sample of
    :func:`estimate_levels` (unless ``levels`` is given) and the :func:`noise_windows`."""
    opts = baseline_options(**options)
    if not opts.adaptive:
        return opts
    return adapt_options(image, _levels_of(image, levels, threshold), opts)[0]


def baseline_sigma_px(image, *, levels=None, threshold: float | None = None, **options) -> float:
    """The σ (px) the classical baseline smooths ``image`` with, for ``options`` (see
    :func:`adapt_options`)."""
    return adapted_options(image, levels=levels, threshold=threshold, **options).sigma_px


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r


def _threshold_step(shape) -> int:
    n = int(np.prod(shape))
    return max(1, int(math.ceil(math.sqrt(n / THRESHOLD_SAMPLES))))


def _levels_from_sample(sample: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """[t, μ_below, μ_above]: threshold (Otsu unless given) and the two class means."""
    from skimage.filters import threshold_otsu

    s = np.asarray(sample, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise InputError("image: no finite values to estimate the solid threshold from")
    lo, hi = float(s.min()), float(s.max())
    if threshold is not None:
        t = float(threshold)
    elif lo == hi:
        t = lo
    else:
        counts, edges = np.histogram(s, bins=THRESHOLD_BINS, range=(lo, hi))
        centres = 0.5 * (edges[:-1] + edges[1:])
        t = float(threshold_otsu(hist=(counts, centres)))
        # Otsu's criterion is flat across empty bins and skimage returns the first bin of the
        # plateau: a two-level image would get t at its lower level. Take the gap's middle.
        i = int(np.searchsorted(centres, t))
        above = np.flatnonzero(counts[i + 1:])
        if above.size and above[0] > 0:
            t = 0.5 * (t + float(centres[i + 1 + above[0]]))
    below, above = s[s <= t], s[s > t]
    mu_lo = float(below.mean()) if below.size else t
    mu_hi = float(above.mean()) if above.size else t
    return np.array([t, mu_lo, mu_hi], dtype=np.float64)


def estimate_levels(image: np.ndarray, *, threshold: float | None = None) -> np.ndarray:
    """Global grey levels of the baseline: ``[t, μ_background, μ_solid]`` (float64, (3,)).

    From a strided sample ``image[::k, ::k]`` with ``k = ceil(sqrt(H·W / 2**20))`` (about a
    million pixels at most) of the raw image: ``t`` is Otsu's threshold on a 256-bin histogram
    over the sample's range (or ``threshold`` when given), μ are the sample means below/above
    ``t``. One value for the whole image, shared by every tile.
    """
    image = np.asarray(image)
    k = _threshold_step(image.shape)
    return _levels_from_sample(image[::k, ::k], threshold)


def estimate_threshold(image: np.ndarray) -> float:
    """Global solid/background threshold t (Otsu on a strided sample; see
    :func:`estimate_levels`)."""
    return float(estimate_levels(image)[0])


def _levels_block(block: np.ndarray, threshold=None) -> np.ndarray:
    return _levels_from_sample(block, threshold)


def estimate_levels_dask(image, *, threshold: float | None = None):
    """Lazy (3,) Dask array with :func:`estimate_levels` of a Dask image (same values).

    Built from Dask array operations only (strided slice, one-chunk rechunk, map_blocks), so
    in one graph with the segmentation the upstream chunks are computed once.
    """
    import dask.array as da

    k = _threshold_step(image.shape)
    sample = image[::k, ::k].rechunk(-1)
    return da.map_blocks(
        _levels_block, sample, threshold, drop_axis=[0, 1], new_axis=0, chunks=((3,),),
        dtype=np.float64, meta=np.array((), dtype=np.float64),
    )


def estimate_threshold_dask(image):
    """Lazy 0-d Dask array with :func:`estimate_threshold` of a Dask image (same value)."""
    return estimate_levels_dask(image)[0]


def _remove_small(mask: np.ndarray, max_size: int, *, connectivity: int) -> np.ndarray:
    """``mask`` without its components of at most ``max_size`` pixels."""
    from scipy import ndimage as ndi

    if max_size <= 0 or not mask.any():
        return mask
    structure = ndi.generate_binary_structure(2, connectivity)
    labels, n = ndi.label(mask, structure=structure)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    small = sizes <= max_size
    small[0] = False
    return mask & ~small[labels]


def _dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of ``mask`` by the disk ``_disk(radius)``, outside = background.

    Equal to ``ndi.binary_dilation(mask, _disk(radius), border_value=0)`` (the disk is the
    union of its rows, row ``dy`` a run of half-width ``isqrt(r² − dy²)``), computed as a
    maximum over shifted 1-D running maxima: about 5× faster for a radius of 6 px.
    """
    from scipy import ndimage as ndi

    r = int(radius)
    mask = np.asarray(mask, dtype=bool)
    if r <= 0:
        return mask.copy()
    H = mask.shape[0]
    m = mask.view(np.uint8)
    runs: dict[int, np.ndarray] = {}
    out = np.zeros(mask.shape, dtype=np.uint8)
    for dy in range(-r, r + 1):
        w = math.isqrt(r * r - dy * dy)
        if w not in runs:
            runs[w] = ndi.maximum_filter1d(m, 2 * w + 1, axis=1, mode="constant", cval=0)
        row = runs[w]
        if abs(dy) >= H:
            continue
        if dy >= 0:  # out[y] |= row[y + dy]
            np.maximum(out[: H - dy], row[dy:], out=out[: H - dy])
        else:
            np.maximum(out[-dy:], row[: H + dy], out=out[-dy:])
    return out.view(bool)


def _close_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary closing by ``_disk(radius)``: dilation with outside = background, then erosion
    with outside = foreground (so objects cut by the edge are not eaten); equal to
    ``binary_erosion(binary_dilation(mask, se, border_value=0), se, border_value=1)``."""
    dil = _dilate_disk(mask, radius)
    return ~_dilate_disk(~dil, radius)


def line_offsets(radius_px: int, n_orientations: int) -> np.ndarray:
    """Pixel offsets of the digital line segments of the line-mean test.

    Segment k (k = 0 … n−1) has direction θ_k = π·k/n from the column axis (θ = 0: along a
    row, θ = π/2: along a column). It has ``2·radius_px + 1`` pixels, one per step along its
    major axis j = −r … r: ``(dy, dx) = (round(j·tan θ), j)`` when |cos θ| ≥ |sin θ|, else
    ``(j, round(j·cot θ))``, rounding half away from zero. So every segment is symmetric
    about its centre, its pixels are distinct and lie within Chebyshev distance r (the
    halo), and it is 8-connected.

    Returns
    -------
    offsets : (n_orientations, 2·radius_px + 1, 2) int64 array of (dy, dx).
    """
    r, n = int(radius_px), int(n_orientations)
    out = np.zeros((n, 2 * r + 1, 2), dtype=np.int64)

    def rnd(x: float) -> int:
        return int(math.copysign(math.floor(abs(x) + 0.5), x))

    for k in range(n):
        theta = math.pi * k / n
        c, s = math.cos(theta), math.sin(theta)
        for i, j in enumerate(range(-r, r + 1)):
            if abs(c) >= abs(s):
                out[k, i] = (rnd(j * s / c), j)
            else:
                out[k, i] = (j, rnd(j * c / s))
    return out


@numba.njit(cache=True, nogil=True)
def _line_mean_test(values, candidates, offsets, threshold_sum):  # pragma: no cover (numba)
    """True where ``candidates`` and, for some segment k, Σ_i values[p + offsets[k, i]] >
    ``threshold_sum`` (a float64 sum in a fixed order). Offsets falling outside the array are
    clamped to its edge; inside a halo-extended tile this only affects the halo."""
    H, W = values.shape
    K, n = offsets.shape[0], offsets.shape[1]
    out = np.zeros((H, W), dtype=np.bool_)
    for y in range(H):
        for x in range(W):
            if not candidates[y, x]:
                continue
            for k in range(K):
                s = 0.0
                for i in range(n):
                    yy = y + offsets[k, i, 0]
                    xx = x + offsets[k, i, 1]
                    yy = 0 if yy < 0 else (H - 1 if yy >= H else yy)
                    xx = 0 if xx < 0 else (W - 1 if xx >= W else xx)
                    s += values[yy, xx]
                if s > threshold_sum:
                    out[y, x] = True
                    break
    return out


def _segment_kernel(image: np.ndarray, levels, opts: BaselineOptions) -> np.ndarray:
    """Numpy kernel of the baseline on one (halo-extended) tile; returns uint8 phases.

    ``levels`` = ``[t, μ_background, μ_solid]`` (:func:`estimate_levels`). The tile's outer
    edge is treated as the image edge: Gaussian and grey closing ``mode='reflect'``; binary
    erosions consider the outside as foreground and dilations as background, so neither
    opening nor closing eats into objects cut by the edge; the line segments are clamped to
    the edge. Inside a halo-extended tile these edge rules only affect the halo.
    """
    from scipy import ndimage as ndi

    t, mu_bg, mu_solid = (float(v) for v in np.asarray(levels, dtype=np.float64).ravel())
    img = np.asarray(image, dtype=np.float32)
    if opts.sigma_px > 0:
        img = ndi.gaussian_filter(img, opts.sigma_px, mode="reflect", truncate=4.0)
    solid = img > t
    if opts.open_radius_px > 0:
        se = _disk(opts.open_radius_px)
        solid = ndi.binary_erosion(solid, se, border_value=1)
        solid = ndi.binary_dilation(solid, se, border_value=0)
    solid = _remove_small(solid, opts.min_object_area_px, connectivity=2)
    envelope = solid
    if opts.close_radius_px > 0:
        envelope = _close_disk(solid, opts.close_radius_px) | solid
    if opts.max_hole_area_px > 0:
        envelope = ~_remove_small(~envelope, opts.max_hole_area_px, connectivity=1)
    if opts.open_necks and opts.close_radius_px > 0:  # necks between touching particles
        envelope &= solid | ~_dilate_disk(~envelope, opts.close_radius_px)
    crack = envelope & ~solid
    if opts.crack_contrast > 0 and opts.close_radius_px > 0 and mu_solid > mu_bg:
        side = 2 * opts.close_radius_px + 1
        tophat = ndi.grey_closing(img, size=(side, side), mode="reflect") - img
        dark = envelope & (tophat > opts.crack_contrast * (mu_solid - mu_bg))
        if opts.edge_test:
            peak = ndi.maximum_filter(tophat, size=2 * opts.edge_radius_px + 1, mode="reflect")
            dark &= tophat >= opts.edge_fraction * peak
        if opts.line_test:
            offsets = line_offsets(opts.line_radius_px, opts.line_orientations)
            threshold_sum = opts.line_contrast * (mu_solid - mu_bg) * offsets.shape[1]
            dark = _line_mean_test(
                np.ascontiguousarray(tophat), dark & ~crack, offsets, float(threshold_sum)
            )
        crack |= dark
    crack = _remove_small(crack, opts.min_crack_area_px, connectivity=2)
    out = np.zeros(img.shape, dtype=np.uint8)
    out[envelope] = SOLID
    out[crack] = CRACK
    return out


# ---------------------------------------------------------------------------------------------
# enclosed background -> crack (internal pores, hollow cores)
# ---------------------------------------------------------------------------------------------
def _check_max_area_px(max_area_px) -> int:
    if isinstance(max_area_px, bool) or not isinstance(max_area_px, (int, np.integer)) or (
        max_area_px < 0
    ):
        raise InputError(f"max_area_px must be an integer >= 0, got {max_area_px!r}")
    return int(max_area_px)


def _enclosed_lut(area: np.ndarray, frame_labels: np.ndarray, max_area_px: int) -> np.ndarray:
    """(n + 1,) bool: background component k is enclosed and small enough to become crack.
    ``area[k]`` is its pixel count, ``frame_labels`` the labels on the image frame; label 0
    (not background) never is."""
    fill = _small_lut(area, max_area_px)
    fill[np.asarray(frame_labels, dtype=np.int64)] = False
    return fill


@numba.njit(cache=True, nogil=True)
def _run_ends_kernel(labels, chosen, y0, x0):  # pragma: no cover (numba)
    """Both end pixels (row, column; offset by y0, x0) of every horizontal run of one label
    of ``labels`` whose ``chosen[label]`` is set, with the label: (k,) int64 each."""
    h, w = labels.shape
    n_runs = 0
    for y in range(h):
        for x in range(w):
            v = labels[y, x]
            if v > 0 and chosen[v] and (x == 0 or labels[y, x - 1] != v):
                n_runs += 1
    lab = np.empty(2 * n_runs, np.int64)
    ys = np.empty(2 * n_runs, np.int64)
    xs = np.empty(2 * n_runs, np.int64)
    k = 0
    for y in range(h):
        x = 0
        while x < w:
            v = labels[y, x]
            if v > 0 and chosen[v]:
                e = x
                while e + 1 < w and labels[y, e + 1] == v:
                    e += 1
                lab[k], ys[k], xs[k] = v, y0 + y, x0 + x
                lab[k + 1], ys[k + 1], xs[k + 1] = v, y0 + y, x0 + e
                k += 2
                x = e + 1
            else:
                x += 1
    return lab, ys, xs


def _run_ends(labels, chosen: np.ndarray, y0: int = 0, x0: int = 0):
    return _run_ends_kernel(np.asarray(labels), chosen, int(y0), int(x0))


@numba.njit(cache=True)
def _hull_counts_kernel(lab, xs, ys, n):  # pragma: no cover (numba)
    """Lattice points in the convex hull of each label's points (``lab`` sorted, and within
    a label (x, y) sorted, duplicates allowed): Andrew's monotone chain in integers, then
    Pick's theorem, points inside or on the hull = A + B/2 + 1 (A its area, B the lattice
    points on its edges, Σ gcd(|dx|, |dy|)). (n + 1,) int64; 0 for labels without points."""
    out = np.zeros(n + 1, np.int64)
    m = lab.size
    hx = np.empty(2 * m + 2, np.int64)
    hy = np.empty(2 * m + 2, np.int64)
    i = 0
    while i < m:
        j = i
        while j < m and lab[j] == lab[i]:
            j += 1
        k = 0
        for q in range(i, j):  # lower hull
            while k >= 2 and ((hx[k - 1] - hx[k - 2]) * (ys[q] - hy[k - 2])
                              - (hy[k - 1] - hy[k - 2]) * (xs[q] - hx[k - 2])) <= 0:
                k -= 1
            hx[k], hy[k] = xs[q], ys[q]
            k += 1
        t = k + 1
        for q in range(j - 2, i - 1, -1):  # upper hull
            while k >= t and ((hx[k - 1] - hx[k - 2]) * (ys[q] - hy[k - 2])
                              - (hy[k - 1] - hy[k - 2]) * (xs[q] - hx[k - 2])) <= 0:
                k -= 1
            hx[k], hy[k] = xs[q], ys[q]
            k += 1
        # hx[0:k] is closed (its last point is its first); one point gives k = 1
        area2, b = 0, 0
        for q in range(k - 1):
            area2 += hx[q] * hy[q + 1] - hx[q + 1] * hy[q]
            dx, dy = abs(hx[q + 1] - hx[q]), abs(hy[q + 1] - hy[q])
            while dy:
                dx, dy = dy, dx % dy
            b += dx
        out[lab[i]] = (abs(area2) + b) // 2 + 1
        i = j
    return out


def _hull_counts(lab, ys, xs, n: int) -> np.ndarray:
    order = np.lexsort((ys, xs, lab))
    return _hull_counts_kernel(lab[order], xs[order], ys[order], int(n))


def enclosed_solidity(labels: np.ndarray, area: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Solidity of the chosen labels of a label image: pixels over lattice points (pixel
    centres) in the convex hull of its pixel centres, in (0, 1]. Close to scikit-image's
    ``regionprops(...).solidity``, whose hull takes the pixels' corners, so that small
    regions read lower there; this one is exact in integers, so the same for any tiling
    (the hull of a union is the hull of the parts' hulls, and a label's hull depends only
    on the end pixels of its row runs).

    Parameters
    ----------
    labels : (H, W) integer array, labels 0..n
    area : (n + 1,) pixel count of each label
    chosen : (n + 1,) bool, the labels to measure

    Returns
    -------
    (n + 1,) float64: the solidity of chosen labels, 0 for the others.
    """
    chosen = np.asarray(chosen, dtype=np.bool_)
    return _solidity(np.asarray(area), [_run_ends(labels, chosen)], chosen)


def _solidity(area: np.ndarray, ends: list, chosen: np.ndarray) -> np.ndarray:
    """Solidity of the chosen labels from the (label, row, column) run ends of every chunk."""
    lab, ys, xs = (np.concatenate([e[k] for e in ends]) for k in range(3))
    hull = _hull_counts(lab, ys, xs, len(area) - 1)
    out = np.zeros(len(area), np.float64)
    ok = np.asarray(chosen, dtype=bool) & (hull > 0)
    out[ok] = area[ok] / hull[ok]
    return out


def fill_enclosed_background(phase: np.ndarray, *, max_area_px: int, min_solidity: float = 0.0) -> np.ndarray:
    """Enclosed background regions of at most ``max_area_px`` pixels and of solidity at
    least ``min_solidity`` become crack.

    A region is a 4-connected component of ``phase == 0``; it is enclosed when none of its
    pixels lies on the image frame (first or last row or column). With 4-connected
    background, a region that meets the rest only through a diagonal step is its own
    region. The paper's crack phase includes internal pores and hollow cores; see
    :func:`baseline_options` (Notes) for what else is enclosed, and for the solidity
    (:func:`enclosed_solidity`), which keeps pockets between touching particles background.

    Parameters
    ----------
    phase : (H, W) uint8 array
        Phase map S (0 background, 1 solid, 2 crack).
    max_area_px : int
        Largest region (pixels) that becomes crack; 0 returns ``phase`` unchanged.
    min_solidity : float
        Least solidity of a region that becomes crack; 0 = any.

    Returns
    -------
    S : (H, W) uint8 array, ``phase`` with the enclosed regions set to 2 (a new array when
    any region changes).
    """
    from scipy import ndimage as ndi

    max_area_px = _check_max_area_px(max_area_px)
    phase = np.asarray(phase)
    if max_area_px == 0 or phase.size == 0:
        return phase
    labels, n = ndi.label(phase == BACKGROUND, structure=ndi.generate_binary_structure(2, 1))
    if n == 0:
        return phase
    area = np.bincount(labels.ravel(), minlength=n + 1)
    frame = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    fill = _enclosed_lut(area, frame, max_area_px)
    if fill.any() and min_solidity > 0:
        fill &= enclosed_solidity(labels, area, fill) >= min_solidity
    if not fill.any():
        return phase
    out = phase.copy()
    out[fill[labels]] = CRACK
    return out


def _label_counts(block: np.ndarray):
    ids, counts = np.unique(block, return_counts=True)
    return ids.astype(np.int64), counts.astype(np.int64)


def _block_run_ends(labels, chosen: np.ndarray):
    """One delayed :func:`_run_ends` per chunk of ``labels``, in whole-image coordinates."""
    import dask

    from ..tiling.geometry import chunk_starts

    task = dask.delayed(_run_ends, pure=True)
    chosen = dask.delayed(chosen, pure=True)  # one node of the graph, not a copy per task
    y_off, x_off = chunk_starts(labels.chunks[0]), chunk_starts(labels.chunks[1])
    blocks = labels.to_delayed(optimize_graph=False)
    return [task(blocks[i, j], chosen, int(y_off[i]), int(x_off[j]))
            for i in range(blocks.shape[0]) for j in range(blocks.shape[1])]


def fill_enclosed_background_dask(phase, *, max_area_px: int, min_solidity: float = 0.0):
    """Tiled :func:`fill_enclosed_background`: the same result for any chunking.

    A region can be as large as the image, so no halo makes this exact. Instead:
    ``phase`` is persisted; its background gets global 4-connected labels
    (:func:`~cathodeflow.tiling.components.label_components`: per-chunk labels, face merge,
    global ids); the area of each label is summed from per-chunk counts and the labels on
    the frame are read from the edge chunks (both computed here, small arrays); then a
    lookup table per label (:func:`~cathodeflow.tiling.components.relabel`) and a chunkwise
    ``where``. No task holds more than one chunk, but the call computes: ``phase`` (1 byte
    per pixel) and the chunk labels (4 bytes per pixel) stay persisted while the returned
    array is used.

    Parameters
    ----------
    phase : (H, W) dask array of uint8
        Phase map S.
    max_area_px : int
        As for :func:`fill_enclosed_background`; 0 returns ``phase`` as it is (lazy).
    min_solidity : float
        As for :func:`fill_enclosed_background`: the end pixels of the candidate regions'
        row runs are gathered per chunk (one more pass over the labels, computed here) and
        each region's hull is taken on the client.

    Returns
    -------
    S : (H, W) dask array of uint8, same chunks as ``phase``; lazy on top of the persisted
    inputs.
    """
    import dask
    import dask.array as da

    from ..tiling.components import label_components, relabel

    max_area_px = _check_max_area_px(max_area_px)
    if max_area_px == 0 or phase.size == 0:
        return phase
    (phase,) = dask.persist(phase)
    labels, n = label_components(phase == BACKGROUND, connectivity=1)
    if n == 0:
        return phase
    frame = da.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    parts, frame = dask.compute(_count_tasks(labels), frame)
    area = _areas(parts, n)
    fill = _enclosed_lut(area, frame, max_area_px)
    if fill.any() and min_solidity > 0:
        (ends,) = dask.compute(_block_run_ends(labels, fill))
        fill &= _solidity(area, ends, fill) >= min_solidity
    if not fill.any():
        return phase
    return da.where(relabel(labels, fill), np.uint8(CRACK), phase)


def segment_phases_baseline(
    image: np.ndarray, *, threshold: float | None = None, **options
) -> np.ndarray:
    """Classical **baseline** phase segmentation of a whole image (stand-in for the U-net).

    Steps: Gaussian smoothing (σ); solid = smoothed > t, with t one global Otsu threshold
    (:func:`estimate_levels`); opening with a small disk and removal of small solid
    components; particle envelope = binary closing of the solid with a disk whose diameter
    covers ``max_crack_width_um`` (plus optional filling of small holes); crack = envelope ∧
    (¬solid ∨ dark line), a dark line being a black top-hat above ``crack_contrast`` times the
    solid–background contrast and at least ``edge_fraction`` of the largest top-hat within
    ``edge_radius_px``, whose mean along some straight segment of ``2·line_radius_px + 1`` px
    through the pixel exceeds ``line_contrast`` times that contrast (:func:`line_offsets`);
    σ grows with the noise and both contrasts fall with the edge blur
    (:func:`adapt_options`); without crack components of at most
    ``min_crack_area_px`` (they become solid); background = outside the envelope (eq. 1);
    last, background regions enclosed by the particles (4-connected, not touching the image
    frame) of at most ``max_enclosed_area_um2`` become crack
    (:func:`fill_enclosed_background`).

    Parameters
    ----------
    image : (H, W) real array
        Grey-scale SEM image, bright particles on a darker background (typically the
        super-resolved image, pixel size η).
    threshold : float, optional
        Solid threshold t on the smoothed image; default Otsu on a strided sample.
    **options
        Keyword options of :func:`baseline_options` (``pixel_size_um``,
        ``max_crack_width_um``, ``sigma_px``, ``open_radius_px``, ``min_object_area_px``,
        ``max_hole_area_px``, ``crack_contrast``, ``min_crack_area_px``, ``line_contrast``,
        ``line_radius_px``, ``line_orientations``, ``edge_fraction``, ``edge_radius_px``,
        ``open_necks``, ``max_enclosed_area_um2``, ``min_enclosed_solidity``, ``max_noise``,
        ``max_sigma_px``, ``max_blur_px``).

    Returns
    -------
    S : (H, W) uint8 array, values in {0 background, 1 solid, 2 crack} (eq. 1).
    """
    check_grey_image(image)
    opts = baseline_options(**options)
    image = np.asarray(image)
    levels = estimate_levels(image, threshold=threshold)
    opts, levels = adapt_options(image, levels, opts)
    phase = _segment_kernel(image, levels, opts)
    return fill_enclosed_background(phase, max_area_px=opts.max_enclosed_area_px,
                                    min_solidity=opts.min_enclosed_solidity)


def segment_phases_baseline_dask(
    image, *, threshold: float | None = None, levels=None, chunk_px: int | None = None,
    **options,
):
    """Tiled classical baseline; equal to :func:`segment_phases_baseline` exactly.

    Every step but the last runs tile by tile with a halo. The last step (enclosed
    background → crack, :func:`fill_enclosed_background_dask`) needs global connected
    components: unless ``max_enclosed_area_um2 = 0`` (then the result is fully lazy), the
    call computes the phase map and the background labels and keeps them persisted; the
    returned array is lazy on top of them.

    Parameters
    ----------
    image : (H, W) dask array or numpy array
        As for :func:`segment_phases_baseline`. A numpy array is wrapped with chunks of
        ``chunk_px`` (default :attr:`cathodeflow.config.Params.chunk_px`).
    threshold : float, optional
        Solid threshold t; default Otsu (see :func:`estimate_levels`).
    levels : (3,) array-like or dask array, optional
        Precomputed :func:`estimate_levels` (overrides ``threshold``). By default they are
        estimated from ``image`` (:func:`estimate_levels_dask`), which needs every chunk
        of ``image`` before any tile can be segmented; for images larger than memory compute
        them first from the stored image. With a noise-adaptive σ or blur-adaptive contrasts
        (the defaults ``max_noise > 0``, ``max_blur_px > 0``) the levels, the
        :func:`noise_index` and the :func:`edge_blur_px` are computed when the call builds the
        graph (σ sets the halo); with both fixed the levels stay lazy.
    chunk_px : int, optional
        Rechunk to this edge. Chunks thinner than the halo are merged into a neighbour, so
        Dask never rechunks silently.
    **options
        As for :func:`segment_phases_baseline`; the halo is :meth:`BaselineOptions.halo_px`.

    Returns
    -------
    S : (H, W) uint8 dask array.
    """
    import dask.array as da

    from ..config import Params
    from ..tiling.geometry import snap_chunks

    check_grey_image(image)
    opts = baseline_options(**options)
    if not isinstance(image, da.Array):
        size = chunk_px or Params().chunk_px
        image = da.from_array(np.asarray(image), chunks=(size, size))
    if opts.adaptive:  # σ (hence the halo) and the contrasts are known before the graph is built
        opts, levels = adapt_options(image, _levels_of(image, levels, threshold), opts)
    halo = opts.halo_px()
    new_chunks = []
    for n, c in zip(image.shape, image.chunks):
        want = int(chunk_px) if chunk_px else int(c[0])
        if chunk_px is None and (len(c) == 1 or min(c) >= halo):
            new_chunks.append(tuple(c))
        else:
            new_chunks.append(snap_chunks(n, max(want, halo, 1), min_last=halo))
    if tuple(new_chunks) != tuple(image.chunks):
        image = image.rechunk(tuple(new_chunks))
    if levels is None:
        levels = estimate_levels_dask(image, threshold=threshold)
    elif not isinstance(levels, da.Array):
        levels = np.asarray(levels, dtype=np.float64)
        if levels.shape != (3,):
            raise InputError(f"levels: expected 3 values [t, mu_bg, mu_solid], got {levels.shape}")
    depth = {i: (halo if len(c) > 1 else 0) for i, c in enumerate(image.chunks)}
    overlapped = da.overlap.overlap(image, depth, boundary="none", allow_rechunk=False)
    if isinstance(levels, da.Array):
        out = da.blockwise(
            _segment_kernel, "ij", overlapped, "ij", levels.rechunk(-1), "k", opts, None,
            concatenate=True, dtype=np.uint8, meta=np.empty((0, 0), dtype=np.uint8),
        )
    else:
        out = overlapped.map_blocks(
            _segment_kernel, levels, opts, dtype=np.uint8,
            meta=np.empty((0, 0), dtype=np.uint8),
        )
    out = da.overlap.trim_internal(out, depth, boundary="none")
    return fill_enclosed_background_dask(out, max_area_px=opts.max_enclosed_area_px,
                                         min_solidity=opts.min_enclosed_solidity)


def provenance(*, threshold: float | None = None, **options) -> dict:
    """Provenance record of the baseline for the study store (DESIGN §4.1)."""
    opts = baseline_options(**options)
    try:
        pkg = version("cathodeflow")
    except PackageNotFoundError:  # pragma: no cover
        pkg = "unknown"
    return {
        "stage": "phase",
        "method": "baseline-classical",
        "steps": "gaussian (sigma grows with the noise index up to max_sigma_px; dark-line "
        "contrasts fall with the edge blur above max_blur_px) -> global otsu "
        "(strided sample) -> opening -> small objects -> "
        "closing (envelope; closed pixels within the closing radius of the outside -> "
        "background) -> crack = envelope & (~solid | (black top-hat > contrast & "
        "top-hat >= edge fraction of its local peak & mean top-hat along a line segment > "
        "line contrast)) -> small crack components -> "
        "solid -> enclosed background (4-connected, off the frame, area <= max, solidity >= min) -> crack",
        "threshold": "otsu" if threshold is None else float(threshold),
        "halo_px": baseline_halo_px(**options),
        **asdict(opts),
        "package_version": pkg,
    }


# ---------------------------------------------------------------------------------------------
# scores against a reference phase map
# ---------------------------------------------------------------------------------------------
def phase_scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Pixel scores of a phase map against a reference (both (H, W), values in {0, 1, 2}).

    Returns
    -------
    dict with ``accuracy`` (fraction of equal pixels); per phase k in
    (background, solid, crack): ``recall_k`` (= per-phase accuracy, |pred=k ∧ truth=k| /
    |truth=k|), ``precision_k``, ``iou_k``; ``porosity_pred`` and ``porosity_true`` (eq. 11 for
    one image: #crack / #(solid ∪ crack)) and ``porosity_error`` (pred − true).
    NaN where a denominator is 0.
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise InputError(f"pred and truth shapes differ: {pred.shape} vs {truth.shape}")
    conf = np.bincount(
        (truth.astype(np.int64).ravel() * 3 + pred.astype(np.int64).ravel()), minlength=9
    ).reshape(3, 3)

    def ratio(a, b):
        return float(a) / float(b) if b else float("nan")

    out = {"accuracy": ratio(np.trace(conf), conf.sum())}
    for k, name in enumerate(("background", "solid", "crack")):
        tp = conf[k, k]
        out[f"recall_{name}"] = ratio(tp, conf[k, :].sum())
        out[f"precision_{name}"] = ratio(tp, conf[:, k].sum())
        out[f"iou_{name}"] = ratio(tp, conf[k, :].sum() + conf[:, k].sum() - tp)
    out["porosity_pred"] = ratio(conf[:, 2].sum(), conf[:, 1:].sum())
    out["porosity_true"] = ratio(conf[2, :].sum(), conf[1:, :].sum())
    out["porosity_error"] = out["porosity_pred"] - out["porosity_true"]
    return out


#: Short names used by the pipeline (same functions).
phases_baseline = segment_phases_baseline
phases_baseline_dask = segment_phases_baseline_dask
