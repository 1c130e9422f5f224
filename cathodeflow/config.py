"""Parameters of the method, with the paper's values as defaults (DESIGN §4.3).

A TOML file may set any of them (``[params]`` table); unknown keys are an error that names
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, PixelSizeWarning

#: High-resolution (super-resolved) pixel size η of the paper, in µm.
ETA_UM = 0.0143
#: Low-resolution pixel size of the paper, in µm (= η · 35/13).
LOW_RES_PIXEL_UM = 0.0385
#: Phase segmentation methods (``Params.phase_method``).
PHASE_METHODS = ("unet", "classical")
#: Methods of the sr stage: chosen per image by the raw pixel size (``auto``), the cubic
#: interpolation baseline, a trained SRGAN generator, or none (the raw image is already
#: high-resolution and goes to the phase stage as it is).
SR_METHODS = ("auto", "baseline", "srgan", "none")
#: ``sr_method = 'auto'`` leaves raw images of at most this pixel size (µm) as they are: the
#: geometric mean of η and the low-res 38.5 nm (23.5 nm), where an image is as far (as a
#: ratio) from the phase stage's grid as from the sr stage's input.
SR_AUTO_MAX_PIXEL_UM = round((0.0143 * 0.0385) ** 0.5, 6)
#: Parameters that apply only where the U-net makes the phase map.
UNET_ONLY = ("unet_weights", "crack_threshold", "crack_threshold_low", "prob_sigma_um", "min_crack_area_um2")
#: Default lower threshold of the hysteresis variant of eq. 7 (``Params.crack_threshold_low``).
DEFAULT_CRACK_THRESHOLD_LOW = 0.3
#: Default σ (µm) of the Gaussian smoothing of Ŷ before eq. 7 (``Params.prob_sigma_um``): 1 px at η.
DEFAULT_PROB_SIGMA_UM = 0.0143
#: Default largest crack component (µm²) the U-net's phase map drops (``Params.min_crack_area_um2``).
DEFAULT_MIN_CRACK_AREA_UM2 = 0.0
#: Super-resolution factor of the paper (s2/s1 = 38.5 nm / 14.3 nm).
SR_NUM, SR_DEN = 35, 13
#: How a cluster runs images processed tiled (``Params.tiled_images``).
TILED_IMAGES = ("auto", "in-task", "spread")
#: ``tiled_images = 'auto'`` runs tiled images one per task when there are at least this
#: many of them per thread of the cluster: each thread then has an image to work on until
#: the last ones, which a thread works through alone (spread, the same images would keep
#: the threads about 40 % busy on 2048² maps, waiting on blocking rounds).
IN_TASK_IMAGES_PER_THREAD = 2
#: Pixel sizes outside this range (µm: 0.1 nm to 10 µm) are refused as a unit slip.
PIXEL_SIZE_RANGE_UM = (1e-4, 10.0)
#: A marker radius r (eq. 10) outside this range of pixels gets a :class:`PixelSizeWarning`.
MARKER_RADIUS_PX_RANGE = (5.0, 500.0)
#: A raw pixel size more than this factor away from :data:`LOW_RES_PIXEL_UM` gets a
#: :class:`PixelSizeWarning` from the sr stage (its factor 35/13 assumes 38.5 nm input).
SR_INPUT_TOLERANCE = 2.0
#: Lengths in µm are converted to pixels rounded to this many decimals, so that a length
#: given as a multiple of η (0.715 µm at 0.0143 µm) is the integer it means (50 px, not
#: 50.000000000000007), whatever the float rounding of the division.
PX_DECIMALS = 6


@dataclass(frozen=True)
class Params:
    """Every parameter of the pipeline (DESIGN §4.3); lengths in µm, converted to pixels with
    each image's pixel size (:meth:`marker_radius_px_at`, :meth:`min_particle_area_px_at`).

    Which fields each stage's result depends on is :data:`STAGE_PARAMS`; the others
    (:data:`LAYOUT_PARAMS`) only change how the work is cut, never the result.

    Attributes
    ----------
    marker_radius_um : r of eq. 10 (markers are ``D >= r``), in µm. Paper: r = 50 px at
        η = 0.0143 µm, i.e. 0.715 µm (the default).
    marker_h_um : not in the paper: h (µm) of h-maxima markers. Set, the markers are the
        h-maxima of D (one per dome of D rising at least h above the saddle to a higher
        one; :func:`cathodeflow.stages.particles.h_maxima`) among D ≥ r, so touching
        particles joined by a neck wider than 2r keep a marker each. None (default): eq. 10
        as written, one marker per connected region of D ≥ r.
    min_crack_d_factor : cracks with d < factor·η are dropped (§2.4.2). Paper: 2.5.
    lambda_pristine_per_um2 : λ_pristine of eq. 19, in µm⁻². Paper: 0.145.
    r10_um, r50_um, r90_um : volume-weighted radius percentiles (§2.5.2), in µm.
    bins : bin edges of the relative distance d_center (eq. 37–40); pixels with
        d_center ≥ bins[-1] go to an overflow bin [bins[-1], ∞).
    stereology_models : which models of DESIGN §4.4 item 11 to report.
    min_particle_area_um2 : particles smaller than this (µm²) are left out of the particle
        tables (the paper removes "small particles", Fig. 1, without a number). Default 0.
    crack_threshold : t of eq. 7; None (default) takes the t calibrated for the U-net's
        weights (``cathodeflow calibrate``), stored with them.
    crack_threshold_low : lower threshold of the hysteresis variant of eq. 7 (not in the
        paper): pixels with Ŷ(x, 3) ≥ t_low 8-connected to a pixel with Ŷ(x, 3) ≥ t are crack
        too, so thin cracks whose Ŷ dips below t stay whole instead of counting as several
        cracks in λ. None (default) = :data:`DEFAULT_CRACK_THRESHOLD_LOW`; a value ≥ t (e.g. 1)
        gives eq. 7 exactly.
    prob_sigma_um : σ of a Gaussian smoothing of each channel of Ŷ before eq. 7 (not in the
        paper), in µm: it smooths the ragged edges of the crack phase, whose every bump
        would otherwise become a skeleton branch and so a crack of its own (eq. 2).
        None (default) = :data:`DEFAULT_PROB_SIGMA_UM` (1 px at η); 0 = no smoothing.
    min_crack_area_um2 : after eq. 7 (and the hysteresis), crack components (8-connected) of
        at most this area (µm², ``floor(area / η²)`` pixels) go back to solid or background
        as eq. 7 gives them without the crack channel (not in the paper): specks and short
        fragments that would each count as a crack in λ. None (default) =
        :data:`DEFAULT_MIN_CRACK_AREA_UM2`; 0 = none.
    chunk_px : edge of the square Dask chunks for tiled stages; ``run`` stores the stages it
        writes with chunks of this edge (the next stage is tiled on them).
    unet_tile_px : edge of the U-net's output tiles; each is computed from a window one
        receptive-field halo wider on every side. Larger tiles waste less on halos but need
        more memory (Keras holds every intermediate feature map of a window).
    whole_image_px : crack and particle labels and measurements (``describe``, ``run``'s
        labels stage) of an image of at most this many pixels are computed in one task,
        whatever its chunks: the tiled graph bounds a task's memory by a few chunks but
        costs about ten blocking rounds and a few dozen tasks per chunk, more than a small
        image's whole work. Default 2²⁵ (33.6 MP, above the paper's 4478 × 5972 maps; a
        33.6 MP map peaked at 0.84 GB in its process, a 4096² map at 0.6 GB); 0 tiles
        every image of several chunks. The result is the same either way.
    tiled_images : how a cluster runs the images whose labels and measurements are
        processed tiled (larger than ``whole_image_px``, of several chunks; ``describe``
        and ``run``'s labels stage): ``'spread'``: each image's chunks are tasks of
        their own spread over the workers, a few images at a time (the blocking rounds of
        one image then cost the client and scheduler about 0.3 s of CPU per 2048² map);
        ``'in-task'``: each image is one task that processes it chunk by chunk in its own
        thread, the images side by side (memory still bounded by a few chunks; no task
        holds the image); ``'auto'`` (default): in-task when there are at least
        :data:`IN_TASK_IMAGES_PER_THREAD` such images per thread of the cluster, else
        spread. The result is the same either way.
    scratch_dir : an existing directory for the intermediate arrays of images processed
        tiled (a fresh folder inside it per image, deleted when the image is done). None
        (default): the system temp dir, or a worker's local directory for an image that
        runs in one task. Images spread over a cluster of several machines need a
        directory that every worker mounts at the same path; before spreading, the run
        checks that every worker sees it. The result is the same wherever it is.
    phase_method : ``'classical'`` (default for now: threshold + morphology baseline, no
        learning) or ``'unet'`` (the paper's U-net, §2.3.2, with the shipped or given weights).
        The classical method stays the default until shipped U-net weights measure closer to
        the truth on the SR stage's output (see the README, *Phase segmentation*).
    unet_weights : registry name or path of U-net weights; None = the shipped default.
    sr_method : ``'auto'`` (default: per image, ``'none'`` for a raw pixel size of at most
        :data:`SR_AUTO_MAX_PIXEL_UM`, else ``'baseline'``), ``'baseline'`` (cubic
        interpolation by 35/13, restores no detail), ``'srgan'`` (the paper's SRGAN
        generator, §2.3.1, with ``sr_weights``) or ``'none'`` (for images acquired at high
        resolution: the sr stage is the raw image, pixel size unchanged).
    sr_weights : registry name or path of SRGAN generator weights (``cathodeflow train sr``);
        None = the shipped default (``srgan-small-v1``).
    """

    marker_radius_um: float = 0.715
    marker_h_um: float | None = None
    min_crack_d_factor: float = 2.5
    lambda_pristine_per_um2: float = 0.145
    r10_um: float = 3.55
    r50_um: float = 4.65
    r90_um: float = 6.05
    bins: tuple[float, ...] = tuple(round(0.1 * i, 10) for i in range(11))
    stereology_models: tuple[str, ...] = ("paper", "wicksell")
    min_particle_area_um2: float = 0.0
    crack_threshold: float | None = None
    crack_threshold_low: float | None = None
    prob_sigma_um: float | None = None
    min_crack_area_um2: float | None = None
    chunk_px: int = 2048
    unet_tile_px: int = 1024
    whole_image_px: int = 2**25
    tiled_images: str = "auto"
    scratch_dir: str | None = None
    phase_method: str = "classical"
    unet_weights: str | None = None
    sr_method: str = "auto"
    sr_weights: str | None = None

    def __post_init__(self):
        # floats as floats, so that 1 and 1.0 (TOML, CLI) give one parameter hash
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("float", "float | None") and v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise InputError(f"{f.name} must be a finite number, got {v!r}")
                object.__setattr__(self, f.name, float(v))
        if not self.marker_radius_um > 0:
            raise InputError(f"marker_radius_um must be > 0 (r of eq. 10, in µm), got {self.marker_radius_um}")
        if self.marker_h_um is not None and not (math.isfinite(self.marker_h_um) and self.marker_h_um > 0):
            raise InputError(f"marker_h_um must be a number > 0 (h of the h-maxima markers, in µm), "
                             f"got {self.marker_h_um}")
        if self.min_particle_area_um2 < 0:
            raise InputError(f"min_particle_area_um2 must be >= 0 (µm²), got {self.min_particle_area_um2}")
        if not (0 < self.r10_um < self.r50_um < self.r90_um):
            raise InputError(
                "radius percentiles must satisfy 0 < r10_um < r50_um < r90_um, got "
                f"{self.r10_um}, {self.r50_um}, {self.r90_um}"
            )
        b = tuple(float(x) for x in self.bins)
        if len(b) < 2 or any(hi <= lo for lo, hi in zip(b, b[1:])) or b[0] < 0:
            raise InputError(f"bins must be increasing, non-negative, at least 2 edges; got {b}")
        object.__setattr__(self, "bins", b)
        for m in self.stereology_models:
            if m not in ("paper", "wicksell"):
                raise InputError(f"stereology model must be 'paper' or 'wicksell', got {m!r}")
        object.__setattr__(self, "stereology_models", tuple(self.stereology_models))
        if self.lambda_pristine_per_um2 < 0:
            raise InputError("lambda_pristine_per_um2 must be >= 0")
        for k in ("crack_threshold", "crack_threshold_low"):
            v = getattr(self, k)
            if v is not None and not 0 <= v <= 1:
                raise InputError(f"{k} must be in [0, 1], got {v}")
        if self.prob_sigma_um is not None and not 0 <= self.prob_sigma_um < 1:
            raise InputError(f"prob_sigma_um must be in [0, 1) µm, got {self.prob_sigma_um}")
        if self.min_crack_area_um2 is not None and not 0 <= self.min_crack_area_um2 < 100:
            raise InputError(f"min_crack_area_um2 must be in [0, 100) µm², got {self.min_crack_area_um2}")
        if isinstance(self.unet_tile_px, bool) or not isinstance(self.unet_tile_px, int) or self.unet_tile_px < 16:
            raise InputError(f"unet_tile_px must be an integer >= 16, got {self.unet_tile_px!r}")
        if self.phase_method not in PHASE_METHODS:
            raise InputError(f"phase_method must be one of {PHASE_METHODS}, got {self.phase_method!r}")
        if self.phase_method != "unet":
            used = [k for k in UNET_ONLY if getattr(self, k) is not None]
            if used:
                raise InputError(f"{', '.join(used)} set, but phase_method is {self.phase_method!r}: "
                                 "they apply to phase_method = 'unet' (--phase-method unet)")
        if self.unet_weights is not None and not isinstance(self.unet_weights, str):
            raise InputError(f"unet_weights must be a registry name or a path, got {self.unet_weights!r}")
        if self.sr_method not in SR_METHODS:
            raise InputError(f"sr_method must be one of {SR_METHODS}, got {self.sr_method!r}")
        if self.sr_weights is not None and not isinstance(self.sr_weights, str):
            raise InputError(f"sr_weights must be a registry name or a path, got {self.sr_weights!r}")
        if self.sr_method != "srgan" and self.sr_weights is not None:
            raise InputError(f"sr_weights set, but sr_method is {self.sr_method!r}: it applies to "
                             "sr_method = 'srgan' (--sr-method srgan)")
        if isinstance(self.chunk_px, bool) or not isinstance(self.chunk_px, int) or self.chunk_px < 1:
            raise InputError(f"chunk_px (--chunk-size) must be a positive integer, got {self.chunk_px!r}")
        if isinstance(self.whole_image_px, bool) or not isinstance(self.whole_image_px, int) \
                or self.whole_image_px < 0:
            raise InputError(f"whole_image_px (--whole-image-px) must be an integer >= 0 (pixels), "
                             f"got {self.whole_image_px!r}")
        if self.tiled_images not in TILED_IMAGES:
            raise InputError(f"tiled_images (--tiled-images) must be one of {TILED_IMAGES}, "
                             f"got {self.tiled_images!r}")
        if self.scratch_dir is not None:
            if not isinstance(self.scratch_dir, (str, os.PathLike)):
                raise InputError(f"scratch_dir (--scratch-dir) must be a directory's path, got {self.scratch_dir!r}")
            object.__setattr__(self, "scratch_dir", os.fspath(self.scratch_dir))
            if not os.path.isdir(self.scratch_dir):
                raise InputError(f"scratch_dir (--scratch-dir) {self.scratch_dir!r} is not an existing directory; "
                                 "expected one that every Dask worker mounts at the same path")

    def for_image(self, raw_pixel_size_um: float) -> "Params":
        """These parameters with ``sr_method = 'auto'`` chosen for an image of raw pixel size
        ``raw_pixel_size_um`` (µm): ``'none'`` up to :data:`SR_AUTO_MAX_PIXEL_UM`, else
        ``'baseline'``. Other methods are kept."""
        if self.sr_method != "auto":
            return self
        sr = "none" if float(raw_pixel_size_um) <= SR_AUTO_MAX_PIXEL_UM else "baseline"
        return dataclasses.replace(self, sr_method=sr)

    def replace(self, **changes) -> "Params":
        """A copy with ``changes`` applied (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def marker_radius_px_at(self, pixel_size_um: float) -> float:
        """r of eq. 10 in pixels of size ``pixel_size_um`` (µm), rounded to
        :data:`PX_DECIMALS` decimals (0.715 µm at 0.0143 µm is 50 px exactly)."""
        return round(self.marker_radius_um / float(pixel_size_um), PX_DECIMALS)

    def marker_h_px_at(self, pixel_size_um: float) -> float | None:
        """``marker_h_um`` in pixels of size ``pixel_size_um`` (µm), rounded as
        :meth:`marker_radius_px_at`; None when unset."""
        if self.marker_h_um is None:
            return None
        return round(self.marker_h_um / float(pixel_size_um), PX_DECIMALS)

    def min_particle_area_px_at(self, pixel_size_um: float) -> float:
        """``min_particle_area_um2`` in pixels of size ``pixel_size_um`` (µm), rounded to
        :data:`PX_DECIMALS` decimals."""
        return round(self.min_particle_area_um2 / float(pixel_size_um) ** 2, PX_DECIMALS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: The :class:`Params` fields each stage's result depends on (DESIGN §4.1), in pipeline
#: order. A stage's provenance records their values and hash (:func:`params_record`);
#: ``run`` recomputes a complete stage whose recorded hash differs from the current
#: parameters, and every stage after it. (``tables`` is rewritten by every run that
#: reaches it; its Parquet metadata records the parameters of all stages.)
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "sr": ("sr_method", "sr_weights"),
    "phase": ("phase_method", "unet_weights", "crack_threshold", "crack_threshold_low", "prob_sigma_um",
              "min_crack_area_um2"),
    "labels": ("marker_radius_um", "marker_h_um", "min_crack_d_factor", "min_particle_area_um2",
               "r10_um", "r50_um", "r90_um", "bins", "stereology_models"),
    "tables": ("lambda_pristine_per_um2",),
}
#: Fields added after stores were made: left out of a stage's record while unset, so that
#: the records (and hashes) of results made before they existed stay current.
OMITTED_WHEN_UNSET = ("marker_h_um",)
#: Fields that only change how the work is cut into tiles, not its result (tiled == whole,
#: DESIGN §5); they are in no stage's set, so changing them recomputes nothing.
LAYOUT_PARAMS = ("chunk_px", "unet_tile_px", "whole_image_px", "tiled_images", "scratch_dir")

#: Parameters replaced when lengths became µm (DESIGN §4.3): old name -> (new name, conversion).
RENAMED = {
    "marker_radius_px": ("marker_radius_um", "r_um = r_px · η: 50 px at 0.0143 µm = 0.715 µm"),
    "min_particle_area_px": ("min_particle_area_um2",
                             "area_um2 = area_px · η²: 1000 px at 0.0143 µm = 0.2045 µm²"),
}


def renamed_message(old: str) -> str:
    """One line saying what replaced the parameter ``old`` (a key of :data:`RENAMED`)."""
    new, how = RENAMED[old]
    return f"{old} was replaced by {new} ({how})"


def stage_params(params: Params, *stages: str) -> dict:
    """The values of the fields that ``stages`` depend on (:data:`STAGE_PARAMS`), as JSON
    (tuples as lists), in :data:`STAGE_PARAMS` order."""
    out = {}
    for s in stages:
        if s not in STAGE_PARAMS:
            raise InputError(f"stage must be one of {tuple(STAGE_PARAMS)}, got {s!r}")
        for k in STAGE_PARAMS[s]:
            v = getattr(params, k)
            if v is None and k in OMITTED_WHEN_UNSET:
                continue
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def params_hash(values: dict) -> str:
    """First 16 hex digits of the sha256 of ``values`` as canonical JSON (sorted keys, no
    spaces), e.g. of :func:`stage_params`."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def params_record(params: Params, *stages: str) -> dict:
    """``{"params": stage_params(params, *stages), "params_hash": …}``: the provenance of a
    result made by ``stages`` (a stage's record in the store, the tables' metadata)."""
    values = stage_params(params, *stages)
    return {"params": values, "params_hash": params_hash(values)}


def params_changes(old: dict | None, new: dict) -> str:
    """What differs between two recorded parameter sets, for one line:
    ``"marker_radius_um 0.715 -> 0.5"`` (values as JSON)."""
    if old is None:
        return "its parameters were not recorded"
    unset = object()
    keys = [k for k in dict.fromkeys([*new, *old]) if old.get(k, unset) != new.get(k, unset)]
    show = lambda d, k: json.dumps(d[k], ensure_ascii=False) if k in d else "(unset)"  # noqa: E731
    return ", ".join(f"{k} {show(old, k)} -> {show(new, k)}" for k in keys) or "parameters changed"


def check_pixel_size_um(value, *, name: str) -> float:
    """``value`` as a float if it is a pixel size in µm within :data:`PIXEL_SIZE_RANGE_UM`.

    Raises
    ------
    InputError
        One line naming ``name``: not a finite number > 0, or outside 0.1 nm – 10 µm (a
        pixel size given in nm or m instead of µm).
    """
    lo, hi = PIXEL_SIZE_RANGE_UM
    ps = float("nan") if isinstance(value, bool) else value
    try:
        ps = float(ps)
    except (TypeError, ValueError):
        ps = float("nan")
    if not (math.isfinite(ps) and ps > 0):
        raise InputError(f"{name}: pixel size must be a finite number of µm > 0, got {value!r}")
    if ps > hi:
        raise InputError(f"{name}: pixel size {ps:g} µm is above {hi:g} µm, likely a unit slip: "
                         f"pixel sizes are in µm ({ps:g} nm would be {ps / 1000:g} µm)")
    if ps < lo:
        raise InputError(f"{name}: pixel size {ps:g} µm is below {lo:g} µm (0.1 nm), likely a unit slip: "
                         "pixel sizes are in µm (14.3 nm is 0.0143 µm)")
    return ps


def warn_marker_radius(params: Params, pixel_size_um: float) -> None:
    """A :class:`PixelSizeWarning` when r (eq. 10) is outside :data:`MARKER_RADIUS_PX_RANGE`
    pixels at this pixel size (identical messages are shown once)."""
    r_px = params.marker_radius_px_at(pixel_size_um)
    lo, hi = MARKER_RADIUS_PX_RANGE
    if lo <= r_px <= hi:
        return
    effect = "particles split into many" if r_px < lo else "particles merged or left out"
    warnings.warn(
        f"marker radius {params.marker_radius_um:g} µm is {r_px:.4g} px at pixel size "
        f"{pixel_size_um:g} µm, outside {lo:g}-{hi:g} px ({effect}); check the pixel size (µm) "
        "or set marker_radius_um (--marker-radius-um)",
        PixelSizeWarning, stacklevel=2,
    )


def warn_sr_input(pixel_size_um: float, *, name: str) -> None:
    """A :class:`PixelSizeWarning` when a raw pixel size is more than
    :data:`SR_INPUT_TOLERANCE` times away from the :data:`LOW_RES_PIXEL_UM` the sr stage's
    factor 35/13 is made for."""
    f = pixel_size_um / LOW_RES_PIXEL_UM
    if 1 / SR_INPUT_TOLERANCE <= f <= SR_INPUT_TOLERANCE:
        return
    how = f"{1 / f:.3g}x finer" if f < 1 else f"{f:.3g}x coarser"
    hint = ("for images acquired at high resolution, --sr-method none (or auto, the default) leaves "
            "them as they are, and --phase-method unet segments such images better than the classical "
            "default on the image styles held out of its training")
    warnings.warn(
        f"{name}: raw pixel size {pixel_size_um:g} µm is {how} than the {LOW_RES_PIXEL_UM} µm the "
        f"sr stage is made for (its factor 35/13 takes 38.5 nm to the paper's 14.3 nm); the "
        f"super-resolved pixel size will be {pixel_size_um * SR_DEN / SR_NUM:.3g} µm"
        + (f" ({hint})" if f < 1 else ""),
        PixelSizeWarning, stacklevel=2,
    )


def read_toml(path: str | Path) -> dict:
    """A TOML config file as a dict; a missing or invalid file is an InputError naming it."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e})") from None


def read_train_toml(path: str | Path, *, arch_table: str, known) -> tuple[dict, dict | None]:
    """A training config file: its ``[training]`` values (keys checked against ``known``) and
    its architecture table ``[arch_table]`` (None when absent); any other table or key is an
    InputError naming the file."""
    path = Path(path)
    doc = read_toml(path)
    unknown_tables = sorted(set(doc) - {arch_table, "training"})
    if unknown_tables:
        raise InputError(f"{path}: unknown table(s) {unknown_tables}; expected [{arch_table}] and [training]")
    values = dict(doc.get("training", {}))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"{path}: unknown [training] key(s) {unknown}; known: {sorted(known)}")
    return values, (dict(doc[arch_table]) if arch_table in doc else None)


def load_params(path: str | Path | None = None, **overrides) -> Params:
    """Parameters from a TOML file's ``[params]`` table, then ``overrides``."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        values = dict(read_toml(path).get("params", {}))
        renamed = sorted(set(values) & set(RENAMED))
        if renamed:
            raise InputError(f"{path}: {renamed_message(renamed[0])}")
        known = {f.name for f in dataclasses.fields(Params)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{path}: unknown parameter(s) {unknown}; known: {sorted(known)}")
    renamed = sorted(k for k, v in overrides.items() if k in RENAMED and v is not None)
    if renamed:
        raise InputError(renamed_message(renamed[0]))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Params(**values)
