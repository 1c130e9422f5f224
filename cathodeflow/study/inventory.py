"""What a study store holds, removing images from it, and whether its tables are current.

The tables under ``<store>/tables`` (DESIGN §4.2) are derived from the stores' images: they
are *current* when they were written after every stage of every image, and cover exactly the
images in the store. :func:`mark_tables_written` records the write (time and image ids, in
``tables/tables-written.json``) when the pipeline writes them; :func:`tables_state` compares
that time with the stages' provenance times (DESIGN §4.1) and the ids in
``tables/images.parquet`` with the store's, so that a report never shows tables that miss a
new image, hold a removed one, or predate a recomputed stage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import CathodeflowError

__all__ = [
    "LS_STAGES",
    "summarize_store",
    "format_summary",
    "remove_images",
    "mark_tables_written",
    "tables_state",
    "check_tables_current",
    "TablesState",
]

#: Stages :func:`summarize_store` reports per image (``raw`` gives the shape and pixel size).
LS_STAGES = ("sr", "prob", "phase", "labels/cracks", "labels/particles")
#: Column titles of those stages in the printed table.
_SHORT = {"sr": "sr", "prob": "prob", "phase": "phase", "labels/cracks": "cracks", "labels/particles": "particles"}
_SYMBOL = {"complete": "✓", "incomplete": "…", "absent": "–"}
LEGEND = ("legend: ✓ complete   … incomplete (interrupted or marked for recomputation; "
          "`cathodeflow run` recomputes it; …k/n: k of its n chunks are kept)   – absent")
FLAGS_LEGEND = ("flags (images table): unmarked = components of S>0 without a marker (no particle), "
                "holed = particles enclosing background, cracks outside = kept cracks in no particle, "
                "% cut = particles touching the frame")
#: Provenance entries measured on each image (not chosen by the user), left out when
#: parameter sets are compared: the U-net stage's intensity range and input/output grid.
PER_IMAGE_KEYS = frozenset({"intensity_range", "input_shape", "input_pixel_size_um", "output_pixel_size_um"})
#: The record of the last table write, beside the tables.
TABLES_RECORD = "tables-written.json"


# --------------------------------------------------------------------------- ls


def _param_set(params: dict) -> tuple[dict, str]:
    """(the parameters that define a stage's result, first 12 hex digits of their SHA-256).

    A stage's provenance ``params`` may nest the pipeline parameters it depends on under
    ``"params"`` (with their ``"params_hash"``): they are flattened into the set, so that
    differing sets name the parameter that differs. :data:`PER_IMAGE_KEYS` are left out.
    """
    flat = dict(params or {})
    nested = flat.pop("params", None)
    flat.pop("params_hash", None)
    if isinstance(nested, dict):  # a top-level entry (e.g. a resolved threshold) wins
        for k, v in nested.items():
            flat.setdefault(k, v)
    elif nested is not None:
        flat["params"] = nested
    chosen = {k: v for k, v in sorted(flat.items()) if k not in PER_IMAGE_KEYS}
    text = json.dumps(chosen, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return chosen, hashlib.sha256(text.encode()).hexdigest()[:12]


def summarize_store(store) -> dict:
    """What a study store holds: per image its condition, raw grid and stage status.

    Parameters
    ----------
    store : str, Path or Store
        The study store (opened read-only when a path).

    Returns
    -------
    dict
        JSON-serialisable::

            {"store": str, "n_images": int,
             "images": [{"image_id", "condition", "shape_raw": [H, W] or None,
                         "pixel_size_raw_um": float or None,
                         "stages": {stage: {"status": "complete" | "incomplete" | "absent",
                                            "method": str or None, "params_sha256": str or None,
                                            "end_utc": str or None,
                                            "chunks_written": [k, n] or None}},
                         "flags": str or None}],
             "parameter_sets": {stage: [{"params_sha256", "method", "params", "image_ids"}]},
             "tables": {"state", "reason", "written_utc", "image_ids"}}

        ``stages`` are :data:`LS_STAGES`; method and parameters only for complete stages;
        ``chunks_written`` for an interrupted stage whose next ``run`` resumes it chunk by
        chunk (k of its n chunks are kept);
        ``parameter_sets`` groups the complete images of each stage by their parameters
        (:data:`PER_IMAGE_KEYS` left out; ``params_sha256`` is the first 12 hex digits);
        ``flags`` are the image's quality flags in the store's ``tables/images.parquet``
        (:func:`cathodeflow.measure.image.flag_summary`), None when the tables lack the image.

    Raises
    ------
    StoreError
        The path is not a study store.
    """
    st = _open(store, "r")
    flags = _flags(st)
    images, sets = [], {s: {} for s in LS_STAGES}
    for iid in st.image_ids():
        raw = st.stage_info(iid, "raw") if st.is_complete(iid, "raw") else None
        row = {
            "image_id": iid,
            "condition": st.condition(iid),
            "shape_raw": list(raw["shape"]) if raw else None,
            "pixel_size_raw_um": float(raw["pixel_size_um"]) if raw else None,
            "stages": {},
            "flags": flags.get(iid),
        }
        for stage in LS_STAGES:
            status = st.stage_status(iid, stage)
            entry = {"status": status, "method": None, "params_sha256": None, "end_utc": None,
                     "chunks_written": None}
            if status == "incomplete":
                done = st.chunks_written(iid, stage)
                entry["chunks_written"] = list(done) if done else None
            if status == "complete":
                rec = st.stage_info(iid, stage)
                chosen, digest = _param_set(rec.get("params") or {})
                entry.update(method=chosen.get("method"), params_sha256=digest, end_utc=rec.get("end_utc"))
                group = sets[stage].setdefault(digest, {"params_sha256": digest, "method": chosen.get("method"),
                                                        "params": chosen, "image_ids": []})
                group["image_ids"].append(iid)
            row["stages"][stage] = entry
        images.append(row)
    ts = tables_state(st)
    return {
        "store": str(st.path),
        "n_images": len(images),
        "images": images,
        "parameter_sets": {s: list(g.values()) for s, g in sets.items()},
        "tables": {"state": ts.state, "reason": ts.reason, "written_utc": ts.written_utc,
                   "image_ids": list(ts.image_ids)},
    }


def _flags(st) -> dict[str, str]:
    """image_id -> quality flags in a few words, from ``tables/images.parquet`` ({} without it
    or when unreadable: ``ls`` must work on any store)."""
    from ..io.tables import conform, read_parquet
    from ..measure.image import flag_summary

    path = st.tables_dir / "images.parquet"
    try:
        images = conform(read_parquet(path), "images")
    except Exception:  # absent, truncated or foreign: tables_state reports it
        return {}
    return {str(r["image_id"]): flag_summary(r) for r in images.to_dict("records")}


def _stage_cell(entry: dict) -> str:
    """A stage's status symbol; ``…k/n`` for an interrupted stage with k of n chunks kept."""
    done = entry.get("chunks_written")
    return _SYMBOL[entry["status"]] + (f"{done[0]}/{done[1]}" if done else "")


def _differing(sets: list[dict]) -> set[str]:
    keys = set().union(*(s["params"] for s in sets))
    return {k for k in keys if len({json.dumps(s["params"].get(k), sort_keys=True) for s in sets}) > 1}


def _names(ids: list[str], n: int = 6) -> str:
    return ", ".join(ids[:n]) + (f", … (+{len(ids) - n})" if len(ids) > n else "")


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows of cells as lines with left-aligned columns two spaces apart."""
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]


def format_summary(summary: dict) -> str:
    """The summary of :func:`summarize_store` as the text ``cathodeflow ls`` prints.

    One row per image (id, condition, raw shape, raw pixel size, a status symbol per
    stage, and the quality flags when the tables hold some), the legend, one line per stage with its method and parameter set (one line per
    set, with the parameters that differ, when the images' sets differ), and the tables'
    state.
    """
    images = summary["images"]
    conds: dict[str, int] = {}
    for im in images:
        conds[im["condition"]] = conds.get(im["condition"], 0) + 1
    cond_txt = ", ".join(f"{c} ({k})" for c, k in sorted(conds.items()))
    lines = [f"{summary['store']}: {len(images)} image(s)" + (f"; conditions {cond_txt}" if conds else "")]
    if images:
        show_flags = any(im.get("flags") for im in images)  # only once tables hold flags
        head = ["image_id", "condition", "raw shape", "raw µm/px"] + [_SHORT[s] for s in LS_STAGES]
        head += ["flags"] if show_flags else []
        rows = [
            [im["image_id"], im["condition"],
             "×".join(str(v) for v in im["shape_raw"]) if im["shape_raw"] else "–",
             f"{im['pixel_size_raw_um']:.4g}" if im["pixel_size_raw_um"] else "–"]
            + [_stage_cell(im["stages"][s]) for s in LS_STAGES]
            + ([im.get("flags") or "–"] if show_flags else [])
            for im in images
        ]
        lines += _aligned([head] + rows)
        lines.append(LEGEND)
        if show_flags:
            lines.append(FLAGS_LEGEND)
        stage_rows = [["stage", "method", "params", "complete"]]
        extra: dict[str, list[str]] = {}
        for stage in LS_STAGES:
            sets = summary["parameter_sets"][stage]
            n_done = f"{sum(len(g['image_ids']) for g in sets)}/{len(images)}"
            if len(sets) <= 1:
                g = sets[0] if sets else {"method": None, "params_sha256": None}
                stage_rows.append([stage, g["method"] or "–", g["params_sha256"] or "–", n_done])
                continue
            keys = sorted(_differing(sets))
            stage_rows.append([stage, f"{len(sets)} parameter sets", "(below)", n_done])
            extra[stage] = [f"  {stage}: the parameter sets differ in {', '.join(keys)}:"] + [
                f"    {g['params_sha256']}  {g['method'] or '–'}  "
                + ", ".join(f"{k}={json.dumps(g['params'].get(k), ensure_ascii=False)}" for k in keys)
                + f"  ({len(g['image_ids'])}: {_names(g['image_ids'])})"
                for g in sets
            ]
        lines.append("stages (method and parameter set of the complete images; params = SHA-256 prefix):")
        lines += ["  " + r for r in _aligned(stage_rows)]
        for stage_lines in extra.values():
            lines += stage_lines
    else:
        lines.append("no images; add some with `cathodeflow ingest FILES… --store STORE --condition C`")
    t = summary["tables"]
    if t["state"] == "current":
        lines.append(f"tables: current (written {t['written_utc']}, {len(t['image_ids'])} image(s))")
    elif t["state"] == "stale":
        lines.append(f"tables: stale, {t['reason']}")
    else:
        lines.append("tables: not computed (`cathodeflow run --store STORE` computes them)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- rm


def remove_images(store, image_ids) -> tuple[list[str], bool]:
    """Remove images from a study store: their groups, per-image partial tables, and the
    combined tables (which included them), all or nothing for unknown ids.

    Parameters
    ----------
    store : str, Path or Store
    image_ids : sequence of str

    Returns
    -------
    (list of str, bool)
        The removed ids, and whether combined tables (``tables/*.parquet``) were deleted;
        ``cathodeflow run --store STORE --from tables`` rebuilds them from the remaining
        images' partial tables.

    Raises
    ------
    InputError
        An id not in the store (all named); nothing is removed.
    """
    from .pipeline import _partial_dir

    from ..io.location import rmtree
    from ..io.lock import store_lock

    st = _open(store, "r+")
    with store_lock(st.path, command="cathodeflow rm"):  # not while a run writes
        removed = st.remove_images(image_ids)  # checks every id before removing any
        for iid in removed:
            rmtree(_partial_dir(st, iid))
        tdir = st.tables_dir  # a Path, or a RemotePath for a store at a URL
        combined = sorted(tdir.glob("*.parquet"))
        for p in combined + [tdir / TABLES_RECORD]:
            p.unlink(missing_ok=True)
    return removed, bool(combined)


# --------------------------------------------------------------------------- tables freshness


@dataclass(frozen=True)
class TablesState:
    """Whether the store's tables are current.

    Attributes
    ----------
    state : {'current', 'stale', 'absent'}
    reason : str or None
        For 'stale': why, one line (which images or stages are newer or missing).
    written_utc : str or None
        When the tables were written (ISO 8601, UTC).
    image_ids : list of str
        Images in ``tables/images.parquet``.
    """

    state: str
    reason: str | None = None
    written_utc: str | None = None
    image_ids: tuple[str, ...] = ()


def mark_tables_written(store, image_ids) -> Path:
    """Record that the tables were just written for ``image_ids`` (call after writing them).

    Returns
    -------
    Path
        ``tables/tables-written.json``: ``{"written_utc": ISO 8601, "image_ids": [...]}``.
    """
    st = _open(store, "r+")
    path = st.tables_dir / TABLES_RECORD
    tmp = path.with_suffix(".json.tmp")
    record = {"written_utc": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
              "image_ids": sorted(image_ids)}
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _written(tdir: Path) -> datetime:
    """When the tables were written: the record, else the images table's modification time."""
    try:
        rec = json.loads((tdir / TABLES_RECORD).read_text(encoding="utf-8"))
        return datetime.fromisoformat(rec["written_utc"])
    except (OSError, ValueError, KeyError, TypeError):
        return datetime.fromtimestamp((tdir / "images.parquet").stat().st_mtime, timezone.utc)


def tables_state(store) -> TablesState:
    """Compare the tables with the store (see the module docstring).

    Stale when an image of the store is missing from ``tables/images.parquet``, the table
    holds an image no longer in the store, or a stage of an image (``raw`` included) was
    started or completed after the tables were written.
    """
    from ..io.store import STAGES
    from ..io.tables import read_parquet

    st = _open(store, "r")
    tdir = st.tables_dir
    if not (tdir / "images.parquet").exists():
        return TablesState("absent")
    written = _written(tdir)
    try:
        table_ids = sorted(set(read_parquet(tdir / "images.parquet", columns=["image_id"])["image_id"]))
    except Exception as e:  # a truncated or foreign file: the tables cannot be trusted
        return TablesState("stale", f"tables/images.parquet is unreadable ({type(e).__name__})",
                           written.isoformat(timespec="seconds"))
    store_ids = st.image_ids()
    reasons = []
    new = [i for i in store_ids if i not in set(table_ids)]
    gone = [i for i in table_ids if i not in set(store_ids)]
    if new:
        reasons.append(f"image(s) {_names(new)} not in the tables")
    if gone:
        reasons.append(f"the tables hold image(s) {_names(gone)} no longer in the store")
    newer = []
    for iid in sorted(set(store_ids) & set(table_ids)):
        for stage in STAGES:
            rec = st.stage_info(iid, stage) or {}
            times = [datetime.fromisoformat(t) for t in (rec.get("start_utc"), rec.get("end_utc")) if t]
            if times and max(times) > written:
                newer.append(f"{stage} of {iid}")
    if newer:
        reasons.append(f"stage {_names(newer, 3)} written after the tables")
    stamp = written.isoformat(timespec="seconds")
    if reasons:
        return TablesState("stale", f"{'; '.join(reasons)} (tables written {stamp})", stamp, tuple(table_ids))
    return TablesState("current", None, stamp, tuple(table_ids))


def check_tables_current(store) -> None:
    """Raise CathodeflowError (one line, with the command that updates them) unless the
    store's tables are current."""
    st = _open(store, "r")
    ts = tables_state(st)
    if ts.state == "absent":
        raise CathodeflowError(f"{st.path}: no tables yet; run `cathodeflow run --store {st.path}` first")
    if ts.state == "stale":
        raise CathodeflowError(f"{st.path}: the tables are older than the store: {ts.reason}; "
                               f"update them with `cathodeflow run --store {st.path}`")


def _open(store, mode: str):
    from ..io.store import Store, open_store

    return store if isinstance(store, Store) else open_store(store, mode=mode)
