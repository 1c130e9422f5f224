"""Where the tiled computations of one image run: the current Dask scheduler, or this thread.

A tiled stage computes in several blocking rounds (:mod:`.components`, :mod:`.scratch`, the
crack and particle labels). By default each round goes to Dask's current scheduler: the
threaded one, or a ``distributed`` client, so that one large image's chunks spread over a
cluster. Inside :func:`in_this_thread` they run in the calling thread instead (Dask's
synchronous scheduler): that is how one task of a cluster processes a whole image tile by
tile, its memory bounded by a few chunks, while the cluster's other threads process other
images (campaigns of many large images: ``describe``, and ``run``'s labels stage; no task
submits work from a task).

The choice is held in a :class:`contextvars.ContextVar`, so it is private to the thread (a
worker's other threads, running other tasks, keep the default), unlike ``dask.config.set``,
which changes the whole process.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

import dask

__all__ = ["compute", "compute_kw", "in_this_thread", "persist"]

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


def compute_kw(scheduler=None) -> dict:
    """Keyword arguments for ``dask.compute`` and the like: ``scheduler`` when given (a
    Client or a name), else this thread's scheduler inside :func:`in_this_thread`, else none
    (Dask's current scheduler)."""
    scheduler = scheduler if scheduler is not None else _SCHEDULER.get()
    return {} if scheduler is None else {"scheduler": scheduler}


def compute(*args, scheduler=None):
    """``dask.compute(*args)`` on the scheduler :func:`compute_kw` names."""
    return dask.compute(*args, **compute_kw(scheduler))


def persist(*args, scheduler=None):
    """``dask.persist(*args)``, on the scheduler :func:`compute` would use."""
    return dask.persist(*args, **compute_kw(scheduler))
