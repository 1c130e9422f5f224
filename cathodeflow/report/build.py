"""The report folder: one self-contained ``index.html`` and the files behind it.

``build_report(tables, out_dir, store=...)`` writes::

    index.html                      everything below on one page; figures and overlay
                                    thumbnails embedded as base64 PNG (opens offline alone)
    table1.csv  table1.md           Table 1 of the paper (+ counts, pooled values, truth)
    table1_intervals.{md,csv,tex}   Table 1 with bootstrap intervals over images
                                    (:func:`cathodeflow.report.stats.table1_intervals`)
    stats.csv                       intervals, pairwise tests (Holm), trend tests, effect
                                    sizes (:func:`cathodeflow.report.stats.condition_stats`)
    table1.{png,svg}                porosity and crack intensity per condition
    crack_boxplots.{png,svg}        Fig. 7 (kept cracks and adjusted data set)
    particle_boxplots.{png,svg}     Fig. 8
    local_porosity.{png,svg}        Fig. 9, one panel per stereological model
    provenance.csv                  (with a store) method, weights sha256, parameters, pixel
                                    size, package version of every stage
    images/<image_id>.png           (with a store) full-size overlays linked from the page

The page also holds the sample sizes, warnings (baseline stages, pixel sizes far from the
paper's, particles cut by the frame, quality flags) and the provenance table.

Table 1 rows come from the ``conditions`` table (DESIGN §4.2, §4.4 item 12: per-image ρ⁽ⁱ⁾
and λ⁽ⁱ⁾, mean and sample standard deviation over the images of a condition, pooled ρ of
eq. 11 beside it). When that table is empty but ``images`` is not, the same numbers are
derived from ``images`` by the same function
(:func:`cathodeflow.measure.descriptors.conditions_table`). Undefined values (one image
per condition) read "n = 1 (undefined)", never "nan".
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import LOW_RES_PIXEL_UM, SR_DEN, SR_INPUT_TOLERANCE, SR_NUM
from ..errors import InputError
from ..io.tables import SCHEMAS, conform, empty_table
from ..measure.descriptors import conditions_table
from ..measure.image import flag_summary
from .figures import (
    condition_label,
    condition_order,
    natural_key,
    plot_crack_boxplots,
    plot_local_porosity,
    plot_particle_boxplots,
    plot_table1,
)
from .stats import (
    N1,
    N_BOOT,
    condition_stats,
    format_table1,
    local_porosity_source,
    table1_intervals,
    write_table1,
)

#: Files of the report, in the order of the page.
FIGURES = {
    "table1.png": "Global particle porosity ρ (eq. 11) and crack intensity λ (eq. 12) per "
    "condition: mean ± sample standard deviation over the images of a condition "
    "(Table 1); open diamonds: pooled values; squares: ground truth where known.",
    "crack_boxplots.png": "Fig. 7: crack size d (eq. 13), length ℓ (eq. 14) and width b "
    "(eq. 16) per condition, for the kept cracks (a–c) and the adjusted data set of eq. 19 "
    "(d–f). Boxes: quartiles; red: median; whiskers: 5th and 95th percentiles; points: "
    "outliers.",
    "particle_boxplots.png": "Fig. 8: particle porosity ρ_p (a) and specific surface area a "
    "(b) per condition (all particles of the particles table, including those cut by the "
    "image frame). Boxes: quartiles; red: median; whiskers: 5th and 95th percentiles.",
    "local_porosity.png": "Fig. 9: local porosity ρ_local([a, b)) (eq. 37–40) per bin of the "
    "relative distance to the particle centre, per condition; one panel per stereological "
    "model (DESIGN §4.4 item 11). The hatched last group is the overflow bin.",
}

#: Scaled numeric columns of table1.csv (besides condition and the counts).
SCALE_POROSITY = 1e3  # porosity in 10⁻³
SCALE_INTENSITY = 1e2  # intensity in 10⁻² µm⁻²

_TRUTH_ALIASES = {
    "porosity": ("true_porosity", "porosity_true", "porosity_mean", "porosity"),
    "porosity_std": ("true_porosity_std", "porosity_true_std", "porosity_std"),
    "intensity": (
        "true_intensity_per_um2", "intensity_true_per_um2", "intensity_mean",
        "crack_intensity_per_um2", "intensity_per_um2",
    ),
    "intensity_std": ("true_intensity_std", "intensity_true_std", "intensity_std"),
}


def _table(tables: dict, name: str) -> pd.DataFrame:
    df = tables.get(name) if tables is not None else None
    if df is None:
        return empty_table(name)
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"tables[{name!r}]: expected a pandas DataFrame, got {type(df).__name__}")
    try:
        return conform(df, name)
    except KeyError as e:
        raise InputError(f"tables[{name!r}]: {e.args[0]}; expected {list(SCHEMAS[name])}") from None


def conditions_from_images(images: pd.DataFrame, particles: pd.DataFrame | None = None,
                           cracks: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``conditions`` table derived from ``images`` (DESIGN §4.4 item 12), in natural
    condition order: :func:`cathodeflow.measure.descriptors.conditions_table`, the one
    implementation of Table 1 (per-image ρ⁽ⁱ⁾, λ⁽ⁱ⁾: mean and sample std, ddof = 1; pooled
    ρ of eq. 11 and λ of eq. 12; counts). ``n_particles`` counts the rows of ``particles``
    per condition (0 without it).
    """
    images = conform(images, "images")
    parts = conform(particles, "particles") if particles is not None else empty_table("particles")
    cracks = conform(cracks, "cracks") if cracks is not None else empty_table("cracks")
    cond = conditions_table(images, cracks, parts)
    if not len(cond):
        return cond
    order = condition_order(cond["condition"])
    return cond.set_index("condition").loc[order].reset_index()


def _truth_per_condition(truth: pd.DataFrame) -> pd.DataFrame:
    """condition, porosity, porosity_std, intensity, intensity_std (one row per condition)."""
    if not isinstance(truth, pd.DataFrame):
        raise InputError(f"truth: expected a pandas DataFrame, got {type(truth).__name__}")
    if "condition" not in truth.columns:
        raise InputError(f"truth: needs a 'condition' column; has {list(truth.columns)}")
    found = {}
    for key, names in _TRUTH_ALIASES.items():
        found[key] = next((n for n in names if n in truth.columns), None)
    if found["porosity"] is None and found["intensity"] is None:
        raise InputError(
            "truth: needs a porosity column (one of "
            f"{list(_TRUTH_ALIASES['porosity'])}) or an intensity column (one of "
            f"{list(_TRUTH_ALIASES['intensity'])}); has {list(truth.columns)}"
        )
    t = truth.copy()
    t["condition"] = t["condition"].astype(str)
    out = []
    for cond, g in t.groupby("condition", sort=False):
        row = {"condition": cond}
        for key in ("porosity", "intensity"):
            col = found[key]
            vals = pd.to_numeric(g[col], errors="coerce") if col else pd.Series([math.nan])
            row[key] = float(vals.mean())
            std_col = found[f"{key}_std"]
            if len(g) > 1:  # per-image truth rows: spread over images
                row[f"{key}_std"] = float(vals.std(ddof=1))
            elif std_col is not None:
                row[f"{key}_std"] = float(pd.to_numeric(g[std_col], errors="coerce").iloc[0])
            else:
                row[f"{key}_std"] = math.nan
        out.append(row)
    return pd.DataFrame(out)


def table1(tables: dict[str, pd.DataFrame], *, truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 1 as a DataFrame with scaled numeric columns (what ``table1.csv`` holds).

    Columns: ``condition``, ``n_images``, ``n_particles``, ``n_cracks``,
    ``n_cracks_unfiltered``, ``porosity_mean_1e-3``, ``porosity_std_1e-3``,
    ``porosity_pooled_1e-3``, ``intensity_mean_1e-2_per_um2``, ``intensity_std_1e-2_per_um2``,
    ``intensity_pooled_1e-2_per_um2`` and, with ``truth``, ``porosity_true_1e-3``,
    ``porosity_true_std_1e-3``, ``intensity_true_1e-2_per_um2``,
    ``intensity_true_std_1e-2_per_um2``. Porosity values are ×10³, intensities ×10² (µm⁻²),
    i.e. in the units of the paper's Table 1. Rows in natural condition order.
    """
    cond = _table(tables, "conditions")
    if len(cond) == 0:
        images = _table(tables, "images")
        if len(images):
            cond = conditions_from_images(images, _table(tables, "particles"))
    cond = cond.copy()
    cond["condition"] = cond["condition"].astype(str)
    cond = cond.iloc[sorted(range(len(cond)), key=lambda i: natural_key(cond["condition"].iloc[i]))]
    out = pd.DataFrame({
        "condition": cond["condition"].astype(str).to_numpy(),
        "n_images": cond["n_images"].to_numpy(np.int64),
        "n_particles": cond["n_particles"].to_numpy(np.int64),
        "n_cracks": cond["n_cracks"].to_numpy(np.int64),
        "n_cracks_unfiltered": cond["n_cracks_unfiltered"].to_numpy(np.int64),
        "porosity_mean_1e-3": SCALE_POROSITY * cond["porosity_mean"].to_numpy(float),
        "porosity_std_1e-3": SCALE_POROSITY * cond["porosity_std"].to_numpy(float),
        "porosity_pooled_1e-3": SCALE_POROSITY * cond["porosity_pooled"].to_numpy(float),
        "intensity_mean_1e-2_per_um2": SCALE_INTENSITY * cond["intensity_mean"].to_numpy(float),
        "intensity_std_1e-2_per_um2": SCALE_INTENSITY * cond["intensity_std"].to_numpy(float),
        "intensity_pooled_1e-2_per_um2":
            SCALE_INTENSITY * cond["intensity_pooled_per_um2"].to_numpy(float),
    })
    if truth is not None:
        t = _truth_per_condition(truth)
        # conditions only in the truth still get a row (measured values NaN)
        extra = [c for c in t["condition"] if c not in set(out["condition"])]
        if extra:
            out = pd.concat([out, pd.DataFrame({"condition": extra})], ignore_index=True)
            for c in ("n_images", "n_particles", "n_cracks", "n_cracks_unfiltered"):
                out[c] = out[c].fillna(0).astype(np.int64)
            out = out.iloc[sorted(range(len(out)), key=lambda i: natural_key(out["condition"].iloc[i]))]
        t = t.set_index("condition")
        c = out["condition"]
        out["porosity_true_1e-3"] = SCALE_POROSITY * c.map(t["porosity"]).to_numpy(float)
        out["porosity_true_std_1e-3"] = SCALE_POROSITY * c.map(t["porosity_std"]).to_numpy(float)
        out["intensity_true_1e-2_per_um2"] = SCALE_INTENSITY * c.map(t["intensity"]).to_numpy(float)
        out["intensity_true_std_1e-2_per_um2"] = (
            SCALE_INTENSITY * c.map(t["intensity_std"]).to_numpy(float))
    return out.reset_index(drop=True)


def _decimals(x: float) -> int:
    return 1 if not np.isfinite(x) or abs(x) >= 1 else 3


def _num(x: float, decimals: int | None = None) -> str:
    if x is None or x is pd.NA or not np.isfinite(x):
        return "–"
    return f"{x:.{_decimals(x) if decimals is None else decimals}f}"


def _pm(mean: float, std: float, n: int | None = None) -> str:
    """'34.3 ± 6.6' (one decimal, as the paper's Table 1; three below 1); one image:
    '34.3 (n = 1, std undefined)'; never 'nan'."""
    d = _decimals(mean)
    if n == 1 and np.isfinite(mean):
        return f"{_num(mean, d)} ({N1}, std undefined)"
    return f"{_num(mean, d)} ± {_num(std, d)}" if np.isfinite(std) else _num(mean, d)


def _display_rows(t1: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    has_truth = "porosity_true_1e-3" in t1.columns
    header = ["condition", "porosity ρ [10⁻³]"]
    if has_truth:
        header.append("true ρ [10⁻³]")
    header.append("crack intensity λ [10⁻² µm⁻²]")
    if has_truth:
        header.append("true λ [10⁻² µm⁻²]")
    header += ["pooled ρ [10⁻³]", "images", "particles", "cracks (kept / all)"]
    rows = []
    for r in t1.to_dict("records"):
        n = int(r["n_images"])
        row = [condition_label(r["condition"]),
               _pm(r["porosity_mean_1e-3"], r["porosity_std_1e-3"], n)]
        if has_truth:
            row.append(_pm(r["porosity_true_1e-3"], r["porosity_true_std_1e-3"]))
        row.append(_pm(r["intensity_mean_1e-2_per_um2"], r["intensity_std_1e-2_per_um2"], n))
        if has_truth:
            row.append(_pm(r["intensity_true_1e-2_per_um2"], r["intensity_true_std_1e-2_per_um2"]))
        row += [_num(r["porosity_pooled_1e-3"]), str(n),
                str(int(r["n_particles"])), f"{int(r['n_cracks'])} / {int(r['n_cracks_unfiltered'])}"]
        rows.append(row)
    return header, rows


def table1_markdown(t1: pd.DataFrame) -> str:
    """Table 1 as a GitHub-flavoured Markdown table (values mean ± std over images)."""
    header, rows = _display_rows(t1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if not rows:
        lines.append("| " + " | ".join(["no data"] + [""] * (len(header) - 1)) + " |")
    return "\n".join(lines) + "\n"


def _html_table(header: list[str], rows: list[list[str]], *, empty: str = "no data",
                cls: str | None = None) -> str:
    esc = html.escape
    out = [f'<table class="{cls}">' if cls else "<table>",
           "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>",
           "<tbody>"]
    out += ["<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in r) + "</tr>" for r in rows]
    if not rows:
        out.append(f'<tr><td colspan="{len(header)}">{esc(empty)}</td></tr>')
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def table1_html(t1: pd.DataFrame) -> str:
    return _html_table(*_display_rows(t1))


def _markdown_to_html(md: str, *, cls: str | None = None) -> str:
    """A Markdown pipe table (:func:`cathodeflow.report.stats.format_table1`) as HTML."""
    lines = [ln.strip() for ln in md.splitlines() if ln.strip().startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return _html_table(cells[0], cells[2:], cls=cls) if cells else ""


def flagged_images(images: pd.DataFrame) -> pd.DataFrame:
    """The images whose quality flags are raised: ``image_id``, ``condition``, ``flags``
    (:func:`~cathodeflow.measure.image.flag_summary`), in table order; images without flags
    ("ok") or from tables that predate them ("–") are left out."""
    images = conform(images, "images")
    rows = [{"image_id": str(r["image_id"]), "condition": str(r["condition"]), "flags": flag_summary(r)}
            for r in images.to_dict("records")]
    rows = [r for r in rows if r["flags"] not in ("ok", "–")]
    return pd.DataFrame(rows, columns=["image_id", "condition", "flags"])


# --------------------------------------------------------------------------------------
# Sample sizes, statistics, provenance, warnings
# --------------------------------------------------------------------------------------
def sample_sizes(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per condition (natural order): ``condition``, ``n_images``, ``n_cracks`` (kept),
    ``n_cracks_all``, ``n_particles``, ``n_particles_cut`` (touching the image frame)."""
    tabs = {n: _table(tables, n) for n in ("images", "cracks", "particles")}
    conds = condition_order(*(df["condition"] for df in tabs.values()))
    rows = []
    for c in conds:
        im, cr, pa = (df[df["condition"].astype(str) == c] for df in tabs.values())
        rows.append(dict(condition=c, n_images=int(im["image_id"].nunique()),
                         n_cracks=int(cr["kept"].fillna(False).astype(bool).sum()),
                         n_cracks_all=len(cr), n_particles=len(pa),
                         n_particles_cut=int(pa["touches_border"].fillna(False).astype(bool).sum())))
    return pd.DataFrame(rows, columns=["condition", "n_images", "n_cracks", "n_cracks_all",
                                       "n_particles", "n_particles_cut"])


#: Quantities of :func:`cathodeflow.report.stats.condition_stats` shown on the page
#: (``stats.csv`` holds all, local porosity per bin included).
PAGE_QUANTITIES = {
    "rho": "porosity ρ (mean of ρ⁽ⁱ⁾)", "lambda": "crack intensity λ [µm⁻²] (mean of λ⁽ⁱ⁾)",
    "rho_pooled": "porosity ρ, pooled (eq. 11)", "lambda_pooled": "λ [µm⁻²], pooled (eq. 12)",
    "d_um_median": "median crack size d [µm]", "length_um_median": "median crack length ℓ [µm]",
    "width_um_median": "median crack width b [µm]",
    "particle_porosity_median": "median particle porosity ρ_p",
    "ssa_per_um_median": "median specific surface area a [µm⁻¹]",
}


def _sig(x, note: str = "") -> str:
    """A number with 3 significant digits; undefined: the note ('n = 1 (undefined)') or '–'."""
    if x is None or x is pd.NA or not np.isfinite(float(x)):
        return f"{note} (undefined)" if note.startswith(N1) else "–"
    return f"{float(x):.3g}"


def _stats_html(st: pd.DataFrame) -> list[str]:
    parts = []
    shown = st[st["quantity"].isin(list(PAGE_QUANTITIES))]
    label = lambda q: PAGE_QUANTITIES.get(q, q)  # noqa: E731
    iv = shown[shown["kind"] == "interval"]
    rows = []
    for r in iv.itertuples():
        note = "" if pd.isna(r.note) else str(r.note)
        ci = (f"[{_sig(r.ci_low)}, {_sig(r.ci_high)}]" if not pd.isna(r.ci_low)
              else _sig(None, note) if note.startswith(N1) else "–")
        rows.append([label(r.quantity), condition_label(r.condition), _sig(r.estimate), ci,
                     _sig(r.std, note), str(r.n_images) if not pd.isna(r.n_images) else "–", note])
    parts += ["<h3>Estimates with bootstrap intervals over images</h3>",
              _html_table(["quantity", "condition", "estimate", "interval", "std over images",
                           "images", "note"], rows, empty="no data", cls="stats")]
    tests = shown[shown["kind"].isin(["pairwise", "trend"])]
    rows = []
    for r in tests.itertuples():
        note = "" if pd.isna(r.note) else str(r.note)
        what = (f"{condition_label(r.condition_b)} vs {condition_label(r.condition)}"
                if r.kind == "pairwise" else f"trend {r.condition}")
        rows.append([label(r.quantity), what, str(r.test), _sig(r.estimate, note)
                     if r.kind == "pairwise" else "", _sig(r.statistic, note), _sig(r.p, note),
                     _sig(r.p_holm, note), _sig(r.effect, note),
                     _sig(r.hedges_g, note) if r.kind == "pairwise" else "", note])
    parts += ["<h3>Tests between conditions (Holm-adjusted)</h3>",
              '<p class="note">Pairwise: Mann–Whitney U on per-image summaries, permutation '
              "p-value, Holm over the pairs of a quantity; difference (later − earlier) of the "
              "estimates; effect = Cliff's δ; Hedges' g. Trend: Jonckheere–Terpstra over the "
              "ordered conditions, Holm over the quantities; effect = τ_JT. All tables: "
              '<a href="stats.csv">stats.csv</a>.</p>',
              _html_table(["quantity", "comparison", "test", "difference", "statistic", "p",
                           "p (Holm)", "effect", "Hedges' g", "note"], rows,
                          empty="no test (fewer than two conditions with images)", cls="stats")]
    return parts


#: Stages whose provenance the report lists, in pipeline order.
PROVENANCE_STAGES = ("raw", "sr", "prob", "phase", "labels/cracks", "labels/particles")


def stage_provenance(store) -> pd.DataFrame:
    """Provenance of every stage of a study store, one row per stage and distinct setting.

    Parameters
    ----------
    store : str, Path or Store
        The study store (read with :func:`cathodeflow.io.store.open_store`).

    Returns
    -------
    DataFrame
        ``stage``, ``method``, ``weights_sha256`` ('' when the stage uses no weights),
        ``params`` (JSON, per-image measurements left out:
        :data:`cathodeflow.study.inventory.PER_IMAGE_KEYS`), ``pixel_size_um`` (min–max over
        the images), ``package_version``, ``n_images``, ``image_ids`` (comma-separated);
        stages in :data:`PROVENANCE_STAGES` order; only complete stages count.
    """
    import json

    from ..io.store import Store, open_store
    from ..study.inventory import summarize_store

    st = store if isinstance(store, Store) else open_store(store, mode="r")
    summary = summarize_store(st)
    params = {(s, g["params_sha256"]): g["params"] for s, groups in summary["parameter_sets"].items()
              for g in groups}
    groups: dict[tuple, dict] = {}
    for img in summary["images"]:
        iid = img["image_id"]
        for stage in PROVENANCE_STAGES:
            entry = img["stages"].get(stage) or {}
            if stage == "raw":
                if img["shape_raw"] is None:
                    continue
                rec = st.stage_info(iid, "raw") or {}
                method, digest = "ingested", ""
            else:
                if entry.get("status") != "complete":
                    continue
                rec = st.stage_info(iid, stage) or {}
                method, digest = entry.get("method") or "", entry.get("params_sha256") or ""
            key = (stage, method, digest, rec.get("weights_sha256") or "",
                   str(rec.get("package_version") or ""))
            g = groups.setdefault(key, {"ids": [], "ps": []})
            g["ids"].append(iid)
            if rec.get("pixel_size_um") is not None:
                g["ps"].append(float(rec["pixel_size_um"]))
    rows = []
    for (stage, method, digest, sha, version), g in sorted(
            groups.items(), key=lambda kv: PROVENANCE_STAGES.index(kv[0][0])):
        ps = g["ps"]
        rows.append(dict(
            stage=stage, method=method, weights_sha256=sha,
            params=json.dumps(params.get((stage, digest), {}), sort_keys=True, ensure_ascii=False),
            pixel_size_um=(f"{min(ps):.4g}" if ps and max(ps) == min(ps) else
                           f"{min(ps):.4g}–{max(ps):.4g}" if ps else ""),
            package_version=version, n_images=len(g["ids"]), image_ids=", ".join(g["ids"])))
    return pd.DataFrame(rows, columns=["stage", "method", "weights_sha256", "params",
                                       "pixel_size_um", "package_version", "n_images", "image_ids"])


#: The super-resolved pixel size the paper's parameters are made for: the raw
#: :data:`~cathodeflow.config.LOW_RES_PIXEL_UM` times 13/35 (14.3 nm).
EXPECTED_PIXEL_UM = LOW_RES_PIXEL_UM * SR_DEN / SR_NUM


def report_warnings(tables: dict[str, pd.DataFrame], provenance: pd.DataFrame | None = None) -> list[str]:
    """What a reader must know before trusting the numbers, one sentence each.

    * baseline stages (``provenance``): sr method ``baseline`` (interpolation, not the SRGAN
      of §2.3.1), phase method ``classical`` (thresholds, not the U-net of §2.3.2);
    * noisy acquisitions (``provenance``): images the classical phase segmentation smoothed
      with a σ above :data:`~cathodeflow.stages.phases.DEFAULT_SIGMA_PX` because of their
      noise (:func:`~cathodeflow.stages.phases.adapt_options`);
    * images whose pixel size (``images.pixel_size_um``, of the phase maps) is more than
      :data:`~cathodeflow.config.SR_INPUT_TOLERANCE` times away from
      :data:`EXPECTED_PIXEL_UM`;
    * particles cut by the image frame (``particles.touches_border``), per condition;
    * images with raised quality flags (:func:`flagged_images`).
    """
    out = []
    if provenance is not None and len(provenance):
        import json

        for stage, key, base, what in (
                ("sr", "sr_method", "baseline", "super-resolution by interpolation ('baseline'), "
                 "not the SRGAN of §2.3.1"),
                ("phase", "phase_method", "classical", "phases from classical thresholds "
                 "('classical'), not the U-net of §2.3.2")):
            sel = provenance[provenance["stage"] == stage]
            used = [json.loads(r.params).get(key, r.method) == base or base in str(r.method)
                    for r in sel.itertuples()]
            n = int(sel.loc[used, "n_images"].sum()) if len(sel) else 0
            if n:
                out.append(f"Baseline stage: {what} for {n} image(s); expect biased crack "
                           "measurements.")
        out += _noise_warnings(provenance)
    images = _table(tables, "images")
    if len(images):
        ps = images["pixel_size_um"].astype(float)
        far = images[(ps > EXPECTED_PIXEL_UM * SR_INPUT_TOLERANCE)
                     | (ps < EXPECTED_PIXEL_UM / SR_INPUT_TOLERANCE)]
        for r in far.itertuples():
            out.append(f"Image {r.image_id} ({r.condition}): pixel size {r.pixel_size_um:.4g} µm, "
                       f"more than {SR_INPUT_TOLERANCE:g}× away from the {EXPECTED_PIXEL_UM:.4g} µm "
                       "the paper's parameters are made for.")
    sizes = sample_sizes(tables)
    for r in sizes[sizes["n_particles_cut"] > 0].itertuples():
        out.append(f"{condition_label(r.condition)}: {r.n_particles_cut} of {r.n_particles} "
                   "particles are cut by the image frame (their porosity and surface area are "
                   "those of the visible part; Fig. 8 includes them).")
    if len(images):
        flagged = flagged_images(images)
        if len(flagged):
            out.append(f"{len(flagged)} image(s) with quality flags: "
                       + "; ".join(f"{r.image_id} ({r.flags})" for r in flagged.itertuples()) + ".")
    return out


def _noise_warnings(provenance: pd.DataFrame) -> list[str]:
    """One sentence per σ the classical phase segmentation raised above its default for
    noise (the stage records the σ it chose), naming the images, noisiest first."""
    import json

    from ..stages.phases import DEFAULT_SIGMA_PX

    noisy = []
    for r in provenance[provenance["stage"] == "phase"].itertuples():
        sigma = json.loads(r.params).get("sigma_px")
        if "classical" in str(r.method) and sigma is not None and float(sigma) > DEFAULT_SIGMA_PX:
            noisy.append((float(sigma), r.image_ids, int(r.n_images)))
    return [f"Noisy acquisition: {n} image(s) ({ids}) were smoothed with σ = {sigma:.3g} px, not "
            f"{DEFAULT_SIGMA_PX:g} px, by the classical phase segmentation; thin and faint cracks are "
            "lost in such images and their crack statistics are unreliable (on synthetic low-dose "
            "images the crack pixels were found with IoU 0.03–0.19)."
            for sigma, ids, n in sorted(noisy, reverse=True)]


# --------------------------------------------------------------------------------------
# Embedding and overlays
# --------------------------------------------------------------------------------------
def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


#: Width in pixels of the overlay thumbnails embedded in the page.
THUMB_PX = 320


def write_overlays(store, out_dir, *, image_ids=None) -> dict[str, Path]:
    """Full-size overlay PNGs ``out_dir/images/<image_id>.png``: the super-resolved image
    with crack (red) and particle (yellow) outlines, drawn by
    :meth:`cathodeflow.report.accessor.CathodeAccessor.overlay`. Images whose labels are not
    complete are skipped. Returns image_id → path."""
    from matplotlib.figure import Figure

    from ..study.open import open_study
    from . import accessor  # noqa: F401  (registers tree.cathode)

    tree = open_study(store)
    have = tree["images"].children if "images" in tree.children else {}
    folder = Path(out_dir) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for iid in (image_ids if image_ids is not None else list(have)):
        node = have.get(iid)
        if node is None or not {"sr", "cracks", "particles"} <= set(node.to_dataset().data_vars):
            continue
        h, w = node["sr"].shape[-2:]
        fig = Figure(figsize=(8.0, 8.0 * h / w + 0.4), dpi=max(100, min(200, w // 8)),
                     layout="constrained")
        tree.cathode.overlay(iid, ax=fig.add_subplot())
        path = folder / f"{iid}.png"
        fig.savefig(path, format="png")
        written[iid] = path
    return written


def _thumbnail_uri(path: Path, width: int = THUMB_PX) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im.thumbnail((width, width * 4))
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
th { background: #eef2f6; } td:first-child, th:first-child { text-align: left; }
table.stats, table.prov { font-size: 0.8em; } table.prov td { text-align: left; word-break: break-all; }
figure { margin: 2em 0; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.4em; }
.note { color: #555; font-size: 0.9em; }
.warn { background: #fff4e0; border-left: 4px solid #e69f00; padding: 0.5em 1em; }
.thumbs { display: flex; flex-wrap: wrap; gap: 0.8em; }
.thumbs figure { margin: 0; width: 320px; }
"""


def _section(title: str) -> str:
    return f"<h2>{html.escape(title)}</h2>"


def _index_html(*, title: str, t1: pd.DataFrame, t1ci: pd.DataFrame | None, sizes: pd.DataFrame,
                stats: pd.DataFrame | None, counts: dict[str, int], provenance: str | None,
                prov: pd.DataFrame | None, warnings: list[str], figures: dict[str, Path],
                overlays: dict[str, Path], out: Path, images: pd.DataFrame,
                cell_html: str | None = None) -> str:
    esc = html.escape
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">Generated {stamp} by cathodeflow {esc(_version())}. Rows: '
        + ", ".join(f"{esc(k)} {v}" for k, v in counts.items()) + ".</p>",
    ]
    if provenance:
        parts.append(f'<p class="note">{esc(provenance)}</p>')
    parts.append(_section("Warnings"))
    if warnings:
        parts += ['<div class="warn"><ul>'] + [f"<li>{esc(w)}</li>" for w in warnings] + ["</ul></div>"]
    else:
        parts.append('<p class="note">None.</p>')

    parts += [_section("Table 1"),
              '<p class="note">Mean ± sample standard deviation over the images of each condition '
              "(DESIGN §4.4 item 12); a condition with one image has no standard deviation "
              f"({N1}, undefined). Also as <a href=\"table1.csv\">table1.csv</a> and "
              '<a href="table1.md">table1.md</a>.</p>', table1_html(t1)]
    if t1ci is not None:
        parts += ["<h3>Table 1 with bootstrap intervals over images</h3>",
                  '<p class="note">Mean ± std [interval]: bootstrap over the images of a '
                  "condition (expanded percentile, cathodeflow.report.stats); "
                  f"“{N1}”: one image, std and interval undefined. Files: "
                  '<a href="table1_intervals.md">Markdown</a>, '
                  '<a href="table1_intervals.csv">CSV</a>, '
                  '<a href="table1_intervals.tex">LaTeX</a>.</p>',
                  _markdown_to_html(format_table1(t1ci, "markdown").replace(
                      f"({N1})", f"({N1}, undefined)"))]
    srows = [[condition_label(r.condition), str(r.n_images) + (f" ({N1}: undefined spread)"
                                                               if r.n_images == 1 else ""),
              f"{r.n_cracks} / {r.n_cracks_all}", str(r.n_particles), str(r.n_particles_cut)]
             for r in sizes.itertuples()]
    parts += [_section("Sample sizes"),
              _html_table(["condition", "images", "cracks (kept / all)", "particles",
                           "particles cut by the frame"], srows)]
    parts.append(_section("Statistics"))
    if stats is not None:
        parts += _stats_html(stats)
    else:
        parts.append('<p class="note">No statistics: the images table is empty.</p>')

    for name, caption in FIGURES.items():
        parts += ["<figure>", f'<img src="{_data_uri(figures[name])}" alt="{esc(name)}">',
                  f"<figcaption>{esc(caption)} (Files: {esc(name)}, "
                  f"{esc(Path(name).with_suffix('.svg').name)}.)</figcaption>", "</figure>"]

    parts.append(_section("Images"))
    if overlays:
        parts += ['<p class="note">Super-resolved images with crack (red) and particle (yellow) '
                  "outlines; click for the full-size image (in images/ beside this page).</p>",
                  '<div class="thumbs">']
        cond = dict(zip(images["image_id"].astype(str), images["condition"].astype(str)))
        for iid, path in overlays.items():
            rel = path.relative_to(out).as_posix()
            parts += ["<figure>", f'<a href="{esc(rel)}"><img src="{_thumbnail_uri(path)}" '
                      f'alt="{esc(iid)}"></a>',
                      f"<figcaption>{esc(iid)} ({esc(condition_label(cond.get(iid, '')))})"
                      "</figcaption>", "</figure>"]
        parts.append("</div>")
    else:
        parts.append('<p class="note">No image overlays: the report was built from tables '
                     "without a study store.</p>")

    parts += _flags_html(images)
    if cell_html:
        parts.append(cell_html)
    parts.append(_section("Provenance"))
    if prov is not None and len(prov):
        rows = [[r.stage, r.method, r.weights_sha256 or "–", r.pixel_size_um or "–",
                 r.package_version or "–", str(r.n_images), r.params] for r in prov.itertuples()]
        parts += ['<p class="note">Per stage and distinct setting, from the store '
                  '(also in <a href="provenance.csv">provenance.csv</a>).</p>',
                  _html_table(["stage", "method", "weights sha256", "pixel size [µm]",
                               "cathodeflow", "images", "parameters"], rows, cls="prov")]
    else:
        parts.append('<p class="note">No store given: stage provenance unknown.</p>')
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _flags_html(images: pd.DataFrame) -> list[str]:
    flagged = flagged_images(images)
    parts = [_section("Quality flags"),
             '<p class="note">Per image (images table): unmarked = components of S &gt; 0 with no '
             "marker (D &lt; r, eq. 10), which get no particle; holed = particles enclosing "
             "background (a hollow particle may be split); cracks outside = kept cracks in no "
             "particle; % cut = particles touching the image frame.</p>"]
    if not len(flagged):
        parts.append(f'<p class="note">No flag raised ({len(images)} image(s)).</p>')
        return parts
    parts.append(_html_table(["image", "condition", "flags"],
                             [[r.image_id, r.condition, r.flags] for r in flagged.itertuples()]))
    return parts


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("cathodeflow")
    except Exception:  # not installed as a distribution (a source checkout)
        return "(source)"


def build_report(
    tables: dict[str, pd.DataFrame],
    out_dir,
    *,
    title: str = "cathodeflow report",
    truth: pd.DataFrame | None = None,
    provenance: str | None = None,
    store=None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    cell_data=None,
) -> Path:
    """Write the report folder and return the path of its ``index.html``.

    ``index.html`` is self-contained: every figure and every overlay thumbnail is embedded
    as a base64 PNG, so the page opens offline on its own. Beside it: ``table1.{csv,md}``,
    ``table1_intervals.{md,csv,tex}``, ``stats.csv``, each figure as PNG and SVG,
    ``provenance.csv`` and ``images/<image_id>.png`` (full-size overlays, linked from the
    thumbnails) when ``store`` is given.

    Parameters
    ----------
    tables : dict of str → DataFrame
        Tables of DESIGN §4.2 (``images``, ``cracks``, ``particles``, ``local_porosity``,
        ``conditions``); missing ones count as empty. Empty tables give a report that says
        "no data" where there is none.
    out_dir : path
        Folder to write into (created if needed; files of the same names are replaced).
    title : str
        Page and figure title.
    truth : DataFrame, optional
        Ground truth per condition (e.g. from the synthetic generator): a ``condition``
        column and ``true_porosity`` / ``true_intensity_per_um2`` (optionally
        ``true_porosity_std`` / ``true_intensity_std``). Per-image rows with ``porosity`` /
        ``crack_intensity_per_um2`` columns are accepted too and averaged per condition.
        Shown next to the measurement in Table 1 and as markers in ``table1.png``.
    provenance : str, optional
        One line shown under the title (e.g. which methods produced the phase maps).
    store : str or Path, optional
        The study store the tables come from: adds the stage provenance
        (:func:`stage_provenance`), baseline-stage warnings and per-image overlays.
    n_boot, seed : int
        Bootstrap resamples and seed of the intervals and tests
        (:func:`cathodeflow.report.stats.condition_stats`).
    cell_data : str or Path, optional
        A CSV of per-condition cell metrics (:mod:`cathodeflow.report.celldata`): joined to
        the crack descriptors, correlated and plotted in a "Cell data" section.

    Returns
    -------
    Path of ``out_dir/index.html``.

    Raises
    ------
    InputError
        Unknown table names or columns, bad truth, or a condition with cracks or particles
        but no image (one line naming it).
    """
    if not isinstance(tables, dict):
        raise InputError(f"tables: expected a dict of DataFrames, got {type(tables).__name__}")
    unknown = sorted(set(tables) - set(SCHEMAS))
    if unknown:
        raise InputError(f"tables: unknown table name(s) {unknown}; known: {list(SCHEMAS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tabs = {name: _table(tables, name) for name in SCHEMAS}
    t1 = table1(tabs, truth=truth)
    sizes = sample_sizes(tabs)
    stats = t1ci = None
    if len(tabs["images"]):  # intervals and tests (an empty condition raises InputError here)
        stats = condition_stats(tabs, n_boot=n_boot, seed=seed)
        t1ci = table1_intervals(tabs, n_boot=n_boot, seed=seed)
    t1.to_csv(out / "table1.csv", index=False)
    (out / "table1.md").write_text(
        f"# {title}: Table 1\n\n" + table1_markdown(t1), encoding="utf-8")
    if t1ci is not None:
        for suffix in (".md", ".csv", ".tex"):
            write_table1(t1ci, out / f"table1_intervals{suffix}")
        stats.to_csv(out / "stats.csv", index=False, na_rep="")

    conditions = condition_order(
        t1["condition"], tabs["images"]["condition"], tabs["cracks"]["condition"],
        tabs["particles"]["condition"], tabs["local_porosity"]["condition"])
    local = local_porosity_source(tabs)  # per image when held: Fig. 9 gets intervals
    local = tabs["local_porosity"] if local is None else local
    figures = {
        "table1.png": plot_table1(t1, out / "table1.png", title=title),
        "crack_boxplots.png": plot_crack_boxplots(tabs["cracks"], conditions, out / "crack_boxplots.png"),
        "particle_boxplots.png": plot_particle_boxplots(tabs["particles"], conditions,
                                                        out / "particle_boxplots.png"),
        "local_porosity.png": plot_local_porosity(local, conditions, out / "local_porosity.png"),
    }
    prov, overlays = None, {}
    if store is not None:
        prov = stage_provenance(store)
        prov.to_csv(out / "provenance.csv", index=False)
        overlays = write_overlays(store, out, image_ids=list(tabs["images"]["image_id"].astype(str)))
    cell_html = None
    if cell_data is not None:
        from .celldata import cell_data_report

        cell_html = cell_data_report(tabs, cell_data, out, n_boot=n_boot, seed=seed)["html"]
    counts = {name: len(df) for name, df in tabs.items()}
    index = out / "index.html"
    index.write_text(_index_html(
        title=title, t1=t1, t1ci=t1ci, sizes=sizes, stats=stats, counts=counts,
        provenance=provenance, prov=prov, warnings=report_warnings(tabs, prov), figures=figures,
        overlays=overlays, out=out, images=tabs["images"], cell_html=cell_html), encoding="utf-8")
    return index


def report_tables(tables_dir, out, *, truth: pd.DataFrame | None = None, store=None, cell_data=None) -> Path:
    """Build the report folder from a folder of tables: the ``--out`` of ``cathodeflow
    describe`` (phase maps segmented elsewhere) or a store's tables (checked current by
    :func:`cathodeflow.study.pipeline.current_tables_dir` first, or use
    :func:`report_store`); no ground truth needed.

    Parameters
    ----------
    tables_dir : str, Path or RemotePath
        Holds ``<name>.parquet`` for every table of DESIGN §4.2; a folder or an fsspec URL
        (``s3://bucket/study.zarr/tables``, :mod:`cathodeflow.io.location`).
    out : str or Path
        The report folder (created if needed).
    truth : DataFrame, optional
        Ground truth per condition, shown beside the measurement (synthetic studies).
    store : str or Path, optional
        The store the tables belong to (provenance, warnings, overlays; :func:`build_report`).
    cell_data : str or Path, optional
        A cell-data CSV (:func:`build_report`).

    Returns
    -------
    Path
        The report's ``index.html``.
    """
    from ..io.location import as_path
    from ..io.tables import REQUIRED_TABLES, read_table

    tdir = as_path(tables_dir)  # a folder, or a URL (s3://bucket/study.zarr/tables)
    if not tdir.is_dir():
        raise InputError(f"{tdir}: not a folder; expected the --out folder of `cathodeflow describe`")
    missing = [n for n in REQUIRED_TABLES if not (tdir / f"{n}.parquet").exists()]
    if missing:
        raise InputError(f"{tdir}: tables {missing} not found; expected the Parquet tables "
                         "that `cathodeflow describe --out` writes")
    tables = {n: read_table(tdir / f"{n}.parquet", n) for n in SCHEMAS if (tdir / f"{n}.parquet").exists()}
    return Path(build_report(tables, out, truth=truth, store=store, cell_data=cell_data))


def report_store(store, out, *, truth: pd.DataFrame | None = None, cell_data=None) -> Path:
    """The report of a study store: its tables (refused, one line, unless ``cathodeflow
    run`` finished and they are current: :func:`cathodeflow.study.pipeline.current_tables_dir`),
    with stage provenance, warnings and per-image overlays (:func:`build_report`).

    Returns
    -------
    Path
        The report's ``index.html``.
    """
    from ..study.pipeline import current_tables_dir

    tdir = current_tables_dir(store)
    local = isinstance(store, (str, Path)) and "://" not in str(store)
    return report_tables(tdir, out, truth=truth, store=store if local else None, cell_data=cell_data)
