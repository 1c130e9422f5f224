"""Where Dask work runs: in-process, a local cluster, or a user's cluster.

``scheduler`` values accepted everywhere (``--scheduler`` on the command line):

- ``None``: automatic — a local multi-process cluster (one single-threaded worker per core:
  scipy/scikit-image kernels hold the GIL, PERFORMANCE.md) when there is more than one
  task, in-process otherwise;
- ``"sync"``, ``"threads"``: Dask's local schedulers;
- ``"local"`` (or ``"processes"``): a fresh ``distributed.LocalCluster`` on loopback, one
  single-threaded worker process per core;
- an address such as ``"tcp://10.0.0.5:8786"``: an existing cluster (Kubernetes, SLURM…);
- a ``distributed.Client``: used as is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

from ..errors import InputError

LOCAL_SCHEDULERS = ("sync", "synchronous", "threads")


def n_local_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None, *, fallback: bool = False):
    """A loopback ``LocalCluster`` (processes, one thread each) and its client.

    Worker processes are started with ``spawn``, which needs the main module to be
    importable: from a script fed on standard input the workers cannot start. With
    ``fallback=True`` that case warns and yields ``None`` (Dask's threaded scheduler).
    """
    import dask
    from distributed import Client, LocalCluster

    n = n_workers or n_local_workers()
    try:
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # a free port: clusters may run side by side
            silence_logs=logging.ERROR,
        )
    except Exception as e:
        if not fallback:
            raise
        warnings.warn(
            f"could not start a local Dask cluster ({type(e).__name__}: {e}); running on "
            "threads instead. In a script, put the call under `if __name__ == '__main__':`.",
            RuntimeWarning,
            stacklevel=3,
        )
        with dask.config.set(scheduler="threads"):
            yield None
        return
    with cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def scheduler_context(scheduler=None, *, n_tasks: int = 1):
    """Yield a ``distributed.Client`` or ``None`` (then Dask's configured local scheduler)."""
    import dask

    if scheduler is None:
        if n_tasks > 1 and n_local_workers() > 1:
            with local_cluster(fallback=True) as client:
                yield client
        else:
            with dask.config.set(scheduler="threads"):
                yield None
        return
    if hasattr(scheduler, "submit") and hasattr(scheduler, "gather"):
        yield scheduler
        return
    if not isinstance(scheduler, str):
        raise InputError(f"scheduler: expected a name, an address or a Client, got {scheduler!r}")
    if scheduler in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=scheduler):
            yield None
        return
    if scheduler in ("local", "processes"):
        # Dask's own "processes" scheduler starts a fresh pool for every compute, and the
        # tiled stages compute several times: a loopback cluster keeps its workers.
        with local_cluster() as client:
            yield client
        return
    if "://" in scheduler or ":" in scheduler:
        from distributed import Client

        try:
            client = Client(scheduler, timeout="10s")
        except OSError as e:
            raise InputError(f"scheduler: cannot connect to {scheduler} ({e})") from None
        with client:
            yield client
        return
    raise InputError(
        f"scheduler: unknown value {scheduler!r}; expected one of {LOCAL_SCHEDULERS}, "
        "'local', an address like tcp://host:8786, or a distributed.Client"
    )
