"""One writer at a time on a study store (DESIGN §4.1): a lock file inside the store folder.

The lock is the file ``<store>/cathodeflow.lock``, created with ``O_CREAT | O_EXCL`` (so of
two processes only one can create it) and holding JSON::

    {"pid": 1234, "host": "node-7", "started_utc": "2026-…", "process_start": "…",
     "command": "cathodeflow run", "token": "…"}

``process_start`` is the holder's start time as the kernel counts it (``/proc/<pid>/stat``,
field 22; empty where there is no ``/proc``), so that a pid reused by an unrelated process
does not look like the holder.

A lock is *stale* when its host is this host and its process is gone (or is another process
with the same pid): it is then taken over with a :class:`StaleLockWarning`. A lock held from
another host is never taken over: only its user can tell whether that run is still going
(the error names the file to delete then).

The file is not a Zarr node: the store's readers open their groups by path and never see
it; a Zarr client that lists the root's members while a run holds the lock warns once that
it is "not recognized as a component of a Zarr hierarchy".

Stores at fsspec URLs (``s3://bucket/study.zarr``, :mod:`cathodeflow.io.location`) hold
the same lock as the object ``<store>/cathodeflow.lock``, created only if absent: on S3 a
conditional write (``If-None-Match: *``), so of two processes only one creates it. A
filesystem without such a write (where fsspec refuses ``mode="create"``) cannot be locked:
the writer is refused with a one-line StoreError. Staleness is decided as for a folder (the
pid, on this host only); taking over a stale lock there reads, compares and deletes the
object, which is not atomic (two processes of this host taking over the same stale lock at
once may both think they hold it), and a lock left by another host is never taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

from ..errors import CathodeflowWarning, StoreError, one_line
from .location import RemotePath, as_path

__all__ = ["LOCK_NAME", "StaleLockWarning", "read_lock", "store_lock"]

#: Name of the lock file inside a store folder.
LOCK_NAME = "cathodeflow.lock"


class StaleLockWarning(CathodeflowWarning):
    """A store's lock was left by a process of this host that is gone; it was taken over."""


def read_lock(store: str | Path) -> dict | None:
    """The holder recorded in ``store``'s lock file, or ``None`` if the store is not locked.

    Returns
    -------
    dict or None
        ``pid`` (int), ``host``, ``started_utc``, ``process_start``, ``command``, ``token``
        (str); ``{}`` if the file exists but cannot be read as a lock (being written, or
        damaged).
    """
    path = _lock_path(store)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    return _parse(text)


@contextlib.contextmanager
def store_lock(store: str | Path, *, command: str = "cathodeflow run"):
    """Hold ``store``'s writer lock within the block; released on exit, exceptions included.

    Parameters
    ----------
    store : str, Path or RemotePath
        The store's folder (it must exist), or its URL.
    command : str
        What holds the lock, named to whoever is refused.

    Yields
    ------
    dict
        The holder record written (see :func:`read_lock`).

    Raises
    ------
    StoreError
        Another live process holds the lock (the message names the store, the holder's pid,
        host and start time); nothing is written then.

    Warns
    -----
    StaleLockWarning
        The lock of a process of this host that is gone was taken over.
    """
    path = _lock_path(store)
    mine = _acquire(path, command)
    try:
        yield mine
    finally:
        with contextlib.suppress(OSError, StoreError):  # unreachable object store: left, stale later
            if _parse(path.read_text(encoding="utf-8")).get("token") == mine["token"]:
                path.unlink()


def _lock_path(store) -> Path:
    return as_path(store) / LOCK_NAME


def _create(path, data: bytes) -> None:
    """Write ``path`` only if it is absent (FileExistsError otherwise)."""
    if isinstance(path, RemotePath):
        path.write_bytes(data, exclusive=True)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _acquire(path: Path, command: str) -> dict:
    mine = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "process_start": _process_start(os.getpid()),
        "command": command,
        "token": uuid.uuid4().hex,
    }
    data = json.dumps(mine).encode()
    for _ in range(5):  # a stale lock taken over by someone else meanwhile: look again
        try:
            _create(path, data)
        except FileExistsError:
            pass
        except OSError as e:
            raise StoreError(one_line(f"{path.parent}: cannot create the lock file {path.name} ({e})")) from None
        else:
            return mine
        text = _read_settled(path)
        if text is None:
            continue  # released meanwhile
        holder = _parse(text)
        if not _is_stale(holder):
            raise StoreError(_busy_message(path, holder))
        if _remove_if_unchanged(path, text):
            warnings.warn(
                f"{path.parent}: took over the lock of {holder.get('command', 'a run')} (pid {holder['pid']} "
                f"on {holder['host']}, started {holder.get('started_utc', '?')}), which is no longer running",
                StaleLockWarning,
                stacklevel=4,
            )
    raise StoreError(f"{path.parent}: could not take the lock file {path.name}: other processes keep taking it")


def _read_settled(path: Path) -> str | None:
    """The lock file's text, waiting up to ~0.5 s for a holder that has just created it to
    finish writing it; ``None`` if it is gone."""
    import time

    text = ""
    for _ in range(10):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if _parse(text):
            break
        time.sleep(0.05)
    return text


def _parse(text: str) -> dict:
    try:
        d = json.loads(text)
    except ValueError:
        return {}
    return d if isinstance(d, dict) and isinstance(d.get("pid"), int) and isinstance(d.get("host"), str) else {}


def _is_stale(holder: dict) -> bool:
    """The holder ran on this host and is gone (a damaged file is not stale: refused)."""
    if not holder or holder["host"] != socket.gethostname():
        return False
    pid = holder["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    recorded = holder.get("process_start") or ""
    now = _process_start(pid)
    return bool(recorded and now and recorded != now)  # the pid was reused


def _process_start(pid: int) -> str:
    """When process ``pid`` started, in clock ticks since boot (``/proc``); ``""`` if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name (field 2) is in parentheses and may hold spaces
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def _remove_if_unchanged(path: Path, text: str) -> bool:
    """Remove the lock file if it still holds ``text``; ``False`` if someone else got there
    first. The file is renamed away before it is checked, so that a fresh lock created
    meanwhile by another process is never removed: it is put back instead. An object (no
    rename) is read, compared and deleted (see the module docstring)."""
    if isinstance(path, RemotePath):
        try:
            if path.read_text(encoding="utf-8") != text:
                return False
        except FileNotFoundError:
            return False
        path.unlink(missing_ok=True)
        return True
    aside = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        if aside.read_text(encoding="utf-8") == text:
            return True
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)  # someone's fresh lock: back in place
        return False
    finally:
        aside.unlink(missing_ok=True)


def _busy_message(path: Path, holder: dict) -> str:
    store = path.parent
    if not holder:
        return (f"{store}: the lock file {path.name} is unreadable, so another run may be writing this "
                f"store; delete {path} if none is")
    same_host = holder["host"] == socket.gethostname()
    hint = ("wait for it to end" if same_host else
            f"wait for it to end, or delete {path} if that process no longer runs")
    return (f"{store}: in use by {holder.get('command', 'another run')} (pid {holder['pid']} on "
            f"{holder['host']}, since {holder.get('started_utc', '?')}); one writer at a time: {hint}")
