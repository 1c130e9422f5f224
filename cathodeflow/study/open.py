"""A study store as one lazy :class:`xarray.DataTree`, for Jupyter (:func:`open_study`).

The tree mirrors the store (DESIGN §4.1, §4.2)::

    /                        attrs: store path, layout version, creation, tables state
    ├── images/
    │   └── <image_id>/      one Dataset per image; attrs: condition, source, added_utc
    │         raw            (y_raw, x_raw)   as acquired (η ≈ 38.5 nm)
    │         sr             (y, x)           super-resolved (η ≈ 14.3 nm)
    │         prob           (c, y, x)        U-net Ŷ, c = background, solid, crack (if stored)
    │         phase          (y, x)           S of eq. 1 / 7: 0 background, 1 solid, 2 crack
    │         cracks         (y, x)           crack-wise labels (eq. 2)
    │         particles      (y, x)           particle-wise labels (eq. 8–10)
    └── tables/
          images, cracks, particles, local_porosity, local_porosity_images, conditions
          (xarray Datasets; a table the folder lacks is left out)

The store is a local folder or an fsspec URL (``s3://bucket/study.zarr``,
:mod:`cathodeflow.io.location`): the arrays are then read from the Zarr ``FsspecStore`` and
the tables through the URL's fsspec filesystem. Every array is a Dask array read chunk by
chunk from the store's Zarr array (nothing is loaded until computed). Coordinates are in
µm, ``index × η`` with η the pixel size of the array's own grid (the NGFF ``scale``):
arrays on one grid share its dimensions. ``raw`` is on ``(y_raw, x_raw)``; the first grid
met in the order ``sr, prob, phase, cracks, particles`` is ``(y, x)``, any other
``(y_<name>, x_<name>)`` after its first array (a U-net that resampled the image puts
``prob`` and the labels on ``(y_prob, x_prob)``; an imported phase map without ``sr`` is
on ``(y, x)``).
Incomplete stages are left out and listed in the image's ``incomplete`` attribute.

Table variables carry ``units`` (:func:`column_units`, from the column-name suffix). The
accessor ``tree.cathode`` (Table 1, boxplots, overlays) is registered by
:mod:`cathodeflow.report.accessor`, which ``cathodeflow.open_study`` imports first.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CathodeflowError, CathodeflowWarning, InputError, StoreError, one_line

if TYPE_CHECKING:  # xarray is imported when a study is opened, not with this module
    import xarray

__all__ = ["open_study", "column_units", "ARRAYS"]

#: Data variable of an image node -> its stage in the store (:data:`~cathodeflow.io.store.STAGES`),
#: in the order in which grids get their dimension names (``raw`` always its own).
ARRAYS = {
    "sr": "sr",
    "prob": "prob",
    "phase": "phase",
    "cracks": "labels/cracks",
    "particles": "labels/particles",
    "raw": "raw",
}
#: Channels of ``prob`` (the U-net's Ŷ), in stored order.
PROB_CHANNELS = ("background", "solid", "crack")
#: Column-name suffix -> units (longest suffixes first); other numeric columns are "1".
_SUFFIX_UNITS = (
    ("_deg", "degree"),
    ("_per_um2", "µm^-2"),
    ("_per_um", "µm^-1"),
    ("_um2", "µm^2"),
    ("_um", "µm"),
    ("_px", "px"),
)
_LONG_NAMES = {
    "raw": "SEM image as acquired",
    "sr": "super-resolved SEM image",
    "prob": "U-net class probabilities Ŷ",
    "phase": "phase map S (eq. 1, 7)",
    "cracks": "crack-wise segmentation (eq. 2)",
    "particles": "particle-wise segmentation (eq. 8-10)",
}


#: Columns whose units their name does not say (the ``conditions`` table's λ statistics).
_UNITS_BY_NAME = {"intensity_mean": "µm^-2", "intensity_std": "µm^-2"}


def column_units(column: str) -> str | None:
    """Units of a table column from its name: ``_um`` → ``"µm"``, ``_um2`` → ``"µm^2"``,
    ``_per_um`` → ``"µm^-1"``, ``_per_um2`` → ``"µm^-2"``, ``_px`` → ``"px"``;
    ``intensity_mean``/``intensity_std`` (λ of eq. 12, per condition) → ``"µm^-2"``;
    identifiers (``*_id``) → None; anything else numeric is dimensionless, ``"1"``."""
    if column in _UNITS_BY_NAME:
        return _UNITS_BY_NAME[column]
    if column.endswith("_id"):
        return None
    for suffix, units in _SUFFIX_UNITS:
        if column.endswith(suffix):
            return units
    return "1"


def open_study(path, *, storage_options: dict | None = None) -> "xarray.DataTree":
    """Open a study store as a lazy :class:`xarray.DataTree` (layout: module docstring).

    Parameters
    ----------
    path : str or Path
        A study store written by ``cathodeflow ingest`` / ``run``: a local folder
        (``study.zarr``) or an fsspec URL (``s3://bucket/study.zarr``; credentials and
        endpoint from the environment, :mod:`cathodeflow.io.location`).
    storage_options : dict, optional
        Options of a URL's fsspec filesystem (e.g. ``{"endpoint_url": ...}`` or
        ``{"anon": True}``), for the arrays and the tables alike; ignored for a folder.

    Returns
    -------
    xarray.DataTree
        ``tree["images/<id>"]`` holds the image's arrays, each a Dask array of shape (H, W)
        ((3, H, W) for ``prob``) with coordinates in µm and attributes ``units``,
        ``long_name``, ``pixel_size_um`` and the stage's provenance (``params``,
        ``package_version``, ``weights_sha256``, ``start_utc``, ``end_utc``; ``phase`` also
        ``flag_values``/``flag_meanings``). ``tree["tables/<name>"]`` holds the
        tables of DESIGN §4.2 as Datasets (:func:`cathodeflow.io.tables.to_xarray`) whose
        numeric variables carry ``units``; present only while the tables are current. The
        root's ``store`` attribute is the folder's absolute path, or the URL.

    Raises
    ------
    InputError
        ``path`` is not a study store of the current layout (one line, with the reason).

    Warns
    -----
    CathodeflowWarning
        The tables are missing or older than the store; the tree then has no ``tables``.
    """
    import xarray as xr
    import zarr

    from ..io.location import RemotePath, zarr_store
    from ..io.store import STORE_VERSION, open_store

    if not isinstance(path, (str, Path)):
        raise InputError(f"open_study path: expected a str or Path of a study store (a folder or an "
                         f"s3:// URL), got {type(path).__name__}")
    if storage_options is not None and not isinstance(storage_options, dict):
        raise InputError(f"open_study storage_options: expected a dict of fsspec options or None, "
                         f"got {type(storage_options).__name__}")
    try:
        st = open_store(path, mode="r", storage_options=storage_options)
    except StoreError as e:
        raise InputError(one_line(f"open_study path: {e}")) from None
    remote = isinstance(st.path, RemotePath)
    root_group = zarr.open_group(zarr_store(st.path, read_only=True), mode="r", zarr_format=3)
    mark = dict(root_group.attrs.asdict().get("cathodeflow") or {})
    nodes = {"images": xr.Dataset()}
    for iid in st.image_ids():
        nodes[f"images/{iid}"] = _image_dataset(st, iid)
    tables, state = _tables(st)
    for name, ds in tables.items():
        nodes[f"tables/{name}"] = ds
    if tables:
        nodes["tables"] = xr.Dataset(attrs={"folder": str(st.tables_dir)})
    root = xr.Dataset(attrs={
        "store": str(st.path) if remote else str(Path(st.path).resolve()),
        "store_version": STORE_VERSION,
        "created_utc": mark.get("created_utc"),
        "created_by": mark.get("created_by"),
        "tables": state,
    })
    nodes["/"] = root
    return xr.DataTree.from_dict(nodes, name=st.path.name)


def _image_dataset(st, iid: str):
    """One image's complete stages as a Dataset (dimension names per grid, module docstring)."""
    import numpy as np
    import xarray as xr

    grids: dict[tuple, tuple[str, str]] = {}
    variables, incomplete = {}, []
    for var, stage in ARRAYS.items():
        status = st.stage_status(iid, stage)
        if status != "complete":
            if status == "incomplete":
                incomplete.append(var)
            continue
        data = st.read_stage(iid, stage)  # a Dask array read from the stored Zarr array
        rec = st.stage_info(iid, stage)
        eta = float(rec["pixel_size_um"])
        key = (tuple(data.shape[-2:]), eta)
        if var == "raw":
            ydim, xdim = "y_raw", "x_raw"
        else:
            if key not in grids:
                grids[key] = ("y", "x") if not grids else (f"y_{var}", f"x_{var}")
            ydim, xdim = grids[key]
        coords = {
            d: xr.Variable(d, np.arange(n) * eta, attrs={"units": "µm", "long_name": f"{d[0]} (pixel index × η)"})
            for d, n in ((ydim, data.shape[-2]), (xdim, data.shape[-1]))
        }
        dims = (ydim, xdim)
        if data.ndim == 3:
            dims = ("c",) + dims
            names = PROB_CHANNELS if data.shape[0] == len(PROB_CHANNELS) else range(data.shape[0])
            coords["c"] = list(names)
        meta = _array_attrs(var, stage, rec, f"{st.stage_path(iid, stage)}/0")
        variables[var] = xr.DataArray(data, dims=dims, coords=coords, name=var, attrs=meta)
    attrs = {"image_id": iid, "condition": st.condition(iid), "source": st.source(iid),
             "incomplete": incomplete}
    return xr.Dataset(variables, attrs=attrs)


def _array_attrs(var: str, stage: str, rec: dict, store_path: str) -> dict:
    """``units`` (grey values, probabilities and labels are dimensionless: "1"),
    ``long_name`` and the stage's provenance record (DESIGN §4.1)."""
    attrs = {"long_name": _LONG_NAMES[var], "units": "1", "stage": stage, "store_path": store_path}
    if var == "phase":
        attrs.update(flag_values=[0, 1, 2], flag_meanings="background solid crack")
    for k in ("pixel_size_um", "params", "package_version", "weights_sha256", "start_utc", "end_utc"):
        attrs[k] = rec.get(k)
    return attrs


def _tables(st) -> tuple[dict, str]:
    """The current tables as xarray Datasets with ``units``, and ``"current"`` or why not."""
    from ..io.tables import SCHEMAS, read_table, to_xarray
    from .pipeline import current_tables_dir

    try:
        tdir = current_tables_dir(st.path)
    except CathodeflowError as e:
        msg = one_line(str(e))
        warnings.warn(f"{msg} (open_study: the tree has no tables)", CathodeflowWarning, stacklevel=3)
        return {}, msg
    frames = {n: read_table(tdir / f"{n}.parquet", n) for n in SCHEMAS if (tdir / f"{n}.parquet").exists()}
    out = {}
    for name, ds in to_xarray(frames).items():
        for v, var in ds.variables.items():
            units = column_units(str(v)) if v in SCHEMAS[name] and var.dtype.kind in "biuf" else None
            if units is not None:
                var.attrs["units"] = units
        ds.attrs.update(table=name, file=str(tdir / f"{name}.parquet"))
        out[name] = ds
    return out, "current"
