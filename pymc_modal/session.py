"""Modelling sessions: calls inside a block share warm workers, released when it ends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pymc_modal import backends
from pymc_modal.config import Options, options

__all__ = ["close", "session"]


def close() -> None:
    """End the warm workers and stop the running Modal app now, not after their idle window."""
    backends.close_all()


@contextlib.contextmanager
def session(**overrides: Any) -> Iterator[Options]:
    """Run the calls inside the block on warm workers, and release them at its end.

    Consecutive calls reuse one running Modal app and, within
    ``scaledown_window`` seconds of the last answer, a warm container (on the
    local backend, a warm process) that has its libraries loaded and its last
    model compiled. Outside a block, calls in one script share them too, and
    they are released ``scaledown_window`` seconds after the last call or
    when the script ends; the block releases them as it ends, so an idle GPU
    is not billed for the rest of the window.

    Parameters
    ----------
    **overrides
        Options for the calls inside, as for :func:`pymc_modal.options`,
        e.g. ``gpu="H100"`` or ``scaledown_window=300``.

    Yields
    ------
    Options
        The options now in force.

    Examples
    --------
    .. code-block:: python

        with pymc_modal.session(gpu="H100", scaledown_window=300):
            for seed in range(3):
                fits.append(pymc_modal.sample(model=model, random_seed=seed))
    """
    with options(**overrides) as resolved:
        try:
            yield resolved
        finally:
            close()
