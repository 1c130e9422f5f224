"""Campaign throughput of ``describe`` on a local cluster (issue 9, "campaign benchmark").

A campaign is a folder of many phase maps S (eq. 1) of 2048 × 2048 px, written as NPY files:
a few distinct maps of :func:`benchmarks.phasemaps.build_phase_map` (seeds ``seed`` …
``seed + distinct - 1``), reused under different image ids (hard links where the file system
allows them, so every image is its own file). Half of the images are condition ``A``, half
``B``, so the reduce step pools two conditions.

Measured, in one run:

- ``serial``: a plain loop on one core (this process pinned to one CPU): per file
  ``numpy.load`` and :func:`cathodeflow.measure.image.describe_phase` (the per-image kernel
  of the whole-image path), then :func:`cathodeflow.measure.describe.reduce_descriptions`;
- ``ceiling`` (``--ceiling``): the same loop in ``w`` independent processes at once, each
  pinned to its own core and given every ``w``-th file (no Dask, no tables compared): what
  ``w`` cores of this machine give these kernels with no scheduling at all. On a machine
  whose cores share caches, memory bandwidth or a physical core, it is below ``w`` ×, and no
  scheduler can beat it;
- ``cathodeflow.describe(files, scheduler=client)`` on a ``LocalCluster`` of 1 and of 2
  single-threaded worker processes (:func:`cathodeflow.study.cluster.local_cluster`; start-up
  and one warm-up call per path apart), on the whole-image path (one task per image, which
  reads its file), the tiled path (``chunk_px``, ``whole_image_px=0``: every map tiled; with
  ``tiled_images='auto'``, so a campaign of at least 2 maps per worker thread runs one task
  per map, which processes it chunk by chunk), with ``--paths …,spread`` the tiled path
  with each map's chunks spread over the workers (``tiled_images='spread'``) and, with
  ``--paths …,auto``, what ``describe(files, chunk_px=…)`` does by default (maps up to
  ``whole_image_px`` = 2²⁵ px described whole, so 2048² maps take the whole-image path).

Per variant: wall time, images per hour, the tables compared row by row with the serial
loop's (they must be identical), and on the cluster, from the scheduler itself: the graphs
submitted (``update_graph`` calls, i.e. rounds of blocking compute) and the tasks in them per
image (:class:`SubmittedGraphs`), the compute time of every task on the workers (Dask's
task stream) and the scheduler's overhead = wall − task compute / workers (the part of the
wall time not spent in our kernels on a busy worker); ``lead`` = from the call to the
first task start (client-side graph building), ``tail`` = from the last task end to the
return (gathering, the reduce step). The serial loop's overhead is its wall − the time in
``describe_phase`` (reading the files and the reduce step). CPU time (user + system) where
the kernels ran (the serial process; all workers) and of this process during a cluster run
(client and scheduler, which share the cores with the workers) does not depend on how busy a
shared machine is, unlike the wall times: on an idle machine with ``c`` cores the cluster's
wall is at least (workers' + client's CPU) / ``c``.

``--malloc-trim dask`` starts the workers with ``distributed``'s default
``MALLOC_TRIM_THRESHOLD_=65536`` (``local_cluster(malloc_trim_threshold=65536)``), which cathodeflow's local
clusters leave out: with it, glibc unmaps every freed large array, so the next one is
faulted in page by page again (about a third more CPU per image on the whole-image path,
most of it system time).

Run: ``python -m benchmarks.bench_campaign --images 200`` (defaults: 2048², chunk 1024,
workers 1,2, paths whole,tiled); prints a table and writes
``benchmarks/results/campaign-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import RESULTS_DIR, compare_tables, describe_comparison, load_now, machine_info, versions, write_json

PIXEL_SIZE_UM = 0.0143
#: The parameters each path changes (others: ``describe``'s defaults): ``whole`` gives no
#: ``chunk_px``; ``tiled`` tiles every map of several chunks (``tiled_images`` as
#: ``describe`` chooses: here one task per map); ``spread`` tiles them with each map's
#: chunks spread over the workers; ``auto`` is what ``describe(..., chunk_px=C)`` does by
#: default (maps up to 2²⁵ px whole).
PATH_PARAMS = {"whole": {}, "tiled": {"whole_image_px": 0},
               "spread": {"whole_image_px": 0, "tiled_images": "spread"}, "auto": {}}
#: Paths that tile the maps: their scheduling overhead is also measured against a serial
#: loop of the tiled kernels (``serial-tiled``).
TILED_PATHS = ("tiled", "spread")
CONDITIONS = ("A", "B")
#: Aim of the issue: 2 workers ≥ 1.8 × the one-core serial loop, per path.
GOAL_2_WORKERS = 1.8

try:
    from distributed.diagnostics.plugin import SchedulerPlugin
except ImportError:  # pragma: no cover - distributed is a dependency
    SchedulerPlugin = object


class SubmittedGraphs(SchedulerPlugin):
    """Scheduler plugin counting what clients submit: graphs (``update_graph`` calls) and
    the tasks in them (every key of each graph, requested or not)."""

    name = "bench-campaign-submitted-graphs"

    def __init__(self):
        self.graphs = 0
        self.tasks = 0

    def update_graph(self, scheduler, *, tasks=(), **kwargs):
        self.graphs += 1
        self.tasks += len(tasks)


def _read_counts(dask_scheduler=None):
    p = dask_scheduler.plugins[SubmittedGraphs.name]
    out = {"graphs": p.graphs, "tasks": p.tasks}
    p.graphs = p.tasks = 0
    return out


def submitted(client) -> dict:
    """``{"graphs", "tasks"}`` submitted to ``client``'s scheduler since the last call (the
    plugin is registered on the first call; its counts restart at each call)."""
    has = client.run_on_scheduler(lambda dask_scheduler: SubmittedGraphs.name in dask_scheduler.plugins)
    if not has:
        client.register_plugin(SubmittedGraphs())
    return client.run_on_scheduler(_read_counts)


# --------------------------------------------------------------------------- the campaign
def write_campaign(folder: Path, n_images: int, *, shape=(2048, 2048), distinct: int = 4, seed: int = 0,
                   radius_px=None) -> list[Path]:
    """Write ``n_images`` phase maps of ``shape`` into ``folder`` as ``map-NNNN.npy``.

    Image k is distinct map ``k % distinct`` (:func:`benchmarks.phasemaps.build_phase_map`,
    seed ``seed + k % distinct``); its file is a hard link to the first file of that map
    where possible, else a copy. Returns the paths in image order.
    """
    from .phasemaps import build_phase_map

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kw = {} if radius_px is None else {"radius_px": tuple(radius_px)}
    firsts: list[Path] = []
    paths = []
    for k in range(n_images):
        path = folder / f"map-{k:04d}.npy"
        j = k % distinct
        if j == len(firsts):
            np.save(path, build_phase_map(tuple(shape), seed=seed + j, **kw))
            firsts.append(path)
        else:
            try:
                os.link(firsts[j], path)
            except OSError:
                path.write_bytes(firsts[j].read_bytes())
        paths.append(path)
    return paths


def conditions_of(n_images: int) -> list[str]:
    """The condition of each image: :data:`CONDITIONS` in turn."""
    return [CONDITIONS[k % len(CONDITIONS)] for k in range(n_images)]


def _malloc_trim_env():
    from cathodeflow.study.cluster import MALLOC_TRIM

    return os.environ.get(MALLOC_TRIM)


@contextlib.contextmanager
def one_core():
    """Within: this thread (and the threads it starts) runs on one CPU only, so Dask's
    ``cpu_count`` (the kernels' thread pools) sees one core too."""
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover - not Linux
        yield None
        return
    old = os.sched_getaffinity(0)
    core = min(old)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, old)


def serial_loop(paths, conditions, *, params=None, pixel_size_um: float = PIXEL_SIZE_UM, chunk_px=None):
    """The plain serial loop: per file ``numpy.load`` then ``describe_phase``; then the
    reduce step. With ``chunk_px``, the tiled kernels instead: per file its lazy array of
    ``chunk_px`` chunks (``phase_file_array``, read chunk by chunk inside) and
    ``describe_phase_dask`` in this thread (``in_this_thread``: Dask's synchronous
    scheduler, scratch on disk), what one in-task tiled image runs. Returns (tables, times)
    with times ``wall_s``, ``cpu_s`` (CPU time of this process), ``read_s``, ``kernel_s``
    (in ``describe_phase`` / ``describe_phase_dask``), ``reduce_s``."""
    from cathodeflow.config import Params
    from cathodeflow.io.phasefile import image_id_from_path, phase_file_array, validate_phase
    from cathodeflow.measure.describe import dcenter_tables, reduce_descriptions
    from cathodeflow.measure.image import describe_phase
    from cathodeflow.measure.tiled import describe_phase_dask
    from cathodeflow.tiling.scheduler import in_this_thread

    params = params or Params()
    dcenter = dcenter_tables(params)
    read = kernel = 0.0
    descs = []
    t0, p0 = time.perf_counter(), time.process_time()
    for path, cond in zip(paths, conditions):
        ta = time.perf_counter()
        kw = dict(image_id=image_id_from_path(path), condition=cond, pixel_size_um=pixel_size_um, params=params,
                  dcenter=dcenter)
        if chunk_px is None:
            phase = np.load(path)
            tb = time.perf_counter()
            descs.append(describe_phase(phase, **kw))
        else:
            phase = validate_phase(phase_file_array(path, chunk_px=chunk_px), name=str(path))
            tb = time.perf_counter()
            with in_this_thread():
                descs.append(describe_phase_dask(phase, **kw))
        read += tb - ta
        kernel += time.perf_counter() - tb
    tc = time.perf_counter()
    tables = reduce_descriptions(descs, params=params)
    t1 = time.perf_counter()
    return tables, {"wall_s": t1 - t0, "cpu_s": time.process_time() - p0, "read_s": read, "kernel_s": kernel,
                    "reduce_s": t1 - tc}


def _pinned_loop(core, paths, conditions, barrier, results):
    """One process of the ``ceiling`` variant: pinned to ``core``, one untimed file (numba
    caches, d_center tables), then, once every process is ready, its files."""
    os.sched_setaffinity(0, {core})
    serial_loop(paths[:1], conditions[:1])
    barrier.wait()
    _, stats = serial_loop(paths, conditions)
    results.put((core, stats))


def parallel_serial_loops(paths, conditions, n: int) -> dict:
    """``n`` serial loops at once in processes pinned to ``n`` distinct cores of this process's
    affinity, loop ``k`` on files ``k, k + n, …``. Returns ``wall_s`` (the slowest loop's:
    they start together), ``kernel_s`` and ``cpu_s`` (sums over the loops)."""
    import multiprocessing as mp

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < n:
        raise SystemExit(f"--ceiling: {n} loops need {n} cores, this process may use {len(cores)}")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_pinned_loop, args=(cores[k], paths[k::n], conditions[k::n], barrier, results))
             for k in range(n)]
    for pr in procs:
        pr.start()
    stats = [results.get() for _ in procs]
    for pr in procs:
        pr.join()
    return {"wall_s": max(st["wall_s"] for _, st in stats), "kernel_s": sum(st["kernel_s"] for _, st in stats),
            "cpu_s": sum(st["cpu_s"] for _, st in stats), "cores": [c for c, _ in stats]}


def _cpu_seconds() -> float:
    """CPU time (user + system) of the calling process so far, s."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def path_params(params, path: str):
    """``params`` (None: the defaults) with what ``path`` changes (:data:`PATH_PARAMS`)."""
    from cathodeflow.config import Params

    return (params or Params()).replace(**PATH_PARAMS[path])


def dask_run(client, paths, conditions, *, chunk_px, path: str, params=None,
             pixel_size_um: float = PIXEL_SIZE_UM):
    """``cathodeflow.describe(paths, scheduler=client, chunk_px=chunk_px)`` with ``params``
    changed as ``path`` says (:func:`path_params`), timed, with what
    the scheduler saw. Returns (tables, stats): ``wall_s``; ``graphs`` and ``tasks``
    submitted; ``compute_s`` (sum of the tasks' compute time on the workers) and its
    ``by_prefix`` breakdown (largest first); ``transfer_s``; ``lead_s`` (call → first task
    start) and ``tail_s`` (last task end → return; task times carry distributed's estimate
    of each worker's clock offset, so either can come out a fraction of a second below 0); ``cpu_workers_s`` (CPU time of all
    workers) and ``cpu_client_s`` (of this process: client and scheduler)."""
    from distributed import get_task_stream
    from distributed.utils import key_split

    from cathodeflow.study.describe import describe

    params = path_params(params, path)
    submitted(client)  # reset the counts
    cpu_w0 = sum(client.run(_cpu_seconds).values())
    with get_task_stream(client=client) as ts:
        t0, c0, p0 = time.time(), time.perf_counter(), time.process_time()
        tables = describe([str(p) for p in paths], pixel_size_um=pixel_size_um, condition=list(conditions),
                          params=params, scheduler=client, chunk_px=chunk_px)
        wall = time.perf_counter() - c0
        cpu_here = time.process_time() - p0
        t1 = t0 + wall
    cpu_workers = sum(client.run(_cpu_seconds).values()) - cpu_w0
    counts = submitted(client)
    compute = transfer = 0.0
    starts, stops = [], []
    by_prefix: dict[str, float] = {}
    for rec in ts.data:
        for ss in rec.get("startstops", ()):
            dt = ss["stop"] - ss["start"]
            if ss["action"] == "compute":
                compute += dt
                k = key_split(rec["key"])
                by_prefix[k] = by_prefix.get(k, 0.0) + dt
                starts.append(ss["start"])
                stops.append(ss["stop"])
            elif ss["action"] == "transfer":
                transfer += dt
    top = dict(sorted(by_prefix.items(), key=lambda kv: -kv[1])[:8])
    return tables, {
        "wall_s": wall,
        "cpu_client_s": cpu_here,
        "cpu_workers_s": cpu_workers,
        "graphs": counts["graphs"],
        "tasks": counts["tasks"],
        "tasks_run": len(ts.data),
        "compute_s": compute,
        "transfer_s": transfer,
        "by_prefix_s": {k: round(v, 3) for k, v in top.items()},
        "lead_s": (min(starts) - t0) if starts else None,
        "tail_s": (t1 - max(stops)) if stops else None,
    }


def summarise(kind: str, stats: dict, *, n_images: int, workers: int | None) -> dict:
    """The row of one run: images per hour, tasks and graphs per image, kernel time,
    overhead; ``cpu_s``: CPU time where the kernels ran (the serial loop's process, or all
    workers), ``cpu_client_s``: of this process during a cluster run (client and scheduler)."""
    wall = stats["wall_s"]
    row = {"variant": kind, "workers": workers, "wall_s": round(wall, 3),
           "images_per_hour": round(3600 * n_images / wall, 1)}
    if workers is None:
        row["kernel_s"] = round(stats["kernel_s"], 3)
        row["overhead_s"] = round(wall - stats["kernel_s"], 3)
        row["cpu_s"] = round(stats["cpu_s"], 3)
    else:
        row["tasks_per_image"] = stats["tasks"] / n_images
        row["graphs_per_image"] = stats["graphs"] / n_images
        row["kernel_s"] = round(stats["compute_s"], 3)
        row["busy"] = round(stats["compute_s"] / (workers * wall), 3)
        row["overhead_s"] = round(wall - stats["compute_s"] / workers, 3)
        row["cpu_s"] = round(stats["cpu_workers_s"], 3)
        row["cpu_client_s"] = round(stats["cpu_client_s"], 3)
    return row


# --------------------------------------------------------------------------- the run
def run_campaign(*, images: int, shape=(2048, 2048), chunk_px: int = 1024, workers=(1, 2),
                 paths=("whole", "tiled"), distinct: int = 4, seed: int = 0, radius_px=None, repeat: int = 1,
                 malloc_trim: bool = False, ceiling: bool = False, out: Path | str | None = RESULTS_DIR,
                 log=print) -> dict:
    """Write the campaign, run the serial loop and every (workers, path) variant
    ``repeat`` times (interleaved: repeat k of each before k + 1 of any), compare the
    tables, write the JSON (unless ``out`` is None) and return the payload. ``ceiling``:
    also :func:`parallel_serial_loops` on as many cores as the largest cluster has workers."""
    from cathodeflow.study.cluster import DISTRIBUTED_MALLOC_TRIM, local_cluster
    from cathodeflow.study.describe import describe

    started = _dt.datetime.now(_dt.timezone.utc)
    payload = {
        "name": "campaign",
        "timestamp": started.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.bench_campaign", *sys.argv[1:]]),
        "machine": machine_info(),
        "versions": versions(),
        "load_start": load_now(),
        "options": {"images": images, "shape": list(shape), "chunk_px": chunk_px, "workers": list(workers),
                    "paths": list(paths), "distinct": distinct, "seed": seed, "repeat": repeat,
                    "malloc_trim": "distributed's default" if malloc_trim else "off", "ceiling": ceiling,
                    "pixel_size_um": PIXEL_SIZE_UM},
        "runs": [],
    }
    conds = conditions_of(images)
    runs = payload["runs"]
    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
        t0 = time.perf_counter()
        files = write_campaign(Path(tmp), images, shape=shape, distinct=distinct, seed=seed, radius_px=radius_px)
        payload["write_s"] = round(time.perf_counter() - t0, 2)
        ref = None
        for rep in range(repeat):
            with one_core() as core:
                if rep == 0:  # numba caches, d_center tables: not timed
                    serial_loop(files[:1], conds[:1])
                load = load_now()["load1"]
                tables, stats = serial_loop(files, conds)
            if ref is None:
                ref = tables
                payload["particles"] = len(tables["particles"])
                payload["cracks"] = len(tables["cracks"])
            row = summarise("serial", stats, n_images=images, workers=None)
            row.update(repeat=rep, core=core, load1_before=load, load1_after=load_now()["load1"],
                       read_s=round(stats["read_s"], 3), reduce_s=round(stats["reduce_s"], 3))
            runs.append(row)
            log(f"  serial (core {core}): {row['wall_s']:.2f} s, load {row['load1_after']}")
            if any(p in TILED_PATHS for p in paths):
                with one_core() as core:
                    if rep == 0:
                        serial_loop(files[:1], conds[:1], chunk_px=chunk_px)
                    load = load_now()["load1"]
                    tables, stats = serial_loop(files, conds, chunk_px=chunk_px)
                cmp = compare_tables(ref, tables)
                row = summarise("serial-tiled", stats, n_images=images, workers=None)
                row.update(repeat=rep, core=core, chunk_px=chunk_px, load1_before=load,
                           load1_after=load_now()["load1"], tables_identical=cmp["all_identical"])
                runs.append(row)
                log(f"  serial tiled (core {core}): {row['wall_s']:.2f} s, "
                    f"tables {'identical' if row['tables_identical'] else 'DIFFER'}, load {row['load1_after']}")
            if ceiling:
                n = max(workers)
                load = load_now()["load1"]
                st = parallel_serial_loops(files, conds, n)
                row = {"variant": "ceiling", "workers": n, "wall_s": round(st["wall_s"], 3),
                       "images_per_hour": round(3600 * images / st["wall_s"], 1),
                       "kernel_s": round(st["kernel_s"], 3), "overhead_s": round(st["wall_s"] - st["kernel_s"] / n, 3),
                       "cpu_s": round(st["cpu_s"], 3), "repeat": rep, "cores": st["cores"],
                       "load1_before": load, "load1_after": load_now()["load1"]}
                runs.append(row)
                log(f"  {n} serial loops on cores {st['cores']}: {row['wall_s']:.2f} s, load {row['load1_after']}")
            for w in workers:
                t0 = time.perf_counter()
                with local_cluster(w, malloc_trim_threshold=DISTRIBUTED_MALLOC_TRIM if malloc_trim else None) as client:
                    client.wait_for_workers(w)
                    startup = time.perf_counter() - t0
                    trim = sorted({str(v) for v in client.run(_malloc_trim_env).values()})
                    for path in paths:
                        chunk = None if path == "whole" else chunk_px
                        warm = files[: 2 * w]
                        describe([str(p) for p in warm], pixel_size_um=PIXEL_SIZE_UM, condition=conds[: len(warm)],
                                 params=path_params(None, path), scheduler=client, chunk_px=chunk)
                        load = load_now()["load1"]
                        tables, stats = dask_run(client, files, conds, chunk_px=chunk, path=path)
                        cmp = compare_tables(ref, tables)
                        row = summarise(path, stats, n_images=images, workers=w)
                        row.update(repeat=rep, chunk_px=chunk, cluster_startup_s=round(startup, 2),
                                   worker_malloc_trim=trim,
                                   load1_before=load, load1_after=load_now()["load1"],
                                   lead_s=_round(stats["lead_s"]), tail_s=_round(stats["tail_s"]),
                                   transfer_s=round(stats["transfer_s"], 3), tasks_run=stats["tasks_run"],
                                   graphs=stats["graphs"], tasks=stats["tasks"], by_prefix_s=stats["by_prefix_s"],
                                   tables_identical=cmp["all_identical"])
                        if not cmp["all_identical"]:
                            row["table_differences"] = describe_comparison(cmp)
                        runs.append(row)
                        log(f"  {path} on {w} worker(s): {row['wall_s']:.2f} s, "
                            f"tables {'identical' if row['tables_identical'] else 'DIFFER'}, load {row['load1_after']}")
    payload["load_end"] = load_now()
    payload["medians"], payload["ratios"], payload["goals"] = medians_and_ratios(runs)
    if out is not None:
        payload["path"] = str(write_json(payload, out))
    return payload


def _round(x, nd=3):
    return None if x is None else round(x, nd)


def medians_and_ratios(runs: list[dict]):
    """Per variant (path, workers) the medians of its rows' numbers; ``serial / variant``
    of the median walls, and ``serial-tiled / variant`` for the tiled paths (the same
    kernels: what the scheduling costs); the goal (:data:`GOAL_2_WORKERS`) for the 2-worker
    variants."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        label = r["variant"] if r["workers"] is None else f"{r['variant']} {r['workers']}w"
        groups.setdefault(label, []).append(r)
    keys = ("wall_s", "images_per_hour", "tasks_per_image", "graphs_per_image", "kernel_s", "busy",
            "overhead_s", "lead_s", "tail_s", "cpu_s", "cpu_client_s")
    med = {label: {k: float(np.median([r[k] for r in rows])) for k in keys
                   if all(r.get(k) is not None for r in rows)}
           | {"n": len(rows), "tables_identical": None if label.startswith("ceiling")
              else all(r.get("tables_identical", True) for r in rows)}
           for label, rows in groups.items()}
    serial = med.get("serial", {}).get("wall_s")
    ratios = {f"serial / {label}": round(serial / m["wall_s"], 3)
              for label, m in med.items() if label != "serial" and serial}
    tiled = med.get("serial-tiled", {}).get("wall_s")
    ratios |= {f"serial-tiled / {label}": round(tiled / m["wall_s"], 3)
               for label, m in med.items() if label.split()[0] in TILED_PATHS and tiled}
    goals = {k: {"min": GOAL_2_WORKERS, "value": v, "met": v >= GOAL_2_WORKERS}
             for k, v in ratios.items() if k.endswith(" 2w") and not k.endswith("/ ceiling 2w")}
    return med, ratios, goals


def format_table(payload: dict) -> str:
    """The console table of the medians."""
    o = payload["options"]
    lines = [f"campaign: {o['images']} maps of {o['shape'][0]}x{o['shape'][1]} px ({o['distinct']} distinct), "
             f"chunk {o['chunk_px']} px, {payload.get('particles')} particles, {payload.get('cracks')} cracks, "
             f"workers' malloc trim {o['malloc_trim']}; "
             f"load {payload['load_start']['load1']} → {payload['load_end']['load1']}",
             f"{'variant':12s} {'wall s':>8s} {'img/h':>8s} {'tasks/img':>9s} {'graphs/img':>10s} {'kernel s':>9s} "
             f"{'busy':>5s} {'overh. s':>8s} {'lead s':>7s} {'tail s':>7s} {'cpu s':>8s} {'cpu c s':>8s} {'×serial':>8s} tables"]
    for label, m in payload["medians"].items():
        ratio = payload["ratios"].get(f"serial / {label}")

        def f(k, spec):
            return "—" if m.get(k) is None else format(m[k], spec)

        lines.append(f"{label:12s} {f('wall_s', '8.2f')} {f('images_per_hour', '8.0f')} {f('tasks_per_image', '9.1f'):>9s} "
                     f"{f('graphs_per_image', '10.2f'):>10s} {f('kernel_s', '9.2f')} {f('busy', '5.2f'):>5s} "
                     f"{f('overhead_s', '8.2f')} {f('lead_s', '7.2f'):>7s} {f('tail_s', '7.2f'):>7s} "
                     f"{f('cpu_s', '8.2f'):>8s} {f('cpu_client_s', '8.2f'):>8s} "
                     f"{'—' if ratio is None else format(ratio, '7.2f') + '×':>8s} "
                     f"{'—' if m['tables_identical'] is None else 'identical' if m['tables_identical'] else 'DIFFER'}")
    for k, g in payload["goals"].items():
        lines.append(f"goal {k} ≥ {g['min']}×: {g['value']:.2f}× {'met' if g['met'] else 'NOT met'}")
    return "\n".join(lines)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def main(argv=None) -> dict:
    from .__main__ import _radius, _shape

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_campaign", description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200, help="phase maps in the campaign (default 200)")
    ap.add_argument("--shape", type=_shape, default=(2048, 2048), help="map shape HxW (default 2048x2048)")
    ap.add_argument("--chunk", type=int, default=1024, help="chunk edge of the tiled path, px (default 1024)")
    ap.add_argument("--workers", type=_ints, default=(1, 2), help="LocalCluster sizes (default 1,2)")
    ap.add_argument("--paths", default="whole,tiled",
                    help="comma-separated: whole (no chunks), tiled (chunks, every map tiled), spread (tiled, "
                         "each map's chunks spread over the workers), auto (chunks, describe's default "
                         "whole_image_px) (default whole,tiled)")
    ap.add_argument("--distinct", type=int, default=4, help="distinct maps, reused under other ids (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--radius-px", type=_radius, default=None, help="particle radius range LO,HI (default 250,330)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of every variant (medians reported)")
    ap.add_argument("--malloc-trim", choices=("dask", "off"), default="off",
                    help="workers' MALLOC_TRIM_THRESHOLD_: unset as cathodeflow starts them (off, default) "
                         "or distributed's default 65536 (dask)")
    ap.add_argument("--ceiling", action="store_true",
                    help="also run as many pinned serial loops at once as the largest cluster has workers: "
                         "this machine's parallel ceiling for these kernels")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args(argv)
    chosen = tuple(p.strip() for p in args.paths.split(",") if p.strip())
    if not chosen or any(p not in PATH_PARAMS for p in chosen):
        ap.error(f"--paths: expected a comma-separated choice of {', '.join(PATH_PARAMS)}, got {args.paths!r}")
    if args.images < 1 or args.distinct < 1 or args.repeat < 1 or not args.workers or min(args.workers) < 1:
        ap.error("--images, --distinct, --repeat and --workers must be positive")
    payload = run_campaign(images=args.images, shape=args.shape, chunk_px=args.chunk, workers=args.workers,
                           paths=chosen, distinct=args.distinct, seed=args.seed, radius_px=args.radius_px,
                           repeat=args.repeat, malloc_trim=args.malloc_trim == "dask", ceiling=args.ceiling,
                           out=None if args.no_json else args.out)
    print(format_table(payload))
    if "path" in payload:
        print(f"wrote {payload['path']}")
    return payload


if __name__ == "__main__":
    main()
