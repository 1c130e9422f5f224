"""Pixels outside the imaged field: the ``frame_fraction`` quality flag of the ``images`` table.

Mosaics and exported frames often carry regions that hold no image: a padding of one exact
value (0 or the maximum) around stitched tiles, a blanked corner, a cropped data bar filled
with a constant. Such a region is read as background by every phase segmentation, so it
inflates nothing in the crack statistics but it does cut particles and bias the particle
counts near it. :func:`frame_mask` finds them in the raw image:

* a region is a 4-connected component of pixels with *exactly* one value ``v``, where
  ``v`` is the image's minimum or maximum (what padding and clipping produce);
* it counts as outside the field when it touches the image border and holds at least
  :data:`MIN_FRAME_PX` pixels and at least :data:`MIN_FRAME_SHARE` of the image (a few
  clipped dark pixels in a real pore are neither).

The choices (min/max only, border-connected, the two size limits) are ours, not the paper's;
a real pore clipped to exactly 0 over a large, border-touching area would be counted too,
which is why the result is a flag for a human to look at, not a correction.
"""

from __future__ import annotations

import numpy as np

#: Smallest region (pixels) that counts as outside the imaged field.
MIN_FRAME_PX = 256
#: Smallest region, as a share of the image, that counts as outside the imaged field.
MIN_FRAME_SHARE = 1e-3


def frame_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of ``image`` outside the imaged field (see the module notes).

    Parameters
    ----------
    image : (H, W) array of numbers (the raw SEM image as ingested)
    """
    from scipy import ndimage as ndi

    image = np.asarray(image)
    out = np.zeros(image.shape, bool)
    if image.size == 0:
        return out
    min_px = max(MIN_FRAME_PX, int(np.ceil(MIN_FRAME_SHARE * image.size)))
    for v in {image.min().item(), image.max().item()}:
        labels, n = ndi.label(image == v)  # 4-connected
        if n == 0:
            continue
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        area = np.bincount(labels.ravel(), minlength=n + 1)
        keep = np.zeros(n + 1, bool)
        keep[border] = True
        keep &= area >= min_px
        keep[0] = False
        out |= keep[labels]
    return out


def frame_fraction(image: np.ndarray) -> float:
    """Share of ``image``'s pixels outside the imaged field (:func:`frame_mask`), in [0, 1]."""
    image = np.asarray(image)
    return float(frame_mask(image).mean()) if image.size else 0.0
