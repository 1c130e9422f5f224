"""The SRGAN of the super-resolution step (paper §2.3.1, Fig. 3; DESIGN §5–6).

Generator G (:func:`build_generator`, Fig. 3a, after Ledig et al. 2017), on a low-resolution
image of ``(h, w)`` px, ``h, w`` multiples of :attr:`SRGANConfig.lr_multiple` (2·13 = 26,
the tiling block :data:`~cathodeflow.tiling.geometry.LR_BLOCK_PX`):

* ``in_conv``: Conv k9n64 + PReLU (``in_prelu``);
* ``n_blocks`` residual blocks ``res{i}``: Conv k3n64 – BN – PReLU – Conv k3n64 – BN, plus
  the block's input (skip);
* ``post_conv`` k3n64 – ``post_bn``, plus the output of ``in_prelu`` (global skip);
* ``resize``: the fixed linear resize by ``scale_num / (2·scale_den)`` = 35/26
  (:func:`interpolation_matrix`), ``(h, w) → (h, w)·35/26``;
* ``up_conv`` k3n256 – ``up_shuffle`` (pixel shuffle ×2, depth-to-space) – ``up_prelu``:
  ``(h, w)·35/26 → (h, w)·35/13`` with 256/4 = 64 channels;
* ``out_conv`` k9n1, linear (float32): the super-resolved image Î on the grid η;
* with ``input_skip = 1`` (not in the paper; off by default): plus the input resized by 35/13
  with the same fixed linear interpolation (``input_skip`` layer), so that the network learns
  the residual between a plain interpolation and the high-resolution image (as in VDSR and
  ESRGAN-style generators). On 2 CPU cores this is what makes a small generator beat
  interpolation within a short training run: without it, the first hundreds of steps go into
  learning the identity. The skip reads 2 low-resolution px around each output pixel, within
  the trunk's receptive field, so the halo and tiling are unchanged.

So 26·k × 26·m low-resolution px become exactly 70·k × 70·m high-resolution px (the paper's
"upsampling layer increases the resolution by ½·35/13, followed by a pixel shuffle ×2").
PReLUs share their slope over space (one per channel), initialised at 0.25 (He et al. 2015;
PyTorch's default) rather than Keras' 0, so that no path starts dead.

The resize is a deterministic, exactly specified linear interpolation, not a learnt layer:
output pixel ``j`` has its centre at input coordinate
``x_j = (j + ½)·2·den/num − ½`` (half-pixel centres; input pixel ``i`` has its centre at ``i``),
i.e. ``x_j = (2·(2j+1)·den − num) / (2·num)``, and takes ``(1 − f)·a[i] + f·a[i+1]`` with
``i = ⌊x_j⌋``, ``f = x_j − i`` computed in integer arithmetic (indices clamped to the image,
edge extension). It is applied per axis as a matmul with an ``(n_out, n_in)`` matrix
(:func:`interpolation_matrix`). Because ``f`` and ``i − 26·⌊j/35⌋`` depend only on
``j mod 35``, the weights are bitwise 26-periodic: the resize of a crop that starts at a
multiple of 26 equals the crop of the resize of the whole, except for one output pixel at each
crop edge (which reads one pixel beyond the crop). With ``same`` padding everywhere, tiled
generator output therefore equals whole-image output when tiles start at multiples of 26 and
the halo is at least :func:`srgan_receptive_field_radius` low-resolution px (float tolerance).

Discriminator D (:func:`build_discriminator`, Fig. 3b): Conv k3n64 + LeakyReLU(0.2), then
k3 conv blocks (n64 s2, n128 s1, n128 s2, n256 s1, n256 s2, n512 s1, n512 s2) with BN +
LeakyReLU, Dense 1024 + LeakyReLU, Dense 1 sigmoid (float32), D ∈ (0, 1). Ledig et al.
flatten the last feature map before the dense layers, which ties D to one crop size; here a
**global average pooling** takes its place, so the same D judges any crop (the paper's
96·35/13 px high-resolution crops are not even integer) and Dense 1024 has 512·1024 weights
whatever the crop size.

This module imports Keras only inside its functions (``import cathodeflow.models.srgan``
stays light); the network code uses backend-agnostic Keras 3 (``keras.layers``,
``keras.ops``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from ..config import SR_DEN, SR_NUM
from ..errors import InputError

__all__ = [
    "SRGANConfig",
    "build_generator",
    "build_discriminator",
    "interpolation_matrix",
    "srgan_receptive_field_radius",
    "measure_srgan_receptive_field_radius",
]

#: Initial slope of every PReLU.
PRELU_INIT = 0.25
#: Negative slope of the discriminator's LeakyReLUs (Ledig et al.).
LEAKY_SLOPE = 0.2
#: (filter multiple, stride) of the discriminator's conv blocks after the first conv (Fig. 3b).
DISC_BLOCKS = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))


@dataclass(frozen=True)
class SRGANConfig:
    """Hyper-parameters of the SRGAN; the defaults are the paper's (Fig. 3).

    Attributes
    ----------
    n_blocks : residual blocks of the generator. Paper: 16.
    filters : feature maps of the generator's convolutions. Paper: 64.
    upsample_filters : feature maps of the conv before the pixel shuffle (4 × the channels
        after it). Paper: 256.
    input_kernel, output_kernel : odd kernel sizes of the generator's first and last conv.
        Paper: 9, 9.
    scale_num, scale_den : the overall factor ``scale_num/scale_den`` (resize by
        ``num/(2·den)``, then ×2). Paper: 35/13 (:data:`~cathodeflow.config.SR_NUM`, ``SR_DEN``).
    disc_filters : feature maps of the discriminator's first conv (blocks use 1, 2, 2, 4, 4,
        8, 8 times it). Paper: 64.
    disc_dense : units of the discriminator's hidden dense layer. Paper: 1024.
    input_skip : 1 adds the input, linearly resized by 35/13, to the output (the network
        learns a residual); 0 (the paper) does not.
    """

    n_blocks: int = 16
    filters: int = 64
    upsample_filters: int = 256
    input_kernel: int = 9
    output_kernel: int = 9
    scale_num: int = SR_NUM
    scale_den: int = SR_DEN
    disc_filters: int = 64
    disc_dense: int = 1024
    input_skip: int = 0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            lowest = 0 if f.name in ("n_blocks", "input_skip") else 1
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lowest:
                raise InputError(f"SRGANConfig.{f.name}: expected an integer >= {lowest}, got {v!r}")
            object.__setattr__(self, f.name, int(v))
        for name in ("input_kernel", "output_kernel"):
            if getattr(self, name) % 2 == 0:
                raise InputError(f"SRGANConfig.{name}: expected an odd integer, got {getattr(self, name)}")
        if self.input_skip not in (0, 1):
            raise InputError(f"SRGANConfig.input_skip: expected 0 or 1, got {self.input_skip}")
        if self.upsample_filters % 4:
            raise InputError(f"SRGANConfig.upsample_filters: expected a multiple of 4 (pixel shuffle ×2), "
                             f"got {self.upsample_filters}")

    @property
    def lr_multiple(self) -> int:
        """``2·scale_den``: low-resolution edges must be multiples of it for integer grids."""
        return 2 * self.scale_den

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SRGANConfig":
        """Inverse of :meth:`to_dict`; unknown keys or bad values raise :class:`InputError`."""
        if not isinstance(d, dict):
            raise InputError(f"SRGANConfig: expected a dict, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise InputError(f"SRGANConfig: unknown key(s) {unknown}; known: {known}")
        return cls(**d)


def _taps(j, *, num: int, den: int, ops):
    """Left tap ``i = ⌊x_j⌋`` and weight ``f = x_j − i`` of output pixels ``j`` (int tensor or
    array) for the resize by ``num/(2·den)``; ``ops`` is ``numpy`` or ``keras.ops``."""
    t = 2 * (2 * j + 1) * den - num  # x_j = t / (2·num), exactly
    i = ops.floor_divide(t, 2 * num)
    f = ops.mod(t, 2 * num)
    return i, f


class _NumpyOps:
    """numpy under the few ``keras.ops`` names :func:`_matrix` uses (``cast`` is the only
    one numpy spells differently)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def cast(x, dtype):
        return np.asarray(x).astype(dtype)


def _matrix(n_in, n_out, *, num: int, den: int, ops, dtype):
    """(n_out, n_in) linear-interpolation matrix (see the module docstring), built with
    ``ops`` (:class:`_NumpyOps` or ``keras.ops``) so that the numpy and network versions are
    one code."""
    i, f = _taps(ops.arange(n_out), num=num, den=den, ops=ops)
    w1 = ops.expand_dims(ops.cast(f, dtype) / float(2 * num), 1)
    w0 = 1.0 - w1
    cols = ops.expand_dims(ops.arange(n_in), 0)
    i0 = ops.expand_dims(ops.clip(i, 0, n_in - 1), 1)
    i1 = ops.expand_dims(ops.clip(i + 1, 0, n_in - 1), 1)
    zero = ops.zeros_like(w0)
    return ops.where(cols == i0, w0, zero) + ops.where(cols == i1, w1, zero)


def interpolation_matrix(n_in: int, *, scale_num: int = SR_NUM, scale_den: int = SR_DEN,
                         dtype=np.float32) -> np.ndarray:
    """The generator's fixed resize along one axis, as a matrix (numpy).

    Parameters
    ----------
    n_in : int
        Input length (px), >= 1.
    scale_num, scale_den : int
        The resize factor is ``scale_num / (2·scale_den)`` (35/26 by default).

    Returns
    -------
    M : (n_out, n_in) array of ``dtype``, ``n_out = ⌊n_in·num/(2·den)⌋``
        ``resized = M @ a``: row ``j`` holds ``1 − f`` at column ``⌊x_j⌋`` and ``f`` at
        ``⌊x_j⌋ + 1`` (clamped to ``[0, n_in − 1]``, so rows sum to 1), with
        ``x_j = (j + ½)·2·den/num − ½``. The network layer builds the same matrix with
        ``keras.ops`` by the same code.
    """
    n_in = int(n_in)
    if n_in < 1:
        raise InputError(f"n_in: expected a length >= 1, got {n_in}")
    n_out = n_in * scale_num // (2 * scale_den)
    return _matrix(n_in, n_out, num=int(scale_num), den=int(scale_den), ops=_NumpyOps(), dtype=np.dtype(dtype))


@functools.cache
def _layers():
    """The two custom Keras layers (defined on first use, so that importing this module does
    not import Keras)."""
    import keras
    from keras import ops

    class FixedResize(keras.layers.Layer):
        """Resize (B, H, W, C) by ``num/(2·den)`` per axis with :func:`interpolation_matrix`."""

        def __init__(self, num: int, den: int, **kwargs):
            super().__init__(**kwargs)
            self.num, self.den = int(num), int(den)

        def _n_out(self, n):
            return n * self.num // (2 * self.den)

        def call(self, x):
            h, w = ops.shape(x)[1], ops.shape(x)[2]
            mh = _matrix(h, self._n_out(h), num=self.num, den=self.den, ops=ops, dtype=x.dtype)
            mw = _matrix(w, self._n_out(w), num=self.num, den=self.den, ops=ops, dtype=x.dtype)
            x = ops.einsum("oh,bhwc->bowc", mh, x)
            return ops.einsum("pw,bowc->bopc", mw, x)

        def compute_output_shape(self, input_shape):
            b, h, w, c = input_shape
            return (b, None if h is None else self._n_out(h), None if w is None else self._n_out(w), c)

        def get_config(self):
            return {**super().get_config(), "num": self.num, "den": self.den}

    class PixelShuffle(keras.layers.Layer):
        """Depth-to-space ×r: (B, H, W, r²·C) → (B, r·H, r·W, C), channel ``(di·r + dj)·C + c``
        of input pixel ``(y, x)`` going to output pixel ``(r·y + di, r·x + dj)`` (TensorFlow's
        ``depth_to_space`` order)."""

        def __init__(self, r: int = 2, **kwargs):
            super().__init__(**kwargs)
            self.r = int(r)

        def call(self, x):
            r = self.r
            s = ops.shape(x)
            c = x.shape[-1] // (r * r)
            x = ops.reshape(x, (-1, s[1], s[2], r, r, c))
            x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
            return ops.reshape(x, (-1, s[1] * r, s[2] * r, c))

        def compute_output_shape(self, input_shape):
            b, h, w, c = input_shape
            r = self.r
            return (b, None if h is None else h * r, None if w is None else w * r, c // (r * r))

        def get_config(self):
            return {**super().get_config(), "r": self.r}

    return FixedResize, PixelShuffle


def _check_config(config):
    config = SRGANConfig() if config is None else config
    if not isinstance(config, SRGANConfig):
        raise InputError(f"config: expected an SRGANConfig, got {type(config).__name__}")
    return config


def build_generator(config: SRGANConfig | None = None):
    """The SRGAN generator G_θG of :class:`SRGANConfig` as a ``keras.Model`` named ``"srgan_generator"``.

    Parameters
    ----------
    config : SRGANConfig, optional
        Default ``SRGANConfig()`` (the paper's network).

    Returns
    -------
    model : keras.Model
        Input (B, h, w, 1) float32, a normalised low-resolution image; output
        (B, 2·⌊h·num/(2·den)⌋, 2·⌊w·num/(2·den)⌋, 1) float32, i.e. (h, w)·35/13 exactly when h
        and w are multiples of :attr:`SRGANConfig.lr_multiple` (26). Layer names are fixed
        (see the module docstring), so ``.weights.h5`` files match by order.
    """
    import keras
    from keras import layers

    c = _check_config(config)
    FixedResize, PixelShuffle = _layers()

    def prelu(name):
        return layers.PReLU(alpha_initializer=keras.initializers.Constant(PRELU_INIT), shared_axes=[1, 2],
                            name=name)

    def conv(n, k, name):
        return layers.Conv2D(n, k, padding="same", name=name)

    inputs = keras.Input(shape=(None, None, 1), dtype="float32", name="image_lr")
    x0 = prelu("in_prelu")(conv(c.filters, c.input_kernel, "in_conv")(inputs))
    x = x0
    for i in range(c.n_blocks):
        y = conv(c.filters, 3, f"res{i}_conv0")(x)
        y = prelu(f"res{i}_prelu")(layers.BatchNormalization(name=f"res{i}_bn0")(y))
        y = layers.BatchNormalization(name=f"res{i}_bn1")(conv(c.filters, 3, f"res{i}_conv1")(y))
        x = layers.Add(name=f"res{i}_add")([x, y])
    x = layers.BatchNormalization(name="post_bn")(conv(c.filters, 3, "post_conv")(x))
    x = layers.Add(name="global_add")([x0, x])
    x = FixedResize(c.scale_num, c.scale_den, name="resize")(x)
    x = PixelShuffle(2, name="up_shuffle")(conv(c.upsample_filters, 3, "up_conv")(x))
    x = prelu("up_prelu")(x)
    # With the input skip, out_conv starts at zero, so G starts as the plain interpolation.
    init = "zeros" if c.input_skip else "glorot_uniform"
    outputs = layers.Conv2D(1, c.output_kernel, padding="same", dtype="float32", kernel_initializer=init,
                            name="out_conv")(x)
    if c.input_skip:
        skip = FixedResize(2 * c.scale_num, c.scale_den, name="input_skip")(inputs)
        outputs = layers.Add(name="input_add", dtype="float32")([outputs, skip])
    return keras.Model(inputs, outputs, name="srgan_generator")


def build_discriminator(config: SRGANConfig | None = None):
    """The SRGAN discriminator D_θD (Fig. 3b) as a ``keras.Model`` named ``"srgan_discriminator"``.

    Parameters
    ----------
    config : SRGANConfig, optional
        Uses ``disc_filters`` and ``disc_dense``; default ``SRGANConfig()``.

    Returns
    -------
    model : keras.Model
        Input (B, H, W, 1) float32 high-resolution (or super-resolved) crops of any size
        (>= 1 px); output (B, 1) float32 in (0, 1): the probability that a crop is a real
        high-resolution image. Global average pooling precedes the dense layers (see the
        module docstring).
    """
    import keras
    from keras import layers

    c = _check_config(config)
    inputs = keras.Input(shape=(None, None, 1), dtype="float32", name="image_hr")
    x = layers.Conv2D(c.disc_filters, 3, padding="same", name="d_conv0")(inputs)
    x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name="d_act0")(x)
    for i, (mult, stride) in enumerate(DISC_BLOCKS, start=1):
        x = layers.Conv2D(c.disc_filters * mult, 3, strides=stride, padding="same", name=f"d_conv{i}")(x)
        x = layers.BatchNormalization(name=f"d_bn{i}")(x)
        x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"d_act{i}")(x)
    x = layers.GlobalAveragePooling2D(name="d_pool")(x)
    x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name="d_dense_act")(layers.Dense(c.disc_dense, name="d_dense")(x))
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="d_prob")(x)
    return keras.Model(inputs, outputs, name="srgan_discriminator")


def _head_extent(config: SRGANConfig, J: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For high-resolution pixels ``J`` (global indices): the low-resolution pixel ``p_J`` its
    centre lies in and the first/last input pixel of the generator's *head* (everything after
    the global skip) that it depends on, ignoring image borders."""
    num, den = config.scale_num, config.scale_den
    ro = (config.output_kernel - 1) // 2
    m_lo = np.floor_divide(J - ro, 2) - 1  # out_conv, pixel shuffle, up_conv (k3)
    m_hi = np.floor_divide(J + ro, 2) + 1
    lo = _taps(m_lo, num=num, den=den, ops=np)[0]  # the resize reads ⌊x_m⌋ and ⌊x_m⌋ + 1
    hi = _taps(m_hi, num=num, den=den, ops=np)[0] + 1
    p = np.floor_divide((2 * J + 1) * den, 2 * num)  # centre (J + ½)·den/num in LR px
    return p, lo, hi


def srgan_receptive_field_radius(config: SRGANConfig | None = None) -> int:
    """Exact receptive-field radius of the generator, in low-resolution px.

    ``R`` is the smallest integer such that every high-resolution output pixel ``J`` depends
    only on input pixels within ``R`` (per axis) of the low-resolution pixel
    ``p_J = ⌊(J + ½)·den/num⌋`` that its centre lies in. A chunk of low-resolution pixels with
    a halo of ``R`` px therefore computes its own high-resolution pixels exactly.

    .. math:: R = r_{trunk} + \\max_J \\max(p_J − lo_J,\\ hi_J − p_J),
              \\quad r_{trunk} = (k_{in} − 1)/2 + 2·n_{blocks} + 1

    where the trunk (first conv, two k3 convs per residual block, the post-block k3 conv;
    BN, PReLU and the skips are pointwise) reaches ``r_trunk`` px, and ``[lo_J, hi_J]`` is
    what the head reads on the trunk's grid: ``out_conv`` reaches ``ro = (k_out − 1)/2``
    high-resolution px, the pixel shuffle maps ``J`` to ``⌊J/2⌋``, ``up_conv`` adds one
    pixel of the intermediate grid, and the resize reads ``⌊x_m⌋`` and ``⌊x_m⌋ + 1`` (both
    weights are non-zero for 35/26). The head is periodic in ``J`` with period ``2·num``
    (70 px ↔ 26 low-resolution px), so the maximum is taken over one period. Paper config:
    R = 40 px (37 of trunk + 3 of head).

    Parameters
    ----------
    config : SRGANConfig, optional

    Returns
    -------
    R : int (low-resolution px)
    """
    c = _check_config(config)
    J = np.arange(2 * c.scale_num, dtype=np.int64)
    p, lo, hi = _head_extent(c, J)
    r_trunk = (c.input_kernel - 1) // 2 + 2 * c.n_blocks + 1
    return int(r_trunk + max(np.max(p - lo), np.max(hi - p)))


def measure_srgan_receptive_field_radius(model, *, size: int, scale_num: int = SR_NUM,
                                         scale_den: int = SR_DEN, delta: float = 1e4,
                                         noise: float = 0.1, seed: int = 0) -> int:
    """Receptive-field radius (low-resolution px) of a generator, measured by perturbing pixels.

    The base input is uniform noise in ``[0, noise)`` (seeded). For every phase
    ``ρ = 0 … 2·den − 1`` of the 26-px period, one copy has the pixel ``(c + ρ, c + ρ)``
    raised by ``delta`` (``c`` a multiple of 26 near the centre); each runs alone (batch
    of one) in inference mode. The radius is the largest distance (per axis) from the perturbed
    pixel ``q`` to the low-resolution pixel ``p_J = ⌊(J + ½)·den/num⌋`` of a high-resolution
    output pixel ``J`` whose value changed at all. Inactive paths could make it smaller than
    :func:`srgan_receptive_field_radius`, never larger.

    Parameters
    ----------
    model : keras.Model
        A generator: (B, h, w, 1) → (B, h·num/den, w·num/den, 1).
    size : int
        Edge (low-resolution px) of the square test input, a multiple of ``2·den``, larger
        than about ``2·R + 52``.
    scale_num, scale_den : int
        The model's factor.
    delta, noise, seed : perturbation, noise amplitude, seed.

    Returns
    -------
    radius : int (low-resolution px)

    Raises
    ------
    InputError
        If ``size`` is not a positive multiple of ``2·den``, the output grid is not
        ``size·num/den``, or the influence reaches the border (``size`` too small).
    """
    from keras import ops

    period = 2 * scale_den
    size = int(size)
    if size < 2 * period or size % period:
        raise InputError(f"size: expected a multiple of {period} that is >= {2 * period}, got {size}")
    rng = np.random.default_rng(seed)
    base = (rng.random((1, size, size, 1)) * noise).astype(np.float32)
    c = (size // 2 // period) * period
    n_hr = size * scale_num // scale_den

    def run(a):  # one image per call: oneDNN may round differently at other batch positions
        return np.asarray(ops.convert_to_numpy(model(a, training=False)), dtype=np.float64)[0]

    y0 = run(base)
    if y0.shape[:2] != (n_hr, n_hr):
        raise InputError(f"model: output grid {y0.shape[:2]} is not the input's ·{scale_num}/{scale_den} "
                         f"({n_hr}, {n_hr})")
    p_of = np.floor_divide((2 * np.arange(n_hr) + 1) * scale_den, 2 * scale_num)
    radius = 0
    for rho in range(period):
        q = c + rho
        x = base.copy()
        x[0, q, q, 0] += np.float32(delta)
        rows, cols = np.nonzero(np.any(run(x) != y0, axis=-1))
        if rows.size == 0:
            continue
        if rows.min() == 0 or cols.min() == 0 or rows.max() == n_hr - 1 or cols.max() == n_hr - 1:
            raise InputError(f"size: the influence of one pixel reaches the border of a {size}² input; "
                             "use a larger size")
        radius = max(radius, int(np.max(np.abs(p_of[rows] - q))), int(np.max(np.abs(p_of[cols] - q))))
    return radius
