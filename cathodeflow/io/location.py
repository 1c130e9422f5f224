"""Where a study store lives: a local folder or an fsspec URL (DESIGN §4.1).

A store is named by a local path (``study.zarr``, ``/data/study.zarr``, ``file:///data/s.zarr``)
or by the URL of an object store (``s3://bucket/study.zarr``, ``gs://bucket/study.zarr``,
any protocol fsspec knows). :func:`as_path` turns either into a path object: a
:class:`pathlib.Path` for a local path (so local stores behave exactly as folders), else a
:class:`RemotePath`, which offers the few :class:`~pathlib.Path` methods the store, its lock
and its tables use, on an fsspec filesystem. Keys below a store are joined with ``/`` as on
a path.

Credentials and endpoint of ``s3://`` come from the standard AWS configuration, read by
botocore: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``),
``AWS_PROFILE`` / ``~/.aws/credentials``, ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL``
(e.g. ``http://127.0.0.1:9000`` for MinIO or a moto server). ``s3://`` needs the package
``s3fs``, ``gs://`` ``gcsfs``. In Python, ``storage_options`` (e.g. ``{"anon": True}`` or
``{"endpoint_url": ...}``) are passed to the filesystem, for the Zarr arrays, the lock and
the Parquet tables alike.

Failures to reach the filesystem (no credentials, access refused, a missing bucket) raise
:class:`~cathodeflow.errors.StoreError` with one line ``STORE <url>: <what failed>;
expected …``; a missing key stays :class:`FileNotFoundError`, as for a path.

The listing cache of fsspec is off (``use_listings_cache=False``): another process (a
second writer, whose lock must be seen) may change the store at any time.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import StoreError, one_line

__all__ = ["RemotePath", "as_path", "is_url", "store_arg", "check_reachable", "rmtree", "zarr_store"]

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(where: Any) -> bool:
    """Whether ``where`` is a URL of a non-local filesystem (``s3://…``; not ``file://``)."""
    return isinstance(where, str) and bool(_URL_RE.match(where)) and not where.startswith("file://")


def store_arg(text: str) -> "Path | str":
    """argparse ``type`` of a STORE argument: a :class:`~pathlib.Path` for a local path, the
    text itself for a URL (a Path would turn ``s3://b/x`` into ``s3:/b/x``)."""
    return text if is_url(text) else Path(text[len("file://"):] if text.startswith("file://") else text)


def as_path(where, *, storage_options: dict | None = None) -> "Path | RemotePath":
    """A local path as :class:`~pathlib.Path`, a URL as :class:`RemotePath`.

    Parameters
    ----------
    where : str, os.PathLike or RemotePath
        ``study.zarr``, ``file:///data/study.zarr``, ``s3://bucket/study.zarr``, …
    storage_options : dict, optional, keyword-only
        Options of the URL's fsspec filesystem (ignored for local paths).

    Raises
    ------
    StoreError
        The URL's protocol is unknown to fsspec or its package is not installed.
    """
    if isinstance(where, RemotePath):
        return where
    if isinstance(where, str) and is_url(where):
        return RemotePath.from_url(where, storage_options=storage_options)
    return store_arg(where) if isinstance(where, str) else Path(where)


def check_reachable(path) -> None:
    """Nothing for a local path; for a :class:`RemotePath`, StoreError (one line) unless its
    filesystem answers and its bucket exists (see :meth:`RemotePath.check_reachable`)."""
    if isinstance(path, RemotePath):
        path.check_reachable()


def rmtree(path) -> None:
    """Remove a folder (or every key below a :class:`RemotePath`) with what it holds; nothing
    if it is absent."""
    if isinstance(path, RemotePath):
        path.rmtree()
    else:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def zarr_store(path, *, read_only: bool):
    """What ``zarr.open_group(store=…)`` takes for ``path``: the path as text for a local
    folder (a Zarr ``LocalStore``), a ``zarr.storage.FsspecStore`` for a :class:`RemotePath`."""
    if isinstance(path, RemotePath):
        from zarr.storage import FsspecStore

        # zarr runs its own event loop: an asynchronous instance of the filesystem, not path.fs
        return FsspecStore.from_url(path.url, storage_options=path.options, read_only=read_only)
    return str(path)


class RemotePath:
    """A key prefix on an fsspec filesystem, with the :class:`~pathlib.Path` methods a study
    store uses (``/``, ``name``, ``parent``, ``exists``, ``read_text``, ``write_bytes``, …).

    ``str()`` gives the URL (``s3://bucket/study.zarr/tables``). It is not an
    :class:`os.PathLike`: read and write it through its methods (or
    :func:`cathodeflow.io.tables.read_parquet` / ``write_parquet``), which use its filesystem
    and its ``storage_options``. Object stores have no folders: :meth:`mkdir` does nothing
    and a "folder" exists while a key lies below it.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
    key : str
        The path on ``fs`` without the protocol (``bucket/study.zarr``).
    protocol : str
        ``s3``, ``gs``, …
    options : dict, optional
        The ``storage_options`` ``fs`` was made with (for the Zarr store's own instance).
    """

    def __init__(self, fs, key: str, protocol: str, options: dict | None = None):
        self.fs = fs
        self.key = key.rstrip("/")
        self.protocol = protocol
        self.options = dict(options or {})

    @classmethod
    def from_url(cls, url: str, *, storage_options: dict | None = None) -> "RemotePath":
        """The path of ``url`` on its filesystem (``use_listings_cache`` off, see the module)."""
        import fsspec

        protocol = url.split("://", 1)[0].lower()
        options = {"use_listings_cache": False, **(storage_options or {})}
        try:
            fs = fsspec.filesystem(protocol, **options)
        except (ImportError, ValueError) as e:
            raise StoreError(one_line(
                f"STORE {url}: cannot open the {protocol}:// filesystem ({e}); expected a local path or a "
                "URL of an installed fsspec filesystem (s3:// needs s3fs, gs:// gcsfs)")) from None
        key = fs._strip_protocol(url).rstrip("/")
        if "/" not in key.strip("/"):
            raise StoreError(f"STORE {url}: names no store inside the bucket; expected {protocol}://BUCKET/NAME.zarr")
        return cls(fs, key, protocol, options)

    # ------------------------------------------------------------------ naming

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.key}"

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and (other.protocol, other.key) == (self.protocol, self.key)

    def __hash__(self) -> int:
        return hash((self.protocol, self.key))

    def __truediv__(self, name: str) -> "RemotePath":
        return RemotePath(self.fs, f"{self.key}/{str(name).strip('/')}", self.protocol, self.options)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> "RemotePath":
        return RemotePath(self.fs, self.key.rsplit("/", 1)[0], self.protocol, self.options)

    def with_suffix(self, suffix: str) -> "RemotePath":
        stem = self.name.rsplit(".", 1)[0] if "." in self.name.lstrip(".") else self.name
        return self.parent / f"{stem}{suffix}"

    @property
    def bucket(self) -> str:
        return self.key.split("/", 1)[0]

    # ------------------------------------------------------------------ access

    def _call(self, what: str, func, *args, **kwargs):
        """``func(*args, **kwargs)``; a failure to reach the filesystem as one StoreError
        line (missing keys and create-if-absent clashes pass through, as for a path)."""
        try:
            return func(*args, **kwargs)
        except (FileNotFoundError, FileExistsError, StoreError):
            raise
        except Exception as e:  # botocore's NoCredentialsError, ClientError, a refused connection…
            raise StoreError(one_line(
                f"STORE {self.url}: {what} failed ({type(e).__name__}: {e}); expected a reachable "
                f"{self.protocol}:// store with credentials that may {what.split()[0]} it "
                "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)")) from None

    def check_reachable(self) -> None:
        """StoreError (one line) unless the filesystem answers and the bucket exists."""
        try:
            self._call("read", self.fs.info, self.bucket)
        except FileNotFoundError:
            raise StoreError(f"STORE {self.url}: bucket {self.bucket!r} not found; expected an existing bucket "
                             "(create it first; cathodeflow creates only the store inside it)") from None

    def exists(self) -> bool:
        return bool(self._call("read", self.fs.exists, self.key))

    def is_dir(self) -> bool:
        return bool(self._call("read", self.fs.isdir, self.key))

    def is_file(self) -> bool:
        return bool(self._call("read", self.fs.isfile, self.key))

    def iterdir(self):
        """The entries right below (keys and "folders"), as RemotePaths."""
        try:
            names = self._call("read", self.fs.ls, self.key, detail=False)
        except FileNotFoundError:
            return iter(())
        return iter(RemotePath(self.fs, n, self.protocol, self.options) for n in names if n.rstrip("/") != self.key)

    def glob(self, pattern: str):
        """Entries right below whose name matches ``pattern`` (no ``**``), sorted."""
        return sorted((p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern)), key=str)

    def read_bytes(self) -> bytes:
        return self._call("read", self.fs.cat_file, self.key)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes, *, exclusive: bool = False) -> None:
        """Write the object whole; ``exclusive``: only if absent (S3's ``If-None-Match: *``),
        else FileExistsError. StoreError where the filesystem cannot write create-if-absent."""
        self._call("write", self._pipe_exclusive if exclusive else self.fs.pipe_file, self.key, data)

    def _pipe_exclusive(self, key: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(key, data, mode="create")
        except (NotImplementedError, TypeError, ValueError) as e:
            raise StoreError(one_line(
                f"STORE {self.parent.url}: the {self.protocol}:// filesystem cannot create an object only if it "
                f"is absent ({type(e).__name__}: {e}), which the store's lock needs; expected s3:// (S3 "
                "conditional writes) or a local folder")) from None

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def open(self, mode: str = "rb"):
        """A file object of the key (binary modes)."""
        return self._call("read" if "r" in mode else "write", self.fs.open, self.key, mode)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self._call("write", self.fs.rm_file, self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        """Remove every key below (and the key itself); nothing if there are none."""
        try:
            self._call("write", self.fs.rm, self.key, recursive=True)
        except FileNotFoundError:
            pass

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing: object stores have no folders (a key's prefix exists with the key)."""

    def replace(self, target: "RemotePath") -> "RemotePath":
        """Move this key to ``target`` (copy, then delete: not atomic on an object store)."""
        self._call("write", self.fs.mv, self.key, as_path(target).key)
        return target

    def stat(self):
        """``st_mtime`` (s) and ``st_size`` of the key."""
        info = self._call("read", self.fs.info, self.key)
        mtime = self._call("read", self.fs.modified, self.key).timestamp()
        return SimpleNamespace(st_mtime=mtime, st_size=int(info.get("size") or 0))

