"""One Ctrl-C stops ``cathodeflow run`` at once and cleanly; the next run resumes.

The command-line test sends SIGINT to the whole process group, as a terminal's Ctrl-C does,
so the Dask worker processes receive it too. The tables of the interrupted-then-resumed run
are compared with those of an uninterrupted run on an identical store; the kernel's view of
the worker processes (alive, signal mask) is read from /proc and psutil.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from cathodeflow.cli import main
from cathodeflow.io.lock import LOCK_NAME
from cathodeflow.io.sem import write_tiff
from cathodeflow.io.store import open_store
from cathodeflow.io.tables import SCHEMAS
from cathodeflow.study.cluster import Cancelled, local_cluster, scheduler_context
from cathodeflow.study.pipeline import ingest
from cathodeflow.synth import generate_image

CLI = [sys.executable, "-m", "cathodeflow.cli"]
RUN = ["--marker-radius-um", "0.143"]  # 10 px on the sr grid: small particles, fast
SMALL = dict(shape_lr=(260, 390), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)
STORE_STAGES = ("sr", "phase", "labels/cracks", "labels/particles")
PROGRESS = re.compile(r"\S+: (sr|phase|labels and measurements) done|tables written to .*"
                      r"|Dask dashboard: http://127\.0\.0\.1:\d+/status")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A store of six small synthetic images (three per condition), nothing computed: enough
    work left after the first stage that an interrupt there always lands mid-run."""
    d = tmp_path_factory.mktemp("pristine")
    for k, cond in enumerate(("20C", "50C")):
        for j in range(3):
            im = generate_image(cond, seed=10 * k + j, image_id=f"{cond}_{j:03d}", **SMALL)
            write_tiff(d / f"{im.image_id}.tif", im.lr, pixel_size_um=im.pixel_size_lr_um)
            ingest([d / f"{im.image_id}.tif"], store=d / "s.zarr", condition=cond)
    return d / "s.zarr"


def _as_a_terminals_foreground_job():
    """In the child before exec: SIGINT delivered and handled as for a command typed in a
    terminal. A shell starts background jobs (``cmd &``, nohup, some CI runners) with SIGINT
    ignored, children inherit that, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _complete_stages(store) -> dict:
    st = open_store(store, mode="r")
    return {(i, s): st.stage_info(i, s)["end_utc"] for i in st.image_ids() for s in STORE_STAGES
            if st.is_complete(i, s)}


def _tables(store) -> dict:
    d = open_store(store, mode="r").tables_dir
    return {n: pd.read_parquet(Path(d) / f"{n}.parquet") for n in SCHEMAS}


def _live_members(pgid) -> list:
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.info["pid"]) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p.info["pid"])
        except (ProcessLookupError, psutil.Error):
            pass
    return out


def test_one_ctrl_c_stops_run_with_one_line_and_the_resumed_run_equals_an_uninterrupted_one(
    pristine, tmp_path
):
    store = tmp_path / "s.zarr"
    shutil.copytree(pristine, store)
    p = subprocess.Popen(CLI + ["run", "--store", str(store), "--scheduler", "processes", *RUN],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True,  # its own process group, as in a terminal
                         preexec_fn=_as_a_terminals_foreground_job)
    lines, started = [], threading.Event()

    def read():
        for line in p.stderr:
            lines.append(line.rstrip("\n"))
            if line.endswith(": sr done\n"):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(180), "no stage finished: " + "\n".join(lines)
        t0 = time.monotonic()
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C: the CLI and the Dask worker processes
        rc = p.wait(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    reader.join(5)
    assert rc != 0, "the run finished before the interrupt landed: the test store is too small"
    assert rc == 130 and elapsed < 10
    err = "\n".join(lines)
    assert "Traceback" not in err
    ours = [ln for ln in lines if ln.startswith("cathodeflow:")]
    assert len(ours) == 1 and "interrupted" in ours[0]
    assert all(PROGRESS.fullmatch(ln) for ln in lines if ln not in ours), err
    deadline = time.monotonic() + 5  # no worker process outlives the run
    while _live_members(p.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _live_members(p.pid) == []
    assert not (store / LOCK_NAME).exists()

    # the stages reported done were kept complete
    kept = _complete_stages(store)
    reported = {(ln.split(":")[0], "sr") for ln in lines if ln.endswith(": sr done")}
    assert reported <= set(kept)

    # resume (on threads: the quiet shutdown of a local cluster after a run is tested below)
    r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "threads", *RUN],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert all(PROGRESS.fullmatch(ln) for ln in r.stderr.splitlines() if ln.strip()), r.stderr
    after = _complete_stages(store)
    assert {k: after[k] for k in kept} == kept  # complete stages were not recomputed
    ids = open_store(store, mode="r").image_ids()
    assert len(ids) == 6 and set(after) == {(i, s) for i in ids for s in STORE_STAGES}

    reference = tmp_path / "reference.zarr"
    shutil.copytree(pristine, reference)
    assert main(["run", "--store", str(reference), "--scheduler", "threads", *RUN]) == 0
    resumed, uninterrupted = _tables(store), _tables(reference)
    for name in SCHEMAS:
        pd.testing.assert_frame_equal(resumed[name], uninterrupted[name])


@pytest.mark.parametrize("name", ["sync", "threads"])
def test_leaving_a_local_scheduler_context_by_an_interrupt_cancels_computes_of_other_threads(name):
    import dask

    ran = []

    def slow(i):
        time.sleep(0.05)
        ran.append(i)
        return i

    tasks = [dask.delayed(slow)(i) for i in range(200)]  # 10 s of work on one thread
    outcome = {}

    def compute():
        try:
            dask.compute(*tasks)
            outcome["finished"] = True
        except BaseException as e:  # noqa: BLE001 - what the thread saw is the result
            outcome["error"] = e

    worker = threading.Thread(target=compute)
    with pytest.raises(KeyboardInterrupt):
        with scheduler_context(name):
            worker.start()
            time.sleep(0.5)
            raise KeyboardInterrupt
    t0 = time.monotonic()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - t0 < 1
    assert isinstance(outcome.get("error"), Cancelled)
    from dask.system import CPU_COUNT

    n_threads = 1 if name == "sync" else CPU_COUNT
    assert len(ran) <= (0.5 + 1) / 0.05 * n_threads  # stopped within a second, not after 200 tasks
    # a context left normally leaves later computes alone
    with scheduler_context(name):
        pass
    assert dask.compute(dask.delayed(slow)(7))[0] == 7


def _sigint_blocked(pid) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    blocked = int(re.search(r"^SigBlk:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    return bool(blocked & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from /proc")
def test_local_cluster_workers_ignore_ctrl_c_and_are_killed_at_once_when_interrupted():
    with pytest.raises(KeyboardInterrupt):
        with local_cluster(2) as client:
            pids = [n.pid for n in client.cluster.workers.values()]
            assert len(pids) == 2 and all(_sigint_blocked(pid) for pid in pids)
            busy = client.submit(time.sleep, 60, pure=False)
            deadline = time.monotonic() + 20
            while not any(client.processing().values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert busy.status == "pending" and any(client.processing().values())
            t0 = time.monotonic()
            raise KeyboardInterrupt
    assert time.monotonic() - t0 < 5  # not the 60 s of the running task
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_local_cluster_closing_after_work_prints_nothing(capfd, monkeypatch):
    # the workers write to the same stderr (file descriptor 2) as this process
    import dask.array as da
    import distributed.scheduler

    # workers heartbeat every 5 ms instead of 500 ms: some heartbeat meets the closing
    # scheduler, which is what prints "Failed to communicate with scheduler during heartbeat"
    monkeypatch.setattr(distributed.scheduler, "heartbeat_interval", lambda n: 0.005)
    capfd.readouterr()
    with local_cluster(2) as client:
        x = da.random.default_rng(0).random((1000, 1000), chunks=250)
        assert 0.49 < float(x.mean().compute(scheduler=client)) < 0.51
        time.sleep(1)
    time.sleep(0.5)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "distributed." not in err and "Stream is closed" not in err, err


def test_local_cluster_workers_start_without_distributeds_malloc_trim_threshold(monkeypatch):
    # an explicit M_TRIM_THRESHOLD pins glibc's mmap threshold: every large array is mapped
    # and unmapped again (a third more CPU per image, measured by benchmarks/bench_campaign.py)
    import os

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as a nanny started earlier leaves it
    with local_cluster(2) as client:
        got = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert len(got) == 2 and set(got.values()) == {None}
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
    with local_cluster(1, malloc_trim_threshold=65536) as client:  # asked for: set
        assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {"65536"}
