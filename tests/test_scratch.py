"""The scratch arrays of tiled runs (:class:`cathodeflow.tiling.scratch.BlockArray`): what is
written is read back, from any region, in any process; a region touching an unwritten block
raises MissingBlock (never zeros); a write that does not cover whole blocks is refused. The reference is a numpy array written alongside.
"""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cathodeflow.tiling.scratch import BlockArray, MissingBlock, Scratch


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    chunks=st.tuples(st.integers(1, 17), st.integers(1, 17)),
    dtype=st.sampled_from([np.uint8, np.int32, np.int64, np.float32]),
    data=st.data(),
)
def test_blocks_written_in_any_order_read_back_from_any_region(shape, chunks, dtype, data):
    ref = np.zeros(shape, dtype)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    with Scratch() as scratch:
        arr = scratch.array(shape, chunks, dtype)
        nby, nbx = -(-shape[0] // chunks[0]), -(-shape[1] // chunks[1])
        order = data.draw(st.permutations([(i, j) for i in range(nby) for j in range(nbx)]))
        written = np.zeros(shape, bool)
        for i, j in order[: max(1, len(order) * 2 // 3)]:  # a third of the blocks stay unwritten
            region = np.s_[i * chunks[0]:(i + 1) * chunks[0], j * chunks[1]:(j + 1) * chunks[1]]
            block = (rng.integers(1, 100, size=ref[region].shape)).astype(dtype)
            arr[region] = block
            ref[region] = block
            written[region] = True
        y0, y1 = sorted(data.draw(st.tuples(st.integers(0, shape[0]), st.integers(0, shape[0]))))
        x0, x1 = sorted(data.draw(st.tuples(st.integers(0, shape[1]), st.integers(0, shape[1]))))
        if written[y0:y1, x0:x1].all():
            got = arr[y0:y1, x0:x1]
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, ref[y0:y1, x0:x1])
        else:
            with pytest.raises(MissingBlock, match="scratch block .* is missing"):
                arr[y0:y1, x0:x1]
        if written.all():
            np.testing.assert_array_equal(arr[...], ref)
        else:
            with pytest.raises(MissingBlock):
                arr[...]


def test_a_write_of_part_of_a_block_is_refused_and_writes_nothing(tmp_path):
    arr = BlockArray(tmp_path / "a", (10, 10), (4, 4), np.int32)
    with pytest.raises(ValueError, match="whole blocks"):
        arr[1:4, 0:4] = 7
    with pytest.raises(ValueError, match="whole blocks"):
        arr[0:4, 0:6] = 7
    assert not (tmp_path / "a").exists()
    arr[8:10, 8:10] = 5  # the partial block at the array's end is a whole block
    np.testing.assert_array_equal(arr[8:10, 8:10], [[5, 5], [5, 5]])


def test_an_array_pickled_to_another_process_reads_what_was_written(tmp_path):
    arr = BlockArray(tmp_path / "a", (6, 9), (3, 3), np.int64)
    arr[:, :] = np.arange(54).reshape(6, 9)
    back = pickle.loads(pickle.dumps(arr))
    np.testing.assert_array_equal(back[2:5, 1:8], np.arange(54).reshape(6, 9)[2:5, 1:8])


def test_to_dask_reads_lazily_with_the_requested_chunks(tmp_path):
    arr = BlockArray(tmp_path / "a", (20, 30), (8, 8), np.int32)
    values = np.arange(600, dtype=np.int32).reshape(20, 30)
    arr[...] = values
    x = arr.to_dask(chunks=((5, 15), (30,)))
    assert isinstance(x, da.Array) and x.chunks == ((5, 15), (30,)) and x.dtype == np.int32
    np.testing.assert_array_equal(x.compute(), values)


def test_a_rewritten_block_is_read_anew_and_blocks_are_cached_read_only():
    with Scratch() as scratch:
        arr = scratch.array((4, 6), (4, 3), np.int32)
        arr[:, :3] = 1
        arr[:, 3:] = 0
        first = arr._read_block((0, 0))
        assert arr._read_block((0, 0)) is first  # decoded once
        assert not first.flags.writeable  # callers cannot change what others read
        whole_block = arr[0:4, 0:3]  # one whole block: the cached one itself, read-only
        assert whole_block is first and not whole_block.flags.writeable
        part = arr[1:3, 1:5]  # anything else: a new array
        assert part.flags.writeable and part.tolist() == [[1, 1, 0, 0]] * 2
        arr[:, :3] = 7
        np.testing.assert_array_equal(arr[:, :], np.repeat([[7] * 3 + [0] * 3], 4, axis=0))


def test_the_block_cache_keeps_at_most_its_bytes_and_drops_the_least_recently_used():
    from cathodeflow.tiling.scratch import _BlockCache

    cache = _BlockCache(max_bytes=3 * 80)
    blocks = {k: np.full(10, n, np.int64) for n, k in enumerate("abcd")}  # 80 bytes each
    for k in "abc":
        cache.put((k,), blocks[k])
    assert cache.get(("a",)) is blocks["a"]  # a is now the most recent: b goes first
    cache.put(("d",), blocks["d"])
    assert cache.get(("b",)) is None and all(cache.get((k,)) is blocks[k] for k in "acd")
    cache.put(("big",), np.zeros(31, np.int64))  # larger than the cache: not kept
    assert cache.get(("big",)) is None and cache.get(("a",)) is blocks["a"]
    cache.drop("a")
    assert cache.get(("a",)) is None and cache.get(("c",)) is blocks["c"]


def _scratch_place():
    from distributed import get_worker

    with Scratch() as scratch:
        return str(scratch.path.parent), get_worker().local_directory


def test_scratch_made_in_a_worker_task_lies_in_the_workers_directory_else_in_the_temp_dir():
    import tempfile

    from cathodeflow.study.cluster import local_cluster

    with Scratch() as scratch:  # not in a worker
        assert str(scratch.path.parent) == tempfile.gettempdir()
    with local_cluster(1) as client:
        parent, local = client.submit(_scratch_place, pure=False).result()
    assert parent == local and local != tempfile.gettempdir()


def test_a_scratch_directory_that_does_not_exist_is_refused_in_one_line(tmp_path):
    from cathodeflow.config import Params
    from cathodeflow.errors import InputError

    with pytest.raises(InputError, match=r"scratch_dir \(--scratch-dir\) '.*nowhere' is not an existing directory"):
        Params(scratch_dir=str(tmp_path / "nowhere"))
    assert Params(scratch_dir=tmp_path).scratch_dir == str(tmp_path)
