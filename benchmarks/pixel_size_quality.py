"""The classical phase segmentation on images of other pixel sizes: resampled to 14.3 nm or not.

``python -m benchmarks.pixel_size_quality [--images N]``

The classical method's options in pixels (smoothing, the dark-line test's segments, the
smallest objects and cracks kept) were chosen at η = 14.3 nm. ``run`` resamples a phase-stage
input of another pixel size onto the η grid first (:mod:`cathodeflow.stages.resample`). This
benchmark scores that against segmenting the image on its own grid (the options then mean
other physical sizes), on scenes of every style family (``make_training_pair``, the paper's
geometry, seeds no other benchmark uses) made at other pixel sizes from the generator's
14.3 nm render:

* finer (η/2, η/3): the render interpolated linearly onto the finer pixel centres (a stand-in
  for a finer acquisition: no detail beyond η, noise correlated over the factor);
* coarser (1.6 η, 2.5 η): the render resampled as ``run`` would (Gaussian σ = s/2, linear), as
  if the detector integrated over the larger pixel.

Scores against the generator's truth: crack IoU on the grid the map is on (the truth sampled
at the nearest pixel), λ and ρ (eq. 11–12 of :func:`~cathodeflow.measure.image.describe_phase`)
as ratios to those of the true 14.3 nm map, particles matched (IoU ≥ 0.5). Per variant: the
median crack IoU, the mean |ln λ ratio| and |ln ρ ratio| over scenes (0 = the truth; a
map with no crack gives ∞), the median particles matched. Writes
``benchmarks/results/pixel-size-quality-<time>.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

SEED = 777
FINER = (2, 3)
COARSER = (1.6, 2.5)


def _interpolate(a: np.ndarray, factor: int, order: int) -> np.ndarray:
    from scipy import ndimage as ndi

    H, W = a.shape
    ys = (np.arange(H * factor) + 0.5) / factor - 0.5
    xs = (np.arange(W * factor) + 0.5) / factor - 0.5
    return ndi.map_coordinates(a.astype(np.float32), np.meshgrid(ys, xs, indexing="ij"), order=order, mode="nearest")


def _nearest(a: np.ndarray, shape) -> np.ndarray:
    yy = np.clip(((np.arange(shape[0]) + 0.5) * a.shape[0] / shape[0]).astype(int), 0, a.shape[0] - 1)
    xx = np.clip(((np.arange(shape[1]) + 0.5) * a.shape[1] / shape[1]).astype(int), 0, a.shape[1] - 1)
    return a[np.ix_(yy, xx)]


def _scene(args):
    fam, i, shape_lr = args
    import dask.array as da

    from cathodeflow.config import Params
    from cathodeflow.measure.image import describe_phase
    from cathodeflow.stages.phases import segment_phases_baseline
    from cathodeflow.stages.resample import resample_dask
    from cathodeflow.synth.training import make_training_pair

    from .segmentation_quality import particles_matched

    params = Params()
    pair = make_training_pair([SEED, i], family=fam, shape_lr=shape_lr, geometry="classic")
    eta = pair.pixel_size_hr_um

    def resample(img, p_in, p_out):
        return resample_dask(da.from_array(img, chunks=2048), p_in, p_out).compute()

    def score(pred, truth, particles, px):
        d = describe_phase(pred, image_id="x", condition="x", pixel_size_um=px, params=params, keep_labels=True)
        row = d.image.iloc[0]
        cp, ct = pred == 2, truth == 2
        union = np.count_nonzero(cp | ct)
        area = int(row["solid_px"] + row["crack_px"])
        return {"crack_iou": float(np.count_nonzero(cp & ct) / union) if union else float("nan"),
                "lambda_per_px": int(row["n_cracks"]) / area * px ** -2, "rho": int(row["crack_px"]) / area,
                "particles_matched": particles_matched(d.particle_labels, particles)}

    truth = score(pair.phase, pair.phase, pair.particles, eta)
    out = {}
    for f in FINER + COARSER:
        px = eta / f if f in FINER else eta * f
        if f in FINER:
            image = _interpolate(pair.hr, f, 1)
        else:
            image = resample(pair.hr, eta, px)
        t_own = _nearest(pair.phase, image.shape)
        p_own = _nearest(pair.particles, image.shape)
        out[f"{f:g}x {'finer' if f in FINER else 'coarser'}, own grid"] = score(
            segment_phases_baseline(image, pixel_size_um=px), t_own, p_own, px)
        back = resample(image, px, eta)
        h, w = (min(a, b) for a, b in zip(back.shape, pair.phase.shape))
        out[f"{f:g}x {'finer' if f in FINER else 'coarser'}, resampled to 14.3 nm"] = score(
            segment_phases_baseline(back[:h, :w], pixel_size_um=eta), pair.phase[:h, :w], pair.particles[:h, :w], eta)
    out["14.3 nm (reference)"] = score(segment_phases_baseline(pair.hr, pixel_size_um=eta), pair.phase,
                                       pair.particles, eta)
    return fam, truth, out


def summarise(results) -> dict:
    rows: dict[str, list] = {}
    for _, truth, out in results:
        for k, r in out.items():
            lam = r["lambda_per_px"] / truth["lambda_per_px"]
            rho = r["rho"] / truth["rho"]
            rows.setdefault(k, []).append((r["crack_iou"], abs(math.log(lam)) if lam > 0 else math.inf,
                                           abs(math.log(rho)) if rho > 0 else math.inf, r["particles_matched"]))
    summary = {}
    for k, v in rows.items():
        a = np.array(v, dtype=float)
        summary[k] = {"crack_iou": float(np.nanmedian(a[:, 0])), "abs_ln_lambda_ratio": float(np.mean(a[:, 1])),
                      "abs_ln_rho_ratio": float(np.mean(a[:, 2])), "particles_matched": float(np.nanmedian(a[:, 3])),
                      "scenes": len(v)}
    return summary


def main(argv=None) -> int:
    from cathodeflow.synth.training import FAMILIES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=2, help="scenes per style family (default 2)")
    p.add_argument("--shape-lr", default="286x390", help="low-res shape HxW of the scenes, multiples of 13")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--no-json", action="store_true")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape_lr.lower().split("x"))
    jobs = [(fam, i, shape) for fam in FAMILIES for i in range(args.images)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.processes) as pool:
        results = list(pool.map(_scene, jobs))
    summary = summarise(results)
    print(f"classical phase segmentation, {len(jobs)} scenes ({len(FAMILIES)} families × {args.images}), "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"{'variant':40s} {'crack IoU':>9s} {'|ln λ/λ_t|':>11s} {'|ln ρ/ρ_t|':>11s} {'particles':>9s}")
    for k, r in summary.items():
        print(f"{k:40s} {r['crack_iou']:9.3f} {r['abs_ln_lambda_ratio']:11.3f} {r['abs_ln_rho_ratio']:11.3f} "
              f"{r['particles_matched']:9.2f}")
    if not args.no_json:
        from benchmarks.common import write_stamped

        path = write_stamped("pixel-size-quality", {
            "images_per_family": args.images, "shape_lr": shape, "seed": SEED,
            "families": list(FAMILIES), "summary": summary,
            "per_scene": [{"family": fam, "truth": truth, "variants": out} for fam, truth, out in results],
            "seconds": round(time.perf_counter() - t0, 1),
        })
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
