"""Log-normal particle-radius model of §2.5.2 (eq. 31–33), for the synthetic generator.

The manufacturer gives percentiles of the *volume-weighted* radius distribution f_V. A
log-normal f(r; μ, σ) (eq. 31) is fitted to them by least squares on the percentiles
(eq. 32); the number-weighted density f_R ∝ f_V / r³ (eq. 33) of a log-normal is again
log-normal, with the same σ and μ_N = μ − 3σ². A plane that cuts a packing of spheres hits a
sphere with probability ∝ r, so the radii of the *cut* spheres are log-normal with
μ_N + σ² = μ − 2σ² (used by the tests).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ndtri

from ..errors import InputError

#: Number-weighted quantile at which sampled radii are truncated (keeps the packing box
#: finite; the truncated mass, 1e-4, is invisible to any test on a few thousand radii).
TRUNCATION_QUANTILE = 0.9999


@lru_cache(maxsize=64)
def fit_lognormal_percentiles(
    r10_um: float, r50_um: float, r90_um: float
) -> tuple[float, float]:
    """Fit (μ, σ) of eq. 31 to three percentiles by least squares (eq. 32).

    Parameters
    ----------
    r10_um, r50_um, r90_um : float
        10 %, 50 % and 90 % percentiles of the (volume-weighted) radius distribution, µm.

    Returns
    -------
    mu, sigma : float
        Parameters of the log-normal (of log r, r in µm). For the paper's 3.55/4.65/6.05 µm
        this gives μ ≈ 1.535, σ ≈ 0.208 (the paper reports 1.53, 0.208).
    """
    r = np.array([r10_um, r50_um, r90_um], dtype=float)
    if not (np.all(np.isfinite(r)) and 0 < r[0] < r[1] < r[2]):
        raise InputError(
            "radius percentiles must satisfy 0 < r10_um < r50_um < r90_um, got "
            f"{r10_um}, {r50_um}, {r90_um}"
        )
    from scipy.optimize import least_squares  # deferred: scipy.optimize is slow to import

    z = ndtri(np.array([0.1, 0.5, 0.9]))
    x0 = [np.log(r[1]), (np.log(r[2]) - np.log(r[0])) / (z[2] - z[0])]
    res = least_squares(lambda p: np.exp(p[0] + p[1] * z) - r, x0, bounds=([-np.inf, 1e-9], np.inf))
    return float(res.x[0]), float(res.x[1])


def number_weighted_mu(mu_v: float, sigma: float) -> float:
    """μ_N of the number-weighted log-normal f_R ∝ f_V/r³ (eq. 33): μ_N = μ_V − 3σ²."""
    return mu_v - 3.0 * sigma**2


def sample_radii(rng: np.random.Generator, n: int, mu_n: float, sigma: float) -> np.ndarray:
    """``n`` radii (µm) from the number-weighted log-normal LN(μ_N, σ), truncated at
    :data:`TRUNCATION_QUANTILE` by inverse-CDF sampling. Shape ``(n,)``, float64."""
    u = rng.uniform(0.0, TRUNCATION_QUANTILE, size=n)
    return np.exp(mu_n + sigma * ndtri(u))


def max_radius(mu_n: float, sigma: float) -> float:
    """The truncation radius of :func:`sample_radii`, in µm."""
    return float(np.exp(mu_n + sigma * ndtri(TRUNCATION_QUANTILE)))
