"""The checks every argument of the public calls goes through, on both sides alike."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import numpy as np

from pymc_modal.errors import InvalidOptionError, InvalidTypeError

__all__ = ["closest", "count", "format_bytes", "invalid", "is_bool", "is_number", "is_whole"]


def is_whole(value) -> bool:
    """Whether ``value`` is a whole number: an int or NumPy integer, not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value) -> bool:
    """Whether ``value`` is a real number: an int or float (NumPy's too), not a bool."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def is_bool(value) -> bool:
    """Whether ``value`` is True or False (NumPy's too)."""
    return isinstance(value, bool | np.bool_)


def invalid(value, message: str) -> InvalidOptionError:
    """The error for a numeric argument's ``value``: a TypeError too if it is no number at all."""
    return (InvalidOptionError if is_number(value) else InvalidTypeError)(message)


def count(
    name: str, value, what: str, example: int, least: int = 1, most: int | None = None
) -> int:
    """``value`` as an int, if it is a whole number from ``least`` to ``most``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value
        What was given.
    what : str
        What it counts, e.g. ``"chains"``.
    example : int
        A value to suggest.
    least, most : int, optional
        The bounds, both included.

    Raises
    ------
    InvalidOptionError
        Naming the argument, what it counts and a value it takes; an
        :class:`InvalidTypeError` if it is no number at all.
    """
    if not is_whole(value) or value < least or (most is not None and value > most):
        bounds = "" if most is None else f" from {least} to {most}"
        raise invalid(
            value,
            f"{name}={value!r}: pass a whole number of {what}{bounds}, such as {name}={example}.",
        )
    return int(value)


def closest(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the valid name closest to ``name``, or nothing."""
    match = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def format_bytes(n: float) -> str:
    """``n`` bytes for a message: ``"512 B"``, ``"1.5 MiB"``, ``"2.0 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")
