"""The U-net of the phase segmentation (paper §2.3.2; DESIGN §6).

A modular U-net (Bertoldo et al. 2021, the paper's [33]): U-depth 5, 32 filters in the first
convolutional layer, dilation factor 4 in every convolution, ``same`` padding everywhere, and
a three-channel softmax output Ŷ (background, solid, crack) with Ŷ(x,1) + Ŷ(x,2) + Ŷ(x,3) = 1.

Architecture (:func:`build_unet`), with ``L = depth − 1`` and ``n = convs_per_level``:

* encoder level ``l = 0 … L``: ``n`` × Conv2D(``filters·2**l``, ``kernel_size``,
  ``dilation_rate=dilation``, ``padding="same"``, ReLU); between levels a 2×2 max pooling
  (stride 2). Level ``L`` is the bottom of the U.
* decoder level ``l = L−1 … 0``: Conv2DTranspose(``filters·2**l``, kernel 2, stride 2,
  linear) — each output pixel comes from exactly one coarse pixel —, concatenation with the
  encoder's level-``l`` features (skip), then ``n`` convolutions as in the encoder. (A
  learnable transposed convolution rather than UpSampling2D + conv: it keeps the
  up-sampling exact on the pooling grid and adds nothing to the receptive field.)
* a 1×1 Conv2D to ``n_classes`` with softmax, computed in float32.

There is no batch normalisation: the paper trains with batch size 1, and without it the
network computes the same function in training and inference. Input height and width must
be multiples of ``2**L`` (:attr:`UNetConfig.multiple`); :func:`predict_tile` pads for that.

Layer names are deterministic (``enc{l}_conv{i}``, ``enc{l}_pool``, ``dec{l}_up``,
``dec{l}_concat``, ``dec{l}_conv{i}``, ``classes``), for ``model.get_layer`` and readable
summaries; the layer order is fixed too, which is what ``.weights.h5`` files rely on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = [
    "UNetConfig",
    "build_unet",
    "receptive_field_radius",
    "measure_receptive_field_radius",
    "model_multiple",
    "predict_tile",
]


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of the U-net; the defaults are the paper's (§2.3.2).

    Attributes
    ----------
    depth : U-depth (number of resolution levels, pooling steps = depth − 1). Paper: 5.
    filters : filters of the first convolutional layer; level ``l`` has ``filters·2**l``.
        Paper: 32.
    dilation : dilation rate of every k×k convolution. Paper: 4.
    kernel_size : k, odd (so that ``same`` padding is symmetric). Default 3.
    convs_per_level : convolutions per level on each side of the U. Default 2.
    n_classes : output channels (softmax). Paper: 3 (background, solid, crack).
    """

    depth: int = 5
    filters: int = 32
    dilation: int = 4
    kernel_size: int = 3
    convs_per_level: int = 2
    n_classes: int = 3

    def __post_init__(self):
        minimum = {"depth": 1, "filters": 1, "dilation": 1, "kernel_size": 1, "convs_per_level": 1,
                   "n_classes": 2}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum[f.name]:
                raise InputError(
                    f"UNetConfig.{f.name}: expected an integer >= {minimum[f.name]}, got {v!r}"
                )
            object.__setattr__(self, f.name, int(v))
        if self.kernel_size % 2 == 0:
            raise InputError(f"UNetConfig.kernel_size: expected an odd integer, got {self.kernel_size}")

    @property
    def multiple(self) -> int:
        """``2**(depth−1)``: input height and width must be multiples of it (px)."""
        return 2 ** (self.depth - 1)

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        """Inverse of :meth:`to_dict`; unknown keys or bad values raise :class:`InputError`."""
        if not isinstance(d, dict):
            raise InputError(f"UNetConfig: expected a dict, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise InputError(f"UNetConfig: unknown key(s) {unknown}; known: {known}")
        return cls(**d)


def build_unet(config: UNetConfig | None = None):
    """The U-net of :class:`UNetConfig` as a functional ``keras.Model`` named ``"unet"``.

    Parameters
    ----------
    config : UNetConfig, optional
        Default ``UNetConfig()`` (the paper's network).

    Returns
    -------
    model : keras.Model
        Input (B, H, W, 1) float32 with H, W multiples of ``config.multiple``; output
        (B, H, W, n_classes) float32 softmax probabilities.
    """
    import keras
    from keras import layers

    config = UNetConfig() if config is None else config
    if not isinstance(config, UNetConfig):
        raise InputError(f"config: expected a UNetConfig, got {type(config).__name__}")
    c = config
    L = c.depth - 1

    def convs(x, n_filters, prefix):
        for i in range(c.convs_per_level):
            x = layers.Conv2D(n_filters, c.kernel_size, dilation_rate=c.dilation, padding="same",
                              activation="relu", name=f"{prefix}_conv{i}")(x)
        return x

    inputs = keras.Input(shape=(None, None, 1), dtype="float32", name="image")
    x = inputs
    skips = []
    for level in range(c.depth):
        x = convs(x, c.filters * 2**level, f"enc{level}")
        if level < L:
            skips.append(x)
            x = layers.MaxPooling2D(pool_size=2, strides=2, name=f"enc{level}_pool")(x)
    for level in range(L - 1, -1, -1):
        x = layers.Conv2DTranspose(c.filters * 2**level, 2, strides=2, padding="valid",
                                   name=f"dec{level}_up")(x)
        x = layers.Concatenate(axis=-1, name=f"dec{level}_concat")([skips[level], x])
        x = convs(x, c.filters * 2**level, f"dec{level}")
    outputs = layers.Conv2D(c.n_classes, 1, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(inputs, outputs, name="unet")


def receptive_field_radius(config: UNetConfig) -> int:
    """Exact receptive-field radius (px) of :func:`build_unet`'s network.

    The largest distance (per axis, i.e. Chebyshev) at which an input pixel can influence an
    output pixel:

    .. math::  R = n · r · (3·2^L − 2) + 2^L − 1,
               \\quad r = \\text{dilation} · (k − 1)/2,\\ L = \\text{depth} − 1,\\ n = \\text{convs\\_per\\_level}.

    Derivation (one axis; offsets relative to the output pixel ``x``): a k×k convolution with
    dilation at level ``l`` (stride ``2**l`` in input pixels) widens the dependence by
    ``r·2**l`` on each side; the encoder runs ``n`` of them at levels 0…L and the decoder ``n``
    at levels 0…L−1, in total ``n·r·(2^{L+1} − 1 + 2^L − 1)``. The deepest path, down to level
    ``L``, is the widest: each 2×2 pooling at level ``l`` adds the offsets {0, 2**l}
    and each kernel-2 stride-2 transposed convolution (output ``m`` ← input ``⌊m/2⌋``) shifts
    by ``−2**l·(bit l of x)``, so together they add ``[−(x mod 2^L), 2^L − 1 − (x mod 2^L)]``,
    whose largest absolute value over ``x`` is ``2^L − 1``. The 1×1 output layer adds nothing.
    ``same`` zero padding only removes dependencies at the border. Paper config: R = 383 px.

    Parameters
    ----------
    config : UNetConfig

    Returns
    -------
    R : int (px)
    """
    L = config.depth - 1
    r = config.dilation * (config.kernel_size - 1) // 2
    return config.convs_per_level * r * (3 * 2**L - 2) + 2**L - 1


def model_multiple(model) -> int:
    """``2**(number of MaxPooling2D layers)``: the multiple the model's input H, W must be."""
    import keras

    n = sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    return 2**n


def _run(model, x: np.ndarray) -> np.ndarray:
    """The model's output for ``x`` as a float32 numpy array: ``predict_on_batch`` when the
    model is compiled (:func:`compile_for_inference`), else ``model(x, training=False)``."""
    import keras

    if getattr(model, "compiled", False):
        out = model.predict_on_batch(x)
    else:
        out = model(x, training=False)
    return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)


def compile_for_inference(model):
    """Compile ``model`` (once) so that :func:`predict_tile` runs it through Keras' compiled
    predict function: XLA on TensorFlow and JAX (``jit_compile="auto"``), eager on torch.

    On this project's 2-core CPU, XLA ran the U-net about 1.5× faster with about 2.7× less
    memory than the eager call, with outputs within 1e-7 (``benchmarks/bench_unet.py``). Each
    new input shape is traced and compiled once per process. Returns ``model``.
    """
    import logging

    # each new tile shape is traced once by design (edge tiles differ): not a user's concern
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if not getattr(model, "compiled", False):
        model.compile(jit_compile="auto")
    return model


def measure_receptive_field_radius(model, *, size: int, delta: float = 1e4, noise: float = 0.1,
                                   seed: int = 0) -> int:
    """Receptive-field radius (px) of a same-grid model, measured by perturbing single pixels.

    The base input is uniform noise in ``[0, noise)`` (seeded); for each offset
    ``ρ = 0 … M−1`` (``M`` = :func:`model_multiple`, so every position relative to the
    pooling grid is tried on both axes) one copy has the pixel ``(c + ρ, c + ρ)`` raised by
    ``delta``, with ``c`` a multiple of ``M`` near the centre. The radius is the largest
    Chebyshev distance from the perturbed pixel to an output pixel whose value changed at all
    (``|Δ| > 0`` in float64 of the float32 outputs, any channel). The perturbation is large
    (default 1e4) so that its effect at the far end of the receptive field, carried by few
    paths, is not lost in float32 rounding. ReLUs that are inactive along every path can cut
    the measured radius below :func:`receptive_field_radius`; it is never above it.

    Parameters
    ----------
    model : keras.Model
        Input (B, H, W, C), output (B, H, W, K) on the same grid.
    size : int
        Edge (px) of the square test input; a multiple of ``M``, large enough that the
        influence does not reach the border (``> 2·R + 2·M`` suffices).
    delta, noise : float
        Perturbation and noise amplitude (in units of the normalised input).
    seed : int
        Seed of the noise.

    Returns
    -------
    radius : int (px)

    Raises
    ------
    InputError
        If ``size`` is not a positive multiple of ``M``, the model changes the grid, or the
        influence reaches the border (``size`` too small).
    """
    m = model_multiple(model)
    size = int(size)
    if size < 2 * m or size % m:
        raise InputError(f"size: expected a multiple of {m} that is >= {2 * m}, got {size}")
    channels = int(model.input.shape[-1])
    rng = np.random.default_rng(seed)
    base = (rng.random((1, size, size, channels)) * noise).astype(np.float32)
    y0 = _run(model, base).astype(np.float64)
    if y0.shape[1:3] != (size, size):
        raise InputError(f"model: output grid {y0.shape[1:3]} differs from the input grid {(size, size)}")
    c = (size // 2 // m) * m
    radius = 0
    for rho in range(m):
        p = c + rho
        if p >= size:
            break
        x = base.copy()
        x[0, p, p, :] += np.float32(delta)
        changed = np.any(_run(model, x).astype(np.float64) != y0, axis=(0, 3))
        ys, xs = np.nonzero(changed)
        if ys.size == 0:
            continue
        if ys.min() == 0 or xs.min() == 0 or ys.max() == size - 1 or xs.max() == size - 1:
            raise InputError(f"size: the influence of one pixel reaches the border of a {size}² input; "
                             "use a larger size")
        radius = max(radius, int(np.max(np.maximum(np.abs(ys - p), np.abs(xs - p)))))
    return radius


def predict_tile(model, tile) -> np.ndarray:
    """Class probabilities Ŷ of one normalised tile (or a batch of tiles).

    Parameters
    ----------
    model : keras.Model
        A U-net from :func:`build_unet`.
    tile : float32 array, (H, W) or (B, H, W)
        Normalised image(s) (:func:`cathodeflow.models.normalise.normalise_image`).

    Returns
    -------
    prob : float32 array, (H, W, n_classes) or (B, H, W, n_classes)

    Notes
    -----
    H and W are padded at the bottom/right by symmetric reflection (``np.pad`` mode
    ``"symmetric"``) to multiples of :func:`model_multiple` and the result is cropped back.
    For tiled inference to equal whole-image inference, tile origins must be multiples of
    that number (the pooling grid) and the halo at least :func:`receptive_field_radius`.
    """
    arr = np.asarray(tile)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise InputError(f"tile: expected a non-empty (H, W) or (B, H, W) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"tile: expected a normalised float array, got dtype {arr.dtype}")
    batch = arr if arr.ndim == 3 else arr[None]
    h, w = batch.shape[1:]
    m = model_multiple(model)
    pad_h, pad_w = -h % m, -w % m
    x = np.pad(batch.astype(np.float32, copy=False), ((0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")
    prob = _run(model, x[..., None])[:, :h, :w, :]
    return prob if arr.ndim == 3 else prob[0]
