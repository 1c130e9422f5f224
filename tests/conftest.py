"""Fixtures shared by several test modules."""

import pytest


@pytest.fixture
def tiled_describe_calls(monkeypatch):
    """A list that gains one item per call of the tiled path,
    ``cathodeflow.measure.tiled.describe_phase_dask`` (which still runs): shows whether an
    image was described whole or tiled."""
    import cathodeflow.measure.tiled as tiled_mod

    calls = []
    real = tiled_mod.describe_phase_dask

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tiled_mod, "describe_phase_dask", spy)
    return calls


@pytest.fixture
def chunk_task_threads(monkeypatch):
    """A list that gains the id of the thread that runs each per-chunk count task of the
    tiled path (``cathodeflow.measure.tiled._block_counts``, which still runs): shows where
    an image's tiles were computed."""
    import threading

    import cathodeflow.measure.tiled as tiled_mod

    seen = []
    real = tiled_mod._block_counts

    def spy(*args):
        seen.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(tiled_mod, "_block_counts", spy)
    return seen
