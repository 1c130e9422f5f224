"""A cluster whose workers do not see one of this machine's folders (each worker in a mount
namespace of its own, with an empty tmpfs over the folder the command uses as its temp dir:
as on other machines), and what the commands do about it:

- images spread tile by tile exchange scratch blocks through a directory: ``spread`` is
  refused, ``auto`` runs such images in-task with a warning, ``--scratch-dir`` on a shared
  folder works (before the check, the blocks written on one worker were read as zeros on
  another);
- a store in a folder the workers do not see, or inputs they cannot read: refused in one
  line before anything is written (the workers would have written the store's chunks to
  their own disks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from _cluster import Cluster, private_dir_prefix
from _geometry import disc_grid

from cathodeflow.config import Params
from cathodeflow.io.store import open_store
from cathodeflow.io.tables import read_table
from cathodeflow.study.describe import describe
from cathodeflow.study.pipeline import write_synthetic_mosaic

ETA = 0.0143
TABLES = ("images", "cracks", "particles", "local_porosity", "local_porosity_images", "conditions")
TILED = ["--chunk-size", "300", "--whole-image-px", "0", "--pixel-size-um", str(ETA), "--marker-radius-um", "0.143"]


@pytest.fixture(scope="module")
def apart(tmp_path_factory):
    """(cluster, the command's temp dir, a folder all share): two workers that each see an
    empty directory of their own where the command has its temp dir."""
    tmp = tmp_path_factory.mktemp("apart")
    client_tmp = tmp / "client-tmp"
    client_tmp.mkdir()
    prefix = private_dir_prefix(client_tmp)
    if prefix is None:
        pytest.skip("this machine cannot start a process in a mount namespace of its own (unshare, mount)")
    cluster = Cluster(tmp / "cluster", worker_prefix=prefix)
    cluster.client().close()  # both workers are up
    yield cluster, client_tmp, tmp
    cluster.stop()


def cli(args, client_tmp):
    env = {**os.environ, "TMPDIR": str(client_tmp)}
    return subprocess.run([sys.executable, "-m", "cathodeflow.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


def local_tables(path):
    return describe([str(path)], pixel_size_um=ETA, params=Params(marker_radius_um=0.143), scheduler="sync")


def test_workers_on_other_disks_do_not_see_the_temp_dir_and_see_a_shared_one(apart):
    from cathodeflow.study.cluster import workers_not_seeing

    cluster, client_tmp, shared = apart
    client = cluster.client()
    try:
        assert workers_not_seeing(client, str(client_tmp)) == sorted(client.nthreads())
        assert workers_not_seeing(client, str(shared)) == []
        assert not [p for p in shared.iterdir() if p.name.startswith(".cathodeflow-shared-")]  # removed
    finally:
        client.close()


def test_describe_spread_is_refused_when_the_workers_do_not_see_the_scratch_directory(apart, tmp_path):
    cluster, client_tmp, _ = apart
    tifffile.imwrite(tmp_path / "m.tif", disc_grid(0))
    res = cli(["describe", tmp_path / "m.tif", *TILED, "--tiled-images", "spread", "--scheduler", cluster.address,
               "--out", tmp_path / "out"], client_tmp)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cathodeflow: error: --tiled-images spread: the scratch "
                                                   f"directory {client_tmp} is not seen by 2 of the cluster's 2 workers")
    assert "--scratch-dir" in lines[0]
    assert not (tmp_path / "out").exists()


def test_describe_auto_runs_a_lone_tiled_image_in_one_task_there_and_warns(apart, tmp_path):
    cluster, client_tmp, _ = apart
    tifffile.imwrite(tmp_path / "m.tif", disc_grid(1))
    res = cli(["describe", tmp_path / "m.tif", *TILED, "--scheduler", cluster.address, "--out", tmp_path / "out"],
              client_tmp)
    assert res.returncode == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if line.startswith("cathodeflow: warning:")]
    assert len(warned) == 1 and "run in one task each" in warned[0] and "--scratch-dir" in warned[0], res.stderr
    expected = local_tables(tmp_path / "m.tif")
    assert len(expected["particles"]) == 100
    for name in TABLES:
        pd.testing.assert_frame_equal(read_table(tmp_path / "out" / f"{name}.parquet", name), expected[name],
                                      obj=name)


def test_describe_spread_with_a_shared_scratch_dir_gives_the_tables_of_a_local_run(apart, tmp_path):
    cluster, client_tmp, _ = apart
    tifffile.imwrite(tmp_path / "m.tif", disc_grid(2))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    res = cli(["describe", tmp_path / "m.tif", *TILED, "--tiled-images", "spread", "--scratch-dir", scratch,
               "--scheduler", cluster.address, "--out", tmp_path / "out"], client_tmp)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr
    expected = local_tables(tmp_path / "m.tif")
    for name in TABLES:
        pd.testing.assert_frame_equal(read_table(tmp_path / "out" / f"{name}.parquet", name), expected[name],
                                      obj=name)
    assert list(scratch.iterdir()) == []  # the image's scratch folder is gone


def test_run_spread_is_refused_before_anything_is_written(apart, tmp_path):
    cluster, client_tmp, _ = apart
    store = tmp_path / "study.zarr"
    write_synthetic_mosaic(store, megapixels=0.6, tile_lr_px=130, chunk_px=256)  # a phase map of 3 × 3 chunks
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert open_store(store, mode="r").image_ids()
    res = cli(["run", "--store", store, "--marker-radius-um", 0.143, "--chunk-size", 256, "--whole-image-px", 0,
               "--tiled-images", "spread", "--scheduler", cluster.address], client_tmp)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("cathodeflow: error: --tiled-images spread: ")
    after = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert after == before


def test_run_of_images_that_fit_one_task_gives_no_scratch_warning_there(apart, tmp_path):
    """No image is processed tiled (each fits one task), so the scratch directory the workers
    do not see plays no part: no warning about it. The same store tiled does warn."""
    cluster, client_tmp, _ = apart
    store = tmp_path / "study.zarr"
    write_synthetic_mosaic(store, megapixels=0.3, tile_lr_px=130, chunk_px=256)
    base = ["run", "--store", store, "--marker-radius-um", 0.143, "--chunk-size", 256, "--scheduler", cluster.address]
    res = cli(base, client_tmp)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr, res.stderr
    res = cli([*base, "--from", "labels", "--whole-image-px", 0], client_tmp)
    assert res.returncode == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if line.startswith("cathodeflow: warning:")]
    assert len(warned) == 1 and "run in one task each" in warned[0], res.stderr


def test_run_on_a_store_the_workers_do_not_see_is_refused_and_leaves_it_unchanged(apart):
    cluster, client_tmp, _ = apart
    store = client_tmp / "study.zarr"  # only this machine sees it
    write_synthetic_mosaic(store, megapixels=0.3, tile_lr_px=130, chunk_px=256)
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    res = cli(["run", "--store", store, "--marker-radius-um", 0.143, "--scheduler", cluster.address], client_tmp)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cathodeflow: error: --store {store}: the store is not seen by 2 of the cluster's 2 "
                           "workers"), res.stderr
    assert "s3://" in last
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before


def test_stage_chunks_are_neither_read_nor_written_by_a_worker_that_does_not_see_the_store(apart):
    """Past `run`'s check (a worker that joined later, a caller of the Python API): a task
    that reads a stored stage, or writes one, on a worker without the store's folder fails
    naming the worker, where it read zeros and wrote to that worker's own disk."""
    import dask.array as da

    from cathodeflow.errors import StoreError

    cluster, client_tmp, _ = apart
    store = client_tmp / "hidden.zarr"  # only this machine sees it
    write_synthetic_mosaic(store, megapixels=0.3, tile_lr_px=130, chunk_px=256)
    st = open_store(store)
    phase = st.read_stage("mosaic", "phase")
    solid_px = int((phase > 0).sum().compute(scheduler="sync"))
    assert solid_px > 0
    client = cluster.client()
    try:
        with pytest.raises(StoreError, match="does not see the store folder") as e:
            (phase > 0).sum().compute(scheduler=client)
        assert str(store) in str(e.value) and "tcp://127.0.0.1:" in str(e.value)
        with pytest.raises(StoreError, match="does not see the store folder"):  # opened in a task (in-task images)
            client.submit(st.read_stage, "mosaic", "phase", pure=False).result()
        sr = da.ones(phase.shape, dtype=np.float32, chunks=256)
        with pytest.raises(StoreError, match="does not see the store folder"):
            st.write_stage("mosaic", "sr", sr, pixel_size_um=ETA, params={}, compute_kw={"scheduler": client},
                           resume=True)
        assert st.stage_info("mosaic", "sr") is None or not st.stage_info("mosaic", "sr").get("complete")
        assert not list((store / "images" / "mosaic" / "sr").glob("0/c/*"))  # no chunk here
    finally:
        client.close()


def test_describe_of_inputs_the_workers_do_not_see_is_refused_in_one_line(apart, tmp_path):
    cluster, client_tmp, _ = apart
    hidden = client_tmp / "m.tif"  # only this machine sees it
    tifffile.imwrite(hidden, disc_grid(4))
    res = cli(["describe", hidden, *TILED, "--scheduler", cluster.address, "--out", tmp_path / "out"], client_tmp)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cathodeflow: error: {hidden}: this input is not seen by 2 of "
                                                   "the cluster's 2 workers"), res.stderr
    assert not (tmp_path / "out").exists()


def test_unet_weights_that_differ_on_the_workers_are_refused_in_one_line(apart, tmp_path):
    """The weights path names other weights on the workers' disks (another file there, as on
    machines with another version): their tasks refuse to load them instead of computing
    with them."""
    import dask.array as da
    from _unet import tiny_weights

    from cathodeflow.errors import InputError
    from cathodeflow.stages.unet import unet_stage_dask

    cluster, client_tmp, _ = apart
    mine = Path(tiny_weights(client_tmp, name="w", seed=3))
    theirs = Path(tiny_weights(tmp_path, name="w", seed=4))
    client = cluster.client()
    try:
        for name in ("w.weights.h5", "w.json"):  # on the workers' own disks, at the same path
            client.run(Path.write_bytes, mine.with_name(name), (theirs.parent / name).read_bytes())
        image = da.from_array(np.random.default_rng(0).integers(0, 255, (96, 96)).astype(np.uint8), chunks=48)
        prob, _, prov = unet_stage_dask(image, pixel_size_um=ETA, weights=str(mine), tile_px=48)
        with pytest.raises(InputError) as e:
            prob.compute(scheduler=client)
    finally:
        client.close()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"weights {str(mine)!r}: sha256 ")
    assert f"{prov['weights_sha256']} where the run started" in msg and "Dask worker tcp://127.0.0.1:" in msg


def test_relative_paths_reach_workers_that_run_in_another_directory(tmp_path):
    """Inputs and stores named relative to the command's directory are opened by workers
    started elsewhere (as ``dask worker`` on another machine with the same mounts)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cluster = Cluster(tmp_path / "cluster", worker_cwd=elsewhere)
    try:
        cluster.client().close()
        tifffile.imwrite(tmp_path / "m.tif", disc_grid(5))
        env = {**os.environ}
        run = lambda args: subprocess.run([sys.executable, "-m", "cathodeflow.cli", *map(str, args)],  # noqa: E731
                                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        res = run(["describe", "m.tif", *TILED, "--tiled-images", "in-task", "--scheduler", cluster.address,
                   "--out", "out"])
        assert res.returncode == 0, res.stderr
        expected = local_tables(tmp_path / "m.tif")
        for name in TABLES:
            pd.testing.assert_frame_equal(read_table(tmp_path / "out" / f"{name}.parquet", name), expected[name],
                                          obj=name)
        write_synthetic_mosaic(tmp_path / "study.zarr", megapixels=0.3, tile_lr_px=130, chunk_px=256)
        res = run(["run", "--store", "study.zarr", "--marker-radius-um", 0.143, "--chunk-size", 256,
                   "--whole-image-px", 0, "--tiled-images", "in-task", "--scheduler", cluster.address])
        assert res.returncode == 0, res.stderr
        st = open_store(tmp_path / "study.zarr", mode="r")
        assert st.is_complete("mosaic", "labels/particles")
        assert int(st.read_stage("mosaic", "labels/particles").max().compute()) > 0
        assert not (elsewhere / "study.zarr").exists() and not (elsewhere / "out").exists()
    finally:
        cluster.stop()
