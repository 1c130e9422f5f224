"""Log-normal particle radius distribution fitted to volume-weighted percentiles (eq. 31–33).

The manufacturer gives the 10 %, 50 % and 90 % percentiles r10, r50, r90 of the
*volume-weighted* radius distribution (paper §2.5.2; DESIGN §4.4 item 9). We fit a log-normal
density f_V = f(·; μ, σ) (eq. 31) to them by least squares on the percentiles taken as radii
in µm (eq. 32), and derive the number-weighted density f_R = f_V/r³ / c (eq. 33). Because
f(r; μ, σ)·r⁻³ ∝ f(r; μ − 3σ², σ), f_R is again log-normal, with the same σ and μ − 3σ².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.special import ndtr, ndtri

from ..errors import InputError

__all__ = ["LogNormal", "fit_lognormal_percentiles", "radius_distributions"]


@dataclass(frozen=True)
class LogNormal:
    """Log-normal distribution of a radius, in µm (eq. 31).

    Attributes
    ----------
    mu : float
        Mean of log(r / 1 µm).
    sigma : float
        Standard deviation of log(r / 1 µm); > 0.
    """

    mu: float
    sigma: float

    def __post_init__(self):
        if not (math.isfinite(self.mu) and math.isfinite(self.sigma) and self.sigma > 0):
            raise InputError(
                f"log-normal parameters must be finite with sigma > 0, got mu={self.mu}, "
                f"sigma={self.sigma}"
            )
        object.__setattr__(self, "mu", float(self.mu))
        object.__setattr__(self, "sigma", float(self.sigma))

    def logpdf(self, r_um):
        """log f(r; μ, σ) of eq. 31, elementwise; −inf for r ≤ 0. ``r_um``: array, µm."""
        r = np.asarray(r_um, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(r)
            out = -((y - self.mu) ** 2) / (2 * self.sigma**2) - y - math.log(
                self.sigma * math.sqrt(2 * math.pi)
            )
        return np.where(r > 0, out, -np.inf)

    def pdf(self, r_um):
        """f(r; μ, σ) of eq. 31, elementwise, in µm⁻¹; 0 for r ≤ 0."""
        return np.exp(self.logpdf(r_um))

    def cdf(self, r_um):
        """P(R ≤ r), elementwise."""
        r = np.asarray(r_um, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (np.log(np.where(r > 0, r, 1.0)) - self.mu) / self.sigma
        return np.where(r > 0, ndtr(z), 0.0)

    def ppf(self, q):
        """Quantile z(α; μ, σ) for probability ``q`` = α/100 in (0, 1) (eq. 32), in µm."""
        return np.exp(self.mu + self.sigma * ndtri(np.asarray(q, dtype=float)))

    def moment(self, k: float) -> float:
        """E[R^k] = exp(kμ + k²σ²/2), in µm^k."""
        return math.exp(k * self.mu + 0.5 * (k * self.sigma) ** 2)

    def reweighted(self, k: float) -> "LogNormal":
        """The distribution with density ∝ r^k f(r; μ, σ): log-normal with μ + kσ².

        ``k = -3`` turns a volume-weighted density f_V into the number-weighted f_R of
        eq. 33; ``k = 3`` is the inverse (footnote 1 of the paper).
        """
        return LogNormal(self.mu + k * self.sigma**2, self.sigma)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent radii, µm."""
        return np.exp(self.mu + self.sigma * rng.standard_normal(n))


def fit_lognormal_percentiles(
    radii_um, *, percentiles=(10.0, 50.0, 90.0)
) -> LogNormal:
    """Least-squares log-normal fit to percentiles of a radius distribution (eq. 32).

    Solves ``argmin_{μ, σ>0} Σ_α (z(α; μ, σ) − r_α)²`` with z(α; μ, σ) = exp(μ + σ Φ⁻¹(α/100)),
    the residuals being radii in µm (DESIGN §4.4 item 9).

    Parameters
    ----------
    radii_um : sequence of float, shape (k,)
        Percentiles r_α of the radius distribution, µm, increasing. Paper (volume-weighted):
        (3.55, 4.65, 6.05), giving μ̂ = 1.53, σ̂ = 0.208.
    percentiles : sequence of float, shape (k,)
        The levels α in percent, in (0, 100), increasing. Default (10, 50, 90).

    Returns
    -------
    LogNormal
        The fitted distribution (for the paper's inputs: the volume-weighted f_V).
    """
    r = np.asarray(radii_um, dtype=float).ravel()
    a = np.asarray(percentiles, dtype=float).ravel()
    if r.size != a.size or r.size < 2:
        raise InputError(
            f"radii_um and percentiles must have the same length >= 2, got {r.size} and {a.size}"
        )
    if not (np.all(np.isfinite(r)) and np.all(r > 0) and np.all(np.diff(r) > 0)):
        raise InputError(f"radii_um must be positive and increasing, got {r.tolist()}")
    if not (np.all(a > 0) and np.all(a < 100) and np.all(np.diff(a) > 0)):
        raise InputError(f"percentiles must be increasing in (0, 100), got {a.tolist()}")
    z = ndtri(a / 100.0)
    # Start from the exact fit in log space (least squares on log radii).
    A = np.stack([np.ones_like(z), z], axis=1)
    (mu0, s0), *_ = np.linalg.lstsq(A, np.log(r), rcond=None)
    s0 = max(float(s0), 1e-3)
    sol = least_squares(
        lambda p: np.exp(p[0] + p[1] * z) - r,
        x0=[float(mu0), s0],
        bounds=([-np.inf, 1e-12], [np.inf, np.inf]),
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
    )
    return LogNormal(float(sol.x[0]), float(sol.x[1]))


def radius_distributions(r10_um: float, r50_um: float, r90_um: float) -> tuple[LogNormal, LogNormal]:
    """(f_V, f_R): the volume-weighted fit of eq. 32 and the number-weighted f_R of eq. 33."""
    f_v = fit_lognormal_percentiles((r10_um, r50_um, r90_um))
    return f_v, f_v.reweighted(-3)
