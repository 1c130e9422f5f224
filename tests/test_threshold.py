"""Calibration of t (eq. 7) by maximal pixel accuracy against annotations."""

import numpy as np
import pytest

from cathodeflow.errors import InputError
from cathodeflow.stages.phases import phase_from_probabilities
from cathodeflow.stages.threshold import calibrate_threshold


def _probs_with_known_threshold(rng, t_true, shape=(64, 80)):
    """Ŷ whose crack channel separates the annotated crack pixels exactly at ``t_true``."""
    truth = rng.integers(0, 3, size=shape).astype(np.uint8)
    q = np.where(truth == 2, rng.uniform(t_true, 1.0, shape), rng.uniform(0.0, t_true, shape))
    rest = 1.0 - q
    a = rng.uniform(0.0, 0.49, shape) * rest  # the minority of bg/solid
    bg = np.where(truth == 0, rest - a, a)
    solid = rest - bg
    return np.stack([bg, solid, q], axis=-1), truth


@pytest.mark.parametrize("t_true", [0.12, 0.3, 0.5, 0.77])
def test_calibration_recovers_a_known_threshold(t_true):
    rng = np.random.default_rng(int(t_true * 100))
    pairs = [_probs_with_known_threshold(rng, t_true) for _ in range(3)]
    cal = calibrate_threshold([p for p, _ in pairs], [s for _, s in pairs])
    # the calibrated t lies between the largest non-crack q and the smallest crack q
    q_non = max(p[..., 2][s != 2].max() for p, s in pairs)
    q_crk = min(p[..., 2][s == 2].min() for p, s in pairs)
    assert q_non < cal.t <= q_crk
    assert abs(cal.t - t_true) < 1e-3
    assert cal.accuracy == 1.0
    # and eq. 7 with it reproduces the annotations everywhere
    for p, s in pairs:
        assert np.array_equal(phase_from_probabilities(p, cal.t), s)


def test_calibrated_accuracy_is_the_maximum_over_a_grid_of_thresholds():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, size=(50, 60)).astype(np.uint8)
    prob = rng.dirichlet([1, 1, 1], size=truth.shape).astype(np.float32)
    prob[..., 2] += 0.3 * (truth == 2)
    prob /= prob.sum(-1, keepdims=True)
    cal = calibrate_threshold([prob], [truth])
    grid = np.linspace(0.001, 1.0, 400)
    accs = [(phase_from_probabilities(prob, t) == truth).mean() for t in grid]
    assert cal.accuracy >= max(accs) - 1e-12
    assert (phase_from_probabilities(prob, cal.t) == truth).mean() == pytest.approx(cal.accuracy, abs=1e-12)
    assert cal.accuracy_at_half == pytest.approx((phase_from_probabilities(prob, 0.5) == truth).mean(), abs=1e-12)


def test_annotations_with_other_values_or_shapes_are_refused():
    prob = np.full((4, 5, 3), 1 / 3)
    with pytest.raises(InputError, match="0/1/2"):
        calibrate_threshold([prob], [np.full((4, 5), 3, np.uint8)])
    with pytest.raises(InputError, match="shape"):
        calibrate_threshold([prob], [np.zeros((5, 4), np.uint8)])
