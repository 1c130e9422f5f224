"""The scratch arrays of tiled runs (:class:`cathodeflow.tiling.scratch.BlockArray`): what is
written is read back, from any region, in any process; unwritten blocks read as 0; a write
that does not cover whole blocks is refused. The reference is a numpy array written alongside.
"""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cathodeflow.tiling.scratch import BlockArray, Scratch


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
        for i, j in order[: max(1, len(order) * 2 // 3)]:  # a third of the blocks stay unwritten
            region = np.s_[i * chunks[0]:(i + 1) * chunks[0], j * chunks[1]:(j + 1) * chunks[1]]
            block = (rng.integers(1, 100, size=ref[region].shape)).astype(dtype)
            arr[region] = block
            ref[region] = block
        y0, y1 = sorted(data.draw(st.tuples(st.integers(0, shape[0]), st.integers(0, shape[0]))))
        x0, x1 = sorted(data.draw(st.tuples(st.integers(0, shape[1]), st.integers(0, shape[1]))))
        got = arr[y0:y1, x0:x1]
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, ref[y0:y1, x0:x1])
        np.testing.assert_array_equal(arr[...], ref)


def test_a_write_of_part_of_a_block_is_refused_and_writes_nothing(tmp_path):
    arr = BlockArray(tmp_path / "a", (10, 10), (4, 4), np.int32)
    with pytest.raises(ValueError, match="whole blocks"):
        arr[1:4, 0:4] = 7
    with pytest.raises(ValueError, match="whole blocks"):
        arr[0:4, 0:6] = 7
    assert not (tmp_path / "a").exists()
    arr[8:10, 8:10] = 5  # the partial block at the array's end is a whole block
    np.testing.assert_array_equal(arr[7:10, 7:10], [[0, 0, 0], [0, 5, 5], [0, 5, 5]])


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
