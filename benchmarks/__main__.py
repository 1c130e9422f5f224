"""``python -m benchmarks [SUITE …] [options]`` — run the suite without asv.

Examples::

    python -m benchmarks                      # every suite (describe, stages)
    python -m benchmarks describe             # the acceptance benchmark only
    python -m benchmarks describe --repeat 5 --only serial numpy
    python -m benchmarks stages --shape 2000x3000
    python -m benchmarks compare results/a.json results/b.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from . import common


def _shape(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape: expected HxW such as 4478x5972, got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"--shape: both sides must be >= 16 px, got {text!r}")
    return h, w


def _radius(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--radius-px: expected LO,HI such as 250,330, got {text!r}") from None
    return lo, hi


def compare_runs(a: Path, b: Path) -> str:
    """Median times of two results files side by side, with the ratio b/a per benchmark
    (and the within-run ratios of each file, the numbers to compare across machines)."""
    ra, rb = (json.loads(Path(p).read_text()) for p in (a, b))

    def medians(r):
        return {f"{s['suite']}.{s['class']}.{n}": t.get("median_s")
                for s in r["suites"] for n, t in s.get("timings", {}).items()}

    def ratios(r):
        return {f"{s['suite']}.{s['class']}: {k}": v for s in r["suites"] for k, v in s.get("ratios", {}).items()}

    ma, mb = medians(ra), medians(rb)

    def head(tag, path, r):
        c = r.get("config", {})
        return (f"{tag} = {path} ({r['machine']['cpu_model']}, load {r['load_start']['load1']}, "
                f"map {c.get('source')} {c.get('shape')} seed {c.get('seed')}, {r['versions'].get('git_commit')})")

    lines = [head("A", a, ra), head("B", b, rb)]
    if ra.get("config", {}).get("source") != rb.get("config", {}).get("source") or \
            ra.get("config", {}).get("shape") != rb.get("config", {}).get("shape"):
        lines.append("note: the two runs used different input maps; compare their within-run ratios only")
    lines += [
             f"{'benchmark':60s} {'A s':>9s} {'B s':>9s} {'B/A':>7s}"]
    for k in sorted(set(ma) | set(mb)):
        x, y = ma.get(k), mb.get(k)
        q = f"{y / x:7.2f}" if x and y else "      —"
        lines.append(f"{k:60s} {common._fmt(x):>9s} {common._fmt(y):>9s} {q}")
    qa, qb = ratios(ra), ratios(rb)
    lines.append(f"{'within-run ratio':60s} {'A':>9s} {'B':>9s}")
    for k in sorted(set(qa) | set(qb)):
        lines.append(f"{k:60s} {common._fmt(qa.get(k), '.2f'):>9s} {common._fmt(qb.get(k), '.2f'):>9s}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        p = argparse.ArgumentParser(prog="python -m benchmarks compare")
        p.add_argument("a", type=Path)
        p.add_argument("b", type=Path)
        args = p.parse_args(argv[1:])
        print(compare_runs(args.a, args.b))
        return 0
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the cathodeflow benchmarks (asv-style classes) and write results/<name>-<time>.json.",
    )
    p.add_argument("suites", nargs="*", help="suite names (bench_<name>.py; name.Class for one class); default: all")
    p.add_argument("--repeat", type=int, help="timed repeats per benchmark (default: each class's own, 3)")
    p.add_argument("--shape", type=_shape, default=common.config.shape, help="phase map HxW (default 4478x5972)")
    p.add_argument("--source", choices=("discs", "synth"), default="discs", help="phase map builder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--radius-px", type=_radius, help="particle radius range LO,HI in px (default 250,330)")
    p.add_argument("--chunk-px", type=int, default=common.config.chunk_px, help="chunk edge of the tiled variants")
    p.add_argument("--workers", type=int, default=common.config.n_workers, help="LocalCluster worker processes")
    p.add_argument("--only", nargs="+", metavar="SUBSTR", help="time only methods whose name contains one of these")
    p.add_argument("--out", type=Path, default=common.RESULTS_DIR, help="folder of the results JSON")
    p.add_argument("--no-json", action="store_true", help="print only, write no results file")
    p.add_argument("--cold-numba", action="store_true",
                   help="compile numba kernels afresh (empty NUMBA_CACHE_DIR), so first-call times include compilation")
    p.add_argument("--list", action="store_true", help="list suites and benchmarks, run nothing")
    args = p.parse_args(argv)

    if args.cold_numba:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-numba-")
    if args.list:
        for name in common.discover(args.suites):
            for cls in common.classes_of(name):
                print(f"{name}.{cls.__name__}: " + ", ".join(n for n in dir(cls) if n.startswith(("time_", "track_"))))
        return 0
    common.config.shape = args.shape
    common.config.source = args.source
    common.config.seed = args.seed
    common.config.radius_px = args.radius_px
    common.config.chunk_px = args.chunk_px
    common.config.n_workers = args.workers
    common.config.repeat = args.repeat
    common.config.variants = tuple(args.only) if args.only else None
    payload = common.run_suites(args.suites or None, log=lambda s: print(s, flush=True))
    payload["cold_numba"] = bool(args.cold_numba)
    print()
    print(common.format_report(payload))
    if not args.no_json:
        path = common.write_json(payload, args.out)
        print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
