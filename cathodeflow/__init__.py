"""cathodeflow: crack and particle statistics from SEM cross-sections of Li-ion cathodes.

Implements Furat et al. (2023), "Quantifying the impact of operating temperature on
cracking in battery electrodes, using super-resolution of microscopy images and stereology":
super-resolution → phase segmentation (eq. 1, 7) → crack-wise (eq. 2) and particle-wise
(eq. 8–10) segmentation → descriptors (eq. 11–22) → local porosity by stereology (eq. 23–40).

Importing this package does not import TensorFlow, Keras, xarray or matplotlib;
``cathodeflow.describe`` and ``cathodeflow.open_study`` are loaded on first use.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

#: The version of a cathodeflow without package metadata (run from a source tree).
UNKNOWN_VERSION = "0.0.0+unknown"

try:
    __version__ = _version("cathodeflow")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = UNKNOWN_VERSION

__all__ = ["__version__", "describe", "open_study"]


def __getattr__(name):
    # Lazy: keeps `import cathodeflow` light (no xarray, dask.distributed, matplotlib).
    if name == "describe":
        from .study.describe import describe

        return describe
    if name == "open_study":
        from .report import accessor  # noqa: F401 - registers `.cathode` on xarray.DataTree
        from .study.open import open_study

        return open_study
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    # the lazy names too, so that `dir(cathodeflow)` and tab completion show them
    return sorted(set(globals()) | set(__all__))
