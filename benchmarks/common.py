"""Timing harness of the benchmark suite: asv-style classes run without asv.

A benchmark class follows asv's conventions, so ``asv`` can run the same files:

- ``setup()`` / ``teardown()`` around the measurements;
- ``time_*`` methods are timed (wall clock, ``time.perf_counter``). A method attribute
  ``warmup = False`` counts the first call as a repeat (nothing to compile); otherwise the
  first call (numba compilation or cache load, worker start-up, imports) is timed and
  reported separately as ``first_call_s`` and left out of the median;
- ``track_*`` methods return a number (unit in the method's ``unit`` attribute);
- class attribute ``repeat`` (asv's ``number`` is always 1 here);

and three extras that asv ignores: ``ratios`` (label → (numerator, denominator) method
names; median / median), ``goals`` (ratio label → minimal value) and ``info()``, a
JSON-able dict of facts about the run (e.g. the comparison of tables), with optional
``summarize(info) -> list[str]`` lines for the console.

Repeats are interleaved (round robin over the ``time_*`` methods of a class), so that
the variants compared in a ratio see the same machine load: on a shared machine a load
spike then hits all of them, not one.
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib
import inspect
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cathodeflow.measure.image import QUALITY_FLAGS

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- configuration
@dataclass
class RunConfig:
    """Options of one run, read by the benchmark classes in ``setup`` (the command line of
    ``python -m benchmarks`` sets them; asv uses the defaults)."""

    shape: tuple[int, int] = (4478, 5972)
    source: str = "discs"  # "discs" (benchmarks.phasemaps.build_phase_map) or "synth"
    seed: int = 0
    radius_px: tuple[float, float] | None = None  # None: the builder's default (250, 330)
    pixel_size_um: float = 0.0143
    chunk_px: int = 2048
    n_workers: int = 2
    repeat: int | None = None  # None: each class's own ``repeat``
    variants: tuple[str, ...] | None = None  # restrict time_* methods (substring match)


config = RunConfig()


# --------------------------------------------------------------------------- machine facts
def machine_info() -> dict:
    """CPU model, cores, RAM, OS (from /proc where available)."""
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    return {
        "cpu_model": cpu,
        "cpu_flags": sorted(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags.split()),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "ram_gib": ram,
        "os": platform.platform(),
    }


def load_now() -> dict:
    """Load averages (1, 5, 15 min) and the ``uptime`` line: the machine is shared."""
    l1, l5, l15 = os.getloadavg()
    try:
        up = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        up = ""
    return {"load1": round(l1, 2), "load5": round(l5, 2), "load15": round(l15, 2), "uptime": up}


def versions() -> dict:
    """Versions of python and of the libraries the benchmarks exercise, plus the git commit."""
    out = {"python": platform.python_version()}
    for mod in ("numpy", "scipy", "skimage", "dask", "distributed", "numba", "pandas", "cathodeflow"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional library is just absent
            out[mod] = None
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["git_commit"] = rev + ("+dirty" if dirty else "") if rev else None
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux: ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Times of one ``time_*`` method."""

    name: str
    first_call_s: float | None = None
    times_s: list[float] = field(default_factory=list)
    load1: list[float] = field(default_factory=list)
    repeat: int = 3
    error: str | None = None

    @property
    def median_s(self) -> float | None:
        return float(np.median(self.times_s)) if self.times_s else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["median_s"] = self.median_s
        d["min_s"] = min(self.times_s) if self.times_s else None
        d["max_s"] = max(self.times_s) if self.times_s else None
        return d


class NetworkTimings:
    """Shared by the network suites (bench_unet, bench_sr): ``self.tmp`` (a temporary folder
    for their weights) is removed at teardown, and :meth:`_run` times one call, keeping its
    output for the tiled-vs-whole comparison."""

    def _reset_timings(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.out: dict[str, np.ndarray] = {}
        self.peak = None

    def teardown(self):
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    def _run(self, name, fn):
        t0 = time.perf_counter()
        self.out[name] = fn()
        self.times.setdefault(name, []).append(time.perf_counter() - t0)

    def _common_info(self) -> dict:
        """What both suites report besides their own numbers: memory so far, the Keras
        backend and its version, and the tiled-vs-whole difference of the outputs."""
        import keras

        info = {"peak_rss_mib_so_far": peak_rss_mib(),
                "backend": {"keras": keras.__version__, "backend": keras.backend.backend(),
                            "threads_scheduler_workers": config.n_workers}}
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            info["backend"]["tensorflow"] = tf.__version__
        if "whole" in self.out and "tiled" in self.out:
            info["tiled_vs_whole_max_abs_diff"] = float(np.max(np.abs(self.out["tiled"] - self.out["whole"])))
        return info


def _timed(fn) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _methods(obj, prefix: str):
    """Bound methods named ``prefix*`` in definition order (base classes first)."""
    names = []
    for klass in reversed(type(obj).__mro__):
        for n in vars(klass):
            if n.startswith(prefix) and callable(getattr(obj, n)) and n not in names:
                names.append(n)
    return [(n, getattr(obj, n)) for n in names]


def run_class(cls, *, repeat: int | None = None, variants=None, log=print) -> dict:
    """Run one benchmark class: setup, warm-ups, interleaved repeats, tracks, info, teardown.

    Returns a JSON-able dict (see the README for its fields).
    """
    bench = cls()
    n_rep = int(repeat or getattr(cls, "repeat", 3))
    res: dict = {"class": cls.__name__, "module": cls.__module__, "doc": inspect.getdoc(cls) or ""}
    t0 = time.perf_counter()
    if hasattr(bench, "setup"):
        bench.setup()
    res["setup_s"] = round(time.perf_counter() - t0, 3)
    res["load_before"] = load_now()
    methods = _methods(bench, "time_")
    if variants:
        methods = [(n, m) for n, m in methods if any(v in n for v in variants)]
    timings = {n: Timing(n, repeat=n_rep) for n, _ in methods}
    try:
        for n, m in methods:  # warm-up pass
            if getattr(m, "warmup", True):
                log(f"  {cls.__name__}.{n}: first call …")
                try:
                    timings[n].first_call_s = _timed(m)
                except Exception as e:  # noqa: BLE001 - recorded, the other variants go on
                    timings[n].error = f"{type(e).__name__}: {e}"
                    log(f"    failed: {timings[n].error}")
        for k in range(n_rep):
            for n, m in methods:
                t = timings[n]
                if t.error:
                    continue
                try:
                    dt = _timed(m)
                except Exception as e:  # noqa: BLE001
                    t.error = f"{type(e).__name__}: {e}"
                    log(f"    {n} failed: {t.error}")
                    continue
                t.times_s.append(dt)
                t.load1.append(round(os.getloadavg()[0], 2))
                log(f"  {cls.__name__}.{n}: repeat {k + 1}/{n_rep}: {dt:.3f} s")
        res["load_after"] = load_now()
        res["timings"] = {n: t.to_dict() for n, t in timings.items()}
        ratios = {}
        for label, (num, den) in getattr(cls, "ratios", {}).items():
            a, b = timings.get(num), timings.get(den)
            if a and b and a.median_s and b.median_s:
                ratios[label] = round(a.median_s / b.median_s, 3)
        res["ratios"] = ratios
        res["goals"] = {
            label: {"min": goal, "value": ratios.get(label), "met": bool(ratios.get(label, 0) >= goal)}
            for label, goal in getattr(cls, "goals", {}).items()
            if label in ratios
        }
        res["tracks"] = {}
        for n, m in _methods(bench, "track_"):
            try:
                res["tracks"][n] = {"value": _jsonable(m()), "unit": getattr(m, "unit", "")}
            except Exception as e:  # noqa: BLE001
                res["tracks"][n] = {"value": None, "error": f"{type(e).__name__}: {e}"}
        res["info"] = _jsonable(bench.info()) if hasattr(bench, "info") else {}
    finally:
        if hasattr(bench, "teardown"):
            bench.teardown()
    res["summary"] = list(bench.summarize(res["info"])) if hasattr(bench, "summarize") else []
    return res


def _jsonable(x):
    """Plain JSON types (numpy scalars/arrays, tuples, NaN → None)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


# --------------------------------------------------------------------------- tables
#: Row keys of the five tables of DESIGN §4.2.
TABLE_KEYS = {
    "images": ["image_id"],
    "cracks": ["image_id", "crack_id"],
    "particles": ["image_id", "particle_id"],
    "local_porosity": ["condition", "method", "bin_lo"],
    "conditions": ["condition"],
}


def _equal(a: pd.Series, b: pd.Series) -> np.ndarray:
    if pd.api.types.is_float_dtype(a) or pd.api.types.is_float_dtype(b):
        x, y = a.to_numpy(float), b.to_numpy(float)
        return (x == y) | (np.isnan(x) & np.isnan(y))
    na_a, na_b = a.isna().to_numpy(), b.isna().to_numpy()
    same = np.array([x == y for x, y in zip(a.astype(object), b.astype(object))], dtype=object)
    same[na_a | na_b] = False
    return same.astype(bool) | (na_a & na_b)


def compare_tables(ref: dict[str, pd.DataFrame], got: dict[str, pd.DataFrame], *, rel_tol: float = 1e-9) -> dict:
    """Compare two sets of tables row by row (rows matched on :data:`TABLE_KEYS`).

    Returns, per table: row counts, rows only in one of them, the number of differing rows
    and cells (exact comparison; NaN equals NaN), the cells differing by more than
    ``rel_tol`` relative, and per differing column the largest absolute and relative
    difference; ``identical`` when nothing differs. ``all_identical`` summarises.
    """
    out: dict = {}
    for name, keys in TABLE_KEYS.items():
        a, b = ref.get(name), got.get(name)
        if a is None or b is None:
            out[name] = {"identical": a is None and b is None, "note": "table missing"}
            continue
        m = a.merge(b, on=keys, how="outer", suffixes=("_ref", "_got"), indicator=True)
        only_ref = int((m["_merge"] == "left_only").sum())
        only_got = int((m["_merge"] == "right_only").sum())
        both = m[m["_merge"] == "both"]
        # the serial reference does not compute the quality flags (its columns stay empty)
        cols = [c for c in a.columns if c not in keys and c in b.columns
                and not (c in QUALITY_FLAGS and a[c].isna().all())]
        row_diff = np.zeros(len(both), bool)
        cells = beyond = 0
        per_col = {}
        for c in cols:
            x, y = both[f"{c}_ref"], both[f"{c}_got"]
            eq = _equal(x, y)
            nd = int((~eq).sum())
            if nd:
                row_diff |= ~eq
                cells += nd
                entry = {"differing": nd}
                if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
                    xv, yv = x.to_numpy(float)[~eq], y.to_numpy(float)[~eq]
                    ad = np.abs(xv - yv)
                    rd = ad / np.maximum(np.maximum(np.abs(xv), np.abs(yv)), 1e-300)
                    entry["max_abs_diff"] = float(np.nanmax(ad)) if np.isfinite(ad).any() else None
                    entry["max_rel_diff"] = float(np.nanmax(rd)) if np.isfinite(rd).any() else None
                    beyond += int(np.sum(~(rd <= rel_tol)))
                else:
                    beyond += nd
                per_col[c] = entry
        out[name] = {
            "rows_ref": len(a),
            "rows_got": len(b),
            "rows_only_ref": only_ref,
            "rows_only_got": only_got,
            "differing_rows": int(row_diff.sum()),
            "differing_cells": cells,
            f"cells_beyond_rel_{rel_tol:g}": beyond,
            "columns": per_col,
            "identical": only_ref == 0 and only_got == 0 and cells == 0,
        }
    out["all_identical"] = all(v.get("identical", False) for v in out.values() if isinstance(v, dict))
    return out


def describe_comparison(cmp: dict) -> list[str]:
    """One console line per table of a :func:`compare_tables` result."""
    lines = []
    for name in TABLE_KEYS:
        c = cmp.get(name, {})
        if c.get("identical"):
            lines.append(f"    {name:15s} identical ({c.get('rows_ref')} rows)")
            continue
        worst = ", ".join(
            f"{col}: {v['differing']} (max |Δ| {_fmt(v['max_abs_diff'], '.3g')}, "
            f"rel {_fmt(v.get('max_rel_diff'), '.2g')})" if "max_abs_diff" in v else f"{col}: {v['differing']}"
            for col, v in c.get("columns", {}).items()
        )
        lines.append(
            f"    {name:15s} {c.get('rows_ref')} vs {c.get('rows_got')} rows; "
            f"{c.get('differing_rows')} rows / {c.get('differing_cells')} cells differ"
            + (f"; only-ref {c['rows_only_ref']}, only-new {c['rows_only_got']}" if c.get("rows_only_ref") or c.get("rows_only_got") else "")
            + (f" [{worst}]" if worst else "")
        )
    return lines


# --------------------------------------------------------------------------- suites, output
def discover(names=None) -> list:
    """Benchmark modules ``benchmarks/bench_<name>.py`` (all, or those named)."""
    here = Path(__file__).resolve().parent
    found = sorted(p.stem[len("bench_"):] for p in here.glob("bench_*.py"))
    if names:
        unknown = [n for n in names if n.split(".")[0] not in found]
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; available: {found}")
        found = [n for n in names]
    return found


def classes_of(name: str) -> list:
    """Benchmark classes of ``bench_<module>`` (``module.Class`` selects one)."""
    mod_name, _, cls_name = name.partition(".")
    mod = importlib.import_module(f"benchmarks.bench_{mod_name}")
    classes = [
        obj for _, obj in inspect.getmembers(mod, inspect.isclass)
        if obj.__module__ == mod.__name__ and any(n.startswith("time_") for n in dir(obj))
    ]
    classes.sort(key=lambda c: inspect.getsourcelines(c)[1])
    if cls_name:
        classes = [c for c in classes if c.__name__ == cls_name]
        if not classes:
            raise SystemExit(f"no benchmark class {cls_name!r} in bench_{mod_name}")
    return classes


def run_suites(names=None, *, log=print) -> dict:
    """Run the named suites (all when None) and return the JSON payload."""
    names = discover(names)
    payload = {
        "name": "all" if len(names) > 1 else names[0].replace(".", "-"),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]]),
        "machine": machine_info(),
        "versions": versions(),
        "config": _jsonable(asdict(config)),
        "load_start": load_now(),
        "suites": [],
    }
    for name in names:
        for cls in classes_of(name):
            log(f"{name}.{cls.__name__}")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = run_class(cls, repeat=config.repeat, variants=config.variants, log=log)
            # warnings (e.g. distributed's "Sending large graph") once each, not per repeat
            r["warnings"] = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught})
            r["suite"] = name
            payload["suites"].append(r)
    payload["load_end"] = load_now()
    payload["peak_rss_mib"] = peak_rss_mib()
    return _jsonable(payload)


def write_json(payload: dict, out_dir: Path | str = RESULTS_DIR) -> Path:
    """Write ``<out_dir>/<name>-<timestamp>.json`` and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = payload["timestamp"].replace(":", "").replace("-", "").replace("+0000", "Z")[:16]
    path = out_dir / f"{payload['name']}-{stamp}.json"
    k = 1
    while path.exists():
        path = out_dir / f"{payload['name']}-{stamp}-{k}.json"
        k += 1
    path.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
    return path


def write_stamped(name: str, fields: dict, out_dir: Path | str = RESULTS_DIR) -> Path:
    """Write ``<out_dir>/<name>-<UTC time>.json`` (the quality benchmarks' results): the
    benchmark's name (``name`` with ``_`` for ``-``), the time, the machine and cathodeflow's
    version first, then ``fields``; return its path."""
    from cathodeflow import __version__

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out_dir / f"{name}-{stamp}.json"
    path.write_text(json.dumps({"benchmark": name.replace("-", "_"), "utc": stamp,
                                "machine": platform.processor() or platform.machine(),
                                "cathodeflow": __version__, **fields}, indent=1))
    return path


def _fmt(x, spec=".3f"):
    return "—" if x is None else format(x, spec)


def format_report(payload: dict) -> str:
    """The console table: per benchmark first call, median, min, max, n; then ratios,
    goals, tracks and each class's summary lines."""
    m, v = payload["machine"], payload["versions"]
    lines = [
        f"machine: {m['cpu_model']}, {m['cores_usable']} usable cores, {m['ram_gib']} GiB; "
        f"load at start {payload['load_start']['load1']}, at end {payload['load_end']['load1']}",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
    ]
    for s in payload["suites"]:
        lines.append("")
        lines.append(f"== {s['suite']}.{s['class']} (setup {s['setup_s']:.1f} s)")
        lines.append(f"  {'benchmark':34s} {'first call':>10s} {'median':>9s} {'min':>9s} {'max':>9s}  n")
        for name, t in s.get("timings", {}).items():
            if t.get("error"):
                lines.append(f"  {name:34s} FAILED: {t['error']}")
                continue
            lines.append(
                f"  {name:34s} {_fmt(t['first_call_s']):>10s} {_fmt(t['median_s']):>9s} "
                f"{_fmt(t['min_s']):>9s} {_fmt(t['max_s']):>9s}  {len(t['times_s'])}"
            )
        for label, r in s.get("ratios", {}).items():
            goal = s.get("goals", {}).get(label)
            tag = f"   (goal ≥ {goal['min']:g}×: {'met' if goal['met'] else 'NOT met'})" if goal else ""
            lines.append(f"  ratio {label:40s} {r:7.2f}×{tag}")
        for name, t in s.get("tracks", {}).items():
            if t.get("value") is None and not t.get("error"):
                continue
            lines.append(f"  {name:40s} {t.get('value')} {t.get('unit', '')}")
        lines.extend(s.get("summary", []))
        lines.extend(f"  warning (once): {w}" for w in s.get("warnings", []))
    lines.append("")
    lines.append(f"peak RSS of the benchmark process: {payload['peak_rss_mib']} MiB")
    return "\n".join(lines)
