"""Synthetic SEM cross-sections of cycled NMC cathodes with exact ground truth.

3D packing of log-normal spheres → planar section → cracks (amount and radial position as
parameters) → SEM-like rendering at high resolution (η = 14.3 nm) and, through a wider PSF
and stronger noise, at low resolution (η·35/13 = 38.5 nm). See :mod:`.study`.
"""

from .lognormal import fit_lognormal_percentiles, number_weighted_mu
from .render import RenderParams
from .study import (
    CONDITIONS,
    DEFAULT_SHAPE_LR,
    PAPER_TABLE1,
    Condition,
    SynthOptions,
    SyntheticImage,
    generate_image,
    generate_study,
    hr_shape,
    pool_radial_truth,
    radial_porosity_truth,
    study_seed,
    study_summary,
)

__all__ = [
    "CONDITIONS",
    "DEFAULT_SHAPE_LR",
    "PAPER_TABLE1",
    "Condition",
    "RenderParams",
    "SynthOptions",
    "SyntheticImage",
    "fit_lognormal_percentiles",
    "generate_image",
    "generate_study",
    "hr_shape",
    "number_weighted_mu",
    "pool_radial_truth",
    "radial_porosity_truth",
    "study_seed",
    "study_summary",
]
