"""Crack descriptors per condition beside electrochemical cell data (the paper's Fig. 6).

The paper measures capacity fade, loss of positive-electrode active material (LAM) and loss
of lithium inventory (LLI) per cycling temperature (Fig. 6, §3) and discusses them next to
the crack descriptors (Table 1, Fig. 7–9). This module joins a user's CSV of such cell
metrics to the study's conditions and correlates them with the descriptors.

* :func:`read_cell_data` — the CSV: one row per condition, a ``condition`` column and
  numeric metric columns with units in their names (``capacity_fade_percent``,
  ``lam_percent``, ``lli_percent``). A blank cell is a value not measured (NaN).
* :func:`link_cell_data` — per condition: ρ and λ as Table 1 (mean of the per-image values,
  ×10³ and ×10² µm⁻²), the median crack size d, length ℓ and width b of the kept cracks
  (eq. 13, 14, 16), the mean particle porosity ρ_p (eq. 20), joined with the cell metrics.
  Every condition of the study needs a row in the CSV (else an InputError listing both
  sets). Rows of conditions the study does not have are dropped with a
  :class:`CellDataWarning` naming them (a lab sheet often lists more cells than were
  imaged); the correlation is over the study's conditions only.
* :func:`correlations` — Pearson r and Spearman r_s for every metric × descriptor pair over
  the conditions, a bootstrap interval with the CONDITION as the unit
  (:func:`cathodeflow.report.stats.bootstrap_interval`: resamples of the n conditions with
  replacement; resamples where r is undefined, one distinct point, are left out) and a
  two-sided permutation p-value (all n! pairings when n! ≤ ``n_perm``, else ``n_perm``
  random ones). With n = 4 conditions, as in the paper, the interval spans most of
  [−1, 1] and p cannot go below 1/24: the numbers describe, they hardly test; every row
  carries n and a note saying so.
* :func:`plot_cell_links` — one scatter panel per metric × descriptor, points labelled with
  their condition, r and its interval in the title.
* :func:`cell_data_report` — all of the above into a report folder, with an HTML fragment
  for the report page.
"""

from __future__ import annotations

import base64
import html
import itertools
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CathodeflowWarning, InputError
from ..io.tables import conform
from ..measure.descriptors import conditions_table
from .figures import FORMATS, PALETTE, _figure, _no_data, _save, condition_label
from .stats import LEVEL, N_BOOT, N_PERM, Sample, _rng, bootstrap_interval, study_conditions

__all__ = [
    "DESCRIPTORS", "CellDataWarning", "cell_data_report", "cell_links_figure", "correlations",
    "link_cell_data", "plot_cell_links", "read_cell_data",
]


class CellDataWarning(CathodeflowWarning):
    """Rows of the cell-data CSV whose conditions the study does not have (dropped)."""


#: Descriptor column of :func:`link_cell_data` → axis label. Table 1 units as
#: :func:`cathodeflow.report.build.table1` (ρ ×10³, λ ×10² µm⁻²).
DESCRIPTORS = {
    "porosity_mean_1e-3": "porosity ρ [10⁻³]",
    "intensity_mean_1e-2_per_um2": "crack intensity λ [10⁻² µm⁻²]",
    "crack_d_median_um": "median crack size d [µm]",
    "crack_length_median_um": "median crack length ℓ [µm]",
    "crack_width_median_um": "median crack width b [µm]",
    "particle_porosity_mean": "mean particle porosity ρ_p",
}
#: Crack table column → descriptor column (medians of the kept cracks).
_CRACK_MEDIANS = {"d_um": "crack_d_median_um", "length_um": "crack_length_median_um",
                  "width_um": "crack_width_median_um"}
#: Columns of :func:`correlations`.
COLUMNS = {
    "metric": "string", "descriptor": "string", "n": "Int64",
    "pearson_r": "Float64", "pearson_ci_low": "Float64", "pearson_ci_high": "Float64",
    "pearson_p": "Float64", "spearman_r": "Float64", "spearman_ci_low": "Float64",
    "spearman_ci_high": "Float64", "spearman_p": "Float64", "level": "Float64",
    "note": "string",
}


# --------------------------------------------------------------------------------------
# Reading and linking
# --------------------------------------------------------------------------------------
def read_cell_data(path) -> pd.DataFrame:
    """Read and check a CSV of per-condition cell metrics.

    Parameters
    ----------
    path : str or Path
        A CSV with a header: ``condition`` and ≥ 1 numeric metric column, units in the
        names (``capacity_fade_percent``, ``lam_percent``, ``lli_percent``); one row per
        condition, named as in the study ("20C"). Blank cells are values not measured.

    Returns
    -------
    DataFrame, shape (n_conditions, 1 + n_metrics): ``condition`` (string) and the metrics
    (float64, NaN where blank), in file order; ``attrs["source"]`` is the path.

    Raises
    ------
    InputError
        One line naming the file and, where it applies, the column and line: unreadable
        file, no ``condition`` column, no metric column, a blank or repeated condition, a
        value that is not a finite number.
    """
    path = Path(path)
    expect = ("expected a CSV with a 'condition' column and numeric metric columns such as "
              "capacity_fade_percent, lam_percent, lli_percent")
    try:
        raw = pd.read_csv(path, dtype=str, header=None, keep_default_na=False,
                          skipinitialspace=True)  # header read as a row: repeats not renamed
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; {expect}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError(f"{path}: cannot read it as CSV ({' '.join(str(e).split())}); "
                         f"{expect}") from None
    header = [str(c).strip() for c in raw.iloc[0]]
    raw = raw.iloc[1:].reset_index(drop=True)
    raw.columns = header
    if "condition" not in raw.columns:
        raise InputError(f"{path}: no 'condition' column; has {list(raw.columns)}; {expect}")
    if len(set(header)) != len(header) or "" in header:
        raise InputError(f"{path}: columns {list(raw.columns)} include repeated or unnamed ones; "
                         "expected one distinct name per column")
    metrics = [c for c in raw.columns if c != "condition"]
    if not metrics:
        raise InputError(f"{path}: only a 'condition' column; {expect}")
    if not len(raw):
        raise InputError(f"{path}: no data rows; {expect}")
    cond = raw["condition"].str.strip()
    line = np.arange(len(raw)) + 2  # line 1 is the header
    blank = np.flatnonzero(cond == "")
    if len(blank):
        raise InputError(f"{path}: line {line[blank[0]]}: blank condition; expected a condition "
                         "name as in the study (e.g. 20C)")
    first: dict[str, int] = {}
    for i, c in enumerate(cond):
        if c in first:
            raise InputError(f"{path}: condition {c!r} on lines {first[c]} and {line[i]}; "
                             "expected one row per condition")
        first[c] = int(line[i])
    out = pd.DataFrame({"condition": pd.Series(cond.to_numpy(), dtype="string")})
    for col in metrics:
        text = raw[col].str.strip()
        vals = pd.to_numeric(text.mask(text == ""), errors="coerce").astype(float)
        bad = np.flatnonzero((text != "").to_numpy() & ~np.isfinite(vals.to_numpy()))
        if len(bad):
            i = bad[0]
            raise InputError(f"{path}: column {col!r}, line {line[i]} (condition {cond[i]!r}): "
                             f"{raw[col][i]!r} is not a finite number; expected a number or a "
                             "blank cell")
        out[col] = vals.to_numpy()
    out.attrs["source"] = str(path)
    return out


def _descriptors(tables: dict) -> pd.DataFrame:
    """Per study condition (natural order): ``n_images`` and the :data:`DESCRIPTORS`."""
    conds = list(study_conditions(tables))
    out = pd.DataFrame({"condition": pd.Series(conds, dtype="string")})
    cond_t = tables.get("conditions")
    images = tables.get("images")
    if (cond_t is None or not len(cond_t)) and images is not None and len(images):
        empty = pd.DataFrame({"condition": pd.Series([], dtype="string")})
        particles = tables.get("particles")
        cond_t = conditions_table(conform(images, "images"), empty,
                                  particles if particles is not None else empty)
    table1 = (cond_t.assign(condition=cond_t["condition"].astype(str)).set_index("condition")
              if cond_t is not None and len(cond_t) else None)
    for col, src, scale in (("n_images", "n_images", 1), ("porosity_mean_1e-3", "porosity_mean", 1e3),
                            ("intensity_mean_1e-2_per_um2", "intensity_mean", 1e2)):
        vals = (table1[src].reindex(conds).to_numpy(float) * scale if table1 is not None
                else np.full(len(conds), np.nan))
        out[col] = vals
    out["n_images"] = out["n_images"].astype("Int64")
    cracks = tables.get("cracks")
    for src, col in _CRACK_MEDIANS.items():
        out[col] = np.nan
        if cracks is not None and len(cracks) and src in cracks.columns:
            kept = cracks[cracks["kept"].fillna(False).astype(bool)] if "kept" in cracks else cracks
            med = kept.groupby(kept["condition"].astype(str))[src].median()
            out[col] = med.reindex(conds).to_numpy(float)
    particles = tables.get("particles")
    out["particle_porosity_mean"] = np.nan
    if particles is not None and len(particles) and "porosity" in particles.columns:
        mean = particles.groupby(particles["condition"].astype(str))["porosity"].mean()
        out["particle_porosity_mean"] = mean.reindex(conds).to_numpy(float)
    return out


def link_cell_data(tables: dict[str, pd.DataFrame], cell) -> pd.DataFrame:
    """The crack descriptors of each study condition joined with its cell metrics.

    Parameters
    ----------
    tables : dict of str → DataFrame
        Tables of DESIGN §4.2 (``images``, ``cracks``, ``particles``, ``conditions``).
    cell : DataFrame or path
        :func:`read_cell_data` output, or the path of the CSV.

    Returns
    -------
    DataFrame, one row per study condition (natural order): ``condition``, ``n_images``,
    the :data:`DESCRIPTORS` columns (NaN where the tables lack the data), then the metric
    columns. ``attrs``: ``metrics``, ``descriptors`` (lists of column names), ``source``.

    Raises
    ------
    InputError
        A study condition without a row in the cell data (listing both sets), a metric
        column named like a descriptor. Cell-data rows of conditions the study lacks are
        dropped with a :class:`CellDataWarning`.
    """
    if not isinstance(cell, pd.DataFrame):
        cell = read_cell_data(cell)
    source = cell.attrs.get("source", "cell data")
    if "condition" not in cell.columns:
        raise InputError(f"{source}: no 'condition' column; has {list(cell.columns)}")
    metrics = [c for c in cell.columns if c != "condition"]
    clash = [c for c in metrics if c in DESCRIPTORS or c == "n_images"]
    if clash:
        raise InputError(f"{source}: metric columns {clash} have the names of crack descriptors; "
                         "expected other names (e.g. capacity_fade_percent)")
    desc = _descriptors(tables)
    study = [str(c) for c in desc["condition"]]
    given = [str(c) for c in cell["condition"]]
    missing = [c for c in study if c not in given]
    if missing:
        raise InputError(f"{source}: no row for study conditions {missing} (study: {study}; cell "
                         f"data: {given}); expected one row per condition of the study")
    extra = [c for c in given if c not in study]
    if extra:
        warnings.warn(f"{source}: rows of conditions {extra} are not in the study {study}; "
                      "left out of the correlations", CellDataWarning, stacklevel=2)
    m = cell.assign(condition=cell["condition"].astype(str)).set_index("condition")
    out = desc.copy()
    for c in metrics:
        out[c] = pd.to_numeric(m[c], errors="coerce").reindex(study).to_numpy(float)
    out.attrs.update(metrics=metrics, descriptors=list(DESCRIPTORS), source=source)
    return out


# --------------------------------------------------------------------------------------
# Correlations
# --------------------------------------------------------------------------------------
def _weighted_r(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row's weighted sample (multiplicities ``w``, shape (B, n); ``x``,
    ``y`` shape (n,) or (B, n)); NaN where the drawn x or y are all equal. Shape (B,)."""
    w = np.asarray(w, dtype=float)
    x = np.broadcast_to(x, w.shape)
    y = np.broadcast_to(y, w.shape)
    drawn = w > 0
    const = np.zeros(len(w), dtype=bool)
    for v in (x, y):
        const |= np.where(drawn, v, -np.inf).max(axis=1) == np.where(drawn, v, np.inf).min(axis=1)
    sw = w.sum(axis=1, keepdims=True)
    dx = x - (w * x).sum(axis=1, keepdims=True) / sw
    dy = y - (w * y).sum(axis=1, keepdims=True) / sw
    sxy, sxx, syy = ((w * a * b).sum(axis=1) for a, b in ((dx, dy), (dx, dx), (dy, dy)))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    return np.where(const, np.nan, np.clip(r, -1.0, 1.0))


def _weighted_ranks(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Mid-ranks (1-based, ties averaged) of x within each row's weighted sample, (B, n)."""
    w = np.asarray(w, dtype=float)
    below = w @ (x[None, :] < x[:, None]).T.astype(float)
    equal = w @ (x[None, :] == x[:, None]).T.astype(float)
    return below + (equal + 1) / 2


def _pearson_sample(x, y) -> Sample:
    return Sample(len(x), lambda w: _weighted_r(w, x, y))


def _spearman_sample(x, y) -> Sample:
    return Sample(len(x), lambda w: _weighted_r(w, _weighted_ranks(w, x), _weighted_ranks(w, y)))


def _permutation_p(x, y, r: float, *, n_perm: int, seed: int, key: Sequence) -> float:
    """Two-sided permutation p of |r| (r of x against permuted y): exact over all n!
    pairings when n! ≤ n_perm, else (1 + #{|r*| ≥ |r|}) / (n_perm + 1)."""
    n = len(x)
    if not np.isfinite(r):
        return math.nan
    if math.factorial(n) <= n_perm:
        perms = np.array(list(itertools.permutations(range(n))))
        exact = True
    else:
        perms = _rng(seed, "perm", *key).permuted(np.tile(np.arange(n), (int(n_perm), 1)), axis=1)
        exact = False
    null = _weighted_r(np.ones(perms.shape), np.broadcast_to(x, perms.shape), y[perms])
    hits = np.sum(np.abs(null) >= abs(r) - 1e-12)
    return float(hits / len(perms)) if exact else float((1 + hits) / (n_perm + 1))


def correlations(
    linked: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
    method: str = "expanded", n_perm: int = N_PERM,
) -> pd.DataFrame:
    """Pearson and Spearman correlation of every metric with every descriptor, over conditions.

    Parameters
    ----------
    linked : DataFrame
        :func:`link_cell_data` output (``attrs["metrics"]``, ``attrs["descriptors"]``; without
        them every non-descriptor numeric column but ``n_images`` is a metric).
    n_boot, seed, level, method : keyword-only
        Bootstrap over conditions (:func:`cathodeflow.report.stats.bootstrap_interval`;
        ``"expanded"``, ``"percentile"`` or ``"bca"``).
    n_perm : int, keyword-only
        Random pairings of the permutation test when n! exceeds it (else all n!).

    Returns
    -------
    DataFrame, one row per (metric, descriptor), columns :data:`COLUMNS`: ``n`` (conditions
    where both are known), ``{pearson,spearman}_{r,ci_low,ci_high,p}``, ``level``, ``note``.
    r, interval and p are missing (``pd.NA``) with n < 3 or a constant variable.
    """
    descriptors = linked.attrs.get("descriptors") or [c for c in DESCRIPTORS if c in linked]
    metrics = linked.attrs.get("metrics") or [
        c for c in linked.columns if c not in descriptors and c not in ("condition", "n_images")
        and pd.api.types.is_numeric_dtype(linked[c])]
    rows = []
    for met in metrics:
        for des in descriptors:
            x = pd.to_numeric(linked[des], errors="coerce").to_numpy(float)
            y = pd.to_numeric(linked[met], errors="coerce").to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            x, y, n = x[ok], y[ok], int(ok.sum())
            row = {"metric": met, "descriptor": des, "n": n, "level": float(level)}
            if n < 3:
                row["note"] = f"n = {n} conditions: fewer than 3, no correlation"
                rows.append(row)
                continue
            notes = [f"n = {n} conditions" + (": the interval is very wide, p ≥ "
                                              f"1/{math.factorial(n)}" if n <= 5 else "")]
            for kind, sample in (("pearson", _pearson_sample(x, y)),
                                 ("spearman", _spearman_sample(x, y))):
                est, lo, hi, note = bootstrap_interval(sample, n_boot=n_boot, level=level,
                                                       method=method, seed=seed,
                                                       key=(kind, met, des))
                if not np.isfinite(est):
                    notes.append(f"{kind}: undefined (a constant variable)")
                    continue
                xr, yr = (x, y) if kind == "pearson" else (
                    _weighted_ranks(np.ones((1, n)), x)[0], _weighted_ranks(np.ones((1, n)), y)[0])
                row.update({f"{kind}_r": est, f"{kind}_ci_low": lo, f"{kind}_ci_high": hi,
                            f"{kind}_p": _permutation_p(xr, yr, est, n_perm=n_perm, seed=seed,
                                                        key=(kind, met, des))})
                if note and kind == "pearson":
                    notes.append(f"bootstrap over conditions: {note}")
            row["note"] = "; ".join(notes)
            rows.append(row)
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    return out.astype(COLUMNS)


# --------------------------------------------------------------------------------------
# Figure and report fragment
# --------------------------------------------------------------------------------------
def _r_title(row) -> str:
    if row is None or pd.isna(row["pearson_r"]):
        return f"r undefined (n = {0 if row is None else int(row['n'])})"
    text = f"r = {row['pearson_r']:.2f}"
    if not pd.isna(row["pearson_ci_low"]):
        text += f" [{row['pearson_ci_low']:.2f}, {row['pearson_ci_high']:.2f}]"
    return text + f", n = {int(row['n'])}"


def cell_links_figure(linked: pd.DataFrame, corr: pd.DataFrame):
    """Scatter grid (a matplotlib Figure): one row per metric of ``corr``, one column per
    descriptor.

    Panel (i, j) holds one scatter (``ax.collections[0]``: offsets = (descriptor, metric) of
    the conditions where both are known, in condition order), each point labelled with its
    condition (``ax.texts``), and the title "r = … [low, high], n = …" (Pearson, bootstrap
    over conditions, from ``corr``, :func:`correlations` output).
    """
    descriptors = linked.attrs.get("descriptors") or [c for c in DESCRIPTORS if c in linked]
    metrics = list(dict.fromkeys(corr["metric"]))
    fig, axes = _figure(max(len(metrics), 1), len(descriptors), size=(3.0, 2.6))
    if not metrics:
        for ax in axes.flat:
            _no_data(ax, "no cell metrics")
        return fig
    byp = {(r["metric"], r["descriptor"]): r for r in corr.to_dict("records")}
    conds = np.asarray([str(c) for c in linked["condition"]])
    colours = np.array([PALETTE[i % len(PALETTE)] for i in range(len(conds))])
    for i, met in enumerate(metrics):
        for j, des in enumerate(descriptors):
            ax = axes[i, j]
            x = pd.to_numeric(linked[des], errors="coerce").to_numpy(float)
            y = pd.to_numeric(linked[met], errors="coerce").to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            if not ok.any():
                _no_data(ax)
            else:
                ax.scatter(x[ok], y[ok], c=list(colours[ok]), s=30, zorder=3)
                for xi, yi, c in zip(x[ok], y[ok], conds[ok]):
                    ax.annotate(condition_label(c), (xi, yi), textcoords="offset points",
                                xytext=(4, 3), fontsize=7)
                ax.grid(color="0.9", linewidth=0.8)
                ax.set_axisbelow(True)
            ax.set_title(_r_title(byp.get((met, des))), fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel(DESCRIPTORS.get(des, des), fontsize=8)
            if j == 0:
                ax.set_ylabel(met, fontsize=8)
            ax.tick_params(labelsize=7)
    return fig


def plot_cell_links(
    linked: pd.DataFrame, path, *, corr: pd.DataFrame | None = None,
    formats: Sequence[str] = FORMATS, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
) -> Path:
    """Write :func:`cell_links_figure` in each of ``formats`` (PNG and SVG by default);
    ``corr`` is :func:`correlations` output, computed here (``n_boot``, ``seed``,
    ``level``) when None. Returns the path of the first format written."""
    if corr is None:
        corr = correlations(linked, n_boot=n_boot, seed=seed, level=level)
    return _save(cell_links_figure(linked, corr), path, formats)


def _fmt(x) -> str:
    return "–" if pd.isna(x) else f"{float(x):.2f}"


def _html_fragment(corr: pd.DataFrame, png: Path, n: int, level: float) -> str:
    esc = html.escape
    uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    head = ["metric", "descriptor", "n", "Pearson r", f"{level:.0%} CI", "p (perm.)",
            "Spearman r_s", f"{level:.0%} CI", "p (perm.)"]
    body = []
    for r in corr.to_dict("records"):
        cells = [r["metric"], DESCRIPTORS.get(r["descriptor"], r["descriptor"]), str(r["n"])]
        for k in ("pearson", "spearman"):
            ci = ("–" if pd.isna(r[f"{k}_ci_low"])
                  else f"[{_fmt(r[f'{k}_ci_low'])}, {_fmt(r[f'{k}_ci_high'])}]")
            cells += [_fmt(r[f"{k}_r"]), ci, "–" if pd.isna(r[f"{k}_p"]) else f"{r[f'{k}_p']:.3f}"]
        body.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    caution = (f"With n = {n} conditions the bootstrap interval (over conditions) is very wide and "
               f"the permutation p-value cannot fall below 1/{math.factorial(n)}: these numbers "
               "describe the conditions at hand, they are not evidence of an effect."
               if 0 < n <= 5 else f"n = {n} conditions; intervals bootstrap the conditions.")
    return "\n".join([
        "<h2>Cell data</h2>",
        f'<p class="note">{esc(caution)}</p>',
        '<table class="stats">',
        "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>",
        "<tbody>", *body, "</tbody>", "</table>",
        f'<figure><img src="{uri}" alt="cell metrics against crack descriptors">'
        "<figcaption>Cell metrics against crack descriptors, one point per condition; "
        "title: Pearson r [bootstrap interval], n.</figcaption></figure>",
    ])


def cell_data_report(tables: dict[str, pd.DataFrame], csv_path, out_dir, *,
                     n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """Link a cell-data CSV to the study and write its part of the report.

    Writes ``cell_data.csv`` (:func:`link_cell_data`), ``cell_correlations.csv``
    (:func:`correlations`) and ``cell_links.{png,svg}`` (:func:`plot_cell_links`) into
    ``out_dir``.

    Returns
    -------
    dict with ``linked`` and ``correlations`` (DataFrames), ``tables`` (name → Path),
    ``figures`` (file name → Path, PNG and SVG) and ``html`` (a fragment: heading, caution
    about n, correlation table, the figure embedded as base64 PNG) for the report page.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    linked = link_cell_data(tables, read_cell_data(csv_path))
    corr = correlations(linked, n_boot=n_boot, seed=seed, level=level)
    paths = {"cell_data.csv": out / "cell_data.csv", "cell_correlations.csv": out / "cell_correlations.csv"}
    linked.to_csv(paths["cell_data.csv"], index=False, na_rep="")
    corr.to_csv(paths["cell_correlations.csv"], index=False, na_rep="")
    png = plot_cell_links(linked, out / "cell_links.png", corr=corr, formats=FORMATS)
    figures = {f"cell_links.{f}": png.with_suffix(f".{f}") for f in FORMATS}
    return {"linked": linked, "correlations": corr, "tables": paths, "figures": figures,
            "html": _html_fragment(corr, png, len(linked), level)}
