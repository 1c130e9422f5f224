"""Loss, class weights, the generic training loop (validation cadence, early stopping, best
weights, resumable checkpoints, loss curves) and a real U-net fit on a synthetic task."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cathodeflow.errors import InputError

keras = pytest.importorskip("keras")

from cathodeflow.models.losses import class_weights_from_counts, weighted_categorical_crossentropy  # noqa: E402
from cathodeflow.models.training import (  # noqa: E402
    STATE_FILE,
    TrainHistory,
    TrainLoopConfig,
    fit_segmentation,
    save_loss_curves,
    train_loop,
)
from cathodeflow.models.unet import UNetConfig, build_unet, predict_tile  # noqa: E402


# ---------------------------------------------------------------------------------------------
# loss and class weights
# ---------------------------------------------------------------------------------------------
def test_weighted_cross_entropy_equals_a_hand_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5, 3))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    y = rng.integers(0, 3, (2, 4, 5))
    cw = np.array([0.5, 1.0, 4.0])
    w = cw[y]
    ce = -np.log(np.take_along_axis(p, y[..., None], -1)[..., 0])
    expected = (w * ce).sum() / w.sum()
    loss = weighted_categorical_crossentropy(cw)
    for labels in (y.astype(np.uint8), y[..., None].astype(np.float32)):
        got = float(keras.ops.convert_to_numpy(loss(labels, p.astype(np.float32))))
        assert got == pytest.approx(expected, rel=1e-6)


def test_weighted_cross_entropy_clips_zero_probabilities():
    p = np.array([[[[1.0, 0.0, 0.0]]]], np.float32)
    loss = weighted_categorical_crossentropy([1.0, 1.0, 1.0])
    got = float(keras.ops.convert_to_numpy(loss(np.array([[[2]]]), p)))
    assert got == pytest.approx(-np.log(1e-7), rel=1e-5)


def test_class_weights_are_inverse_frequency_clipped_and_of_mean_one():
    # 1/frequency ∝ [1, 10, 90]; capped at 10 × the smallest -> ∝ [1, 10, 10], mean 7
    np.testing.assert_allclose(class_weights_from_counts([900, 90, 10]), np.array([1, 10, 10]) / 7)
    np.testing.assert_allclose(class_weights_from_counts([900, 90, 10], max_ratio=100),
                               np.array([1, 10, 90]) * 3 / 101)
    # an absent class gets the cap
    np.testing.assert_allclose(class_weights_from_counts([50, 50, 0], max_ratio=4), np.array([1, 1, 4]) / 2)
    for bad in ([1], [0, 0, 0], [1, -1, 2], [1, np.nan, 1]):
        with pytest.raises(InputError, match="counts"):
            class_weights_from_counts(bad)


# ---------------------------------------------------------------------------------------------
# the loop, with plain numpy "weights"
# ---------------------------------------------------------------------------------------------
class Counter:
    """Weights = one array counting the steps taken; validation looks a value up in a script."""

    def __init__(self, script):
        self.w = np.zeros(1)
        self.script = script
        self.calls = []

    def train_step(self, step):
        self.calls.append(step)
        self.w = self.w + 1
        return {"loss": 1.0 / step}

    def validate(self):
        return self.script[int(self.w[0])]

    def get_state(self):
        return [self.w]

    def set_state(self, state):
        self.w = np.array(state[0], copy=True)

    def loop(self, config, **kw):
        return train_loop(train_step=self.train_step, validate=self.validate, get_state=self.get_state,
                          set_state=self.set_state, config=config, **kw)


def test_early_stopping_after_patience_checks_restores_the_best_weights():
    # checks every 2 steps; best (2.0) at step 6; the next three checks do not improve
    # (equal is not better), so patience 3 stops after step 12 and restores the step-6 weights
    values = {2: 5.0, 4: 4.0, 6: 2.0, 8: 3.0, 10: 2.5, 12: 2.0, 14: 0.1}
    c = Counter(values)
    h = c.loop(TrainLoopConfig(max_steps=100, val_every=2, patience=3))
    assert h.stopped_early and h.best_step == 6 and h.best_val_loss == 2.0
    assert h.val_steps == [2, 4, 6, 8, 10, 12] and h.val_loss == [5.0, 4.0, 2.0, 3.0, 2.5, 2.0]
    assert h.steps == list(range(1, 13)) and c.calls == h.steps
    assert c.w[0] == 6  # the weights after step 6


def test_without_early_stop_the_loop_runs_max_steps_and_checks_the_last_step():
    c = Counter({3: 3.0, 6: 2.0, 7: 1.0})
    h = c.loop(TrainLoopConfig(max_steps=7, val_every=3, patience=1))
    assert not h.stopped_early and h.val_steps == [3, 6, 7] and h.best_step == 7 and c.w[0] == 7
    assert h.train == {"loss": [1.0 / s for s in range(1, 8)]}


def test_a_time_budget_stops_before_the_next_step_checks_the_last_one_and_resumes(tmp_path, monkeypatch):
    import cathodeflow.models.training as training

    clock = {"t": 0.0}
    monkeypatch.setattr(training.time, "monotonic", lambda: clock["t"])

    class Slow(Counter):
        def train_step(self, step):  # each step takes 3 s of the fake clock
            clock["t"] += 3.0
            return super().train_step(step)

    # budget 10 s: steps start at t = 0, 3, 6, 9; at t = 12 no step starts
    c = Slow({3: 2.0, 4: 1.0, 6: 0.5, 8: 0.4})
    h = c.loop(TrainLoopConfig(max_steps=8, val_every=3, patience=5, max_seconds=10), checkpoint_dir=tmp_path)
    assert h.steps == [1, 2, 3, 4] and h.stopped_by_time and not h.stopped_early
    assert h.val_steps == [3, 4] and h.best_step == 4 and c.w[0] == 4  # step 4 checked at the stop
    # a later call resumes from the checkpoint with a fresh budget and reaches max_steps
    clock["t"] = 100.0
    again = Slow({3: 2.0, 4: 1.0, 6: 0.5, 8: 0.4})
    h2 = again.loop(TrainLoopConfig(max_steps=8, val_every=3, patience=5, max_seconds=10), checkpoint_dir=tmp_path)
    assert again.calls == [5, 6, 7, 8] and not h2.stopped_by_time
    assert h2.val_steps == [3, 4, 6, 8] and h2.best_step == 8
    with pytest.raises(InputError, match="max_seconds"):
        TrainLoopConfig(max_steps=4, max_seconds=0)


class Drift:
    """Deterministic fake training: w ← 0.9 w + N(0, 1) from the loop's RNG; validation |w|."""

    def __init__(self, rng, crash_at=None):
        self.w = [np.zeros(3), np.ones((2, 2))]
        self.rng = rng
        self.crash_at = crash_at
        self.calls = []

    def train_step(self, step):
        if step == self.crash_at:
            raise RuntimeError("simulated crash")
        self.calls.append(step)
        self.w = [0.9 * a + self.rng.normal(size=a.shape) for a in self.w]
        return {"loss": float(sum((a**2).sum() for a in self.w)), "aux": float(step)}

    def validate(self):
        return float(np.abs(self.w[0]).sum())

    def get_state(self):
        return self.w

    def set_state(self, state):
        self.w = [np.array(a, copy=True) for a in state]

    def loop(self, config, **kw):
        return train_loop(train_step=self.train_step, validate=self.validate, get_state=self.get_state,
                          set_state=self.set_state, config=config, rng=self.rng, **kw)


def test_resumed_run_continues_at_the_checkpoint_and_ends_like_an_uninterrupted_run(tmp_path):
    config = TrainLoopConfig(max_steps=40, val_every=4, patience=3, checkpoint_every=6, seed=0)
    whole = Drift(np.random.default_rng(7))
    h_whole = whole.loop(config)
    assert h_whole.steps[-1] > 14  # the crash below happens before the end

    crashed = Drift(np.random.default_rng(7), crash_at=14)
    with pytest.raises(RuntimeError, match="simulated"):
        crashed.loop(config, checkpoint_dir=tmp_path)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["step"] == 12  # last checkpoint before the crash

    resumed = Drift(np.random.default_rng(999))  # wrong seed on purpose: the RNG state is restored
    lines = []
    h = resumed.loop(config, checkpoint_dir=tmp_path, log=lines.append)
    assert resumed.calls[0] == 13 and lines[0].startswith("resumed")
    assert h.to_dict() == h_whole.to_dict()
    for a, b in zip(resumed.w, whole.w):
        np.testing.assert_array_equal(a, b)
    # one consistent weights file, no temporary files left
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE, json.loads(
        (tmp_path / STATE_FILE).read_text())["weights_file"]]


def test_a_finished_checkpoint_returns_at_once_with_the_best_weights(tmp_path):
    config = TrainLoopConfig(max_steps=12, val_every=2, patience=2)
    first = Drift(np.random.default_rng(1))
    h1 = first.loop(config, checkpoint_dir=tmp_path)
    again = Drift(np.random.default_rng(1))
    h2 = again.loop(config, checkpoint_dir=tmp_path)
    assert again.calls == [] and h2.to_dict() == h1.to_dict()
    np.testing.assert_array_equal(again.w[0], first.w[0])


def test_a_checkpoint_of_another_cadence_is_refused(tmp_path):
    Drift(np.random.default_rng(1)).loop(TrainLoopConfig(max_steps=4, val_every=2), checkpoint_dir=tmp_path)
    with pytest.raises(InputError, match="val_every=2"):
        Drift(np.random.default_rng(1)).loop(TrainLoopConfig(max_steps=4, val_every=3), checkpoint_dir=tmp_path)
    with pytest.raises(InputError, match="max_steps"):
        TrainLoopConfig(max_steps=0)


def test_history_json_and_loss_curve_png(tmp_path):
    h = Drift(np.random.default_rng(2)).loop(TrainLoopConfig(max_steps=30, val_every=5))
    assert TrainHistory.from_dict(json.loads(h.to_json())) == h
    path = save_loss_curves(h, tmp_path / "curves" / "loss.png")
    from matplotlib.image import imread

    img = imread(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and img.shape[:2] == (400, 640)
    assert img[..., :3].std() > 0.05  # something is drawn


# ---------------------------------------------------------------------------------------------
# a real U-net fit
# ---------------------------------------------------------------------------------------------
def _disc_image(rng, n=64):
    """Bright discs on a dark background, each with a dark 2-px line through its middle part.
    Labels from the geometry: 0 outside the discs, 1 inside, 2 on a line."""
    yy, xx = np.mgrid[:n, :n] + 0.5
    labels = np.zeros((n, n), np.uint8)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(12, n - 12, 2)
        r = rng.uniform(8, 16)
        rho2 = (yy - cy) ** 2 + (xx - cx) ** 2
        labels[rho2 <= r * r] = 1
        theta = rng.uniform(0, np.pi)
        dist = np.abs((yy - cy) * np.cos(theta) - (xx - cx) * np.sin(theta))
        labels[(rho2 <= (0.8 * r) ** 2) & (dist <= 1.0)] = 2
    image = np.choose(labels, [0.2, 0.8, 0.25]) + rng.normal(0, 0.05, labels.shape)
    return image.astype(np.float32), labels


def _batch(rng, size=4):
    xs, ys = zip(*(_disc_image(rng) for _ in range(size)))
    return np.stack(xs)[..., None], np.stack(ys)


def test_fit_segmentation_learns_discs_and_cracks_and_restores_the_best_weights(tmp_path):
    val_rng = np.random.default_rng(123)
    val = [_batch(val_rng) for _ in range(3)]
    counts = np.bincount(np.concatenate([y.ravel() for _, y in val]), minlength=3)
    cw = class_weights_from_counts(counts)
    keras.utils.set_random_seed(0)
    model = build_unet(UNetConfig(depth=3, filters=8, dilation=1))
    loss = weighted_categorical_crossentropy(cw)
    before = np.mean([float(keras.ops.convert_to_numpy(loss(y, model(x)))) for x, y in val])

    h = fit_segmentation(model, sample_batch=_batch, val_batches=val, class_weights=cw, learning_rate=3e-3,
                         loop=TrainLoopConfig(max_steps=100, val_every=20, patience=3, seed=0),
                         checkpoint_dir=tmp_path)
    assert h.best_val_loss < 0.2 * before
    assert h.best_val_loss == min(h.val_loss) and h.val_steps[h.val_loss.index(h.best_val_loss)] == h.best_step
    after = np.mean([float(model.test_on_batch(x, y)) for x, y in val])
    assert after == pytest.approx(h.best_val_loss, rel=1e-5)  # the model holds the best weights
    x, y = val[0]
    pred = predict_tile(model, x[..., 0]).argmax(-1)
    recall = [np.mean(pred[y == c] == c) for c in range(3)]
    assert recall[0] > 0.95 and recall[1] > 0.95 and recall[2] > 0.7, recall


def test_fit_segmentation_refuses_batches_of_the_wrong_layout():
    model = build_unet(UNetConfig(depth=2, filters=4, dilation=1))
    x = np.zeros((1, 16, 16, 1), np.float32)
    with pytest.raises(InputError, match=r"val_batches\[0\]"):
        fit_segmentation(model, sample_batch=None, val_batches=[(x, np.zeros((1, 16, 15), np.uint8))],
                         class_weights=[1, 1, 1], loop=TrainLoopConfig(max_steps=1))
    with pytest.raises(InputError, match="multiples of 2"):
        fit_segmentation(model, sample_batch=None, val_batches=[(x[:, :15], np.zeros((1, 15, 16), np.uint8))],
                         class_weights=[1, 1, 1], loop=TrainLoopConfig(max_steps=1))
