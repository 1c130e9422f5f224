"""One generic training loop (paper §2.3.1–2.3.2; DESIGN §6) and the U-net fit on top of it.

The paper trains both networks the same way: a validation loss every ``val_every`` steps
(SRGAN 20, U-net 200), training stops when it has not improved in ``patience`` (10)
consecutive checks, and the best weights are restored. :func:`train_loop` is that procedure
and nothing else: it sees the model only through callables (one training step, one
validation, get/set the weights as numpy arrays), so the SRGAN reuses it unchanged.
:func:`fit_segmentation` plugs a compiled Keras U-net into it, :func:`fit_srgan` the SRGAN.

Checkpoints (in ``checkpoint_dir``) hold the current and the best weights
(``weights-<step>.npz``) and the loop state (``state.json``: step, history, best, patience
counter, RNG state, config), each written to a temporary file and moved into place with
``os.replace``; ``state.json`` is written last and names its weights file, so a crash at any
moment leaves a consistent checkpoint. A loop started on a directory that holds one resumes
from it and, with deterministic steps, ends with the same history as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import SR_DEN, SR_NUM
from ..errors import InputError

__all__ = ["TrainLoopConfig", "TrainHistory", "train_loop", "save_loss_curves", "fit_segmentation",
           "SRGANHistory", "fit_srgan"]

STATE_FILE = "state.json"
_FORMAT = 1


@dataclass
class TrainLoopConfig:
    """Cadence of :func:`train_loop`.

    Attributes
    ----------
    max_steps : training steps at most (>= 1).
    val_every : steps between validation checks. Paper: 200 (U-net), 20 (SRGAN).
    patience : stop after this many consecutive checks without improvement. Paper: 10.
    checkpoint_every : steps between checkpoints; None means ``val_every``.
    seed : seed of the caller's data-sampling RNG (see :func:`fit_segmentation`).
    max_seconds : a wall-clock budget (s) for the steps of this call, or None (default): no
        step starts once it is spent; the run then ends with a validation check as after
        ``max_steps``. Such a run depends on the machine's speed; setting ``max_steps`` to
        the steps it ran (``TrainHistory.steps[-1]``) and no budget reproduces it.
    """

    max_steps: int
    val_every: int = 200
    patience: int = 10
    checkpoint_every: int | None = None
    seed: int = 0
    max_seconds: float | None = None

    def __post_init__(self):
        if self.checkpoint_every is None:
            self.checkpoint_every = self.val_every
        for name in ("max_steps", "val_every", "patience", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"TrainLoopConfig.{name}: expected an integer >= 1, got {v!r}")
            setattr(self, name, int(v))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise InputError(f"TrainLoopConfig.seed: expected an integer, got {self.seed!r}")
        self.seed = int(self.seed)
        if self.max_seconds is not None:
            if isinstance(self.max_seconds, bool) or not isinstance(self.max_seconds, (int, float)) \
                    or not math.isfinite(self.max_seconds) or self.max_seconds <= 0:
                raise InputError(f"TrainLoopConfig.max_seconds: expected a number > 0 or None, "
                                 f"got {self.max_seconds!r}")
            self.max_seconds = float(self.max_seconds)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainHistory:
    """What :func:`train_loop` did.

    Attributes
    ----------
    steps : training steps done, ``[1, 2, …, n]``.
    train : per loss name, its value at each of ``steps``.
    val_steps : steps after which the validation loss was computed.
    val_loss : validation loss at each of ``val_steps``.
    best_step, best_val_loss : the check with the lowest validation loss (None before any).
    stopped_early : True when training stopped for lack of improvement (patience).
    stopped_by_time : True when ``max_seconds`` ended the run before ``max_steps``.
    """

    steps: list[int] = field(default_factory=list)
    train: dict[str, list[float]] = field(default_factory=dict)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_step: int | None = None
    best_val_loss: float | None = None
    stopped_early: bool = False
    stopped_by_time: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The history as JSON text (non-finite losses as ``NaN``/``Infinity``)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "TrainHistory":
        return cls(**d)


def _atomic_write_bytes(path: Path, write: Callable) -> None:
    """Write via ``write(file)`` to ``path.tmp`` and move it onto ``path`` (atomic)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _copy_state(state) -> list[np.ndarray]:
    return [np.array(a, copy=True) for a in state]


def _write_checkpoint(directory: Path, *, step, history, bad_checks, current, best, rng, config) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    weights_name = f"weights-{step:08d}.npz"
    arrays = {f"current_{i}": np.asarray(a) for i, a in enumerate(current)}
    if best is not None:
        arrays.update({f"best_{i}": np.asarray(a) for i, a in enumerate(best)})
    _atomic_write_bytes(directory / weights_name, lambda f: np.savez(f, **arrays))
    state = {
        "format": _FORMAT,
        "step": step,
        "weights_file": weights_name,
        "n_current": len(current),
        "n_best": None if best is None else len(best),
        "bad_checks": bad_checks,
        "history": history.to_dict(),
        "rng_state": None if rng is None else rng.bit_generator.state,
        "config": config.to_dict(),
    }
    text = json.dumps(state, indent=1).encode()
    _atomic_write_bytes(directory / STATE_FILE, lambda f: f.write(text))
    for old in directory.glob("weights-*.npz"):
        if old.name != weights_name:
            old.unlink(missing_ok=True)


def _read_checkpoint(directory: Path, config: TrainLoopConfig) -> dict | None:
    path = directory / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if state.get("format") != _FORMAT:
            raise ValueError(f"format {state.get('format')!r}")
        with np.load(directory / state["weights_file"], allow_pickle=False) as z:
            state["current"] = [z[f"current_{i}"] for i in range(state["n_current"])]
            state["best"] = None if state["n_best"] is None else [z[f"best_{i}"] for i in range(state["n_best"])]
        state["history"] = TrainHistory.from_dict(state["history"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: unreadable training checkpoint ({type(e).__name__}: {e}); "
                         "remove the directory to start afresh") from None
    saved = state["config"]
    for key in ("val_every", "patience", "seed"):
        if saved.get(key) != getattr(config, key):
            raise InputError(f"{path}: checkpoint made with {key}={saved.get(key)!r}, this run has "
                             f"{key}={getattr(config, key)!r}; use the same value or another checkpoint_dir")
    return state


def train_loop(
    *,
    train_step: Callable[[int], dict[str, float]],
    validate: Callable[[], float],
    get_state: Callable[[], list[np.ndarray]],
    set_state: Callable[[list], None],
    config: TrainLoopConfig,
    checkpoint_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    rng: np.random.Generator | None = None,
) -> TrainHistory:
    """Train with validation checks, early stopping and best-weights restore; resumable.

    Steps are numbered ``1 … config.max_steps``. After each step ``s`` with
    ``s % val_every == 0`` (and after the last step) ``validate()`` is called; a check
    improves when its loss is strictly below the best so far (NaN never improves), and then
    a copy of ``get_state()`` is kept as the best weights. Training stops early after
    ``patience`` consecutive checks without improvement, or before a step once
    ``config.max_seconds`` have passed in this call (then with one more check unless the last
    step was just checked). At the end ``set_state`` receives the best weights (if any check
    was made).

    Parameters
    ----------
    train_step : callable ``(step) -> {loss name: value}``
        One optimisation step; the same names at every step.
    validate : callable ``() -> float``
        The validation loss of the current weights (lower is better).
    get_state, set_state : callables
        The weights as a list of numpy arrays, and their restore.
    config : TrainLoopConfig
    checkpoint_dir : path, optional
        Where to write checkpoints every ``config.checkpoint_every`` steps and at the end. If
        it holds one, the loop resumes from it (weights, history, best, patience counter,
        ``rng`` state); a finished run returns at once with the best weights set.
    log : callable ``(str) -> None``, optional
        Receives one line per validation check.
    rng : numpy Generator, optional
        The data-sampling RNG of ``train_step``; its state is checkpointed and restored.

    Returns
    -------
    history : TrainHistory

    Raises
    ------
    InputError
        If the checkpoint is unreadable or was made with another ``val_every``, ``patience``
        or ``seed``, or ``train_step`` changes its loss names.
    """
    if not isinstance(config, TrainLoopConfig):
        raise InputError(f"config: expected a TrainLoopConfig, got {type(config).__name__}")
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)
    history, step, bad_checks, best_state = TrainHistory(), 0, 0, None
    resumed = None if directory is None else _read_checkpoint(directory, config)
    if resumed is not None:
        history, step, bad_checks = resumed["history"], resumed["step"], resumed["bad_checks"]
        best_state = resumed["best"]
        set_state(resumed["current"])
        if rng is not None and resumed["rng_state"] is not None:
            rng.bit_generator.state = resumed["rng_state"]
        if log is not None:
            log(f"resumed from {directory} at step {step}")

    def checkpoint():
        _write_checkpoint(directory, step=step, history=history, bad_checks=bad_checks,
                          current=get_state(), best=best_state, rng=rng, config=config)

    since_check: list[float] = []
    name = next(iter(history.train), "loss")

    def check():
        nonlocal best_state, bad_checks, since_check
        v = float(validate())
        history.val_steps.append(step)
        history.val_loss.append(v)
        if history.best_val_loss is None or v < history.best_val_loss:
            history.best_step, history.best_val_loss = step, v
            best_state = _copy_state(get_state())
            bad_checks = 0
        else:
            bad_checks += 1
            history.stopped_early = bad_checks >= config.patience
        if log is not None:
            log(f"step {step}/{config.max_steps}: {name} {np.mean(since_check) if since_check else float('nan'):.4g}, "
                f"val_loss {v:.4g} (best {history.best_val_loss:.4g} at step {history.best_step})"
                + (f"; stopping: no improvement in {bad_checks} checks" if history.stopped_early else ""))
        since_check = []

    history.stopped_by_time = False
    started = time.monotonic()
    while step < config.max_steps and not history.stopped_early:
        if config.max_seconds is not None and time.monotonic() - started >= config.max_seconds:
            history.stopped_by_time = True
            if step and (not history.val_steps or history.val_steps[-1] != step):
                check()
            if log is not None:
                log(f"stopping at step {step}: the time budget of {config.max_seconds:g} s is spent")
            if directory is not None:
                checkpoint()
            break
        step += 1
        losses = {str(k): float(v) for k, v in dict(train_step(step)).items()}
        if not history.train:
            history.train = {k: [] for k in losses}
            name = next(iter(losses))
        if set(losses) != set(history.train):
            raise InputError(f"train_step: step {step} returned losses {sorted(losses)}, "
                             f"earlier steps {sorted(history.train)}")
        history.steps.append(step)
        for k, v in losses.items():
            history.train[k].append(v)
        since_check.append(losses[name])
        if step % config.val_every == 0 or step == config.max_steps:
            check()
        if directory is not None and (step % config.checkpoint_every == 0 or step == config.max_steps
                                      or history.stopped_early):
            checkpoint()
    if best_state is not None:
        set_state(_copy_state(best_state))
    return history


def save_loss_curves(history: TrainHistory, path_png: str | Path) -> Path:
    """PNG of the training and validation losses against the step, best step marked.

    One line per training loss name, the validation losses as markers, a dashed vertical
    line at ``history.best_step``; the y axis is logarithmic when all plotted values are
    positive (linear otherwise). matplotlib's Agg canvas, no pyplot.

    Returns
    -------
    path : Path of the written file
    """
    from matplotlib.figure import Figure

    path = Path(path_png)
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    values = []
    for name, ys in history.train.items():
        ax.plot(history.steps, ys, lw=0.8, label=f"train {name}")
        values += ys
    if history.val_steps:
        ax.plot(history.val_steps, history.val_loss, "o-", ms=3, label="validation loss")
        values += history.val_loss
    if history.best_step is not None:
        ax.axvline(history.best_step, ls="--", color="k", lw=0.8, label=f"best (step {history.best_step})")
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _check_batch(x, y, what: str, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4 or x.shape[-1] != 1 or y.shape != x.shape[:3]:
        raise InputError(f"{what}: expected x (B, H, W, 1) and y (B, H, W), got {x.shape} and {y.shape}")
    if x.shape[1] % multiple or x.shape[2] % multiple:
        raise InputError(f"{what}: H, W must be multiples of {multiple}, got {x.shape[1:3]}")
    return x.astype(np.float32, copy=False), y.astype(np.uint8, copy=False)


def fit_segmentation(
    model,
    *,
    sample_batch: Callable[[np.random.Generator], tuple],
    val_batches: list[tuple],
    class_weights,
    learning_rate: float = 1e-4,
    loop: TrainLoopConfig,
    checkpoint_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainHistory:
    """Train a segmentation network (the U-net) with Adam and the weighted cross-entropy.

    Compiles ``model`` with ``Adam(learning_rate)`` and
    :func:`~cathodeflow.models.losses.weighted_categorical_crossentropy` and runs
    :func:`train_loop` with ``model.train_on_batch`` as the step and the mean of
    ``model.test_on_batch`` over ``val_batches`` as the validation loss. The best weights are
    in ``model`` on return.

    Parameters
    ----------
    model : keras.Model
        E.g. :func:`~cathodeflow.models.unet.build_unet`; (B, H, W, 1) → (B, H, W, K).
    sample_batch : callable ``(rng) -> (x, y)``
        A random training batch drawn with ``rng`` (seeded by ``loop.seed``; its state is
        checkpointed): x (B, H, W, 1) float32, y (B, H, W) uint8 labels. Paper: one random
        1024×1024 cut-out per step.
    val_batches : list of (x, y)
        Fixed validation batches (paper: 50 cut-outs), same layout.
    class_weights : sequence of K floats
    learning_rate : float
        Adam's step size. Paper: 1e-4.
    loop : TrainLoopConfig
        Paper: ``val_every=200, patience=10``.
    checkpoint_dir, log : see :func:`train_loop`.

    Returns
    -------
    history : TrainHistory

    Notes
    -----
    Checkpoints hold the weights, not Adam's moment estimates: a resumed run restarts the
    optimiser state, so it is close to, not bit-identical with, an uninterrupted run.
    """
    import keras

    from .losses import weighted_categorical_crossentropy
    from .unet import model_multiple

    multiple = model_multiple(model)
    if not val_batches:
        raise InputError("val_batches: expected at least one (x, y) validation batch, got none")
    val = [_check_batch(x, y, f"val_batches[{i}]", multiple) for i, (x, y) in enumerate(val_batches)]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=weighted_categorical_crossentropy(class_weights))
    rng = np.random.default_rng(loop.seed)

    def train_step(step: int) -> dict[str, float]:
        x, y = _check_batch(*sample_batch(rng), "sample_batch", multiple)
        return {"loss": float(model.train_on_batch(x, y, return_dict=True)["loss"])}

    def validate() -> float:
        return float(np.mean([float(model.test_on_batch(x, y, return_dict=True)["loss"]) for x, y in val]))

    return train_loop(train_step=train_step, validate=validate, get_state=model.get_weights,
                      set_state=model.set_weights, config=loop, checkpoint_dir=checkpoint_dir,
                      log=log, rng=rng)


@dataclass
class SRGANHistory:
    """What :func:`fit_srgan` did: the pixel-loss pre-training (None when skipped) and the
    adversarial training, each a :class:`TrainHistory` with validation loss PL."""

    pretrain: TrainHistory | None
    gan: TrainHistory


def _check_pair(lr, hr, what: str, num: int, den: int) -> tuple[np.ndarray, np.ndarray]:
    lr, hr = np.asarray(lr), np.asarray(hr)
    if hr.ndim == 3:
        hr = hr[..., None]
    if lr.ndim != 4 or lr.shape[-1] != 1 or hr.ndim != 4 or hr.shape[-1] != 1 or hr.shape[0] != lr.shape[0]:
        raise InputError(f"{what}: expected lr (B, h, w, 1) and hr (B, H, W, 1), got {lr.shape} and {hr.shape}")
    m = 2 * den
    expected = tuple(n * num // den for n in lr.shape[1:3])
    if lr.shape[1] % m or lr.shape[2] % m or hr.shape[1:3] != expected:
        raise InputError(f"{what}: lr (h, w) must be multiples of {m} and hr (H, W) = (h, w)·{num}/{den}; "
                         f"got lr {lr.shape[1:3]}, hr {hr.shape[1:3]}")
    return lr.astype(np.float32, copy=False), hr.astype(np.float32, copy=False)


def fit_srgan(
    generator,
    discriminator,
    *,
    sample_batch: Callable[[np.random.Generator], tuple],
    val_batches: list[tuple],
    content_loss: Callable,
    adversarial_weight: float | None = None,
    learning_rate: float = 1e-4,
    loop: TrainLoopConfig,
    pretrain: TrainLoopConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    jit_compile: bool | str = False,
) -> SRGANHistory:
    """Train the SRGAN (eq. 4): generator and discriminator alternately, with Adam.

    Each step of the adversarial phase (one :func:`train_loop` step):

    1. D step: ``discriminator.train_on_batch`` on the real crops (label 1) and the
       generator's current outputs (label 0, generator in inference mode) with
       :func:`~cathodeflow.models.losses.adversarial_bce`;
    2. G step: on a model ``J_low ↦ (G(J_low), D(G(J_low)))`` with D frozen, the loss
       ``content_loss(J_high, G(J_low)) + λ·(−log D(G(J_low)))``.

    D is frozen by its ``trainable`` flag, set before each of the two calls, so the same code
    works on every Keras backend; a frozen D runs its batch normalisation in inference mode
    (moving statistics) during the G step. The validation loss (paper: every 20 steps, the
    PL on 92 crop pairs) is the mean of ``content_loss`` over ``val_batches`` with the
    generator in inference mode; early stopping and the restore of the best weights (θ_G and
    θ_D together) are :func:`train_loop`'s. An optional first phase trains the generator
    alone on the pixel MSE (SRResNet pre-training, Ledig et al.), validated the same way;
    the adversarial phase starts from its best weights.

    Parameters
    ----------
    generator, discriminator : keras.Model
        From :func:`~cathodeflow.models.srgan.build_generator` and ``build_discriminator``.
    sample_batch : callable ``(rng) -> (lr, hr)``
        A random batch drawn with ``rng`` (seeded by ``loop.seed``; checkpointed): lr
        (B, h, w, 1) float32 with h, w multiples of 26, hr (B, h·35/13, w·35/13[, 1]).
        Paper: 32 random crops.
    val_batches : list of (lr, hr)
        Fixed validation batches, same layout (paper: 92 crop pairs).
    content_loss : callable ``(y_true, y_pred) -> scalar``
        PL of eq. 5, e.g. :func:`~cathodeflow.models.losses.perceptual_loss`.
    adversarial_weight : float, optional
        λ of eq. 4, >= 0; default :data:`~cathodeflow.models.losses.ADVERSARIAL_WEIGHT`
        (10⁻³, see :mod:`~cathodeflow.models.losses` for this reading of the paper).
    learning_rate : float
        Adam's step size for both networks. Paper: 1e-4.
    loop : TrainLoopConfig
        Adversarial phase. Paper: ``val_every=20, patience=10``.
    pretrain : TrainLoopConfig, optional
        Pixel-MSE pre-training of the generator; None (default) skips it.
    checkpoint_dir : path, optional
        Checkpoints of the two phases go to ``<dir>/pretrain`` and ``<dir>/gan``; a run
        resumes from them (see :func:`train_loop`).
    log : callable ``(str) -> None``, optional
    jit_compile : bool or "auto"
        Passed to ``compile`` of the three step models. Default False: on the project's
        2-core CPU, XLA-compiling them took longer than the steps of a short run saved
        (first adversarial step 25 s vs 20 s, tiny config); try True on a GPU.

    Returns
    -------
    history : SRGANHistory
        Training losses: ``pixel_mse`` (pre-training); ``g_loss`` (content + λ·adversarial),
        ``content``, ``adversarial`` (−log D(G(J_low))) and ``d_loss`` (adversarial phase).
        The best weights of the last phase are in ``generator`` and ``discriminator``.

    Notes
    -----
    Adam is invariant to the scale of a loss, so D's ½ in :func:`adversarial_bce` does not
    matter. Checkpoints hold weights, not Adam's moments (as in :func:`fit_segmentation`).
    """
    import keras

    from .losses import ADVERSARIAL_WEIGHT, adversarial_bce, pixel_mse

    lam = ADVERSARIAL_WEIGHT if adversarial_weight is None else adversarial_weight
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating)) or not 0 <= lam < math.inf:
        raise InputError(f"adversarial_weight: expected a finite number >= 0, got {adversarial_weight!r}")
    if not callable(content_loss):
        raise InputError(f"content_loss: expected a loss callable (y_true, y_pred), got {type(content_loss).__name__}")
    if pretrain is not None and not isinstance(pretrain, TrainLoopConfig):
        raise InputError(f"pretrain: expected a TrainLoopConfig or None, got {type(pretrain).__name__}")
    resize = next((lay for lay in generator.layers if lay.name == "resize"), None)
    num, den = (resize.num, resize.den) if resize is not None else (SR_NUM, SR_DEN)
    if not val_batches:
        raise InputError("val_batches: expected at least one (lr, hr) validation batch, got none")
    val = [_check_pair(a, b, f"val_batches[{i}]", num, den) for i, (a, b) in enumerate(val_batches)]
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)

    def sr(lr):
        return generator(lr, training=False)

    def validate() -> float:
        return float(np.mean([float(keras.ops.convert_to_numpy(content_loss(hr, sr(lr)))) for lr, hr in val]))

    pre_history = None
    if pretrain is not None:
        generator.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=pixel_mse,
                          jit_compile=jit_compile)
        rng = np.random.default_rng(pretrain.seed)

        def pre_step(step: int) -> dict[str, float]:
            lr, hr = _check_pair(*sample_batch(rng), "sample_batch", num, den)
            return {"pixel_mse": float(generator.train_on_batch(lr, hr, return_dict=True)["loss"])}

        pre_history = train_loop(train_step=pre_step, validate=validate, get_state=generator.get_weights,
                                 set_state=generator.set_weights, config=pretrain,
                                 checkpoint_dir=None if directory is None else directory / "pretrain",
                                 log=None if log is None else (lambda m: log(f"pretrain {m}")), rng=rng)

    discriminator.trainable = True
    discriminator.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=adversarial_bce,
                          jit_compile=jit_compile)
    inp = keras.Input(shape=(None, None, 1), dtype="float32", name="image_lr")
    out = generator(inp)
    combined = keras.Model(inp, [out, discriminator(out)], name="srgan_g_step")
    discriminator.trainable = False
    combined.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                     loss=[content_loss, adversarial_bce], loss_weights=[1.0, float(lam)], jit_compile=jit_compile)
    rng = np.random.default_rng(loop.seed)
    n_g = len(generator.get_weights())

    def gan_step(step: int) -> dict[str, float]:
        lr, hr = _check_pair(*sample_batch(rng), "sample_batch", num, den)
        b = lr.shape[0]
        fake = np.asarray(keras.ops.convert_to_numpy(sr(lr)), dtype=np.float32)
        discriminator.trainable = True
        labels = np.concatenate([np.ones((b, 1), np.float32), np.zeros((b, 1), np.float32)])
        d_loss = float(discriminator.train_on_batch(np.concatenate([hr, fake]), labels, return_dict=True)["loss"])
        discriminator.trainable = False
        logs = combined.train_on_batch(lr, [hr, np.ones((b, 1), np.float32)], return_dict=True)
        return {"g_loss": float(logs["loss"]), "content": float(logs.get(f"{generator.name}_loss", math.nan)),
                "adversarial": float(logs.get(f"{discriminator.name}_loss", math.nan)), "d_loss": d_loss}

    def get_state():
        return generator.get_weights() + discriminator.get_weights()

    def set_state(state):
        generator.set_weights(state[:n_g])
        discriminator.set_weights(state[n_g:])

    try:
        gan_history = train_loop(train_step=gan_step, validate=validate, get_state=get_state, set_state=set_state,
                                 config=loop, checkpoint_dir=None if directory is None else directory / "gan",
                                 log=log, rng=rng)
    finally:
        discriminator.trainable = True
    return SRGANHistory(pretrain=pre_history, gan=gan_history)
