"""Synthetic SEM cross-sections of cycled NMC cathodes with exact ground truth.

One image = 3D packing of log-normal spheres (:mod:`.packing`) → section by the plane z = 0
(:mod:`.sections`) → cracks whose amount and radial position are parameters
(:mod:`.cracks`) → SEM scene and microscope model at two pixel sizes (:mod:`.render`).
:func:`generate_section` is the geometry half alone (used by :mod:`.training`).

Condition presets (:data:`CONDITIONS`) follow Table 1 of the paper, made strictly increasing
with temperature so that the trend is unambiguous (the paper's 40 °C porosity equals its
30 °C one and its 40 °C intensity exceeds its 50 °C one; :data:`PAPER_TABLE1` keeps the
paper's numbers):

=========  ==============  ==========================
condition  porosity ρ      crack intensity λ (µm⁻²)
=========  ==============  ==========================
20C        0.034           0.24
30C        0.040           0.30
40C        0.045           0.335
50C        0.050           0.37
=========  ==============  ==========================

Each image draws its own targets ρ·e^{ε₁}, λ·e^{ε₂} (ε ~ N(−cv²/2, cv²), cv = ``image_cv``)
so images of a condition scatter like the paper's (Table 1 standard deviations are 10–20 %);
the phase map then has exactly round(ρ_img·A) crack pixels (A: particle pixels) unless the
cracks cannot be made wide enough, and about round(λ_img·A·η²) cracks.

Images are uint8. Pixel (i, j) covers [jη, (j+1)η) × [iη, (i+1)η) µm, so the high- and
low-resolution images cover exactly the same field of view.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..config import ETA_UM, SR_DEN, SR_NUM
from ..errors import InputError
from .cracks import (
    KIND_NAMES,
    Centrelines,
    CrackBuilder,
    CrackParams,
    g_profile,
    label_cracks,
    rasterize_cracks,
)
from .lognormal import fit_lognormal_percentiles, number_weighted_mu
from .packing import Packing, pack_spheres, section
from .render import RenderParams, grain_graph, grain_index, grain_seeds, microscope, render_scene
from .sections import outline_tables, rasterize_sections


@dataclass(frozen=True)
class Condition:
    """Crack amount of one cycling condition.

    Attributes
    ----------
    name : e.g. ``'20C'``.
    temperature_c : cycling temperature, °C.
    porosity : global particle porosity ρ (eq. 11) of the generated phase maps.
    crack_intensity_per_um2 : crack intensity λ (eq. 12), cracks per µm² of particle area.
    radial_kappa : κ of the radial profile g(u) = exp(−κ(u − 0.6)), u = d/r (3D); larger κ
        puts more crack area near the particle centre.
    """

    name: str
    temperature_c: float
    porosity: float
    crack_intensity_per_um2: float
    radial_kappa: float = 1.2


#: Table 1 of the paper: condition → (ρ mean, ρ sd, λ mean, λ sd), λ in µm⁻².
PAPER_TABLE1: dict[str, tuple[float, float, float, float]] = {
    "20C": (0.0343, 0.0066, 0.241, 0.023),
    "30C": (0.0401, 0.0051, 0.300, 0.041),
    "40C": (0.0395, 0.0047, 0.384, 0.035),
    "50C": (0.0503, 0.0086, 0.369, 0.056),
}

#: Presets used by :func:`generate_image` (see the module docstring for the choice).
CONDITIONS: dict[str, Condition] = {
    "20C": Condition("20C", 20.0, 0.034, 0.24),
    "30C": Condition("30C", 30.0, 0.040, 0.30),
    "40C": Condition("40C", 40.0, 0.045, 0.335),
    "50C": Condition("50C", 50.0, 0.050, 0.37),
}

#: Default low-resolution shape of one demo image (572·35/13 × 780·35/13 = 1540 × 2100 hr).
DEFAULT_SHAPE_LR = (572, 780)


@dataclass(frozen=True)
class SynthOptions:
    """Every knob of the generator besides the condition, with realistic defaults.

    Attributes
    ----------
    volume_fraction : nominal solid volume fraction of the sphere packing (the section's
        solid area fraction comes out ≈ 0.5–0.6).
    max_overlap : two spheres may overlap by this fraction of r_i + r_j.
    perturbation : amplitude of the smooth boundary perturbation of the sections (0 = discs).
    surface_roughness_um : standard deviation of the outline roughness (correlation length
        half a grain: primary particles bulging out of the surface; 0 = smooth outlines).
    grain_size_um : grain (primary particle) spacing; None = 0.35 µm scaled with r50 / 4.65
        µm, clipped to [0.1, 0.35] µm.
    crack_halfwidth_um : median base crack half-width before the radial factor and the
        porosity width scale (0.022 µm ≈ 1.5 px at η = 14.3 nm).
    crack_max_width_um : no crack is wider (0.09 µm ≈ 6 px); with the 1-px floor, crack
        widths are 1–6 px at η = 14.3 nm.
    join_probability : chance that a grain-boundary crack running into a radial crack of
        its particle joins it instead of stopping short.
    image_cv : per-image relative scatter of the porosity and intensity targets.
    star_probability : chance that a section through the core holds a radial star.
    void_fraction : share of the non-radial cracks that are short openings at grain
        triple junctions (the rest run along grain boundaries).
    render : grey levels and optics of the SEM model.
    """

    volume_fraction: float = 0.55
    max_overlap: float = 0.02
    perturbation: float = 0.03
    surface_roughness_um: float = 0.03
    grain_size_um: float | None = None
    crack_halfwidth_um: float = 0.022
    crack_max_width_um: float = 0.09
    crack_halfwidth_log_sd: float = 0.35
    crack_width_gamma: float = 0.5
    star_probability: float = 0.8
    void_fraction: float = 0.3
    branch_probability: float = 0.6
    join_probability: float = 0.7
    crack_length_log_sd: float = 0.8
    crack_gap_px: float = 2.0
    min_crack_px: int = 5
    image_cv: float = 0.05
    render: RenderParams = field(default_factory=RenderParams)


@dataclass
class SyntheticImage:
    """One synthetic image pair and its ground truth.

    Attributes
    ----------
    hr : (H, W) uint8 — high-resolution SEM image, pixel ``pixel_size_hr_um``.
    lr : (h, w) uint8 — low-resolution SEM image of the same field, (H, W) = (h, w)·35/13.
    phase : (H, W) uint8 — 0 background, 1 solid, 2 crack.
    particles : (H, W) uint32 — particle id of every solid or crack pixel, 0 background.
    cracks : (H, W) uint32 — crack id of every crack pixel (8-connected component of the
        crack phase within one particle), 0 elsewhere.
    particle_table : one row per particle id (see :func:`generate_image`).
    crack_table : one row per crack id: crack_id, particle_id, area_px, kind.
    radial_truth : crack and particle pixels per bin of the exact 3D relative distance d/r.
    spheres : every sphere of the 3D packing (x_um, y_um, z_um, r_um), z = cut height.
    pixel_size_hr_um, pixel_size_lr_um : pixel sizes, µm.
    condition, image_id : e.g. ``'20C'``, ``'20C_000'``.
    params : generation parameters, targets and realised truth (plain Python values).
    """

    hr: np.ndarray
    lr: np.ndarray
    phase: np.ndarray
    particles: np.ndarray
    cracks: np.ndarray
    particle_table: pd.DataFrame
    crack_table: pd.DataFrame
    radial_truth: pd.DataFrame
    spheres: pd.DataFrame
    pixel_size_hr_um: float
    pixel_size_lr_um: float
    condition: str
    image_id: str
    params: dict

    @property
    def porosity(self) -> float:
        """True global particle porosity of the phase map (eq. 11)."""
        return self.params["porosity_true"]

    @property
    def crack_intensity_per_um2(self) -> float:
        """True crack intensity (eq. 12): cracks per µm² of particle area."""
        return self.params["crack_intensity_true_per_um2"]


def hr_shape(shape_lr: tuple[int, int]) -> tuple[int, int]:
    """High-resolution shape (h·35/13, w·35/13) of a low-resolution shape (multiples of 13)."""
    h, w = shape_lr
    return h * SR_NUM // SR_DEN, w * SR_NUM // SR_DEN


def _validate_shape(shape_lr) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape_lr)
    except (TypeError, ValueError):
        raise InputError(f"shape_lr must be two integers, got {shape_lr!r}") from None
    if (h, w) != tuple(shape_lr) or h < 26 or w < 26 or h % SR_DEN or w % SR_DEN:
        raise InputError(
            f"shape_lr must be two integers >= 26 that are multiples of {SR_DEN} (so the "
            f"high-resolution grid ×{SR_NUM}/{SR_DEN} is integer), got {shape_lr!r}"
        )
    return h, w


def _resolve_condition(condition, porosity, intensity, kappa) -> Condition:
    if isinstance(condition, Condition):
        cond = condition
    elif isinstance(condition, str) and condition in CONDITIONS:
        cond = CONDITIONS[condition]
    else:
        raise InputError(
            f"condition must be one of {sorted(CONDITIONS)} or a Condition, got {condition!r}"
        )
    changes = {
        k: v
        for k, v in (
            ("porosity", porosity),
            ("crack_intensity_per_um2", intensity),
            ("radial_kappa", kappa),
        )
        if v is not None
    }
    cond = dataclasses.replace(cond, **changes)
    if not 0 <= cond.porosity < 0.5:
        raise InputError(f"porosity must be in [0, 0.5), got {cond.porosity}")
    if not cond.crack_intensity_per_um2 >= 0:
        raise InputError(
            f"crack_intensity_per_um2 must be >= 0, got {cond.crack_intensity_per_um2}"
        )
    return cond


def study_seed(seed: int, condition: str, index: int) -> list[int]:
    """The seed :func:`generate_study` gives image ``index`` of ``condition``
    (independent of which other conditions are generated)."""
    return [int(seed), zlib.crc32(str(condition).encode()), int(index)]


@dataclass
class Section:
    """One planar section of a packing with its cracks, on the high-resolution grid, before
    any rendering (what :func:`generate_image` renders and tabulates).

    Attributes
    ----------
    phase : (H, W) uint8 — 0 background, 1 solid, 2 crack.
    labels : (H, W) int32 — particle id 1..n of every solid or crack pixel, 0 background.
    reldist : (H, W) float32 — exact 3D relative distance d/r of every particle pixel to the
        centre of its sphere, 0 in the background.
    cracks : (H, W) uint32 — crack id of every crack pixel, 0 elsewhere.
    crack_pid : (n_c,) int — particle id of each crack.
    crack_of : (H, W) int32 — 1 + index of the drawn crack (``lines``) of every crack pixel.
    grains : (H, W) int32 — grain (seed index) of every particle pixel.
    seeds : (m, 2) float — grain seeds (row, column), px.
    grain_spacing_px, grain_size_um : grain spacing in px and µm.
    sections : one row of :func:`.packing.section` per particle id (row k is id k + 1).
    area_px : (n,) int — pixels of each particle, cracks included.
    packing : the 3D packing.
    lines : the drawn crack centrelines; n_joined : walks that joined a radial crack.
    width_scale : the width scale t of the porosity solve.
    porosity_target, intensity_target_per_um2, crack_px_target, n_cracks_target : this
        image's targets ρ·e^{ε₁}, λ·e^{ε₂}, round(ρ·A), round(λ·A·η²).
    """

    phase: np.ndarray
    labels: np.ndarray
    reldist: np.ndarray
    cracks: np.ndarray
    crack_pid: np.ndarray
    crack_of: np.ndarray
    grains: np.ndarray
    seeds: np.ndarray
    grain_spacing_px: float
    grain_size_um: float
    sections: pd.DataFrame
    area_px: np.ndarray
    packing: Packing
    lines: Centrelines
    n_joined: int
    width_scale: float
    porosity_target: float
    intensity_target_per_um2: float
    crack_px_target: int
    n_cracks_target: int


def generate_section(
    condition: Condition,
    *,
    rng: np.random.Generator,
    shape_hr: tuple[int, int],
    pixel_size_hr_um: float,
    r10_um: float,
    r50_um: float,
    r90_um: float,
    options: SynthOptions,
) -> Section:
    """Packing → planar section → cracks on the high-resolution grid (no rendering).

    The geometry half of :func:`generate_image`, which validates the arguments; this
    function does not. Draws from ``rng`` in a fixed order (packing, grains, outlines,
    targets, cracks).

    Parameters
    ----------
    condition : the crack amount (porosity, intensity, κ).
    shape_hr : (H, W) of the high-resolution grid; pixel_size_hr_um : η, µm.
    r10_um, r50_um, r90_um : volume-weighted radius percentiles, µm.
    options : :class:`SynthOptions` (``options.render`` is not used).

    Returns
    -------
    Section
    """
    cond, opt, eta = condition, options, float(pixel_size_hr_um)
    H, W = shape_hr
    mu_v, sigma = fit_lognormal_percentiles(float(r10_um), float(r50_um), float(r90_um))
    mu_n = number_weighted_mu(mu_v, sigma)
    # -- 3D packing and its section ------------------------------------------------------
    field_um = (H * eta, W * eta)
    packing = pack_spheres(
        rng,
        field_um=field_um,
        mu_n=mu_n,
        sigma=sigma,
        volume_fraction=opt.volume_fraction,
        max_overlap=opt.max_overlap,
    )
    sec = section(packing, field_um)
    cx = sec["x_um"].to_numpy() / eta - 0.5
    cy = sec["y_um"].to_numpy() / eta - 0.5
    s_px = sec["section_radius_um"].to_numpy() / eta
    r_px = sec["r_um"].to_numpy() / eta
    h_px = np.abs(sec["h_um"].to_numpy()) / eta
    # grains (seeds, tessellation), used for the outline roughness scale, texture, cracks
    grain_um = opt.grain_size_um
    if grain_um is None:
        grain_um = float(np.clip(0.35 * r50_um / 4.65, 0.1, 0.35))
    spacing_px = grain_um / eta
    seeds = grain_seeds(rng, (H, W), spacing_px)
    outlines = outline_tables(
        rng, s_px, amplitude=opt.perturbation, roughness_px=opt.surface_roughness_um / eta,
        corr_px=0.5 * spacing_px,
    )
    lab0, reldist = rasterize_sections(
        (H, W), cx_px=cx, cy_px=cy, r_px=r_px, h_px=h_px, outlines=outlines
    )
    # consecutive ids in sphere order, only for sections with pixels
    present = np.flatnonzero(np.bincount(lab0.ravel(), minlength=len(sec) + 1)[1:])
    remap = np.zeros(len(sec) + 1, dtype=np.int32)
    remap[present + 1] = np.arange(1, len(present) + 1, dtype=np.int32)
    labels = remap[lab0]
    n_p = len(present)
    cx, cy, s_px, r_px, h_px = cx[present], cy[present], s_px[present], r_px[present], h_px[present]
    area_px = np.bincount(labels.ravel(), minlength=n_p + 1)[1:]
    A_px = int(area_px.sum())
    graph = grain_graph(seeds, labels)
    grains = grain_index(labels > 0, seeds)

    # -- cracks ---------------------------------------------------------------------------
    cv = opt.image_cv
    rho_img = cond.porosity * float(np.exp(rng.normal(-0.5 * cv**2, cv)))
    lam_img = cond.crack_intensity_per_um2 * float(np.exp(rng.normal(-0.5 * cv**2, cv)))
    target_px = int(round(rho_img * A_px))
    n_target = int(round(lam_img * A_px * eta**2))
    cparams = CrackParams(
        hw_px=opt.crack_halfwidth_um / eta,
        hw_log_sd=opt.crack_halfwidth_log_sd,
        gamma=opt.crack_width_gamma,
        kappa=cond.radial_kappa,
        star_probability=opt.star_probability,
        branch_probability=opt.branch_probability,
        length_log_sd=opt.crack_length_log_sd,
        gap_px=opt.crack_gap_px,
        min_crack_px=opt.min_crack_px,
        hw_cap_px=0.5 * opt.crack_max_width_um / eta,
        join_probability=opt.join_probability,
    )
    builder = CrackBuilder(
        rng, labels, cy=cy, cx=cx, s=s_px, r=r_px, h=h_px, graph=graph, params=cparams
    )
    gsum = np.bincount(labels.ravel(), weights=g_profile(reldist, cond.radial_kappa).ravel(),
                       minlength=n_p + 1)[1:]
    # radial stars in sections through the core
    n_star = 0
    if n_target > 0 and n_p > 0:
        p_star = opt.star_probability * np.sqrt(np.clip(1 - (h_px / r_px) ** 2, 0, 1))
        p_star = p_star * (s_px * eta >= 0.3)
        for pid in np.flatnonzero(rng.random(n_p) < p_star) + 1:
            if n_star >= n_target // 3 + 1:
                break
            n_star += builder.add_star(int(pid))
    # voids and intergranular cracks: lengths chosen so that the nominal crack area (width
    # scale 1) meets the porosity target, corrected on the fly for walks cut short; walks
    # that join a radial crack add area but no crack, so placing goes on until the number
    # of distinct cracks reaches the target (or too many attempts failed)
    n_rest = max(0, n_target - n_star)
    if n_rest > 0 and n_p > 0:
        weights = gsum / gsum.sum()
        n_void = int(rng.binomial(n_rest, opt.void_fraction))
        for pid in rng.choice(n_p, size=n_void, p=weights) + 1:
            builder.add_void(int(pid))
        ls = opt.crack_length_log_sd
        asked = drawn = 1.0
        attempts = 0
        while builder.out.n < n_target and attempts < 3 * n_target + 10:
            attempts += 1
            pid = int(rng.choice(n_p, p=weights)) + 1
            left = n_target - builder.out.n
            remaining = target_px - sum(builder.out.crack_area_px)
            mean_len = max(remaining / left / (2.0 * cparams.hw_px), 8.0)
            L = mean_len * float(np.exp(rng.normal(-0.5 * ls**2, ls))) * min(asked / drawn, 3.0)
            L = float(np.clip(L, 6.0, 2.0 * s_px[pid - 1]))
            before = sum(builder.out.crack_length_px)
            builder.add_intergranular(pid, L)
            asked += L
            drawn += sum(builder.out.crack_length_px) - before
    lines = builder.out
    crack_of, _, width_scale = rasterize_cracks(
        lines, labels, target_px=target_px, hw_cap_px=cparams.hw_cap_px
    )
    crack_labels, crack_pid = label_cracks(crack_of > 0, labels, min_px=opt.min_crack_px)
    phase = (labels > 0).astype(np.uint8)
    phase[crack_labels > 0] = 2

    return Section(
        phase=phase,
        labels=labels,
        reldist=reldist,
        cracks=crack_labels,
        crack_pid=crack_pid,
        crack_of=crack_of,
        grains=grains,
        seeds=seeds,
        grain_spacing_px=spacing_px,
        grain_size_um=grain_um,
        sections=sec.iloc[present].reset_index(drop=True),
        area_px=area_px,
        packing=packing,
        lines=lines,
        n_joined=builder.n_joined,
        width_scale=width_scale,
        porosity_target=rho_img,
        intensity_target_per_um2=lam_img,
        crack_px_target=target_px,
        n_cracks_target=n_target,
    )


def generate_image(
    condition: str | Condition = "20C",
    *,
    seed: int | Sequence[int] = 0,
    shape_lr: tuple[int, int] = DEFAULT_SHAPE_LR,
    pixel_size_hr_um: float = ETA_UM,
    r10_um: float = 3.55,
    r50_um: float = 4.65,
    r90_um: float = 6.05,
    porosity: float | None = None,
    crack_intensity_per_um2: float | None = None,
    radial_kappa: float | None = None,
    image_id: str | None = None,
    options: SynthOptions | None = None,
) -> SyntheticImage:
    """Generate one synthetic SEM image pair with ground truth.

    Parameters
    ----------
    condition : a key of :data:`CONDITIONS` or a :class:`Condition`.
    seed : int or sequence of ints for ``numpy.random.default_rng``; same seed, same image.
    shape_lr : (h, w) of the low-resolution image, multiples of 13; the high-resolution
        image has shape (h, w)·35/13.
    pixel_size_hr_um : high-resolution pixel size η, µm; low-resolution = η·35/13.
    r10_um, r50_um, r90_um : volume-weighted radius percentiles (§2.5.2), µm.
    porosity, crack_intensity_per_um2, radial_kappa : override the condition's values.
    image_id : default ``'<condition>_000'``.
    options : :class:`SynthOptions`.

    Returns
    -------
    SyntheticImage
        ``particle_table`` columns: particle_id, x_um, y_um, x_px, y_px (disc centre; px on
        the high-resolution grid, pixel centres at integers), r_um (3D radius), h_um (cut
        height |z|), section_radius_um (= sqrt(r_um² − h_um²), before the perturbation),
        area_px (rendered, cracks included), crack_px, porosity, n_cracks, touches_border.
        ``radial_truth`` columns: bin_lo, bin_hi, crack_px, particle_px, porosity, for
        d/r in [0, 0.1), …, [0.9, 1.0) and an overflow [1, inf) (perturbed boundaries).
    """
    opt = options or SynthOptions()
    cond = _resolve_condition(condition, porosity, crack_intensity_per_um2, radial_kappa)
    h_lr, w_lr = _validate_shape(shape_lr)
    if not (np.isfinite(pixel_size_hr_um) and pixel_size_hr_um > 0):
        raise InputError(f"pixel_size_hr_um must be > 0, got {pixel_size_hr_um}")
    eta = float(pixel_size_hr_um)
    eta_lr = eta * SR_NUM / SR_DEN
    H, W = hr_shape((h_lr, w_lr))
    mu_v, sigma = fit_lognormal_percentiles(float(r10_um), float(r50_um), float(r90_um))
    mu_n = number_weighted_mu(mu_v, sigma)
    rng = np.random.default_rng(seed)
    if image_id is None:
        image_id = f"{cond.name}_000"
    geo = generate_section(
        cond, rng=rng, shape_hr=(H, W), pixel_size_hr_um=eta, r10_um=r10_um, r50_um=r50_um,
        r90_um=r90_um, options=opt,
    )
    phase, labels, crack_labels, crack_pid = geo.phase, geo.labels, geo.cracks, geo.crack_pid
    lines, crack_of, reldist, sec = geo.lines, geo.crack_of, geo.reldist, geo.sections
    particles = labels.astype(np.uint32)
    n_p = len(sec)
    cx = sec["x_um"].to_numpy() / eta - 0.5
    cy = sec["y_um"].to_numpy() / eta - 0.5
    area_px = geo.area_px
    A_px = int(area_px.sum())

    # -- tables ---------------------------------------------------------------------------
    n_c = len(crack_pid)
    crack_area = np.bincount(crack_labels.ravel(), minlength=n_c + 1)[1:]
    # kind of a crack instance = kind of the drawn crack covering most of its pixels
    kinds = np.asarray(lines.crack_kind, dtype=np.int64)
    cm = crack_labels > 0
    drawn_id = crack_of[cm] - 1
    inst = crack_labels[cm].astype(np.int64) - 1
    kind_votes = np.zeros((n_c, len(KIND_NAMES)), dtype=np.int64)
    if n_c:
        np.add.at(kind_votes, (inst, kinds[drawn_id]), 1)
    crack_table = pd.DataFrame(
        {
            "crack_id": np.arange(1, n_c + 1, dtype=np.int64),
            "particle_id": crack_pid.astype(np.int64),
            "area_px": crack_area.astype(np.int64),
            "kind": pd.Series(
                [KIND_NAMES[k] for k in kind_votes.argmax(axis=1)] if n_c else [], dtype="string"
            ),
        }
    )
    crack_px_p = np.bincount(labels[cm], minlength=n_p + 1)[1:]
    n_cracks_p = np.bincount(crack_pid, minlength=n_p + 1)[1:]
    border = np.zeros(n_p + 1, dtype=bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        border[edge] = True
    particle_table = pd.DataFrame(
        {
            "particle_id": np.arange(1, n_p + 1, dtype=np.int64),
            "x_um": sec["x_um"].to_numpy(),
            "y_um": sec["y_um"].to_numpy(),
            "x_px": cx,
            "y_px": cy,
            "r_um": sec["r_um"].to_numpy(),
            "h_um": np.abs(sec["h_um"].to_numpy()),
            "section_radius_um": sec["section_radius_um"].to_numpy(),
            "area_px": area_px.astype(np.int64),
            "crack_px": crack_px_p.astype(np.int64),
            "porosity": crack_px_p / np.maximum(area_px, 1),
            "n_cracks": n_cracks_p.astype(np.int64),
            "touches_border": border[1:],
        }
    )
    radial_truth = radial_porosity_truth(phase, reldist)

    # -- SEM images -------------------------------------------------------------------------
    rp = opt.render
    scene = render_scene(
        rng,
        phase=phase,
        labels=labels,
        grains=geo.grains,
        seeds=geo.seeds,
        grain_spacing_px=geo.grain_spacing_px,
        pixel_um=eta,
        params=rp,
    )
    hr = microscope(
        rng, scene, out_shape=(H, W), scene_pixel_um=eta, psf_um=rp.psf_hr_um,
        noise=rp.noise_hr, line_noise=rp.line_noise_hr,
    )
    lr = microscope(
        rng, scene, out_shape=(h_lr, w_lr), scene_pixel_um=eta, psf_um=rp.psf_lr_um,
        noise=rp.noise_lr, line_noise=rp.line_noise_lr, gain=rp.gain_lr, offset=rp.offset_lr,
    )

    crack_px = int(crack_area.sum())
    params = {
        "condition": cond.name,
        "temperature_c": cond.temperature_c,
        "seed": int(seed) if np.isscalar(seed) else [int(v) for v in seed],
        "shape_lr": (h_lr, w_lr),
        "shape_hr": (H, W),
        "r10_um": float(r10_um),
        "r50_um": float(r50_um),
        "r90_um": float(r90_um),
        "lognormal_mu_volume": mu_v,
        "lognormal_mu_number": mu_n,
        "lognormal_sigma": sigma,
        "porosity_condition": cond.porosity,
        "crack_intensity_condition_per_um2": cond.crack_intensity_per_um2,
        "radial_kappa": cond.radial_kappa,
        "porosity_target": geo.porosity_target,
        "crack_intensity_target_per_um2": geo.intensity_target_per_um2,
        "crack_px_target": geo.crack_px_target,
        "n_cracks_target": geo.n_cracks_target,
        "n_cracks_drawn": lines.n,
        "n_radial_stars": int(sum(k == 0 for k in lines.crack_kind)),
        "n_voids_drawn": int(sum(k == 2 for k in lines.crack_kind)),
        "n_joined": geo.n_joined,
        "width_scale": float(geo.width_scale),
        "crack_length_drawn_px": float(sum(lines.crack_length_px)),
        "crack_area_nominal_px": float(sum(lines.crack_area_px)),
        "grain_size_um": geo.grain_size_um,
        "solid_px": int(A_px - crack_px),
        "crack_px": crack_px,
        "particle_px": A_px,
        "solid_area_fraction": A_px / float(H * W),
        "porosity_true": crack_px / max(A_px, 1),
        "n_cracks_true": n_c,
        "crack_intensity_true_per_um2": n_c / max(A_px * eta**2, 1e-12),
        "n_particles": n_p,
        "n_spheres": len(geo.packing.r_um),
        "packing_max_overlap": geo.packing.max_overlap_found,
        "options": dataclasses.asdict(opt),
    }
    return SyntheticImage(
        hr=hr,
        lr=lr,
        phase=phase,
        particles=particles,
        cracks=crack_labels,
        particle_table=particle_table,
        crack_table=crack_table,
        radial_truth=radial_truth,
        spheres=geo.packing.table(),
        pixel_size_hr_um=eta,
        pixel_size_lr_um=eta_lr,
        condition=cond.name,
        image_id=image_id,
        params=params,
    )


def radial_porosity_truth(
    phase: np.ndarray, reldist: np.ndarray, bins: Sequence[float] | None = None
) -> pd.DataFrame:
    """Crack and particle pixel counts per bin of the exact 3D relative distance d/r.

    Parameters
    ----------
    phase : (H, W) uint8 — 0/1/2 phase map.
    reldist : (H, W) float — d/r of every particle pixel to its own sphere centre.
    bins : bin edges; default 0, 0.1, …, 1.0 plus an overflow bin [1, inf).

    Returns
    -------
    DataFrame: bin_lo, bin_hi, crack_px, particle_px, porosity (crack_px / particle_px,
    NaN for an empty bin) — the true local porosity of eq. 40 with the exact d/r.
    """
    edges = np.round(np.linspace(0, 1, 11), 10) if bins is None else np.asarray(bins, float)
    edges = np.append(edges, np.inf)
    m = phase > 0
    k = np.clip(np.searchsorted(edges, reldist[m], side="right") - 1, 0, len(edges) - 2)
    part = np.bincount(k, minlength=len(edges) - 1)
    crack = np.bincount(k[phase[m] == 2], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        por = np.where(part > 0, crack / np.maximum(part, 1), np.nan)
    return pd.DataFrame(
        {
            "bin_lo": edges[:-1],
            "bin_hi": edges[1:],
            "crack_px": crack.astype(np.int64),
            "particle_px": part.astype(np.int64),
            "porosity": por,
        }
    )


def pool_radial_truth(images: Sequence[SyntheticImage]) -> pd.DataFrame:
    """Sum :attr:`SyntheticImage.radial_truth` over images (pooled local porosity)."""
    if not images:
        raise InputError("pool_radial_truth needs at least one image, got none")
    df = images[0].radial_truth[["bin_lo", "bin_hi"]].copy()
    df["crack_px"] = sum(im.radial_truth["crack_px"].to_numpy() for im in images)
    df["particle_px"] = sum(im.radial_truth["particle_px"].to_numpy() for im in images)
    with np.errstate(invalid="ignore", divide="ignore"):
        df["porosity"] = np.where(
            df["particle_px"] > 0, df["crack_px"] / np.maximum(df["particle_px"], 1), np.nan
        )
    return df


def generate_study(
    conditions: Sequence[str | Condition] = ("20C", "30C", "40C", "50C"),
    n_images: int = 3,
    *,
    seed: int = 0,
    **kwargs,
) -> list[SyntheticImage]:
    """Generate ``n_images`` images per condition (ids ``'<condition>_000'``, …).

    Image ``i`` of condition ``c`` is ``generate_image(c, seed=study_seed(seed, c, i),
    **kwargs)``, so it does not depend on the other conditions or on ``n_images``.
    ``kwargs`` are passed to :func:`generate_image`.
    """
    if int(n_images) != n_images or n_images < 1:
        raise InputError(f"n_images must be a positive integer, got {n_images!r}")
    if isinstance(conditions, (str, Condition)):
        conditions = (conditions,)
    out = []
    for c in conditions:
        name = c.name if isinstance(c, Condition) else c
        for i in range(int(n_images)):
            out.append(
                generate_image(
                    c, seed=study_seed(seed, name, i), image_id=f"{name}_{i:03d}", **kwargs
                )
            )
    return out


def study_summary(images: Sequence[SyntheticImage]) -> pd.DataFrame:
    """Per image: image_id, condition, porosity_true, crack_intensity_true_per_um2,
    n_cracks, n_particles, targets and the width scale used."""
    return pd.DataFrame(
        [
            {
                "image_id": im.image_id,
                "condition": im.condition,
                "porosity_true": im.params["porosity_true"],
                "porosity_target": im.params["porosity_target"],
                "crack_intensity_true_per_um2": im.params["crack_intensity_true_per_um2"],
                "crack_intensity_target_per_um2": im.params["crack_intensity_target_per_um2"],
                "n_cracks": im.params["n_cracks_true"],
                "n_particles": im.params["n_particles"],
                "solid_area_fraction": im.params["solid_area_fraction"],
                "width_scale": im.params["width_scale"],
            }
            for im in images
        ]
    )
