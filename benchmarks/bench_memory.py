"""Peak memory of tiled ``describe`` against the image size (issue 9, item 1).

A sparse phase map of N megapixels ("particles apart": no touching particles; or with
``--mode percolating`` one solid network spanning the map) is written
chunk by chunk into a temporary Zarr array, never whole in memory: a few distinct tiles of
:func:`benchmarks.phasemaps.build_phase_map` (``touch_fraction=0``, a 2-px background frame
so that tiles never join) repeated over the mosaic by :func:`cathodeflow.synth.mosaic.mosaic_block`
(``cathodeflow synth-mosaic`` writes such mosaics of the generator's own tiles into a store). ``cathodeflow.describe`` then reads it
lazily with ``chunk_px`` chunks on

- ``threads`` — Dask's threaded scheduler in this process (the default), or
- ``local`` — a ``LocalCluster`` of 2 single-threaded worker processes (start-up not timed),

with its intermediate arrays on disk (``--scratch disk``, the default) or in memory
(``--scratch memory``: ``describe_phase_dask(scratch=False)``, the earlier behaviour),

while a thread samples (psutil, every 50 ms) the resident memory of this process and of
every descendant process. Reported per size: wall time, MP/s, the peak RSS of the client,
of each worker and of the whole tree (summed at the same instant), the baseline RSS before
the call, and (peak tree − baseline) per pixel. The map is built and written before the
baseline is taken; an unrecorded run on a small map (``--warmup``, 4 MP) comes first, so
imports and compilation are not counted.

Run: ``python -m benchmarks.bench_memory --sizes 27,110 [--scheduler local] [--mode percolating]``; prints a
table and writes ``benchmarks/results/memory-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import gc
import math
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cathodeflow.config import Params
from cathodeflow.synth.mosaic import frame_tile, mosaic_block

from .common import RESULTS_DIR, load_now, machine_info, versions, write_json

PIXEL_SIZE_UM = 0.0143
N_TILES = 4


def base_tiles(tile_px: int, *, n: int = N_TILES, seed: int = 0, mode: str = "sparse") -> list[np.ndarray]:
    """``n`` distinct (tile_px, tile_px) uint8 phase maps with a 2-px frame: ``sparse``,
    particles apart and a background frame; ``percolating``, 30 % of neighbouring
    particles touching and a solid frame, so that the solid is one network spanning the
    mosaic (the modes of :mod:`cathodeflow.synth.mosaic`)."""
    from .phasemaps import build_phase_map

    touch, frame = (0.0, 0) if mode == "sparse" else (0.3, 1)
    return [frame_tile(build_phase_map((tile_px, tile_px), touch_fraction=touch, seed=seed + k), frame)
            for k in range(n)]


def write_mosaic(path: Path, megapixels: float, tiles: list[np.ndarray], chunk_px: int):
    """Write a square mosaic of about ``megapixels`` MP to a Zarr array at ``path``, one
    chunk at a time; return its shape and phase counts (background, solid, crack)."""
    import zarr

    side = int(round(math.sqrt(megapixels * 1e6)))
    arr = zarr.create_array(str(path), shape=(side, side), chunks=(chunk_px, chunk_px), dtype="uint8")
    counts = np.zeros(3, np.int64)
    for y in range(0, side, chunk_px):
        for x in range(0, side, chunk_px):
            rows, cols = slice(y, min(y + chunk_px, side)), slice(x, min(x + chunk_px, side))
            block = mosaic_block(tiles, rows, cols)
            counts += np.bincount(block.ravel(), minlength=3)[:3]
            arr[rows, cols] = block
    return (side, side), counts


class RssSampler:
    """Sample the RSS of this process and of all its descendants in a thread."""

    def __init__(self, interval_s: float = 0.05):
        import psutil

        self.interval_s = interval_s
        self._me = psutil.Process()
        self._stop = threading.Event()
        self.peak_client = 0
        self.peak_tree = 0
        self.peak_children: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        import psutil

        client = self._me.memory_info().rss
        total = client
        for child in self._me.children(recursive=True):
            try:
                rss = child.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            self.peak_children[child.pid] = max(self.peak_children.get(child.pid, 0), rss)
        self.peak_client = max(self.peak_client, client)
        self.peak_tree = max(self.peak_tree, total)
        return total

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def tree_rss() -> int:
    """RSS of this process plus its descendants now, bytes."""
    s = RssSampler()
    return s._sample()


def tables_equal(a: dict, b: dict) -> dict[str, bool]:
    """Table by table: identical values (same rows, columns and order)."""
    return {name: bool(a[name].reset_index(drop=True).equals(b[name].reset_index(drop=True))) for name in a}


def run_size(megapixels: float, tiles, *, chunk_px: int, client, workdir: Path, check_whole: bool = False,
             tiled_images: str = "auto") -> dict:
    """Build the mosaic, describe it tiled, return the measurements of one size (with
    ``check_whole``, then also compare the tables with a whole-image run, not timed)."""
    import dask.array as da

    import cathodeflow

    path = workdir / f"phase-{megapixels:g}MP.zarr"
    t0 = time.perf_counter()
    shape, counts = write_mosaic(path, megapixels, tiles, chunk_px)
    write_s = time.perf_counter() - t0
    gc.collect()
    base_client = RssSampler()._me.memory_info().rss
    base_tree = tree_rss()
    phase = da.from_zarr(str(path))
    with RssSampler() as s:
        t0 = time.perf_counter()
        tables = cathodeflow.describe(phase, pixel_size_um=PIXEL_SIZE_UM, condition="bench",
                                      chunk_px=chunk_px, scheduler=client or "threads",
                                      params=Params(whole_image_px=0,  # the tiled path, whatever the size
                                                    tiled_images=tiled_images))
        wall = time.perf_counter() - t0
    mp = shape[0] * shape[1] / 1e6
    mib = 1 << 20
    equal = None
    if check_whole:  # the whole-image numpy path, in this process
        whole = cathodeflow.describe(phase.compute(), pixel_size_um=PIXEL_SIZE_UM, condition="bench")
        equal = tables_equal(tables, whole)
    return {
        "tables_equal_whole_image": equal,
        "megapixels": round(mp, 3),
        "shape": list(shape),
        "phase_counts": counts.tolist(),
        "particles": len(tables["particles"]),
        "cracks": len(tables["cracks"]),
        "write_s": round(write_s, 2),
        "describe_s": round(wall, 2),
        "mp_per_s": round(mp / wall, 3),
        "baseline_client_mib": round(base_client / mib, 1),
        "baseline_tree_mib": round(base_tree / mib, 1),
        "peak_client_mib": round(s.peak_client / mib, 1),
        "peak_workers_mib": [round(v / mib, 1) for v in s.peak_children.values()],
        "peak_tree_mib": round(s.peak_tree / mib, 1),
        "held_bytes_per_px": round((s.peak_tree - base_tree) / (mp * 1e6), 2),
        "load1_after": load_now()["load1"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="27,110", help="comma-separated image sizes in MP (default 27,110)")
    ap.add_argument("--chunk-px", type=int, default=2048)
    ap.add_argument("--tile-px", type=int, default=2560, help="edge of the generator tiles")
    ap.add_argument("--mode", choices=("sparse", "percolating"), default="sparse",
                    help="sparse: particles apart (default); percolating: one solid network "
                         "(the particle stage's worst case: one component spanning the image)")
    ap.add_argument("--scheduler", choices=("threads", "local"), default="threads")
    ap.add_argument("--workers", type=int, default=2, help="workers of the LocalCluster")
    ap.add_argument("--scratch", choices=("disk", "memory"), default="disk",
                    help="where describe keeps intermediate arrays (memory: the behaviour before "
                         "the scratch store, describe_phase_dask(scratch=False))")
    ap.add_argument("--warmup", type=float, default=4.0,
                    help="MP of an unrecorded first run (imports, compilation); 0: none")
    ap.add_argument("--check-whole", type=float, default=30.0,
                    help="compare the tables of maps up to this many MP with a whole-image run "
                         "(after the timed run; default 30; 0: never)")
    ap.add_argument("--tiled-images", choices=("auto", "in-task", "spread"), default="auto",
                    help="Params.tiled_images: in-task describes the mosaic in one task, chunk by chunk "
                         "(auto: spread, for one image)")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    args = ap.parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    started = _dt.datetime.now(_dt.timezone.utc)
    payload = {
        "name": "memory",
        "timestamp": started.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "machine": machine_info(),
        "versions": versions(),
        "load_start": load_now(),
        "options": {"sizes_mp": sizes, "chunk_px": args.chunk_px, "tile_px": args.tile_px, "mode": args.mode,
                    "warmup_mp": args.warmup, "scratch": args.scratch,
                    "tiled_images": args.tiled_images, "scheduler": args.scheduler, "workers": args.workers if args.scheduler == "local" else None},
        "runs": [],
    }
    if args.scratch == "memory":  # cathodeflow.describe looks the function up at each call
        import cathodeflow.measure.tiled as tiled

        tiled.describe_phase_dask = functools.partial(tiled.describe_phase_dask, scratch=False)
    t0 = time.perf_counter()
    tiles = base_tiles(args.tile_px, mode=args.mode)
    payload["tiles_s"] = round(time.perf_counter() - t0, 2)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        client, cluster_cm = None, None
        if args.scheduler == "local":
            from cathodeflow.study.cluster import local_cluster

            cluster_cm = local_cluster(args.workers)
            client = cluster_cm.__enter__()
            client.wait_for_workers(args.workers)
        try:
            if args.warmup:  # imports, numba caches, worker start-up: not in the measured runs
                run_size(args.warmup, tiles, chunk_px=args.chunk_px, client=client, workdir=Path(tmp),
                         tiled_images=args.tiled_images)
            for mp in sizes:
                r = run_size(mp, tiles, chunk_px=args.chunk_px, client=client, workdir=Path(tmp),
                             check_whole=mp <= args.check_whole, tiled_images=args.tiled_images)
                payload["runs"].append(r)
                eq = r["tables_equal_whole_image"]
                print(f"{r['megapixels']:8.1f} MP  {r['describe_s']:7.1f} s  {r['mp_per_s']:6.2f} MP/s  "
                      f"peak tree {r['peak_tree_mib']:8.1f} MiB (client {r['peak_client_mib']:.0f}, "
                      f"workers {r['peak_workers_mib']})  {r['held_bytes_per_px']:5.2f} B/px above "
                      f"baseline {r['baseline_tree_mib']:.0f} MiB  load {r['load1_after']}"
                      + ("" if eq is None else f"  tables == whole image: {all(eq.values())}"), flush=True)
        finally:
            if cluster_cm is not None:
                cluster_cm.__exit__(None, None, None)
    payload["load_end"] = load_now()
    path = write_json(payload, args.out)
    print(f"load at start {payload['load_start']['load1']}, at end {payload['load_end']['load1']}; "
          f"scheduler {args.scheduler}, scratch {args.scratch}, chunks {args.chunk_px} px; wrote {path}")
    return payload


if __name__ == "__main__":
    main()
