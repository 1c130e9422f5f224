"""A real Dask cluster for tests: a ``dask scheduler`` and ``dask worker`` processes on
127.0.0.1, started as subprocesses (workers without a nanny: each PID is the worker's, and
nothing restarts a worker once killed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

START_S = 120  # for a scheduler or worker process to start on a loaded machine


def private_dir_prefix(directory: Path) -> list[str] | None:
    """A command prefix that runs a process in a mount namespace of its own, with an empty
    tmpfs over ``directory``: what the process sees there is its own, as on another machine.
    None where this machine cannot make one (no ``unshare``, or no right to mount)."""
    if shutil.which("unshare") is None:
        return None
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount -t tmpfs tmpfs "$0" && exec "$@"', str(directory)]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


class Cluster:
    """A scheduler and ``n_workers`` single-threaded workers; ``worker_prefix`` (e.g.
    :func:`private_dir_prefix`) is put before each worker's command, which runs in
    ``worker_cwd`` (default: this process's)."""

    def __init__(self, tmp: Path, n_workers: int = 2, worker_prefix: list[str] | None = None,
                 worker_cwd: Path | None = None):
        tmp.mkdir(parents=True, exist_ok=True)
        sched_file = tmp / "scheduler.json"
        self.log = open(tmp / "cluster.log", "w")
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file)],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.workers = []
        deadline = time.monotonic() + START_S
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert time.monotonic() < deadline and self.scheduler.poll() is None, "the scheduler did not start"
            time.sleep(0.1)
        self.address = json.loads(sched_file.read_text())["address"]
        self.workers = [subprocess.Popen(
            [*(worker_prefix or []), sys.executable, "-m", "distributed.cli.dask_worker", self.address,
             "--nthreads", "1", "--no-nanny", "--no-dashboard", "--local-directory", str(tmp / f"worker{k}")],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=worker_cwd) for k in range(n_workers)]

    def client(self):
        from distributed import Client

        client = Client(self.address, timeout=START_S)
        client.wait_for_workers(len(self.workers), timeout=START_S)
        return client

    def stop(self):
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
        self.log.close()
