"""Tiled ``describe`` equals whole-image ``describe`` (DESIGN §5: tiled result == whole-image
result), for labels and for all five tables, with chunks that do not divide the image and
objects cut by chunk boundaries; threaded scheduler, plus one real multi-process cluster.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage.draw import line

from _geometry import disc

from cathodeflow.config import Params
from cathodeflow.errors import InputError
from cathodeflow.study import describe as describe_mod
from cathodeflow.measure.describe import dcenter_tables
from cathodeflow.study.describe import describe
from cathodeflow.measure.image import describe_phase
from cathodeflow.measure.tiled import describe_phase_dask

ETA = 0.0143
PARAMS = Params(marker_radius_um=10 * ETA)  # r = 10 px
# Marker radii of a few px are on purpose here (tiny maps): their PixelSizeWarning is expected.
pytestmark = pytest.mark.filterwarnings("ignore::cathodeflow.errors.PixelSizeWarning")
TABLES = ("images", "cracks", "particles", "local_porosity", "local_porosity_images", "conditions")


def synthetic_map(shape=(240, 310), seed=0):
    """Touching discs (several split by the watershed), discs cut by the frame, and cracks
    of widths 1–3 px crossing the chunk boundaries of chunks 37, 53 and 100 (and one lying
    along row 106 = 2·53, one along column 74 = 2·37)."""
    rng = np.random.default_rng(seed)
    ph = np.zeros(shape, np.uint8)
    centres = [(40, 40, 33), (40, 105, 33), (120, 200, 45), (200, 60, 40), (230, 280, 30),
               (110, 300, 25), (150, 120, 28), (0, 180, 22), (75, 160, 20), (200, 128, 30)]
    for k, (cy, cx, r) in enumerate(centres):  # overlaps of a few px: touching, split
        jitter = (0, 0) if k < 2 else rng.integers(-1, 2, size=2)
        ph[disc(shape, cy + jitter[0], cx + jitter[1], r)] = 1
    segs = [(10, 20, 70, 60), (40, 70, 40, 130), (90, 170, 150, 230), (200, 30, 200, 95),
            (120, 190, 125, 250), (230, 260, 236, 300), (106, 180, 106, 240), (20, 74, 60, 74),
            (5, 170, 12, 190), (140, 100, 160, 140)]
    for k, (r0, c0, r1, c1) in enumerate(segs):
        rr, cc = line(r0, c0, r1, c1)
        for w in range(1 + k % 3):  # widths 1, 2, 3
            rw = np.clip(rr + w, 0, shape[0] - 1)
            m = ph[rw, cc] > 0
            ph[rw[m], cc[m]] = 2
    ph[60, 150:154] = 2  # a 4-px crack (dropped by the filter) next to a 5-px one
    ph[62, 150:155] = 2
    return ph


@pytest.fixture(scope="module")
def phase():
    return synthetic_map()


@pytest.fixture(scope="module")
def whole(phase):
    return describe(phase, pixel_size_um=ETA, params=PARAMS, scheduler="sync", condition="c")


def always_tiled(params: Params) -> Params:
    """``params`` that tile every map of several chunks: describe() describes maps up to
    ``whole_image_px`` (2^25) px in one task whatever their chunks, and these tests are
    about the tiled path."""
    return params.replace(whole_image_px=0)


def assert_tables_equal(a, b):
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def test_the_synthetic_map_exercises_what_tiling_must_handle(whole, phase):
    p, c = whole["particles"], whole["cracks"]
    assert len(p) >= 8 and p.touches_border.any() and (~p.touches_border).any()
    assert len(c) >= 8 and (~c.kept).any() and (c.particle_id > 0).all()
    assert (p.n_cracks >= 2).any()
    # several particles share a component of B (touching particles split by the watershed)
    from scipy import ndimage as ndi

    assert ndi.label(phase > 0)[1] < len(p)


@pytest.mark.parametrize("chunk", [37, 53, 100])
def test_tiled_tables_equal_whole_image_tables_via_chunk_px(phase, whole, chunk):
    tiled = describe(phase, pixel_size_um=ETA, params=always_tiled(PARAMS), scheduler="threads",
                     condition="c", chunk_px=chunk)
    assert_tables_equal(whole, tiled)


@pytest.mark.parametrize("chunks", [37, (53, 100), (100, 37)])
def test_tiled_tables_equal_whole_image_tables_via_dask_input(phase, whole, chunks):
    arr = da.from_array(phase, chunks=chunks)
    tiled = describe(arr, pixel_size_um=ETA, params=always_tiled(PARAMS), scheduler="threads", condition="c")
    assert_tables_equal(whole, tiled)


@pytest.mark.parametrize("chunks", [37, (53, 100)])
def test_tiled_labels_equal_whole_image_labels(phase, chunks):
    tables = dcenter_tables(PARAMS)
    kw = dict(image_id="x", condition="c", pixel_size_um=ETA, params=PARAMS, dcenter=tables,
              keep_labels=True)
    w = describe_phase(phase, **kw)
    t = describe_phase_dask(da.from_array(phase, chunks=chunks), **kw)
    np.testing.assert_array_equal(np.asarray(t.crack_labels), w.crack_labels)
    np.testing.assert_array_equal(np.asarray(t.particle_labels), w.particle_labels)
    assert (w.crack_labels > 0).sum() == (phase == 2).sum()


def test_mixed_whole_and_tiled_images_keep_their_order(phase, whole):
    small = phase[:120, :150].copy()
    ref_small = describe(small, pixel_size_um=ETA, params=PARAMS, scheduler="sync",
                         condition="c", image_ids=["s"])
    out = describe({"big": da.from_array(phase, chunks=53), "s": small}, pixel_size_um=ETA,
                   params=always_tiled(PARAMS), scheduler="threads", condition="c")
    assert out["images"].image_id.tolist() == ["big", "s"]
    big_rows = out["cracks"][out["cracks"].image_id == "big"].reset_index(drop=True)
    exp = whole["cracks"].assign(image_id="big").astype(whole["cracks"].dtypes)
    # the `adjusted` flag is pooled over the condition, so compare everything else
    cols = [c for c in exp.columns if c != "adjusted"]
    pd.testing.assert_frame_equal(big_rows[cols], exp[cols])
    s_rows = out["particles"][out["particles"].image_id == "s"].reset_index(drop=True)
    pd.testing.assert_frame_equal(s_rows, ref_small["particles"])


def test_zarr_file_with_several_chunks_equals_the_whole_image(tmp_path, phase, whole):
    import zarr

    path = tmp_path / "m.zarr"
    z = zarr.create_array(str(path), shape=phase.shape, chunks=(64, 64), dtype="uint8")
    z[:] = phase
    out = describe([str(path)], pixel_size_um=ETA, params=always_tiled(PARAMS), scheduler="threads",
                   condition="c")
    assert out["images"].image_id.tolist() == ["m"]
    for name in TABLES:
        exp = whole[name]
        if "image_id" in exp:
            exp = exp.assign(image_id="m").astype(exp.dtypes)
        pd.testing.assert_frame_equal(out[name], exp, obj=name)


_DCENTER = describe_mod.dcenter_tables
_CACHE: dict = {}


def _cached_dcenter(params):
    if params not in _CACHE:
        _CACHE[params] = _DCENTER(params)
    return _CACHE[params]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), ch=st.integers(8, 60), cw=st.integers(8, 60),
       r=st.sampled_from([2.0, 4.0, 7.0]))
def test_tiled_equals_whole_on_random_maps_and_chunks(seed, ch, cw, r):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(30, 90)), int(rng.integers(30, 90)))
    ph = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(1, 8)):
        ph[disc(shape, rng.uniform(-5, shape[0] + 5), rng.uniform(-5, shape[1] + 5),
                rng.uniform(4, 20))] = 1
    ph[(rng.random(shape) < 0.08) & (ph > 0)] = 2
    for _ in range(4):
        rr, cc = line(*rng.integers(0, shape[0], 1), *rng.integers(0, shape[1], 1),
                      *rng.integers(0, shape[0], 1), *rng.integers(0, shape[1], 1))
        m = ph[rr, cc] > 0
        ph[rr[m], cc[m]] = 2
    params = Params(marker_radius_um=r * 0.05)  # r px at 0.05 µm
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(describe_mod, "dcenter_tables", _cached_dcenter)
        w = describe(ph, pixel_size_um=0.05, params=params, scheduler="sync")
        t = describe(da.from_array(ph, chunks=(ch, cw)), pixel_size_um=0.05, params=always_tiled(params),
                     scheduler="threads")
    assert_tables_equal(w, t)


@pytest.mark.parametrize("kind", ["background", "no_cracks", "all_crack", "one_px"])
def test_tiled_equals_whole_on_degenerate_maps(kind):
    ph = {
        "background": np.zeros((50, 70), np.uint8),
        "no_cracks": disc((50, 70), 25, 30, 22).astype(np.uint8),
        "all_crack": np.full((50, 70), 2, np.uint8),
        "one_px": np.pad(np.array([[2]], np.uint8), ((20, 29), (33, 36))),
    }[kind]
    params = Params(marker_radius_um=5 * ETA)
    w = describe(ph, pixel_size_um=ETA, params=params, scheduler="sync")
    t = describe(ph, pixel_size_um=ETA, params=always_tiled(params), scheduler="threads", chunk_px=16)
    assert_tables_equal(w, t)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ph=hnp.arrays(np.uint8, st.tuples(st.integers(1, 50), st.integers(1, 50)),
                     elements=st.integers(0, 2)),
       ch=st.integers(1, 30), cw=st.integers(1, 30), r=st.sampled_from([0.5, 1.0, 2.0, 3.0]))
def test_tiled_equals_whole_on_noise_maps_with_tiny_chunks(ph, ch, cw, r):
    params = Params(marker_radius_um=r * 0.05)  # r px at 0.05 µm
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(describe_mod, "dcenter_tables", _cached_dcenter)
        w = describe(ph, pixel_size_um=0.05, params=params, scheduler="sync")
        t = describe(da.from_array(ph, chunks=(ch, cw)), pixel_size_um=0.05, params=always_tiled(params),
                     scheduler="sync")
    assert_tables_equal(w, t)


def test_tiled_and_whole_images_on_a_multiprocess_local_cluster_equal_whole_tables(phase, whole):
    from cathodeflow.study.cluster import local_cluster

    other = synthetic_map(seed=3)[:200, :260].copy()
    maps = {"p": phase, "o": other}
    ref = describe(maps, pixel_size_um=ETA, params=PARAMS, scheduler="sync", condition="c")
    with local_cluster(2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        # each image's chunks spread over the workers, and each image tiled inside one task
        # (numpy maps: shipped to the cluster; Dask arrays: their graph travels in the task)
        runs = {mode: describe(maps, pixel_size_um=ETA, params=always_tiled(PARAMS).replace(tiled_images=mode),
                               scheduler=client, condition="c", chunk_px=53)
                for mode in ("spread", "in-task")}
        lazy = {k: da.from_array(v, chunks=(53, 37)) for k, v in maps.items()}
        held = dict(zip(lazy, client.persist(list(lazy.values()))))  # chunks in workers: futures in the graph
        given = [describe(arrays, pixel_size_um=ETA, params=params, scheduler=client, condition="c")
                 for arrays in (lazy, held)
                 for params in (always_tiled(PARAMS).replace(tiled_images="in-task"), PARAMS)]
        whole_on_cluster = describe(maps, pixel_size_um=ETA, params=PARAMS, scheduler=client, condition="c")
    for out in (*runs.values(), *given, whole_on_cluster):
        assert_tables_equal(ref, out)


def test_in_task_tiling_runs_each_image_chunk_by_chunk_in_one_task(phase, whole, tiled_describe_calls,
                                                                   chunk_task_threads):
    """On a cluster: one task per image, in which every round of the tiled graph runs on
    Dask's synchronous scheduler (no task submits tasks); locally: each image in this thread."""
    import threading

    from distributed import get_task_stream

    from cathodeflow.study.cluster import local_cluster

    params = always_tiled(PARAMS).replace(tiled_images="in-task")
    maps = {"a": phase, "b": phase[::-1].copy()}
    with local_cluster(1) as client:
        with get_task_stream(client=client) as ts:
            out = describe(maps, pixel_size_um=ETA, params=params, scheduler=client, condition="c", chunk_px=53)
    keys = [str(r["key"]) for r in ts.data]
    assert len(keys) == 2 and all("describe_tiled" in k for k in keys), keys
    assert_tables_equal(describe(maps, pixel_size_um=ETA, params=PARAMS, scheduler="sync", condition="c"), out)

    # local threads: the image's chunk tasks run in this thread (Dask's synchronous scheduler)
    seen = chunk_task_threads
    out = describe(phase, pixel_size_um=ETA, params=params, scheduler="threads", condition="c", chunk_px=53)
    assert len(seen) == 5 * 6 and set(seen) == {threading.get_ident()}  # one per chunk of 240 × 310 px
    assert tiled_describe_calls == [1]
    assert_tables_equal(whole, out)


def test_in_this_thread_is_private_to_the_thread_that_enters_it():
    import threading

    from cathodeflow.tiling.scheduler import _SCHEDULER, in_this_thread

    other = []
    with in_this_thread():
        assert _SCHEDULER.get() == "sync"
        th = threading.Thread(target=lambda: other.append(_SCHEDULER.get()))
        th.start()
        th.join()
    assert other == [None] and _SCHEDULER.get() is None


def test_tiled_images_auto_goes_in_task_from_two_images_per_cluster_thread():
    from cathodeflow.study.cluster import local_cluster, tiled_in_task

    auto = Params()
    # (choice, warning): no warning where every worker shares the scratch directory
    assert tiled_in_task(100, None, auto) == (False, None)  # local scheduler: its threads share each image's chunks
    assert tiled_in_task(1, None, auto.replace(tiled_images="in-task")) == (True, None)
    with local_cluster(2) as client:  # 2 single-threaded workers
        assert [tiled_in_task(n, client, auto) for n in (1, 3, 4, 50)] == [(False, None)] * 2 + [(True, None)] * 2
        assert tiled_in_task(50, client, auto.replace(tiled_images="spread")) == (False, None)
    for bad in ("tasks", None, 1):
        with pytest.raises(InputError, match="tiled_images"):
            Params(tiled_images=bad)


def test_maps_up_to_whole_image_px_run_as_one_task_whatever_their_chunks(phase, whole, tiled_describe_calls):
    n = phase.size
    # default (2^25 px): this map of many chunks is one whole-image task
    out = describe(da.from_array(phase, chunks=37), pixel_size_um=ETA, params=PARAMS, scheduler="threads",
                   condition="c")
    assert tiled_describe_calls == []
    assert_tables_equal(whole, out)
    # at the limit: still whole; one pixel below: tiled; the tables are the same
    describe(phase, pixel_size_um=ETA, params=PARAMS.replace(whole_image_px=n), scheduler="threads",
             condition="c", chunk_px=53)
    assert tiled_describe_calls == []
    out = describe(phase, pixel_size_um=ETA, params=PARAMS.replace(whole_image_px=n - 1), scheduler="threads",
                   condition="c", chunk_px=53)
    assert tiled_describe_calls == [1]
    assert_tables_equal(whole, out)
    for bad in (-1, 2.5, True):
        with pytest.raises(InputError, match="whole_image_px"):
            Params(whole_image_px=bad)
