"""Backends move a job's bytes to a worker, start it, and bring the answer back."""

from __future__ import annotations

import dataclasses

__all__ = ["Delivery"]


@dataclasses.dataclass(frozen=True)
class Delivery:
    """What a backend brings back from one job.

    Attributes
    ----------
    answer : bytes
        The worker's answer, undecoded.
    seconds : dict of str to float
        Time the backend itself spent, by phase (e.g. ``start``, ``transfer``).
    where : str
        Where the worker ran, in words, e.g. ``"this machine"`` or ``"Modal H100"``.
    """

    answer: bytes
    seconds: dict[str, float]
    where: str
