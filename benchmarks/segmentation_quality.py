"""Phase-segmentation quality on synthetic style families left out of training.

``python -m benchmarks.segmentation_quality [--images N] [--shape-lr HxW] [--weights W]``

For every held-out style family (:data:`cathodeflow.synth.training.FAMILIES_HELD_OUT`, never
seen in training or early stopping) and, for reference, the training families, N scenes with
seeds no training run uses are rendered, and three segmentations are scored against the
generator's phase truth on the 14.3 nm grid:

(a) ``classical``: the classical baseline on the SR stage's output of the low-res image
(``classical-hr``: on the true high-res image, what ``run --sr-method none`` does with an image
acquired at 14.3 nm);
(b) ``unet-sr``: the U-net on the SR stage's output (today a bicubic-type interpolation ×35/13);
(c) ``unet-hr``: the U-net on the true high-res image;
with ``--sr-weights W`` also (b') ``unet-srgan`` and ``classical-srgan``: the same on the SRGAN's
output (the paper's Fig. 2 comparison: bicubic → U-net, SRGAN → U-net, true high-res → U-net),
and the SR quality itself: PSNR and SSIM of the bicubic-type baseline and of the SRGAN against
the true high-res image (both normalised with the low-res image's 0.5/99.5 percentiles, data
range 1, a 16-px border left out);
(b) and (c) with what ``run`` does to Ŷ: smoothed by σ
(:attr:`cathodeflow.config.Params.prob_sigma_um`), then eq. 7 with hysteresis
(:attr:`~cathodeflow.config.Params.crack_threshold_low`), then the smallest crack components
dropped (:attr:`~cathodeflow.config.Params.min_crack_area_um2`); ``-eq7``: eq. 7 alone, as in
the paper.

Metrics per image (then the median over images, and λ/ρ pooled per family):

* pixel accuracy; crack IoU (S = 2);
* crack-component recall: share of the true crack components (8-connected components of the
  true S = 2) of which at least half the pixels are predicted crack;
* KS distance (two-sample Kolmogorov–Smirnov statistic) between the measured and the true
  distributions of crack width b (eq. 16) and crack size d (eq. 13), kept cracks, pooled over
  the family's images;
* λ and ρ ratio to the truth: eq. 11–12 of the measured map over those of the true map,
  pooled over the family's images;
* particles matched: share of the true particles (the generator's labels) that have a
  measured particle (eq. 8–10 on the measured map, or with ``--marker-h-um`` the h-maxima
  markers) with IoU ≥ 0.5.

Writes ``benchmarks/results/segmentation-quality-<time>.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from cathodeflow.config import DEFAULT_CRACK_THRESHOLD_LOW, DEFAULT_MIN_CRACK_AREA_UM2, DEFAULT_PROB_SIGMA_UM

METHODS = ("classical", "classical-hr", "unet-sr-eq7", "unet-sr", "unet-hr-eq7", "unet-hr")
SRGAN_METHODS = ("classical-srgan", "unet-srgan-eq7", "unet-srgan")
SR_BORDER_PX = 16


def sr_scores(sr: np.ndarray, hr: np.ndarray, lr: np.ndarray) -> dict:
    """PSNR (dB) and SSIM of a super-resolved image against the true high-res image, both
    normalised with the low-res image's 0.5/99.5 percentiles (data range 1), on their common
    area less a border of :data:`SR_BORDER_PX`."""
    from skimage.metrics import structural_similarity

    from cathodeflow.models.normalise import intensity_range

    lo, hi = intensity_range(lr, q=(0.5, 99.5))
    h, w = min(sr.shape[0], hr.shape[0]), min(sr.shape[1], hr.shape[1])
    b = SR_BORDER_PX
    a = (np.asarray(sr, np.float64)[b:h - b, b:w - b] - lo) / (hi - lo)
    t = (np.asarray(hr, np.float64)[b:h - b, b:w - b] - lo) / (hi - lo)
    mse = float(np.mean((a - t) ** 2))
    return {"psnr_db": 10 * np.log10(1.0 / mse), "ssim": float(structural_similarity(a, t, data_range=1.0))}


def crack_component_recall(pred: np.ndarray, truth: np.ndarray) -> float:
    from scipy import ndimage as ndi

    lab, n = ndi.label(truth == 2, structure=np.ones((3, 3)))
    if n == 0:
        return float("nan")
    size = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    hit = np.bincount(lab.ravel(), weights=(pred == 2).ravel(), minlength=n + 1)[1:]
    return float(np.mean(hit >= 0.5 * size))


def particles_matched(pred_lab: np.ndarray, true_lab: np.ndarray) -> float:
    """Share of true particles with a predicted particle of IoU ≥ 0.5 (at most one can)."""
    t = true_lab.ravel().astype(np.int64)
    p = pred_lab.ravel().astype(np.int64)
    nt, np_ = int(t.max()), int(p.max())
    if nt == 0:
        return float("nan")
    st = np.bincount(t, minlength=nt + 1)
    sp = np.bincount(p, minlength=np_ + 1)
    m = (t > 0) & (p > 0)
    key = t[m] * (np_ + 1) + p[m]
    inter = np.bincount(key)
    nz = np.flatnonzero(inter)
    ti, pi = nz // (np_ + 1), nz % (np_ + 1)
    iou = inter[nz] / (st[ti] + sp[pi] - inter[nz])
    ok = np.zeros(nt + 1, bool)
    ok[ti[iou >= 0.5]] = True
    present = st[1:] > 0
    return float(ok[1:][present].mean())


def _ks(a, b) -> float:
    from scipy.stats import ks_2samp

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(ks_2samp(a, b).statistic)


def score_image(pred: np.ndarray, truth_phase: np.ndarray, truth_particles, *, eta: float, params):
    from cathodeflow.measure.image import describe_phase

    d = describe_phase(pred, image_id="x", condition="x", pixel_size_um=eta, params=params, keep_labels=True)
    crack_p, crack_t = pred == 2, truth_phase == 2
    union = np.count_nonzero(crack_p | crack_t)
    row = d.image.iloc[0]
    return {
        "accuracy": float(np.mean(pred == truth_phase)),
        "crack_iou": float(np.count_nonzero(crack_p & crack_t) / union) if union else float("nan"),
        "crack_recall": crack_component_recall(pred, truth_phase),
        "particles_matched": particles_matched(d.particle_labels, truth_particles),
        "crack_px": int(row["crack_px"]), "particle_px": int(row["solid_px"] + row["crack_px"]),
        "n_cracks": int(row["n_cracks"]),
        "widths": d.cracks.loc[d.cracks["kept"], "width_um"].tolist(),
        "sizes": d.cracks.loc[d.cracks["kept"], "d_um"].tolist(),
    }


def evaluate(*, n_images: int, shape_lr, weights, families, geometry: str = "classic", seed: int = 424242,
             sr_weights=None, t_low: float = DEFAULT_CRACK_THRESHOLD_LOW, sigma_um: float = DEFAULT_PROB_SIGMA_UM,
             min_crack_area_um2: float = DEFAULT_MIN_CRACK_AREA_UM2, marker_h_um: float | None = None, log=print):
    from cathodeflow.config import Params
    from cathodeflow.stages.phases import phase_from_probabilities, segment_phases_baseline
    from cathodeflow.stages.superres import superres_baseline
    from cathodeflow.stages.unet import UNetSetup, min_crack_px, unet_probabilities
    from cathodeflow.synth.training import make_training_pair

    params = Params(marker_h_um=marker_h_um)
    setup = UNetSetup.from_weights(weights)
    methods = METHODS + (SRGAN_METHODS if sr_weights is not None else ())
    srcs = ("sr", "hr") + (("srgan",) if sr_weights is not None else ())
    out = {}
    for fam in families:
        per = {m: [] for m in methods + ("truth",)}
        sr_rows = {"bicubic": [], "srgan": []}
        for i in range(n_images):
            t0 = time.perf_counter()
            pair = make_training_pair([seed, i], family=fam, shape_lr=shape_lr, geometry=geometry)
            eta = pair.pixel_size_hr_um
            sr = superres_baseline(pair.lr)
            images = {"sr": sr, "hr": pair.hr}
            sr_rows["bicubic"].append(sr_scores(sr, pair.hr, pair.lr))
            if sr_weights is not None:
                from cathodeflow.stages.srgan import srgan_superres

                images["srgan"] = srgan_superres(pair.lr, weights=sr_weights)[: sr.shape[0], : sr.shape[1]]
                sr_rows["srgan"].append(sr_scores(images["srgan"], pair.hr, pair.lr))
            prob = {src: unet_probabilities(images[src], weights=weights) for src in srcs}
            t = setup.crack_threshold
            preds = {"classical": segment_phases_baseline(sr, pixel_size_um=eta),
                     "classical-hr": segment_phases_baseline(pair.hr, pixel_size_um=eta)}
            if sr_weights is not None:
                preds["classical-srgan"] = segment_phases_baseline(images["srgan"], pixel_size_um=eta)
            for src in srcs:
                preds[f"unet-{src}-eq7"] = phase_from_probabilities(prob[src], t)
                preds[f"unet-{src}"] = phase_from_probabilities(prob[src], t, t_low=t_low, sigma_px=sigma_um / eta,
                                                                min_crack_px=min_crack_px(min_crack_area_um2, eta))
            preds["truth"] = pair.phase
            for m, pred in preds.items():
                per[m].append(score_image(pred, pair.phase, pair.particles, eta=eta, params=params))
            log(f"{fam} image {i}: " + ", ".join(
                f"{m} IoU {per[m][-1]['crack_iou']:.2f}" for m in methods) + f" ({time.perf_counter() - t0:.0f} s)")
        truth = per["truth"]
        t_area = sum(r["particle_px"] for r in truth)
        t_rho = sum(r["crack_px"] for r in truth) / t_area
        t_lam = sum(r["n_cracks"] for r in truth) / t_area
        fam_out = {"truth": {"particles_matched": float(np.nanmedian([r["particles_matched"] for r in truth]))}}
        for name, rows in sr_rows.items():
            if rows:
                fam_out[f"sr-{name}"] = {k: float(np.median([r[k] for r in rows])) for k in ("psnr_db", "ssim")}
        for m in methods:
            rows = per[m]
            area = sum(r["particle_px"] for r in rows)
            fam_out[m] = {
                "accuracy": float(np.median([r["accuracy"] for r in rows])),
                "crack_iou": float(np.median([r["crack_iou"] for r in rows])),
                "crack_recall": float(np.nanmedian([r["crack_recall"] for r in rows])),
                "ks_width": _ks(sum((r["widths"] for r in rows), []), sum((r["widths"] for r in truth), [])),
                "ks_size": _ks(sum((r["sizes"] for r in rows), []), sum((r["sizes"] for r in truth), [])),
                "lambda_ratio": (sum(r["n_cracks"] for r in rows) / area) / t_lam if t_lam else float("nan"),
                "rho_ratio": (sum(r["crack_px"] for r in rows) / area) / t_rho if t_rho else float("nan"),
                "particles_matched": float(np.nanmedian([r["particles_matched"] for r in rows])),
            }
        out[fam] = fam_out
    return out


def format_table(results, held_out) -> str:
    cols = ("psnr_db", "ssim", "accuracy", "crack_iou", "crack_recall", "ks_width", "ks_size", "lambda_ratio",
            "rho_ratio", "particles_matched")
    head = f"{'family':14s} {'method':16s} " + " ".join(f"{c:>12s}" for c in cols)
    lines = [head]
    for fam, res in results.items():
        tag = fam + (" *" if fam in held_out else "")
        for m, r in res.items():
            lines.append(f"{tag:14s} {m:16s} " + " ".join(f"{r[c]:12.3f}" if c in r else f"{'':12s}" for c in cols))
    lines.append("* style family left out of training and early stopping; 'truth': particles of eq. 8-10 on the "
                 "true phase map matched to the generator's particles (the ceiling of that column)")
    return "\n".join(lines)


def main(argv=None) -> int:
    from cathodeflow.models.registry import DEFAULT_UNET
    from cathodeflow.synth.training import FAMILIES_HELD_OUT, FAMILIES_TRAIN

    p = argparse.ArgumentParser(prog="python -m benchmarks.segmentation_quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=3, help="scenes per family (default 3)")
    p.add_argument("--shape-lr", default="572x780", help="low-res shape HxW, multiples of 13 (default: the demo's)")
    p.add_argument("--geometry", default="classic",
                   help="synthetic geometry (cathodeflow.synth.training.GEOMETRIES); default 'classic': the "
                        "paper's particle sizes and the condition presets")
    p.add_argument("--weights", default=DEFAULT_UNET)
    p.add_argument("--sr-weights", default=None,
                   help="SRGAN generator weights: adds SRGAN -> U-net rows and PSNR/SSIM of the SR stages")
    p.add_argument("--t-low", type=float, default=DEFAULT_CRACK_THRESHOLD_LOW,
                   help=f"t_low of the hysteresis (default {DEFAULT_CRACK_THRESHOLD_LOW})")
    p.add_argument("--sigma-um", type=float, default=DEFAULT_PROB_SIGMA_UM,
                   help=f"σ (µm) of the smoothing of Ŷ (default {DEFAULT_PROB_SIGMA_UM})")
    p.add_argument("--min-crack-area-um2", type=float, default=DEFAULT_MIN_CRACK_AREA_UM2,
                   help=f"largest crack component dropped, µm² (default {DEFAULT_MIN_CRACK_AREA_UM2})")
    p.add_argument("--marker-h-um", type=float, default=None,
                   help="h-maxima particle markers (Params.marker_h_um; default unset: eq. 10)")
    p.add_argument("--train-families", action="store_true", help="also score the training families")
    p.add_argument("--no-json", action="store_true")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape_lr.lower().split("x"))
    fams = tuple(FAMILIES_HELD_OUT) + (tuple(FAMILIES_TRAIN) if args.train_families else ())
    t0 = time.perf_counter()
    res = evaluate(n_images=args.images, shape_lr=shape, weights=args.weights, families=fams, geometry=args.geometry,
                   sr_weights=args.sr_weights, t_low=args.t_low, sigma_um=args.sigma_um,
                   min_crack_area_um2=args.min_crack_area_um2, marker_h_um=args.marker_h_um)
    table = format_table(res, FAMILIES_HELD_OUT)
    print(table)
    if not args.no_json:
        from benchmarks.common import write_stamped
        from cathodeflow.stages.unet import UNetSetup

        setup = UNetSetup.from_weights(args.weights)
        path = write_stamped("segmentation-quality", {
            "weights": args.weights, "weights_sha256": setup.sha256,
            "sr_weights": args.sr_weights,
            "crack_threshold": setup.crack_threshold, "crack_threshold_low": args.t_low, "prob_sigma_um": args.sigma_um,
            "min_crack_area_um2": args.min_crack_area_um2, "marker_h_um": args.marker_h_um,
            "images_per_family": args.images, "shape_lr": shape, "geometry": args.geometry,
            "families_held_out": list(FAMILIES_HELD_OUT), "results": res,
            "seconds": round(time.perf_counter() - t0, 1),
        })
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
