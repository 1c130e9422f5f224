"""Losses of the two networks: the U-net's weighted categorical cross-entropy (paper §2.3.2,
after its ref. [8]) and the SRGAN's perceptual and adversarial losses (§2.3.1, eq. 4–5).

Cracks cover about 1 % of the pixels, so an unweighted cross-entropy is minimised by never
predicting "crack". Each pixel's term is weighted by its true class's weight, and the weights
come from inverse class frequencies (:func:`class_weights_from_counts`).

SRGAN (eq. 4): ``min_G max_D E[PL(G(J_low), J_high)] + λ·(E[log D(J_high)] + E[log(1 − D(G(J_low)))])``.
The paper's text prints the adversarial weight as "2 (E[log D] E[log(1−D)])", with no sign
between the two expectations; we read it as the weighted sum of Ledig et al. (2017, the
paper's SRGAN source), whose weight is λ = 10⁻³ (:data:`ADVERSARIAL_WEIGHT`, a parameter of
:func:`~cathodeflow.models.training.fit_srgan`; pass 2 for the literal reading). As in Ledig
et al., the generator minimises the non-saturating ``−log D(G(J_low))`` instead of
``log(1 − D(G(J_low)))`` (same fixed point, usable gradients early on), and D minimises the
binary cross-entropy of real (label 1) and super-resolved (label 0) crops, i.e. maximises
the bracket of eq. 4 (:func:`adversarial_bce`). PL (eq. 5) is :func:`perceptual_loss`: the MSE
of VGG19 ``block2_conv2`` features (:func:`vgg19_features`, weights only from a file the user
gives), of another Keras model's features (e.g. the trained U-net's encoder), or of the
pixels; the choice is explicit, never switched silently.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = [
    "weighted_categorical_crossentropy",
    "class_weights_from_counts",
    "LOG_EPS",
    "ADVERSARIAL_WEIGHT",
    "VGG_LAYER",
    "pixel_mse",
    "perceptual_loss",
    "vgg19_features",
    "adversarial_bce",
]

#: Probabilities are clipped to [LOG_EPS, 1] before the logarithm (Keras' default epsilon).
LOG_EPS = 1e-7
#: λ of eq. 4, our reading (Ledig et al. 2017): weight of the generator's adversarial term.
ADVERSARIAL_WEIGHT = 1e-3
#: The VGG19 layer of eq. 5: "the 2nd convolutional layer before the 2nd maxpooling layer".
VGG_LAYER = "block2_conv2"
#: ImageNet means (B, G, R) subtracted by VGG19's "caffe" preprocessing, on a 0–255 scale.
_VGG_MEAN_BGR = (103.939, 116.779, 123.68)


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


def pixel_mse(y_true, y_pred):
    """Mean squared error over all pixels (and channels) of a batch; ``keras.ops`` only.

    Parameters
    ----------
    y_true, y_pred : (B, H, W, C) or (B, H, W) tensors or arrays of the same shape

    Returns
    -------
    loss : scalar tensor
    """
    from keras import ops

    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    y_true = ops.reshape(y_true, ops.shape(y_pred))
    return ops.mean(ops.square(y_pred - y_true))


def perceptual_loss(*, content: str = "features", feature_model=None):
    """The content loss PL of eq. 5 as a Keras loss ``loss(y_true, y_pred) -> scalar``.

    Parameters
    ----------
    content : {"features", "mse"}
        ``"features"``: ``MSE(F(y_true), F(y_pred))`` with ``F = feature_model`` (eq. 5 with
        ``F`` = VGG19 ``block2_conv2``, :func:`vgg19_features`, or any other fixed Keras
        model, e.g. the trained U-net's encoder). ``"mse"``: the pixel MSE (the alternative
        the paper mentions; also SRResNet pre-training).
    feature_model : keras.Model, optional
        Required for ``"features"``, refused for ``"mse"``; (B, H, W, 1) → (B, h, w, K). It is
        frozen (``trainable = False``) and called in inference mode.

    Returns
    -------
    loss : callable ``(y_true, y_pred) -> scalar tensor``
        ``y_true``, ``y_pred``: (B, H, W, 1) (``y_true`` may be (B, H, W)).

    Raises
    ------
    InputError
        If ``content`` is unknown or ``feature_model`` does not fit it.
    """
    from keras import ops

    if content == "mse":
        if feature_model is not None:
            raise InputError("feature_model: given with content='mse', which uses none; "
                             "pass content='features' to use it")
        return pixel_mse
    if content != "features":
        raise InputError(f"content: expected 'features' or 'mse', got {content!r}")
    if feature_model is None or not callable(feature_model):
        raise InputError(f"feature_model: content='features' needs a Keras model (e.g. vgg19_features(path)), "
                         f"got {type(feature_model).__name__}")
    feature_model.trainable = False

    def feature_mse(y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.reshape(ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype), ops.shape(y_pred))
        f_true = feature_model(y_true, training=False)
        f_pred = feature_model(y_pred, training=False)
        return ops.mean(ops.square(ops.cast(f_pred, "float32") - ops.cast(f_true, "float32")))

    feature_mse.__name__ = "feature_mse"
    return feature_mse


def vgg19_features(weights_path, *, layer: str = VGG_LAYER):
    """VGG19 features of a grey image (eq. 5), with ImageNet weights read from a local file.

    The grey input in [0, 1] (normalised intensities) is scaled to 0–255, repeated to three
    channels and centred by the ImageNet channel means ("caffe" preprocessing, as
    ``keras.applications.vgg19.preprocess_input``), then run through VGG19 up to ``layer``.

    Parameters
    ----------
    weights_path : path
        The Keras VGG19 weights without the classifier ("no top", e.g.
        ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` from the Keras cache
        ``~/.keras/models/``). Never downloaded: a missing or unusable file is an error.
    layer : str
        Layer whose output are the features. Paper: ``"block2_conv2"`` (:data:`VGG_LAYER`).

    Returns
    -------
    model : keras.Model
        (B, H, W, 1) float32 → (B, H/2, W/2, 128) for ``block2_conv2`` (H, W even), frozen.

    Raises
    ------
    InputError
        If the file does not exist, does not load into VGG19 (no top), or ``layer`` is not
        a VGG19 layer.
    """
    from pathlib import Path

    import keras
    from keras import ops

    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise InputError(f"weights_path: VGG19 weights file {path} not found; expected the Keras VGG19 'notop' "
                         "ImageNet weights (vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5)")
    try:
        vgg = keras.applications.VGG19(include_top=False, weights=str(path), input_shape=(None, None, 3))
    except Exception as e:  # h5py/Keras raise many types for a file that is not these weights
        raise InputError(f"weights_path: {path} does not load into VGG19 without top "
                         f"({type(e).__name__}); expected vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5") from None
    names = [lay.name for lay in vgg.layers]
    if layer not in names:
        raise InputError(f"layer: {layer!r} is not a VGG19 layer; known: {names}")
    trunk = keras.Model(vgg.input, vgg.get_layer(layer).output)
    trunk.trainable = False
    mean = np.asarray(_VGG_MEAN_BGR, dtype=np.float32)
    inputs = keras.Input(shape=(None, None, 1), dtype="float32", name="image")
    x = keras.layers.Lambda(lambda t: ops.repeat(t * 255.0, 3, axis=-1) - mean, name="vgg_preprocess")(inputs)
    model = keras.Model(inputs, trunk(x), name=f"vgg19_{layer}")
    model.trainable = False
    return model


def adversarial_bce(y_true, y_pred):
    """Binary cross-entropy of discriminator outputs, the adversarial part of eq. 4.

    ``mean(−y·log D − (1 − y)·log(1 − D))`` with D clipped to ``[LOG_EPS, 1 − LOG_EPS]``.
    For D on a batch of ``n`` real crops (label 1) and ``n`` super-resolved ones (label 0)
    this is ``−½ (E[log D(J_high)] + E[log(1 − D(G(J_low)))])``: minimising it maximises
    eq. 4 over θ_D. For the generator, on super-resolved crops with label 1, it is
    ``−E[log D(G(J_low))]`` (the non-saturating generator loss).

    Parameters
    ----------
    y_true : (B,) or (B, 1) labels in [0, 1]
    y_pred : (B, 1) D outputs in (0, 1)

    Returns
    -------
    loss : scalar tensor
    """
    from keras import ops

    d = ops.clip(ops.convert_to_tensor(y_pred), LOG_EPS, 1.0 - LOG_EPS)
    y = ops.reshape(ops.cast(ops.convert_to_tensor(y_true), d.dtype), ops.shape(d))
    return ops.mean(-y * ops.log(d) - (1.0 - y) * ops.log(1.0 - d))
