"""``cathodeflow demo``: a synthetic study of 4 conditions end to end.

Generates SEM-like low-resolution images with known ground truth (``cathodeflow.synth``),
writes them as real TIFF files with their pixel size, ingests them into a study store,
runs every stage and prints Table 1 with the generator's true values beside the measured
ones, so the baseline stages' error is visible. The report (a layer above) is built from
the returned store and truth: ``cathodeflow demo`` does both.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

CONDITIONS = ("20C", "30C", "40C", "50C")


@dataclass(frozen=True)
class DemoStudy:
    """A finished synthetic study: its store (tables current) and the generator's truth."""

    store: Path
    truth: pd.DataFrame


def run_demo(out, *, n_images: int = 3, seed: int = 0, scheduler=None, params=None) -> DemoStudy:
    """Generate ``n_images`` synthetic images per condition of :data:`CONDITIONS` into
    ``out/synthetic``, ingest them into ``out/study.zarr``, run every stage, write
    ``out/truth.csv`` and print Table 1 beside the truth.
    """
    from ..io.sem import write_tiff
    from ..synth import generate_study
    from .pipeline import ingest, run_study

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = out / "synthetic"
    store = out / "study.zarr"
    for p in (files, store):
        if p.exists():
            shutil.rmtree(p)
    files.mkdir()
    t0 = time.perf_counter()
    say = lambda m: print(f"[{time.perf_counter() - t0:6.1f} s] {m}", file=sys.stderr, flush=True)

    say(f"generating {len(CONDITIONS)} conditions × {n_images} synthetic images")
    images = generate_study(CONDITIONS, n_images=n_images, seed=seed)
    by_cond: dict[str, list[Path]] = {}
    for im in images:
        path = files / f"{im.image_id}.tif"
        write_tiff(path, im.lr, pixel_size_um=im.pixel_size_lr_um)
        by_cond.setdefault(im.condition, []).append(path)
    truth = truth_table(images, scheduler=scheduler)
    say("described the true phase maps (the reference for the report)")
    truth.to_csv(out / "truth.csv", index=False)

    for cond, paths in by_cond.items():
        ingest(paths, store=store, condition=cond)
    say(f"ingested {len(images)} TIFF files into {store}")
    run_study(store, params=params, scheduler=scheduler, progress=True)
    say("pipeline done")
    _print_table1(store, truth)
    return DemoStudy(store=store, truth=truth)


def truth_table(images, *, scheduler=None) -> pd.DataFrame:
    """Table 1 on the generator's true phase maps: what a perfect SR + segmentation gives.

    Columns: condition, true_porosity, true_porosity_std, true_intensity_per_um2,
    true_intensity_std (same estimators as the measured table, eq. 11–12).
    """
    from .describe import describe

    t = describe(
        {im.image_id: im.phase for im in images},
        pixel_size_um=[im.pixel_size_hr_um for im in images],
        condition=[im.condition for im in images],
        scheduler=scheduler,
    )["conditions"]
    return pd.DataFrame(
        {
            "condition": t["condition"],
            "true_porosity": t["porosity_mean"],
            "true_porosity_std": t["porosity_std"],
            "true_intensity_per_um2": t["intensity_mean"],
            "true_intensity_std": t["intensity_std"],
        }
    )


def _print_table1(store, truth: pd.DataFrame) -> None:
    """Print the store's ``conditions`` table (Table 1, computed once by
    :func:`cathodeflow.measure.descriptors.conditions_table`) beside the truth; formatting
    only (the report, a layer above, writes the full Table 1 with intervals)."""
    from ..io.store import open_store
    from ..io.tables import read_table

    st = open_store(store, mode="r")
    cond = read_table(Path(st.tables_dir) / "conditions.parquet", "conditions")
    t = cond.merge(truth, on="condition", how="left")
    first = st.image_ids()[0]
    method = (st.stage_info(first, "phase") or {}).get("params", {}).get("method")
    what = "U-net phases" if method == "unet" else "classical phases"
    sr = (st.stage_info(first, "sr") or {}).get("params", {}).get("method", "")
    sr_what = "SRGAN" if "srgan" in str(sr) else "baseline SR"
    print(f"\nTable 1 ({sr_what}, {what}) vs. the generator's truth")
    print(f"{'condition':>9} | {'porosity [1e-3]':>20} {'true':>7} | {'intensity [1e-2/µm²]':>22} {'true':>7}")
    def pm(mean, std, scale):
        # a standard deviation over one image is undefined: said so, never "nan"
        if pd.isna(std):
            return f"{scale * mean:9.1f} (n = 1, undefined)"
        return f"{scale * mean:9.1f} ± {scale * std:6.1f}"

    for r in t.itertuples():
        print(
            f"{r.condition:>9} | {pm(r.porosity_mean, r.porosity_std, 1e3)}   "
            f"{1e3 * r.true_porosity:7.1f} | {pm(r.intensity_mean, r.intensity_std, 1e2)}     "
            f"{1e2 * r.true_intensity_per_um2:7.1f}"
        )
