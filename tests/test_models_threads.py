"""In a Dask worker the Keras backend's CPU pools are capped at one thread (the worker's own
threads are the parallelism); elsewhere the backend keeps its own setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("keras")


def _load_and_report_threads():
    import tensorflow as tf

    from cathodeflow.models.registry import DEFAULT_UNET, load_unet

    load_unet(DEFAULT_UNET)
    return tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads()


def test_a_network_loaded_in_a_dask_worker_runs_tensorflow_on_one_thread():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert client.submit(_load_and_report_threads, pure=False).result() == (1, 1)


def test_a_network_loaded_outside_a_worker_keeps_tensorflows_own_thread_pools():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from tests.test_models_threads import "
            "_load_and_report_threads as f; print(f())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "(0, 0)"  # 0: TensorFlow picks (one per core)


@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None, reason="torch not installed")
def test_the_cap_sets_torchs_threads_under_the_torch_backend():
    code = ("import torch; from cathodeflow.models.threads import set_backend_threads; "
            "print(set_backend_threads(1), torch.get_num_threads())")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True 1"
