"""Weighted categorical cross-entropy of the U-net (paper §2.3.2, after its ref. [8]).

Cracks cover about 1 % of the pixels, so an unweighted cross-entropy is minimised by never
predicting "crack". Each pixel's term is weighted by its true class's weight, and the weights
come from inverse class frequencies (:func:`class_weights_from_counts`).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["weighted_categorical_crossentropy", "class_weights_from_counts", "LOG_EPS"]

#: Probabilities are clipped to [LOG_EPS, 1] before the logarithm (Keras' default epsilon).
LOG_EPS = 1e-7


def _check_weights(class_weights) -> np.ndarray:
    w = np.asarray(class_weights, dtype=np.float64)
    if w.ndim != 1 or w.size < 2 or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise InputError(f"class_weights: expected >= 2 finite positive numbers, got {class_weights!r}")
    return w


def weighted_categorical_crossentropy(class_weights):
    """A Keras loss: the class-weighted mean cross-entropy over all pixels of a batch.

    .. math:: \\mathcal{L} = \\frac{\\sum_x w_{y(x)} \\,(-\\log \\hat{Y}(x, y(x)))}{\\sum_x w_{y(x)}}

    i.e. the mean over pixels of ``w·(−log p_true)`` divided by the mean of ``w``, with
    ``w = class_weights[y_true]`` and ``p_true`` clipped to ``[LOG_EPS, 1]``. Dividing by
    the mean weight keeps the loss on the scale of an unweighted cross-entropy whatever the
    class mix of a batch; the whole batch is one sum (for batch size 1, the paper's, this is
    the per-image loss).

    Parameters
    ----------
    class_weights : sequence of K positive floats
        Weight of each class (0 background, 1 solid, 2 crack for the U-net).

    Returns
    -------
    loss : callable ``loss(y_true, y_pred) -> scalar tensor``
        ``y_true``: integer labels in ``0 … K−1``, (B, H, W) or (B, H, W, 1), any numeric
        dtype (Keras passes them as float32); ``y_pred``: probabilities (B, H, W, K).
        Uses ``keras.ops`` only, so it runs on every Keras backend.
    """
    from keras import ops

    weights = _check_weights(class_weights)
    k = int(weights.size)
    w_const = weights.astype(np.float32)

    def weighted_cce(y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        labels = ops.cast(ops.round(ops.convert_to_tensor(y_true)), "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = ops.squeeze(labels, axis=-1)
        onehot = ops.one_hot(labels, k, dtype=y_pred.dtype)
        w = ops.sum(onehot * ops.convert_to_tensor(w_const, dtype=y_pred.dtype), axis=-1)
        p_true = ops.sum(onehot * ops.clip(y_pred, LOG_EPS, 1.0), axis=-1)
        return ops.sum(w * -ops.log(p_true)) / ops.sum(w)

    weighted_cce.__name__ = "weighted_cce"
    return weighted_cce


def class_weights_from_counts(counts, *, max_ratio: float = 10.0) -> np.ndarray:
    """Inverse-frequency class weights, clipped to ``max_ratio`` and normalised to mean 1.

    ``w_c ∝ N / n_c``; then ``w_c ← min(w_c, max_ratio · min_c w_c)`` (so the largest weight
    is at most ``max_ratio`` times the smallest; a class with no pixels gets that cap); then
    ``w ← w / mean(w)``.

    Parameters
    ----------
    counts : sequence of K non-negative numbers
        Pixels per class in the training data.
    max_ratio : float
        Largest allowed ratio of two weights, >= 1. Default 10.

    Returns
    -------
    weights : float64 array, (K,), mean 1
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size < 2 or not np.all(np.isfinite(c)) or np.any(c < 0) or not np.any(c > 0):
        raise InputError(f"counts: expected >= 2 finite non-negative class counts, not all zero; got {counts!r}")
    max_ratio = float(max_ratio)
    if not max_ratio >= 1.0:
        raise InputError(f"max_ratio: expected a number >= 1, got {max_ratio}")
    with np.errstate(divide="ignore"):
        w = np.where(c > 0, c.sum() / c, np.inf)
    w = np.minimum(w, max_ratio * w.min())
    return w / w.mean()
