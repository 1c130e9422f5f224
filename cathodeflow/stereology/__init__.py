"""Stereology: local particle porosity from planar sections (paper §2.5, eq. 23–40).

- :mod:`.lognormal` — log-normal fit to volume-weighted radius percentiles (eq. 31–32) and the
  number-weighted radius law f_R (eq. 33).
- :mod:`.densities` — f(r̃ | r), joint, marginal and conditional densities (eq. 24–27) for the
  models ``"paper"`` and ``"wicksell"`` (DESIGN §4.4 item 11).
- :mod:`.dcenter` — d_center (eq. 30/36) by quadrature and as a lookup table.
- :mod:`.local_porosity` — per-bin crack/solid counts and the local porosity table (eq. 34–40).

This package never touches whole images: ``measure/`` applies the table per particle crop.
"""

from .dcenter import DCenterTable, d_center
from .densities import (
    MODELS,
    joint_density,
    section_given_sphere_density,
    section_radius_density,
    sphere_given_section_density,
)
from .local_porosity import (
    local_porosity_counts,
    local_porosity_table,
    particle_local_counts,
    particle_local_counts_models,
    validate_bins,
)
from .lognormal import LogNormal, fit_lognormal_percentiles, radius_distributions

__all__ = [
    "MODELS",
    "DCenterTable",
    "LogNormal",
    "d_center",
    "fit_lognormal_percentiles",
    "joint_density",
    "local_porosity_counts",
    "local_porosity_table",
    "particle_local_counts",
    "particle_local_counts_models",
    "radius_distributions",
    "section_given_sphere_density",
    "section_radius_density",
    "sphere_given_section_density",
    "validate_bins",
]
