"""Where the tiled computations of one image run: the current Dask scheduler, or this thread.

A tiled stage computes in several blocking rounds (:mod:`.components`, :mod:`.scratch`, the
crack and particle labels). By default each round goes to Dask's current scheduler: the
threaded one, or a ``distributed`` client, so that one large image's chunks spread over a
cluster. Inside :func:`in_this_thread` they run in the calling thread instead (Dask's
synchronous scheduler): that is how one task of a cluster processes a whole image tile by
tile, its memory bounded by a few chunks, while the cluster's other threads process other
images (``describe`` on campaigns of many large images; no task submits work from a task).

The choice is held in a :class:`contextvars.ContextVar`, so it is private to the thread (a
worker's other threads, running other tasks, keep the default), unlike ``dask.config.set``,
which changes the whole process.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

import dask

__all__ = ["compute", "in_this_thread", "persist"]

_SCHEDULER: ContextVar[str | None] = ContextVar("cathodeflow_tiled_scheduler", default=None)


@contextlib.contextmanager
def in_this_thread():
    """Within the block, :func:`compute` and :func:`persist` without an explicit scheduler
    run in this thread (Dask's ``"sync"`` scheduler)."""
    token = _SCHEDULER.set("sync")
    try:
        yield
    finally:
        _SCHEDULER.reset(token)


def _scheduler(scheduler) -> dict:
    scheduler = scheduler if scheduler is not None else _SCHEDULER.get()
    return {} if scheduler is None else {"scheduler": scheduler}


def compute(*args, scheduler=None):
    """``dask.compute(*args)`` on ``scheduler`` (a Client or a name), else where
    :func:`in_this_thread` says, else on Dask's current scheduler."""
    return dask.compute(*args, **_scheduler(scheduler))


def persist(*args, scheduler=None):
    """``dask.persist(*args)``, on the scheduler :func:`compute` would use."""
    return dask.persist(*args, **_scheduler(scheduler))
