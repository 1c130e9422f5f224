"""Figures of the report (matplotlib, Agg; no pyplot, no global backend change).

* :func:`plot_table1` — Table 1 as a figure: global particle porosity ρ (eq. 11) and crack
  intensity λ (eq. 12) per condition, mean ± standard deviation over images, truth markers.
* :func:`plot_crack_boxplots` — Fig. 7: crack size d, length ℓ, width b (eq. 13, 14, 16)
  per condition, for the kept cracks and for the adjusted data set (eq. 19).
* :func:`plot_particle_boxplots` — Fig. 8: particle porosity ρ_p (eq. 20) and specific
  surface area a (eq. 21) per condition (optionally without particles cut by the frame).
* :func:`plot_local_porosity` — Fig. 9: local porosity ρ_local([a, b)) (eq. 37–40) per
  relative-distance bin d_center and condition, with bootstrap intervals over images where
  the table has per-image rows, and the solid area of each bin below; one panel pair per
  stereological model.

Boxplots follow the paper: boxes from the first to the third quartile, red median line,
whiskers exactly at the 5th and 95th percentiles (``np.percentile``, linear interpolation;
matplotlib's own ``whis=(5, 95)`` would stop at the last data point inside them), every
point beyond them drawn as an outlier, n under each box, one y scale per quantity (the kept
and adjusted panels of a quantity share it). Every function draws "no data" instead of
failing on empty tables and writes PNG and SVG (``formats``).

The data behind the figures come from :func:`box_stats`, :func:`condition_samples` and
:func:`local_porosity_data`, which the tests check without reading pixels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .stats import (
    LEVEL,
    N_BOOT,
    bootstrap_interval,
    condition_order,
    natural_key,
    ratio_sample,
)

__all__ = [
    "PALETTE", "box_stats", "condition_label", "condition_order", "condition_samples",
    "crack_boxplots_figure", "draw_boxplot", "local_porosity_data", "local_porosity_figure",
    "natural_key", "particle_boxplots_figure", "plot_crack_boxplots", "plot_local_porosity",
    "plot_particle_boxplots", "plot_table1", "select_particles",
]

#: Colours per condition (cycled), colour-blind friendly (Okabe–Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
DPI = 120
#: Boxplots switch to a log axis when positive data span more than this factor.
LOG_SPAN = 100.0
#: Whisker percentiles of the paper's boxplots (Fig. 7, 8).
WHISKERS = (5.0, 95.0)
#: File formats written by default.
FORMATS = ("png", "svg")


def condition_label(condition: str) -> str:
    """Display label: '20C' → '20 °C'; other names unchanged."""
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*°?\s*C\s*", str(condition))
    return f"{m.group(1)} °C" if m else str(condition)


def _figure(nrows: int, ncols: int, *, size=(4.2, 3.4), **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=DPI, layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False, **kw))
    return fig, axes


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            fontsize=12, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path, formats: Sequence[str] = FORMATS) -> Path:
    """Write ``path`` in each format (suffix replaced); return the path of the first."""
    path = Path(path)
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        raise InputError(f"formats: got {list(formats)}; expected some of ['png', 'svg', 'pdf']")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        p = path.with_suffix(f".{fmt}")
        fig.savefig(p, format=fmt, dpi=DPI)
        written.append(p)
    return path if path in written else written[0]


def _finite(x) -> np.ndarray:
    x = np.asarray(pd.to_numeric(pd.Series(x, dtype="object"), errors="coerce"), dtype=float)
    return x[np.isfinite(x)]


# --------------------------------------------------------------------------------------
# Boxplots (Fig. 7, 8)
# --------------------------------------------------------------------------------------
def condition_samples(table: pd.DataFrame, col: str, conditions: Sequence[str]) -> list[np.ndarray]:
    """The finite values of ``table[col]`` per condition, in ``conditions`` order
    (shape (n_c,) each; a condition without rows gives an empty array)."""
    if not len(table) or col not in table.columns:
        return [np.empty(0) for _ in conditions]
    cond = table["condition"].astype(str)
    return [_finite(table.loc[cond == str(k), col]) for k in conditions]


def box_stats(x) -> dict:
    """Paper-style box statistics of one sample (1-D, finite values, n ≥ 1).

    Returns the dict :meth:`matplotlib.axes.Axes.bxp` draws: ``q1``, ``med``, ``q3``
    (25th, 50th, 75th percentile), ``whislo``/``whishi`` = 5th/95th percentile, ``fliers`` =
    the values below/above them, ``mean``, and ``n``.
    """
    x = np.asarray(x, dtype=float)
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    lo, hi = np.percentile(x, WHISKERS)
    return {"q1": q1, "med": med, "q3": q3, "whislo": lo, "whishi": hi,
            "fliers": x[(x < lo) | (x > hi)], "mean": float(x.mean()), "n": len(x)}


def _use_log(samples: Sequence[np.ndarray]) -> bool:
    data = [s for s in samples if len(s)]
    if not data:
        return False
    allv = np.concatenate(data)
    return bool(allv.min() > 0 and allv.max() / allv.min() > LOG_SPAN)


def draw_boxplot(ax, samples: Sequence[np.ndarray], labels: Sequence[str], ylabel: str, *,
                 log: bool | None = None) -> dict:
    """Paper-style boxplots of one sample per condition on ``ax``.

    Parameters
    ----------
    ax : matplotlib Axes
    samples : sequence of 1-D arrays (finite values), one per condition; empty ones leave a gap
    labels : sequence of str, the condition labels (x ticks read "label\\nn=…")
    ylabel : str
    log : bool, optional, keyword-only
        Log y axis; default: when all values are positive and span more than
        :data:`LOG_SPAN`.

    Returns
    -------
    dict
        What :meth:`~matplotlib.axes.Axes.bxp` returns (``boxes``, ``medians``, ``whiskers``
        (two per drawn box: lower then upper), ``caps``, ``fliers``), plus ``positions``;
        empty when there is no data.
    """
    if not any(len(s) for s in samples):
        _no_data(ax)
        ax.set_ylabel(ylabel)
        return {}
    pos = [i for i, s in enumerate(samples, 1) if len(s)]
    stats = [box_stats(s) for s in samples if len(s)]
    art = ax.bxp(
        stats, positions=pos, widths=0.6, patch_artist=True, showfliers=True,
        boxprops=dict(facecolor="#dde6f0", edgecolor="0.2"),
        medianprops=dict(color="red", linewidth=1.6),
        whiskerprops=dict(color="0.2"), capprops=dict(color="0.2"),
        flierprops=dict(marker=".", markersize=2.5, markerfacecolor="0.45",
                        markeredgecolor="none", alpha=0.5, rasterized=True),
    )
    if _use_log(samples) if log is None else log:
        ax.set_yscale("log")
        ylabel = f"{ylabel} (log scale)"
    ax.set_xticks(range(1, len(labels) + 1))
    ax.set_xticklabels([f"{lab}\nn={len(smp)}" for lab, smp in zip(labels, samples)])
    ax.set_xlim(0.4, len(labels) + 0.6)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    return {**art, "positions": pos}


def _boxplot_grid(tables_rows, cols, conditions, *, titles, size) -> tuple:
    """Rows of panels (one table per row), columns = quantities; one y scale per column."""
    fig, axes = _figure(len(tables_rows), len(cols), size=size)
    labels = [condition_label(c) for c in conditions]
    for c, (col, ylabel) in enumerate(cols):
        per_row = [condition_samples(t, col, conditions) for t in tables_rows]
        log = _use_log([s for row in per_row for s in row])
        drawn = []
        for r, samples in enumerate(per_row):
            ax = axes[r, c]
            if not conditions:
                _no_data(ax)
                ax.set_ylabel(ylabel)
            elif draw_boxplot(ax, samples, labels, ylabel, log=log):
                drawn.append(ax)
            ax.set_title(titles[r][c], fontsize=9, loc="left")
        if len(drawn) > 1:  # the same y range on every panel of this quantity
            lims = np.array([a.get_ylim() for a in drawn])
            for a in drawn:
                a.set_ylim(lims[:, 0].min(), lims[:, 1].max())
    return fig, axes


def plot_crack_boxplots(cracks: pd.DataFrame, conditions: list[str], path, *,
                        formats: Sequence[str] = FORMATS) -> Path:
    """Fig. 7 (:func:`crack_boxplots_figure`) written to ``path`` in each of ``formats``;
    returns ``path``."""
    return _save(crack_boxplots_figure(cracks, conditions), path, formats)


def crack_boxplots_figure(cracks: pd.DataFrame, conditions: Sequence[str]):
    """Fig. 7: d, ℓ, b per condition; top row kept cracks, bottom row adjusted data set
    (eq. 19); a matplotlib Figure, axes (2, 3)."""
    cols = [("d_um", "crack size d [µm]"), ("length_um", "crack length ℓ [µm]"),
            ("width_um", "crack width b [µm]")]
    rows = []
    for flag in ("kept", "adjusted"):
        rows.append(cracks[cracks[flag].fillna(False).astype(bool)] if len(cracks) else cracks)
    names = ["kept cracks (d ≥ 2.5 η)", "adjusted data set (eq. 19)"]
    titles = [[f"({'abcdef'[3 * r + c]}) {names[r]}" for c in range(3)] for r in range(2)]
    fig, _ = _boxplot_grid(rows, cols, conditions, titles=titles, size=(3.9, 3.2))
    return fig


def plot_particle_boxplots(particles: pd.DataFrame, conditions: list[str], path, *,
                           exclude_cut: bool = False, formats: Sequence[str] = FORMATS) -> Path:
    """Fig. 8 (:func:`particle_boxplots_figure`) written to ``path`` in each of ``formats``;
    returns ``path``."""
    return _save(particle_boxplots_figure(particles, conditions, exclude_cut=exclude_cut),
                 path, formats)


def select_particles(particles: pd.DataFrame, *, exclude_cut: bool = False) -> pd.DataFrame:
    """``particles``, without the particles cut by the image frame (``touches_border``)
    when ``exclude_cut``."""
    if not exclude_cut or not len(particles):
        return particles
    if "touches_border" not in particles.columns:
        raise InputError("particles: exclude_cut needs a 'touches_border' column; has "
                         f"{list(particles.columns)}")
    return particles[~particles["touches_border"].fillna(False).astype(bool)]


def particle_boxplots_figure(particles: pd.DataFrame, conditions: Sequence[str], *,
                             exclude_cut: bool = False):
    """Fig. 8: particle porosity ρ_p [–] and specific surface area a [µm⁻¹] per condition,
    optionally without the particles cut by the frame; a Figure, axes (1, 2)."""
    particles = select_particles(particles, exclude_cut=exclude_cut)
    cols = [("porosity", "particle porosity ρ_p [–]"),
            ("ssa_per_um", "specific surface area a [µm⁻¹]")]
    which = "particles not cut by the frame" if exclude_cut else "all particles"
    titles = [[f"(a) {which}", f"(b) {which}"]]
    fig, _ = _boxplot_grid([particles], cols, conditions, titles=titles, size=(4.4, 3.5))
    return fig


# --------------------------------------------------------------------------------------
# Local porosity (Fig. 9)
# --------------------------------------------------------------------------------------
def _bin_label(lo: float, hi: float) -> str:
    return f"≥{lo:g}" if not np.isfinite(hi) else f"[{lo:g}, {hi:g})"


def local_porosity_data(
    local: pd.DataFrame, conditions: Sequence[str] | None = None, *, n_boot: int = N_BOOT,
    level: float = LEVEL, method: str = "expanded", seed: int = 0,
) -> pd.DataFrame:
    """The numbers of Fig. 9, one row per model, condition and bin.

    Parameters
    ----------
    local : DataFrame
        The ``local_porosity`` table (condition, method, bin_lo, bin_hi, crack_um2,
        solid_um2), pooled per condition, or with an ``image_id`` column (per-image rows),
        which also gives bootstrap intervals over the images of a condition.
    conditions : sequence of str, optional
        Conditions to keep, in order (default: all, natural order).
    n_boot, level, method, seed : keyword-only
        Bootstrap options (:func:`cathodeflow.report.stats.bootstrap_interval`).

    Returns
    -------
    DataFrame
        ``method``, ``condition``, ``bin_lo``, ``bin_hi``, ``crack_um2``, ``solid_um2``
        (summed over images), ``porosity`` = crack / (crack + solid) (eq. 40; NaN for an
        empty bin, never 0), ``ci_low``, ``ci_high`` (NaN without per-image rows, with one
        image, or for an empty bin), ``n_images``. Every (model, condition) gets every bin
        of its model (absent bins: zero areas, porosity NaN).
    """
    cols = ["method", "condition", "bin_lo", "bin_hi", "crack_um2", "solid_um2", "porosity",
            "ci_low", "ci_high", "n_images"]
    if local is None or not len(local):
        return pd.DataFrame({c: pd.Series([], dtype=float if c not in ("method", "condition")
                                          else object) for c in cols})
    need = ["condition", "method", "bin_lo", "bin_hi", "crack_um2", "solid_um2"]
    missing = [c for c in need if c not in local.columns]
    if missing:
        raise InputError(f"local_porosity: lacks columns {missing}; has {list(local.columns)}")
    loc = local.assign(condition=local["condition"].astype(str), method=local["method"].astype(str))
    per_image = "image_id" in loc.columns
    if per_image:
        loc = loc.assign(image_id=loc["image_id"].astype(str))
    conds = list(conditions) if conditions is not None else condition_order(loc["condition"])
    rows = []
    for model in sorted(set(loc["method"]), key=lambda m: ({"paper": 0, "wicksell": 1}.get(m, 9), m)):
        sub = loc[loc["method"] == model]
        bins = sub[["bin_lo", "bin_hi"]].drop_duplicates().sort_values(["bin_lo", "bin_hi"])
        for cond in conds:
            g = sub[sub["condition"] == cond]
            ids = sorted(set(g["image_id"])) if per_image else []
            for lo, hi in bins.itertuples(index=False):
                b = g[(g["bin_lo"] == lo) & (g["bin_hi"] == hi)]
                crack, solid = float(b["crack_um2"].sum()), float(b["solid_um2"].sum())
                row = dict(method=model, condition=cond, bin_lo=float(lo), bin_hi=float(hi),
                           crack_um2=crack, solid_um2=solid,
                           porosity=crack / (crack + solid) if crack + solid > 0 else np.nan,
                           ci_low=np.nan, ci_high=np.nan, n_images=len(ids) if per_image else np.nan)
                if per_image and len(ids) > 1 and crack + solid > 0:
                    pos = {k: i for i, k in enumerate(ids)}
                    o = np.array([pos[k] for k in b["image_id"]], dtype=np.int64)
                    c_i = np.bincount(o, b["crack_um2"].to_numpy(float), minlength=len(ids))
                    s_i = np.bincount(o, b["solid_um2"].to_numpy(float), minlength=len(ids))
                    _, lo_ci, hi_ci, _ = bootstrap_interval(
                        ratio_sample(c_i, c_i + s_i), n_boot=n_boot, level=level, method=method,
                        seed=seed, key=("local", model, cond, lo, hi))
                    row["ci_low"] = np.nan if lo_ci is None else lo_ci
                    row["ci_high"] = np.nan if hi_ci is None else hi_ci
                rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def plot_local_porosity(local: pd.DataFrame, conditions: list[str], path, *,
                        n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0,
                        formats: Sequence[str] = FORMATS) -> Path:
    """Fig. 9 (:func:`local_porosity_figure`) written to ``path`` in each of ``formats``;
    returns ``path``."""
    fig = local_porosity_figure(local, conditions, n_boot=n_boot, level=level, seed=seed)
    return _save(fig, path, formats)


def local_porosity_figure(local: pd.DataFrame, conditions: Sequence[str], *,
                          n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0):
    """Fig. 9: local porosity per relative-distance bin and condition, per model; a Figure
    with axes (2 · models, 1).

    Per stereological model two panels: above, ρ_local of each bin (x: relative distance
    d_center to the particle centre, eq. 30/36; one colour per condition; bootstrap interval
    bars where ``local`` has per-image rows; empty bins (no pixel) are not drawn: NaN, not
    0); below, the solid area of each bin (µm², what the estimate rests on; empty bins are
    labelled "empty"). The overflow bin
    [bins[-1], ∞) is the last group, hatched. Numbers: :func:`local_porosity_data`.
    """
    data = local_porosity_data(local, [c for c in conditions
                                       if len(local) and c in set(local["condition"].astype(str))],
                               n_boot=n_boot, level=level, seed=seed)
    models = list(dict.fromkeys(data["method"]))
    if not models or not len(data):
        fig, axes = _figure(1, 1, size=(6.0, 3.6))
        _no_data(axes[0, 0])
        axes[0, 0].set_title("local porosity (Fig. 9)", fontsize=10)
        return fig
    fig, axes = _figure(2 * len(models), 1, size=(7.6, 2.1),
                        gridspec_kw={"height_ratios": [2.2, 1.0] * len(models)})
    conds = list(dict.fromkeys(data["condition"]))
    width = 0.8 / max(len(conds), 1)
    for k_m, model in enumerate(models):
        ax, ax_a = axes[2 * k_m, 0], axes[2 * k_m + 1, 0]
        sub = data[data["method"] == model]
        bins = sub[["bin_lo", "bin_hi"]].drop_duplicates().to_numpy(float)
        x = np.arange(len(bins))
        for k, cond in enumerate(conds):
            s = sub[sub["condition"] == cond]
            xs = x - 0.4 + width * (k + 0.5)
            colour = PALETTE[k % len(PALETTE)]
            y = s["porosity"].to_numpy(float)
            lo, hi = s["ci_low"].to_numpy(float), s["ci_high"].to_numpy(float)
            ax.plot(xs, y, "o-", color=colour, markersize=4, linewidth=1.0,
                    label=condition_label(cond))
            ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
            if ok.any():
                ax.errorbar(xs[ok], y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], fmt="none",
                            ecolor=colour, capsize=2, linewidth=0.9)
            bars = ax_a.bar(xs, s["solid_um2"].to_numpy(float), width, color=colour,
                            edgecolor="white", linewidth=0.4)
            for b, hi_edge in zip(bars, s["bin_hi"].to_numpy(float)):
                if not np.isfinite(hi_edge):
                    b.set_hatch("///")
            empty = (s["solid_um2"] + s["crack_um2"]).to_numpy(float) == 0
            for xe in xs[empty]:  # no pixel: ρ_local undefined, not 0
                ax_a.text(xe, 0, "empty", rotation=90, ha="center", va="bottom", fontsize=6,
                          color=colour)
        for a in (ax, ax_a):
            a.set_xticks(x)
            a.set_xlim(-0.6, len(bins) - 0.4)
            a.grid(axis="y", color="0.9", linewidth=0.8)
            a.set_axisbelow(True)
        ax.set_xticklabels([])
        ax_a.set_xticklabels([_bin_label(lo, hi) for lo, hi in bins], fontsize=7, rotation=30)
        ax_a.set_xlabel("relative distance to the particle centre d_center [–]")
        ax_a.set_ylabel("solid area [µm²]", fontsize=8)
        ax.set_ylabel("local porosity ρ_local [–]")
        ax.set_ylim(bottom=0)
        has_ci = bool(np.isfinite(sub["ci_low"].to_numpy(float)).any())
        ax.set_title(f"stereological model: {model}"
                     + (f" (bars: {100 * level:g} % bootstrap interval over images)" if has_ci
                        else " (pooled table: no intervals)"), fontsize=9, loc="left")
        ax.legend(fontsize=8, title="condition", title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


# --------------------------------------------------------------------------------------
# Table 1 as a figure
# --------------------------------------------------------------------------------------
def plot_table1(table1: pd.DataFrame, path, *, title: str | None = None,
                formats: Sequence[str] = FORMATS) -> Path:
    """Porosity [10⁻³] and crack intensity [10⁻² µm⁻²] per condition (mean ± std, truth).

    ``table1`` is :func:`cathodeflow.report.build.table1` (scaled columns).
    """
    fig, axes = _figure(1, 2, size=(4.6, 3.6))
    specs = [
        ("porosity", "global particle porosity ρ [10⁻³]", "porosity_true_1e-3",
         "porosity_true_std_1e-3", "porosity_pooled_1e-3"),
        ("intensity", "crack intensity λ [10⁻² µm⁻²]", "intensity_true_1e-2_per_um2",
         "intensity_true_std_1e-2_per_um2", "intensity_pooled_1e-2_per_um2"),
    ]
    conds = list(table1["condition"]) if len(table1) else []
    x = np.arange(len(conds))
    for ax, (key, ylabel, tcol, tstd, pcol) in zip(axes[0], specs):
        if not conds:
            _no_data(ax)
            ax.set_ylabel(ylabel)
            continue
        unit = "1e-3" if key == "porosity" else "1e-2_per_um2"
        mean = table1[f"{key}_mean_{unit}"].to_numpy(float)
        std = np.nan_to_num(table1[f"{key}_std_{unit}"].to_numpy(float), nan=0.0)
        ax.errorbar(x - 0.08, mean, yerr=std, fmt="o", color=PALETTE[0], capsize=4,
                    markersize=6, label="measured (mean ± std over images)")
        if pcol in table1:
            ax.plot(x - 0.08, table1[pcol].to_numpy(float), "d", color=PALETTE[0],
                    markerfacecolor="white", markersize=5, label="measured, pooled (eq. 11/12)")
        if tcol in table1 and np.isfinite(table1[tcol].to_numpy(float)).any():
            terr = (np.nan_to_num(table1[tstd].to_numpy(float), nan=0.0)
                    if tstd in table1 else None)
            ax.errorbar(x + 0.08, table1[tcol].to_numpy(float), yerr=terr, fmt="s",
                        color=PALETTE[3], capsize=3, markersize=5, label="truth (synthetic)")
        ax.set_xticks(x)
        ax.set_xticklabels([condition_label(c) for c in conds])
        ax.set_xlim(-0.6, len(conds) - 0.4)
        ax.set_xlabel("condition")
        ax.set_ylabel(ylabel)
        lo = min(0.0, float(np.nanmin(mean - std))) if np.isfinite(mean).any() else 0.0
        ax.set_ylim(bottom=lo)
        ax.grid(axis="y", color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=8,
                   frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path, formats)
