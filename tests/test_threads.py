"""Kernels that start a thread pool of their own use one thread inside a Dask worker's task
(the workers are the parallelism there) and the usable cores elsewhere."""

import os

from dask.system import cpu_count

from cathodeflow.tiling.threads import in_dask_worker, kernel_threads


def test_kernel_threads_outside_a_worker_are_the_usable_cores():
    assert not in_dask_worker()
    assert kernel_threads() == cpu_count()
    assert kernel_threads(limit=1) == 1
    assert kernel_threads(limit=10_000) == cpu_count()


def test_kernel_threads_follow_the_cpu_affinity_of_the_process():
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert kernel_threads() == 1
    finally:
        os.sched_setaffinity(0, before)


def test_kernel_threads_in_a_dask_worker_task_are_one():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert client.submit(in_dask_worker, pure=False).result() is True
        assert client.submit(kernel_threads, pure=False).result() == 1
        assert client.submit(kernel_threads, 8, pure=False).result() == 1
