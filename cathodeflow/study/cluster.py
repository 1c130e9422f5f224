"""Where Dask work runs: in-process, a local cluster, or a user's cluster.

``scheduler`` values accepted everywhere (``--scheduler`` on the command line):

- ``None``: automatic — a local multi-process cluster (one single-threaded worker per core:
  scipy/scikit-image kernels hold the GIL, PERFORMANCE.md) when there is more than one
  task, in-process otherwise;
- ``"sync"``, ``"threads"``: Dask's local schedulers;
- ``"local"`` (or ``"processes"``): a fresh ``distributed.LocalCluster`` on loopback, one
  single-threaded worker process per core;
- an address such as ``"tcp://10.0.0.5:8786"``: an existing cluster (Kubernetes, SLURM…),
  which must answer as a Dask scheduler within :data:`SCHEDULER_TIMEOUT_S`;
- a ``distributed.Client``: used as is.

Leaving :func:`scheduler_context` by an exception (``KeyboardInterrupt`` included) stops the
work still running on it, in any thread, without waiting for it:

- Dask's local schedulers: every compute started in the block raises :class:`Cancelled`
  before its next task;
- a local cluster made here: its worker processes are killed. They never see SIGINT
  themselves (they start with it blocked), so a Ctrl-C in a terminal, sent to the whole
  process group, reaches only this process and no worker prints a traceback;
- a cluster at an address: this process's client is closed, which releases its tasks;
- a ``distributed.Client`` given by the caller: left alone.

Faults on a cluster at an address: a worker that dies costs the tasks it held, which the
scheduler runs again elsewhere (every task reads its input from files or from the results of
other tasks, never from data held by one worker only). A scheduler that dies ends the work
with :class:`SchedulerLost` (one line, no log records of the client's reconnection attempts).

While a cluster made here shuts down, the records of the ``distributed``, ``tornado`` and
``asyncio`` loggers (heartbeats to a closed scheduler, "Stream is closed",
``CommClosedError``) are dropped, in this process and in its workers.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import tempfile
import threading
import uuid
import warnings

from ..errors import CathodeflowError, CathodeflowWarning, InputError, one_line

LOCAL_SCHEDULERS = ("sync", "synchronous", "threads")

#: Seconds a scheduler address (``--scheduler tcp://host:port``) has to answer as a Dask
#: scheduler; past it the connection is refused with an :class:`~cathodeflow.errors.InputError`.
SCHEDULER_TIMEOUT_S = 10

#: Seconds given to a local cluster to close after the work is done (then its workers are killed).
CLOSE_TIMEOUT_S = 5

#: Loggers whose records are dropped while a cluster made here shuts down.
_SHUTDOWN_LOGGERS = ("distributed", "tornado", "asyncio")


class SchedulerLost(CathodeflowError):
    """The connection to the Dask scheduler at an address was lost while work ran on it
    (the scheduler stopped, or the network between). ``exit_code`` 1: a failure of the run,
    not of its input; work already in the store is kept and the next run resumes from it."""

    exit_code = 1


class Cancelled(BaseException):
    """Raised in a compute still running when its :func:`scheduler_context` was left by an
    exception. A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except
    Exception`` on the way swallows it."""


def n_local_workers() -> int:
    """The usable cores of this process (affinity and cgroup quota), as Dask counts them."""
    from dask.system import cpu_count

    return max(1, cpu_count())


#: Environment variable of glibc's trim threshold, and the value distributed's nanny sets.
MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"
DISTRIBUTED_MALLOC_TRIM = 65536


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None, *, fallback: bool = False,
                  malloc_trim_threshold: int | None = None):
    """A loopback ``LocalCluster`` (processes, one thread each) and its client.

    Worker processes are started with ``spawn``, which needs the main module to be
    importable: from a script fed on standard input the workers cannot start. With
    ``fallback=True`` that case warns and yields ``None`` (Dask's threaded scheduler).

    The workers never see SIGINT (see the module notes): an interrupt raises
    ``KeyboardInterrupt`` in the caller only, and leaving the block by any exception kills
    the workers instead of waiting for their running tasks.

    The workers start without distributed's ``MALLOC_TRIM_THRESHOLD_`` (65536) unless
    ``malloc_trim_threshold`` is given: with any explicit trim threshold glibc keeps its
    mmap threshold at 128 KiB, so every large temporary array is mapped, zero-filled and
    unmapped again; measured on 2048² phase maps this cost a third more CPU per image
    (1.25 → 0.83 s) for memory the next task allocates anyway. A nanny started elsewhere in
    this process leaves its 65536 in ``os.environ``, from where workers would inherit it:
    that value is removed (any other value a user set is inherited as set).
    """
    import dask
    from distributed import Client, LocalCluster

    n = n_workers or n_local_workers()
    unblock = _block_sigint()  # inherited by the worker processes (and the threads made here)
    if malloc_trim_threshold is None and os.environ.get(MALLOC_TRIM) == str(DISTRIBUTED_MALLOC_TRIM):
        del os.environ[MALLOC_TRIM]
    trim = {f"distributed.nanny.pre-spawn-environ.{MALLOC_TRIM}": malloc_trim_threshold}
    try:
        with dask.config.set(trim):
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",  # a free port: clusters may run side by side
                # a task's error reaches the caller as its exception (a phase map's bad value,
                # read inside the task): the worker's "Compute Failed" record would repeat it
                silence_logs=logging.CRITICAL,
            )
    except BaseException as e:
        unblock()
        if not fallback or not isinstance(e, Exception):
            raise
        warnings.warn(
            f"could not start a local Dask cluster ({type(e).__name__}: {e}); running on "
            "threads instead. In a script, put the call under `if __name__ == '__main__':`.",
            RuntimeWarning,
            stacklevel=3,
        )
        with local_scheduler("threads"):
            yield None
        return
    client = None
    try:
        unblock()  # a Ctrl-C held while the workers started is raised here, where it closes them
        client = Client(cluster)
        yield client
    except BaseException:
        _shut_down(cluster, client, interrupted=True)
        raise
    _shut_down(cluster, client, interrupted=False)


def _shut_down(cluster, client, *, interrupted: bool) -> None:
    """Close ``client`` and ``cluster`` without log noise; on ``interrupted`` kill the
    workers first (their running tasks are abandoned: a stage is complete only once all its
    chunks are written, so nothing half-written is ever taken as done)."""
    with _dropped_logs():
        try:
            if client is not None and not interrupted:
                # the workers' own records (heartbeats to a scheduler that is going away)
                with contextlib.suppress(Exception):
                    client.run(logging.disable, logging.CRITICAL)
            if interrupted:
                _kill_workers(cluster)
            if client is not None:
                client.close(timeout=CLOSE_TIMEOUT_S)
        finally:
            cluster.close(timeout=CLOSE_TIMEOUT_S)


def _kill_workers(cluster) -> None:
    """SIGKILL the cluster's worker processes, and keep their nannies from restarting them."""
    for nanny in list(getattr(cluster, "workers", {}).values()):
        if hasattr(nanny, "auto_restart"):
            nanny.auto_restart = False
        pid = getattr(nanny, "pid", None)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))


def _block_sigint():
    """Block SIGINT in the calling thread and return the function that restores its mask.

    Processes and threads started meanwhile inherit the block (a signal mask survives
    ``fork`` and ``exec``). A SIGINT that arrives meanwhile is held, and raised as
    ``KeyboardInterrupt`` when the mask is restored.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        return lambda: None
    from multiprocessing import resource_tracker

    # Starting multiprocessing's resource tracker *unblocks* SIGINT in the starting thread
    # (CPython's guard for the tracker, bpo-33613); started now, it is not started within.
    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    return lambda: signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _DropRecords(logging.Filter):
    def __init__(self, when=None):
        super().__init__()
        self.when = when

    def filter(self, record: logging.LogRecord) -> bool:
        if self.when is not None and not self.when():
            return True
        return record.name.split(".", 1)[0] not in _SHUTDOWN_LOGGERS


@contextlib.contextmanager
def _dropped_logs(when=None):
    """Within: records of the :data:`_SHUTDOWN_LOGGERS` are dropped by every handler they
    could reach (theirs, the root's, logging's last resort), while ``when()`` is true (by
    default always); other records pass. The block may call ``keep()`` (what it is given)
    to leave the filter in place for the rest of the process."""
    drop = _DropRecords(when)
    handlers = {logging.lastResort} | {
        h for name in (None, *_SHUTDOWN_LOGGERS) for h in logging.getLogger(name).handlers
    }
    handlers.discard(None)
    for h in handlers:
        h.addFilter(drop)
    kept = []
    try:
        yield lambda: kept.append(True)
    finally:
        if not kept:
            for h in handlers:
                h.removeFilter(drop)


@contextlib.contextmanager
def scheduler_context(scheduler=None, *, n_tasks: int = 1, announce=None):
    """Yield a ``distributed.Client`` or ``None`` (then Dask's configured local scheduler).

    Parameters
    ----------
    scheduler : None, str or distributed.Client
        See the module notes.
    n_tasks : int
        How many independent tasks will run (``None`` starts a cluster only for several).
    announce : callable, optional
        Called with one line, ``"Dask dashboard: URL"``, when this context starts or connects
        to a cluster whose scheduler serves the dashboard (it needs ``bokeh`` there).

    Raises
    ------
    InputError
        An unknown name, or an address where no Dask scheduler answers within
        :data:`SCHEDULER_TIMEOUT_S` (nothing listening, another kind of server, no route).
    """
    with _open_scheduler(scheduler, n_tasks) as client:
        if announce is not None and client is not None and client is not scheduler:  # started or reached here
            link = dashboard_link(client)
            if link:
                announce(f"Dask dashboard: {link}")
        yield client


@contextlib.contextmanager
def _open_scheduler(scheduler, n_tasks: int):
    """:func:`scheduler_context` without the announcement."""
    if scheduler is None:
        if n_tasks > 1 and n_local_workers() > 1:
            with local_cluster(fallback=True) as client:
                yield client
        else:
            with local_scheduler("threads"):
                yield None
        return
    if hasattr(scheduler, "submit") and hasattr(scheduler, "gather"):
        yield scheduler
        return
    if not isinstance(scheduler, str):
        raise InputError(f"scheduler: expected a name, an address or a Client, got {scheduler!r}")
    if scheduler in LOCAL_SCHEDULERS:
        with local_scheduler(scheduler):
            yield None
        return
    if scheduler in ("local", "processes"):
        # Dask's own "processes" scheduler starts a fresh pool for every compute, and the
        # tiled stages compute several times: a loopback cluster keeps its workers.
        with local_cluster() as client:
            yield client
        return
    if "://" in scheduler or ":" in scheduler:
        with connect_scheduler(scheduler) as client:
            yield client
        return
    raise InputError(
        f"scheduler: unknown value {scheduler!r}; expected one of {LOCAL_SCHEDULERS}, "
        "'local', an address like tcp://host:8786, or a distributed.Client"
    )


def dashboard_link(client) -> str | None:
    """The address of the Dask dashboard of ``client``'s scheduler, or None when it serves
    none (the dashboard needs ``bokeh`` where the scheduler runs)."""
    if client is None or "dashboard" not in (client.scheduler_info().get("services") or {}):
        return None
    return client.dashboard_link


@contextlib.contextmanager
def local_scheduler(name: str):
    """Dask's local scheduler ``name`` (one of :data:`LOCAL_SCHEDULERS`) as the default
    within the block; once the block is left by an exception, every compute started in it
    (in any thread) raises :class:`Cancelled` before its next task."""
    import dask
    from dask.callbacks import local_callbacks
    from dask.local import get_sync
    from dask.threaded import get as get_threads

    base = get_threads if name == "threads" else get_sync
    left = threading.Event()

    def stop_if_left(key, dsk, state):
        if left.is_set():
            raise Cancelled(f"the scheduler context was left before task {key!r}")

    def get(dsk, keys, callbacks=None, **kwargs):
        with local_callbacks(callbacks) as active:  # the global ones (a ProgressBar), as Dask does
            return base(dsk, keys, callbacks=[*active, (None, None, stop_if_left, None, None)], **kwargs)

    with dask.config.set(scheduler=get):
        try:
            yield
        except BaseException:
            left.set()
            raise


@contextlib.contextmanager
def connect_scheduler(address: str, *, timeout_s: float | None = None):
    """A ``distributed.Client`` of the Dask scheduler at ``address``, closed on exit.

    The address is first asked for its identity over Dask's protocol, in a thread that is
    abandoned after ``timeout_s``: a port where nothing listens, a server of another kind
    (HTTP…) or an address without a route fail within ``timeout_s`` plus a second or two,
    with one line. The user's cluster and its logging are left as they are.

    Parameters
    ----------
    address : str
        ``tcp://host:port`` (or any address ``distributed`` accepts).
    timeout_s : float, optional
        Default :data:`SCHEDULER_TIMEOUT_S`.

    Raises
    ------
    InputError
        ``--scheduler ADDRESS: no Dask scheduler answered within T s (why)``, or its
        workers have another cathodeflow version (:func:`check_worker_versions`).
    SchedulerLost
        Leaving the block by an exception after the connection was lost (the client is no
        longer connected, or the exception says so): ``lost the Dask scheduler at ADDRESS
        (why); rerun to resume``. The client's records about its reconnection attempts are
        dropped from the moment the connection is lost.
    """
    from distributed import Client

    from distributed.comm.addressing import parse_address, parse_host_port

    t = float(SCHEDULER_TIMEOUT_S if timeout_s is None else timeout_s)
    try:
        scheme, loc = parse_address(address)
        if scheme == "tcp":
            parse_host_port(loc, default_port=8786)
    except (ValueError, TypeError) as e:
        raise InputError(f"--scheduler {address}: not an address ({e}); expected tcp://host:port") from None
    why = _probe_scheduler(address, t)
    if why is None:
        try:
            client = Client(address, timeout=t)
        except Exception as e:  # refused between the probe and now, or timed out
            why = _reason(e)
    if why is not None:
        raise InputError(f"--scheduler {address}: no Dask scheduler answered within {t:g} s ({why})")
    try:
        check_worker_versions(client, address)
    except BaseException:
        client.close(timeout=CLOSE_TIMEOUT_S)
        raise
    with _dropped_logs(when=lambda: client.status != "running") as keep_dropping:
        try:
            yield client
        except Exception as e:
            lost = _lost_connection(client, address, e)
            if lost is None:
                with contextlib.suppress(Exception):
                    client.close(timeout=CLOSE_TIMEOUT_S)
                raise
            with contextlib.suppress(Exception):  # no scheduler to say goodbye to: do not wait
                client.close(timeout=1)
            # Threads of the caller may still hold computes on the lost client (run_study
            # does not wait for them): their records, and the coroutines they leave
            # unawaited at exit, would follow the one line.
            keep_dropping()
            _ignore_unawaited()
            atexit.register(_ignore_unawaited)  # again: a caller's catch_warnings may undo it
            raise SchedulerLost(f"lost the Dask scheduler at {address} ({lost}); rerun to resume") from None
        except BaseException:
            with contextlib.suppress(Exception):
                client.close(timeout=CLOSE_TIMEOUT_S)
            raise
        client.close(timeout=CLOSE_TIMEOUT_S)


def check_worker_versions(client, address: str) -> None:
    """Refuse (:class:`~cathodeflow.errors.InputError`) a cluster whose workers have another
    cathodeflow version installed than this process, or none: their tasks would compute
    with other code (and other shipped weights). Asked of every worker connected now
    (``importlib.metadata``, without importing cathodeflow there); without package metadata
    on either side the version counts as :data:`cathodeflow.UNKNOWN_VERSION`."""
    from importlib.metadata import version

    from .. import UNKNOWN_VERSION, __version__ as mine

    answers = client.run(version, "cathodeflow", on_error="return")
    # no metadata (run from a source tree, or not installed): as cathodeflow.__version__ says
    theirs = {w: v if isinstance(v, str) else UNKNOWN_VERSION for w, v in answers.items()}
    other = {w: v for w, v in sorted(theirs.items()) if v != mine}
    if other:
        w, v = next(iter(other.items()))
        raise InputError(f"--scheduler {address}: {len(other)} of the cluster's {len(theirs)} workers have "
                         f"cathodeflow {v} (e.g. {w}), this command cathodeflow {mine}: install one version on "
                         "the workers and the client (deploy/constraints.txt)")


def _ignore_unawaited() -> None:
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)


def _lost_connection(client, address: str, error: BaseException) -> str | None:
    """Why ``client`` lost its scheduler at ``address``, if ``error`` (raised while using it)
    came of that: the client is no longer connected (given a second to notice when a cause of
    ``error`` is a closed connection); else ``None``."""
    import time

    chain, e = [], error
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(type(e).__name__ in ("CommClosedError", "StreamClosedError") for e in chain):
        deadline = time.monotonic() + 1
        while client.status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
    if client.status == "running":
        return None
    return "it stopped: nothing listens there any more" if _refused(address) else "the connection closed"


def _probe_scheduler(address: str, timeout_s: float) -> str | None:
    """``None`` if a Dask scheduler at ``address`` tells its identity within ``timeout_s``,
    else why not (a short phrase)."""
    import asyncio

    from distributed.comm import connect  # imported here: not on the clock

    outcome: dict = {}

    from distributed import Security

    # the TLS settings a Client would use (DASK_DISTRIBUTED__COMM__TLS__* or dask config)
    tls = Security().get_connection_args("client")

    async def identity():
        comm = await connect(address, timeout=timeout_s, **tls)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def ask():
        try:
            # connect() times out by itself, with the reason; the handshake after it does not
            outcome["answer"] = asyncio.run(asyncio.wait_for(identity(), timeout_s + 0.5))
        except BaseException as e:  # noqa: BLE001 - a foreign server's reply can raise anything
            outcome["error"] = e

    # A foreign server's bytes read as Dask frames log CRITICAL tracebacks: dropped here.
    with _dropped_logs():
        asker = threading.Thread(target=ask, name="cathodeflow scheduler probe", daemon=True)
        asker.start()
        asker.join(timeout_s + 1.5)
    if "answer" not in outcome:
        why = _reason(outcome["error"]) if "error" in outcome else _NO_REPLY
        # connect() retries a refused connection until its time is up, and then may blame
        # its last, cut-short attempt: ask once more, plainly
        return _REFUSED if why == _NO_REPLY and _refused(address) else why
    answer = outcome["answer"]
    kind = answer.get("type") if isinstance(answer, dict) else None
    if kind != "Scheduler":
        return f"a {kind} answered, not a scheduler" if kind else "the reply is not a Dask scheduler's"
    return None


_REFUSED = "connection refused: nothing listens there"
_NO_REPLY = "no reply in Dask's protocol"


def _reason(error: BaseException) -> str:
    """A short phrase for why a connection failed, from ``error`` and its causes."""
    chain, e = [], error
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return _REFUSED
    if any(type(e).__name__ in ("CommClosedError", "StreamClosedError") for e in chain):
        return "the server there closed the connection: it does not speak Dask's protocol"
    if any(isinstance(e, TimeoutError) for e in chain) or "Timed out" in str(error):
        return _NO_REPLY
    return one_line(f"the server there does not speak Dask's protocol: {type(error).__name__}: {error}")[:150]


def _refused(address: str) -> bool:
    """Whether a plain TCP connection to ``address`` (``tcp://host:port``) is refused now;
    ``False`` for other schemes and for any other outcome. Takes at most a second."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, loc = parse_address(address)
        if scheme != "tcp":
            return False
        socket.create_connection(parse_host_port(loc), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except (OSError, ValueError, TypeError):
        return False
    return False


def parallel_images(client) -> int:
    """How many images to process at once: the cluster's threads, or the local cores."""
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # pragma: no cover - a client that cannot tell
            return 1
    return n_local_workers()


def tiled_in_task(n_images: int, client, params) -> tuple[bool, str | None]:
    """Whether ``n_images`` images processed tiled run one per task, chunk by chunk inside
    it (``params.tiled_images``, :class:`~cathodeflow.config.Params`): ``'in-task'``, or
    ``'auto'`` on a cluster (``client``) with at least
    :data:`~cathodeflow.config.IN_TASK_IMAGES_PER_THREAD` of them per thread.

    Spread over a cluster, an image's tiles write and read each other's intermediate arrays
    in one scratch directory (``params.scratch_dir``, else this machine's temp dir), so
    every worker must see it: :func:`workers_not_seeing` checks. Where some do not (workers
    on other machines), ``'auto'`` runs the images in-task and ``'spread'`` is refused with
    an :class:`~cathodeflow.errors.InputError`.

    Returns
    -------
    (bool, str or None)
        The choice, and why the images run in-task where ``'auto'`` would have spread them
        (the workers do not share the scratch directory), else None: the caller gives it as
        a :class:`~cathodeflow.errors.CathodeflowWarning` once an image is processed so
        (:func:`warn_in_task`), not for a run whose images all fit one task.
    """
    from ..config import IN_TASK_IMAGES_PER_THREAD

    mode = params.tiled_images
    if mode == "in-task":
        return True, None
    if client is None or n_images == 0:
        return False, None
    if mode == "auto" and n_images >= IN_TASK_IMAGES_PER_THREAD * parallel_images(client):
        return True, None
    directory = params.scratch_dir or tempfile.gettempdir()
    blind = workers_not_seeing(client, directory)
    if not blind:
        return False, None
    where = blind_workers(client, f"the scratch directory {directory}", len(blind), blind[0])
    if mode == "spread":
        raise InputError(f"--tiled-images spread: {where}; give --scratch-dir a directory every worker mounts "
                         "at the same path, or use --tiled-images in-task")
    return True, (f"{where}: images larger than --whole-image-px (processed tiled) run in one task each, their "
                  "tiles one after another; give --scratch-dir a directory every worker mounts to spread their "
                  "tiles over the cluster")


def warn_in_task(why: str | None) -> None:
    """Give :func:`tiled_in_task`'s reason (if any) as a
    :class:`~cathodeflow.errors.CathodeflowWarning`."""
    if why:
        warnings.warn(why, CathodeflowWarning, stacklevel=3)


def workers_not_seeing(client, directory: str) -> list[str]:
    """The addresses of ``client``'s workers that do not see ``directory`` as this process
    does: a file of random name and content is written there and each worker reads it
    (``Client.run``); a worker that cannot is on a disk of its own."""
    token = uuid.uuid4().hex
    path = os.path.join(directory, f".cathodeflow-shared-{token}")
    try:
        with open(path, "w") as f:
            f.write(token)
    except OSError as e:
        raise InputError(f"{directory}: cannot write a file there to check that the workers see it "
                         f"({e.strerror})") from None
    try:
        seen = client.run(_reads, path, token, on_error="return")
    finally:
        os.remove(path)
    return sorted(w for w, ok in seen.items() if ok is not True)


def _reads(path: str, token: str) -> bool:
    try:
        with open(path) as f:
            return f.read() == token
    except OSError:
        return False


def blind_workers(client, what: str, n_blind: int, example: str) -> str:
    """``"<what> is not seen by N of the cluster's M workers (e.g. W: on another machine)"``."""
    return (f"{what} is not seen by {n_blind} of the cluster's {len(client.nthreads())} workers "
            f"(e.g. {example}: on another machine)")


def check_store_shared(client, path) -> None:
    """Refuse (:class:`~cathodeflow.errors.InputError`) a store in a local folder that some of
    ``client``'s workers do not see: they would write its chunks to their own disks, and the
    store would read them as zeros. A store at a URL (``s3://…``) is seen by all."""
    from pathlib import Path

    if client is None or not isinstance(path, Path):
        return
    blind = workers_not_seeing(client, str(path))
    if blind:
        raise InputError(f"--store {path}: " + blind_workers(client, "the store", len(blind), blind[0])
                         + "; give a store folder every worker mounts at the same path, or an s3:// URL")


def check_files_shared(client, paths) -> None:
    """Refuse (:class:`~cathodeflow.errors.InputError`) input files that some of ``client``'s
    workers, which read them, do not see as this process does: each worker compares each
    file's size and first 4 KiB (a Zarr folder: its ``zarr.json`` or ``.zarray``) with
    this process's."""
    paths = [str(p) for p in paths]
    if client is None or not paths:
        return
    mine = [_fingerprint(p) for p in paths]
    # a worker that failed to answer is left out: its tasks will fail with the reason
    seen = {w: v for w, v in sorted(client.run(_fingerprints, paths, on_error="return").items())
            if isinstance(v, list)}
    for k, (p, a) in enumerate(zip(paths, mine)):
        blind = [w for w, theirs in seen.items() if theirs[k] != a]
        if blind:
            raise InputError(f"{p}: " + blind_workers(client, "this input", len(blind), blind[0])
                             + "; on a cluster, inputs must be at a path every worker mounts")


def _fingerprint(path: str):
    import hashlib

    try:
        if os.path.isdir(path):
            names = [n for n in ("zarr.json", ".zarray", ".zgroup") if os.path.exists(os.path.join(path, n))]
            if not names:
                return "dir"
            path = os.path.join(path, names[0])
        with open(path, "rb") as f:
            head = f.read(4096)
            return f"{os.fstat(f.fileno()).st_size}:{hashlib.sha256(head).hexdigest()}"
    except OSError:
        return None


def _fingerprints(paths: list[str]) -> list:
    return [_fingerprint(p) for p in paths]


def each_on_threads(func, items, n_threads: int) -> None:
    """``func(item)`` for every item, ``n_threads`` at a time; the first error in the order of
    ``items`` is raised. The threads are daemon threads: on an interrupt or an error no new
    item starts and nothing waits for the running ones (leaving ``scheduler_context`` stops
    their work), so neither this call nor the interpreter's exit blocks on them, unlike a
    ``ThreadPoolExecutor``, whose threads the interpreter joins at exit."""
    import queue
    import threading

    todo: queue.Queue = queue.Queue()
    for k, item in enumerate(items):
        todo.put((k, item))
    outcome: dict[int, BaseException | None] = {}
    changed = threading.Condition()
    stop = threading.Event()

    def work():
        while not stop.is_set():
            try:
                k, item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                func(item)
                error = None
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                error = e
            with changed:
                outcome[k] = error
                changed.notify_all()

    for i in range(n_threads):
        threading.Thread(target=work, name=f"cathodeflow images {i}", daemon=True).start()
    try:
        for k in range(len(items)):
            with changed:
                while k not in outcome:
                    changed.wait()
            if outcome[k] is not None:
                raise outcome[k]
    finally:
        stop.set()
