"""Reading the small CSV files users write by hand (image manifests, tile grids).

One reader, so that every such file is decoded, split and reported on alike: UTF-8 with or
without a byte-order mark, the first row the header, blank rows skipped, errors one line
naming the file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import InputError, one_line

__all__ = ["read_csv_rows"]


def read_csv_rows(path, *, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the data rows of a hand-written CSV file.

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for messages (e.g. ``"manifest"``, ``"tile grid"``).

    Returns
    -------
    header : list of str
        The first row, each name stripped of spaces (empty for an empty file).
    rows : list of (line number, fields)
        The other rows that hold any non-blank field, with their 1-based line number in the
        file (the header is line 1), fields as written.

    Raises
    ------
    InputError
        The file is missing or is not UTF-8 text (one line naming it).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(one_line(f"{path}: {what} cannot be read as UTF-8 text ({e})")) from None
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip() for h in rows[0]] if rows else []
    data = [(number, row) for number, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]
    return header, data
