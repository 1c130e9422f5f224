"""Randomised SEM styles: named families of microscopes and sample preparations.

A U-net trained on one renderer learns that renderer. A :class:`Style` holds everything that
changes the look of a rendered section (the scene's grey levels and textures of
:class:`~.render.RenderParams`, the optics and noise of both acquisitions, and the effects
below); :func:`sample_style` draws one from a named *family*, a distinct kind of microscope
or sample preparation with wide, independent uniform ranges for every knob (:data:`FAMILIES`;
the ranges of a knob a family does not name are those of ``classic``).

=============  ==================================================================================
family         what sets it apart (everything else as ``classic``)
=============  ==================================================================================
classic        today's :class:`~.render.RenderParams` ± jitter: bright solid (0.50–0.66 of full
               scale), binder at 0.25–0.42 of the solid's level, dark cracks (0.10–0.50 of the
               way from black to the binder's mean level), SE edge rims, shot noise 0.02–0.05.
channelling    BSE-like: strong grain-to-grain grey differences inside particles (grain σ
               0.09–0.17, gradients, particle offsets), weak or no edge rims.
charging       charging of the particles: wide bright glow around particles, slow bright blobs,
               bright tails along the scan direction behind particles, strong edge rims.
curtain        FIB-polished face: vertical curtain streaks (0.015–0.08 µm wide, 0.8–4 µm long,
               σ 0.04–0.12), strong scan-line offsets, detector shading and relief.
lowcontrast    low dose, low contrast: solid 0.30–0.44, binder 0.75–0.92 of the solid's level,
               shot noise 0.08–0.14 (lr ×1.0–1.4) plus read noise 0.02–0.05, weak rims
               and pores.
bright-binder  carbon-binder almost as bright as the solid (0.62–0.85 of its level), strongly
               textured, its pores dark; cracks stay dark; shot noise 0.015–0.04.
filled-cracks  cracks partly filled (resin/redeposition): crack grey 0.55–0.80 of the way from
               black to the binder's mean level, weaker rims.
soft           strong probe blur (PSF σ 0.028–0.055 µm, 2–4 hr px), low noise.
=============  ==================================================================================

Effects beyond :func:`~.render.render_scene` (all on the high-resolution scene, so the hr and lr
images of one pair share them; each draws random numbers only when its gain is not 0):

* relief: directional edge highlight/shadow of a side-mounted SE detector, ``relief_gain`` ×
  the normalised derivative of the blurred solid mask along a random direction.
* charging: ``charge_glow_gain`` × the solid mask blurred over ``charge_glow_um``;
  ``charge_blob_gain`` × max(f − 1, 0) for a unit Gaussian field f of correlation
  ``charge_blob_um``; ``charge_tail_gain`` × (causal exponential smoothing of the solid mask
  along each scan line, decay ``charge_tail_um``, minus the mask): a bright streak behind
  every particle in the scan direction (a negative gain would make dark streaks).
* curtain: ``curtain_sd`` × a unit field correlated over ``curtain_width_um`` across and
  ``curtain_length_um`` along the columns, times a slowly varying envelope in [0.25, 1].
* shading: the scene is multiplied by 1 + ``shading_sd``·(g_y·(y/H − ½) + g_x·(x/W − ½))
  − 2·``vignetting``·((y/H − ½)² + (x/W − ½)²), g ~ N(0, 1).

Noise is Poisson–Gaussian: shot noise σ = noise·sqrt(signal/0.5) and read noise (see
:func:`~.render.microscope`), then per-scan-line offsets and uint8 quantisation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy import ndimage as ndi
from scipy.signal import lfilter

from ..errors import InputError
from .render import RenderParams, _interp_matrix, _smooth_noise, microscope, render_scene


@dataclass(frozen=True)
class Style:
    """Everything that changes the look of a rendered section.

    ``Style()`` is the look of :func:`~.study.generate_image` (default
    :class:`~.render.RenderParams`, no extra effect).

    Attributes
    ----------
    family : name of the family it was drawn from (``'default'`` for ``Style()``).
    render : scene grey levels, textures, rims, crack level and both acquisitions' PSF, shot
        and scan-line noise (:class:`~.render.RenderParams`).
    read_noise_hr, read_noise_lr : signal-independent detector noise σ, fraction of full scale.
    relief_gain, relief_um : directional SE-detector edge contrast and its edge width (µm).
    charge_glow_gain, charge_glow_um : glow around particles and its reach (µm).
    charge_blob_gain, charge_blob_um : slow bright blobs and their size (µm).
    charge_tail_gain, charge_tail_um : streak behind particles along the scan lines (signed
        gain) and its decay length (µm).
    curtain_sd, curtain_width_um, curtain_length_um : vertical FIB curtain streaks.
    shading_sd, vignetting : multiplicative detector shading (linear ramp, corner fall-off).
    """

    family: str = "default"
    render: RenderParams = field(default_factory=RenderParams)
    read_noise_hr: float = 0.0
    read_noise_lr: float = 0.0
    relief_gain: float = 0.0
    relief_um: float = 0.05
    charge_glow_gain: float = 0.0
    charge_glow_um: float = 0.3
    charge_blob_gain: float = 0.0
    charge_blob_um: float = 1.5
    charge_tail_gain: float = 0.0
    charge_tail_um: float = 0.5
    curtain_sd: float = 0.0
    curtain_width_um: float = 0.04
    curtain_length_um: float = 2.0
    shading_sd: float = 0.0
    vignetting: float = 0.0

    @property
    def binder_mean_level(self) -> float:
        """Expected binder grey level: ``background_level`` darkened by its two pore fields,
        (1 − nanopore_fraction·nanopore_darkening)·(1 − pore_fraction·pore_darkening)."""
        p = self.render
        return (
            p.background_level
            * (1.0 - p.nanopore_fraction * p.nanopore_darkening)
            * (1.0 - p.pore_fraction * p.pore_darkening)
        )

    @property
    def crack_fill(self) -> float:
        """Crack grey level as a fraction of the way from black (0) to the binder's mean
        level (:attr:`binder_mean_level`); ``RenderParams()`` has ≈ 0.49."""
        return self.render.crack_level / max(self.binder_mean_level, 1e-12)

    @property
    def binder_ratio(self) -> float:
        """Binder level / solid level (1 = binder as bright as the solid)."""
        return self.render.background_level / max(self.render.solid_level, 1e-12)


@dataclass(frozen=True)
class Family:
    """A named kind of microscope/sample preparation.

    Attributes
    ----------
    description : one line.
    ranges : knob → (low, high) of a uniform draw, overriding ``classic``'s range.
    """

    description: str
    ranges: Mapping[str, tuple[float, float]]


#: Knob ranges of ``classic`` (and of every knob another family does not name). Levels are
#: fractions of full scale, lengths µm; ``*_factor`` knobs are low-res / high-res ratios.
_CLASSIC: dict[str, tuple[float, float]] = {
    "solid_level": (0.50, 0.66),
    "binder_ratio": (0.25, 0.42),  # background_level = binder_ratio · solid_level
    "crack_fill": (0.10, 0.50),  # crack_level = crack_fill · Style.binder_mean_level
    "grain_sd": (0.025, 0.06),
    "grain_gradient_sd": (0.015, 0.05),
    "particle_sd": (0.015, 0.05),
    "rim_gain": (0.35, 0.80),
    "rim_sigma_um": (0.03, 0.06),
    "halo_gain": (0.04, 0.14),
    "seam_darkening": (0.08, 0.20),
    "binder_fine_rel": (0.15, 0.35),  # background_fine_sd = rel · background_level
    "background_fine_um": (0.015, 0.03),
    "binder_mid_rel": (0.08, 0.22),
    "background_mid_um": (0.08, 0.20),
    "nanopore_fraction": (0.15, 0.40),
    "nanopore_darkening": (0.30, 0.55),
    "pore_fraction": (0.12, 0.30),
    "pore_um": (0.20, 0.40),
    "pore_darkening": (0.60, 0.85),
    "illumination_sd": (0.0, 0.03),
    "shading_sd": (0.0, 0.03),
    "vignetting": (0.0, 0.03),
    "relief_gain": (0.0, 0.03),
    "relief_um": (0.03, 0.08),
    "charge_glow_gain": (0.0, 0.0),
    "charge_glow_um": (0.15, 0.6),
    "charge_blob_gain": (0.0, 0.0),
    "charge_blob_um": (0.8, 2.5),
    "charge_tail_gain": (0.0, 0.0),
    "charge_tail_um": (0.2, 1.0),
    "curtain_sd": (0.0, 0.0),
    "curtain_width_um": (0.015, 0.08),
    "curtain_length_um": (0.8, 4.0),
    "psf_hr_um": (0.008, 0.016),
    "psf_lr_factor": (2.5, 3.5),
    "noise_hr": (0.02, 0.05),
    "noise_lr_factor": (1.4, 2.0),
    "read_noise_hr": (0.0, 0.01),
    "read_noise_lr_factor": (1.0, 2.0),
    "line_noise_hr": (0.002, 0.01),
    "line_noise_lr_factor": (1.5, 2.5),
    "gain_lr": (0.90, 1.0),
    "offset_lr": (0.0, 0.03),
}

#: The style families (see the module docstring's table).
FAMILIES: dict[str, Family] = {
    "classic": Family("close to RenderParams(), every knob jittered", {}),
    "channelling": Family(
        "strong grain-to-grain contrast inside particles, weak edge rims",
        {
            "solid_level": (0.45, 0.62),
            "binder_ratio": (0.15, 0.35),
            "grain_sd": (0.09, 0.17),
            "grain_gradient_sd": (0.03, 0.08),
            "particle_sd": (0.03, 0.08),
            "rim_gain": (0.0, 0.25),
            "halo_gain": (0.0, 0.05),
        },
    ),
    "charging": Family(
        "glow around particles, bright blobs, scan-direction tails, strong rims",
        {
            "solid_level": (0.50, 0.70),
            "rim_gain": (0.6, 1.2),
            "halo_gain": (0.10, 0.25),
            "charge_glow_gain": (0.08, 0.30),
            "charge_blob_gain": (0.05, 0.20),
            "charge_tail_gain": (0.06, 0.30),
        },
    ),
    "curtain": Family(
        "vertical FIB curtain streaks, scan-line offsets, shading and relief",
        {
            "curtain_sd": (0.04, 0.12),
            "line_noise_hr": (0.01, 0.035),
            "shading_sd": (0.02, 0.08),
            "relief_gain": (0.02, 0.08),
        },
    ),
    "lowcontrast": Family(
        "solid only slightly brighter than binder, low dose: high shot and read noise",
        {
            "solid_level": (0.30, 0.44),
            "binder_ratio": (0.75, 0.92),
            "crack_fill": (0.0, 0.45),
            "grain_sd": (0.01, 0.04),
            "rim_gain": (0.05, 0.30),
            "halo_gain": (0.0, 0.05),
            "binder_fine_rel": (0.05, 0.20),
            "nanopore_darkening": (0.15, 0.35),
            "pore_darkening": (0.30, 0.50),
            "noise_hr": (0.08, 0.14),
            "noise_lr_factor": (1.0, 1.4),
            "read_noise_hr": (0.02, 0.05),
            "line_noise_hr": (0.004, 0.015),
        },
    ),
    "bright-binder": Family(
        "textured binder almost as bright as the solid, dark binder pores and cracks",
        {
            "solid_level": (0.55, 0.72),
            "binder_ratio": (0.62, 0.85),
            "crack_fill": (0.0, 0.30),
            "rim_gain": (0.2, 0.6),
            "binder_fine_rel": (0.20, 0.40),
            "binder_mid_rel": (0.10, 0.30),
            "nanopore_fraction": (0.10, 0.30),
            "pore_fraction": (0.05, 0.20),
            "noise_hr": (0.015, 0.04),
        },
    ),
    "filled-cracks": Family(
        "cracks partly filled: dark grey, 0.55-0.8 of the way to the binder level",
        {"crack_fill": (0.55, 0.80), "rim_gain": (0.10, 0.45)},
    ),
    "soft": Family(
        "strong probe blur, low noise",
        {
            "psf_hr_um": (0.028, 0.055),
            "psf_lr_factor": (1.6, 2.4),
            "noise_hr": (0.005, 0.02),
            "read_noise_hr": (0.0, 0.005),
            "line_noise_hr": (0.0, 0.004),
            "rim_gain": (0.3, 0.7),
        },
    ),
}


def _knobs(rng: np.random.Generator, family: str) -> dict[str, float]:
    if family not in FAMILIES:
        raise InputError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    ranges = {**_CLASSIC, **FAMILIES[family].ranges}
    return {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in sorted(ranges.items())}


def sample_style(rng: np.random.Generator, family: str) -> Style:
    """Draw a :class:`Style` of ``family`` (a key of :data:`FAMILIES`).

    Every knob is uniform on its family's range, independently, one draw per knob in sorted
    knob order: the same generator state gives every family the same uniform variates, so
    two families drawn with the same seed differ only in the knobs whose ranges differ.
    """
    k = _knobs(rng, family)
    solid = k["solid_level"]
    bg = k["binder_ratio"] * solid
    dark = (1.0 - k["nanopore_fraction"] * k["nanopore_darkening"]) * (
        1.0 - k["pore_fraction"] * k["pore_darkening"]
    )
    render = RenderParams(
        solid_level=solid,
        grain_sd=k["grain_sd"],
        grain_gradient_sd=k["grain_gradient_sd"],
        particle_sd=k["particle_sd"],
        rim_gain=k["rim_gain"],
        rim_sigma_um=k["rim_sigma_um"],
        halo_gain=k["halo_gain"],
        seam_darkening=k["seam_darkening"],
        crack_level=k["crack_fill"] * bg * dark,
        background_level=bg,
        background_fine_sd=k["binder_fine_rel"] * bg,
        background_fine_um=k["background_fine_um"],
        background_mid_sd=k["binder_mid_rel"] * bg,
        background_mid_um=k["background_mid_um"],
        nanopore_fraction=k["nanopore_fraction"],
        nanopore_darkening=k["nanopore_darkening"],
        pore_fraction=k["pore_fraction"],
        pore_um=k["pore_um"],
        pore_darkening=k["pore_darkening"],
        illumination_sd=k["illumination_sd"],
        psf_hr_um=k["psf_hr_um"],
        noise_hr=k["noise_hr"],
        line_noise_hr=k["line_noise_hr"],
        psf_lr_um=k["psf_hr_um"] * k["psf_lr_factor"],
        noise_lr=k["noise_hr"] * k["noise_lr_factor"],
        line_noise_lr=k["line_noise_hr"] * k["line_noise_lr_factor"],
        gain_lr=k["gain_lr"],
        offset_lr=k["offset_lr"],
    )
    extra = {f.name: k[f.name] for f in dataclasses.fields(Style) if f.name in k}
    return Style(
        family=family,
        render=render,
        read_noise_lr=k["read_noise_hr"] * k["read_noise_lr_factor"],
        **extra,
    )


# --------------------------------------------------------------------------- effects
def _wide_blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of σ = ``sigma_px``; for σ > 8 on a grid ⌊σ/4⌋ times coarser (box
    means), interpolated back linearly. (H, W) float32."""
    k = int(sigma_px // 4)
    if k <= 1:
        return ndi.gaussian_filter(img, sigma_px, truncate=3)
    H, W = img.shape
    Hc, Wc = -(-H // k), -(-W // k)
    pad = np.pad(img, ((0, Hc * k - H), (0, Wc * k - W)), mode="edge")
    c = ndi.gaussian_filter(pad.reshape(Hc, k, Wc, k).mean(axis=(1, 3)), sigma_px / k, truncate=3)
    return (_interp_matrix(H, Hc) @ c @ _interp_matrix(W, Wc).T).astype(np.float32)


def _streaks(rng: np.random.Generator, shape, width_px: float, length_px: float) -> np.ndarray:
    """Unit-variance field correlated over ``width_px`` across and ``length_px`` along the
    columns (vertical streaks), float32 (H, W)."""
    H, W = shape
    k = max(1, int(length_px // 4))
    small = (-(-H // k), W)
    f = ndi.gaussian_filter(
        rng.standard_normal(small, dtype=np.float32), (length_px / k, max(width_px, 0.5)),
        mode="wrap", truncate=3,
    )
    f = (f - f.mean()) / max(float(f.std()), 1e-12)
    return (_interp_matrix(H, small[0]) @ f).astype(np.float32)


def style_scene(
    rng: np.random.Generator,
    *,
    phase: np.ndarray,
    labels: np.ndarray,
    grains: np.ndarray,
    seeds: np.ndarray,
    grain_spacing_px: float,
    pixel_um: float,
    style: Style,
) -> np.ndarray:
    """Noise-free scene of ``style`` on the high-resolution grid, float32 (H, W).

    :func:`~.render.render_scene` with ``style.render``, then relief, charging, curtain and
    shading (module docstring), in that order. Parameters as :func:`~.render.render_scene`.
    """
    s = style
    img = render_scene(
        rng, phase=phase, labels=labels, grains=grains, seeds=seeds,
        grain_spacing_px=grain_spacing_px, pixel_um=pixel_um, params=s.render,
    )
    H, W = phase.shape
    solid = (phase == 1).astype(np.float32)
    if s.relief_gain:
        sig = s.relief_um / pixel_um
        th = rng.uniform(0, 2 * np.pi)
        d = np.cos(th) * ndi.gaussian_filter(solid, sig, order=(0, 1), truncate=3)
        d += np.sin(th) * ndi.gaussian_filter(solid, sig, order=(1, 0), truncate=3)
        img += np.float32(s.relief_gain * sig * np.sqrt(2 * np.pi)) * d
    if s.charge_glow_gain:
        img += np.float32(s.charge_glow_gain) * _wide_blur(solid, s.charge_glow_um / pixel_um)
    if s.charge_blob_gain:
        f = _smooth_noise(rng, (H, W), s.charge_blob_um / pixel_um)
        img += np.float32(s.charge_blob_gain) * np.maximum(f - 1.0, 0.0)
    if s.charge_tail_gain:
        a = float(np.exp(-pixel_um / s.charge_tail_um))
        tail = lfilter([1.0 - a], [1.0, -a], solid, axis=1).astype(np.float32)
        img += np.float32(s.charge_tail_gain) * np.maximum(tail - solid, 0.0)
    if s.curtain_sd:
        f = _streaks(rng, (H, W), s.curtain_width_um / pixel_um, s.curtain_length_um / pixel_um)
        env = _smooth_noise(rng, (H, W), 2.0 * s.curtain_length_um / pixel_um)
        env = 0.25 + 0.75 / (1.0 + np.exp(-2.0 * env))
        img += np.float32(s.curtain_sd) * f * env.astype(np.float32)
    if s.shading_sd or s.vignetting:
        gy, gx = (float(v) for v in rng.normal(0, 1, 2))
        yy = (np.arange(H, dtype=np.float32) / H - 0.5)[:, None]
        xx = (np.arange(W, dtype=np.float32) / W - 0.5)[None, :]
        img *= 1 + s.shading_sd * (gy * yy + gx * xx) - 2 * s.vignetting * (yy**2 + xx**2)
    return img


def acquire(
    rng: np.random.Generator,
    scene: np.ndarray,
    *,
    style: Style,
    out_shape: tuple[int, int],
    scene_pixel_um: float,
) -> np.ndarray:
    """Image ``scene`` (from :func:`style_scene`) at ``out_shape`` over the same field.

    The high-resolution acquisition of ``style`` (``psf_hr_um``, ``noise_hr``,
    ``read_noise_hr``, ``line_noise_hr``) when ``out_shape`` is the scene's grid, the
    low-resolution one (``*_lr``, with ``gain_lr``/``offset_lr``) otherwise.
    Returns (h, w) uint8.
    """
    p = style.render
    if tuple(out_shape) == scene.shape:
        return microscope(
            rng, scene, out_shape=scene.shape, scene_pixel_um=scene_pixel_um,
            psf_um=p.psf_hr_um, noise=p.noise_hr, line_noise=p.line_noise_hr,
            read_noise=style.read_noise_hr,
        )
    return microscope(
        rng, scene, out_shape=tuple(out_shape), scene_pixel_um=scene_pixel_um,
        psf_um=p.psf_lr_um, noise=p.noise_lr, line_noise=p.line_noise_lr, gain=p.gain_lr,
        offset=p.offset_lr, read_noise=style.read_noise_lr,
    )


def render_style(
    rng: np.random.Generator,
    *,
    phase: np.ndarray,
    labels: np.ndarray,
    grains: np.ndarray,
    seeds: np.ndarray,
    grain_spacing_px: float,
    pixel_um: float,
    style: Style,
    out_shape: tuple[int, int],
) -> np.ndarray:
    """One SEM image of a section in ``style``: :func:`style_scene` then :func:`acquire`.

    Parameters
    ----------
    phase : (H, W) uint8 — 0 background, 1 solid, 2 crack.
    labels : (H, W) int — particle labels; grains : (H, W) int — grain of every particle
        pixel; seeds : (m, 2) float — grain seeds (px); grain_spacing_px : grain spacing.
    pixel_um : pixel size of the (H, W) grid, µm.
    out_shape : (H, W) for the high-resolution acquisition, a coarser (h, w) for the
        low-resolution one.

    Returns
    -------
    (h, w) uint8. To image one scene at both resolutions, call :func:`style_scene` once
    and :func:`acquire` twice.
    """
    scene = style_scene(
        rng, phase=phase, labels=labels, grains=grains, seeds=seeds,
        grain_spacing_px=grain_spacing_px, pixel_um=pixel_um, style=style,
    )
    return acquire(rng, scene, style=style, out_shape=out_shape, scene_pixel_um=pixel_um)
