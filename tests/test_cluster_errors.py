"""``--scheduler ADDRESS`` where no Dask scheduler answers fails within SCHEDULER_TIMEOUT_S
with one line: nothing listening, a plain HTTP server, an unroutable address (which some
networks answer with a proxy's HTTP reply instead of silence: either way, no scheduler).
"""

import socket
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from cathodeflow.errors import InputError
from cathodeflow.io.lock import LOCK_NAME
from cathodeflow.io.sem import write_tiff
from cathodeflow.study import cluster
from cathodeflow.study.cluster import SCHEDULER_TIMEOUT_S, scheduler_context
from cathodeflow.study.pipeline import ingest
from cathodeflow.synth import generate_image

CLI = [sys.executable, "-m", "cathodeflow.cli"]
SHORT_S = 2  # the in-process cases run with this timeout instead of SCHEDULER_TIMEOUT_S
SLACK_S = 3  # "within the timeout plus a few seconds"


class _Quiet(BaseHTTPRequestHandler):
    def do_GET(self):  # pragma: no cover - Dask never sends a valid request line
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_address():
    server = HTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_port}"
    server.shutdown()


def _free_port_address() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"tcp://127.0.0.1:{port}"


@pytest.mark.parametrize("case", ["nothing_listens", "http_server", "unroutable"])
def test_address_without_a_dask_scheduler_fails_within_the_timeout_with_one_line(
    monkeypatch, http_address, case
):
    address = {"nothing_listens": _free_port_address(), "http_server": http_address,
               "unroutable": "tcp://10.255.255.1:8786"}[case]
    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", SHORT_S)
    t0 = time.monotonic()
    with pytest.raises(InputError) as e:
        with scheduler_context(address):
            pass
    elapsed = time.monotonic() - t0
    assert elapsed < SHORT_S + SLACK_S
    msg = str(e.value)
    assert msg.startswith(f"--scheduler {address}: no Dask scheduler answered within {SHORT_S} s (")
    assert msg.endswith(")") and "\n" not in msg
    if case == "nothing_listens":
        # distributed retries a refused connection until its time is up; on a loaded machine
        # the probe's own time can run out first, and then the reason is the time-out
        assert "connection refused" in msg or "no reply in Dask's protocol" in msg


def test_cli_run_with_an_http_server_as_scheduler_exits_2_with_one_line_within_the_timeout(
    tmp_path, http_address, capsys
):
    from cathodeflow.cli import main

    im = generate_image("20C", seed=0, image_id="20C_000", shape_lr=(52, 78), r10_um=0.6, r50_um=0.8, r90_um=1.0)
    write_tiff(tmp_path / "20C_000.tif", im.lr, pixel_size_um=im.pixel_size_lr_um)
    store = tmp_path / "s.zarr"
    ingest([tmp_path / "20C_000.tif"], store=store, condition="20C")
    capsys.readouterr()
    t0 = time.monotonic()
    rc = main(["run", "--store", str(store), "--scheduler", http_address])  # the real timeout
    elapsed = time.monotonic() - t0
    assert rc == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"cathodeflow: error: --scheduler {http_address}: no Dask scheduler answered within "
        f"{SCHEDULER_TIMEOUT_S} s ("
    )
    assert SCHEDULER_TIMEOUT_S - 1 < elapsed < SCHEDULER_TIMEOUT_S + SLACK_S
    assert not (store / LOCK_NAME).exists()


def test_scheduler_help_states_the_timeout():
    r = subprocess.run(CLI + ["run", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert f"within {SCHEDULER_TIMEOUT_S} s" in " ".join(r.stdout.split())


@pytest.fixture(scope="module")
def in_process_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=":0") as c:
        yield c


def test_a_real_scheduler_address_connects_and_computes(in_process_cluster):
    import dask.array as da

    address = in_process_cluster.scheduler_address
    with scheduler_context(address) as client:
        assert client.scheduler.address == address
        assert int(da.arange(10, chunks=3).sum().compute(scheduler=client)) == 45


def test_a_worker_address_is_refused_as_not_a_scheduler(monkeypatch, in_process_cluster):
    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", SHORT_S)
    address = next(iter(in_process_cluster.workers.values())).address
    with pytest.raises(InputError, match=r"\(a Worker answered, not a scheduler\)"):
        with scheduler_context(address):
            pass


def test_unknown_scheduler_name_is_refused():
    with pytest.raises(InputError, match="unknown value 'thread'"):
        with scheduler_context("thread"):
            pass


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not found: cannot make a test certificate")
def test_a_tls_scheduler_is_probed_with_the_clients_tls_settings(tmp_path):
    """``--scheduler tls://…`` with TLS configured as for a Client (dask config / the
    DASK_DISTRIBUTED__COMM__TLS__* variables the deploy/ files set) connects."""
    import dask
    import dask.array as da
    from distributed import LocalCluster, Security

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    sec = Security(tls_ca_file=str(cert), tls_client_cert=str(cert), tls_client_key=str(key),
                   tls_scheduler_cert=str(cert), tls_scheduler_key=str(key), tls_worker_cert=str(cert),
                   tls_worker_key=str(key), require_encryption=True)
    conf = {"distributed.comm.tls.ca-file": str(cert), "distributed.comm.tls.client.cert": str(cert),
            "distributed.comm.tls.client.key": str(key)}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls", host="127.0.0.1",
                      dashboard_address=":0", security=sec) as c:
        assert c.scheduler_address.startswith("tls://")
        with dask.config.set(conf), scheduler_context(c.scheduler_address) as client:
            assert int(da.arange(10, chunks=3).sum().compute(scheduler=client)) == 45


def test_a_cluster_whose_workers_have_another_cathodeflow_version_is_refused_in_one_line(tmp_path):
    """A worker whose environment has another cathodeflow installed (here: version 9.9.9's
    metadata first on its path) would compute with other code: refused before any work."""
    import numpy as np
    import tifffile
    from _cluster import Cluster

    site = tmp_path / "other-site"
    (site / "cathodeflow-9.9.9.dist-info").mkdir(parents=True)
    (site / "cathodeflow-9.9.9.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cathodeflow\nVersion: 9.9.9\n")
    tifffile.imwrite(tmp_path / "m.tif", np.zeros((64, 64), np.uint8))
    # (run from tmp_path: the folder a process starts in comes first on its path, and a
    # source checkout there holds cathodeflow's own metadata)
    made = Cluster(tmp_path / "cluster", n_workers=1, worker_prefix=["env", f"PYTHONPATH={site}"],
                   worker_cwd=tmp_path)
    try:
        made.client().close()
        res = subprocess.run(CLI + ["describe", str(tmp_path / "m.tif"), "--pixel-size-um", "0.0143", "--scheduler",
                                    made.address, "--out", str(tmp_path / "out")], capture_output=True, text=True,
                             timeout=300)
    finally:
        made.stop()
    from importlib.metadata import version

    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"cathodeflow: error: --scheduler {made.address}: 1 of the cluster's 1 workers have "
                               f"cathodeflow 9.9.9 (e.g. tcp://127.0.0.1:")
    assert f"this command cathodeflow {version('cathodeflow')}" in lines[0]
    assert not (tmp_path / "out").exists()
