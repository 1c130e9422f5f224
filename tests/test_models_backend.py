"""The same model code on a second Keras backend: weights saved under the default backend
(TensorFlow) load under PyTorch / JAX and give the same probabilities, loss and a training step."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cathodeflow.models.losses import weighted_categorical_crossentropy  # noqa: E402
from cathodeflow.models.registry import save_model_weights  # noqa: E402
from cathodeflow.models.unet import UNetConfig, build_unet, predict_tile  # noqa: E402

CONFIG = UNetConfig(depth=3, filters=4, dilation=2)
CLASS_WEIGHTS = [0.3, 1.0, 2.5]

SCRIPT = r"""
import json, sys
import numpy as np
import keras
from cathodeflow.models.losses import weighted_categorical_crossentropy
from cathodeflow.models.registry import load_unet
from cathodeflow.models.training import TrainLoopConfig, fit_segmentation
from cathodeflow.models.unet import UNetConfig, build_unet, predict_tile

weights, data, out = sys.argv[1:4]
d = np.load(data)
model, record = load_unet(weights)
prob = predict_tile(model, d["tiles"])
loss = weighted_categorical_crossentropy(json.loads(sys.argv[4]))
value = float(keras.ops.convert_to_numpy(loss(d["labels"], prob)))
fresh = build_unet(UNetConfig(depth=2, filters=4, dilation=1))
x, y = d["tiles"][..., None], d["labels"]
h = fit_segmentation(fresh, sample_batch=lambda rng: (x, y), val_batches=[(x, y)],
                     class_weights=json.loads(sys.argv[4]), loop=TrainLoopConfig(max_steps=3, val_every=3))
np.savez(out, prob=prob, loss=value, train=np.array(h.train["loss"]), val=np.array(h.val_loss))
print(keras.backend.backend())
"""


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_weights_saved_under_the_default_backend_give_the_same_outputs_under_another(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed in {sys.executable}; the {backend} backend check needs it "
                    "(make install adds torch==2.13.0 only)")
    if keras.backend.backend() == backend:
        pytest.skip(f"this session already runs on the {backend} backend; nothing to compare with")
    keras.utils.set_random_seed(5)
    model = build_unet(CONFIG)
    record = save_model_weights(model, tmp_path / "net.weights.h5", architecture={"kind": "unet", **CONFIG.to_dict()},
                                training={}, pixel_size_um=0.0143, normalisation={"method": "percentile"})
    rng = np.random.default_rng(0)
    tiles = rng.random((2, 30, 36), dtype=np.float32)  # not multiples of 4: the padding path too
    labels = rng.integers(0, 3, (2, 30, 36)).astype(np.uint8)
    np.savez(tmp_path / "data.npz", tiles=tiles, labels=labels)
    expected = predict_tile(model, tiles)
    loss = weighted_categorical_crossentropy(CLASS_WEIGHTS)
    expected_loss = float(keras.ops.convert_to_numpy(loss(labels, expected)))

    env = {**os.environ, "KERAS_BACKEND": backend}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(record.path), str(tmp_path / "data.npz"),
                        str(tmp_path / "out.npz"), json.dumps(CLASS_WEIGHTS)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == backend
    got = np.load(tmp_path / "out.npz")
    assert got["prob"].shape == (2, 30, 36, 3)
    np.testing.assert_allclose(got["prob"], expected, atol=1e-5, rtol=0)
    assert float(got["loss"]) == pytest.approx(expected_loss, rel=1e-5)
    assert got["train"].shape == (3,) and np.all(np.isfinite(got["train"])) and np.isfinite(got["val"]).all()
