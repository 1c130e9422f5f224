"""``cathodeflow train unet``: training the phase-segmentation U-net (paper §2.3.2).

The paper trains on 3 annotated images (1 for validation), with 1024² crops, batch 1, Adam
1e-4, the weighted categorical cross-entropy, validation on 50 crops every 200 steps and
early stopping after 10 checks without improvement, best weights restored; then t of eq. 7
is chosen for maximal accuracy. This module runs that protocol (:data:`PAPER`) on

(a) synthetic studies from :mod:`cathodeflow.synth` with style randomisation: each sample is
    one scene rendered by a randomly drawn microscope style of the training families, seen
    either as the SR stage's output for its low-resolution image (what the stage receives in
    ``run``) or as the true high-resolution image, with the phase truth on the 14.3 nm grid;
(b) a user's annotated images (image + phase map pairs, e.g. from ilastik or Dragonfly);

and fine-tunes existing weights when asked. Augmentation (not in the paper, added for
generalisation): flips and 90° rotations (exact for the labels), a random gamma, then a
degradation (:func:`degrade`) that spans low-dose, low-contrast acquisitions: contrast
compressed toward the mean, additive noise of a log-uniformly drawn σ (sometimes signal-
dependent, Poisson-like), sometimes a blur; the crop is then normalised again as ``run``
normalises an image, and a small contrast and brightness jitter follows.

Validation for early stopping uses images of the *training* style families with other seeds;
the held-out families (:data:`cathodeflow.synth.training.FAMILIES_HELD_OUT`) are never seen in
training or early stopping and serve only to score generalisation (``benchmarks``).
After training, t is calibrated on the validation images (:mod:`cathodeflow.stages.threshold`)
and stored with the weights.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import ETA_UM, read_train_toml
from ..errors import InputError

#: The paper's architecture and protocol (§2.3.2); the small shipped configuration is in
#: ``cathodeflow/models/weights/<name>.train.toml``.
PAPER_ARCHITECTURE = {"depth": 5, "filters": 32, "dilation": 4, "kernel_size": 3,
                      "convs_per_level": 2, "n_classes": 3}


@dataclass(frozen=True)
class TrainUNetConfig:
    """Everything that decides a training run (a TOML file's ``[unet]`` and ``[training]``).

    Attributes
    ----------
    architecture : :class:`cathodeflow.models.unet.UNetConfig` fields (paper values default).
    max_steps, val_every, patience : the loop (paper: open-ended, 200, 10).
    max_seconds : wall-clock budget of the training steps (s), or None (default): see
        :class:`cathodeflow.models.training.TrainLoopConfig`.
    crop_px, batch_size, learning_rate : paper 1024, 1, 1e-4.
    n_val_crops : validation crops (paper 50), fixed for the whole run.
    class_weight_max : inverse-frequency class weights are clipped to this ratio.
    n_train_images, n_val_images : synthetic scenes generated for training / validation
        (each gives an SR and a high-res image); 0 train images = annotations only.
    shape_lr : low-resolution shape of a synthetic scene (multiples of 13).
    families : style families to train on (default: all but the held-out ones).
    sr_fraction : share of samples that are the SR stage's output (the rest true high-res).
    sr_weights : SRGAN generator weights (registry name or path): the SR view of each scene is
        that generator's output (what ``run --sr-method srgan`` gives the U-net); default
        None: the baseline interpolation (``--sr-method baseline``).
    augment : flips, rotations, intensity jitter and the degradation below.
    noise_min, noise_max : σ of the additive noise on normalised intensities (at mid-grey
        0.5 for signal-dependent noise), drawn log-uniformly in [noise_min, noise_max];
        default 0.002–0.04 (the shipped weights' level); 0–0 turns the noise off. A
        low-dose setting: 0.005–0.25 (per-pixel SNR down to ~1 for the full contrast),
        with ``poisson_prob`` 0.5, ``contrast_min`` 0.3, ``blur_prob`` 0.3
        (``unet-small-v2.train.toml``: better on noisy super-resolved input, worse crack
        IoU on clean high-res input, measured on held-out families; not the default).
    poisson_prob : share of crops whose noise is signal-dependent, σ·sqrt(x / 0.5)
        (shot noise); default 0.
    contrast_min : contrast is compressed toward the crop's mean by a factor drawn
        log-uniformly in [contrast_min, 1] (before the noise); default 1 (off).
    blur_prob : share of crops blurred after the noise (Gaussian, σ 0.5–1.5 px: correlated
        noise as in an interpolated low-resolution image); default 0.
    noise_on_lr_grid : the added noise of a crop of the SR stage's output is drawn on the
        low-resolution grid (38.5 nm, 13/35 of the crop's side) and brought to the crop's
        grid by the baseline SR stage's cubic interpolation, as an acquisition's noise
        reaches the network in ``run``: blobs of about 35/13 px that look like short dark
        lines, where white noise would be per pixel. σ is the low-resolution noise's σ.
        High-res crops keep white noise. Default False (white noise on every crop).
    degrade_prob : share of training crops that go through :func:`degrade` at all (the rest
        keep the renderer's own noise); default 1. Below 1 the network keeps seeing clean
        crops, so a wide degradation need not cost accuracy on clean input.
    val_degraded : validation crops are augmented (and degraded) like training crops, from a
        fixed random stream, so that early stopping weighs the degraded acquisitions the
        network is trained for; default False (clean validation crops, as in the paper).
    curve_prob : share of training crops whose intensities go through a random monotone
        transfer curve (:func:`random_curve`) before :func:`degrade`: the grey levels of the
        phases relative to each other change (binder almost as bright as the solid, or far
        darker; cracks near black or near grey), their order does not, so the network must
        read shape and texture rather than one renderer's levels; default 0 (off).
    curve_strength : the largest ratio between the slopes of two pieces of that curve (≥ 1);
        default 4.
    seed : everything random in the run.
    pixel_size_um : the grid the network is trained for (η = 14.3 nm).
    """

    architecture: dict = field(default_factory=lambda: dict(PAPER_ARCHITECTURE))
    max_steps: int = 100_000
    val_every: int = 200
    patience: int = 10
    max_seconds: float | None = None
    crop_px: int = 1024
    batch_size: int = 1
    learning_rate: float = 1e-4
    n_val_crops: int = 50
    class_weight_max: float = 10.0
    n_train_images: int = 48
    n_val_images: int = 8
    shape_lr: tuple[int, int] = (390, 520)
    families: tuple[str, ...] | None = None
    sr_fraction: float = 0.5
    sr_weights: str | None = None
    augment: bool = True
    noise_min: float = 0.002
    noise_max: float = 0.04
    poisson_prob: float = 0.0
    contrast_min: float = 1.0
    blur_prob: float = 0.0
    noise_on_lr_grid: bool = False
    degrade_prob: float = 1.0
    val_degraded: bool = False
    curve_prob: float = 0.0
    curve_strength: float = 4.0
    seed: int = 0
    pixel_size_um: float = ETA_UM

    def __post_init__(self):
        for k in ("max_steps", "val_every", "patience", "crop_px", "batch_size", "n_val_crops"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"training.{k} must be a positive integer, got {v!r}")
        if self.max_seconds is not None and (isinstance(self.max_seconds, bool)
                                             or not isinstance(self.max_seconds, (int, float))
                                             or not self.max_seconds > 0):
            raise InputError(f"training.max_seconds must be a number > 0, got {self.max_seconds!r}")
        if not 0 <= self.sr_fraction <= 1:
            raise InputError(f"training.sr_fraction must be in [0, 1], got {self.sr_fraction}")
        for k in ("poisson_prob", "blur_prob", "degrade_prob", "curve_prob"):
            if not 0 <= getattr(self, k) <= 1:
                raise InputError(f"training.{k} must be in [0, 1], got {getattr(self, k)}")
        if not (0 < self.noise_min <= self.noise_max or self.noise_min == self.noise_max == 0):
            raise InputError(f"training.noise_min, noise_max must satisfy 0 < noise_min <= noise_max (or both 0), "
                             f"got {self.noise_min}, {self.noise_max}")
        for k in ("augment", "noise_on_lr_grid", "val_degraded"):
            if not isinstance(getattr(self, k), bool):
                raise InputError(f"training.{k} must be true or false, got {getattr(self, k)!r}")
        if not 0 < self.contrast_min <= 1:
            raise InputError(f"training.contrast_min must be in (0, 1], got {self.contrast_min}")
        if isinstance(self.curve_strength, bool) or not isinstance(self.curve_strength, (int, float)) \
                or not 1 <= self.curve_strength < float("inf"):
            raise InputError(f"training.curve_strength must be a number >= 1, got {self.curve_strength!r}")
        object.__setattr__(self, "shape_lr", tuple(int(v) for v in self.shape_lr))
        if self.families is not None:
            object.__setattr__(self, "families", tuple(self.families))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_train_config(path: str | Path | None = None, **overrides) -> TrainUNetConfig:
    """A :class:`TrainUNetConfig` from a TOML file (``[unet]``: architecture, ``[training]``:
    the rest), then ``overrides``; unknown keys are named in the error."""
    values: dict = {}
    if path is not None:
        known = {f.name for f in dataclasses.fields(TrainUNetConfig)} - {"architecture"}
        values, arch = read_train_toml(path, arch_table="unet", known=known)
        if arch is not None:
            from ..models.unet import UNetConfig

            values["architecture"] = UNetConfig.from_dict(dict(PAPER_ARCHITECTURE) | arch).to_dict()
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainUNetConfig(**values)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One training image: normalised intensities and the phase truth on the same grid."""

    image: np.ndarray  # (H, W) float32, normalised
    phase: np.ndarray  # (H, W) uint8
    family: str
    source: str  # 'sr', 'hr' or 'annotated'


def _normalise(img: np.ndarray) -> np.ndarray:
    from ..models.normalise import intensity_range, normalise_image

    lo, hi = intensity_range(img)
    return normalise_image(img, lo=lo, hi=hi)


def _synthetic_pair(args) -> list[Sample]:
    """Both views of one synthetic scene (run in a worker process); the SR view by the SRGAN
    of ``sr_weights`` when given, else by the baseline interpolation."""
    seed, family, shape_lr, sr_weights = args
    from ..stages.superres import superres_baseline
    from ..synth.training import make_training_pair

    pair = make_training_pair(seed, family=family, shape_lr=shape_lr)
    if sr_weights is None:
        sr = superres_baseline(pair.lr)
    else:
        from ..stages.srgan import srgan_superres

        sr = srgan_superres(pair.lr, weights=sr_weights)
    return [Sample(_normalise(sr), pair.phase, family, "sr"),
            Sample(_normalise(pair.hr), pair.phase, family, "hr")]


def synthetic_samples(n: int, *, families, shape_lr, seed: int, processes: int | None = None,
                      sr_weights=None) -> list[Sample]:
    """``n`` synthetic scenes (SR and high-res view each), families drawn in turn; the SR view
    by the SRGAN of ``sr_weights`` when given. Made in ``processes`` worker processes (default:
    the cores this process may use, CPU affinity and cgroup quota counted); the scenes do not
    depend on it."""
    from concurrent.futures import ProcessPoolExecutor

    from .cluster import n_local_workers

    if processes is None:
        processes = n_local_workers()

    jobs = [([int(seed), 7919, i], families[i % len(families)], shape_lr, sr_weights) for i in range(int(n))]
    if processes > 1 and n > 1:
        with ProcessPoolExecutor(processes) as pool:
            parts = list(pool.map(_synthetic_pair, jobs))
    else:
        parts = [_synthetic_pair(j) for j in jobs]
    return [s for p in parts for s in p]


def annotated_samples(pairs) -> list[Sample]:
    """A user's (image file, phase-map file) pairs; phase values must be 0/1/2."""
    from ..io.phasefile import read_phase_file, validate_phase
    from ..io.sem import read_sem

    out = []
    for image_path, phase_path in pairs:
        im = read_sem(image_path, crop_databar=False)
        ph = validate_phase(np.asarray(read_phase_file(phase_path)), name=str(phase_path))
        if ph.shape != im.data.shape:
            raise InputError(f"{phase_path}: annotation shape {ph.shape} does not match the image "
                             f"{image_path} of shape {im.data.shape}")
        out.append(Sample(_normalise(im.data), ph, "annotated", "annotated"))
    return out


def _crop(sample: Sample, rng, crop: int):
    H, W = sample.phase.shape
    ch, cw = min(crop, H), min(crop, W)
    y = int(rng.integers(0, H - ch + 1))
    x = int(rng.integers(0, W - cw + 1))
    return sample.image[y:y + ch, x:x + cw], sample.phase[y:y + ch, x:x + cw]


def _log_uniform(rng, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if lo < hi else float(lo)


def degrade(x: np.ndarray, rng, cfg: TrainUNetConfig, *, lr_grid: bool = False) -> np.ndarray:
    """A low-dose / low-contrast acquisition of a normalised image (not normalised again).

    Contrast compressed toward the mean by c ~ log-U[``cfg.contrast_min``, 1], then noise
    σ·n with σ ~ log-U[``cfg.noise_min``, ``cfg.noise_max``] and n standard normal (or, with
    ``lr_grid``, :func:`lr_grid_noise`), scaled by sqrt(max(x, 0) / 0.5) with probability
    ``cfg.poisson_prob`` (shot noise; σ at mid-grey), then a Gaussian blur of σ 0.5–1.5 px
    with probability ``cfg.blur_prob``.

    Parameters
    ----------
    x : (H, W) float array, normalised intensities
    rng : numpy Generator
    cfg : :class:`TrainUNetConfig`
    lr_grid : the noise is drawn on the low-resolution grid and interpolated by the baseline
        SR stage (for crops of the SR stage's output).

    Returns
    -------
    out : (H, W) float32
    """
    x = np.asarray(x, dtype=np.float32)
    m = float(x.mean())
    x = m + (x - m) * _log_uniform(rng, cfg.contrast_min, 1.0)
    if cfg.noise_max > 0:
        sd = _log_uniform(rng, cfg.noise_min, cfg.noise_max)
        n = sd * (lr_grid_noise(x.shape, rng) if lr_grid else rng.standard_normal(x.shape, dtype=np.float32))
        if rng.random() < cfg.poisson_prob:
            n *= np.sqrt(np.clip(x, 0.0, None) / 0.5)
        x = x + n
    if rng.random() < cfg.blur_prob:
        from scipy.ndimage import gaussian_filter

        x = gaussian_filter(x, float(rng.uniform(0.5, 1.5)), mode="reflect")
    return x.astype(np.float32, copy=False)


#: Pieces of the random transfer curve (:func:`random_curve`).
CURVE_PIECES = 6


def random_curve(x: np.ndarray, rng, strength: float) -> np.ndarray:
    """``x`` (intensities in [0, 1]; values outside are clipped) through a random continuous,
    increasing, piecewise-linear map of [0, 1] onto [0, 1]: :data:`CURVE_PIECES` equal pieces
    of the input range whose slopes are proportional to factors drawn log-uniformly in
    [1/√strength, √strength], so that no two slopes differ by more than ``strength``.
    The order of the grey levels is kept (a crack stays darker than the solid around it);
    their spacing is not."""
    s = math.sqrt(float(strength))
    slopes = np.exp(rng.uniform(-math.log(s), math.log(s), CURVE_PIECES))
    knots_y = np.concatenate([[0.0], np.cumsum(slopes)]) / slopes.sum()
    knots_x = np.linspace(0.0, 1.0, CURVE_PIECES + 1)
    return np.interp(np.clip(x, 0.0, 1.0), knots_x, knots_y).astype(np.float32)


def lr_grid_noise(shape, rng) -> np.ndarray:
    """Unit-variance white noise on the low-resolution grid (13/35 of ``shape``, rounded up
    to whole 13-px blocks) brought to ``shape`` by the baseline SR stage
    (:func:`cathodeflow.stages.superres.superres_baseline`, cubic convolution by 35/13): the
    noise of a low-resolution acquisition as the network sees it after ``run``'s SR stage
    (spatially correlated over about 35/13 px, per-pixel σ a little below 1)."""
    from ..config import SR_DEN, SR_NUM
    from ..stages.superres import superres_baseline

    lr = [-(-int(n) * SR_DEN // SR_NUM) for n in shape]  # low-res pixels covering the crop
    lr = [max(1, -(-v // SR_DEN)) * SR_DEN for v in lr]  # whole 13-px blocks
    up = superres_baseline(rng.standard_normal(lr, dtype=np.float32))
    return np.ascontiguousarray(up[: shape[0], : shape[1]], dtype=np.float32)


def augment(img: np.ndarray, lab: np.ndarray, rng, cfg: TrainUNetConfig, *, sr: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """Flips, 90° rotations, gamma, a random transfer curve (with probability
    ``cfg.curve_prob``, :func:`random_curve`), :func:`degrade`, normalisation as in ``run``, then a small
    contrast and brightness jitter (labels move with pixels); (H, W) each, or (W, H). ``sr``:
    the crop is of the SR stage's output (its noise is drawn on the low-resolution grid when
    ``cfg.noise_on_lr_grid``)."""
    k = int(rng.integers(0, 4))
    img, lab = np.rot90(img, k), np.rot90(lab, k)
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    x = np.clip(img, 0.0, 1.0) ** float(np.exp(rng.normal(0.0, 0.25)))
    if cfg.curve_prob > 0 and rng.random() < cfg.curve_prob:  # no draw at 0: older runs replay
        x = random_curve(x, rng, cfg.curve_strength)
    if cfg.degrade_prob >= 1 or rng.random() < cfg.degrade_prob:  # no draw at 1: older runs replay
        x = degrade(x, rng, cfg, lr_grid=sr and cfg.noise_on_lr_grid)
    x = _normalise(x)
    x = (x - 0.5) * float(np.exp(rng.normal(0.0, 0.2))) + 0.5 + float(rng.normal(0.0, 0.08))
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(lab)


def _pick(samples, rng, sr_fraction):
    """A random sample: an SR view with probability ``sr_fraction`` (when there are both)."""
    sr = [s for s in samples if s.source == "sr"]
    rest = [s for s in samples if s.source != "sr"]
    pool = sr if (sr and (not rest or rng.random() < sr_fraction)) else rest
    return pool[int(rng.integers(0, len(pool)))]


def _batch(samples, rng, crop, size, aug_cfg, multiple, sr_fraction=0.5):
    """(x, y) of ``size`` random crops, augmented by ``aug_cfg`` (a :class:`TrainUNetConfig`)
    unless it is None."""
    xs, ys = [], []
    for _ in range(size):
        sample = _pick(samples, rng, sr_fraction)
        img, lab = _crop(sample, rng, crop)
        if aug_cfg is not None:
            img, lab = augment(img, lab, rng, aug_cfg, sr=sample.source == "sr")
        xs.append(img)
        ys.append(lab)
    h = min(x.shape[0] for x in xs) // multiple * multiple
    w = min(x.shape[1] for x in xs) // multiple * multiple
    if h < multiple or w < multiple:
        raise InputError(f"training images are smaller than the network's {multiple}-px grid")
    x = np.stack([v[:h, :w] for v in xs])[..., None].astype(np.float32)
    y = np.stack([v[:h, :w] for v in ys]).astype(np.uint8)
    return x, y


def sr_weights_arg(name_or_path) -> str:
    """``training.sr_weights`` checked (a bad name fails before any data are made) and made
    fit for the data processes (:func:`~cathodeflow.models.registry.weights_location`)."""
    from ..models.registry import weights_location

    return weights_location(name_or_path)


def validation_batches(samples, cfg: TrainUNetConfig, multiple: int) -> list:
    """The run's ``cfg.n_val_crops`` fixed validation crops (one per batch), drawn from a random
    stream of ``cfg.seed``: raw crops, or augmented like training crops when
    ``cfg.val_degraded`` (and ``cfg.augment``)."""
    rng = np.random.default_rng([cfg.seed, 1])
    aug = cfg if (cfg.augment and cfg.val_degraded) else None
    return [_batch(samples, rng, cfg.crop_px, 1, aug, multiple) for _ in range(cfg.n_val_crops)]


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def training_families(families, log) -> tuple[str, ...]:
    """The style families to train on (default: all but the held-out ones); a note is
    logged when held-out families are among them."""
    from ..synth.training import FAMILIES_HELD_OUT, FAMILIES_TRAIN

    families = tuple(families or FAMILIES_TRAIN)
    leaked = sorted(set(families) & set(FAMILIES_HELD_OUT))
    if leaked:
        log(f"note: training on held-out style families {leaked}; their scores no longer measure generalisation")
    return families


def train_unet(cfg: TrainUNetConfig, *, out_dir, name: str = "unet", annotated=(), init_weights=None,
               log=print) -> Path:
    """Train (or fine-tune) the U-net; writes ``<out_dir>/<name>.weights.h5`` with its
    sidecar record (architecture, this config, data, history, calibrated t), the loss curves
    (``<name>.loss.png``) and the history (``<name>.history.json``). Returns the weights path.

    Parameters
    ----------
    cfg : :class:`TrainUNetConfig`
    out_dir : folder for the outputs (created); a ``checkpoints`` folder in it makes the run
        resumable.
    annotated : (image file, phase file) pairs of the user's own annotated images; with
        ``cfg.n_train_images = 0`` the run uses only these (3 of 4 for training, the last
        for validation, as the paper).
    init_weights : registry name or path of weights to fine-tune (their architecture wins).
    """
    from ..models.registry import load_unet, save_model_weights
    from ..models.training import TrainLoopConfig, fit_segmentation, save_loss_curves
    from ..models.unet import UNetConfig, build_unet
    from ..synth.training import FAMILIES_HELD_OUT

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    families = training_families(cfg.families, log)
    annotated = list(annotated)
    user = annotated_samples(annotated) if annotated else []
    sr_weights = None if cfg.sr_weights is None else sr_weights_arg(cfg.sr_weights)
    train = synthetic_samples(cfg.n_train_images, families=families, shape_lr=cfg.shape_lr, seed=cfg.seed,
                              sr_weights=sr_weights)
    val = synthetic_samples(cfg.n_val_images, families=families, shape_lr=cfg.shape_lr, seed=cfg.seed + 1,
                            sr_weights=sr_weights)
    if user:
        n_val = max(1, len(user) // 4) if len(user) > 1 else 0
        train += user[: len(user) - n_val]
        val += user[len(user) - n_val:] if n_val else user
    if not train or not val:
        raise InputError("training needs images: set training.n_train_images > 0 or give annotated pairs")
    log(f"[{time.perf_counter() - t0:6.1f} s] data: {len(train)} training and {len(val)} validation images")

    if init_weights is not None:
        model, rec = load_unet(init_weights, cache=False)
        arch = {k: v for k, v in rec.architecture.items() if k != "kind"}
    else:
        arch = UNetConfig.from_dict(cfg.architecture).to_dict()
        model = build_unet(UNetConfig.from_dict(arch))
    ucfg = UNetConfig.from_dict(arch)
    counts = np.bincount(np.concatenate([s.phase.ravel() for s in train]), minlength=3)[:3]
    from ..models.losses import class_weights_from_counts

    cw = class_weights_from_counts(counts, max_ratio=cfg.class_weight_max)
    val_batches = validation_batches(val, cfg, ucfg.multiple)
    loop = TrainLoopConfig(max_steps=cfg.max_steps, val_every=cfg.val_every, patience=cfg.patience,
                           seed=cfg.seed, max_seconds=cfg.max_seconds)
    history = fit_segmentation(
        model,
        sample_batch=lambda rng: _batch(train, rng, cfg.crop_px, cfg.batch_size, cfg if cfg.augment else None,
                                        ucfg.multiple, cfg.sr_fraction),
        val_batches=val_batches, class_weights=cw, learning_rate=cfg.learning_rate, loop=loop,
        checkpoint_dir=out_dir / "checkpoints", log=log,
    )
    save_loss_curves(history, out_dir / f"{name}.loss.png")
    (out_dir / f"{name}.history.json").write_text(history.to_json())
    log(f"[{time.perf_counter() - t0:6.1f} s] trained: best validation loss at step {history.best_step}")

    training = {
        "config": cfg.to_dict(),
        "families": list(families),
        "families_held_out": list(FAMILIES_HELD_OUT),
        "annotated": [[str(a), str(b)] for a, b in annotated],
        "init_weights": None if init_weights is None else str(init_weights),
        "class_weights": [float(v) for v in cw],
        "best_step": int(history.best_step),
        "best_val_loss": float(history.best_val_loss),
        "steps_run": int(history.steps[-1]) if history.steps else 0,
        "stopped_early": bool(history.stopped_early),
        "stopped_by_time": bool(history.stopped_by_time),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    path = out_dir / f"{name}.weights.h5"
    save_model_weights(model, path, architecture={"kind": "unet", **arch}, training=training,
                       pixel_size_um=cfg.pixel_size_um, crack_threshold=0.5,
                       normalisation={"method": "percentile", "q": [0.5, 99.5]})
    cal = calibrate_on(path, val)
    _store_calibration(path, cal, on="validation images of the training families")
    log(f"[{time.perf_counter() - t0:6.1f} s] calibrated t = {cal.t:.3f} (pixel accuracy "
        f"{cal.accuracy:.4f}; {cal.accuracy_at_half:.4f} at t = 0.5); weights: {path}")
    return path


def calibrate_on(weights, samples):
    """t of eq. 7 for ``weights`` on annotated samples (images already normalised); a
    :class:`cathodeflow.stages.threshold.ThresholdCalibration`."""
    from ..stages.threshold import calibrate_threshold
    from ..stages.unet import unet_probabilities

    probs = [unet_probabilities(s.image, weights=str(weights), normalised=True) for s in samples]
    return calibrate_threshold(probs, [s.phase for s in samples])


def calibrate_files(weights, pairs, *, write: bool = True):
    """``cathodeflow calibrate``: t for ``weights`` on (image, phase) file pairs; stored in the
    weights' sidecar record when ``write``."""
    cal = calibrate_on(weights, annotated_samples(pairs))
    if write:
        _store_calibration(weights, cal, on=[[str(a), str(b)] for a, b in pairs])
    return cal


def _store_calibration(weights, cal, *, on) -> None:
    """t into the weights' record, and how it was found into its training record."""
    from ..models.registry import resolve_weights, update_record

    rec = resolve_weights(weights)
    note = {"t": cal.t, "accuracy": cal.accuracy, "accuracy_at_half": cal.accuracy_at_half,
            "n_pixels": cal.n_pixels, "on": on}
    update_record(weights, crack_threshold=cal.t, training=dict(rec.training) | {"calibration": note})
