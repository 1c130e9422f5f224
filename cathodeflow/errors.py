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


class CathodeflowWarning(UserWarning):
    """Base class of the warnings cathodeflow issues on purpose; the command line prints
    each as one ``cathodeflow: warning: …`` line."""


class PixelSizeWarning(CathodeflowWarning):
    """A pixel size or a length in pixels that the method's defaults were not made for
    (a marker radius of very few or very many pixels, a raw image far from the 38.5 nm the
    super-resolution expects). The command line prints it as one ``cathodeflow: warning:``
    line; the result is computed anyway."""
