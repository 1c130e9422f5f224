"""``cathodeflow.describe`` on a paper-size phase map against the plain serial script.

The acceptance benchmark of the "bring your own segmentation" issue: the same 4478 × 5972
phase map (26.7 MP, η = 14.3 nm) through

- ``serial_reference`` — the literal paper chain with scipy/scikit-image, one process
  (:mod:`benchmarks.serial_reference`);
- ``describe_numpy`` — ``cathodeflow.describe(phase, pixel_size_um=0.0143)``, the
  whole-image numpy path in this process;
- ``describe_tiled_threads`` — the tiled path, ``chunk_px=2048``, Dask's threaded scheduler;
- ``describe_tiled_local`` — the tiled path on a ``distributed.LocalCluster`` of 2
  single-threaded worker processes (started once in ``setup``; its start-up time is reported
  apart from the compute time),

timed side by side (interleaved repeats), and their tables compared row by row.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
from scipy.spatial import cKDTree

from cathodeflow.config import Params

from .common import compare_tables, config, describe_comparison
from .phasemaps import load_phase_map, map_summary
from .serial_reference import serial_describe

CONDITION = "bench"
#: Parameters of the tiled variants: every map of several chunks tiled, whatever its size
#: (``describe`` would describe a paper-size map in one task).
TILED = Params(whole_image_px=0)


def bench_phase() -> np.ndarray:
    """The phase map of the current :data:`benchmarks.common.config`."""
    return load_phase_map(config.shape, config.source, config.seed,
                          None if config.radius_px is None else tuple(config.radius_px))


def particle_pixel_differences(ref: np.ndarray, ours: np.ndarray) -> dict:
    """Pixels of B labelled differently by two canonical particle labelings; how many of
    them lie on the boundary between the two particles involved (a 4-neighbour carries the
    other labeling's id in the reference), i.e. are watershed ties."""
    diff = ref != ours
    n = int(diff.sum())
    b = int((ref > 0).sum())
    out = {"pixels": n, "fraction_of_B": n / b if b else 0.0, "on_shared_boundary": 0}
    if n:
        ys, xs = np.nonzero(diff)
        want = ours[ys, xs]
        H, W = ref.shape
        hit = np.zeros(n, bool)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            y, x = ys + dy, xs + dx
            ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
            hit[ok] |= ref[y[ok], x[ok]] == want[ok]
        out["on_shared_boundary"] = int(hit.sum())
    return out


def crack_pixel_differences(phase: np.ndarray, ref_labels: np.ndarray, ref_skeleton: np.ndarray, ours) -> dict:
    """Crack pixels given to different curves by the serial chain (scipy's EDT indices) and
    by ``crack_labels`` (``ours``, a CrackResult); how many of them are equidistant ties
    (both curves hold a skeleton pixel at the same smallest distance)."""
    crack = phase == 2
    skel_ours = np.zeros(phase.shape, bool)
    if len(ours.skeleton.rc):
        skel_ours[ours.skeleton.rc[:, 0], ours.skeleton.rc[:, 1]] = True
    diff = crack & (ref_labels != ours.labels)
    n = int(diff.sum())
    out = {
        "skeleton_identical": bool(np.array_equal(skel_ours, ref_skeleton)),
        "pixels": n,
        "fraction_of_crack_pixels": n / max(int(crack.sum()), 1),
        "equidistant_ties": 0,
    }
    if n:
        pts = np.column_stack(np.nonzero(diff))
        tree = cKDTree(ours.skeleton.rc)
        k = min(32, len(ours.skeleton.rc))
        d, idx = tree.query(pts, k=k)
        d, idx = np.atleast_2d(d), np.atleast_2d(idx)
        d2 = np.rint(d**2)
        ids = ours.skeleton.crack_id[idx]
        tied = d2 == d2[:, :1]
        a = ref_labels[pts[:, 0], pts[:, 1]]
        o = ours.labels[pts[:, 0], pts[:, 1]]
        ok = np.array([(ai in ids[i][tied[i]]) and (oi in ids[i][tied[i]]) for i, (ai, oi) in enumerate(zip(a, o))])
        out["equidistant_ties"] = int(ok.sum())
    return out


class Describe:
    """describe() on a 4478 × 5972 phase map vs the plain serial scikit-image script."""

    repeat = 3
    timeout = 3600
    ratios = {
        "serial / describe numpy": ("time_serial_reference", "time_describe_numpy"),
        "serial / describe tiled threads": ("time_serial_reference", "time_describe_tiled_threads"),
        "serial / describe tiled LocalCluster": ("time_serial_reference", "time_describe_tiled_local"),
    }
    goals = {label: 10.0 for label in ratios}

    def setup(self):
        self.phase = bench_phase()
        self.out = {}
        self.serial = None
        self.client = None
        self.cluster_startup_s = None
        self._stack = contextlib.ExitStack()
        if config.variants is None or any(v in "time_describe_tiled_local" for v in config.variants):
            from cathodeflow.study.cluster import local_cluster

            t0 = time.perf_counter()
            self.client = self._stack.enter_context(local_cluster(config.n_workers))
            self.client.wait_for_workers(config.n_workers)
            self.cluster_startup_s = time.perf_counter() - t0

    def teardown(self):
        self._stack.close()

    def _describe(self, **kw):
        import cathodeflow

        return cathodeflow.describe(self.phase, pixel_size_um=config.pixel_size_um, condition=CONDITION, **kw)

    def time_serial_reference(self):
        self.serial = serial_describe(self.phase, pixel_size_um=config.pixel_size_um, condition=CONDITION)

    time_serial_reference.warmup = False  # nothing to compile: every call counts

    def time_describe_numpy(self):
        self.out["numpy"] = self._describe()

    def time_describe_tiled_threads(self):
        self.out["tiled_threads"] = self._describe(chunk_px=config.chunk_px, scheduler="threads", params=TILED)

    def time_describe_tiled_local(self):
        self.out["tiled_local"] = self._describe(chunk_px=config.chunk_px, scheduler=self.client, params=TILED)

    def track_cluster_startup(self):
        return None if self.cluster_startup_s is None else round(self.cluster_startup_s, 3)

    track_cluster_startup.unit = "seconds"

    def info(self) -> dict:
        from cathodeflow.stages.cracks import crack_labels
        from cathodeflow.stages.particles import particle_labels

        info = {"map": map_summary(self.phase), "cluster_startup_s": self.cluster_startup_s}
        if self.serial is not None:
            ref = self.serial.tables
            info["counts"] = {
                "serial": {"particles": len(ref["particles"]), "cracks": len(ref["cracks"])},
                **{k: {"particles": len(v["particles"]), "cracks": len(v["cracks"])} for k, v in self.out.items()},
            }
            info["counts_identical"] = all(v == info["counts"]["serial"] for v in info["counts"].values())
            info["tables_vs_serial"] = {k: compare_tables(ref, v) for k, v in self.out.items()}
            plab = particle_labels(self.phase)
            info["particle_pixels_vs_serial"] = particle_pixel_differences(self.serial.particle_labels, plab)
            info["crack_pixels_vs_serial"] = crack_pixel_differences(
                self.phase, self.serial.crack_labels, self.serial.skeleton, crack_labels(self.phase)
            )
        if "numpy" in self.out:
            info["tiled_vs_numpy"] = {
                k: compare_tables(self.out["numpy"], v)["all_identical"] for k, v in self.out.items() if k != "numpy"
            }
        return info

    @staticmethod
    def summarize(info: dict) -> list[str]:
        m = info.get("map", {})
        lines = [
            f"  map: {m.get('shape')} ({m.get('megapixels')} MP), crack fraction {m.get('crack_fraction')}, "
            f"{m.get('markers')} markers in {m.get('components_of_B')} components of B "
            f"({m.get('components_with_several_markers')} with ≥2 markers)",
        ]
        if "counts" in info:
            lines.append("  counts (particles, cracks): " + ", ".join(
                f"{k} {v['particles']}/{v['cracks']}" for k, v in info["counts"].items())
                + ("  — identical" if info["counts_identical"] else "  — DIFFER"))
        if info.get("cluster_startup_s") is not None:
            lines.append(f"  LocalCluster start-up (not in the times): {info['cluster_startup_s']:.2f} s")
        shown = {}
        for k, cmp in info.get("tables_vs_serial", {}).items():
            same_as = next((j for j, c in shown.items() if c == cmp), None)
            if cmp["all_identical"]:
                lines.append(f"  tables: describe {k} vs serial — identical")
            elif same_as:
                lines.append(f"  tables: describe {k} vs serial — the same differences as {same_as}")
            else:
                lines.append(f"  tables: describe {k} vs serial — differences:")
                lines.extend(describe_comparison(cmp))
            shown[k] = cmp
        p = info.get("particle_pixels_vs_serial")
        if p:
            lines.append(
                f"  particle labels vs scikit-image watershed: {p['pixels']} px differ "
                f"({p['fraction_of_B']:.2e} of B), {p['on_shared_boundary']} of them on a boundary between the two particles"
            )
        c = info.get("crack_pixels_vs_serial")
        if c:
            lines.append(
                f"  crack labels vs scipy nearest-curve: {c['pixels']} crack px differ "
                f"({c['fraction_of_crack_pixels']:.2e}), {c['equidistant_ties']} of them equidistant ties; "
                f"skeleton identical: {c['skeleton_identical']}"
            )
        for k, same in info.get("tiled_vs_numpy", {}).items():
            lines.append(f"  tables: {k} vs numpy — {'identical' if same else 'DIFFER'}")
        return lines
