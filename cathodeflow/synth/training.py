"""Style-randomised synthetic training pairs for the super-resolution and U-net stages.

One pair = one section drawn with varied geometry (:func:`~.study.generate_section`), an
optional porous-core post-step on its phase map, and one style of a family
(:mod:`.style`) rendered at both pixel sizes: hr at η = 14.3 nm and lr at η·35/13 = 38.5 nm
from the *same* scene (lr through a wider PSF and with its own noise, as
:func:`~.study.generate_image`), plus the exact phase truth on the hr grid.

Seeds: the geometry depends on (seed, geometry) only, the style and noise on (seed,
family); so one seed gives the same section in every family.

Geometries (``geometry=``):

=========  ==============================================================================
classic    :class:`~.study.SynthOptions` defaults, paper radii, a random condition preset
random     every knob below drawn independently per image
hairline   every crack 1 px wide (``crack_max_width_um`` = η)
network    intergranular crack networks (join 1.0, branch 0.9, star 1.0)
porous     porous or hollow cores in 50–100 % of the particles (visible where cut near
           their centre), radius scale at most log-U(0.2, 0.6) so whole particles are in view
=========  ==============================================================================

The three presets draw every other knob as ``random`` does, with the other two features off.

``random`` draws, independently per image:

* radius scale s: r10, r50, r90 = s·(3.55, 4.65, 6.05) µm, s = 1 with probability ½, else
  log-U(0.2, 1). At s = 1 a particle is ~650 hr px across and a default 630 × 840 crop
  holds parts of 2–6 particles; at s = 0.2 it holds 30–45 whole ones.
* packing and outlines: volume fraction U(0.5, 0.6), overlap U(0.005, 0.15) (touching and
  merged particles), perturbation U(0.02, 0.15), roughness U(0, 0.05) µm (non-circular);
  grain size (default rule)·U(0.7, 1.4).
* crack amount: porosity U(0.01, 0.10), intensity log-U(0.12, 0.6)/s µm⁻² (~s times as many
  cracks per particle as at s = 1: small particles crack less, and placing stays fast),
  radial κ U(−0.5, 2.5).
* crack shape: median half-width log-U(0.6, 2.5) px, log-sd U(0.2, 0.8), width cap U(3, 9)
  px; join U(0.3, 0.9), branch U(0.3, 0.8), star U(0.5, 1), void share U(0.1, 0.5),
  length log-sd U(0.5, 1).
* features: hairline with probability 0.2, network 0.3, porous cores 0.3 (as the presets).

Porous cores (:func:`add_porous_cores`) change only the phase map: the crack and particle
tables of :func:`~.study.generate_image` are not produced here (the U-net needs the phase).
"""

from __future__ import annotations

import dataclasses
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.special import ndtri

from ..config import ETA_UM, SR_DEN, SR_NUM
from ..errors import InputError
from .render import _smooth_noise
from .study import CONDITIONS, Condition, SynthOptions, _validate_shape, generate_section, hr_shape
from .style import FAMILIES, acquire, sample_style, style_scene

#: Geometry presets of :func:`make_training_pair` (module docstring).
GEOMETRIES = ("random", "classic", "hairline", "network", "porous")
#: Families to train on, and the two held out to validate generalisation to unseen
#: microscopes, each unlike every training family: ``lowcontrast`` (per-pixel SNR
#: (solid − mean binder)/noise at most 2.6 by its ranges, at least 3.1 in ``bright-binder``
#: and 6.9 in the others) and ``charging`` (the only family with glow, blobs and scan
#: tails). A final model may be trained on all families once validated.
FAMILIES_HELD_OUT = ("lowcontrast", "charging")
FAMILIES_TRAIN = tuple(f for f in FAMILIES if f not in FAMILIES_HELD_OUT)
#: Volume-weighted radius percentiles (µm) at radius scale 1 (§2.5.2).
R_PERCENTILES_UM = (3.55, 4.65, 6.05)


@dataclass
class TrainingPair:
    """One style-randomised lr/hr image pair and its phase truth.

    Attributes
    ----------
    lr : (h, w) uint8 — low-resolution image, pixel ``pixel_size_lr_um``.
    hr : (H, W) uint8 — high-resolution image of the same field, (H, W) = (h, w)·35/13.
    phase : (H, W) uint8 — 0 background, 1 solid, 2 crack (porous cores included).
    particles : (H, W) uint32 — the generator's particle id of every solid or crack pixel.
    family : style family; pixel_size_hr_um, pixel_size_lr_um : µm.
    params : seed, geometry, style (as a dict), options and realised truth.
    """

    lr: np.ndarray
    hr: np.ndarray
    phase: np.ndarray
    particles: np.ndarray
    family: str
    pixel_size_hr_um: float
    pixel_size_lr_um: float
    params: dict


def add_porous_cores(
    rng: np.random.Generator,
    phase: np.ndarray,
    labels: np.ndarray,
    reldist: np.ndarray,
    *,
    pixel_um: float,
    particle_probability: float,
    core_range: tuple[float, float] = (0.15, 0.55),
    hollow_probability: float = 0.35,
    pore_fraction_range: tuple[float, float] = (0.2, 0.5),
    pore_um_range: tuple[float, float] = (0.03, 0.12),
) -> tuple[np.ndarray, int]:
    """Porous or hollow cores (crack phase, as the paper's internal pores) inside particles.

    Each particle is chosen with ``particle_probability``; its core is the set of its pixels
    whose exact 3D relative distance satisfies d/r < c·(1 + 0.08·ε) (c ~ U(core_range), ε
    a smooth unit field: a slightly rough concentric sphere, so only sections cut within
    c·r of the centre show it). A core is hollow (all crack) with ``hollow_probability``,
    otherwise a cluster of pores: the core pixels where a smooth unit field (correlation
    U(pore_um_range) µm) exceeds Φ⁻¹(1 − q), q ~ U(pore_fraction_range) ≈ the pore share.

    Parameters
    ----------
    phase : (H, W) uint8 — 0/1/2 phase map; labels : (H, W) int — particle ids.
    reldist : (H, W) float — d/r of every particle pixel (0 in the background).
    pixel_um : pixel size, µm.

    Returns
    -------
    phase : (H, W) uint8 — a copy with the core pores set to 2 (only inside particles).
    n_cores : number of particles that received a non-empty porous core.
    """
    n = int(labels.max())
    out = phase.copy()
    chosen = rng.random(n) < particle_probability
    if n == 0 or not chosen.any():
        return out, 0
    c_of = np.zeros(n + 1)
    c_of[1:] = np.where(chosen, rng.uniform(*core_range, n), 0.0)
    q = rng.uniform(*pore_fraction_range, n)
    thr_of = np.full(n + 1, np.inf)
    thr_of[1:] = np.where(rng.random(n) < hollow_probability, -np.inf, ndtri(1.0 - q))
    rough = _smooth_noise(rng, phase.shape, 0.1 / pixel_um)
    pores = _smooth_noise(rng, phase.shape, rng.uniform(*pore_um_range) / pixel_um)
    core = (labels > 0) & (reldist < c_of[labels] * (1.0 + 0.08 * rough))
    core &= pores > thr_of[labels]
    out[core] = 2
    return out, int(np.count_nonzero(np.bincount(labels[core], minlength=n + 1)[1:]))


def _seed_list(seed) -> list[int]:
    vals = [seed] if np.isscalar(seed) else list(seed)
    try:
        out = [int(v) for v in vals]
    except (TypeError, ValueError):
        raise InputError(f"seed must be a non-negative int or ints, got {seed!r}") from None
    if not out or any(v < 0 or v != w for v, w in zip(out, vals)):
        raise InputError(f"seed must be a non-negative int or ints, got {seed!r}")
    return out


def _log_uniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _draw_geometry(rng: np.random.Generator, geometry: str, eta: float):
    """(condition, options, radius scale, porous-core probability, flags) of one image."""
    if geometry == "classic":
        name = sorted(CONDITIONS)[int(rng.integers(len(CONDITIONS)))]
        return CONDITIONS[name], SynthOptions(), 1.0, 0.0, {"hairline": False, "network": False}
    s = 1.0 if rng.random() < 0.5 else _log_uniform(rng, 0.2, 1.0)
    hairline, network, porous = rng.random(3) < (0.2, 0.3, 0.3)
    if geometry != "random":  # a preset forces its feature and switches the others off
        hairline, network, porous = (geometry == g for g in ("hairline", "network", "porous"))
    porous_p = float(rng.uniform(0.5, 1.0)) if porous else 0.0
    if geometry == "porous":  # whole particles in view, so that more cuts show a core
        s = min(s, _log_uniform(rng, 0.2, 0.6))
    cond = Condition(
        "train",
        float("nan"),
        porosity=float(rng.uniform(0.01, 0.10)),
        crack_intensity_per_um2=_log_uniform(rng, 0.12, 0.6) / s,
        radial_kappa=float(rng.uniform(-0.5, 2.5)),
    )
    opt = SynthOptions(
        volume_fraction=float(rng.uniform(0.5, 0.6)),
        max_overlap=float(rng.uniform(0.005, 0.15)),
        perturbation=float(rng.uniform(0.02, 0.15)),
        surface_roughness_um=float(rng.uniform(0.0, 0.05)),
        grain_size_um=float(np.clip(0.35 * s, 0.1, 0.35) * rng.uniform(0.7, 1.4)),
        crack_halfwidth_um=_log_uniform(rng, 0.6, 2.5) * eta,
        crack_halfwidth_log_sd=float(rng.uniform(0.2, 0.8)),
        crack_max_width_um=(1.0 if hairline else float(rng.uniform(3.0, 9.0))) * eta,
        join_probability=1.0 if network else float(rng.uniform(0.3, 0.9)),
        branch_probability=0.9 if network else float(rng.uniform(0.3, 0.8)),
        star_probability=1.0 if network else float(rng.uniform(0.5, 1.0)),
        void_fraction=float(rng.uniform(0.1, 0.5)),
        crack_length_log_sd=float(rng.uniform(0.5, 1.0)),
        image_cv=0.0,
    )
    return cond, opt, s, porous_p, {"hairline": bool(hairline), "network": bool(network)}


def make_training_pair(
    seed: int | Sequence[int],
    *,
    family: str,
    shape_lr: tuple[int, int] = (234, 312),
    geometry: str = "random",
) -> TrainingPair:
    """One style-randomised training pair (see the module docstring).

    Parameters
    ----------
    seed : non-negative int or ints; same (seed, family, geometry), same pair.
    family : a key of :data:`.style.FAMILIES` (:data:`FAMILIES_TRAIN`,
        :data:`FAMILIES_HELD_OUT`).
    shape_lr : (h, w) of the low-resolution image, multiples of 13; hr is (h, w)·35/13.
    geometry : one of :data:`GEOMETRIES`.

    Returns
    -------
    TrainingPair
        ``params``: seed, family, geometry, shape_lr, shape_hr, r10_um, r50_um, r90_um,
        r_scale, hairline, network, porous_core_probability, n_porous_cores, condition
        targets (porosity, crack_intensity_per_um2, radial_kappa), options (SynthOptions
        without ``render``), style (:class:`~.style.Style` as a dict), n_particles,
        particle_px, crack_px, porosity_true (crack px / particle px, cores included).
    """
    seeds = _seed_list(seed)
    h, w = _validate_shape(shape_lr)
    if family not in FAMILIES:
        raise InputError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    if geometry not in GEOMETRIES:
        raise InputError(f"geometry must be one of {list(GEOMETRIES)}, got {geometry!r}")
    eta = ETA_UM
    H, W = hr_shape((h, w))
    grng = np.random.default_rng(seeds + [0, zlib.crc32(geometry.encode())])
    cond, opt, r_scale, porous_p, flags = _draw_geometry(grng, geometry, eta)
    r10, r50, r90 = (r_scale * r for r in R_PERCENTILES_UM)
    sec = generate_section(
        cond, rng=grng, shape_hr=(H, W), pixel_size_hr_um=eta, r10_um=r10, r50_um=r50,
        r90_um=r90, options=opt,
    )
    phase, n_cores = sec.phase, 0
    if porous_p > 0:
        phase, n_cores = add_porous_cores(
            grng, phase, sec.labels, sec.reldist, pixel_um=eta, particle_probability=porous_p
        )
    srng = np.random.default_rng(seeds + [1, zlib.crc32(family.encode())])
    style = sample_style(srng, family)
    scene = style_scene(
        srng, phase=phase, labels=sec.labels, grains=sec.grains, seeds=sec.seeds,
        grain_spacing_px=sec.grain_spacing_px, pixel_um=eta, style=style,
    )
    hr = acquire(srng, scene, style=style, out_shape=(H, W), scene_pixel_um=eta)
    lr = acquire(srng, scene, style=style, out_shape=(h, w), scene_pixel_um=eta)
    particle_px = int(np.count_nonzero(phase))
    crack_px = int(np.count_nonzero(phase == 2))
    options = dataclasses.asdict(opt)
    options.pop("render")
    params = {
        "seed": seeds[0] if np.isscalar(seed) else seeds,
        "family": family,
        "geometry": geometry,
        "shape_lr": (h, w),
        "shape_hr": (H, W),
        "r10_um": r10,
        "r50_um": r50,
        "r90_um": r90,
        "r_scale": r_scale,
        **flags,
        "porous_core_probability": porous_p,
        "n_porous_cores": n_cores,
        "porosity_target": cond.porosity,
        "crack_intensity_target_per_um2": cond.crack_intensity_per_um2,
        "radial_kappa": cond.radial_kappa,
        "options": options,
        "style": dataclasses.asdict(style),
        "n_particles": len(sec.sections),
        "particle_px": particle_px,
        "crack_px": crack_px,
        "porosity_true": crack_px / max(particle_px, 1),
    }
    return TrainingPair(
        lr=lr, hr=hr, phase=phase, particles=sec.labels.astype(np.uint32), family=family, pixel_size_hr_um=eta,
        pixel_size_lr_um=eta * SR_NUM / SR_DEN, params=params,
    )


def families_figure(
    path: str | Path,
    *,
    seed: int = 4,
    shape_lr: tuple[int, int] = (156, 208),
    geometry: str = "random",
    dpi: int = 72,
) -> Path:
    """Write a PNG grid: the hr image of one section in every family, and its phase truth.

    Run ``python -m cathodeflow.synth.training [PATH]`` (default ``docs/style_families.png``).
    The same ``seed`` gives the same section in every family.

    Returns
    -------
    Path of the written file.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .figure import save_figure

    names = list(FAMILIES)
    pairs = [make_training_pair(seed, family=f, shape_lr=shape_lr, geometry=geometry)
             for f in names]
    n = len(names) + 1
    cols = 3
    rows = -(-n // cols)
    H, W = pairs[0].hr.shape
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.3, rows * 3.3 * H / W + 0.5))
    phase_rgb = np.array([[0.0, 0.0, 0.0], [0.55, 0.55, 0.55], [1.0, 0.85, 0.1]])[pairs[0].phase]
    for ax, k in zip(axes.ravel(), range(rows * cols)):
        ax.set_xticks([])
        ax.set_yticks([])
        if k < len(names):
            held = " (held out)" if names[k] in FAMILIES_HELD_OUT else ""
            ax.imshow(pairs[k].hr, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
            ax.set_title(names[k] + held, fontsize=9)
        elif k == len(names):
            ax.imshow(phase_rgb, interpolation="nearest")
            ax.set_title("phase truth: bg / solid / crack", fontsize=9)
        else:
            ax.axis("off")
    p = pairs[0].params
    fig.suptitle(
        f"style families, hr 14.3 nm/px, {W * ETA_UM:.1f} × {H * ETA_UM:.1f} µm, "
        f"r50 = {p['r50_um']:.2f} µm (seed {seed}, geometry {geometry})",
        fontsize=10,
    )
    return save_figure(fig, path, dpi=dpi)


if __name__ == "__main__":  # pragma: no cover
    print(families_figure(sys.argv[1] if len(sys.argv) > 1 else "docs/style_families.png"))
