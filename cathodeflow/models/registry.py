"""Weight files with checksummed sidecars, and the registry of shipped weights (DESIGN §6).

Weights are stored as weights, never as pickled code: a Keras ``<name>.weights.h5`` file
(``model.save_weights``) plus a sidecar ``<name>.json`` that says how to rebuild the network
and what the weights are for::

    {"name", "file" (the .h5, relative to the sidecar's folder), "sha256" (of the .h5),
     "architecture": {"kind": "unet", **UNetConfig.to_dict()}
                     (or {"kind": "srgan", **SRGANConfig.to_dict()}: an SRGAN generator),
     "training": {...}, "pixel_size_um", "crack_threshold" (t of eq. 7),
     "normalisation": {"method": "percentile", "q": [0.5, 99.5]},
     "created_utc", "package_version"}

The shipped registry ``cathodeflow/models/weights/registry.json`` is
``{"version": 1, "weights": {name: record}}`` with the same records (files relative to that
folder). :func:`load_unet` (and :func:`load_srgan_generator`) refuses a file whose sha256
differs from its record, a record of another kind, and weights that do not fit the
architecture, each with a one-line :class:`~cathodeflow.errors.InputError` naming the file.
For ``kind == "srgan"`` only the generator is stored (``crack_threshold`` has no meaning
there and keeps its default).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError

__all__ = [
    "DEFAULT_UNET",
    "DEFAULT_SRGAN",
    "WEIGHTS_DIR",
    "REGISTRY_FILE",
    "WeightsRecord",
    "registry_names",
    "save_model_weights",
    "resolve_weights",
    "load_unet",
    "load_srgan_generator",
    "update_record",
    "file_sha256",
]

#: Registry name of the U-net weights shipped with the package.
DEFAULT_UNET = "unet-small-v1"
#: The shipped SRGAN generator weights (``run --sr-method srgan`` without ``--sr-weights``).
DEFAULT_SRGAN = "srgan-small-v1"
SHIPPED = (DEFAULT_UNET, DEFAULT_SRGAN)
#: Folder of the shipped weights and their registry.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The shipped registry file.
REGISTRY_FILE = WEIGHTS_DIR / "registry.json"
_SUFFIX = ".weights.h5"
_RECORD_KEYS = ("name", "file", "sha256", "architecture", "training", "pixel_size_um",
                "crack_threshold", "normalisation", "created_utc", "package_version")
_MODEL_CACHE: dict[tuple[str, str], object] = {}
#: architecture kind -> (module, config class, builder, what the error messages call it)
_KINDS = {"unet": (".unet", "UNetConfig", "build_unet", "U-net"),
          "srgan": (".srgan", "SRGANConfig", "build_generator", "SRGAN generator")}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class WeightsRecord:
    """One weights file and what it is for (the sidecar / registry entry).

    Attributes
    ----------
    name : str
    file : str, the .h5 file relative to the folder of the record
    sha256 : str, hex digest of the .h5 file
    architecture : dict, ``{"kind": "unet", **UNetConfig.to_dict()}`` or ``{"kind": "srgan", ...}``
    training : dict, training configuration, data families, steps, best validation loss…
    pixel_size_um : float, the pixel size (µm) the network was trained for
    crack_threshold : float, t of eq. 7
    normalisation : dict, e.g. ``{"method": "percentile", "q": [0.5, 99.5]}``
    created_utc, package_version : str
    path : Path, absolute path of the .h5 file (not stored)
    source : Path, the sidecar or registry file the record came from (not stored)
    """

    name: str
    file: str
    sha256: str
    architecture: dict
    training: dict
    pixel_size_um: float
    crack_threshold: float
    normalisation: dict
    created_utc: str
    package_version: str
    path: Path = field(compare=False)
    source: Path = field(compare=False)

    def to_dict(self) -> dict:
        """The stored fields (JSON-ready; without ``path`` and ``source``)."""
        return {k: getattr(self, k) for k in _RECORD_KEYS}

    @classmethod
    def from_dict(cls, d: dict, *, folder: Path, source: Path) -> "WeightsRecord":
        """A record from its stored dict; ``file`` is resolved against ``folder``."""
        if not isinstance(d, dict):
            raise InputError(f"{source}: expected a weights record (JSON object), got {type(d).__name__}")
        missing = [k for k in _RECORD_KEYS if k not in d]
        unknown = sorted(set(d) - set(_RECORD_KEYS))
        if missing or unknown:
            raise InputError(f"{source}: weights record has missing keys {missing} / unknown keys {unknown}; "
                             f"expected {list(_RECORD_KEYS)}")
        return cls(**{k: d[k] for k in _RECORD_KEYS}, path=(Path(folder) / d["file"]).resolve(),
                   source=Path(source))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _weights_paths(path: str | Path) -> tuple[Path, Path, str]:
    """(h5, sidecar, name) of a weights path given as ``x.weights.h5``, ``x.json`` or ``x``."""
    p = Path(path)
    if p.name.endswith(_SUFFIX):
        name = p.name[: -len(_SUFFIX)]
    elif p.suffix == ".json":
        name = p.stem
    elif p.suffix == "":
        name = p.name
    else:
        raise InputError(f"{p}: expected a path ending in {_SUFFIX} (or its .json sidecar)")
    return p.with_name(name + _SUFFIX), p.with_name(name + ".json"), name


def _read_registry() -> dict:
    registry = REGISTRY_FILE
    try:
        doc = json.loads(registry.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise InputError(f"{registry}: unreadable weights registry ({e})") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("weights"), dict):
        raise InputError(f'{registry}: expected {{"version": 1, "weights": {{...}}}}')
    return doc


def registry_names() -> list[str]:
    """Names in the shipped registry, sorted."""
    return sorted(_read_registry().get("weights", {}))


def _without_optimizer(model, architecture: dict):
    """A model that holds only ``model``'s weights: Keras writes a compiled model's optimizer
    state (Adam's moments, twice the weights) into ``save_weights`` files, which the registry
    neither needs nor wants to ship."""
    if getattr(model, "optimizer", None) is None or architecture.get("kind") not in _KINDS:
        return model
    config_cls, build, _ = _kind(architecture["kind"])
    clean = build(config_cls.from_dict({k: v for k, v in architecture.items() if k != "kind"}))
    clean.set_weights(model.get_weights())
    return clean


def _kind(kind: str):
    """(config class, builder, name) of an architecture kind (imported on demand)."""
    import importlib

    module, config_name, builder_name, what = _KINDS[kind]
    mod = importlib.import_module(module, __package__)
    return getattr(mod, config_name), getattr(mod, builder_name), what


def save_model_weights(model, path: str | Path, *, architecture: dict, training: dict,
                       pixel_size_um: float, crack_threshold: float = 0.5,
                       normalisation: dict) -> WeightsRecord:
    """Write ``model``'s weights and their sidecar, each atomically.

    Parameters
    ----------
    model : keras.Model
    path : path
        ``<folder>/<name>.weights.h5`` (or ``<folder>/<name>``); the sidecar is
        ``<folder>/<name>.json``.
    architecture : dict
        ``{"kind": "unet", **UNetConfig.to_dict()}`` or ``{"kind": "srgan", **SRGANConfig.to_dict()}``
        (``model`` is then the generator).
    training : dict
        JSON-ready description of the training (config, data families, steps, best loss…).
    pixel_size_um : float
        The pixel size (µm) of the images the network was trained on (> 0).
    crack_threshold : float
        t of eq. 7, in [0, 1]. Default 0.5 until calibrated (:func:`update_record`).
    normalisation : dict
        How inputs were normalised, e.g. ``{"method": "percentile", "q": [0.5, 99.5]}``.

    Returns
    -------
    record : WeightsRecord
    """
    from .. import __version__

    h5, sidecar, name = _weights_paths(path)
    if not isinstance(architecture, dict) or "kind" not in architecture:
        raise InputError(f"architecture: expected a dict with a 'kind' key, got {architecture!r}")
    fields = _checked_fields({"pixel_size_um": pixel_size_um, "crack_threshold": crack_threshold,
                              "training": training, "normalisation": normalisation}, where="save_model_weights")
    h5.parent.mkdir(parents=True, exist_ok=True)
    tmp = h5.with_name(f".{name}.tmp-{os.getpid()}{_SUFFIX}")
    try:
        with warnings.catch_warnings():
            # TensorFlow variables under numpy 2 (harmless; fills test logs otherwise)
            warnings.filterwarnings("ignore", category=DeprecationWarning, message="__array__ implementation")
            _without_optimizer(model, architecture).save_weights(tmp)
        sha = file_sha256(tmp)
        os.replace(tmp, h5)
    finally:
        tmp.unlink(missing_ok=True)
    stored = {
        "name": name, "file": h5.name, "sha256": sha, "architecture": dict(architecture), **fields,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__,
    }
    text = json.dumps({k: stored[k] for k in _RECORD_KEYS}, indent=1)
    _atomic_write_text(sidecar, text + "\n")
    return WeightsRecord.from_dict(json.loads(text), folder=h5.parent, source=sidecar)


def _checked_fields(fields: dict, *, where: str) -> dict:
    out = dict(fields)
    if "pixel_size_um" in out:
        try:
            v = float(out["pixel_size_um"])
        except (TypeError, ValueError):
            v = float("nan")
        if not v > 0 or v == float("inf"):
            raise InputError(f"{where}: pixel_size_um must be a positive number, got {out['pixel_size_um']!r}")
        out["pixel_size_um"] = v
    if "crack_threshold" in out:
        try:
            t = float(out["crack_threshold"])
        except (TypeError, ValueError):
            t = float("nan")
        if not 0.0 <= t <= 1.0:
            raise InputError(f"{where}: crack_threshold (t of eq. 7) must be in [0, 1], got {out['crack_threshold']!r}")
        out["crack_threshold"] = t
    for key in ("training", "normalisation", "architecture"):
        if key in out and not isinstance(out[key], dict):
            raise InputError(f"{where}: {key} must be a dict, got {type(out[key]).__name__}")
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: record fields must be JSON values ({e})") from None
    return out


def _missing_default(name: str, detail: str) -> InputError:
    kind = "sr" if name == DEFAULT_SRGAN else "unet"
    return InputError(
        f"shipped weights {name!r} are missing from this installation ({detail}); "
        f"train them with `cathodeflow train {kind}` or give the path of your own .weights.h5 file"
    )


def resolve_weights(name_or_path: str | Path) -> WeightsRecord:
    """The record of a registry name, a ``.weights.h5`` path (sidecar beside it) or a sidecar.

    Raises
    ------
    InputError
        If the name is not in the registry (the message lists the known names), the sidecar
        is missing or unreadable, or shipped weights (:data:`SHIPPED`) are not installed.
    """
    text = str(name_or_path)
    is_name = isinstance(name_or_path, str) and os.sep not in text and "/" not in text and not text.endswith(
        (".h5", ".json"))
    if is_name:
        entries = _read_registry().get("weights", {})
        if text in entries:
            record = WeightsRecord.from_dict(entries[text], folder=WEIGHTS_DIR, source=REGISTRY_FILE)
            if text in SHIPPED and not record.path.exists():
                raise _missing_default(text, f"{record.path} not found")
            return record
        if text in SHIPPED:
            raise _missing_default(text, f"no entry in {REGISTRY_FILE}")
        if not Path(text).exists():
            raise InputError(f"weights {text!r}: not a registry name (known: {sorted(entries)}) "
                             f"and not a path to a {_SUFFIX} file or its .json sidecar")
    h5, sidecar, _ = _weights_paths(name_or_path)
    if not h5.exists() and not sidecar.exists():
        raise InputError(f"{name_or_path}: weights file not found (neither {h5.name} nor its sidecar "
                         f"{sidecar.name} exists)")
    try:
        d = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise InputError(f"{sidecar}: weights sidecar not found (expected beside the {_SUFFIX} file)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{sidecar}: unreadable weights sidecar ({e})") from None
    return WeightsRecord.from_dict(d, folder=sidecar.parent, source=sidecar)


def weights_location(name_or_path: str | Path) -> str:
    """Weights named so that any process finds them: a registry name stays a name (its
    record lives in the registry), a path becomes absolute (Dask workers and data processes
    may run in another working directory). Checked: a bad name or path fails here."""
    record = resolve_weights(name_or_path)
    return str(name_or_path) if record.source == REGISTRY_FILE else str(record.path.resolve())


def load_unet(name_or_path: str | Path, *, verify: bool = True, cache: bool = True, sha256: str | None = None):
    """The U-net of a weights record, built from its config with the weights loaded.

    Parameters
    ----------
    name_or_path : str or path
        A registry name (e.g. :data:`DEFAULT_UNET`), a ``.weights.h5`` path or its sidecar.
    verify : bool
        Check the file's sha256 against the record (default True).
    cache : bool
        Share one model per (path, sha256) in this process (default True). Pass False for
        a private model to train or fine-tune.
    sha256 : str, optional
        The sha256 the record must have: that of the weights a run started with, checked
        where its tasks load them (a Dask worker with another cathodeflow version, or
        another file at the same path, is refused instead of computing with other weights).

    Returns
    -------
    model : keras.Model
    record : WeightsRecord

    Raises
    ------
    InputError
        If the file is missing, its sha256 differs from the record, the record is not a
        U-net, or the weights do not load into the record's architecture.

    Notes
    -----
    Keras matches the variables of a ``.weights.h5`` file to the layers of the model by their
    order, so the record's architecture must be the one the weights were saved from; any
    mismatch Keras reports (an error, or a warning about unmatched parts) is refused. Only
    a change that keeps every variable's shape (e.g. another dilation) cannot be detected
    from the file, which is why the record, checked by sha256, is the authority.
    Models are cached per process, keyed by (absolute path, sha256), so Dask tasks that call
    this once per tile build and load the network once; the record is re-read every time.
    The cached model is shared: do not train it (use ``cache=False``).
    """
    return _load_kind(name_or_path, "unet", verify=verify, cache=cache, sha256=sha256)


def load_srgan_generator(name_or_path: str | Path, *, verify: bool = True, cache: bool = True,
                         sha256: str | None = None):
    """The SRGAN generator of a weights record (``architecture.kind == "srgan"``), built from
    its :class:`~cathodeflow.models.srgan.SRGANConfig` with the weights loaded.

    Same parameters, checks and caching as :func:`load_unet`.

    Returns
    -------
    model : keras.Model
        :func:`~cathodeflow.models.srgan.build_generator`'s network.
    record : WeightsRecord
    """
    return _load_kind(name_or_path, "srgan", verify=verify, cache=cache, sha256=sha256)


def _load_kind(name_or_path, kind: str, *, verify: bool, cache: bool, sha256: str | None = None):
    record = resolve_weights(name_or_path)
    path = record.path
    if sha256 is not None and record.sha256 != sha256:
        raise InputError(f"weights {str(name_or_path)!r}: sha256 {record.sha256} in this process "
                         f"({_process_name()}), {sha256} where the run started: other weights under that "
                         "name or path here (another cathodeflow version, or another file)")
    if not path.is_file():
        raise InputError(f"{path}: weights file not found (named by {record.source})")
    if verify:
        sha = file_sha256(path)
        if sha != record.sha256:
            where = "registry" if record.source == REGISTRY_FILE else "sidecar"
            raise InputError(f"{path}: sha256 {sha} does not match the {where} (expected {record.sha256}); "
                             "the file is corrupt or not the registered weights")
    arch = dict(record.architecture)
    if arch.pop("kind", None) != kind:
        raise InputError(f"{record.source}: architecture kind is {record.architecture.get('kind')!r}, "
                         f"expected {kind!r}")
    config_cls, build, what = _kind(kind)
    try:
        config = config_cls.from_dict(arch)
    except InputError as e:
        raise InputError(f"{record.source}: {e}") from None
    if not cache:
        return _build_and_load(config, path, build, what), record
    key = (str(path), record.sha256)
    with _CACHE_LOCK:
        model = _MODEL_CACHE.get(key)
        if model is None:
            model = _MODEL_CACHE[key] = _build_and_load(config, path, build, what)
    return model, record


def _process_name() -> str:
    """``"Dask worker tcp://…"`` in a Dask worker's task, else ``"pid N"``."""
    from ..tiling.threads import current_worker

    worker = current_worker()
    return f"pid {os.getpid()}" if worker is None else f"Dask worker {worker.address}"


def _build_and_load(config, path: Path, build, what: str):
    from .threads import cap_threads_in_dask_worker

    cap_threads_in_dask_worker()  # before the backend's runtime starts
    model = build(config)
    try:
        with warnings.catch_warnings():
            # Keras warns (and goes on) when parts of the file do not match: refuse.
            warnings.simplefilter("error", UserWarning)
            model.load_weights(path)
    except Exception as e:  # h5py/Keras raise many types for a bad file
        raise InputError(f"{path}: cannot load into a {what} {config.to_dict()}: weights of another "
                         f"architecture or corrupt ({type(e).__name__})") from None
    return model


def update_record(path_or_name: str | Path, **fields) -> WeightsRecord:
    """Change stored fields of a record (e.g. a calibrated ``crack_threshold``), atomically.

    ``file`` and ``sha256`` cannot be changed (they tie the record to its file). For a
    registry name the registry entry is updated, otherwise the sidecar.

    Returns
    -------
    record : WeightsRecord, the updated record
    """
    allowed = [k for k in _RECORD_KEYS if k not in ("file", "sha256")]
    bad = sorted(set(fields) - set(allowed))
    if bad:
        raise InputError(f"update_record: cannot set {bad}; settable fields: {allowed}")
    record = resolve_weights(path_or_name)
    new = {**record.to_dict(), **_checked_fields(fields, where="update_record")}
    if record.source == REGISTRY_FILE:
        doc = _read_registry()
        doc["weights"][str(path_or_name)] = new
        _atomic_write_text(REGISTRY_FILE, json.dumps(doc, indent=1) + "\n")
    else:
        _atomic_write_text(record.source, json.dumps(new, indent=1) + "\n")
    return WeightsRecord.from_dict(new, folder=record.path.parent, source=record.source)


def _clear_model_cache() -> None:
    """Forget cached models (for tests)."""
    with _CACHE_LOCK:
        _MODEL_CACHE.clear()

