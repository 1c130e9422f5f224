"""Figures of the report (matplotlib, Agg; no pyplot, no global backend change).

* :func:`plot_table1` — Table 1 as a figure: global particle porosity ρ (eq. 11) and crack
  intensity λ (eq. 12) per condition, mean ± standard deviation over images, truth markers.
* :func:`plot_crack_boxplots` — Fig. 7: crack size d, length ℓ, width b (eq. 13, 14, 16)
  per condition, for the kept cracks and for the adjusted data set (eq. 19).
* :func:`plot_particle_boxplots` — Fig. 8: particle porosity ρ_p (eq. 20) and specific
  surface area a (eq. 21) per condition.
* :func:`plot_local_porosity` — Fig. 9: local porosity ρ_local([a, b)) (eq. 37–40) per
  relative-distance bin and condition, one panel per stereological model.

Boxplots follow the paper: boxes from the first to the third quartile, red median line,
whiskers at the 5th and 95th percentiles, points beyond them drawn as outliers. Every
function draws "no data" instead of failing on empty tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

#: Colours per condition (cycled), colour-blind friendly (Okabe–Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
DPI = 120
#: Boxplots switch to a log axis when positive data span more than this factor.
LOG_SPAN = 100.0


def natural_key(text) -> tuple:
    """Sort key that orders embedded numbers numerically: 20C < 30C < 100C."""
    parts = re.split(r"(-?\d+(?:\.\d+)?)", str(text))
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p.lower()) for i, p in enumerate(parts))


def condition_order(*columns: Iterable) -> list[str]:
    """Distinct condition names from any number of columns, naturally sorted."""
    seen = set()
    for col in columns:
        for c in col:
            if c is not None and not (isinstance(c, float) and math.isnan(c)) and c is not pd.NA:
                seen.add(str(c))
    return sorted(seen, key=natural_key)


def condition_label(condition: str) -> str:
    """Display label: '20C' → '20 °C'; other names unchanged."""
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*°?\s*C\s*", str(condition))
    return f"{m.group(1)} °C" if m else str(condition)


def _figure(nrows: int, ncols: int, *, size=(4.2, 3.4)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=DPI, layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            fontsize=12, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _finite(x) -> np.ndarray:
    x = np.asarray(pd.to_numeric(pd.Series(x), errors="coerce"), dtype=float)
    return x[np.isfinite(x)]


def _boxplot(ax, samples: list[np.ndarray], labels: list[str], ylabel: str) -> None:
    """Paper-style boxplot of one sample per condition (empty samples leave a gap)."""
    if not any(len(s) for s in samples):
        _no_data(ax)
        ax.set_ylabel(ylabel)
        return
    pos = [i for i, s in enumerate(samples, 1) if len(s)]
    data = [s for s in samples if len(s)]
    ax.boxplot(
        data,
        positions=pos,
        whis=(5, 95),
        widths=0.6,
        patch_artist=True,
        boxprops=dict(facecolor="#dde6f0", edgecolor="0.2"),
        medianprops=dict(color="red", linewidth=1.6),
        whiskerprops=dict(color="0.2"),
        capprops=dict(color="0.2"),
        flierprops=dict(marker=".", markersize=2.5, markerfacecolor="0.45",
                        markeredgecolor="none", alpha=0.5, rasterized=True),
    )
    allv = np.concatenate(data)
    pos_v = allv[allv > 0]
    if len(pos_v) == len(allv) and pos_v.max() / pos_v.min() > LOG_SPAN:
        ax.set_yscale("log")
        ylabel = f"{ylabel} (log scale)"
    ax.set_xticks(range(1, len(labels) + 1))
    ax.set_xticklabels([f"{lab}\nn={len(smp)}" for lab, smp in zip(labels, samples)])
    ax.set_xlim(0.4, len(labels) + 0.6)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)


def plot_table1(table1: pd.DataFrame, path, *, title: str | None = None) -> Path:
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
    return _save(fig, path)


def plot_crack_boxplots(cracks: pd.DataFrame, conditions: list[str], path) -> Path:
    """Fig. 7: d, ℓ, b per condition; top row kept cracks, bottom row adjusted data set."""
    fig, axes = _figure(2, 3, size=(3.9, 3.2))
    labels = [condition_label(c) for c in conditions]
    cols = [("d_um", "crack size d [µm]"), ("length_um", "crack length ℓ [µm]"),
            ("width_um", "crack width b [µm]")]
    rows = [("kept", "kept cracks (d ≥ 2.5 η)"), ("adjusted", "adjusted data set (eq. 19)")]
    for r, (flag, row_title) in enumerate(rows):
        sel = cracks[cracks[flag].fillna(False).astype(bool)] if len(cracks) else cracks
        for c, (col, ylabel) in enumerate(cols):
            ax = axes[r, c]
            _condition_boxplot(ax, sel, col, conditions, labels, ylabel)
            ax.set_title(f"({'abcdef'[3 * r + c]}) {row_title}", fontsize=9, loc="left")
    return _save(fig, path)


def _condition_boxplot(ax, table, col, conditions, labels, ylabel) -> None:
    """One panel: boxplots of ``table[col]`` per condition ("no data" without conditions)."""
    if not conditions:
        _no_data(ax)
        ax.set_ylabel(ylabel)
        return
    samples = [_finite(table.loc[table["condition"] == k, col]) for k in conditions]
    _boxplot(ax, samples, labels, ylabel)


def plot_particle_boxplots(particles: pd.DataFrame, conditions: list[str], path) -> Path:
    """Fig. 8: particle porosity ρ_p [–] and specific surface area a [µm⁻¹] per condition."""
    fig, axes = _figure(1, 2, size=(4.4, 3.5))
    labels = [condition_label(c) for c in conditions]
    cols = [("porosity", "particle porosity ρ_p [–]"),
            ("ssa_per_um", "specific surface area a [µm⁻¹]")]
    for c, (col, ylabel) in enumerate(cols):
        ax = axes[0, c]
        _condition_boxplot(ax, particles, col, conditions, labels, ylabel)
        ax.set_title(f"({'ab'[c]})", fontsize=9, loc="left")
    return _save(fig, path)


def _bin_label(lo: float, hi: float) -> str:
    return f"≥{lo:g}" if not np.isfinite(hi) else f"[{lo:g}, {hi:g})"


def plot_local_porosity(local: pd.DataFrame, conditions: list[str], path) -> Path:
    """Fig. 9: local porosity per relative-distance bin, one panel per stereological model.

    Bars are grouped by bin (x: relative distance d_center to the particle centre, eq. 30/36),
    one colour per condition; the overflow bin [bins[-1], ∞) is the last group, hatched.
    """
    methods = sorted(set(local["method"].dropna().astype(str))) if len(local) else []
    if not methods:
        fig, axes = _figure(1, 1, size=(6.0, 3.6))
        _no_data(axes[0, 0])
        axes[0, 0].set_title("local porosity (Fig. 9)", fontsize=10)
        return _save(fig, path)
    order = {"paper": 0, "wicksell": 1}
    methods.sort(key=lambda m: (order.get(m, 9), m))
    fig, axes = _figure(len(methods), 1, size=(7.6, 3.4))
    conds = [c for c in conditions if c in set(local["condition"].astype(str))]
    for ax, method in zip(axes[:, 0], methods):
        sub = local[local["method"] == method]
        bins = (sub[["bin_lo", "bin_hi"]].drop_duplicates()
                .sort_values(["bin_lo", "bin_hi"]).to_numpy(float))
        if len(bins) == 0 or not conds:
            _no_data(ax)
            continue
        x = np.arange(len(bins))
        width = 0.8 / max(len(conds), 1)
        for k, cond in enumerate(conds):
            s = sub[sub["condition"] == cond]
            y = []
            for lo, hi in bins:
                m = s[(s["bin_lo"] == lo) & (s["bin_hi"] == hi)]
                y.append(float(m["porosity"].iloc[0]) if len(m) else np.nan)
            y = np.asarray(y)
            bars = ax.bar(x - 0.4 + width * (k + 0.5), np.nan_to_num(y, nan=0.0), width,
                          color=PALETTE[k % len(PALETTE)], label=condition_label(cond),
                          edgecolor="white", linewidth=0.4)
            for b, (lo, hi) in zip(bars, bins):
                if not np.isfinite(hi):
                    b.set_hatch("///")
        ax.set_xticks(x)
        ax.set_xticklabels([_bin_label(lo, hi) for lo, hi in bins], fontsize=7, rotation=30)
        ax.set_xlabel("relative distance to the particle centre d_center [–]")
        ax.set_ylabel("local porosity ρ_local [–]")
        ax.set_title(f"stereological model: {method}", fontsize=10, loc="left")
        ax.grid(axis="y", color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.legend(fontsize=8, title="condition", title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)
