"""How many threads one kernel call may use (the kernels that measure or label objects on a
thread pool of their own, e.g. the per-particle measurements).

Inside a Dask worker's task the answer is 1: the worker's own threads (and the other workers)
are the parallelism there, and a task that starts a pool of one thread per machine core
oversubscribes the cores: with one worker per core, as many threads per task as the node
has cores. Dask's nanny sets ``OMP_NUM_THREADS=1`` in its workers for the same reason. Anywhere else (a direct call, or the local threaded scheduler running one big
image) it is the cores this process may use, CPU affinity and cgroup quota counted.
"""

from __future__ import annotations

import sys

__all__ = ["current_worker", "in_dask_worker", "kernel_threads"]


def current_worker():
    """The ``distributed`` worker whose task runs this code, else None."""
    dist = sys.modules.get("distributed")  # not imported: surely not in a worker
    if dist is None:
        return None
    try:
        return dist.get_worker()
    except ValueError:
        return None


def in_dask_worker() -> bool:
    """Whether this code runs in a task of a ``distributed`` worker."""
    return current_worker() is not None


def kernel_threads(limit: int | None = None) -> int:
    """Threads for one kernel call: 1 in a Dask worker's task, else the usable cores
    (``dask.system.cpu_count``), at most ``limit`` when given."""
    if in_dask_worker():
        return 1
    from dask.system import cpu_count

    n = max(1, cpu_count())
    return n if limit is None else max(1, min(n, int(limit)))
