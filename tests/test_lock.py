"""One writer at a time on a study store (DESIGN §4.1): cathodeflow.io.lock and its use by
``run_study`` / ``cathodeflow run``.

Holders are real processes (this one, subprocesses, a process that has exited), so
"alive" and "gone" come from the operating system, not from the code under test.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cathodeflow.errors import StoreError
from cathodeflow.io.lock import LOCK_NAME, StaleLockWarning, read_lock, store_lock
from cathodeflow.io.store import create_store, open_store
from cathodeflow.study.pipeline import run_study

CLI = [sys.executable, "-m", "cathodeflow.cli"]
HOST = socket.gethostname()


@pytest.fixture
def store(tmp_path):
    create_store(tmp_path / "s.zarr")
    return tmp_path / "s.zarr"


def _snapshot(path: Path) -> dict:
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_lock(store: Path, **holder) -> str:
    text = json.dumps({"started_utc": "2026-01-01T00:00:00+00:00", "command": "cathodeflow run",
                       "process_start": "", "token": "theirs", **holder})
    (store / LOCK_NAME).write_text(text)
    return text


def test_lock_file_names_this_process_while_held_and_is_gone_after(store):
    assert read_lock(store) is None
    with store_lock(store) as mine:
        on_disk = read_lock(store)
        assert on_disk == mine
        assert on_disk["pid"] == os.getpid() and on_disk["host"] == HOST
        # the store opens and lists its images while locked
        assert open_store(store, mode="r").image_ids() == []
    assert not (store / LOCK_NAME).exists()


def test_lock_is_released_when_the_block_is_interrupted(store):
    with pytest.raises(KeyboardInterrupt):
        with store_lock(store):
            raise KeyboardInterrupt
    assert not (store / LOCK_NAME).exists()


def test_second_holder_in_a_live_process_is_refused_naming_store_pid_and_host(store):
    with store_lock(store):
        before = (store / LOCK_NAME).read_bytes()
        with pytest.raises(StoreError) as e:
            with store_lock(store):
                pass
        msg = str(e.value)
        assert str(store) in msg and f"pid {os.getpid()} on {HOST}" in msg and "\n" not in msg
        assert (store / LOCK_NAME).read_bytes() == before  # the holder's lock is untouched


def test_lock_of_a_process_that_exited_is_taken_over_with_a_warning(store):
    pid = _dead_pid()
    _write_lock(store, pid=pid, host=HOST)
    with pytest.warns(StaleLockWarning, match=f"pid {pid} on {HOST}"):
        with store_lock(store) as mine:
            assert read_lock(store)["token"] == mine["token"] and mine["pid"] == os.getpid()
    assert not (store / LOCK_NAME).exists()


def test_lock_whose_pid_now_belongs_to_another_process_is_stale(store):
    # a live pid (this process) whose recorded start time is not this process's: pid reuse
    _write_lock(store, pid=os.getpid(), host=HOST, process_start="1")
    with pytest.warns(StaleLockWarning):
        with store_lock(store):
            pass


def test_lock_of_another_host_is_never_taken_over(store):
    text = _write_lock(store, pid=_dead_pid(), host=HOST + "-elsewhere")
    with pytest.raises(StoreError, match=f"on {HOST}-elsewhere.*delete .*{LOCK_NAME}"):
        with store_lock(store):
            pass
    assert (store / LOCK_NAME).read_text() == text


def test_unreadable_lock_file_is_refused_not_taken_over(store):
    (store / LOCK_NAME).write_text("{not json")
    with pytest.raises(StoreError, match="unreadable"):
        with store_lock(store):
            pass
    assert (store / LOCK_NAME).read_text() == "{not json"


@pytest.mark.parametrize("start", ["free", "stale"])
def test_of_processes_racing_for_the_lock_exactly_one_gets_it(store, start):
    if start == "stale":
        _write_lock(store, pid=_dead_pid(), host=HOST)
    script = textwrap.dedent(f"""
        import sys, time, warnings
        warnings.simplefilter("ignore")
        from cathodeflow.errors import StoreError
        from cathodeflow.io.lock import store_lock
        while time.time() < {time.time() + 2}:  # start together
            time.sleep(0.001)
        try:
            with store_lock({str(store)!r}):
                print("got", flush=True)
                time.sleep(1.5)
        except StoreError:
            print("refused", flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["got", "refused", "refused", "refused"]
    assert not (store / LOCK_NAME).exists()


def test_run_study_is_refused_while_another_run_holds_the_store_and_leaves_it_untouched(store):
    with store_lock(store):
        before = _snapshot(store)
        with pytest.raises(StoreError, match=f"pid {os.getpid()}"):
            run_study(store, scheduler="sync")
        assert _snapshot(store) == before


def test_run_study_releases_the_lock_when_it_fails(store):
    with pytest.raises(Exception, match="holds no images"):
        run_study(store, scheduler="sync")
    assert not (store / LOCK_NAME).exists()


def test_cli_run_on_a_locked_store_exits_2_with_one_line_naming_store_and_holder(store):
    with store_lock(store):
        before = _snapshot(store)
        r = subprocess.run(CLI + ["run", "--store", str(store), "--scheduler", "sync"],
                           capture_output=True, text=True, timeout=120)
        after = _snapshot(store)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cathodeflow: error: ")
    assert str(store) in lines[0] and f"pid {os.getpid()} on {HOST}" in lines[0]
    assert after == before


def test_ingest_and_rm_are_refused_while_a_run_holds_the_store(store, tmp_path):
    import numpy as np

    from cathodeflow.io.sem import write_tiff
    from cathodeflow.study.inventory import remove_images
    from cathodeflow.study.pipeline import ingest

    write_tiff(tmp_path / "a.tif", np.full((64, 64), 100, np.uint8), pixel_size_um=0.0385)
    ingest([tmp_path / "a.tif"], store=store, condition="c")
    write_tiff(tmp_path / "b.tif", np.full((64, 64), 90, np.uint8), pixel_size_um=0.0385)
    before = _snapshot(store)
    with store_lock(store):
        held = _snapshot(store)
        with pytest.raises(StoreError, match="cathodeflow run"):
            ingest([tmp_path / "b.tif"], store=store, condition="c")
        with pytest.raises(StoreError, match="cathodeflow run"):
            remove_images(store, ["a"])
        assert _snapshot(store) == held
    assert _snapshot(store) == before and open_store(store, mode="r").image_ids() == ["a"]
