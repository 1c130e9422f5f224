"""Calibration of the crack threshold t of eq. 7 against annotated phase maps.

Paper §2.3.2: "This threshold is chosen such that the resulting segmentations have a maximal
accuracy, where the manual annotations S_manual serve as reference." Accuracy is the fraction
of pixels where eq. 7's S equals S_manual, pooled over all annotated pixels.

For a pixel with crack probability Ŷ(x, 3) = q, eq. 7 says 2 when q ≥ t and otherwise the
background/solid decision c(x) (1 if Ŷ(x, 2) ≥ Ŷ(x, 1) else 0), which does not depend on t.
So the number of correct pixels is

    N(t) = #{q ≥ t, S_manual = 2} + #{q < t, c = S_manual},

a step function of t that changes only at the observed values of q. We evaluate it exactly at
every distinct q (sorting once; O(n log n)) and return the midpoint between the best q and the
next lower one, so that a threshold separating the classes perfectly is recovered to within
half the gap between the observed values around it. Ties in N(t) go to the smallest t
(the most crack pixels), stated here because accuracy alone cannot decide them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class ThresholdCalibration:
    """Result of :func:`calibrate_threshold`.

    Attributes
    ----------
    t : the calibrated threshold.
    accuracy : pixel accuracy of eq. 7 with ``t`` against the annotations.
    accuracy_at_half : pixel accuracy with t = 0.5, for comparison.
    n_pixels : annotated pixels used.
    """

    t: float
    accuracy: float
    accuracy_at_half: float
    n_pixels: int


def _check_pair(prob, truth, i):
    prob = np.asarray(prob)
    truth = np.asarray(truth)
    if prob.ndim != 3 or prob.shape[-1] != 3:
        raise InputError(f"prob[{i}]: expected shape (H, W, 3), got {prob.shape}")
    if truth.shape != prob.shape[:2]:
        raise InputError(f"annotation[{i}]: shape {truth.shape} does not match the image's {prob.shape[:2]}")
    if truth.dtype.kind not in "iu" or truth.size and (truth.min() < 0 or truth.max() > 2):
        raise InputError(f"annotation[{i}]: expected integer phase values 0/1/2, got dtype {truth.dtype} "
                         f"with values {np.unique(truth)[:8].tolist()}")
    return prob, truth


def calibrate_threshold(probs, annotations) -> ThresholdCalibration:
    """The t of eq. 7 with maximal pixel accuracy against annotated phase maps.

    Parameters
    ----------
    probs : sequence of (H_i, W_i, 3) float arrays
        The network's Ŷ for each annotated image (channels background, solid, crack).
    annotations : sequence of (H_i, W_i) integer arrays with values 0/1/2
        S_manual of each image.

    Returns
    -------
    ThresholdCalibration
    """
    if len(probs) != len(annotations) or not len(probs):
        raise InputError(f"need as many annotations as probability maps (at least one); got {len(probs)} and {len(annotations)}")
    qs, hit_crack, hit_other = [], [], []
    for i, (p, s) in enumerate(zip(probs, annotations)):
        p, s = _check_pair(p, s, i)
        q = p[..., 2].astype(np.float64).ravel()
        c = np.where(p[..., 1] >= p[..., 0], 1, 0).ravel()
        s = s.ravel()
        qs.append(q)
        hit_crack.append(s == 2)
        hit_other.append(c == s)
    q = np.concatenate(qs)
    crack = np.concatenate(hit_crack).astype(np.int64)
    other = np.concatenate(hit_other).astype(np.int64)
    n = q.size
    order = np.argsort(q, kind="stable")
    q, crack, other = q[order], crack[order], other[order]
    # t at the k-th sorted value (t = q[k]): pixels k.. are crack, pixels ..k-1 use c.
    crack_from = np.concatenate([np.cumsum(crack[::-1])[::-1], [0]])  # #crack-truth in [k, n)
    other_before = np.concatenate([[0], np.cumsum(other)])  # #c-correct in [0, k)
    correct = crack_from + other_before  # index k = 0..n (k = n: t above every q)
    # only the first index of each run of equal q is a reachable threshold
    first = np.ones(n + 1, dtype=bool)
    first[1:n] = q[1:] != q[:-1]
    cand = np.flatnonzero(first)
    k = int(cand[np.argmax(correct[cand])])
    if k == n:
        t = float(min(1.0, q[-1] + 0.5 * (1.0 - q[-1]))) if n else 0.5
    elif k == 0:
        t = float(q[0])
    else:
        t = float(0.5 * (q[k] + q[k - 1]))
    t = float(np.clip(t, 1e-6, 1.0))
    acc = correct[k] / max(n, 1)
    k_half = int(np.searchsorted(q, 0.5, side="left"))
    return ThresholdCalibration(t=t, accuracy=float(acc), accuracy_at_half=float(correct[k_half] / max(n, 1)), n_pixels=int(n))
