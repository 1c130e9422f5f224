"""The report folder: Table 1 (CSV, Markdown), figures (PNG) and an index.html.

``build_report(tables, out_dir)`` writes::

    table1.csv  table1.md           Table 1 of the paper (+ counts, pooled values, truth)
    table1.png                      porosity and crack intensity per condition
    crack_boxplots.png              Fig. 7 (kept cracks and adjusted data set)
    particle_boxplots.png           Fig. 8
    local_porosity.png              Fig. 9, one panel per stereological model
    index.html                      everything above on one page (plain HTML), with the
                                    images whose quality flags are raised

Table 1 rows come from the ``conditions`` table (DESIGN §4.2, §4.4 item 12: per-image ρ⁽ⁱ⁾
and λ⁽ⁱ⁾, mean and sample standard deviation over the images of a condition, pooled ρ of
eq. 11 beside it). When that table is empty but ``images`` is not, the same numbers are
derived from ``images`` here.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io.tables import SCHEMAS, conform, empty_table
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
    """The ``conditions`` table derived from ``images`` (DESIGN §4.4 item 12).

    Per condition: mean and sample std (ddof = 1) of the per-image ``porosity`` and
    ``crack_intensity_per_um2``; pooled porosity Σ crack_px / Σ (solid_px + crack_px)
    (eq. 11); pooled intensity Σ n_cracks / (η² Σ (solid_px + crack_px)) (eq. 12); counts.
    ``n_particles`` comes from ``particles`` (rows per condition) when given.
    """
    images = conform(images, "images")
    rows = []
    for cond in condition_order(images["condition"]):
        g = images[images["condition"] == cond]
        part_px = (g["solid_px"] + g["crack_px"]).astype(float)
        area_um2 = float((part_px * g["pixel_size_um"].astype(float) ** 2).sum())
        n_part = 0
        if particles is not None and len(particles):
            n_part = int((particles["condition"].astype(str) == cond).sum())
        rows.append({
            "condition": cond,
            "porosity_mean": float(g["porosity"].mean()),
            "porosity_std": float(g["porosity"].std(ddof=1)) if len(g) > 1 else math.nan,
            "porosity_pooled": float(g["crack_px"].sum() / part_px.sum()) if part_px.sum() else math.nan,
            "intensity_mean": float(g["crack_intensity_per_um2"].mean()),
            "intensity_std": float(g["crack_intensity_per_um2"].std(ddof=1)) if len(g) > 1 else math.nan,
            "intensity_pooled_per_um2": float(g["n_cracks"].sum() / area_um2) if area_um2 else math.nan,
            "n_images": int(len(g)),
            "n_cracks": int(g["n_cracks"].sum()),
            "n_cracks_unfiltered": int(g["n_cracks_unfiltered"].sum()),
            "n_particles": n_part,
        })
    if not rows:
        return empty_table("conditions")
    return conform(pd.DataFrame(rows), "conditions")


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
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:.{_decimals(x) if decimals is None else decimals}f}"


def _pm(mean: float, std: float) -> str:
    """'34.3 ± 6.6' (one decimal, as the paper's Table 1; three below 1)."""
    d = _decimals(mean)
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
        row = [condition_label(r["condition"]),
               _pm(r["porosity_mean_1e-3"], r["porosity_std_1e-3"])]
        if has_truth:
            row.append(_pm(r["porosity_true_1e-3"], r["porosity_true_std_1e-3"]))
        row.append(_pm(r["intensity_mean_1e-2_per_um2"], r["intensity_std_1e-2_per_um2"]))
        if has_truth:
            row.append(_pm(r["intensity_true_1e-2_per_um2"], r["intensity_true_std_1e-2_per_um2"]))
        row += [_num(r["porosity_pooled_1e-3"]), str(int(r["n_images"])),
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


def table1_html(t1: pd.DataFrame) -> str:
    header, rows = _display_rows(t1)
    esc = html.escape
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>",
           "<tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>")
    if not rows:
        out.append(f'<tr><td colspan="{len(header)}">no data</td></tr>')
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def flagged_images(images: pd.DataFrame) -> pd.DataFrame:
    """The images whose quality flags are raised: ``image_id``, ``condition``, ``flags``
    (:func:`~cathodeflow.measure.image.flag_summary`), in table order; images without flags
    ("ok") or from tables that predate them ("–") are left out."""
    images = conform(images, "images")
    rows = [{"image_id": str(r["image_id"]), "condition": str(r["condition"]), "flags": flag_summary(r)}
            for r in images.to_dict("records")]
    rows = [r for r in rows if r["flags"] not in ("ok", "–")]
    return pd.DataFrame(rows, columns=["image_id", "condition", "flags"])


def _flags_html(images: pd.DataFrame) -> list[str]:
    esc = html.escape
    flagged = flagged_images(images)
    parts = ["<h2>Quality flags</h2>",
             '<p class="note">Per image (images table): unmarked = components of S &gt; 0 with no '
             "marker (D &lt; r, eq. 10), which get no particle; holed = particles enclosing "
             "background (a hollow particle may be split); cracks outside = kept cracks in no "
             "particle; % cut = particles touching the image frame.</p>"]
    if not len(flagged):
        parts.append(f'<p class="note">No flag raised ({len(images)} image(s)).</p>')
        return parts
    parts += ["<table>", "<thead><tr><th>image</th><th>condition</th><th>flags</th></tr></thead>",
              "<tbody>"]
    parts += [f"<tr><td>{esc(r.image_id)}</td><td>{esc(r.condition)}</td><td>{esc(r.flags)}</td></tr>"
              for r in flagged.itertuples()]
    parts += ["</tbody>", "</table>"]
    return parts


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
th { background: #eef2f6; } td:first-child, th:first-child { text-align: left; }
figure { margin: 2em 0; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.4em; }
.note { color: #555; font-size: 0.9em; }
"""


def _index_html(title: str, t1: pd.DataFrame, counts: dict[str, int], provenance: str | None,
                images: pd.DataFrame) -> str:
    esc = html.escape
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">Generated {stamp} by cathodeflow. Rows: '
        + ", ".join(f"{esc(k)} {v}" for k, v in counts.items()) + ".</p>",
    ]
    if provenance:
        parts.append(f'<p class="note">{esc(provenance)}</p>')
    parts += [
        "<h2>Table 1</h2>",
        '<p class="note">Mean ± sample standard deviation over the images of each condition '
        "(DESIGN §4.4 item 12). Also as <a href=\"table1.csv\">table1.csv</a> and "
        '<a href="table1.md">table1.md</a>.</p>',
        table1_html(t1),
    ]
    parts += _flags_html(images)
    for name, caption in FIGURES.items():
        parts += ["<figure>", f'<img src="{name}" alt="{esc(name)}">',
                  f"<figcaption>{esc(caption)}</figcaption>", "</figure>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def build_report(
    tables: dict[str, pd.DataFrame],
    out_dir,
    *,
    title: str = "cathodeflow report",
    truth: pd.DataFrame | None = None,
    provenance: str | None = None,
) -> Path:
    """Write the report folder and return the path of its ``index.html``.

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

    Returns
    -------
    Path of ``out_dir/index.html``.
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
    t1.to_csv(out / "table1.csv", index=False)
    (out / "table1.md").write_text(
        f"# {title}: Table 1\n\n" + table1_markdown(t1), encoding="utf-8")

    conditions = condition_order(
        t1["condition"], tabs["images"]["condition"], tabs["cracks"]["condition"],
        tabs["particles"]["condition"], tabs["local_porosity"]["condition"])
    plot_table1(t1, out / "table1.png", title=title)
    plot_crack_boxplots(tabs["cracks"], conditions, out / "crack_boxplots.png")
    plot_particle_boxplots(tabs["particles"], conditions, out / "particle_boxplots.png")
    plot_local_porosity(tabs["local_porosity"], conditions, out / "local_porosity.png")

    counts = {name: len(df) for name, df in tabs.items()}
    index = out / "index.html"
    index.write_text(_index_html(title, t1, counts, provenance, tabs["images"]), encoding="utf-8")
    return index


def report_tables(tables_dir, out, *, truth: pd.DataFrame | None = None) -> Path:
    """Build the report folder from a folder of tables: the ``--out`` of ``cathodeflow
    describe`` (phase maps segmented elsewhere) or a store's tables (checked current by
    :func:`cathodeflow.study.pipeline.current_tables_dir` first); no ground truth needed.

    Parameters
    ----------
    tables_dir : str or Path
        Holds ``<name>.parquet`` for every table of DESIGN §4.2.
    out : str or Path
        The report folder (created if needed).
    truth : DataFrame, optional
        Ground truth per condition, shown beside the measurement (synthetic studies).

    Returns
    -------
    Path
        The report's ``index.html``.
    """
    from ..io.tables import read_table

    tdir = Path(tables_dir)
    if not tdir.is_dir():
        raise InputError(f"{tdir}: not a folder; expected the --out folder of `cathodeflow describe`")
    missing = [n for n in SCHEMAS if not (tdir / f"{n}.parquet").exists()]
    if missing:
        raise InputError(f"{tdir}: tables {missing} not found; expected the Parquet tables "
                         "that `cathodeflow describe --out` writes")
    tables = {n: read_table(tdir / f"{n}.parquet", n) for n in SCHEMAS}
    return Path(build_report(tables, out, truth=truth))
