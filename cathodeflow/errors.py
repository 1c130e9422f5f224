"""Errors that users see.

Every error raised for bad input is a :class:`CathodeflowError`; the command line prints
its message on one line and exits with status 2, without a traceback. Messages name the
file or argument, what was found and what was expected.
"""

from __future__ import annotations


class CathodeflowError(Exception):
    """Base class of all errors cathodeflow raises on purpose."""


class InputError(CathodeflowError, ValueError):
    """A file, array or argument given by the user is not what was expected."""


class StoreError(CathodeflowError):
    """A study store is missing, of another kind, or inconsistent."""


def one_line(message: str) -> str:
    """Collapse a message to a single line (for the command line)."""
    return " ".join(str(message).split())
