"""Parameters of the method, with the paper's values as defaults (DESIGN §4.3).

A TOML file may set any of them (``[params]`` table); unknown keys are an error that names
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

#: High-resolution (super-resolved) pixel size η of the paper, in µm.
ETA_UM = 0.0143
#: Low-resolution pixel size of the paper, in µm (= η · 35/13).
LOW_RES_PIXEL_UM = 0.0385
#: Phase segmentation methods (``Params.phase_method``).
PHASE_METHODS = ("unet", "classical")
#: Super-resolution factor of the paper (s2/s1 = 38.5 nm / 14.3 nm).
SR_NUM, SR_DEN = 35, 13


@dataclass(frozen=True)
class Params:
    """Every parameter of the pipeline after the phase map.

    Attributes
    ----------
    marker_radius_px : r of eq. 10 (markers are ``D >= r``), in pixels. Paper: 50.
    min_crack_d_factor : cracks with d < factor·η are dropped (§2.4.2). Paper: 2.5.
    lambda_pristine_per_um2 : λ_pristine of eq. 19, in µm⁻². Paper: 0.145.
    r10_um, r50_um, r90_um : volume-weighted radius percentiles (§2.5.2), in µm.
    bins : bin edges of the relative distance d_center (eq. 37–40); pixels with
        d_center ≥ bins[-1] go to an overflow bin [bins[-1], ∞).
    stereology_models : which models of DESIGN §4.4 item 11 to report.
    min_particle_area_px : particles smaller than this are left out of the particle
        tables (the paper removes "small particles", Fig. 1, without a number). Default 0.
    crack_threshold : t of eq. 7; None (default) takes the t calibrated for the U-net's
        weights (``cathodeflow calibrate``), stored with them.
    chunk_px : edge of the square Dask chunks for tiled stages.
    unet_tile_px : edge of the U-net's output tiles; each is computed from a window one
        receptive-field halo wider on every side. Larger tiles waste less on halos but need
        more memory (Keras holds every intermediate feature map of a window).
    phase_method : ``'classical'`` (default for now: threshold + morphology baseline, no
        learning) or ``'unet'`` (the paper's U-net, §2.3.2, with the shipped or given weights).
        The classical method stays the default until shipped U-net weights measure closer to
        the truth on the SR stage's output (see the README, *Phase segmentation*).
    unet_weights : registry name or path of U-net weights; None = the shipped default.
    """

    marker_radius_px: float = 50.0
    min_crack_d_factor: float = 2.5
    lambda_pristine_per_um2: float = 0.145
    r10_um: float = 3.55
    r50_um: float = 4.65
    r90_um: float = 6.05
    bins: tuple[float, ...] = tuple(round(0.1 * i, 10) for i in range(11))
    stereology_models: tuple[str, ...] = ("paper", "wicksell")
    min_particle_area_px: int = 0
    crack_threshold: float | None = None
    chunk_px: int = 2048
    unet_tile_px: int = 1024
    phase_method: str = "classical"
    unet_weights: str | None = None

    def __post_init__(self):
        if not self.marker_radius_px > 0:
            raise InputError(f"marker_radius_px must be > 0, got {self.marker_radius_px}")
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
        if self.crack_threshold is not None and not 0 <= self.crack_threshold <= 1:
            raise InputError(f"crack_threshold must be in [0, 1], got {self.crack_threshold}")
        if isinstance(self.unet_tile_px, bool) or not isinstance(self.unet_tile_px, int) or self.unet_tile_px < 16:
            raise InputError(f"unet_tile_px must be an integer >= 16, got {self.unet_tile_px!r}")
        if self.phase_method not in PHASE_METHODS:
            raise InputError(f"phase_method must be one of {PHASE_METHODS}, got {self.phase_method!r}")
        if self.phase_method != "unet":
            used = [k for k in ("unet_weights", "crack_threshold") if getattr(self, k) is not None]
            if used:
                raise InputError(f"{', '.join(used)} set, but phase_method is {self.phase_method!r}: "
                                 "they apply to phase_method = 'unet' (--phase-method unet)")
        if self.unet_weights is not None and not isinstance(self.unet_weights, str):
            raise InputError(f"unet_weights must be a registry name or a path, got {self.unet_weights!r}")
        if isinstance(self.chunk_px, bool) or not isinstance(self.chunk_px, int) or self.chunk_px < 1:
            raise InputError(f"chunk_px (--chunk-size) must be a positive integer, got {self.chunk_px!r}")

    def replace(self, **changes) -> "Params":
        """A copy with ``changes`` applied (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_toml(path: str | Path) -> dict:
    """A TOML config file as a dict; a missing or invalid file is an InputError naming it."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e})") from None


def load_params(path: str | Path | None = None, **overrides) -> Params:
    """Parameters from a TOML file's ``[params]`` table, then ``overrides``."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        values = dict(read_toml(path).get("params", {}))
        known = {f.name for f in dataclasses.fields(Params)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{path}: unknown parameter(s) {unknown}; known: {sorted(known)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Params(**values)
