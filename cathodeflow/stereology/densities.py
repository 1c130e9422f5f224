"""Sphere radius given a planar section radius: densities of eq. 24–27, two models.

A sphere of radius r cut by a plane at a uniformly random height shows a disk of radius r̃
with density f(r̃ | r) = r̃ / (r √(r² − r̃²)) on 0 < r̃ < r (eq. 24). How the joint density
of (R, R̃) follows from it depends on which spheres are cut (DESIGN §4.4 item 11):

``"paper"``
    eq. 25 read literally: f(r, r̃) = f_R(r) f(r̃ | r) — every sphere is cut once, whatever
    its size.
``"wicksell"``
    a plane through a box of spheres hits a sphere with probability ∝ r (Wicksell's corpuscle
    problem), so f(r, r̃) = r f_R(r) f(r̃ | r) / E[R].

In both, the conditional density of eq. 26 is f(r | r̃) ∝ w(r) f_R(r) / √(r² − r̃²) on r > r̃
with w(r) = 1/r (paper) or w(r) = 1 (wicksell). The integrals over r have an integrable
singularity at r = r̃; all of them are computed after the substitution r = √(r̃² + u²), under
which dr / √(r² − r̃²) = du / r and the integrand is smooth in u ∈ [0, ∞) (see
:mod:`cathodeflow.stereology.dcenter`).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from .lognormal import LogNormal

__all__ = [
    "MODELS",
    "check_model",
    "section_given_sphere_density",
    "joint_density",
    "section_radius_density",
    "sphere_given_section_density",
]

#: Stereological models (DESIGN §4.4 item 11).
MODELS = ("paper", "wicksell")


def check_model(model: str) -> str:
    """Return ``model`` if it is one of :data:`MODELS`, else raise InputError."""
    if model not in MODELS:
        raise InputError(f"model must be one of {MODELS}, got {model!r}")
    return model


def section_given_sphere_density(r_tilde_um, r_um):
    """f(r̃ | r) of eq. 24, elementwise (broadcast), in µm⁻¹.

    r̃ / (r √(r² − r̃²)) for 0 < r̃ < r, else 0 (the value at r̃ = r is +inf in the limit; we
    return 0 there, a null set).
    """
    rt = np.asarray(r_tilde_um, dtype=float)
    r = np.asarray(r_um, dtype=float)
    inside = (rt > 0) & (rt < r)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = rt / (r * np.sqrt((r - rt) * (r + rt)))
    return np.where(inside, val, 0.0)


def joint_density(r_um, r_tilde_um, f_r: LogNormal, *, model: str = "paper"):
    """Joint density f_(R, R̃)(r, r̃) of eq. 25 (``"paper"``) or its Wicksell form, µm⁻².

    Parameters
    ----------
    r_um, r_tilde_um : array_like (broadcast)
        Sphere radius r and section radius r̃, µm.
    f_r : LogNormal
        Number-weighted sphere radius distribution f_R (eq. 33).
    model : {"paper", "wicksell"}
    """
    check_model(model)
    r = np.asarray(r_um, dtype=float)
    val = f_r.pdf(r) * section_given_sphere_density(r_tilde_um, r)
    if model == "wicksell":
        val = val * r / f_r.moment(1)
    return val


def _log_weight(r, f_r: LogNormal, model: str):
    """log of w(r) f_R(r) / r — the integrand of eq. 26–27 in the variable u (without r̃)."""
    lw = f_r.logpdf(r) - np.log(r)
    if model == "paper":
        lw = lw - np.log(r)
    else:
        lw = lw - math.log(f_r.moment(1))
    return lw


def section_radius_density(r_tilde_um, f_r: LogNormal, *, model: str = "paper", n_nodes=None):
    """Marginal density f_R̃(r̃) of eq. 27, elementwise over ``r_tilde_um``, µm⁻¹.

    f_R̃(r̃) = ∫ f_(R,R̃)(r, r̃) dr = r̃ ∫_0^∞ w(r) f_R(r) / r du with r = √(r̃² + u²).
    """
    from .dcenter import _quadrature  # local import: dcenter imports this module

    check_model(model)
    rt = np.atleast_1d(np.asarray(r_tilde_um, dtype=float))
    out = np.empty(rt.shape)
    for i, x in enumerate(rt.ravel()):
        if not x > 0:
            out.flat[i] = 0.0
            continue
        q = _quadrature(float(x), f_r, model, n_nodes=n_nodes)
        out.flat[i] = x * math.exp(q.log_norm)
    return out.reshape(np.shape(r_tilde_um)) if np.ndim(r_tilde_um) else float(out[0])


def sphere_given_section_density(r_um, r_tilde_um: float, f_r: LogNormal, *, model: str = "paper"):
    """Conditional density f_(R|R̃=r̃)(r) of eq. 26, elementwise over ``r_um``, µm⁻¹.

    ``r_tilde_um`` is a scalar > 0; the density is 0 for r ≤ r̃ and has an integrable
    singularity (r − r̃)^(−1/2) at r = r̃.
    """
    rt = float(r_tilde_um)
    if not rt > 0:
        raise InputError(f"r_tilde_um must be > 0, got {r_tilde_um}")
    r = np.asarray(r_um, dtype=float)
    joint = joint_density(r, rt, f_r, model=model)
    return joint / section_radius_density(rt, f_r, model=model)
