"""``tree.cathode``: Table 1, boxplots and label overlays on a study opened with
:func:`cathodeflow.open_study` (an :class:`xarray.DataTree`, layout in
:mod:`cathodeflow.study.open`).

Importing this module registers the accessor; ``cathodeflow.open_study`` does so first.

* :meth:`CathodeAccessor.tables` — the tables of the tree as pandas DataFrames (DESIGN §4.2).
* :meth:`CathodeAccessor.table1` — Table 1 of the paper (:func:`cathodeflow.report.build.table1`).
* :meth:`CathodeAccessor.boxplot` — one column per group, paper-style (quartile box, red
  median, whiskers at the 5th and 95th percentiles), as in Fig. 7 and 8.
* :meth:`CathodeAccessor.overlay` — an image with the outlines (or random-colour fill) of
  its crack (eq. 2) and particle (eq. 8–10) labels, in µm.

Figures are drawn on a given Axes, or on a new pyplot figure (shown inline in Jupyter).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError
from ..io.tables import SCHEMAS, conform
from ..study.open import column_units
from .build import table1 as _table1
from .figures import condition_label, condition_order, condition_samples, draw_boxplot

__all__ = ["CathodeAccessor", "OUTLINE_COLORS", "boundaries"]

#: RGBA (0-1) of the outlines of each label image in :meth:`CathodeAccessor.overlay`.
OUTLINE_COLORS = {"particles": (1.0, 0.85, 0.0, 1.0), "cracks": (1.0, 0.0, 0.0, 1.0)}


def _new_axes(ax, size=(6.0, 4.5)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size, layout="constrained")[1]


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Inner boundary of labelled regions: a labelled pixel with a 4-neighbour (inside the
    image) of another value.

    Parameters
    ----------
    labels : ndarray, shape (H, W), integer

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, dtype=bool)
    dy = lab[1:, :] != lab[:-1, :]
    dx = lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return edge & (lab != 0)


def _extent(da: xr.DataArray) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) in µm: pixel i covers [i η − η/2, i η + η/2]."""
    ydim, xdim = da.dims[-2:]
    eta = float(da.attrs["pixel_size_um"])
    y, x = da[ydim].values, da[xdim].values
    return (x[0] - eta / 2, x[-1] + eta / 2, y[-1] + eta / 2, y[0] - eta / 2)


@xr.register_datatree_accessor("cathode")
class CathodeAccessor:
    """Study-level views of a tree from :func:`cathodeflow.open_study`."""

    def __init__(self, tree: xr.DataTree):
        self._tree = tree

    # ------------------------------------------------------------------ tables

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables under ``tables/`` as DataFrames conformed to the contract (DESIGN §4.2).

        Raises
        ------
        InputError
            The tree has no tables (they were missing or stale when it was opened).
        """
        if "tables" not in self._tree.children:
            why = self._tree.attrs.get("tables", "no 'tables' group in the tree")
            raise InputError(f"tree.cathode: the study has no current tables ({why})")
        out = {}
        for name, node in self._tree["tables"].children.items():
            if name not in SCHEMAS:
                continue
            ds = node.to_dataset()
            df = ds.to_dataframe().reset_index()
            if name.startswith("local_porosity"):  # dense grids: drop the combinations never measured
                df = df[df[list(ds.data_vars)].notna().any(axis=1)]
            out[name] = conform(df[[c for c in df.columns if c in SCHEMAS[name]]], name)
        return out

    def table1(self, *, truth: pd.DataFrame | None = None) -> pd.DataFrame:
        """Table 1 (porosity ρ, eq. 11, ×10³; crack intensity λ, eq. 12, ×10² µm⁻²) per condition:
        :func:`cathodeflow.report.build.table1` on :meth:`tables`.

        Parameters
        ----------
        truth : DataFrame, optional
            Ground truth per condition (e.g. the demo's ``truth.csv``), shown beside.

        Returns
        -------
        DataFrame, one row per condition
        """
        return _table1(self.tables(), truth=truth)

    def boxplot(self, column: str, *, by: str = "condition", table: str | None = None,
                query: str | None = None, ax=None):
        """Boxplots of one table column per group, as in Fig. 7 and 8 of the paper.

        Parameters
        ----------
        column : str
            A numeric column, e.g. ``"width_um"`` (b, eq. 16) or ``"ssa_per_um"`` (a, eq. 21).
        by : str
            The grouping column (``"condition"``, ``"image_id"``, …); groups in natural order.
        table : str, optional
            ``"images"``, ``"cracks"`` or ``"particles"``; default: the one of these holding
            ``column`` (required when several do, e.g. ``"porosity"``).
        query : str, optional
            Rows to keep, :meth:`pandas.DataFrame.query` syntax: ``"kept"`` for the kept
            cracks of Fig. 7 (a–c), ``"adjusted"`` for the data set of eq. 19.
        ax : matplotlib Axes, optional
            Where to draw; default a new figure.

        Returns
        -------
        matplotlib.axes.Axes
            One box per group (position 1, 2, …; red median line; whiskers at the 5th and
            95th percentiles), drawn by :func:`cathodeflow.report.figures.draw_boxplot`.
        """
        tables = self.tables()
        candidates = ("images", "cracks", "particles")
        if table is None:
            holding = [t for t in candidates if column in SCHEMAS[t]]
            if not holding:
                raise InputError(f"boxplot column {column!r}: not a column of the tables {', '.join(candidates)}")
            if len(holding) > 1:
                raise InputError(f"boxplot column {column!r}: in the tables {', '.join(holding)}; "
                                 "pass table= to choose one")
            table = holding[0]
        if table not in candidates:
            raise InputError(f"boxplot table must be one of {', '.join(candidates)}; got {table!r}")
        df = tables[table]
        for what, name in (("column", column), ("by", by)):
            if name not in df.columns:
                raise InputError(f"boxplot {what} {name!r}: not a column of table {table!r} "
                                 f"(columns: {', '.join(df.columns)})")
        if query is not None:
            try:
                df = df.query(query)
            except Exception as e:  # pandas' own message, on one line
                raise InputError(f"boxplot query {query!r} on table {table!r}: {type(e).__name__}: {e}") from None
        groups = condition_order(df[by].astype(str))
        samples = condition_samples(df.assign(condition=df[by].astype(str)), column, groups)
        labels = [condition_label(g) if by == "condition" else g for g in groups]
        ax = _new_axes(ax)
        units = column_units(column)
        draw_boxplot(ax, samples, labels, f"{column} [{units}]" if units not in (None, "1") else column)
        ax.set_xlabel(by)
        ax.set_title(f"{table}{f' ({query})' if query else ''}", fontsize=9, loc="left")
        return ax

    # ------------------------------------------------------------------ images

    def overlay(self, image_id: str, *, image: str | None = None, labels=("particles", "cracks"),
                style: str = "outline", y: slice | None = None, x: slice | None = None,
                alpha: float = 0.45, seed: int = 0, ax=None):
        """An image of the study with its label images drawn over it, in µm.

        Parameters
        ----------
        image_id : str
            An image of the tree (``tree["images"]``).
        image : str, optional
            The background array: ``"sr"``, ``"raw"`` or ``"phase"``; default ``"sr"``, or
            ``"phase"`` for an image added as a phase map (no ``sr``).
        labels : sequence of str
            Label arrays to draw, from ``"particles"`` and ``"cracks"`` (eq. 8–10, eq. 2),
            drawn in this order.
        style : {'outline', 'fill'}
            ``outline``: the inner boundary of each region (:func:`boundaries`), particles
            yellow, cracks red (:data:`OUTLINE_COLORS`); ``fill``: each label a random colour
            (``seed``) at opacity ``alpha``.
        y, x : slice, optional
            Region to show, in µm (``slice(0, 5)``), applied to each array's own coordinates.
        alpha : float
            Opacity of the fill, in (0, 1].
        seed : int
            Seed of the random colours of ``fill``.
        ax : matplotlib Axes, optional
            Where to draw; default a new figure.

        Returns
        -------
        matplotlib.axes.Axes
            ``ax.images[0]`` is the background (grey), then one RGBA image per label array
            (transparent where nothing is drawn), each with its extent in µm.
        """
        images = self._tree["images"].children if "images" in self._tree.children else {}
        if image_id not in images:
            raise InputError(f"overlay image_id {image_id!r}: not in the study "
                             f"(it holds {', '.join(images) or 'no images'})")
        ds = images[image_id].to_dataset()
        if style not in ("outline", "fill"):
            raise InputError(f"overlay style must be 'outline' or 'fill'; got {style!r}")
        if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and 0 < alpha <= 1):
            raise InputError(f"overlay alpha must be a number in (0, 1]; got {alpha!r}")
        labels = [labels] if isinstance(labels, str) else list(labels)
        if image is None:
            image = "phase" if "sr" not in ds.data_vars and "phase" in ds.data_vars else "sr"
        for name, allowed in [(image, ("sr", "raw", "phase"))] + [(n, ("particles", "cracks")) for n in labels]:
            if name not in allowed:
                raise InputError(f"overlay: {name!r} is not one of {', '.join(allowed)}")
            if name not in ds.data_vars:
                raise InputError(f"overlay: image {image_id!r} has no complete {name!r} "
                                 f"(it holds {', '.join(ds.data_vars)})")

        def region(da: xr.DataArray) -> xr.DataArray:
            ydim, xdim = da.dims[-2:]
            da = da.sel({ydim: y if y is not None else slice(None), xdim: x if x is not None else slice(None)})
            if 0 in da.shape:
                raise InputError(f"overlay region y={y!r}, x={x!r} (µm) holds no pixel of {da.name!r}")
            return da.compute()

        ax = _new_axes(ax)
        bg = region(ds[image])
        ax.imshow(bg.values, cmap="gray", extent=_extent(bg), interpolation="nearest")
        rng = np.random.default_rng(seed)
        for name in labels:
            lab = region(ds[name])
            vals = lab.values
            rgba = np.zeros(vals.shape + (4,), dtype=np.float32)
            if style == "outline":
                rgba[boundaries(vals)] = OUTLINE_COLORS[name]
            else:
                ids, inverse = np.unique(vals, return_inverse=True)
                colours = np.concatenate([rng.uniform(0.15, 1.0, (len(ids), 3)), np.full((len(ids), 1), alpha)], axis=1)
                colours[ids == 0] = 0.0
                rgba = colours[inverse.reshape(vals.shape)].astype(np.float32)
            ax.imshow(rgba, extent=_extent(lab), interpolation="nearest")
        ax.set_xlabel("x [µm]")
        ax.set_ylabel("y [µm]")
        ax.set_title(f"{image_id} ({ds.attrs.get('condition', '')}): {image} + {', '.join(labels) or 'no labels'}",
                     fontsize=9, loc="left")
        return ax
