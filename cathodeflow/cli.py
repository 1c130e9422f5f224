"""``cathodeflow`` command line (DESIGN §4.3). Thin: parses arguments, calls study/report.

Every command exits 0 on success, 2 with a one-line reason on bad input (``cathodeflow:
error: …``), 1 with one such line when the Dask scheduler of ``--scheduler ADDRESS`` is lost
(``run`` resumes on the next call), and accepts ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from .config import (DEFAULT_CRACK_THRESHOLD_LOW, DEFAULT_MIN_CRACK_AREA_UM2, DEFAULT_PROB_SIGMA_UM,
                     SR_AUTO_MAX_PIXEL_UM)
from .errors import CathodeflowError, one_line
from .io.location import store_arg

#: Help of a STORE argument: a folder or an object-store URL (cathodeflow.io.location).
_STORE_HELP = ("study store: a folder, or an fsspec URL such as s3://bucket/study.zarr (credentials and "
               "endpoint from the AWS environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)")

STAGE_CHOICES = ("sr", "phase", "labels", "tables")


def _scheduler_help() -> str:
    from .study.cluster import SCHEDULER_TIMEOUT_S

    return ("where the Dask work runs: sync | threads | processes (= local: a cluster of one worker "
            "process per core on this machine) | tcp://host:port (your cluster's scheduler; refused "
            f"if it does not answer as one within {SCHEDULER_TIMEOUT_S} s). Default: processes for "
            "several images on several cores, threads otherwise")


def _common_params(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method parameters (defaults: the paper's values)")
    g.add_argument("--config", type=Path, help="TOML file with a [params] table")
    g.add_argument("--marker-radius-um", type=float,
                   help="r of eq. 10 in µm (default 0.715 = the paper's 50 px at 0.0143 µm)")
    g.add_argument("--marker-h-um", type=float,
                   help="not in the paper: markers at the h-maxima of D (h in µm, e.g. 0.286 = 20 px at 14.3 nm) "
                        "among D >= r, so touching particles joined by a neck wider than 2r are split (default: "
                        "unset, eq. 10 as written)")
    g.add_argument("--min-particle-area-um2", type=float, help="leave out smaller particles, µm² (default 0)")
    for old in _RENAMED_OPTIONS:  # refused with the name of their replacement
        g.add_argument(old, help=argparse.SUPPRESS)
    g.add_argument("--min-crack-d-factor", type=float,
                   help="drop cracks with d < factor·η (default 2.5, §2.4.2)")
    g.add_argument("--lambda-pristine", type=float, dest="lambda_pristine_per_um2",
                   help="λ_pristine of eq. 19 in µm⁻² (default 0.145)")
    g.add_argument("--bins", type=str, help="d_center bin edges, comma-separated (default 0,0.1,…,1)")
    g.add_argument("--stereology-model", choices=("paper", "wicksell", "both"),
                   help="stereology model(s) for local porosity (default both)")
    g.add_argument("--chunk-size", type=int, dest="chunk_px",
                   help="tile edge in px: describe works on tiles of this edge (images larger than "
                        "--whole-image-px); run stores the stages it writes in chunks of this edge (each "
                        "next stage is tiled on them; default 2048)")
    g.add_argument("--whole-image-px", type=int, metavar="N",
                   help="labels and measurements of an image of at most N px run in one task, whatever "
                        "its chunks (default 33554432 = 2^25: more than a paper-size map; such a task "
                        "peaks near 0.85 GB; the result is the same); 0 tiles every image of several chunks")
    g.add_argument("--tiled-images", choices=("auto", "in-task", "spread"),
                   help="how the labels and measurements of images processed tiled (larger than "
                        "--whole-image-px) run: in-task (each image one task, its tiles one after another; "
                        "the images side by side on the cluster), spread (each image's tiles spread over "
                        "the workers or threads) or auto (default: in-task on a cluster with at least 2 "
                        "such images per worker thread); the result is the same")
    g.add_argument("--scratch-dir", metavar="DIR",
                   help="existing directory for the intermediate arrays of images processed tiled (default: "
                        "the system temp dir, or each worker's own directory for in-task images); to spread "
                        "an image's tiles over a cluster of several machines, a directory every worker mounts "
                        "at the same path (checked before the tiles are spread)")
    g.add_argument("--scheduler", help=_scheduler_help())


#: Options replaced when lengths became µm: old option -> the Params field it was.
_RENAMED_OPTIONS = {"--marker-radius-px": "marker_radius_px", "--min-particle-area-px": "min_particle_area_px"}


def _params(args):
    from .config import RENAMED, load_params

    for opt, key in _RENAMED_OPTIONS.items():
        if getattr(args, key, None) is not None:
            new, conversion = RENAMED[key]
            raise CathodeflowError(f"{opt} was replaced by --{new.replace('_', '-')} ({conversion})")
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
        marker_radius_um=getattr(args, "marker_radius_um", None),
        marker_h_um=getattr(args, "marker_h_um", None),
        min_particle_area_um2=getattr(args, "min_particle_area_um2", None),
        min_crack_d_factor=getattr(args, "min_crack_d_factor", None),
        lambda_pristine_per_um2=getattr(args, "lambda_pristine_per_um2", None),
        bins=bins,
        stereology_models=models,
        chunk_px=getattr(args, "chunk_px", None),
        whole_image_px=getattr(args, "whole_image_px", None),
        tiled_images=getattr(args, "tiled_images", None),
        scratch_dir=getattr(args, "scratch_dir", None),
    )


@contextlib.contextmanager
def _warnings_as_lines():
    """Within (every command): a :class:`~cathodeflow.errors.CathodeflowWarning` (pixel sizes,
    a converted grey scale, a stale store lock) is printed as one ``cathodeflow: warning: …``
    line on stderr (other warnings as Python prints them)."""
    import warnings

    from .errors import CathodeflowWarning

    with warnings.catch_warnings():
        default = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, CathodeflowWarning):
                print(f"cathodeflow: warning: {one_line(message)}", file=sys.stderr, flush=True)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


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
    p.add_argument("--scheduler", help=_scheduler_help())
    p.add_argument("--sr-method", choices=("baseline", "srgan"), default="baseline",
                   help="super-resolution: cubic interpolation (baseline, default) or the shipped SRGAN")
    p.add_argument("--phase-method", choices=("unet", "classical"), default="classical",
                   help="phase segmentation: the classical baseline (default) or the shipped U-net")

    p = sub.add_parser("ingest", help="add SEM images to a study store",
                       description="Add SEM images to a study store (created if missing), all or "
                       "nothing: every file is read and checked before the store is touched.")
    p.add_argument("files", nargs="*", type=Path, help="SEM images (TIFF, PNG, …); not with --manifest")
    p.add_argument("--store", type=store_arg, required=True, help=_STORE_HELP)
    p.add_argument("--condition", help="condition label of the files, e.g. 20C (required without --manifest)")
    p.add_argument("--pixel-size-um", type=float, help="pixel size in µm when the files lack it")
    p.add_argument("--image-id", help="image id of the one file given (default: its name without extension)")
    p.add_argument("--frame-mask", type=Path,
                   help="image of the one file's shape whose non-zero pixels lie outside the imaged field "
                        "(counted in the frame_fraction quality flag)")
    p.add_argument("--manifest", type=Path,
                   help="CSV with columns file, condition[, pixel_size_um][, image_id][, frame_mask], one row "
                   "per image; "
                   "relative paths are relative to the CSV's folder; empty pixel_size_um: from the file")
    p.add_argument("--keep-databar", action="store_true", help="do not crop the microscope's data bar")
    p.add_argument("--mosaic-grid", type=Path, metavar="CSV",
                   help="a mosaic of tile files: CSV with columns file, y_px, x_px (each tile's top-left pixel "
                        "in the mosaic); the tiles must abut exactly and share dtype and pixel size; one image, "
                        "read and stored chunk by chunk (a TIFF over 2^26 px given as FILE is read lazily too)")

    p = sub.add_parser("synth-mosaic", help="write a large synthetic mosaic (phase map or SEM image) into a store",
                       description="Write a square synthetic mosaic, made of a few generated tiles repeated, "
                       "straight into a study store chunk by chunk (never whole in memory): a phase map "
                       "(stage phase, 14.3 nm; `run` describes it) or an SEM image (stage raw, "
                       "38.5 nm). sparse: tiles framed by background; percolating: by solid, so the solid "
                       "phase is one component across the mosaic.")
    p.add_argument("--store", type=store_arg, required=True, help=_STORE_HELP)
    p.add_argument("--megapixels", type=float, required=True, help="size of the square mosaic, MP")
    p.add_argument("--kind", choices=("phase", "sem"), default="phase")
    p.add_argument("--mode", choices=("sparse", "percolating"), default="sparse")
    p.add_argument("--image-id", default="mosaic", help="id of the new image (default mosaic)")
    p.add_argument("--condition", default="20C", help="crack amount of the tiles (20C, 30C, 40C, 50C)")
    p.add_argument("--tiles", type=int, default=4, help="distinct generated tiles (default 4)")
    p.add_argument("--tile-px", type=int, default=390,
                   help="edge of a tile's 38.5 nm image, px, multiple of 13 (default 390; phase tiles ×35/13)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, dest="chunk_px", help="stored chunk edge, px (default 1024)")

    p = sub.add_parser("ls", help="what a study store holds: images, stage status, parameters")
    p.add_argument("store", type=store_arg, metavar="STORE", help=_STORE_HELP)
    p.add_argument("--json", action="store_true", help="print the same as JSON (for scripts)")

    p = sub.add_parser("rm", help="remove images from a study store (and its now stale tables)",
                       description="Remove images (all their stages and per-image tables) from a study "
                       "store; unknown ids are refused before anything is removed. The combined "
                       "tables are deleted: `cathodeflow run --store STORE --from tables` rebuilds them.")
    p.add_argument("store", type=store_arg, metavar="STORE", help=_STORE_HELP)
    p.add_argument("image_ids", nargs="+", metavar="IMAGE", help="image ids, as `cathodeflow ls` lists them")

    p = sub.add_parser("migrate", help="convert a study store of an older layout to the current one, in place",
                       description="Convert a study store of layout version 1 (stages side by side) to "
                       "the current OME-Zarr layout (prob and labels inside sr, root listing), in place: "
                       "groups are moved, metadata rewritten, the version bumped last; an interrupted "
                       "migration is finished by running the command again.")
    p.add_argument("store", type=store_arg, metavar="STORE", help=_STORE_HELP)

    p = sub.add_parser("run", help="run the pipeline on a study store")
    p.add_argument("--store", type=store_arg, required=True, help=_STORE_HELP)
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
    g.add_argument("--crack-threshold-low", type=float,
                   help="t_low of the hysteresis variant of eq. 7: pixels with Ŷ3 ≥ t_low connected to "
                        f"a pixel with Ŷ3 ≥ t are crack too (default {DEFAULT_CRACK_THRESHOLD_LOW:g}; "
                        "1 = eq. 7 alone)")
    g.add_argument("--prob-sigma-um", type=float,
                   help=f"σ (µm) of a Gaussian smoothing of Ŷ before eq. 7 (default {DEFAULT_PROB_SIGMA_UM:g}"
                        "; 0 = none)")
    g.add_argument("--min-crack-area-um2", type=float,
                   help="crack components of at most this area (µm²) in the U-net's phase map become solid "
                        f"or background (default {DEFAULT_MIN_CRACK_AREA_UM2:g}; 0 = none)")
    g.add_argument("--force", action="store_true",
                   help="resample images whose pixel size is far from the U-net's, or super-resolve images "
                        "far from the SRGAN's (refused otherwise)")
    g = p.add_argument_group("super-resolution (×35/13)")
    g.add_argument("--sr-method", choices=("auto", "baseline", "srgan", "none"),
                   help=f"auto (default): per image, none for a raw pixel size of at most "
                        f"{SR_AUTO_MAX_PIXEL_UM * 1000:.1f} nm, else baseline; cubic interpolation (baseline), a "
                        "trained SRGAN generator, or none: the images were acquired at high resolution and "
                        "are segmented as they are")
    g.add_argument("--sr-weights",
                   help="SRGAN generator weights: a .weights.h5 file from `cathodeflow train sr` or a registry "
                        "name (default with --sr-method srgan: the shipped srgan-small-v1)")

    p = sub.add_parser("describe", help="phase maps segmented elsewhere (ilastik, Dragonfly…) → Parquet tables")
    p.add_argument("files", nargs="*", type=Path, help="TIFF, PNG, NPY or Zarr phase maps (or --manifest)")
    p.add_argument("--manifest", type=Path,
                   help="CSV with the columns file, condition, pixel_size_um (empty: --pixel-size-um) and "
                        "image_id (empty: the file name); paths relative to the CSV; replaces FILES and --condition")
    p.add_argument("--pixel-size-um", type=float, help="η in µm (required with FILES)")
    p.add_argument("--out", type=store_arg, required=True,
                   help="folder (or fsspec URL, e.g. s3://bucket/tables) for the Parquet tables")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the tables already in --out (only once the new ones are computed)")
    p.add_argument("--condition", help="the condition of all FILES (default all)")
    p.add_argument("--phase-values", default="0,1,2", metavar="B,S,C",
                   help="the stored values of background, solid, crack (default 0,1,2; ilastik: 1,2,3); "
                        "any other value is refused")
    _common_params(p)

    p = sub.add_parser("report", help="Table 1, figures and HTML from a study store or a describe output")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", type=store_arg, help="a study store, folder or URL (its tables must be current)")
    src.add_argument("--tables", type=store_arg,
                     help="a folder (or URL) of tables: the --out of `cathodeflow describe`, or STORE/tables")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cell-data", type=Path, metavar="CSV",
                   help="per-condition cell metrics (columns condition, capacity_fade_percent, lam_percent, "
                        "...), checked before the report is built")

    p = sub.add_parser("train", help="train the U-net or the SRGAN",
                       description="unet: train the phase-segmentation U-net (paper §2.3.2) on style-"
                       "randomised synthetic SEM images and/or your own annotated images, or "
                       "fine-tune existing weights; t of eq. 7 is calibrated at the end. "
                       "sr: train the SRGAN (paper §2.3.1) on synthetic low/high-resolution pairs.")
    p.add_argument("model", choices=("sr", "unet"))
    p.add_argument("--config", type=Path,
                   help="TOML with [unet] or [srgan] (architecture) and [training] tables; default: the paper's")
    p.add_argument("--out", type=Path, help="output folder (default unet-training or sr-training)")
    p.add_argument("--name", help="file name stem of the weights (default unet or srgan)")
    p.add_argument("--annotated", nargs=2, action="append", metavar=("IMAGE", "PHASE"), default=[],
                   help="an annotated image and its phase map (0/1/2); repeat for more")
    p.add_argument("--init", dest="init_weights", help="weights to fine-tune (registry name or file)")
    p.add_argument("--max-steps", type=int, help="override training.max_steps")
    p.add_argument("--max-seconds", type=float,
                   help="train unet: override training.max_seconds, a wall-clock budget for the training steps "
                        "(the run then ends with a validation check; run again into the same --out to resume)")

    from .stages.register import MIN_CORRELATION

    p = sub.add_parser("pair", help="register a high-resolution SEM image inside its low-resolution one (SRGAN data)",
                       description="Find the HR image's field inside the LR image (normalised cross-"
                       "correlation, scale = LR / HR pixel size refined within ±2 %) and store the aligned "
                       "pair for `train sr` (training.pairs_dir).")
    p.add_argument("low", type=Path, metavar="LOW", help="low-resolution SEM image (e.g. 38.5 nm pixels)")
    p.add_argument("high", type=Path, metavar="HIGH", help="high-resolution SEM image of a region inside LOW's field")
    p.add_argument("--out", type=Path, required=True, help="folder of pairs (created)")
    p.add_argument("--pixel-size-low", type=float, metavar="UM", help="LOW's pixel size in µm (overrides metadata)")
    p.add_argument("--pixel-size-high", type=float, metavar="UM", help="HIGH's pixel size in µm (overrides metadata)")
    p.add_argument("--min-correlation", type=float, metavar="X",
                   help=f"least normalised cross-correlation accepted (default {MIN_CORRELATION})")

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
    # tifffile logs what it cannot parse ("… contains no pages") before our reader raises
    # the one-line error that names the file: its own log lines would add a second line
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _warnings_as_lines():
            return int(_dispatch(args) or 0)
    except CathodeflowError as e:
        print(f"cathodeflow: error: {one_line(e)}", file=sys.stderr)
        return getattr(e, "exit_code", 2)  # 1: the run failed (a lost scheduler), not its input
    except KeyboardInterrupt:
        # Reached within a second or two of Ctrl-C: the Dask workers never see the signal, and
        # leaving the scheduler context stops their work (cathodeflow.study.cluster).
        resumes = "; completed stages are kept, the rest resumes on the next run" if args.command == "run" else ""
        print(f"cathodeflow: interrupted{resumes}", file=sys.stderr, flush=True)
        return 130


def _dispatch(args):
    cmd = args.command
    if cmd == "demo":
        from .config import Params
        from .report.build import report_store
        from .study.demo import run_demo

        t0 = time.perf_counter()
        demo = run_demo(args.out, n_images=args.images_per_condition, seed=args.seed,
                        scheduler=args.scheduler,
                        params=Params(phase_method=args.phase_method, sr_method=args.sr_method))
        out = report_store(demo.store, args.out / "report", truth=demo.truth)
        print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {out}")
    elif cmd == "ingest":
        from .study.pipeline import ingest, ingest_manifest

        if args.manifest is not None:
            given = [o for o, v in (("FILES", args.files), ("--condition", args.condition),
                                    ("--pixel-size-um", args.pixel_size_um), ("--image-id", args.image_id),
                                    ("--frame-mask", args.frame_mask), ("--mosaic-grid", args.mosaic_grid))
                     if v is not None and v != []]
            if given:
                raise CathodeflowError(f"--manifest lists the files and their columns; {', '.join(given)} "
                                       "cannot be given with it")
            ids = ingest_manifest(args.manifest, store=args.store, crop_databar=not args.keep_databar)
        else:
            if args.mosaic_grid is not None:  # a .csv FILE is a tile grid (cathodeflow.io.mosaic)
                if args.mosaic_grid.suffix.lower() != ".csv":
                    raise CathodeflowError(f"--mosaic-grid {args.mosaic_grid}: expected a .csv file (columns file, "
                                           "y_px, x_px)")
                args.files = [*args.files, args.mosaic_grid]
            if not args.files:
                raise CathodeflowError("ingest: no files given; expected FILES… or --manifest CSV")
            if args.condition is None:
                raise CathodeflowError("ingest: --condition is required with FILES (or use --manifest)")
            for opt, val, col in (("--image-id", args.image_id, "image_id"), ("--frame-mask", args.frame_mask, "frame_mask")):
                if val is not None and len(args.files) != 1:
                    raise CathodeflowError(f"{opt} is for one image, but {len(args.files)} files were given; "
                                           f"use --manifest with a {col} column for several")
            ids = ingest(args.files, store=args.store, condition=args.condition,
                         pixel_size_um=args.pixel_size_um, crop_databar=not args.keep_databar,
                         image_ids=None if args.image_id is None else [args.image_id],
                         frame_masks=None if args.frame_mask is None else [args.frame_mask])
        print(f"ingested {len(ids)} image(s) into {args.store}: {', '.join(ids)}")
    elif cmd == "synth-mosaic":
        from .study.pipeline import write_synthetic_mosaic

        iid = write_synthetic_mosaic(args.store, megapixels=args.megapixels, image_id=args.image_id, kind=args.kind,
                                     mode=args.mode, condition=args.condition, n_tiles=args.tiles,
                                     tile_lr_px=args.tile_px, seed=args.seed, chunk_px=args.chunk_px)
        print(f"wrote a {args.megapixels:g} MP {args.mode} synthetic {args.kind} mosaic into {args.store} as {iid}")
    elif cmd == "ls":
        import json

        from .study.inventory import format_summary, summarize_store

        summary = summarize_store(args.store)
        print(json.dumps(summary, indent=1, ensure_ascii=False) if args.json else format_summary(summary))
    elif cmd == "rm":
        from .study.inventory import remove_images

        removed, had_tables = remove_images(args.store, args.image_ids)
        tables = (f"; its combined tables included them and were deleted (rebuild: `cathodeflow run "
                  f"--store {args.store} --from tables`)" if had_tables else "")
        print(f"removed {len(removed)} image(s) from {args.store}: {', '.join(removed)}{tables}")
    elif cmd == "migrate":
        from .io.store import migrate_store

        done = migrate_store(args.store)
        if done["from_version"] == done["to_version"]:
            print(f"{args.store}: already a store of version {done['to_version']} "
                  f"({done['images']} image(s)); nothing to do")
        else:
            again = (f"; marked for recomputation (`cathodeflow run` redoes them): {', '.join(done['recompute'])}"
                     if done["recompute"] else "")
            print(f"migrated {args.store} from store version {done['from_version']} to {done['to_version']}: "
                  f"{done['images']} image(s), {done['moved']} group(s) moved{again}")
    elif cmd == "run":
        from .study.pipeline import run_study

        params = _params(args).replace(phase_method=args.phase_method, unet_weights=args.unet_weights,
                                       crack_threshold=args.crack_threshold,
                                       crack_threshold_low=args.crack_threshold_low,
                                       prob_sigma_um=args.prob_sigma_um,
                                       min_crack_area_um2=args.min_crack_area_um2, sr_method=args.sr_method,
                                       sr_weights=args.sr_weights)
        if args.force and params.phase_method != "unet" and params.sr_method != "srgan":
            raise CathodeflowError("--force applies to --phase-method unet (it lets the U-net resample "
                                   "images of a far pixel size) and --sr-method srgan")
        run_study(args.store, params=params, scheduler=args.scheduler, from_stage=args.from_stage,
                  to_stage=args.to_stage, progress=True, force_pixel_size=args.force)
    elif cmd == "describe":
        from .config import params_record
        from .io.phasefile import check_phase_values
        from .measure.describe import TABLE_NAMES
        from .study.describe import describe

        params = _params(args)
        values = check_phase_values(args.phase_values, name="--phase-values")
        if args.manifest is not None:
            given = [o for o, v in (("FILES", args.files), ("--condition", args.condition)) if v]
            if given:
                raise CathodeflowError(f"--manifest lists the files and their conditions; {', '.join(given)} "
                                       "cannot be given with it")
            phases, sizes, conds = _describe_manifest(args.manifest, pixel_size_um=args.pixel_size_um)
        else:
            if not args.files:
                raise CathodeflowError("describe: no phase maps given; expected FILES… or --manifest CSV")
            if args.pixel_size_um is None:
                raise CathodeflowError("describe: --pixel-size-um is required with FILES (η in µm; phase maps "
                                       "carry no pixel size), or use --manifest with a pixel_size_um column")
            phases, sizes, conds = [str(f) for f in args.files], args.pixel_size_um, args.condition or "all"
        from .io.location import as_path, check_reachable

        args.out = as_path(args.out)  # a URL: a RemotePath (pathlib methods on its filesystem)
        check_reachable(args.out)
        if args.out.exists() and not args.out.is_dir():  # fail before the work, not after
            raise CathodeflowError(f"--out {args.out}: exists and is not a folder")
        held = [n for n in TABLE_NAMES if (args.out / f"{n}.parquet").exists()]
        if held and not args.overwrite:
            raise CathodeflowError(f"--out {args.out}: already holds tables ({', '.join(held)}); pass "
                                   "--overwrite to replace them, or choose another folder")
        tables = describe(phases, pixel_size_um=sizes, condition=conds, params=params,
                          scheduler=args.scheduler, chunk_px=args.chunk_px,
                          progress=sys.stderr.isatty(), phase_values=values)
        record = {**params_record(params, "labels", "tables"), "phase_values": list(values)}
        try:
            paths = _replace_tables(tables, args.out, metadata=record)
        except OSError as e:
            raise CathodeflowError(f"--out {args.out}: cannot write the tables ({e})") from None
        for name, path in paths.items():
            print(f"{name:15s} {len(tables[name]):7d} rows  {path}")
    elif cmd == "report":
        from .report.build import report_store, report_tables

        if args.cell_data is not None:  # a bad CSV is refused before anything is written
            from .report.celldata import read_cell_data

            read_cell_data(args.cell_data)
        # a store: its tables checked current, plus stage provenance and image overlays
        out = (report_store(args.store, args.out, cell_data=args.cell_data) if args.store is not None
               else report_tables(args.tables, args.out, cell_data=args.cell_data))
        print(f"report: {out}")
    elif cmd == "train":
        log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
        if args.model == "sr":
            from .study.train_sr import load_train_sr_config, train_sr

            given = [o for o, v in (("--annotated", args.annotated), ("--init", args.init_weights),
                                    ("--max-seconds", args.max_seconds is not None)) if v]
            if given:
                raise CathodeflowError(f"train sr: {', '.join(given)} applies to `train unet` only")
            if args.config is None:
                raise CathodeflowError("train sr: --config FILE is required (a TOML with [srgan] and [training] "
                                       "tables, e.g. cathodeflow/models/weights/srgan-small-v1.train.toml; the "
                                       "paper's sizes are for a GPU)")
            cfg = load_train_sr_config(args.config, max_steps=args.max_steps)
            path = train_sr(cfg, out_dir=args.out or Path("sr-training"), name=args.name or "srgan", log=log)
            print(f"weights: {path}")
            return 0
        from .study.train_unet import load_train_config, train_unet

        cfg = load_train_config(args.config, max_steps=args.max_steps, max_seconds=args.max_seconds)
        path = train_unet(cfg, out_dir=args.out or Path("unet-training"), name=args.name or "unet",
                          annotated=args.annotated, init_weights=args.init_weights, log=log)
        print(f"weights: {path}")
    elif cmd == "pair":
        from .study.pairs import pair_files

        reg, rec = pair_files(args.low, args.high, out_dir=args.out, pixel_size_low_um=args.pixel_size_low,
                              pixel_size_high_um=args.pixel_size_high, min_correlation=args.min_correlation)
        print(f"offset ({reg.offset[0]:.2f}, {reg.offset[1]:.2f}) LR px, scale {reg.scale:.4f} "
              f"(nominal {reg.scale_nominal:.4f}), correlation {reg.correlation:.3f}, nrmse {reg.nrmse:.3f}; "
              f"pair {rec}")
    elif cmd == "calibrate":
        from .study.train_unet import calibrate_files

        cal = calibrate_files(args.weights, args.annotated, write=not args.dry_run)
        where = "not stored (--dry-run)" if args.dry_run else f"stored with {args.weights}"
        print(f"t = {cal.t:.4f}: pixel accuracy {cal.accuracy:.4f} ({cal.accuracy_at_half:.4f} at t = 0.5) "
              f"on {cal.n_pixels} annotated pixels; {where}")
    return 0


def _describe_manifest(manifest, *, pixel_size_um):
    """(phase files by image id, pixel sizes, conditions) from a ``describe --manifest`` CSV.

    Every row is checked (file present, pixel size, unique image id) before any work; an
    error names the row and column.
    """
    from .config import check_pixel_size_um
    from .io.phasefile import image_id_from_path
    from .study.pipeline import _read_manifest

    phases, sizes, conds, first = {}, [], [], {}
    for e in _read_manifest(manifest):
        iid = e.image_id or image_id_from_path(e.file)
        if iid in first:
            raise CathodeflowError(f"{e.where}: image id {iid!r} is also that of {first[iid]}; give one of "
                                   "them another image_id")
        first[iid] = e.where
        if not e.file.exists():
            raise CathodeflowError(f"{e.where}, column file: {e.file} not found")
        size = e.pixel_size_um if e.pixel_size_um is not None else pixel_size_um
        if size is None:
            raise CathodeflowError(f"{e.where}, column pixel_size_um: empty and no --pixel-size-um given; "
                                   "expected η in µm (phase maps carry no pixel size)")
        check_pixel_size_um(size, name=f"{e.where}, column pixel_size_um")
        phases[iid] = str(e.file)
        sizes.append(size)
        conds.append(e.condition)
    return phases, sizes, conds


def _replace_tables(tables, out: Path, *, metadata) -> dict:
    """Write ``tables`` into a temporary folder beside ``out``, then move each file into ``out``
    (replacing the old ones): a run that fails before leaves the old tables as they were. At
    a URL each table object is written whole (an object store's writes are atomic)."""
    import shutil
    import tempfile

    from .io.location import RemotePath
    from .io.tables import write_tables

    if isinstance(out, RemotePath):
        return write_tables(tables, out, metadata=metadata)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        written = write_tables(tables, tmp, metadata=metadata)
        out.mkdir(exist_ok=True)
        paths = {}
        for name, path in written.items():
            paths[name] = out / path.name
            os.replace(path, paths[name])
        return paths
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
