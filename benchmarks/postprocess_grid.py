"""What ``run`` does between the U-net's Ŷ and the phase map, scored over a grid of settings.

``python -m benchmarks.postprocess_grid [--weights W] [--images N]``

``run`` turns Ŷ into a phase map in three steps that are not in the paper: Ŷ smoothed by σ
(``prob_sigma_um``), eq. 7 with hysteresis (``crack_threshold_low``), crack components up to an
area dropped (``min_crack_area_um2``). This benchmark renders the scenes of
``segmentation_quality`` (same seeds, the paper's geometry) in all eight style families, runs the
U-net once per scene on the SR stage's output and on the true high-res image, and scores every
combination of σ (px), t_low and the smallest area kept (px) against the generator's truth:
crack IoU (median over scenes) and λ and ρ (eq. 11–12) pooled per family, as ratios to the truth.

The settings are ranked by a criterion fixed before the first run and computed on the
*training* style families only (both inputs): the mean of (1 − crack IoU) + |ln(λ/λ_true)| +
|ln(ρ/ρ_true)|. The held-out families (``FAMILIES_HELD_OUT``) are printed beside it, never used
to rank. Writes ``benchmarks/results/postprocess-grid-<time>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

SEED = 424242  # segmentation_quality's scenes
SIGMAS_PX = (0.0, 1.0, 1.5, 2.0)
T_LOWS = (None, 0.6, 0.5, 0.4, 0.3)
MIN_AREAS_PX = (0, 20, 40, 80)


def _scene(args):
    """Scores of every setting on one scene: {(source, σ, t_low, area): counts}, plus the truth."""
    weights, fam, i, shape_lr, geometry, grid = args
    from cathodeflow.config import Params
    from cathodeflow.measure.image import describe_phase
    from cathodeflow.stages.phases import phase_from_probabilities
    from cathodeflow.stages.superres import superres_baseline
    from cathodeflow.stages.unet import UNetSetup, unet_probabilities
    from cathodeflow.synth.training import make_training_pair

    t = UNetSetup.from_weights(weights).crack_threshold
    pair = make_training_pair([SEED, i], family=fam, shape_lr=shape_lr, geometry=geometry)
    eta, truth, params = pair.pixel_size_hr_um, pair.phase, Params()

    def score(pred):
        row = describe_phase(pred, image_id="x", condition="x", pixel_size_um=eta, params=params).image.iloc[0]
        cp, ct = pred == 2, truth == 2
        return (int(np.count_nonzero(cp & ct)), int(np.count_nonzero(cp | ct)), int(row["n_cracks"]),
                int(row["crack_px"]), int(row["solid_px"] + row["crack_px"]))

    out = {("truth",): score(truth)}
    for src, image in (("sr", superres_baseline(pair.lr)), ("hr", pair.hr)):
        prob = unet_probabilities(image, weights=weights)
        for sigma, t_low, area in grid:
            pred = phase_from_probabilities(prob, t, t_low=t_low, sigma_px=sigma, min_crack_px=area)
            out[(src, sigma, t_low, area)] = score(pred)
    return fam, out


def family_scores(rows: list, truth: list) -> tuple[float, float, float]:
    """(median crack IoU, λ / λ_true, ρ / ρ_true) of one family's scenes (λ, ρ pooled)."""
    iou = float(np.median([r[0] / r[1] if r[1] else 0.0 for r in rows]))
    area, t_area = sum(r[4] for r in rows), sum(r[4] for r in truth)
    lam = (sum(r[2] for r in rows) / area) / (sum(r[2] for r in truth) / t_area)
    rho = (sum(r[3] for r in rows) / area) / (sum(r[3] for r in truth) / t_area)
    return iou, max(lam, 1e-3), max(rho, 1e-3)


def criterion(scores: list) -> float:
    """Mean of (1 − IoU) + |ln λ ratio| + |ln ρ ratio| over (family, input) scores."""
    return float(np.mean([(1 - i) + abs(np.log(lam)) + abs(np.log(rho)) for i, lam, rho in scores]))


def rank(per_scene: list, grid, held_out) -> list[dict]:
    by: dict = {}
    for fam, out in per_scene:
        for key, v in out.items():
            by.setdefault(fam, {}).setdefault(key, []).append(v)
    rows = []
    for sigma, t_low, area in grid:
        entry = {"sigma_px": sigma, "t_low": t_low, "min_crack_px": area}
        train = []
        for src in ("sr", "hr"):
            for fam, d in by.items():
                s = family_scores(d[(src, sigma, t_low, area)], d[("truth",)])
                entry[f"{fam}/{src}"] = {"crack_iou": s[0], "lambda_ratio": s[1], "rho_ratio": s[2]}
                if fam not in held_out:
                    train.append(s)
        entry["criterion_train"] = criterion(train)
        entry["train_both_aims"] = sum(i >= 0.6 and abs(lam - 1) <= 0.25 for i, lam, _ in train)
        rows.append(entry)
    return sorted(rows, key=lambda e: e["criterion_train"])


def format_rows(rows, families, held_out, top: int, current) -> str:
    lines = [f"{'σ px':>5s} {'t_low':>5s} {'area':>5s} {'crit':>6s} {'aims':>5s}  "
             + "  ".join(f"{f[:11]:>11s}/{s}" for s in ("sr", "hr") for f in families if f in held_out)
             + "   (crack IoU, λ ratio, ρ ratio)"]
    shown = rows[:top] + [e for e in rows[top:] if (e["sigma_px"], e["t_low"], e["min_crack_px"]) == current]
    for e in shown:
        tag = " <- run's defaults" if (e["sigma_px"], e["t_low"], e["min_crack_px"]) == current else ""
        cells = "  ".join("{:.2f},{:.2f},{:.2f}".format(*(e[f"{f}/{s}"][k] for k in ("crack_iou", "lambda_ratio",
                                                                                     "rho_ratio")))
                          for s in ("sr", "hr") for f in families if f in held_out)
        lines.append(f"{e['sigma_px']:5.1f} {str(e['t_low']):>5s} {e['min_crack_px']:5d} {e['criterion_train']:6.3f} "
                     f"{e['train_both_aims']:3d}/{2 * (len(families) - len(held_out))}  {cells}{tag}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from cathodeflow.config import (DEFAULT_CRACK_THRESHOLD_LOW, DEFAULT_MIN_CRACK_AREA_UM2, DEFAULT_PROB_SIGMA_UM,
                                    ETA_UM)
    from cathodeflow.models.registry import DEFAULT_UNET
    from cathodeflow.stages.unet import UNetSetup, min_crack_px
    from cathodeflow.synth.training import FAMILIES_HELD_OUT, FAMILIES_TRAIN

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=DEFAULT_UNET)
    p.add_argument("--images", type=int, default=3, help="scenes per family (default 3)")
    p.add_argument("--shape-lr", default="572x780", help="low-res shape HxW, multiples of 13")
    p.add_argument("--geometry", default="classic")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--top", type=int, default=12, help="rows printed (default 12)")
    p.add_argument("--no-json", action="store_true")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape_lr.lower().split("x"))
    families = tuple(FAMILIES_HELD_OUT) + tuple(FAMILIES_TRAIN)
    grid = [(s, tl, a) for s in SIGMAS_PX for tl in T_LOWS for a in MIN_AREAS_PX]
    t = UNetSetup.from_weights(args.weights).crack_threshold
    current = (round(DEFAULT_PROB_SIGMA_UM / ETA_UM, 6), DEFAULT_CRACK_THRESHOLD_LOW if DEFAULT_CRACK_THRESHOLD_LOW < t
               else None, min_crack_px(DEFAULT_MIN_CRACK_AREA_UM2, ETA_UM))
    if current not in grid:
        grid.append(current)
    jobs = [(args.weights, fam, i, shape, args.geometry, grid) for fam in families for i in range(args.images)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.processes) as pool:
        per_scene = list(pool.map(_scene, jobs))
    rows = rank(per_scene, grid, FAMILIES_HELD_OUT)
    print(f"weights {args.weights} (t = {t:.3f}); ranked on the training families' criterion; "
          f"held-out families shown, not used ({time.perf_counter() - t0:.0f} s)")
    print(format_rows(rows, families, FAMILIES_HELD_OUT, args.top, current))
    if not args.no_json:
        from benchmarks.common import write_stamped

        path = write_stamped("postprocess-grid", {
            "weights": args.weights, "weights_sha256": UNetSetup.from_weights(args.weights).sha256,
            "crack_threshold": t, "images_per_family": args.images, "shape_lr": shape, "geometry": args.geometry,
            "families_held_out": list(FAMILIES_HELD_OUT), "criterion": "mean over training families and both "
            "inputs of (1 - crack IoU) + |ln lambda ratio| + |ln rho ratio|", "defaults": list(current),
            "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
        })
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
