"""Statistics across conditions, with the IMAGE as the independent unit.

Cracks and pixels of one image are not independent draws (they share the particle, the
cross-section and the segmentation), so every interval and test here resamples or permutes
whole images within a condition, never cracks, particles or pixels across images.

* **Intervals** — nonparametric bootstrap over the images of a condition (``n_boot``
  resamples of m images with replacement, ``seed``) at ``level`` (default 95 %):
  ``method="expanded"`` (default), the percentile interval with its tail levels widened
  to Φ(∓ √(m/(m−1)) t_{m−1,1−α/2}) (Hesterberg 2015, "What teachers should know about the
  bootstrap", §5.2), because the plain percentile interval is too narrow for few images
  (coverage simulation, m = 12 images, 1000–2000 studies: percentile 0.89–0.92, BCa
  0.90–0.91, expanded 0.93–0.95);
  ``"percentile"``, the plain (α/2, 1 − α/2) quantiles; ``"bca"``, bias-corrected and
  accelerated (jackknife over images for the acceleration; Efron & Tibshirani 1993,
  ch. 14). A
  statistic is a function of the image multiplicities ``w`` (how often each image is drawn):
  the mean of per-image values (ρ⁽ⁱ⁾, λ⁽ⁱ⁾ as in Table 1), a pooled ratio (ρ of eq. 11,
  λ of eq. 12, ρ_local of eq. 40: Σ wᵢ numᵢ / Σ wᵢ denᵢ) or the median of all objects of
  the drawn images (crack d, ℓ, b of eq. 13, 14, 16; particle ρ_p, a of eq. 20, 21), each
  object counted as often as its image. Resamples where the statistic is undefined (no
  object, an empty bin) are left out of the quantiles.
* **Pairwise tests** — on per-image summaries (the statistic of one image: its ρ⁽ⁱ⁾, λ⁽ⁱ⁾,
  the median of its objects, its bin porosity): Mann–Whitney U with a permutation p-value
  (two-sided; exact enumeration of all relabellings when there are at most ``n_perm`` of them,
  else ``n_perm`` random ones, p = (1 + #{|U* − E| ≥ |U − E|}) / (n_perm + 1)); Holm
  correction over the pairs of one quantity; effect sizes Cliff's δ (= 2U / (m_a m_b) − 1)
  and Hedges' g; the difference of the estimates with an interval from the two conditions'
  independent bootstrap replicates (percentile; "expanded" uses m = min(m_a, m_b); "bca"
  falls back to percentile there).
* **Trend test** — Jonckheere–Terpstra over the ordered conditions (natural order of the
  names, "20C" < "30C" < "100C", or ``order``), same permutation scheme (U is its two-group
  case); Holm over the trend tests of all quantities; effect τ_JT = 2 JT / M − 1 with
  M = Σ_{i<j} m_i m_j (−1: strictly decreasing, +1: strictly increasing).

With m images a bootstrap interval cannot cover better than about 1 − 2^(1−m) (the
resampled mean never leaves the range of the images: 75 % for m = 3, 94 % for m = 5); such
intervals carry a note. Undefined is not a number: with one image the standard deviation,
the interval, Hedges' g and any test involving that condition are missing (``pd.NA``, note
``"n = 1"``), and the writers print "n = 1". A condition without images is an
:class:`~cathodeflow.errors.InputError`.

Local porosity intervals need per-image rows: the ``local_porosity_images`` table (per-image
crack_um2 / solid_um2 per bin, written by ``describe`` and ``run``), or a ``local_porosity``
table with an extra ``image_id`` column. From the pooled ``local_porosity`` table alone
(tables written before the per-image one existed) the estimate is reported and the interval
is missing (note "pooled").
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri, stdtrit

from ..errors import InputError

#: Default confidence level of the intervals.
LEVEL = 0.95
#: Default number of bootstrap resamples.
N_BOOT = 2000
#: Default number of random relabellings of the permutation tests.
N_PERM = 9999
#: Interval methods of :func:`bootstrap_interval`.
METHODS = ("expanded", "percentile", "bca")
#: Note of a value that is undefined because its condition has a single image.
N1 = "n = 1"
#: Crack descriptor columns (eq. 13, 14, 16) and particle descriptor columns (eq. 20, 21)
#: whose per-condition medians get intervals.
CRACK_COLUMNS = ("d_um", "length_um", "width_um")
PARTICLE_COLUMNS = {"porosity": "particle_porosity", "ssa_per_um": "ssa_per_um"}
#: Columns of :func:`condition_stats`.
COLUMNS = {
    "kind": "string", "quantity": "string", "condition": "string", "condition_b": "string",
    "estimate": "Float64", "ci_low": "Float64", "ci_high": "Float64", "std": "Float64",
    "n_images": "Int64", "n_images_b": "Int64", "test": "string", "statistic": "Float64",
    "p": "Float64", "p_holm": "Float64", "effect": "Float64", "hedges_g": "Float64",
    "note": "string",
}


# --------------------------------------------------------------------------------------
# Condition order
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# Bootstrap over images
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """The images of one condition and a statistic of them.

    Attributes
    ----------
    n_images : int
        m, the number of images (the resampled units).
    statistic : callable
        ``statistic(w)`` with ``w`` of shape (B, m), image multiplicities (a row of ones is
        the data set itself; a one-hot row is one image), returns shape (B,) float
        (NaN where undefined).
    """

    n_images: int
    statistic: Callable[[np.ndarray], np.ndarray]

    def estimate(self) -> float:
        return float(self.statistic(np.ones((1, self.n_images)))[0])

    def per_image(self) -> np.ndarray:
        """Shape (m,): the statistic of each image alone (NaN where undefined)."""
        return np.asarray(self.statistic(np.eye(self.n_images)), dtype=float)


def mean_sample(values) -> Sample:
    """Mean of per-image values (images with a NaN value are not units of this sample)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    return Sample(len(x), lambda w: (w @ x) / w.sum(axis=1))


def ratio_sample(num, den) -> Sample:
    """Pooled ratio Σ wᵢ numᵢ / Σ wᵢ denᵢ (eq. 11, 12, 40); NaN where the denominator is 0."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)

    def stat(w):
        d = w @ den
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d > 0, (w @ num) / np.where(d > 0, d, 1.0), np.nan)

    return Sample(len(num), stat)


def median_sample(values, owner, n_images: int) -> Sample:
    """Median of all objects of the drawn images, each counted as often as its image.

    ``values`` shape (N,), ``owner`` shape (N,) int in [0, n_images): the image of each
    object. Equals ``np.median`` of the objects repeated by their image's multiplicity.
    """
    v = np.asarray(values, dtype=float)
    o = np.asarray(owner, dtype=np.int64)
    keep = np.isfinite(v)
    v, o = v[keep], o[keep]
    order = np.argsort(v, kind="stable")
    v, o = v[order], o[order]
    # counts[j, i]: objects of image i among the j + 1 smallest; shape (N, n_images)
    counts = np.zeros((len(v), int(n_images)), dtype=np.int64)
    counts[np.arange(len(v)), o] = 1
    counts = np.cumsum(counts, axis=0)

    def order_stat(w, k):
        """Value at 0-based position k of each row's weighted sample (binary search)."""
        lo = np.zeros(len(w), dtype=np.int64)
        hi = np.full(len(w), len(v) - 1, dtype=np.int64)
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            above = np.einsum("bi,bi->b", counts[mid], w) > k
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid + 1)
        return v[lo]

    def stat(w):
        w = np.asarray(w, dtype=np.int64)
        out = np.full(len(w), np.nan)
        total = w @ counts[-1] if len(v) else np.zeros(len(w), dtype=np.int64)
        ok = total > 0
        if ok.any():
            wk, t = w[ok], total[ok]
            out[ok] = 0.5 * (order_stat(wk, (t - 1) // 2) + order_stat(wk, t // 2))
        return out

    return Sample(int(n_images), stat)


def _rng(seed: int, *key) -> np.random.Generator:
    """A generator for one (quantity, condition): independent streams, reproducible."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(map(str, key)).encode())])


def bootstrap_replicates(sample: Sample, *, n_boot: int = N_BOOT, rng: np.random.Generator) -> np.ndarray:
    """Shape (n_boot,): the statistic on ``n_boot`` resamples of the images (with replacement)."""
    m = sample.n_images
    w = rng.multinomial(m, np.full(m, 1.0 / m), size=int(n_boot))
    return np.asarray(sample.statistic(w), dtype=float)


def _check_options(n_boot, level, method) -> None:
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 10):
        raise InputError(f"n_boot: got {n_boot!r}; expected an integer ≥ 10")
    if not (isinstance(level, (float, int)) and 0 < level < 1):
        raise InputError(f"level: got {level!r}; expected a confidence level in (0, 1), e.g. 0.95")
    if method not in METHODS:
        raise InputError(f"method: got {method!r}; expected one of {list(METHODS)}")


def _quantile_levels(level: float, m: int | None = None) -> np.ndarray:
    """Shape (2,): the replicate quantiles of the interval. Plain percentile:
    (α/2, 1 − α/2); expanded (m images): Φ(∓ √(m/(m−1)) t_{m−1, 1−α/2}) (Hesterberg 2015,
    which undoes the bootstrap's narrowness bias for small m)."""
    alpha = 1.0 - level
    if m is None or m < 2:
        return np.array([alpha / 2, 1 - alpha / 2])
    z = float(stdtrit(m - 1, 1 - alpha / 2)) * math.sqrt(m / (m - 1))
    return np.array([ndtr(-z), ndtr(z)])


def bootstrap_interval(
    sample: Sample, *, n_boot: int = N_BOOT, level: float = LEVEL, method: str = "expanded",
    seed: int = 0, key: Sequence = (), replicates: np.ndarray | None = None,
) -> tuple[float, float | None, float | None, str]:
    """Estimate and bootstrap interval of a statistic over the images of one condition.

    Parameters
    ----------
    sample : Sample
        The images and the statistic.
    n_boot, level, method, seed : keyword-only
        Resamples, confidence level, ``"expanded"`` (default), ``"percentile"`` or
        ``"bca"``, random seed.
    key : sequence, keyword-only
        Names the stream of random numbers (quantity, condition), so intervals do not
        depend on the order in which they are computed.
    replicates : ndarray, optional
        Precomputed :func:`bootstrap_replicates` (shape (n_boot,)).

    Returns
    -------
    (estimate, ci_low, ci_high, note)
        ``ci_low``/``ci_high`` are None when undefined (one image: note ``"n = 1"``; no
        defined resample: note ``"undefined"``). Raises InputError for zero images.
    """
    _check_options(n_boot, level, method)
    m = sample.n_images
    if m == 0:
        raise InputError(f"sample {'/'.join(map(str, key)) or ''}: no images; expected ≥ 1")
    est = sample.estimate()
    if m == 1:
        return est, None, None, N1
    reps = replicates if replicates is not None else bootstrap_replicates(
        sample, n_boot=n_boot, rng=_rng(seed, *key))
    good = reps[np.isfinite(reps)]
    if len(good) == 0 or not np.isfinite(est):
        return est, None, None, "undefined"
    notes = [] if len(good) == len(reps) else [f"{len(reps) - len(good)} undefined resamples left out"]
    if m < 6:  # the resampled statistic never leaves [min, max] of the images
        notes.append(f"m = {m}: coverage at most about {1 - 2.0 ** (1 - m):.0%}")
    note = "; ".join(notes)
    if good.max() - good.min() <= 1e-12 * max(abs(est), abs(good).max()):
        return est, est, est, note  # a degenerate distribution (rounding-level spread only)
    q = _quantile_levels(level, m if method == "expanded" else None)
    if method == "bca":
        # bias correction from the share of replicates below the estimate (ties count half)
        share = (np.sum(good < est) + 0.5 * np.sum(good == est)) / len(good)
        share = min(max(share, 0.5 / len(good)), 1 - 0.5 / len(good))
        z0 = ndtri(share)
        jack = sample.statistic(1.0 - np.eye(m))  # delete one image at a time
        jack = jack[np.isfinite(jack)]
        d = jack.mean() - jack
        den = 6.0 * float(np.sum(d**2)) ** 1.5
        a = float(np.sum(d**3)) / den if den > 0 else 0.0
        z = ndtri(q)
        q = ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
    lo, hi = np.quantile(good, q)
    return est, float(lo), float(hi), note


# --------------------------------------------------------------------------------------
# Tests and effect sizes on per-image summaries
# --------------------------------------------------------------------------------------
def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values; missing entries (NaN/NA) stay missing and do not
    count in the family size. Shape as ``p``."""
    p = np.asarray(pd.to_numeric(pd.Series(p, dtype="object"), errors="coerce"), dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    if len(idx) == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    adj = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adj, 1.0)
    return out


def _jt(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Jonckheere–Terpstra statistic for label rows, shape (P, N) → (P,).

    JT = #{(a, b) : g_a < g_b, v_a < v_b} + ½ #{(a, b) : g_a < g_b, v_a = v_b}, by one pass
    over the distinct values in increasing order with running counts per group.
    """
    k = int(labels.max()) + 1
    p = len(labels)
    seen = np.zeros((p, k))  # objects per group with a smaller value
    out = np.zeros(p)
    uniq, block = np.unique(values, return_inverse=True)
    for u in range(len(uniq)):
        lab = labels[:, block == u]  # (P, size of the tie block)
        here = np.stack([(lab == g).sum(axis=1) for g in range(k)], axis=1).astype(float)
        below = np.cumsum(seen, axis=1) - seen  # Σ_{i < g} seen[i]
        out += np.sum(here * below, axis=1)
        tot = here.sum(axis=1)
        out += 0.25 * (tot**2 - np.sum(here**2, axis=1))  # ½ per tied pair across groups
        seen += here
    return out


def _all_labelings(sizes: Sequence[int]) -> np.ndarray:
    """Every distinct assignment of group labels 0..k−1 with these sizes, shape (P, N)."""
    n = sum(sizes)
    rows = []

    def rec(free: tuple, g: int, lab: list):
        if g == len(sizes) - 1:
            for i in free:
                lab[i] = g
            rows.append(list(lab))
            return
        for chosen in itertools.combinations(free, sizes[g]):
            for i in chosen:
                lab[i] = g
            rec(tuple(i for i in free if i not in chosen), g + 1, lab)

    rec(tuple(range(n)), 0, [0] * n)
    return np.asarray(rows, dtype=np.int64)


def _n_labelings(sizes: Sequence[int]) -> int:
    total, left = 1, sum(sizes)
    for s in sizes:
        total *= math.comb(left, s)
        left -= s
    return total


def ordered_test(groups: Sequence[Sequence[float]], *, n_perm: int = N_PERM,
                 seed: int = 0, key: Sequence = ()) -> tuple[float, float, float]:
    """Jonckheere–Terpstra test of an ordered alternative over ``groups`` (two groups:
    Mann–Whitney U of the second over the first), two-sided permutation p-value.

    Parameters
    ----------
    groups : sequence of k ≥ 2 arrays of per-image values, in condition order (NaN dropped)
    n_perm, seed, key : keyword-only
        Random relabellings when there are more than ``n_perm`` distinct ones (else all are
        enumerated), seed and stream name.

    Returns
    -------
    (JT, p, tau)
        JT = Σ_{i<j} #{(x, y) : x ∈ gᵢ, y ∈ gⱼ, y > x} (+½ per tie); p two-sided;
        τ_JT = 2 JT / M − 1 (Cliff's δ for two groups).
    """
    gs = [np.asarray(g, dtype=float) for g in groups]
    gs = [g[np.isfinite(g)] for g in gs]
    sizes = [len(g) for g in gs]
    if len(gs) < 2 or min(sizes) < 1:
        raise InputError(f"groups: sizes {sizes}; expected ≥ 2 groups of ≥ 1 value")
    values = np.concatenate(gs)
    labels = np.repeat(np.arange(len(gs)), sizes)
    jt = float(_jt(values, labels[None])[0])
    m_pairs = sum(sizes[i] * sizes[j] for i in range(len(gs)) for j in range(i + 1, len(gs)))
    centre = m_pairs / 2
    dev = abs(jt - centre) - 1e-9 * max(1.0, m_pairs)
    if _n_labelings(sizes) <= n_perm:
        null = _jt(values, _all_labelings(sizes))
        p = float(np.mean(np.abs(null - centre) >= dev))
    else:
        rng = _rng(seed, "perm", *key)
        perms = rng.permuted(np.tile(labels, (int(n_perm), 1)), axis=1)
        null = _jt(values, perms)
        p = float((1 + np.sum(np.abs(null - centre) >= dev)) / (n_perm + 1))
    return jt, min(p, 1.0), 2 * jt / m_pairs - 1


def cliffs_delta(a, b) -> float:
    """Cliff's δ of b over a: P(Y_b > Y_a) − P(Y_b < Y_a), in [−1, 1]."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.mean(np.sign(b[None, :] - a[:, None])))


def hedges_g(a, b) -> float | None:
    """Hedges' g of b over a: (mean_b − mean_a) / pooled sd × (1 − 3 / (4(m_a + m_b) − 9));
    None when undefined (a group of one value, or zero pooled sd)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    sp2 = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    if not sp2 > 0:
        return None
    return float((b.mean() - a.mean()) / math.sqrt(sp2) * (1 - 3 / (4 * (na + nb) - 9)))


# --------------------------------------------------------------------------------------
# From the tables to samples
# --------------------------------------------------------------------------------------
def _frame(tables: dict, name: str) -> pd.DataFrame | None:
    df = tables.get(name) if tables is not None else None
    if df is None:
        return None
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"tables[{name!r}]: expected a pandas DataFrame, got {type(df).__name__}")
    return df if len(df) else None


def _need(df: pd.DataFrame, name: str, cols: Iterable[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"tables[{name!r}]: lacks columns {missing}; has {list(df.columns)}")


def study_conditions(tables: dict, *, order: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Condition → its image ids, in condition order (natural, or ``order``).

    Images come from the ``images`` table when it has rows, else from the image ids of
    ``cracks`` and ``particles``. Raises InputError for a condition in ``order`` (or in
    ``cracks``/``particles``) without images, or an image listed under two conditions.
    """
    if not isinstance(tables, dict):
        raise InputError(f"tables: expected a dict of DataFrames, got {type(tables).__name__}")
    images = _frame(tables, "images")
    sources = [("images", images)] if images is not None else [
        (n, _frame(tables, n)) for n in ("cracks", "particles")]
    per: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for name, df in sources:
        if df is None:
            continue
        _need(df, name, ("image_id", "condition"))
        pairs = df[["image_id", "condition"]].astype(str).drop_duplicates()
        for img, cond in zip(pairs["image_id"], pairs["condition"]):
            if owner.setdefault(img, cond) != cond:
                raise InputError(f"tables[{name!r}]: image {img!r} is under conditions "
                                 f"{owner[img]!r} and {cond!r}; expected one condition per image")
            if img not in per.setdefault(cond, []):
                per[cond].append(img)
    others = condition_order(*(df["condition"].dropna().unique() for n in ("cracks", "particles")
                               if (df := _frame(tables, n)) is not None))
    empty = [c for c in others if c not in per]
    if order is not None:
        order = [str(c) for c in order]
        empty += [c for c in order if c not in per and c not in empty]
        if len(set(order)) != len(order):
            raise InputError(f"order: {order} repeats a condition; expected distinct names")
    if empty:
        raise InputError(f"conditions {empty}: no images in the tables; expected ≥ 1 image "
                         "per condition")
    names = order if order is not None else condition_order(per)
    return {c: per[c] for c in names}


def _owner_index(df: pd.DataFrame, ids: list[str]) -> np.ndarray:
    pos = {img: i for i, img in enumerate(ids)}
    return np.array([pos[i] for i in df["image_id"].astype(str)], dtype=np.int64)


def quantity_samples(
    tables: dict, *, order: Sequence[str] | None = None, crack_set: str = "kept",
    exclude_cut: bool = False,
) -> dict[str, dict[str, Sample]]:
    """Quantity → condition → :class:`Sample`, for every quantity the tables allow.

    Quantities: ``rho`` and ``lambda`` (mean of the per-image ``porosity`` and
    ``crack_intensity_per_um2`` of ``images``, as Table 1), ``rho_pooled`` (eq. 11) and
    ``lambda_pooled`` (eq. 12); ``<col>_median`` for the crack columns d_um, length_um,
    width_um (``crack_set``: "kept", "adjusted" or "all" cracks);
    ``particle_porosity_median``, ``ssa_per_um_median`` (``exclude_cut``: leave out particles
    with ``touches_border``); ``local_porosity:<method>:[lo,hi)`` per bin (per-image rows
    needed for intervals, see the module docstring).
    """
    if crack_set not in ("kept", "adjusted", "all"):
        raise InputError(f"crack_set: got {crack_set!r}; expected 'kept', 'adjusted' or 'all'")
    conds = study_conditions(tables, order=order)
    out: dict[str, dict[str, Sample]] = {}
    images = _frame(tables, "images")
    if images is not None:
        _need(images, "images", ("porosity", "crack_intensity_per_um2", "crack_px", "solid_px",
                                 "n_cracks", "area_um2"))
        img = images.assign(image_id=images["image_id"].astype(str)).set_index("image_id")
        for cond, ids in conds.items():
            g = img.loc[ids]
            out.setdefault("rho", {})[cond] = mean_sample(g["porosity"])
            out.setdefault("lambda", {})[cond] = mean_sample(g["crack_intensity_per_um2"])
            out.setdefault("rho_pooled", {})[cond] = ratio_sample(
                g["crack_px"], g["solid_px"] + g["crack_px"])
            out.setdefault("lambda_pooled", {})[cond] = ratio_sample(g["n_cracks"], g["area_um2"])
    cracks = _frame(tables, "cracks")
    if cracks is not None:
        _need(cracks, "cracks", ("image_id", "condition"))
        if crack_set != "all":
            _need(cracks, "cracks", (crack_set,))
            cracks = cracks[cracks[crack_set].fillna(False).astype(bool)]
        cols = [c for c in CRACK_COLUMNS if c in cracks.columns]
        for cond, ids in conds.items():
            g = cracks[cracks["condition"].astype(str) == cond]
            o = _owner_index(g, ids)
            for c in cols:
                out.setdefault(f"{c}_median", {})[cond] = median_sample(g[c], o, len(ids))
    particles = _frame(tables, "particles")
    if particles is not None:
        _need(particles, "particles", ("image_id", "condition"))
        if exclude_cut:
            _need(particles, "particles", ("touches_border",))
            particles = particles[~particles["touches_border"].fillna(False).astype(bool)]
        for cond, ids in conds.items():
            g = particles[particles["condition"].astype(str) == cond]
            o = _owner_index(g, ids)
            for c, name in PARTICLE_COLUMNS.items():
                if c in g.columns:
                    out.setdefault(f"{name}_median", {})[cond] = median_sample(g[c], o, len(ids))
    for name, per in _local_samples(tables, conds).items():
        out[name] = per
    return out


def local_quantity(method: str, lo: float, hi: float) -> str:
    """Name of the local-porosity quantity of one model and bin: ``local_porosity:paper:[0.2,0.3)``."""
    return f"local_porosity:{method}:[{lo:g},{hi:g})"


@dataclass(frozen=True)
class _Pooled:
    """A pooled (per-condition) estimate without per-image data: no interval, no test."""

    value: float
    n_images: int


def local_porosity_source(tables: dict) -> pd.DataFrame | None:
    """The local-porosity rows intervals are computed from: ``local_porosity_images``
    (per image) when the tables hold it, else the pooled ``local_porosity``; None without
    either."""
    per_image = _frame(tables, "local_porosity_images")
    return per_image if per_image is not None else _frame(tables, "local_porosity")


def _local_samples(tables, conds) -> dict[str, dict[str, Sample | _Pooled]]:
    local = local_porosity_source(tables)
    if local is None:
        return {}
    _need(local, "local_porosity", ("condition", "method", "bin_lo", "bin_hi", "crack_um2",
                                    "solid_um2"))
    per_image = "image_id" in local.columns
    out: dict[str, dict] = {}
    bins = local[["method", "bin_lo", "bin_hi"]].drop_duplicates().sort_values(
        ["method", "bin_lo", "bin_hi"])
    for method, lo, hi in bins.itertuples(index=False):
        name = local_quantity(method, lo, hi)
        sel = local[(local["method"] == method) & (local["bin_lo"] == lo) & (local["bin_hi"] == hi)]
        for cond, ids in conds.items():
            g = sel[sel["condition"].astype(str) == cond]
            if per_image:
                crack = np.zeros(len(ids))
                solid = np.zeros(len(ids))
                o = _owner_index(g, ids)
                np.add.at(crack, o, g["crack_um2"].to_numpy(float))
                np.add.at(solid, o, g["solid_um2"].to_numpy(float))
                out.setdefault(name, {})[cond] = ratio_sample(crack, crack + solid)
            else:
                c, s = float(g["crack_um2"].sum()), float(g["solid_um2"].sum())
                out.setdefault(name, {})[cond] = _Pooled(c / (c + s) if c + s else math.nan, len(ids))
    return out


# --------------------------------------------------------------------------------------
# The tidy table
# --------------------------------------------------------------------------------------
def _std(x: np.ndarray):
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if len(x) > 1 else None


def condition_stats(
    tables: dict[str, pd.DataFrame],
    *,
    order: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    method: str = "expanded",
    seed: int = 0,
    n_perm: int = N_PERM,
    crack_set: str = "kept",
    exclude_cut: bool = False,
    quantities: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Intervals per condition, pairwise tests and trend tests, one tidy DataFrame.

    Parameters
    ----------
    tables : dict of str → DataFrame
        ``images``, ``cracks``, ``particles``, ``local_porosity``, ``local_porosity_images``
        (DESIGN §4.2; any may be missing). Local porosity intervals come from the per-image
        rows (:func:`local_porosity_source`).
    order : sequence of str, optional, keyword-only
        Conditions in the order of the trend test (default: natural order of the names).
    n_boot, level, method, seed : keyword-only
        Bootstrap resamples, confidence level, interval method (:data:`METHODS`), seed.
    n_perm : int, keyword-only
        Random relabellings of the permutation tests (exact enumeration below that count).
    crack_set, exclude_cut : keyword-only
        See :func:`quantity_samples`.
    quantities : sequence of str, optional, keyword-only
        Only these quantities (names as in :func:`quantity_samples`).

    Returns
    -------
    DataFrame with the columns of :data:`COLUMNS` (nullable dtypes; ``pd.NA`` = undefined):

    * ``kind="interval"``: one row per quantity and condition; estimate, bootstrap
      ci_low/ci_high, std (sample std of the per-image summaries), n_images.
    * ``kind="pairwise"``: one row per quantity and pair (condition before condition_b in
      the order); estimate = estimate(condition_b) − estimate(condition) with a percentile
      interval; test "mann-whitney-u", statistic U (of condition_b over condition), p,
      p_holm (Holm over the pairs of the quantity), effect = Cliff's δ, hedges_g.
    * ``kind="trend"``: one row per quantity; condition = "a < b < …"; test
      "jonckheere-terpstra", statistic JT, p, p_holm (Holm over the trend rows), effect τ_JT.

    Tests need ≥ 2 images with a defined summary in every condition involved (else
    missing, note "n = 1" / "too few images").
    """
    _check_options(n_boot, level, method)
    samples = quantity_samples(tables, order=order, crack_set=crack_set, exclude_cut=exclude_cut)
    if quantities is not None:
        unknown = [q for q in quantities if q not in samples]
        if unknown:
            raise InputError(f"quantities: {unknown} not available; available: {list(samples)}")
        samples = {q: samples[q] for q in quantities}
    conds = list(study_conditions(tables, order=order))
    rows: list[dict] = []
    opts = dict(n_boot=n_boot, level=level, method=method, seed=seed)
    for q, per in samples.items():
        reps: dict[str, np.ndarray] = {}
        summaries: dict[str, np.ndarray] = {}
        for cond in conds:
            s = per[cond]
            if isinstance(s, _Pooled):
                rows.append(dict(kind="interval", quantity=q, condition=cond, estimate=s.value,
                                 n_images=s.n_images, note="pooled table: no per-image rows"))
                continue
            if s.n_images == 0:  # e.g. every image's porosity undefined
                rows.append(dict(kind="interval", quantity=q, condition=cond,
                                 n_images=0, note="no image with a defined value"))
                continue
            if s.n_images > 1:
                reps[cond] = bootstrap_replicates(s, n_boot=n_boot, rng=_rng(seed, q, cond))
            est, lo, hi, note = bootstrap_interval(s, key=(q, cond), replicates=reps.get(cond), **opts)
            summaries[cond] = s.per_image()
            rows.append(dict(kind="interval", quantity=q, condition=cond, estimate=est, ci_low=lo,
                             ci_high=hi, std=_std(summaries[cond]), n_images=s.n_images, note=note))
        if all(isinstance(per[c], _Pooled) for c in conds):
            continue
        rows += _pairwise_rows(q, conds, per, reps, summaries, level=level, method=method,
                               n_perm=n_perm, seed=seed)
        rows += _trend_rows(q, conds, summaries, n_perm=n_perm, seed=seed)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for test in ("mann-whitney-u", "jonckheere-terpstra"):
        groups = df["quantity"] if test == "mann-whitney-u" else pd.Series(0, index=df.index)
        for _, idx in df[df["test"] == test].groupby(groups[df["test"] == test]).groups.items():
            df.loc[idx, "p_holm"] = holm(df.loc[idx, "p"].to_numpy(dtype=object))
    return _typed(df)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c, t in COLUMNS.items():
        col = out[c].astype(object).where(out[c].notna(), None)
        if t == "Float64":
            col = pd.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
                            for v in col], dtype="Float64")
        out[c] = pd.Series(col, index=out.index).astype(t)
    return out.reset_index(drop=True)


def _defined(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def _pairwise_rows(q, conds, per, reps, summaries, *, level, method, n_perm, seed) -> list[dict]:
    rows = []
    for i, a in enumerate(conds):
        for b in conds[i + 1:]:
            sa, sb = per[a], per[b]
            row = dict(kind="pairwise", quantity=q, condition=a, condition_b=b,
                       test="mann-whitney-u")
            if isinstance(sa, _Pooled) or isinstance(sb, _Pooled):
                rows.append({**row, "note": "pooled table: no per-image rows"})
                continue
            xa, xb = _defined(summaries.get(a, np.array([]))), _defined(summaries.get(b, np.array([])))
            row.update(n_images=len(xa), n_images_b=len(xb))
            if sa.n_images and sb.n_images:
                row["estimate"] = sb.estimate() - sa.estimate()
            if a in reps and b in reps:
                d = reps[b] - reps[a]
                d = d[np.isfinite(d)]
                m = min(sa.n_images, sb.n_images) if method == "expanded" else None
                if len(d):
                    row["ci_low"], row["ci_high"] = (
                        float(v) for v in np.quantile(d, _quantile_levels(level, m)))
            if len(xa) < 2 or len(xb) < 2:
                row["note"] = N1 if min(len(xa), len(xb)) == 1 else "too few images"
                rows.append(row)
                continue
            u, p, delta = ordered_test([xa, xb], n_perm=n_perm, seed=seed, key=(q, a, b))
            row.update(statistic=u, p=p, effect=delta, hedges_g=hedges_g(xa, xb))
            rows.append(row)
    return rows


def _trend_rows(q, conds, summaries, *, n_perm, seed) -> list[dict]:
    if len(conds) < 3:
        return []  # two conditions: the pairwise test is the trend test
    groups = [_defined(summaries.get(c, np.array([]))) for c in conds]
    row = dict(kind="trend", quantity=q, condition=" < ".join(conds), test="jonckheere-terpstra",
               n_images=sum(len(g) for g in groups))
    if min(len(g) for g in groups) < 2:
        row["note"] = N1 if min(len(g) for g in groups) == 1 else "too few images"
        return [row]
    jt, p, tau = ordered_test(groups, n_perm=n_perm, seed=seed, key=(q, "trend"))
    row.update(statistic=jt, p=p, effect=tau)
    return [row]


# --------------------------------------------------------------------------------------
# Table 1 with intervals
# --------------------------------------------------------------------------------------
#: Table 1 units (as :mod:`cathodeflow.report.build`): porosity in 10⁻³, intensity in
#: 10⁻² µm⁻².
_T1 = {"rho": ("porosity", "1e-3", 1e3), "lambda": ("intensity", "1e-2_per_um2", 1e2)}


def table1_intervals(
    tables: dict[str, pd.DataFrame], *, order: Sequence[str] | None = None, n_boot: int = N_BOOT,
    level: float = LEVEL, method: str = "expanded", seed: int = 0,
) -> pd.DataFrame:
    """Table 1 of the paper with bootstrap intervals over images (from ``images``).

    Returns
    -------
    DataFrame, one row per condition (in order): ``condition``, ``n_images``,
    ``porosity_{mean,std,ci_low,ci_high}_1e-3`` and
    ``intensity_{mean,std,ci_low,ci_high}_1e-2_per_um2`` (Float64; std and interval
    ``pd.NA`` with one image), ``level``, ``note`` ("n = 1" where undefined).
    Mean and std (ddof = 1) are those of ``build.table1``; the interval is that of
    :func:`condition_stats` for ``rho`` / ``lambda``.
    """
    if _frame(tables, "images") is None:
        raise InputError("tables['images']: missing or empty; expected the per-image table "
                         "(porosity, crack_intensity_per_um2 per image)")
    st = condition_stats(tables, order=order, n_boot=n_boot, level=level, method=method,
                         seed=seed, quantities=("rho", "lambda"))
    iv = st[st["kind"] == "interval"]
    out = pd.DataFrame({"condition": pd.Series(list(dict.fromkeys(iv["condition"])), dtype="string")})
    for q, (name, unit, scale) in _T1.items():
        r = iv[iv["quantity"] == q].set_index("condition").reindex(out["condition"])
        if q == "rho":
            out["n_images"] = r["n_images"].to_numpy()
        for part, col in (("mean", "estimate"), ("std", "std"), ("ci_low", "ci_low"),
                          ("ci_high", "ci_high")):
            out[f"{name}_{part}_{unit}"] = (r[col].astype("Float64") * scale).array
    out["n_images"] = out["n_images"].astype("Int64")
    out["level"] = float(level)
    out["note"] = pd.Series([N1 if n == 1 else "" for n in out["n_images"]], dtype="string")
    return out


def _fmt(x, like=None) -> str:
    """One decimal (as the paper's Table 1), three below 1; ``like`` sets the decimals."""
    ref = float(x if like is None else like)
    return f"{float(x):.1f}" if abs(ref) >= 1 else f"{float(x):.3f}"


def _cell(r, name: str, unit: str, *, pm: str, latex: bool) -> str:
    mean = r[f"{name}_mean_{unit}"]
    if pd.isna(mean):
        return "--" if latex else "–"
    std, lo, hi = (r[f"{name}_{p}_{unit}"] for p in ("std", "ci_low", "ci_high"))
    if pd.isna(std) and pd.isna(lo):
        return f"{_fmt(mean)} ({N1})" if r["n_images"] == 1 else _fmt(mean)
    text = _fmt(mean) + (f" {pm} {_fmt(std, mean)}" if not pd.isna(std) else "")
    if not pd.isna(lo):
        ci = f"[{_fmt(lo, mean)}, {_fmt(hi, mean)}]"
        text += f" ${ci}$" if latex else f" {ci}"
    return text


def format_table1(t1: pd.DataFrame, fmt: str = "markdown") -> str:
    """Table 1 with intervals as text: ``"markdown"``, ``"csv"`` or ``"latex"`` (booktabs).

    Cells read "mean ± std [ci_low, ci_high]" in the paper's units; a condition with one
    image reads "mean (n = 1)". CSV holds the numbers (empty where undefined) and ``note``.
    """
    if fmt == "csv":
        return t1.to_csv(index=False, na_rep="")
    if fmt not in ("markdown", "latex"):
        raise InputError(f"fmt: got {fmt!r}; expected 'markdown', 'csv' or 'latex'")
    latex = fmt == "latex"
    level = f"{100 * float(t1['level'].iloc[0]):g} %" if len(t1) else ""
    pm = "$\\pm$" if latex else "±"
    head = ["condition", "images",
            f"porosity ρ [10⁻³] (mean {pm} std [{level} CI])",
            f"crack intensity λ [10⁻² µm⁻²] (mean {pm} std [{level} CI])"]
    if latex:
        lv = level.replace("%", "\\%")
        head = ["condition", "images",
                f"porosity $\\rho$ [$10^{{-3}}$] (mean $\\pm$ std [{lv} CI])",
                f"crack intensity $\\lambda$ [$10^{{-2}}\\,\\mu$m$^{{-2}}$] (mean $\\pm$ std "
                f"[{lv} CI])"]
    body = []
    for r in t1.to_dict("records"):
        cond = str(r["condition"])
        body.append([cond.replace("_", "\\_") if latex else cond, str(int(r["n_images"])),
                     _cell(r, "porosity", "1e-3", pm=pm, latex=latex),
                     _cell(r, "intensity", "1e-2_per_um2", pm=pm, latex=latex)])
    if latex:
        lines = ["\\begin{tabular}{lrll}", "\\toprule", " & ".join(head) + " \\\\", "\\midrule"]
        lines += [" & ".join(row) + " \\\\" for row in body]
        lines += ["\\bottomrule", "\\end{tabular}"]
    else:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def write_table1(t1: pd.DataFrame, path) -> Path:
    """Write :func:`table1_intervals` as Markdown (``.md``), CSV (``.csv``) or LaTeX (``.tex``)."""
    path = Path(path)
    fmt = {".md": "markdown", ".csv": "csv", ".tex": "latex"}.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown suffix {path.suffix!r}; expected .md, .csv or .tex")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_table1(t1, fmt), encoding="utf-8")
    return path
