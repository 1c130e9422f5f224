"""The SRGAN generator as the super-resolution stage: low-resolution image → grid η, ×35/13.

Paper §2.3.1: the generator G of a trained SRGAN (:mod:`cathodeflow.models.srgan`, Fig. 3a)
maps a low-resolution SEM image (38.5 nm) to the 14.3 nm grid η. This module is its numpy
kernel per tile and the Dask glue; the cubic baseline lives in :mod:`.superres`.

Tiling (DESIGN §5). Low-resolution tiles of ``tile_lr`` px (a multiple of the generator's
26-px period, :attr:`~cathodeflow.models.srgan.SRGANConfig.lr_multiple`) lie on a grid that
starts at the image origin; each is computed from a window one halo ``P`` wider on every
side, ``P`` = :func:`~cathodeflow.models.srgan.srgan_receptive_field_radius` rounded up to a
multiple of 26, and every window starts on the same 26-px grid as the whole-image call. The
generator's fixed resize is 26-periodic, so each high-resolution pixel of a tile is computed
from the same inputs with the same weights as in the whole-image call (tiled == whole within
1e-4 of the intensity range; float summation order only). Each tile writes its own
``tile_lr·35/13`` px block of the output, one Dask chunk per tile.

Any size. Outside the image, windows read the image by symmetric reflection (numpy's
``'symmetric'``, :func:`cathodeflow.tiling.windows.reflect_index`), which pads the bottom and right to a multiple
of 26 as well; the output is cropped to :func:`.superres.sr_shape` = ``⌊n·35/13⌋`` per axis
(the pixels of the ×35/13 grid wholly inside the field of view), as the baseline does.

Intensities. The generator sees ``x = (I − lo)/(hi − lo)`` with ``(lo, hi)`` the percentiles
of the weights' normalisation record (``{"method": "percentile", "q": [0.5, 99.5]}``) of the
**whole** low-resolution image (:func:`~cathodeflow.models.normalise.intensity_range`, one
pair for all tiles), and its output ``G(x)`` is mapped back by the same affine map,
``Î = lo + (hi − lo)·G(x)``: ``cathodeflow train sr`` normalises the high-resolution truth
with the low-resolution image's ``(lo, hi)``, so ``Î`` is in the input's intensity units (as
the baseline's output is), and the phase stage normalises it again by its own percentiles.

Pixel size. A generator is trained for one low-resolution pixel size p_m (its record's
``pixel_size_um``) and the factor is fixed, so an image is not resampled here: a raw pixel
size p with ``p/p_m`` outside ``[1/MAX_PIXEL_RATIO, MAX_PIXEL_RATIO]`` is refused unless
``force`` (the output pixel size is ``p·13/35`` either way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import SR_DEN, SR_NUM
from ..errors import InputError
from ..tiling.geometry import halo_from_support
from .superres import check_grey_image, sr_shape
from ..tiling.windows import lazy_window, read_window
from .unet import same_shape_groups, tile_grid

#: Default low-resolution tile edge (px, a multiple of 26): 1400 px of output per tile.
DEFAULT_TILE_LR = 520
#: Largest ratio p/p_m (or p_m/p) of raw to model pixel size accepted without ``force``.
MAX_PIXEL_RATIO = 1.25


def _hr(n: int) -> int:
    """High-resolution length of ``n`` low-resolution px: ``⌊n·35/13⌋``."""
    return int(n) * SR_NUM // SR_DEN


@dataclass(frozen=True)
class SRGANSetup:
    """What the stage needs to know about SRGAN generator weights (plain values, cheap to ship
    to workers; the Keras model is loaded inside each worker process, once)."""

    weights: str  # registry name or path
    sha256: str
    architecture: dict
    pixel_size_um: float  # low-resolution pixel size the generator was trained for
    normalisation: dict
    radius: int  # receptive-field radius R (low-resolution px)
    halo: int  # R rounded up to a multiple of 26
    multiple: int  # 26

    @classmethod
    def from_weights(cls, weights) -> "SRGANSetup":
        """The setup of a registry name or weights path; refuses records that are not an
        SRGAN generator for the factor 35/13, and normalisations other than percentiles."""
        from ..models.registry import resolve_weights, weights_location
        from ..models.srgan import SRGANConfig, srgan_receptive_field_radius

        if weights is None:
            raise InputError("weights: expected a registry name or path of SRGAN generator weights, got None")
        rec = resolve_weights(weights)
        kind = rec.architecture.get("kind")
        if kind != "srgan":
            raise InputError(f"sr weights {weights}: architecture kind is {kind!r}, expected 'srgan' "
                             "(SRGAN generator weights from `cathodeflow train sr`)")
        try:
            cfg = SRGANConfig.from_dict({k: v for k, v in rec.architecture.items() if k != "kind"})
        except InputError as e:
            raise InputError(f"{rec.source}: {e}") from None
        if (cfg.scale_num, cfg.scale_den) != (SR_NUM, SR_DEN):
            raise InputError(f"sr weights {weights}: factor {cfg.scale_num}/{cfg.scale_den}, expected the "
                             f"sr stage's {SR_NUM}/{SR_DEN}")
        norm = dict(rec.normalisation)
        if norm.get("method") != "percentile":
            raise InputError(f"sr weights {weights}: normalisation {norm!r}, expected "
                             "{'method': 'percentile', 'q': [lo, hi]}")
        radius = srgan_receptive_field_radius(cfg)
        return cls(
            weights=weights_location(weights), sha256=rec.sha256, architecture=dict(rec.architecture),
            pixel_size_um=float(rec.pixel_size_um), normalisation=norm, radius=int(radius),
            halo=int(halo_from_support(radius, multiple=cfg.lr_multiple)), multiple=int(cfg.lr_multiple),
        )

    def check_tile(self, tile_lr) -> int:
        """``tile_lr`` as an int if it is a multiple of 26 no smaller than the halo."""
        if isinstance(tile_lr, bool) or not isinstance(tile_lr, (int, np.integer)) \
                or tile_lr < 1 or tile_lr % self.multiple:
            raise InputError(f"tile_lr: expected a positive multiple of {self.multiple} px, got {tile_lr!r}")
        if tile_lr < self.halo:
            raise InputError(f"tile_lr: {tile_lr} px is smaller than the generator's receptive-field halo "
                             f"of {self.halo} px (radius {self.radius} px); use tiles of >= {self.halo} px")
        return int(tile_lr)

    def provenance(self, *, tile_lr: int) -> dict:
        return {
            "method": "srgan", "weights": self.weights, "weights_sha256": self.sha256,
            "architecture": self.architecture, "model_pixel_size_um": self.pixel_size_um,
            "normalisation": self.normalisation, "receptive_field_radius_lr_px": self.radius,
            "halo_lr_px": self.halo, "tile_lr_px": int(tile_lr), "factor": f"{SR_NUM}/{SR_DEN}",
            "boundary": "symmetric-reflection",
            "intensity_map": "I_sr = lo + (hi - lo) * G((I - lo) / (hi - lo))",
        }


def check_sr_pixel_size(pixel_size_um: float, model_pixel_um: float, *, force: bool = False,
                        name: str = "image") -> None:
    """Refuse a raw pixel size more than :data:`MAX_PIXEL_RATIO` times away from the
    generator's ``model_pixel_um`` (either way) unless ``force``."""
    p = float(pixel_size_um)
    if not (math.isfinite(p) and p > 0):
        raise InputError(f"{name}: pixel size must be a positive number of µm, got {pixel_size_um!r}")
    ratio = p / float(model_pixel_um)
    if not force and not 1 / MAX_PIXEL_RATIO <= ratio <= MAX_PIXEL_RATIO:
        raise InputError(
            f"{name}: raw pixel size {p:g} µm is {ratio:.3g}× the {model_pixel_um:g} µm the SRGAN was "
            f"trained for (accepted: {1 / MAX_PIXEL_RATIO:g}×–{MAX_PIXEL_RATIO:g}×); use a generator "
            "trained for it, the baseline (--sr-method baseline), or pass --force"
        )


def _model(setup: SRGANSetup):
    """The generator of ``setup``, loaded once per process and compiled for inference."""
    from ..models.registry import load_srgan_generator
    from ..models.unet import compile_for_inference

    model, _ = load_srgan_generator(setup.weights, sha256=setup.sha256)  # the weights the run started with
    return compile_for_inference(model)


def _sr_windows(windows: list[np.ndarray], setup: SRGANSetup, lo: float, hi: float,
                crops: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """Numpy kernel: the generator's output for each low-resolution window (h, w multiples of
    26), mapped back to the input's intensities and cropped to ``crops`` (high-resolution
    rows a:b, columns c:d of the window's output). Windows of equal shape form one batch."""
    from ..models.normalise import normalise_image

    model = _model(setup)
    out: list[np.ndarray | None] = [None] * len(windows)
    for idx in same_shape_groups(windows):
        x = np.stack([normalise_image(windows[i], lo=lo, hi=hi) for i in idx])[..., None]
        y = np.asarray(model.predict_on_batch(x), dtype=np.float64)[..., 0]
        for k, i in enumerate(idx):
            a, b, c, d = crops[i]
            out[i] = (lo + (hi - lo) * y[k, a:b, c:d]).astype(np.float32)
    return out


def _intensity_range(image, setup: SRGANSetup) -> tuple[float, float]:
    from ..models.normalise import intensity_range

    return intensity_range(image, q=tuple(setup.normalisation.get("q", (0.5, 99.5))))


def _tiles(shape, setup: SRGANSetup, tile_lr: int):
    """(tile, window, high-resolution crop of the window's output, output shape) per tile, row by row."""
    rows = []
    for row in tile_grid(shape, tile_px=tile_lr, halo=setup.halo, multiple=setup.multiple):
        out = []
        for t in row:
            a = _hr(t.halo)  # the window starts halo px (a multiple of 26) before the tile
            h, w = _hr(t.y1) - _hr(t.y0), _hr(t.x1) - _hr(t.x0)
            out.append((t, t.window, (a, a + h, a, a + w), (h, w)))
        rows.append(out)
    return rows


def srgan_superres(lr: np.ndarray, *, weights, tile_lr: int | None = None) -> np.ndarray:
    """The generator's super-resolution of a whole image in memory (numpy), tile by tile.

    Parameters
    ----------
    lr : (H, W) numeric array, any size
    weights : registry name or path of SRGAN generator weights (kind ``'srgan'``)
    tile_lr : low-resolution tile edge (multiple of 26); default one tile for the image.

    Returns
    -------
    sr : (⌊H·35/13⌋, ⌊W·35/13⌋) float32, in ``lr``'s intensity units.
    """
    check_grey_image(lr, name="lr")
    setup = SRGANSetup.from_weights(weights)
    lr = np.asarray(lr)
    tile = setup.check_tile(tile_lr if tile_lr is not None else
                            max(setup.halo, -(-max(lr.shape) // setup.multiple) * setup.multiple))
    lo, hi = _intensity_range(lr, setup)
    out = np.empty(sr_shape(lr.shape), np.float32)
    for row in _tiles(lr.shape, setup, tile):
        for t, win, crop, _ in row:
            (r,) = _sr_windows([read_window(lr, win)], setup, lo, hi, [crop])
            out[_hr(t.y0):_hr(t.y1), _hr(t.x0):_hr(t.x1)] = r
    return out


def srgan_superres_dask(lr, *, weights=None, setup: SRGANSetup | None = None,
                        tile_lr: int = DEFAULT_TILE_LR, batch: int = 1, intensity=None):
    """Tiled super-resolution of a (H, W) Dask or numpy array by the SRGAN generator (lazy).

    Parameters
    ----------
    lr : (H, W) Dask or numpy array, any size, raw intensities.
    weights : registry name or path of SRGAN generator weights (or give ``setup``).
    setup : :class:`SRGANSetup`, optional, instead of ``weights``.
    tile_lr : low-resolution tile edge (px): a multiple of 26, at least the halo.
    batch : tiles of one row that go through the generator together in one task.
    intensity : (lo, hi) normalisation values; default the record's percentiles of ``lr``
        (global, computed now from a strided sample).

    Returns
    -------
    sr : (⌊H·35/13⌋, ⌊W·35/13⌋) float32 Dask array in ``lr``'s intensity units; chunks are
        the tiles (``tile_lr·35/13`` px, the last ones cropped).
    """
    import dask
    import dask.array as da

    check_grey_image(lr, name="lr")
    setup = setup or SRGANSetup.from_weights(weights)
    tile_lr = setup.check_tile(tile_lr)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise InputError(f"batch: expected an integer >= 1, got {batch!r}")
    lo, hi = intensity if intensity is not None else _intensity_range(lr, setup)
    rows = []
    for row in _tiles(lr.shape, setup, tile_lr):
        blocks = []
        for k in range(0, len(row), int(batch)):
            group = row[k:k + int(batch)]
            wins = [lazy_window(lr, win) for _, win, _, _ in group]
            res = dask.delayed(_sr_windows, nout=len(group))(wins, setup, lo, hi, [g[2] for g in group])
            blocks += [da.from_delayed(r, shape=g[3], dtype=np.float32) for g, r in zip(group, res)]
        rows.append(blocks)
    return da.block(rows)


def srgan_stage_dask(lr, *, pixel_size_um: float, weights, tile_lr: int = DEFAULT_TILE_LR,
                     force: bool = False, name: str = "image"):
    """The sr stage with the SRGAN: pixel-size check, then :func:`srgan_superres_dask`.

    Returns
    -------
    sr : (⌊H·35/13⌋, ⌊W·35/13⌋) float32 Dask array
    provenance : dict (method, weights and their sha256, halo, tile, normalisation values…)
    """
    setup = SRGANSetup.from_weights(weights)
    check_sr_pixel_size(pixel_size_um, setup.pixel_size_um, force=force, name=name)
    tile_lr = setup.check_tile(tile_lr)
    check_grey_image(lr, name=name)
    lo, hi = _intensity_range(lr, setup)
    sr = srgan_superres_dask(lr, setup=setup, tile_lr=tile_lr, intensity=(lo, hi))
    prov = setup.provenance(tile_lr=tile_lr) | {
        "intensity_range": [float(lo), float(hi)], "input_pixel_size_um": float(pixel_size_um),
        "input_shape": list(lr.shape),
    }
    return sr, prov
