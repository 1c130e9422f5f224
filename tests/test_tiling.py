"""Tests of cathodeflow.tiling.components: global labels, boxes, object crops, paste."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cathodeflow.errors import InputError
from cathodeflow.tiling.components import (
    ObjectBatch,
    Piece,
    first_pixels,
    label_components,
    map_object_crops,
    object_boxes,
    paste_crops,
    relabel,
)


def _forbid_compute(*args, **kwargs):
    raise AssertionError("a lazy function computed a Dask graph")


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label images have the same background and the same partition."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[a > 0]]), axis=1)
    return (np.unique(pairs[0]).size == pairs.shape[1]) and (np.unique(pairs[1]).size == pairs.shape[1])


def _is_raster_canonical(lab: np.ndarray, n: int) -> bool:
    first = first_pixels(lab, n)[1:]
    return bool(np.all(first >= 0) and np.all(np.diff(first) > 0))


masks = hnp.arrays(
    dtype=bool,
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    elements=st.booleans(),
)


# ---------------------------------------------------------------- label_components
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask=masks, cy=st.integers(4, 17), cx=st.integers(4, 17), conn=st.sampled_from([1, 2]))
def test_label_components_equals_scipy_label_of_whole_mask(mask, cy, cx, conn):
    ref, nref = ndi.label(mask, structure=ndi.generate_binary_structure(2, conn))
    lab, n = label_components(da.from_array(mask, chunks=(cy, cx)), connectivity=conn)
    lab = lab.compute(scheduler="synchronous")
    assert n == nref
    assert lab.dtype == np.uint32
    assert _same_partition(lab, ref)
    assert _is_raster_canonical(lab, n)


def test_label_components_is_identical_for_any_chunking():
    rng = np.random.default_rng(0)
    mask = ndi.binary_opening(rng.random((97, 131)) < 0.55)
    results = [
        label_components(da.from_array(mask, chunks=c), connectivity=1)[0].compute()
        for c in [(97, 131), (37, 53), (10, 131), (97, 7), (16, 16)]
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_diagonal_pixels_across_a_chunk_corner_join_only_with_8_connectivity():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = True  # chunk corner between them at (2, 2)
    x = da.from_array(mask, chunks=(2, 2))
    lab4, n4 = label_components(x, connectivity=1)
    lab8, n8 = label_components(x, connectivity=2)
    assert (n4, n8) == (2, 1)
    np.testing.assert_array_equal(lab8.compute()[mask], [1, 1])
    np.testing.assert_array_equal(lab4.compute()[mask], [1, 2])


def test_a_spiral_through_many_chunks_is_one_component():
    mask = np.zeros((40, 40), bool)
    mask[2, 2:38] = mask[2:38, 37] = mask[37, 4:38] = mask[6:38, 4] = mask[6, 4:33] = True
    lab, n = label_components(da.from_array(mask, chunks=(3, 5)), connectivity=1)
    assert n == 1
    np.testing.assert_array_equal(lab.compute(), mask.astype(np.uint32))


def test_label_components_of_empty_inputs():
    lab, n = label_components(da.zeros((0, 5), dtype=bool, chunks=5))
    assert n == 0 and lab.shape == (0, 5)
    lab, n = label_components(da.zeros((30, 20), dtype=bool, chunks=7))
    assert n == 0 and not lab.compute().any()


def test_label_components_rejects_bad_arguments():
    with pytest.raises(InputError, match="connectivity"):
        label_components(da.zeros((4, 4), bool), connectivity=3)
    with pytest.raises(InputError, match="2D"):
        label_components(da.zeros((4, 4, 4), bool))


def test_label_components_accepts_zero_size_chunks():
    mask = np.zeros((10, 10), bool)
    mask[3:7, 3:7] = True
    x = da.concatenate([da.from_array(mask[:5], chunks=5), da.zeros((0, 10), bool), da.from_array(mask[5:], chunks=5)])
    lab, n = label_components(x)
    assert n == 1
    np.testing.assert_array_equal(lab.compute(), mask.astype(np.uint32))


# ---------------------------------------------------------------- object_boxes
@settings(max_examples=40, deadline=None)
@given(mask=masks, cy=st.integers(3, 17), cx=st.integers(3, 17))
def test_object_boxes_equal_find_objects_of_whole_image(mask, cy, cx):
    lab, n = ndi.label(mask)
    boxes = object_boxes(da.from_array(lab, chunks=(cy, cx)))
    assert boxes == {i + 1: b for i, b in enumerate(ndi.find_objects(lab))}


def test_object_boxes_with_sparse_large_label_values():
    lab = np.zeros((20, 30), np.uint64)
    lab[2:5, 3:9] = 7
    lab[10, 20:25] = 10**12
    lab[15:19, 0] = 7
    boxes = object_boxes(da.from_array(lab, chunks=(8, 8)))
    assert boxes == {7: (slice(2, 19), slice(0, 9)), 10**12: (slice(10, 11), slice(20, 25))}


# ---------------------------------------------------------------- map_object_crops
def _record_kernel(oid, box, lab_crop, img_crop, *, scale):
    return oid, box, lab_crop.copy(), img_crop * scale


def test_map_object_crops_hands_each_kernel_call_its_crop_with_margin():
    rng = np.random.default_rng(1)
    lab, n = ndi.label(rng.random((60, 70)) < 0.3)
    img = rng.random((60, 70))
    boxes = {i + 1: b for i, b in enumerate(ndi.find_objects(lab))}
    batches = map_object_crops(
        _record_kernel,
        [da.from_array(lab, chunks=(13, 17)), da.from_array(img, chunks=(25, 9))],
        boxes,
        margin=2,
        max_batch_px=400,
        kernel_kwargs={"scale": 2.0},
    )
    assert all(isinstance(b, ObjectBatch) for b in batches)
    assert sorted(i for b in batches for i in b.ids) == list(range(1, n + 1))
    assert len(batches) > 1
    (results,) = dask.compute([b.result for b in batches])
    for batch, res in zip(batches, results):
        for oid, cb, (roid, rbox, lc, ic) in zip(batch.ids, batch.boxes, res):
            want = tuple(
                slice(max(0, s.start - 2), min(dim, s.stop + 2)) for s, dim in zip(boxes[oid], lab.shape)
            )
            assert roid == oid and rbox == cb == want
            np.testing.assert_array_equal(lc, lab[want])
            np.testing.assert_array_equal(ic, img[want] * 2.0)


def test_map_object_crops_tasks_read_only_the_blocks_they_overlap():
    lab = np.zeros((100, 100), np.int32)
    lab[5:8, 5:8] = 1
    lab[90:95, 90:99] = 2
    read = []  # chunk locations of the blocks actually computed (the test's own record)

    def block(b, block_info=None):
        read.append(tuple(block_info[0]["chunk-location"]))
        return b

    x = da.from_array(lab, chunks=(10, 10)).map_blocks(block, dtype=lab.dtype)
    batches = map_object_crops(_record_kernel, [x, x], {1: (slice(5, 8), slice(5, 8)), 2: (slice(90, 95), slice(90, 99))},
                               margin=1, kernel_kwargs={"scale": 1})
    assert len(batches) == 2  # far apart: never one region spanning the image
    for b in batches:
        area = (b.region[0].stop - b.region[0].start) * (b.region[1].stop - b.region[1].start)
        assert area <= 11 * 11
    dask.compute([b.result for b in batches], scheduler="sync")
    # regions rows/cols 4:9 (block (0, 0)) and 89:96 × 89:100 (blocks (8|9, 8|9)), per input
    assert sorted(set(read)) == [(0, 0), (8, 8), (8, 9), (9, 8), (9, 9)]
    assert len(read) == 2 * 5  # each of the 2 inputs read those blocks once, none of the other 95


def _task_deps(batch) -> set:
    """Keys the task of one batch depends on (low-level graph)."""
    return set(dask.core.get_dependencies(dict(batch.result.dask), batch.result.key))


def _two_object_batches(arrays):
    return map_object_crops(_record_kernel, arrays, {1: (slice(5, 8), slice(5, 8)), 2: (slice(90, 95), slice(12, 99))},
                            margin=1, kernel_kwargs={"scale": 3})


def _check_two_object_results(batches, lab):
    (results,) = dask.compute([b.result for b in batches])
    got = {oid: r for b, res in zip(batches, results) for oid, r in zip(b.ids, res)}
    for oid, want in ((1, (slice(4, 9), slice(4, 9))), (2, (slice(89, 96), slice(11, 100)))):
        assert got[oid][1] == want
        np.testing.assert_array_equal(got[oid][2], lab[want])
        np.testing.assert_array_equal(got[oid][3], lab[want] * 3)


def test_map_object_crops_tasks_on_a_store_read_their_region_and_share_no_block(tmp_path):
    """Store-backed inputs: no block is a task shared by several batches (which the
    scheduler would keep in memory until its last reader ran); each task reads its region."""
    import zarr

    lab = np.arange(100 * 100, dtype=np.int32).reshape(100, 100) % 97
    z = zarr.create_array(str(tmp_path / "lab.zarr"), shape=lab.shape, chunks=(10, 10), dtype="i4")
    z[...] = lab
    x = da.from_zarr(z)
    batches = _two_object_batches([x, x])
    assert len(batches) == 2
    for b in batches:
        assert _task_deps(b) == set()
    _check_two_object_results(batches, lab)


def test_map_object_crops_tasks_on_persisted_arrays_take_only_their_blocks():
    """Inputs already in memory: tasks depend on the (held anyway) blocks they overlap."""
    lab = np.arange(100 * 100, dtype=np.int32).reshape(100, 100) % 97
    (x,) = dask.persist(da.from_array(lab, chunks=(10, 10)) + 0)
    batches = _two_object_batches([x, x])
    deps = [_task_deps(b) for b in batches]
    assert deps[0] == {(x.name, 0, 0)}  # rows 4:9, cols 4:9 (both inputs are x)
    assert deps[1] == {(x.name, i, j) for i in (8, 9) for j in range(1, 10)}  # rows 89:96, cols 11:100
    _check_two_object_results(batches, lab)


def test_map_object_crops_with_no_objects_is_empty():
    assert map_object_crops(_record_kernel, [da.zeros((5, 5))], {}) == []


def test_map_object_crops_rejects_mismatched_shapes():
    with pytest.raises(InputError, match=r"arrays\[1\]"):
        map_object_crops(_record_kernel, [da.zeros((5, 5)), da.zeros((5, 6))], {1: (slice(0, 1), slice(0, 1))})


# ---------------------------------------------------------------- paste_crops / relabel
def test_paste_crops_writes_nonzero_crop_pixels_through_their_values():
    base = np.arange(24 * 30, dtype=np.uint32).reshape(24, 30) % 5
    c1 = np.array([[0, 1], [2, 0]], np.uint8)
    c2 = np.array([[3, 3, 0]], np.uint16)
    c3 = np.ones((20, 25), np.uint8)
    c3[5:10, 5:10] = 0
    pieces = [
        Piece((slice(9, 11), slice(8, 10)), c1, (), np.array([0, 100, 200], np.uint32)),  # in c3's hole
        Piece((slice(0, 1), slice(27, 30)), dask.delayed([("x", c2)]), (0, 1), 10),
        Piece((slice(3, 23), slice(2, 27)), c3, (), None),
    ]
    want = base.copy()
    r = want[3:23, 2:27]
    r[c3 > 0] = 1
    want[9, 9], want[10, 8] = 100, 200
    want[0, 27:29] = 13
    out = paste_crops(base.shape, None, pieces, dtype=np.uint32, base=da.from_array(base, chunks=(7, 8)))
    assert out.chunks == ((7, 7, 7, 3), (8, 8, 8, 6))
    np.testing.assert_array_equal(out.compute(), want)
    out0 = paste_crops((24, 30), (11, 13), pieces[:1], dtype=np.int64)
    want0 = np.zeros((24, 30), np.int64)
    want0[9, 9], want0[10, 8] = 100, 200
    np.testing.assert_array_equal(out0.compute(), want0)


def test_paste_crops_and_relabel_stay_lazy():
    x = da.from_array(np.arange(100, dtype=np.int64).reshape(10, 10) % 4, chunks=4)
    with dask.config.set(scheduler=_forbid_compute):
        y = relabel(x, np.array([0, 5, 6, 7], np.uint16))
        z = paste_crops((10, 10), None, [Piece((slice(2, 4), slice(2, 4)), dask.delayed(np.ones((2, 2), np.uint8)))],
                        dtype=np.uint16, base=y)
    assert y.dtype == np.uint16
    want = np.array([0, 5, 6, 7], np.uint16)[np.arange(100).reshape(10, 10) % 4]
    want[2:4, 2:4] = 1
    np.testing.assert_array_equal(z.compute(), want)


def test_paste_chunk_tasks_depend_only_on_intersecting_pieces():
    srcs = [dask.delayed(np.ones((3, 3), np.uint8), name=f"piece-{k}") for k in range(2)]
    pieces = [Piece((slice(0, 3), slice(0, 3)), srcs[0]), Piece((slice(17, 20), slice(17, 20)), srcs[1])]
    out = paste_crops((20, 20), (10, 10), pieces, dtype=np.uint8)
    graph = dict(out.__dask_graph__())
    paste_keys = [k for k in graph if isinstance(k, str) and k.startswith("_paste_block")]
    deps = {k: dask.core.get_dependencies(graph, k) for k in paste_keys}
    assert len(paste_keys) == 2  # the two chunks without pieces need no paste task
    assert sorted(sorted(d & {"piece-0", "piece-1"}) for d in deps.values()) == [["piece-0"], ["piece-1"]]
