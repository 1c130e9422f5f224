"""Table schemas (DESIGN §4.2, a contract) and Parquet I/O.

One row per object, units in column names. Empty results are empty tables with the right
columns and dtypes, never errors.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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
    },
    "local_porosity": {
        "condition": "string",
        "method": "string",
        "bin_lo": "float64",
        "bin_hi": "float64",
        "crack_um2": "float64",
        "solid_um2": "float64",
        "porosity": "float64",
    },
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


def empty_table(name: str) -> pd.DataFrame:
    """An empty table ``name`` with the contract's columns and dtypes."""
    return conform(pd.DataFrame(), name)


def conform(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Return ``df`` with exactly the columns of table ``name``, in order, with its dtypes.

    Raises ``KeyError`` naming the missing columns (a programming error, not user input).
    """
    schema = SCHEMAS[name]
    if len(df.columns) == 0 and len(df) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in schema.items()})
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise KeyError(f"table {name!r} lacks columns {missing}")
    out = df[list(schema)].astype(schema)
    return out.reset_index(drop=True)


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write each table as ``<out_dir>/<name>.parquet`` (atomically: temp file, then rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in tables.items():
        path = out_dir / f"{name}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        conform(df, name).to_parquet(tmp, index=False)
        tmp.replace(path)
        paths[name] = path
    return paths


def read_table(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """Read one Parquet table; with ``name``, conform it to the contract."""
    df = pd.read_parquet(path)
    return conform(df, name) if name else df


#: Dimension of each table when opened as xarray (one row per object, or a dense grid).
_XARRAY_INDEX = {
    "images": ["image_id"],
    "cracks": None,  # flat: dimension "crack"
    "particles": None,  # flat: dimension "particle"
    "local_porosity": ["condition", "method", "bin_lo"],
    "conditions": ["condition"],
}


def to_xarray(tables: dict[str, pd.DataFrame]) -> dict:
    """The tables as ``xarray.Dataset`` objects, for Jupyter.

    ``images`` and ``conditions`` are indexed by ``image_id`` / ``condition``;
    ``local_porosity`` is a dense grid over (condition, method, bin_lo), so that
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
