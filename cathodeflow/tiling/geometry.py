"""Tile and halo geometry in plain numpy/integers (DESIGN §5).

Nothing here touches pixel values: these helpers decide chunk sizes, halos and the
fractional-scale mapping between the low-resolution grid and the super-resolved grid, so
that every tiled stage can meet the contract *tiled result == whole-image result*.

Super-resolution grid (paper §2.3.1, DESIGN §5)
-----------------------------------------------
The super-resolution factor is ``SR_NUM / SR_DEN = 35/13`` (38.5 nm → 14.3 nm). The SRGAN
generator resizes by (1/2)(35/13) = 35/26 and then applies a ×2 pixel shuffle, so a block of
26 low-resolution pixels maps to 35 intermediate and 70 high-resolution pixels. Low-resolution
chunk edges and halos are therefore multiples of :data:`LR_BLOCK_PX` (= 26): every grid on the
way is integer and chunk edges on the two grids coincide exactly.

Pixel centres: high-resolution pixel ``j`` (0-based) covers ``[j, j+1)`` on its grid, i.e.
``[j, j+1)·13/35`` on the low-resolution grid, so its centre lies at low-resolution
coordinate ``(j + 0.5)·13/35 − 0.5`` (low-resolution pixel ``i`` has its centre at ``i``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..config import SR_DEN, SR_NUM
from ..errors import InputError

#: Low-resolution block edge (px) that keeps all super-resolution grids integer (26 → 35 → 70).
LR_BLOCK_PX = 2 * SR_DEN
#: The high-resolution edge (px) of one :data:`LR_BLOCK_PX` block.
HR_BLOCK_PX = 2 * SR_NUM


def round_up_to_multiple(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ``>= n`` (``n >= 0``, ``multiple >= 1``)."""
    n, multiple = int(n), int(multiple)
    if multiple < 1:
        raise InputError(f"multiple must be >= 1, got {multiple}")
    if n < 0:
        raise InputError(f"n must be >= 0, got {n}")
    return -(-n // multiple) * multiple


def hr_length(n_lr: int, *, name: str = "length") -> int:
    """High-resolution length (px) of a low-resolution length ``n_lr`` (px): ``n_lr·35/13``.

    Raises :class:`InputError` unless ``n_lr`` is a positive multiple of 13 (``SR_DEN``).
    """
    n_lr = int(n_lr)
    if n_lr <= 0 or n_lr % SR_DEN:
        raise InputError(
            f"{name}: low-resolution length must be a positive multiple of {SR_DEN} so that "
            f"the ×{SR_NUM}/{SR_DEN} grid is integer; got {n_lr}"
        )
    return n_lr * SR_NUM // SR_DEN


def lr_coordinate(j_hr) -> np.ndarray:
    """Low-resolution coordinate (px, pixel centres at integers) of high-resolution pixel centres.

    Parameters
    ----------
    j_hr : int or array of int
        0-based high-resolution pixel indices.

    Returns
    -------
    x_lr : float64 array, same shape
        ``(j_hr + 0.5)·13/35 − 0.5``.
    """
    j = np.asarray(j_hr, dtype=np.float64)
    return (j + 0.5) * (SR_DEN / SR_NUM) - 0.5


def halo_from_support(support_px: float, *, multiple: int = 1) -> int:
    """Halo (px) that covers a kernel reaching ``support_px`` pixels, rounded up to ``multiple``.

    A kernel whose output at a pixel depends on inputs at most ``support_px`` away needs that
    many halo pixels around a tile for the tile to equal the whole-image result.
    """
    if support_px < 0 or not math.isfinite(support_px):
        raise InputError(f"support_px must be finite and >= 0, got {support_px}")
    return round_up_to_multiple(int(math.ceil(support_px)), multiple)


def snap_chunks(
    total: int, chunk: int, *, multiple: int = 1, min_last: int = 1
) -> tuple[int, ...]:
    """Chunk sizes along one axis: multiples of ``multiple`` except the last.

    Parameters
    ----------
    total : int
        Axis length (px), > 0.
    chunk : int
        Wanted chunk size (px); rounded down to a multiple of ``multiple`` (at least one
        ``multiple``).
    multiple : int
        Every chunk but the last is a multiple of this.
    min_last : int
        The last chunk is at least this long; a thinner remainder is merged into the chunk
        before it (so Dask never has to rechunk silently because a chunk is thinner than a
        halo). With a single chunk the whole axis is one chunk.

    Returns
    -------
    chunks : tuple of int, summing to ``total``.
    """
    total, chunk, multiple, min_last = int(total), int(chunk), int(multiple), int(min_last)
    if total <= 0:
        raise InputError(f"total must be > 0, got {total}")
    if chunk <= 0:
        raise InputError(f"chunk must be > 0, got {chunk}")
    size = max(multiple, (chunk // multiple) * multiple)
    n_full, rest = divmod(total, size)
    chunks = [size] * n_full
    if rest:
        chunks.append(rest)
    if len(chunks) > 1 and chunks[-1] < min_last:
        last = chunks.pop()
        chunks[-1] += last
    return tuple(chunks)


def chunks_are_snapped(chunks: Sequence[int], *, multiple: int, min_last: int = 1) -> bool:
    """True when all chunks but the last are multiples of ``multiple`` and the last is
    ``>= min_last`` (or is the only chunk)."""
    chunks = tuple(int(c) for c in chunks)
    if any(c % multiple for c in chunks[:-1]):
        return False
    return len(chunks) == 1 or chunks[-1] >= min_last


def chunk_starts(chunks: Sequence[int]) -> np.ndarray:
    """Start offsets of chunks along one axis (length ``len(chunks) + 1``, last = total)."""
    return np.concatenate([[0], np.cumsum(np.asarray(chunks, dtype=np.int64))])


def overlapped_extent(
    chunks: Sequence[int], index: int, halo: int
) -> tuple[int, int, int, int]:
    """Extent of chunk ``index`` with its halo, clipped to the axis (``boundary='none'``).

    Returns
    -------
    (start, stop, ext_start, ext_stop) : the chunk's own range ``[start, stop)`` and the range
    ``[ext_start, ext_stop)`` that Dask's ``overlap(..., boundary='none')`` gives the block,
    all in pixels of the axis.
    """
    starts = chunk_starts(chunks)
    total = int(starts[-1])
    start, stop = int(starts[index]), int(starts[index + 1])
    return start, stop, max(0, start - int(halo)), min(total, stop + int(halo))


def hr_chunks(lr_chunks: Sequence[int]) -> tuple[int, ...]:
    """High-resolution chunk sizes of low-resolution chunks (each a multiple of 13)."""
    return tuple(hr_length(c, name="chunk") for c in lr_chunks)
