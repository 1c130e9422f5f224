"""``cathodeflow train sr``: training the SRGAN of the sr stage (paper §2.3.1, eq. 4–5).

The paper trains the SRGAN on pairs of low-resolution (38.5 nm) and high-resolution (14.3 nm)
SEM images of the same region, with 96-px low-resolution crops, 32 crops per batch, Adam 1e-4,
a validation loss (PL on 92 crop pairs) every 20 steps and early stopping after 10 checks
without improvement, best weights restored (:func:`~cathodeflow.models.training.fit_srgan`).
This module runs that protocol on style-randomised synthetic pairs
(:func:`~cathodeflow.synth.training.make_training_pair`: one scene rendered at both pixel
sizes), and writes the generator's weights with their registry record (kind ``'srgan'``).

Grid. The generator maps 26·k low-resolution px to exactly 70·k high-resolution px, so each
pair is cropped to multiples of 26 (low resolution, from the top left) and the matching
``·35/13`` region (high resolution), and training crops start at multiples of 26 (high
resolution: 70). The paper's 96-px crops are not a multiple of 26; the default here is 104.

Intensities. Both images of a pair are normalised with the **low-resolution** image's
percentile range ``(lo, hi)`` (:data:`NORMALISATION`), so the generator learns
``(J_high − lo)/(hi − lo)`` from ``(J_low − lo)/(hi − lo)``, and the sr stage maps its
output back with the same ``(lo, hi)`` (:mod:`cathodeflow.stages.srgan`).

Content loss (eq. 5): ``content = "mse"`` (the default here: the pixel MSE) or ``"vgg19"``
(VGG19 ``block2_conv2`` features, the paper's PL), which needs ``vgg19_weights = "<file>"``
(the Keras VGG19 no-top ImageNet weights; never downloaded). Nothing switches silently:
``vgg19_weights`` with ``content = "mse"`` is refused.

Stored pairs: ``pairs_dir`` (optional) names a folder of registered real LR/HR pairs
(``cathodeflow pair``, :func:`cathodeflow.study.pairs.read_pairs`). They are used **in
addition to** the ``n_train_images`` synthetic training pairs (``n_train_images = 0``: only
the stored pairs), normalised the same way (each pair by its LR image's percentiles);
crops are drawn from all training pairs alike. Validation stays on ``n_val_images``
synthetic pairs, so runs with and without stored pairs are judged on the same data.

Augmentation: flips and 90° rotations of both crops (exact: a crop of 26·k px maps onto its
70·k px partner under them).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import LOW_RES_PIXEL_UM, SR_DEN, SR_NUM, read_train_toml
from ..errors import InputError

#: How the inputs are normalised (recorded with the weights; read by the sr stage).
NORMALISATION = {"method": "percentile", "q": [0.5, 99.5]}
#: Low-resolution grid of the generator (px): 2·13.
LR_MULTIPLE = 2 * SR_DEN
CONTENT_LOSSES = ("mse", "vgg19")


@dataclass(frozen=True)
class TrainSRConfig:
    """Everything that decides a training run (a TOML file's ``[srgan]`` and ``[training]``).

    Attributes
    ----------
    architecture : :class:`cathodeflow.models.srgan.SRGANConfig` fields (paper values default).
    max_steps, val_every, patience : the adversarial loop (paper: open-ended, 20, 10).
    pretrain_steps : steps of pixel-MSE pre-training of the generator first (0 = none).
    crop_lr : low-resolution crop edge, a multiple of 26 (paper 96; 104 here).
    batch_size : crops per step (paper 32).
    learning_rate : Adam's step size for both networks (paper 1e-4).
    content : ``'mse'`` (default) or ``'vgg19'`` (PL of eq. 5; needs ``vgg19_weights``).
    vgg19_weights : path of the Keras VGG19 no-top weights (only with ``content = 'vgg19'``).
    adversarial_weight : λ of eq. 4 (default 1e-3, Ledig et al.; see models.losses).
    n_val_crops : validation crop pairs, fixed for the run (paper 92).
    n_train_images, n_val_images : synthetic pairs generated for training / validation;
        ``n_train_images`` may be 0 when ``pairs_dir`` is set.
    pairs_dir : folder of stored real pairs (``cathodeflow pair``) to train on as well; None
        (default) = synthetic pairs only. A relative path in a TOML file is relative to the
        file's folder.
    shape_lr : low-resolution shape of a synthetic pair (multiples of 13, at least crop_lr).
    families : style families to train on (default: all but the held-out ones).
    augment : flips and 90° rotations.
    seed : everything random in the run.
    pixel_size_um : the low-resolution pixel size the generator is trained for (38.5 nm).
    """

    architecture: dict = field(default_factory=dict)
    max_steps: int = 100_000
    val_every: int = 20
    patience: int = 10
    pretrain_steps: int = 0
    crop_lr: int = 104
    batch_size: int = 32
    learning_rate: float = 1e-4
    content: str = "mse"
    vgg19_weights: str | None = None
    adversarial_weight: float = 1e-3
    n_val_crops: int = 92
    n_train_images: int = 48
    n_val_images: int = 8
    shape_lr: tuple[int, int] = (390, 520)
    families: tuple[str, ...] | None = None
    augment: bool = True
    seed: int = 0
    pixel_size_um: float = LOW_RES_PIXEL_UM
    pairs_dir: str | None = None

    def __post_init__(self):
        from ..models.srgan import SRGANConfig

        object.__setattr__(self, "architecture", SRGANConfig.from_dict(dict(self.architecture)).to_dict())
        for k in ("max_steps", "val_every", "patience", "crop_lr", "batch_size", "n_val_crops",
                  "n_train_images", "n_val_images"):
            v = getattr(self, k)
            least = 0 if k == "n_train_images" and self.pairs_dir is not None else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                need = "an integer >= 0" if least == 0 else "a positive integer"
                raise InputError(f"training.{k} must be {need}, got {v!r}"
                                 + (" (0 needs training.pairs_dir)" if k == "n_train_images" and v == 0 else ""))
        if self.pairs_dir is not None:
            if not isinstance(self.pairs_dir, (str, Path)) or not str(self.pairs_dir):
                raise InputError(f"training.pairs_dir must be a folder path, got {self.pairs_dir!r}")
            object.__setattr__(self, "pairs_dir", str(self.pairs_dir))
        if isinstance(self.pretrain_steps, bool) or not isinstance(self.pretrain_steps, int) \
                or self.pretrain_steps < 0:
            raise InputError(f"training.pretrain_steps must be an integer >= 0, got {self.pretrain_steps!r}")
        if self.crop_lr % LR_MULTIPLE:
            raise InputError(f"training.crop_lr must be a multiple of {LR_MULTIPLE} (the generator's grid; "
                             f"the paper's 96 -> 104), got {self.crop_lr}")
        if self.content not in CONTENT_LOSSES:
            raise InputError(f"training.content must be one of {CONTENT_LOSSES}, got {self.content!r}")
        if self.content == "vgg19" and not self.vgg19_weights:
            raise InputError("training.content = 'vgg19' needs training.vgg19_weights = \"<file>\" (the Keras "
                             "VGG19 no-top ImageNet weights; never downloaded)")
        if self.content == "mse" and self.vgg19_weights:
            raise InputError("training.vgg19_weights is set but training.content is 'mse'; "
                             "set content = 'vgg19' to use it")
        shape = tuple(int(v) for v in self.shape_lr)
        if len(shape) != 2 or min(shape) < self.crop_lr:
            raise InputError(f"training.shape_lr must be two sizes >= crop_lr ({self.crop_lr}), got {self.shape_lr!r}")
        object.__setattr__(self, "shape_lr", shape)
        if self.families is not None:
            object.__setattr__(self, "families", tuple(self.families))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_train_sr_config(path: str | Path | None = None, **overrides) -> TrainSRConfig:
    """A :class:`TrainSRConfig` from a TOML file (``[srgan]``: architecture, ``[training]``:
    the rest), then ``overrides``; unknown tables and keys are named in the error."""
    values: dict = {}
    if path is not None:
        known = {f.name for f in dataclasses.fields(TrainSRConfig)} - {"architecture"}
        values, arch = read_train_toml(path, arch_table="srgan", known=known)
        values["architecture"] = arch or {}
        if isinstance(values.get("pairs_dir"), str):
            values["pairs_dir"] = str(Path(path).parent / values["pairs_dir"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainSRConfig(**values)
    except InputError as e:
        raise InputError(f"{path}: {e}" if path is not None else str(e)) from None


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _normalised(lr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A pair cropped to the generator's grid (from the top left) and normalised by the
    low-resolution image's range: lr (26·k, 26·m), hr (70·k, 70·m), float32."""
    from ..models.normalise import intensity_range, normalise_image

    h, w = (n // LR_MULTIPLE * LR_MULTIPLE for n in lr.shape)
    lr, hr = lr[:h, :w], hr[: h * SR_NUM // SR_DEN, : w * SR_NUM // SR_DEN]
    lo, hi = intensity_range(lr, q=tuple(NORMALISATION["q"]))
    return normalise_image(lr, lo=lo, hi=hi), normalise_image(hr, lo=lo, hi=hi)


def _pair(args) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic pair, :func:`_normalised` (run in a worker process)."""
    seed, family, shape_lr = args
    from ..synth.training import make_training_pair

    p = make_training_pair(seed, family=family, shape_lr=shape_lr)
    return _normalised(p.lr, p.hr)


def stored_pairs(pairs_dir, *, crop_lr: int) -> tuple[list[tuple], list[dict]]:
    """The pairs of a ``cathodeflow pair`` folder, :func:`_normalised`, and their provenance
    (pair id, sha256 of both source files); each pair must hold at least one ``crop_lr`` crop
    (else an InputError names its record)."""
    from .pairs import read_pairs

    data, provenance = [], []
    for p in read_pairs(pairs_dir):
        if min(p.lr.shape) < crop_lr:
            raise InputError(f"{p.path}: lr block {p.lr.shape[0]} × {p.lr.shape[1]} px is smaller than "
                             f"training.crop_lr = {crop_lr}; lower crop_lr or remove the pair")
        data.append(_normalised(p.lr, p.hr))
        provenance.append({"pair_id": p.record.get("pair_id"), "low_sha256": p.record.get("low", {}).get("sha256"),
                           "high_sha256": p.record.get("high", {}).get("sha256")})
    return data, provenance


def synthetic_pairs(n: int, *, families, shape_lr, seed: int, processes: int = 2) -> list[tuple]:
    """``n`` normalised (lr, hr) pairs, style families drawn in turn."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = [([int(seed), 104729, i], families[i % len(families)], shape_lr) for i in range(int(n))]
    if processes > 1 and n > 1:
        with ProcessPoolExecutor(processes) as pool:
            return list(pool.map(_pair, jobs))
    return [_pair(j) for j in jobs]


def crop_batch(pairs, rng, *, crop_lr: int, size: int, augment: bool) -> tuple[np.ndarray, np.ndarray]:
    """``size`` random crop pairs: lr (size, crop_lr, crop_lr, 1) and hr (size, crop_lr·35/13,
    crop_lr·35/13, 1), float32; crops start at multiples of 26 (hr: 70)."""
    c_hr = crop_lr * SR_NUM // SR_DEN
    xs, ys = [], []
    for _ in range(int(size)):
        lr, hr = pairs[int(rng.integers(0, len(pairs)))]
        oy = LR_MULTIPLE * int(rng.integers(0, (lr.shape[0] - crop_lr) // LR_MULTIPLE + 1))
        ox = LR_MULTIPLE * int(rng.integers(0, (lr.shape[1] - crop_lr) // LR_MULTIPLE + 1))
        a = lr[oy:oy + crop_lr, ox:ox + crop_lr]
        b = hr[oy * SR_NUM // SR_DEN:][:c_hr, ox * SR_NUM // SR_DEN:][:, :c_hr]
        if augment:
            k = int(rng.integers(0, 4))
            a, b = np.rot90(a, k), np.rot90(b, k)
            if rng.random() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
        xs.append(a)
        ys.append(b)
    return (np.stack(xs)[..., None].astype(np.float32), np.stack(ys)[..., None].astype(np.float32))


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def _content_loss(cfg: TrainSRConfig):
    from ..models.losses import perceptual_loss, vgg19_features

    if cfg.content == "vgg19":
        return perceptual_loss(content="features", feature_model=vgg19_features(cfg.vgg19_weights))
    return perceptual_loss(content="mse")


def train_sr(cfg: TrainSRConfig, *, out_dir, name: str = "srgan", log=print) -> Path:
    """Train the SRGAN; writes ``<out_dir>/<name>.weights.h5`` (the generator) with its
    sidecar record (kind ``'srgan'``: architecture, this config, history, pixel size,
    normalisation), the loss curves (``<name>.loss.png``) and the history
    (``<name>.history.json``). Returns the weights path.

    Parameters
    ----------
    cfg : :class:`TrainSRConfig`
    out_dir : folder for the outputs (created); its ``checkpoints`` folder makes the run
        resumable.
    name : file name stem of the weights.
    log : callable ``(str) -> None`` for progress lines.
    """
    from ..models.registry import save_model_weights
    from ..models.srgan import SRGANConfig, build_discriminator, build_generator
    from ..models.training import TrainLoopConfig, fit_srgan, save_loss_curves
    from ..synth.training import FAMILIES_HELD_OUT

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    from .train_unet import training_families

    families = training_families(cfg.families, log)
    content = _content_loss(cfg)  # a bad VGG19 file fails before the data are made
    stored, provenance = ([], []) if cfg.pairs_dir is None else stored_pairs(cfg.pairs_dir, crop_lr=cfg.crop_lr)
    train = stored + (synthetic_pairs(cfg.n_train_images, families=families, shape_lr=cfg.shape_lr, seed=cfg.seed)
                      if cfg.n_train_images else [])
    val = synthetic_pairs(cfg.n_val_images, families=families, shape_lr=cfg.shape_lr, seed=cfg.seed + 1)
    log(f"[{time.perf_counter() - t0:6.1f} s] data: {len(train)} training ({len(stored)} stored) and "
        f"{len(val)} validation pairs")

    arch = SRGANConfig.from_dict(cfg.architecture)
    generator, discriminator = build_generator(arch), build_discriminator(arch)
    vrng = np.random.default_rng([cfg.seed, 1])
    sizes = [min(cfg.batch_size, cfg.n_val_crops - k) for k in range(0, cfg.n_val_crops, cfg.batch_size)]
    val_batches = [crop_batch(val, vrng, crop_lr=cfg.crop_lr, size=s, augment=False) for s in sizes]
    loop = TrainLoopConfig(max_steps=cfg.max_steps, val_every=cfg.val_every, patience=cfg.patience, seed=cfg.seed)
    pretrain = None if cfg.pretrain_steps == 0 else TrainLoopConfig(
        max_steps=cfg.pretrain_steps, val_every=cfg.val_every, patience=cfg.patience, seed=cfg.seed + 2)
    history = fit_srgan(
        generator, discriminator,
        sample_batch=lambda rng: crop_batch(train, rng, crop_lr=cfg.crop_lr, size=cfg.batch_size,
                                            augment=cfg.augment),
        val_batches=val_batches, content_loss=content, adversarial_weight=cfg.adversarial_weight,
        learning_rate=cfg.learning_rate, loop=loop, pretrain=pretrain, checkpoint_dir=out_dir / "checkpoints",
        log=log,
    )
    save_loss_curves(history.gan, out_dir / f"{name}.loss.png")
    (out_dir / f"{name}.history.json").write_text(json.dumps(
        {"pretrain": None if history.pretrain is None else history.pretrain.to_dict(),
         "gan": history.gan.to_dict()}))
    gan = history.gan
    log(f"[{time.perf_counter() - t0:6.1f} s] trained: best validation loss at step {gan.best_step}")
    training = {
        "config": cfg.to_dict(),
        "data": " and ".join(
            ([f"{cfg.n_train_images} synthetic pairs (cathodeflow.synth.training.make_training_pair)"]
             if cfg.n_train_images else []) + ([f"{len(stored)} stored pairs from {cfg.pairs_dir}"] if stored else [])),
        "stored_pairs": provenance,
        "families": list(families),
        "families_held_out": list(FAMILIES_HELD_OUT),
        "best_step": None if gan.best_step is None else int(gan.best_step),
        "best_val_loss": (float(gan.best_val_loss) if gan.best_val_loss is not None
                          and np.isfinite(gan.best_val_loss) else None),
        "steps_run": int(gan.steps[-1]) if gan.steps else 0,
        "pretrain_steps_run": int(history.pretrain.steps[-1]) if history.pretrain and history.pretrain.steps else 0,
        "stopped_early": bool(gan.stopped_early),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    path = out_dir / f"{name}.weights.h5"
    rec = save_model_weights(generator, path, architecture={"kind": "srgan", **arch.to_dict()}, training=training,
                             pixel_size_um=cfg.pixel_size_um, normalisation=dict(NORMALISATION))
    log(f"[{time.perf_counter() - t0:6.1f} s] weights: {path} (sha256 {rec.sha256[:12]}…)")
    return path
