"""Neural networks of the method (paper §2.3.1–2.3.2; DESIGN §6), in Keras 3.

Modules (import them directly; this package itself does not import Keras, so
``import cathodeflow.models`` stays light):

* :mod:`~cathodeflow.models.normalise` — global robust intensity range and normalisation
  (numpy only, no Keras);
* :mod:`~cathodeflow.models.unet` — the U-net of §2.3.2, its receptive field, tile inference;
* :mod:`~cathodeflow.models.srgan` — the SRGAN of §2.3.1 (Fig. 3): generator with the exact
  35/13 grid (26 → 70 px), discriminator, receptive field (shipped weights ``srgan-small-v1``);
* :mod:`~cathodeflow.models.losses` — weighted categorical cross-entropy and class weights;
  the SRGAN's content (pixel, given feature model, VGG19 from a file) and adversarial losses;
* :mod:`~cathodeflow.models.training` — one generic training loop (validation cadence,
  early stopping, best-weights restore, resumable checkpoints) and the U-net and SRGAN fits
  on top of it;
* :mod:`~cathodeflow.models.registry` — weight files with sha256-checked sidecars and the
  shipped registry (weights are loaded as weights, never as pickled code);
* :mod:`~cathodeflow.models.threads` — the backend's CPU threads capped in Dask workers.

The code uses only backend-agnostic Keras 3 (``keras.layers``, ``keras.ops``); TensorFlow is
the default backend and the same code runs with ``KERAS_BACKEND=torch`` or ``jax``.
"""

import os as _os

# TensorFlow's C++ start-up notes (CPU features, oneDNN) are not for our users: errors only,
# unless the user asked otherwise. Set before any module here imports Keras.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
