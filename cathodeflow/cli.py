"""``cathodeflow`` command line (DESIGN §4.3). Thin: parses arguments, calls study/report.

Every command exits 0 on success, 2 with a one-line reason on bad input (``cathodeflow:
error: …``), and accepts ``--help``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import CathodeflowError, one_line

STAGE_CHOICES = ("sr", "phase", "labels", "tables")


def _common_params(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method parameters (defaults: the paper's values)")
    g.add_argument("--config", type=Path, help="TOML file with a [params] table")
    g.add_argument("--marker-radius-px", type=float, help="r of eq. 10 (default 50)")
    g.add_argument("--min-particle-area-px", type=int, help="leave out smaller particles (default 0)")
    g.add_argument("--min-crack-d-factor", type=float,
                   help="drop cracks with d < factor·η (default 2.5, §2.4.2)")
    g.add_argument("--lambda-pristine", type=float, dest="lambda_pristine_per_um2",
                   help="λ_pristine of eq. 19 in µm⁻² (default 0.145)")
    g.add_argument("--bins", type=str, help="d_center bin edges, comma-separated (default 0,0.1,…,1)")
    g.add_argument("--stereology-model", choices=("paper", "wicksell", "both"),
                   help="stereology model(s) for local porosity (default both)")
    g.add_argument("--chunk-size", type=int, dest="chunk_px", help="tile edge in px for Dask")
    g.add_argument("--scheduler", help="sync | threads | processes | local | tcp://host:port")


def _params(args):
    from .config import load_params

    bins = None
    if getattr(args, "bins", None):
        try:
            bins = tuple(float(x) for x in args.bins.split(","))
        except ValueError:
            raise CathodeflowError(f"--bins: expected comma-separated numbers, got {args.bins!r}") from None
    models = None
    if getattr(args, "stereology_model", None):
        models = ("paper", "wicksell") if args.stereology_model == "both" else (args.stereology_model,)
    return load_params(
        getattr(args, "config", None),
        marker_radius_px=getattr(args, "marker_radius_px", None),
        min_particle_area_px=getattr(args, "min_particle_area_px", None),
        min_crack_d_factor=getattr(args, "min_crack_d_factor", None),
        lambda_pristine_per_um2=getattr(args, "lambda_pristine_per_um2", None),
        bins=bins,
        stereology_models=models,
        chunk_px=getattr(args, "chunk_px", None),
    )


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="cathodeflow",
        description="Crack and particle statistics from SEM cross-sections of Li-ion cathodes "
        "(Furat et al. 2023).",
    )
    parser.add_argument("--version", action="version", version=f"cathodeflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="synthetic study end to end, report at the end")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    p.add_argument("--images-per-condition", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", help="sync | threads | processes | local | tcp://host:port")
    p.add_argument("--phase-method", choices=("unet", "classical"), default="classical",
                   help="phase segmentation: the classical baseline (default) or the shipped U-net")

    p = sub.add_parser("ingest", help="add SEM images to a study store")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--condition", required=True)
    p.add_argument("--pixel-size-um", type=float, help="pixel size in µm when the files lack it")
    p.add_argument("--keep-databar", action="store_true", help="do not crop the microscope's data bar")

    p = sub.add_parser("run", help="run the pipeline on a study store")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--from", dest="from_stage", choices=STAGE_CHOICES)
    p.add_argument("--to", dest="to_stage", choices=STAGE_CHOICES)
    _common_params(p)
    g = p.add_argument_group("phase segmentation (eq. 1, 7)")
    g.add_argument("--phase-method", choices=("unet", "classical"),
                   help="the classical threshold+morphology baseline (default) or the U-net")
    g.add_argument("--weights", dest="unet_weights",
                   help="U-net weights: a registry name or a .weights.h5 file (default: the shipped ones)")
    g.add_argument("--crack-threshold", type=float,
                   help="t of eq. 7 (default: the t calibrated for the weights)")
    g.add_argument("--force", action="store_true",
                   help="resample images whose pixel size is far from the U-net's (refused otherwise)")

    p = sub.add_parser("describe", help="phase maps (0/1/2) → Parquet tables")
    p.add_argument("files", nargs="+", type=Path, help="TIFF, PNG, NPY or Zarr phase maps")
    p.add_argument("--pixel-size-um", type=float, required=True, help="η in µm")
    p.add_argument("--out", type=Path, required=True, help="folder for the Parquet tables")
    p.add_argument("--condition", default="all")
    _common_params(p)

    p = sub.add_parser("report", help="Table 1, figures and HTML from a study store")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("train", help="train the U-net (the SRGAN is not available yet)",
                       description="Train the phase-segmentation U-net (paper §2.3.2) on style-"
                       "randomised synthetic SEM images and/or your own annotated images, or "
                       "fine-tune existing weights; t of eq. 7 is calibrated at the end.")
    p.add_argument("model", choices=("sr", "unet"))
    p.add_argument("--config", type=Path,
                   help="TOML with [unet] (architecture) and [training] tables; default: the paper's")
    p.add_argument("--out", type=Path, default=Path("unet-training"), help="output folder")
    p.add_argument("--name", default="unet", help="file name stem of the weights (default unet)")
    p.add_argument("--annotated", nargs=2, action="append", metavar=("IMAGE", "PHASE"), default=[],
                   help="an annotated image and its phase map (0/1/2); repeat for more")
    p.add_argument("--init", dest="init_weights", help="weights to fine-tune (registry name or file)")
    p.add_argument("--max-steps", type=int, help="override training.max_steps")

    p = sub.add_parser("calibrate", help="choose t of eq. 7 on annotated images (maximal accuracy)",
                       description="Calibrates the crack threshold t of eq. 7 for U-net weights "
                       "against annotated images and stores it with the weights.")
    p.add_argument("--weights", required=True, help="a .weights.h5 file (its sidecar .json is updated)")
    p.add_argument("--annotated", nargs=2, action="append", metavar=("IMAGE", "PHASE"), required=True,
                   help="an annotated image and its phase map (0/1/2); repeat for more")
    p.add_argument("--dry-run", action="store_true", help="print t without storing it")
    return parser


def main(argv=None) -> int:
    # TensorFlow's C++ start-up lines on stderr are noise to a user (errors stay one line);
    # set before any worker process starts, which inherits it. A user's own value wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(_dispatch(args) or 0)
    except CathodeflowError as e:
        print(f"cathodeflow: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cathodeflow: interrupted; completed stages are kept, the rest resumes on the next run",
              file=sys.stderr)
        return 130


def _dispatch(args):
    cmd = args.command
    if cmd == "demo":
        from .study.demo import run_demo

        t0 = time.perf_counter()
        from .config import Params

        out = run_demo(args.out, n_images=args.images_per_condition, seed=args.seed,
                       scheduler=args.scheduler, params=Params(phase_method=args.phase_method))
        print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {out}")
    elif cmd == "ingest":
        from .study.pipeline import ingest

        ids = ingest(args.files, store=args.store, condition=args.condition,
                     pixel_size_um=args.pixel_size_um, crop_databar=not args.keep_databar)
        print(f"ingested {len(ids)} image(s) into {args.store}: {', '.join(ids)}")
    elif cmd == "run":
        from .study.pipeline import run_study

        params = _params(args).replace(phase_method=args.phase_method, unet_weights=args.unet_weights,
                                       crack_threshold=args.crack_threshold)
        if args.force and params.phase_method != "unet":
            raise CathodeflowError("--force applies to --phase-method unet (it lets the U-net resample "
                                   "images of a far pixel size)")
        run_study(args.store, params=params, scheduler=args.scheduler, from_stage=args.from_stage,
                  to_stage=args.to_stage, progress=True, force_pixel_size=args.force)
    elif cmd == "describe":
        from .io.tables import write_tables
        from .measure.describe import describe

        params = _params(args)
        if args.out.exists() and not args.out.is_dir():  # fail before the work, not after
            raise CathodeflowError(f"--out {args.out}: exists and is not a folder")
        tables = describe([str(f) for f in args.files], pixel_size_um=args.pixel_size_um,
                          condition=args.condition, params=params, scheduler=args.scheduler,
                          chunk_px=args.chunk_px, progress=sys.stderr.isatty())
        try:
            paths = write_tables(tables, args.out)
        except OSError as e:
            raise CathodeflowError(f"--out {args.out}: cannot write the tables ({e})") from None
        for name, path in paths.items():
            print(f"{name:15s} {len(tables[name]):7d} rows  {path}")
    elif cmd == "report":
        from .study.pipeline import report_study

        out = report_study(args.store, args.out)
        print(f"report: {out}")
    elif cmd == "train":
        if args.model == "sr":
            raise CathodeflowError(
                "train sr: the SRGAN is not available in this version; the sr stage is a cubic "
                "interpolation by 35/13 (baseline)"
            )
        from .study.train_unet import load_train_config, train_unet

        cfg = load_train_config(args.config, max_steps=args.max_steps)
        path = train_unet(cfg, out_dir=args.out, name=args.name, annotated=args.annotated,
                          init_weights=args.init_weights, log=lambda m: print(m, file=sys.stderr, flush=True))
        print(f"weights: {path}")
    elif cmd == "calibrate":
        from .study.train_unet import calibrate_files

        cal = calibrate_files(args.weights, args.annotated, write=not args.dry_run)
        where = "not stored (--dry-run)" if args.dry_run else f"stored with {args.weights}"
        print(f"t = {cal.t:.4f}: pixel accuracy {cal.accuracy:.4f} ({cal.accuracy_at_half:.4f} at t = 0.5) "
              f"on {cal.n_pixels} annotated pixels; {where}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
