"""Faults on a real Dask cluster (a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1): a worker killed by PID mid-stage costs its tasks, never the run (the tables equal
a local run's); a scheduler killed mid-run ends ``cathodeflow run`` with exit status 1 and one
line, and the next run on a new cluster recomputes only the stages that were not complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from _cluster import Cluster
from _geometry import disc_grid

from cathodeflow.config import Params
from cathodeflow.io.sem import write_tiff
from cathodeflow.io.store import open_store
from cathodeflow.io.tables import read_table
from cathodeflow.study.describe import describe
from cathodeflow.study.pipeline import ingest, run_study
from cathodeflow.synth import generate_image

ETA = 0.0143
PARAMS = Params(marker_radius_um=0.143)  # 10 px at 0.0143 µm
TABLES = ("images", "cracks", "particles", "local_porosity", "local_porosity_images", "conditions")
CLI = [sys.executable, "-m", "cathodeflow.cli"]
LABEL_ARRAYS = ("sr", "phase", "labels/cracks", "labels/particles")


@pytest.fixture
def clusters(tmp_path):
    made = []

    def make(name="cluster"):
        made.append(Cluster(tmp_path / name))
        return made[-1]

    yield make
    for c in made:
        c.stop()


def cli(*args, **kw):
    return subprocess.Popen(CLI + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def _kill_worker_in(task: str, client, pids: dict, proc, *, after_s: float) -> None:
    """Kill (SIGKILL, by PID) the first worker seen running a task whose key holds ``task``,
    ``after_s`` into it, while ``proc`` (a cathodeflow command on the cluster) runs; then
    check that the command still succeeds and that the killed worker is gone. Closes
    ``client``."""
    victim, deadline = None, time.monotonic() + 600
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        busy = [w for w, keys in client.processing().items() if any(task in str(k) for k in keys)]
        if busy:
            victim = busy[0]
            time.sleep(after_s)
            still_running = proc.poll() is None
            os.kill(pids[victim], signal.SIGKILL)
        time.sleep(0.02)
    out, err = proc.communicate(timeout=600)
    assert victim is not None and still_running, f"no {task} task was seen running: nothing was killed; {err}"
    assert proc.returncode == 0, err
    assert list(client.nthreads()) == [w for w in pids if w != victim]  # the killed worker is gone
    client.close()


def read_out(folder: Path) -> dict:
    return {n: read_table(folder / f"{n}.parquet", n) for n in TABLES}


@pytest.mark.parametrize("task, options", [
    ("describe_whole", []),  # each map one whole-image task
    ("describe_tiled", ["--chunk-size", 300, "--whole-image-px", 0, "--tiled-images", "in-task"]),  # 9 tiles
], ids=["whole", "tiled-in-task"])
def test_describe_on_a_cluster_whose_worker_is_killed_mid_task_gives_the_tables_of_a_local_run(
        tmp_path, clusters, task, options):
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"m{k}.tif")
        tifffile.imwrite(paths[-1], disc_grid(k))
    cluster = clusters()
    client = cluster.client()
    pids = client.run(os.getpid)
    assert sorted(pids.values()) == sorted(w.pid for w in cluster.workers)

    proc = cli("describe", *paths, "--pixel-size-um", ETA, "--marker-radius-um", 0.143, "--out",
               tmp_path / "out", "--scheduler", cluster.address, *options)
    _kill_worker_in(task, client, pids, proc, after_s=0.3)

    got = read_out(tmp_path / "out")
    local = describe([str(p) for p in paths], pixel_size_um=ETA, params=PARAMS, scheduler="sync")
    assert len(local["particles"]) == 3 * 10 * 10
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], local[name], obj=name)


#: The ``cathodeflow run`` progress line of a finished stage -> the store arrays it wrote.
DONE_LINES = {"sr done": ("sr",), "phase done": ("phase",),
              "labels and measurements done": ("labels/cracks", "labels/particles")}


def _finished_stages(stderr: str) -> set:
    """(image id, array) of the stages that ``cathodeflow run`` reported done on stderr."""
    out = set()
    for line in stderr.splitlines():
        iid, _, what = line.partition(": ")
        out |= {(iid, a) for a in DONE_LINES.get(what, ())}
    return out


@pytest.mark.slow
def test_run_whose_scheduler_is_killed_ends_with_one_line_and_resumes_only_unfinished_stages(tmp_path, clusters):
    from datetime import datetime, timezone

    small = dict(shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)
    files = []
    for k in range(3):
        im = generate_image("20C", seed=k, image_id=f"s{k}", **small)
        for copy in range(2):  # 6 images; the copies are stored and computed as images of their own
            files.append(tmp_path / f"img{k}{copy}.tif")
            write_tiff(files[-1], im.lr, pixel_size_um=im.pixel_size_lr_um)
    store, reference = tmp_path / "study.zarr", tmp_path / "reference.zarr"
    for s in (store, reference):
        ingest(files, store=s, condition="20C")
    ids = open_store(store, mode="r").image_ids()

    cluster = clusters("first")
    cluster.client().close()  # both workers are up
    proc = cli("run", "--store", store, "--marker-radius-um", 0.143, "--scheduler", cluster.address)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        st = open_store(store, mode="r")
        if any(st.is_complete(i, "labels/particles") for i in ids):  # an image is (almost) finished
            cluster.scheduler.kill()
            killed_utc = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert cluster.scheduler.poll() is not None, f"the run ended before the scheduler was killed: {err}"
    lines = err.strip().splitlines()
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "distributed" not in err, err
    assert lines[-1].startswith(f"cathodeflow: error: lost the Dask scheduler at {cluster.address} (")
    assert lines[-1].endswith("; rerun to resume")
    assert all(line.partition(": ")[2] in DONE_LINES or line.startswith("Dask dashboard: ")
               for line in lines[:-1]), err  # the dashboard's address and progress lines only
    cluster.stop()  # its workers too: nothing of the first cluster writes any more

    done = _finished_stages(err)
    st = open_store(store, mode="r")
    before = {key: st.stage_info(*key) for key in done}
    finished = {i for i, a in done if a == "labels/particles"}
    assert 1 <= len(finished) < len(ids), "the run was not stopped midway"

    cluster = clusters("second")
    cluster.client().close()
    proc = cli("run", "--store", store, "--marker-radius-um", 0.143, "--scheduler", cluster.address)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    st = open_store(store, mode="r")
    assert all(st.is_complete(i, a) for i in ids for a in LABEL_ARRAYS)
    for key, record in before.items():  # stages finished before the loss were kept, not recomputed
        assert st.stage_info(*key) == record, key
    for i in set(ids) - finished:  # the rest was (re)computed by the second run
        assert all(st.stage_info(i, a)["start_utc"] > killed_utc for a in ("labels/cracks", "labels/particles"))
    assert _finished_stages(err) == {(i, a) for i in ids for a in LABEL_ARRAYS} - done

    expected = run_study(reference, params=PARAMS, scheduler="threads")
    got = read_out(st.tables_dir)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], expected[name], obj=name)


@pytest.mark.slow  # 35 s: the sr and phase stages of four images first
def test_run_labels_in_task_whose_worker_is_killed_mid_task_writes_the_labels_of_a_local_run(tmp_path, clusters):
    """``run --tiled-images in-task``: a worker killed while it labels an image and writes
    the image's labels to the store costs that task; the scheduler runs it again elsewhere,
    and the labels and tables equal a threaded run's."""
    files = []
    for k in range(4):
        im = generate_image("20C", seed=k, image_id=f"t{k}", shape_lr=(208, 312), r10_um=0.6, r50_um=0.8,
                            r90_um=1.0, crack_intensity_per_um2=1.5)
        files.append(tmp_path / f"t{k}.tif")
        write_tiff(files[-1], im.lr, pixel_size_um=im.pixel_size_lr_um)
    store = tmp_path / "study.zarr"
    ingest(files, store=store, condition="20C")
    params = PARAMS.replace(chunk_px=128, whole_image_px=0)
    expected = run_study(store, params=params, scheduler="threads")  # every stage, labels spread
    st = open_store(store, mode="r")
    ids = st.image_ids()
    labels = {(i, a): st.read_stage(i, a).compute() for i in ids for a in ("labels/cracks", "labels/particles")}

    cluster = clusters()
    client = cluster.client()
    pids = client.run(os.getpid)
    proc = cli("run", "--store", store, "--from", "labels", "--marker-radius-um", 0.143, "--chunk-size", 128,
               "--whole-image-px", 0, "--tiled-images", "in-task", "--scheduler", cluster.address)
    _kill_worker_in("_label_image_here", client, pids, proc, after_s=0.2)  # reading, labelling or writing

    st = open_store(store, mode="r")
    for (i, a), lab in labels.items():
        assert st.is_complete(i, a), (i, a)
        np.testing.assert_array_equal(st.read_stage(i, a).compute(), lab)
    got = read_out(st.tables_dir)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], expected[name], obj=name)
