"""Table schemas (DESIGN §4.2, a contract) and Parquet I/O.

One row per object, units in column names. Empty results are empty tables with the right
columns and dtypes, never errors. Each file's Parquet metadata holds, under the key
:data:`METADATA_KEY`, the parameters the table was made with, their hash and the package
version (:func:`read_table_metadata`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .location import RemotePath, as_path, is_url

#: Position columns shared by cracks and particles (measure/descriptors.py): centroid of the
#: pixel centres and the box of the pixel squares, µm from the image's top-left corner.
_BOX_COLUMNS = {
    "centroid_y_um": "float64",
    "centroid_x_um": "float64",
    "bbox_y0_um": "float64",
    "bbox_x0_um": "float64",
    "bbox_y1_um": "float64",
    "bbox_x1_um": "float64",
}

#: Columns of the local porosity per condition (eq. 37–40), and per image with ``image_id``.
_LOCAL_POROSITY = {
    "condition": "string",
    "method": "string",
    "bin_lo": "float64",
    "bin_hi": "float64",
    "crack_um2": "float64",
    "solid_um2": "float64",
    "porosity": "float64",
}

#: Column name -> pandas dtype, per table, in contract order.
SCHEMAS: dict[str, dict[str, str]] = {
    "images": {
        "image_id": "string",
        "condition": "string",
        "solid_px": "int64",
        "crack_px": "int64",
        "porosity": "float64",
        "n_cracks": "int64",
        "n_cracks_unfiltered": "int64",
        "crack_intensity_per_um2": "float64",
        "area_um2": "float64",
        "pixel_size_um": "float64",
        # quality flags (measure/image.py, quality_flags); nullable: NA in tables written
        # before they existed
        "unmarked_components": "Int64",
        "unmarked_area_um2": "float64",
        "particles_with_holes": "Int64",
        "cracks_outside_particles": "Int64",
        "particles_cut_fraction": "float64",
        "frame_fraction": "float64",
    },
    "cracks": {
        "image_id": "string",
        "condition": "string",
        "crack_id": "int64",
        "area_px": "int64",
        "skeleton_px": "int64",
        "d_um": "float64",
        "length_um": "float64",
        "width_um": "float64",
        "particle_id": "int64",
        "kept": "bool",
        "adjusted": "bool",
        # geometry (measure/descriptors.py, crack_rows); NaN in tables written before it
        **_BOX_COLUMNS,
        "orientation_deg": "float64",
        "radial_angle_deg": "float64",
        "distance_to_particle_center_um": "float64",
    },
    "particles": {
        "image_id": "string",
        "condition": "string",
        "particle_id": "int64",
        "area_px": "int64",
        "area_um2": "float64",
        "section_radius_um": "float64",
        "porosity": "float64",
        "ssa_per_um": "float64",
        "n_cracks": "int64",
        "touches_border": "bool",
        # geometry (measure/descriptors.py, particle_rows); NaN in tables written before it
        **_BOX_COLUMNS,
        "equivalent_diameter_um": "float64",
        "feret_diameter_um": "float64",
    },
    "local_porosity": _LOCAL_POROSITY,
    # The same per image (areas summed over the image's particles): what bootstrap intervals
    # over images need (report/stats.py). Not in DESIGN §4.2's list; added beside it.
    "local_porosity_images": {"image_id": "string", **_LOCAL_POROSITY},
    "conditions": {
        "condition": "string",
        "porosity_mean": "float64",
        "porosity_std": "float64",
        "porosity_pooled": "float64",
        "intensity_mean": "float64",
        "intensity_std": "float64",
        "intensity_pooled_per_um2": "float64",
        "n_images": "int64",
        "n_cracks": "int64",
        "n_cracks_unfiltered": "int64",
        "n_particles": "int64",
    },
}


#: Tables a folder of tables may lack (written before they existed); readers treat a missing
#: one as not measured.
OPTIONAL_TABLES: tuple[str, ...] = ("local_porosity_images",)

#: Tables every folder of tables holds (DESIGN §4.2).
REQUIRED_TABLES: tuple[str, ...] = tuple(n for n in SCHEMAS if n not in OPTIONAL_TABLES)

#: Columns a table may lack (it was written before they existed): :func:`conform` adds them
#: as missing values (NA / NaN), meaning "not measured".
OPTIONAL: dict[str, tuple[str, ...]] = {
    "images": (
        "unmarked_components",
        "unmarked_area_um2",
        "particles_with_holes",
        "cracks_outside_particles",
        "particles_cut_fraction",
        "frame_fraction",
    ),
    "cracks": (
        *_BOX_COLUMNS,
        "orientation_deg",
        "radial_angle_deg",
        "distance_to_particle_center_um",
    ),
    "particles": (
        *_BOX_COLUMNS,
        "equivalent_diameter_um",
        "feret_diameter_um",
    ),
}


def empty_table(name: str) -> pd.DataFrame:
    """An empty table ``name`` with the contract's columns and dtypes."""
    return conform(pd.DataFrame(), name)


def conform(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Return ``df`` with exactly the columns of table ``name``, in order, with its dtypes.

    Columns of :data:`OPTIONAL` that ``df`` lacks are added as missing values. Raises
    ``KeyError`` naming the other missing columns (a programming error, not user input).
    """
    schema = SCHEMAS[name]
    if len(df.columns) == 0 and len(df) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in schema.items()})
    absent = [c for c in OPTIONAL.get(name, ()) if c not in df.columns]
    if absent:
        df = df.assign(**{c: pd.Series(np.nan, index=df.index).astype(schema[c]) for c in absent})
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise KeyError(f"table {name!r} lacks columns {missing}")
    out = df[list(schema)].astype(schema)
    return out.reset_index(drop=True)


#: Key of the Parquet (schema) metadata holding the provenance of a table, as JSON.
METADATA_KEY = "cathodeflow"


def write_tables(
    tables: dict[str, pd.DataFrame], out_dir: str | Path, *, metadata: dict | None = None
) -> dict[str, Path]:
    """Write each table as ``<out_dir>/<name>.parquet`` (atomically: temp file, then rename;
    at a URL each object is written whole, an object store's writes being atomic).

    Parameters
    ----------
    tables : dict of str -> DataFrame
        Keyed by table name (:data:`SCHEMAS`); conformed to the contract.
    out_dir : str, Path or RemotePath
        Created if missing; a URL (``s3://bucket/study.zarr/tables``) or its
        :class:`~cathodeflow.io.location.RemotePath`.
    metadata : dict, optional, keyword-only
        JSON-serialisable provenance, e.g. :func:`cathodeflow.config.params_record`
        (``params``, ``params_hash``). Stored with ``package_version`` added as JSON under
        :data:`METADATA_KEY` in every file's Parquet metadata.

    Returns
    -------
    dict of str -> Path (RemotePath at a URL)
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .. import __version__

    record = json.dumps({**(metadata or {}), "package_version": __version__}, ensure_ascii=False)
    out_dir = as_path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in tables.items():
        path = out_dir / f"{name}.parquet"
        table = pa.Table.from_pandas(conform(df, name), preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[METADATA_KEY.encode()] = record.encode("utf-8")
        if isinstance(path, RemotePath):
            with path.open("wb") as f:
                pq.write_table(table.replace_schema_metadata(meta), f)
        else:
            tmp = path.with_suffix(".parquet.tmp")
            pq.write_table(table.replace_schema_metadata(meta), tmp)
            tmp.replace(path)
        paths[name] = path
    return paths


def read_table_metadata(path: str | Path) -> dict:
    """The provenance :func:`write_tables` stored in a table's Parquet metadata
    (``params``, ``params_hash``, ``package_version``); ``{}`` for a file without it."""
    import pyarrow.parquet as pq

    path = as_path(path) if is_url(path) else path
    if isinstance(path, RemotePath):
        with path.open("rb") as f:
            meta = pq.read_schema(f).metadata or {}
    else:
        meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY.encode())
    return json.loads(raw) if raw else {}


def read_table(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """Read one Parquet table (a path, URL or RemotePath); with ``name``, conform it to the
    contract."""
    df = read_parquet(path)
    return conform(df, name) if name else df


def read_parquet(path, **kwargs) -> pd.DataFrame:
    """``pandas.read_parquet`` of a path, a URL or a
    :class:`~cathodeflow.io.location.RemotePath` (read through its fsspec filesystem, so
    with the store's ``storage_options``); ``kwargs`` go to pandas (e.g. ``columns``)."""
    path = as_path(path) if is_url(path) else path
    if isinstance(path, RemotePath):
        with path.open("rb") as f:
            return pd.read_parquet(f, **kwargs)
    return pd.read_parquet(path, **kwargs)


def write_parquet(df: pd.DataFrame, path) -> None:
    """``df.to_parquet(path, index=False)`` to a path or a
    :class:`~cathodeflow.io.location.RemotePath` (one object, written whole)."""
    path = as_path(path) if is_url(path) else path
    if isinstance(path, RemotePath):
        with path.open("wb") as f:
            df.to_parquet(f, index=False)
    else:
        df.to_parquet(path, index=False)


#: Dimension of each table when opened as xarray (one row per object, or a dense grid).
_XARRAY_INDEX = {
    "images": ["image_id"],
    "cracks": None,  # flat: dimension "crack"
    "particles": None,  # flat: dimension "particle"
    "local_porosity": ["condition", "method", "bin_lo"],
    "local_porosity_images": ["image_id", "method", "bin_lo"],
    "conditions": ["condition"],
}


def to_xarray(tables: dict[str, pd.DataFrame]) -> dict:
    """The tables as ``xarray.Dataset`` objects, for Jupyter.

    ``images`` and ``conditions`` are indexed by ``image_id`` / ``condition``;
    ``local_porosity`` is a dense grid over (condition, method, bin_lo) (and
    ``local_porosity_images`` over (image_id, method, bin_lo)), so that
    ``ds.porosity.sel({"method": "paper"}).plot.line(x="bin_lo", hue="condition")`` draws
    Fig. 9 (``sel`` takes a dict here: ``method=`` is a keyword of ``sel`` itself);
    ``cracks`` and ``particles`` have one flat dimension ``crack`` / ``particle`` with their
    identifying columns as coordinates. Units stay in the variable names.
    """
    out = {}
    for name, df in tables.items():
        df = conform(df, name)
        keys = _XARRAY_INDEX.get(name)
        if keys:
            ds = df.set_index(keys).to_xarray()
        else:
            dim = name[:-1]  # cracks -> crack, particles -> particle
            ds = df.rename_axis(dim).to_xarray()
            ds = ds.set_coords([c for c in ("image_id", "condition", f"{dim}_id") if c in ds])
        out[name] = ds
    return out
