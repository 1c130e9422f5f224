"""CPU threads of the Keras backend inside a Dask worker.

A network stage runs its tiles as Dask tasks. TensorFlow (and torch) start thread pools of
one thread per machine core in every process, so on a node with one single-threaded worker
per core every worker's network competed for all the cores. In a worker's task the
backend's pools are capped at :func:`~cathodeflow.tiling.threads.kernel_threads` (1), as
for every other kernel; elsewhere they are left as the backend sets them. On a 2-core
machine the difference is within the run-to-run scatter (U-net ``unet-small-v1`` on a
2048² image in 512-px tiles, 2 one-thread workers: 20–27 s either way); the cap is for
nodes with many cores and one worker per core, where the pools multiply.
"""

from __future__ import annotations

import threading

from ..tiling.threads import in_dask_worker, kernel_threads

__all__ = ["cap_threads_in_dask_worker", "set_backend_threads"]

_DONE = threading.Event()


def set_backend_threads(n: int) -> bool:
    """Cap the Keras backend's CPU thread pools at ``n``; whether the cap holds.

    TensorFlow: its intra- and inter-op pools, settable only before its runtime starts (after
    that, True only when they already are ``n``); torch: ``torch.set_num_threads``; JAX: its
    pool is fixed when it starts, so nothing changes (False).
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # the runtime has started
            return tf.config.threading.get_intra_op_parallelism_threads() == n
        return True
    if backend == "torch":
        import torch

        torch.set_num_threads(n)
        return True
    return False


def cap_threads_in_dask_worker() -> None:
    """In a Dask worker, once per process: :func:`set_backend_threads` (``kernel_threads()``)."""
    if _DONE.is_set() or not in_dask_worker():
        return
    set_backend_threads(kernel_threads())
    _DONE.set()
