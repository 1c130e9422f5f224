"""Super-resolution stage: low-resolution SEM image → high-resolution grid, factor 35/13.

The SRGAN generator of the paper (§2.3.1, Fig. 3) is :mod:`cathodeflow.stages.srgan` (it
needs trained weights: ``cathodeflow train sr``). This module is the weights-free **baseline**:
plain separable cubic-convolution interpolation (Keys 1981, ``a = -0.5``). The baseline restores no detail; it only puts the
low-resolution image (pixel size 38.5 nm) on the 14.3 nm grid η of the paper, so that the
downstream stages run unchanged. Its provenance says ``"method": "baseline-interpolation"``.

Grid (DESIGN §5, :mod:`cathodeflow.tiling.geometry`): an image of ``(H, W)`` low-resolution
pixels, both multiples of 13, becomes ``(H·35/13, W·35/13)`` high-resolution pixels;
high-resolution pixel ``j`` has its centre at low-resolution coordinate
``(j + 0.5)·13/35 − 0.5``. Outside the image the low-resolution image is extended by its edge
value (clamped indices).

Layout: a numpy kernel that computes any rectangle of the high-resolution output from the
low-resolution pixels around it (:func:`_superres_region`), the whole-image function
:func:`superres_baseline`, and the Dask glue :func:`superres_baseline_dask`. Each output pixel
is computed from the same four-by-four input values with the same weights and the same
order of operations whichever tile it belongs to, so tiled and whole-image results are equal
bit for bit.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import numpy as np

from ..config import LOW_RES_PIXEL_UM, SR_DEN, SR_NUM, ETA_UM
from ..errors import InputError
from ..tiling.geometry import (
    LR_BLOCK_PX,
    chunks_are_snapped,
    halo_from_support,
    hr_chunks,
    hr_length,
    lr_coordinate,
    overlapped_extent,
    snap_chunks,
)

#: Methods :func:`superres` and :func:`superres_dask` know (weights-free).
MODELS = ("baseline",)
#: The paper's SRGAN generator needs weights: :mod:`cathodeflow.stages.srgan`.
FUTURE_MODELS = ("srgan",)

#: Keys' cubic-convolution parameter (a = -0.5 reproduces polynomials up to degree 2).
KEYS_A = -0.5
#: Taps per axis of the cubic-convolution kernel: floor(x)-1 … floor(x)+2.
_TAPS = np.arange(-1, 3)
#: How far (low-resolution px) from a chunk the kernel reads: a high-resolution pixel of a
#: chunk has its centre at most 0.5 px outside the chunk's low-resolution range and reads up
#: to 2 px beyond its centre, so 3 px always suffice.
KERNEL_SUPPORT_LR_PX = 3
#: Default halo (low-resolution px): the support rounded up to the 26-px block.
DEFAULT_HALO_LR = halo_from_support(KERNEL_SUPPORT_LR_PX, multiple=LR_BLOCK_PX)


def _keys_weights(t: np.ndarray) -> np.ndarray:
    """Keys cubic-convolution kernel W(t) (float64), support |t| < 2."""
    a = KEYS_A
    t = np.abs(t)
    t2, t3 = t * t, t * t * t
    inner = (a + 2.0) * t3 - (a + 3.0) * t2 + 1.0
    outer = a * t3 - 5.0 * a * t2 + 8.0 * a * t - 4.0 * a
    return np.where(t <= 1.0, inner, np.where(t < 2.0, outer, 0.0))


def _axis_taps(
    j_start: int, j_stop: int, *, n_lr: int, tile_start: int, tile_stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """Local tap indices (4, m) and weights (4, m) for high-resolution pixels [j_start, j_stop).

    Indices are computed on the global low-resolution axis of length ``n_lr``, clamped to
    ``[0, n_lr - 1]`` (edge extension), then made local to the tile ``[tile_start, tile_stop)``.
    """
    x = lr_coordinate(np.arange(j_start, j_stop))
    base = np.floor(x).astype(np.int64)
    idx = base[None, :] + _TAPS[:, None]
    w = _keys_weights(x[None, :] - idx)
    idx = np.clip(idx, 0, n_lr - 1) - tile_start
    if idx.size and (idx.min() < 0 or idx.max() >= tile_stop - tile_start):
        # A programming error (halo smaller than the kernel support), never user input.
        raise RuntimeError(
            f"superres kernel needs low-res pixels outside its tile [{tile_start}, {tile_stop})"
        )
    return idx, w


def _interp_axis0(a: np.ndarray, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    out = w[0][:, None] * a[idx[0], :]
    for k in range(1, idx.shape[0]):
        out += w[k][:, None] * a[idx[k], :]
    return out


def _superres_region(
    tile: np.ndarray,
    *,
    tile_origin_lr: tuple[int, int],
    image_shape_lr: tuple[int, int],
    out_start_hr: tuple[int, int],
    out_stop_hr: tuple[int, int],
) -> np.ndarray:
    """Numpy kernel: the high-resolution rectangle ``[out_start_hr, out_stop_hr)``.

    Parameters
    ----------
    tile : (h, w) array
        Low-resolution pixels ``[tile_origin_lr, tile_origin_lr + (h, w))`` of the image; must
        contain every pixel the rectangle reads (its low-resolution range plus
        :data:`KERNEL_SUPPORT_LR_PX`, clipped to the image).
    tile_origin_lr : (int, int)
        Global low-resolution index of ``tile[0, 0]``.
    image_shape_lr : (int, int)
        Shape of the whole low-resolution image (for edge extension).
    out_start_hr, out_stop_hr : (int, int)
        Global high-resolution rectangle to compute.

    Returns
    -------
    hr : (out_stop_hr - out_start_hr) float32 array
    """
    a = np.asarray(tile, dtype=np.float64)
    (oy, ox), (ny, nx) = tile_origin_lr, image_shape_lr
    iy, wy = _axis_taps(
        out_start_hr[0], out_stop_hr[0], n_lr=ny, tile_start=oy, tile_stop=oy + a.shape[0]
    )
    ix, wx = _axis_taps(
        out_start_hr[1], out_stop_hr[1], n_lr=nx, tile_start=ox, tile_stop=ox + a.shape[1]
    )
    rows = _interp_axis0(a, iy, wy)  # (m_y, w)
    out = _interp_axis0(rows.T, ix, wx).T  # (m_y, m_x)
    return out.astype(np.float32)


def check_grey_image(image, *, name: str = "image") -> None:
    """Refuse (:class:`~cathodeflow.errors.InputError`, one line naming ``name``) anything but
    a non-empty 2-D array of real numbers (H, W): what every image stage takes."""
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) != 2:
        raise InputError(f"{name}: expected a 2-D grey-scale image (H, W), got shape {shape}")
    if min(shape) <= 0:
        raise InputError(f"{name}: image is empty, shape {shape}")
    if np.dtype(image.dtype).kind not in "biuf":
        raise InputError(f"{name}: expected a real numeric image, got dtype {image.dtype}")


def _validate_lr(lr, *, name: str = "lr", check_finite: bool = True):
    check_grey_image(lr, name=name)
    for axis, n in enumerate(lr.shape):
        if n <= 0 or n % SR_DEN:
            raise InputError(
                f"{name}: axis {axis} has {n} px; the ×{SR_NUM}/{SR_DEN} super-resolution needs "
                f"a positive multiple of {SR_DEN} (crop or pad the image, e.g. to "
                f"{max(SR_DEN, n // SR_DEN * SR_DEN)} px)"
            )
    if check_finite and not np.all(np.isfinite(lr)):
        raise InputError(f"{name}: image contains NaN or infinite values")


def _check_model(model: str) -> None:
    if model in MODELS:
        return
    if model in FUTURE_MODELS:
        raise InputError(
            f"model={model!r}: not available yet through this function (it takes no weights); use "
            "cathodeflow.stages.srgan.srgan_superres(lr, weights=...) or 'baseline'"
        )
    raise InputError(f"model={model!r}: unknown super-resolution model; known: {list(MODELS)}")


def superres_baseline(lr: np.ndarray) -> np.ndarray:
    """Baseline super-resolution of a whole image by 35/13 (cubic-convolution interpolation).

    This is the **baseline** (``"method": "baseline-interpolation"``), not the paper's SRGAN
    (§2.3.1): it resamples the low-resolution image onto the high-resolution grid η without
    restoring any detail.

    Parameters
    ----------
    lr : (H, W) array, real
        Low-resolution image (pixel size ≈ 38.5 nm); ``H`` and ``W`` multiples of 13.

    Returns
    -------
    hr : (H·35/13, W·35/13) float32 array
        Same intensity units as ``lr``. Pixel ``j`` samples ``lr`` at coordinate
        ``(j + 0.5)·13/35 − 0.5`` with Keys' cubic convolution (``a = -0.5``, exact for
        polynomials up to degree 2 away from the image edge; may overshoot near steps).
        Beyond the edge, ``lr`` is extended by its edge values.

    Raises
    ------
    InputError
        ``lr`` not 2-D, not numeric, not finite, or a side not a multiple of 13.
    """
    _validate_lr(lr)
    ny, nx = lr.shape
    return _superres_region(
        np.asarray(lr),
        tile_origin_lr=(0, 0),
        image_shape_lr=(ny, nx),
        out_start_hr=(0, 0),
        out_stop_hr=(hr_length(ny), hr_length(nx)),
    )


def _check_halo(halo_lr) -> int:
    if isinstance(halo_lr, bool) or not isinstance(halo_lr, (int, np.integer)):
        raise InputError(f"halo_lr must be an integer number of pixels, got {halo_lr!r}")
    halo_lr = int(halo_lr)
    if halo_lr < KERNEL_SUPPORT_LR_PX or halo_lr % LR_BLOCK_PX:
        raise InputError(
            f"halo_lr must be a positive multiple of {LR_BLOCK_PX} px covering the kernel "
            f"support of {KERNEL_SUPPORT_LR_PX} px (default {DEFAULT_HALO_LR}); got {halo_lr}"
        )
    return halo_lr


def prepare_lr_chunks(lr, *, halo_lr: int, chunk_lr: int | None = None):
    """Rechunk a low-resolution Dask array so chunk edges are multiples of 26 px.

    All chunks but the last are multiples of :data:`LR_BLOCK_PX` and at least ``halo_lr``;
    the last is at least ``halo_lr`` (a thinner remainder is merged into its neighbour) and a
    multiple of 13 because the axis is. Returns the array unchanged when it already complies.
    With ``chunk_lr`` given, that chunk edge is used (snapped); otherwise each axis keeps its
    first chunk size (snapped down to a multiple of 26, at least ``halo_lr``).
    """
    import dask.array as da

    new = []
    for axis, (n, c) in enumerate(zip(lr.shape, lr.chunks)):
        want = int(chunk_lr) if chunk_lr is not None else int(c[0])
        if chunk_lr is None and chunks_are_snapped(
            c, multiple=LR_BLOCK_PX, min_last=halo_lr
        ) and all(x >= halo_lr for x in c[:-1]):
            new.append(tuple(c))
            continue
        new.append(snap_chunks(n, max(want, halo_lr), multiple=LR_BLOCK_PX, min_last=halo_lr))
    new = tuple(new)
    return lr if new == tuple(lr.chunks) else da.rechunk(lr, new)


def superres_baseline_dask(lr, *, halo_lr: int = DEFAULT_HALO_LR, chunk_lr: int | None = None):
    """Tiled baseline super-resolution of a Dask array (lazy), equal to :func:`superres_baseline`.

    Parameters
    ----------
    lr : (H, W) dask array or numpy array
        Low-resolution image; ``H`` and ``W`` multiples of 13. A numpy array is wrapped with
        chunks of ``chunk_lr`` (default: :attr:`cathodeflow.config.Params.chunk_px` snapped
        to 26 px).
    halo_lr : int, keyword-only
        Overlap in low-resolution pixels: a multiple of 26 covering the kernel's support
        (:data:`KERNEL_SUPPORT_LR_PX`); default 26. The high-resolution halo (``halo_lr·35/13``)
        is trimmed on the high-resolution grid, i.e. only the chunk's own rectangle is computed.
    chunk_lr : int, optional, keyword-only
        Rechunk to this low-resolution chunk edge (snapped to a multiple of 26).

    Returns
    -------
    hr : (H·35/13, W·35/13) float32 dask array
        Chunks are the low-resolution chunks × 35/13 (so a 2028-px chunk becomes 5460 px).

    Notes
    -----
    Low-resolution chunks are rechunked to multiples of 26 px when they are not, and a last
    chunk thinner than the halo is merged into its neighbour, so Dask never has to rechunk
    silently (``allow_rechunk=False``). Values are not checked for NaN (that would compute).
    """
    import dask.array as da

    from ..config import Params

    if not isinstance(lr, da.Array):
        arr = np.asarray(lr)
        _validate_lr(arr)
        size = chunk_lr or Params().chunk_px
        lr = da.from_array(arr, chunks=(size, size))
    else:
        _validate_lr(lr, check_finite=False)
    halo_lr = _check_halo(halo_lr)
    lr = prepare_lr_chunks(lr, halo_lr=halo_lr, chunk_lr=chunk_lr)
    shape = lr.shape
    lr_chunks = lr.chunks
    # an axis held in one chunk needs no overlap (and may be thinner than the halo)
    depth = tuple(halo_lr if len(c) > 1 else 0 for c in lr_chunks)

    def block(tile, block_id=None):
        by, bx = block_id
        y0, y1, ey0, _ = overlapped_extent(lr_chunks[0], by, depth[0])
        x0, x1, ex0, _ = overlapped_extent(lr_chunks[1], bx, depth[1])
        return _superres_region(
            tile,
            tile_origin_lr=(ey0, ex0),
            image_shape_lr=shape,
            out_start_hr=(y0 * SR_NUM // SR_DEN, x0 * SR_NUM // SR_DEN),
            out_stop_hr=(y1 * SR_NUM // SR_DEN, x1 * SR_NUM // SR_DEN),
        )

    return da.map_overlap(
        block,
        lr,
        depth={0: depth[0], 1: depth[1]},
        boundary="none",
        trim=False,
        allow_rechunk=False,
        chunks=tuple(hr_chunks(c) for c in lr_chunks),
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
    )


def sr_shape(shape_lr) -> tuple[int, int]:
    """High-resolution shape of any low-resolution shape: ``floor(n·35/13)`` per axis, the
    pixels of the ×35/13 grid that lie wholly inside the image's field of view."""
    return tuple(int(n) * SR_NUM // SR_DEN for n in shape_lr)


def superres_any_size_dask(lr, **kwargs):
    """:func:`superres_baseline_dask` for an image of any size (lazy).

    Real frames are rarely multiples of 13 px. The image is extended at the bottom and right
    by symmetric reflection (numpy's ``'symmetric'``) to the next multiple of 13, super-
    resolved, and cropped to :func:`sr_shape`, so every output pixel lies inside the field
    of view and its pixel size is exactly η_lr·13/35; near the bottom and right edges the
    interpolation sees the reflected rows and columns, as at the top and left. An image that
    is already a multiple of 13 is not padded (the result equals :func:`superres_baseline`).
    ``kwargs`` go to :func:`superres_baseline_dask`.
    """
    import dask.array as da

    if not isinstance(lr, da.Array):
        lr = np.asarray(lr)
    check_grey_image(lr, name="lr")
    shape = lr.shape
    pad = [(0, -int(n) % SR_DEN) for n in shape]
    if any(p for _, p in pad):
        lr = da.pad(lr if isinstance(lr, da.Array) else da.from_array(lr), pad, mode="symmetric")
    out = superres_baseline_dask(lr, **kwargs)
    H, W = sr_shape(shape)
    return out if out.shape == (H, W) else out[:H, :W]


def superres(lr: np.ndarray, *, model: str = "baseline") -> np.ndarray:
    """Super-resolve a whole image by 35/13 with ``model`` (only ``'baseline'`` for now).

    The paper's SRGAN generator (``model='srgan'``) will plug in here; asking for it, or for
    any other name, raises :class:`InputError`.
    """
    _check_model(model)
    return superres_baseline(lr)


def superres_dask(lr, *, model: str = "baseline", halo_lr: int | None = None, chunk_lr=None):
    """Tiled super-resolution with ``model`` (only ``'baseline'`` for now); see
    :func:`superres_baseline_dask`. ``halo_lr=None`` uses the model's own halo."""
    _check_model(model)
    return superres_baseline_dask(
        lr, halo_lr=DEFAULT_HALO_LR if halo_lr is None else halo_lr, chunk_lr=chunk_lr
    )


def provenance(*, model: str = "baseline", halo_lr: int | None = None) -> dict:
    """Provenance record of this stage for the study store (DESIGN §4.1)."""
    _check_model(model)
    try:
        pkg = version("cathodeflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        pkg = "unknown"
    return {
        "stage": "superres",
        "model": model,
        "method": "baseline-interpolation",
        "kernel": f"keys-cubic-convolution a={KEYS_A}",
        "boundary": "edge-extension",
        "factor": f"{SR_NUM}/{SR_DEN}",
        "lr_pixel_size_um": LOW_RES_PIXEL_UM,
        "hr_pixel_size_um": ETA_UM,
        "coordinate_map": "x_lr = (j_hr + 0.5) * 13/35 - 0.5",
        "halo_lr_px": DEFAULT_HALO_LR if halo_lr is None else int(halo_lr),
        "weights_sha256": None,
        "package_version": pkg,
    }
