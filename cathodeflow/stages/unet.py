"""U-net phase segmentation stage: image → Ŷ (3-channel probabilities) → S (eq. 1, 7).

Paper §2.3.2: a U-net classifies every pixel of a super-resolved image as background, solid
or crack; its softmax output Ŷ is turned into a phase map by eq. 7 with a crack threshold t
(:func:`cathodeflow.stages.phases.phase_from_probabilities`). The network lives in
:mod:`cathodeflow.models`; this module is its numpy kernel per tile and the Dask glue.

Tiling (DESIGN §5). Output tiles of ``tile_px`` (a multiple of the network's down-sampling
factor m = 2^(depth−1)) are computed from windows that extend each tile by a halo P on every
side. P is the network's receptive-field radius (computed from the architecture, and checked
against a measurement in the tests) rounded up to a multiple of m, so

* every output pixel of a tile sees exactly the inputs it sees in a whole-image call, and
* every window starts at a multiple of m on the same grid as the whole-image call, so the
  max-pooling and up-sampling grids coincide.

Outside the image, windows are filled by symmetric reflection (numpy's ``'symmetric'``
padding, for any pad size), in the whole-image call and in the tiles alike, and the bottom/
right ends are padded the same way up to a multiple of m. Hence tiled == whole up to
floating-point summation order (tested within 1e-4 on Ŷ; the phase maps are identical).

Intensity normalisation uses one pair of global values (robust percentiles of a strided
sample of the whole image, :func:`cathodeflow.models.normalise.intensity_range`), so a tile
does not see a different contrast from the whole image.

Pixel size. A network is trained for one pixel size p_m (its weights record says which).
An image of pixel size p with |p/p_m − 1| > :data:`~.resample.RESAMPLE_TOLERANCE` is resampled
to p_m before inference (Gaussian anti-aliasing when shrinking, then linear interpolation;
:func:`~.resample.resample_dask`), and the probabilities and phase map are returned on the model's grid,
with pixel size p_m. Ratios outside :data:`MAX_PIXEL_RATIO` (either way) are refused unless
``force=True``: a network for 14.3 nm pixels says nothing reliable about a 0.1 µm X-ray slice
or a unit slip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..tiling.geometry import halo_from_support, round_up_to_multiple
from ..tiling.windows import lazy_window, read_window
from .resample import needs_resampling, resample_dask
from .superres import check_grey_image

#: Largest ratio p/p_m (or p_m/p) that is resampled without ``force``.
MAX_PIXEL_RATIO = 4.0
#: Default output tile edge (px): large tiles keep the halo's share of the work small.
DEFAULT_TILE_PX = 1024


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    """One output tile and the input window it is computed from (pixels of the image).

    ``[y0, y1) × [x0, x1)`` is the tile; the window is ``[y0 − halo, wy1) × [x0 − halo, wx1)``,
    where ``wy1 − (y0 − halo)`` is a multiple of the network's m (so ``wy1`` may exceed
    ``y1 + halo``: the extra rows are reflected image, as in the whole-image call).
    """

    y0: int
    y1: int
    x0: int
    x1: int
    halo: int
    wy1: int
    wx1: int

    @property
    def window(self) -> tuple[int, int, int, int]:
        return self.y0 - self.halo, self.wy1, self.x0 - self.halo, self.wx1


def tile_grid(shape: tuple[int, int], *, tile_px: int, halo: int, multiple: int) -> list[list[Tile]]:
    """Tiles of edge ``tile_px`` covering ``shape``, row by row, with their windows.

    ``tile_px`` and ``halo`` must be multiples of ``multiple``. A single tile covering the
    whole image is the whole-image call.
    """
    H, W = (int(v) for v in shape)
    if tile_px % multiple or halo % multiple:
        raise InputError(f"tile_px ({tile_px}) and halo ({halo}) must be multiples of {multiple}")

    def ends(o, stop):
        end = o + round_up_to_multiple(stop - o + 2 * halo, multiple) - halo
        return end

    rows = []
    for y0 in range(0, H, tile_px):
        y1 = min(H, y0 + tile_px)
        row = []
        for x0 in range(0, W, tile_px):
            x1 = min(W, x0 + tile_px)
            row.append(Tile(y0, y1, x0, x1, halo, ends(y0, y1), ends(x0, x1)))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# the network, loaded once per process
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UNetSetup:
    """What the stage needs to know about a weights file (plain values, cheap to ship to
    workers; the Keras model is loaded inside each worker process, once)."""

    weights: str  # registry name or path
    sha256: str
    architecture: dict
    pixel_size_um: float
    crack_threshold: float
    normalisation: dict
    halo: int
    multiple: int

    @classmethod
    def from_weights(cls, weights) -> "UNetSetup":
        from ..models.registry import resolve_weights, weights_location
        from ..models.unet import UNetConfig, receptive_field_radius

        rec = resolve_weights(weights)
        arch = {k: v for k, v in rec.architecture.items() if k != "kind"}
        cfg = UNetConfig.from_dict(arch)
        halo = halo_from_support(receptive_field_radius(cfg), multiple=cfg.multiple)
        return cls(
            weights=weights_location(weights), sha256=rec.sha256, architecture=dict(rec.architecture),
            pixel_size_um=float(rec.pixel_size_um), crack_threshold=float(rec.crack_threshold),
            normalisation=dict(rec.normalisation), halo=int(halo), multiple=int(cfg.multiple),
        )

    def provenance(self) -> dict:
        return {
            "method": "unet", "weights": self.weights, "weights_sha256": self.sha256,
            "architecture": self.architecture, "model_pixel_size_um": self.pixel_size_um,
            "normalisation": self.normalisation, "halo_px": self.halo,
        }


def _model(setup: UNetSetup):
    """The network of ``setup``, loaded once per process and compiled for inference."""
    from ..models.registry import load_unet
    from ..models.unet import compile_for_inference

    model, _ = load_unet(setup.weights, sha256=setup.sha256)  # the weights the run started with
    return compile_for_inference(model)


def same_shape_groups(arrays) -> list[list[int]]:
    """Indices of ``arrays`` grouped by shape (each group can go through a network as one
    batch), in order of first appearance."""
    by_shape: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        by_shape.setdefault(a.shape, []).append(i)
    return list(by_shape.values())


def _predict_windows(windows: list[np.ndarray], setup: UNetSetup, lo: float, hi: float,
                     crops: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """Numpy kernel: probabilities of each window, cropped to its tile. Windows of equal
    shape go through the network as one batch."""
    from ..models.normalise import normalise_image
    from ..models.unet import predict_tile

    model = _model(setup)
    out: list[np.ndarray | None] = [None] * len(windows)
    for idx in same_shape_groups(windows):
        batch = np.stack([normalise_image(windows[i], lo=lo, hi=hi) for i in idx])
        prob = predict_tile(model, batch)
        for k, i in enumerate(idx):
            a, b, c, d = crops[i]
            out[i] = np.ascontiguousarray(prob[k, a:b, c:d])
    return out


# ---------------------------------------------------------------------------------------------
# pixel size
# ---------------------------------------------------------------------------------------------
def check_pixel_size(pixel_size_um: float, model_pixel_um: float, *, force: bool = False,
                     name: str = "image") -> bool:
    """Whether an image of ``pixel_size_um`` must be resampled for a model of
    ``model_pixel_um``; refuses ratios beyond :data:`MAX_PIXEL_RATIO` unless ``force``."""
    p = float(pixel_size_um)
    if not (math.isfinite(p) and p > 0):
        raise InputError(f"{name}: pixel size must be a positive number of µm, got {pixel_size_um!r}")
    ratio = p / float(model_pixel_um)
    if not force and not (1 / MAX_PIXEL_RATIO <= ratio <= MAX_PIXEL_RATIO):
        raise InputError(
            f"{name}: pixel size {p:g} µm is {ratio:.3g}× the {model_pixel_um:g} µm the U-net was "
            f"trained for (accepted: {1 / MAX_PIXEL_RATIO:g}×–{MAX_PIXEL_RATIO:g}×); check the pixel "
            "size, use a model trained for it, or pass --force to resample anyway"
        )
    return needs_resampling(p, model_pixel_um)


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------
def _intensity_range(image, setup: UNetSetup) -> tuple[float, float]:
    from ..models.normalise import intensity_range

    q = setup.normalisation.get("q", (0.5, 99.5))
    return intensity_range(image, q=tuple(q))


def unet_probabilities(image: np.ndarray, *, weights=None, tile_px: int | None = None,
                       normalised: bool = False) -> np.ndarray:
    """Ŷ of a whole image in memory on the model's own grid (no resampling).

    Parameters
    ----------
    image : (H, W) numeric array
        Grey image at the model's pixel size (any size: padded by reflection, then cropped).
    weights : str, optional
        Registry name or path of U-net weights; default the shipped ones.
    tile_px : int, optional
        Tile edge; default one tile for the whole image.
    normalised : bool
        ``image`` is already normalised (as in training); skips the percentile scaling.

    Returns
    -------
    prob : (H, W, 3) float32, channels background, solid, crack (Ŷ(·, 1..3)).
    """
    check_grey_image(image)
    setup = UNetSetup.from_weights(_default(weights))
    image = np.asarray(image)
    lo, hi = (0.0, 1.0) if normalised else _intensity_range(image, setup)
    tile = max(image.shape) if tile_px is None else int(tile_px)
    grid = tile_grid(image.shape, tile_px=round_up_to_multiple(tile, setup.multiple),
                     halo=setup.halo, multiple=setup.multiple)
    out = np.empty(image.shape + (3,), np.float32)
    for row in grid:
        for t in row:
            (p,) = _predict_windows([read_window(image, t.window)], setup, lo, hi,
                                    [(t.halo, t.halo + t.y1 - t.y0, t.halo, t.halo + t.x1 - t.x0)])
            out[t.y0:t.y1, t.x0:t.x1] = p
    return out


def unet_probabilities_dask(image, *, setup: UNetSetup, tile_px: int = DEFAULT_TILE_PX,
                            batch: int = 1, intensity=None):
    """Ŷ of a (H, W) Dask array on the model's grid, tile by tile (lazy).

    Parameters
    ----------
    image : (H, W) Dask array at the model's pixel size.
    setup : :class:`UNetSetup` (from :meth:`UNetSetup.from_weights`).
    tile_px : output tile edge (px), rounded up to a multiple of m.
    batch : tiles of one row that go through the network together in one task.
    intensity : (lo, hi) normalisation values; default from the image (global, computed now).

    Returns
    -------
    prob : (H, W, 3) float32 Dask array, chunks = the tiles.
    """
    import dask
    import dask.array as da

    check_grey_image(image)
    if int(batch) < 1:
        raise InputError(f"batch must be >= 1, got {batch}")
    lo, hi = intensity if intensity is not None else _intensity_range(image, setup)
    grid = tile_grid(image.shape, tile_px=round_up_to_multiple(int(tile_px), setup.multiple),
                     halo=setup.halo, multiple=setup.multiple)
    rows = []
    for row in grid:
        blocks = []
        for k in range(0, len(row), int(batch)):
            group = row[k:k + int(batch)]
            wins = [lazy_window(image, t.window) for t in group]
            crops = [(t.halo, t.halo + t.y1 - t.y0, t.halo, t.halo + t.x1 - t.x0) for t in group]
            res = dask.delayed(_predict_windows, nout=len(group))(wins, setup, lo, hi, crops)
            for t, r in zip(group, res):
                blocks.append(da.from_delayed(r, shape=(t.y1 - t.y0, t.x1 - t.x0, 3), dtype=np.float32))
        rows.append(blocks)
    return da.concatenate([da.concatenate(r, axis=1) for r in rows], axis=0)


def _default(weights):
    if weights is None:
        from ..models.registry import DEFAULT_UNET

        return DEFAULT_UNET
    return weights


def min_crack_px(area_um2: float, pixel_size_um: float) -> int:
    """The largest crack component dropped, ``area_um2`` µm², in whole pixels of
    ``pixel_size_um`` (rounded down; a relative 1e-9 absorbs the rounding of µm² values
    that are whole pixels)."""
    return int(math.floor(float(area_um2) / float(pixel_size_um) ** 2 * (1 + 1e-9)))


def unet_stage_dask(image, *, pixel_size_um: float, weights=None, tile_px: int = DEFAULT_TILE_PX,
                    batch: int = 1, crack_threshold: float | None = None,
                    crack_threshold_low: float | None = None, prob_sigma_um: float | None = None,
                    min_crack_area_um2: float | None = None, force: bool = False, name: str = "image"):
    """The U-net stage on a (H, W) Dask array: resample if needed, then Ŷ (lazy).

    The phase map is eq. 7 of Ŷ with the thresholds the provenance names:
    ``phase_from_probabilities_dask(prob, prov["crack_threshold"],
    t_low=prov["crack_threshold_low"], sigma_px=prov["prob_sigma_px"],
    min_crack_px=prov["min_crack_px"])``
    (:mod:`cathodeflow.stages.phases`).

    Returns
    -------
    prob : (H', W', 3) float32 Dask array on the model's grid
    pixel_size_um : float, the grid's pixel size (the model's when resampled)
    provenance : dict (weights sha256, t (default: the weights' calibrated t), t_low (default
        :data:`cathodeflow.config.DEFAULT_CRACK_THRESHOLD_LOW`, capped at t), σ of the
        smoothing of Ŷ in µm and in output pixels (default
        :data:`cathodeflow.config.DEFAULT_PROB_SIGMA_UM`), the largest crack component
        dropped in µm² and in output pixels (default
        :data:`cathodeflow.config.DEFAULT_MIN_CRACK_AREA_UM2`), resampling, halo,
        normalisation values)
    """
    from ..config import DEFAULT_CRACK_THRESHOLD_LOW, DEFAULT_MIN_CRACK_AREA_UM2, DEFAULT_PROB_SIGMA_UM

    check_grey_image(image, name=name)
    setup = UNetSetup.from_weights(_default(weights))
    resample = check_pixel_size(pixel_size_um, setup.pixel_size_um, force=force, name=name)
    src_shape = tuple(image.shape)
    # from the image as given: sampling the resampled image would compute every resampled
    # tile once more (the percentiles of a smooth resampling differ little, and whole and
    # tiled runs use the same two numbers either way)
    lo, hi = _intensity_range(image, setup)
    if resample:
        image = resample_dask(image, pixel_size_um, setup.pixel_size_um, tile_px=tile_px)
        out_px = setup.pixel_size_um
    else:
        out_px = float(pixel_size_um)
    prob = unet_probabilities_dask(image, setup=setup, tile_px=tile_px, batch=batch, intensity=(lo, hi))
    t = setup.crack_threshold if crack_threshold is None else float(crack_threshold)
    t_low = min(t, DEFAULT_CRACK_THRESHOLD_LOW if crack_threshold_low is None else float(crack_threshold_low))
    sigma_um = DEFAULT_PROB_SIGMA_UM if prob_sigma_um is None else float(prob_sigma_um)
    area_um2 = DEFAULT_MIN_CRACK_AREA_UM2 if min_crack_area_um2 is None else float(min_crack_area_um2)
    prov = setup.provenance() | {
        "crack_threshold": t,
        "crack_threshold_source": "weights (calibrated)" if crack_threshold is None else "parameter",
        "crack_threshold_low": t_low,
        "prob_sigma_um": sigma_um,
        "prob_sigma_px": sigma_um / out_px,
        "min_crack_area_um2": area_um2,
        "min_crack_px": min_crack_px(area_um2, out_px),
        "intensity_range": [float(lo), float(hi)],
        "input_pixel_size_um": float(pixel_size_um),
        "input_shape": list(src_shape),
        "resampled": bool(resample),
        "output_pixel_size_um": out_px,
        "tile_px": int(tile_px),
    }
    return prob, out_px, prov
