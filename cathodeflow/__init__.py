"""cathodeflow: crack and particle statistics from SEM cross-sections of Li-ion cathodes.

Implements Furat et al. (2023), "Quantifying the impact of operating temperature on
cracking in battery electrodes, using super-resolution of microscopy images and stereology":
super-resolution → phase segmentation (eq. 1, 7) → crack-wise (eq. 2) and particle-wise
(eq. 8–10) segmentation → descriptors (eq. 11–22) → local porosity by stereology (eq. 23–40).

Importing this package does not import TensorFlow or Keras.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cathodeflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "describe"]


def __getattr__(name):
    # Lazy: keeps `import cathodeflow` light (no dask.distributed, no matplotlib).
    if name == "describe":
        from .study.describe import describe

        return describe
    raise AttributeError(name)
