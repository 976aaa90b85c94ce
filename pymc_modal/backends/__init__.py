"""Backends move a job's bytes to a worker, start it, and bring the answer back.

A backend knows nothing of models, settings or results: it stores data
blobs, submits encoded jobs and collects their encoded answers. It is chosen
here, in one place, by name.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pymc_modal.config import Options
from pymc_modal.pricing import Tariff
from pymc_modal.resources import Resources

__all__ = [
    "Backend",
    "Delivery",
    "Detached",
    "OnAnswer",
    "Submission",
    "choose",
    "close_all",
    "get",
    "say_stopping",
]

NAMES = ("local", "modal")

_log = logging.getLogger("pymc_modal")


@dataclasses.dataclass(frozen=True)
class Delivery:
    """What a backend brings back from one job.

    Attributes
    ----------
    answer : bytes
        The worker's answer, undecoded.
    seconds : dict of str to float
        Time the backend itself spent, by phase (e.g. ``start``, ``transfer``);
        ``wall``, from sending the job to its answer, where this process saw it.
    where : str
        Where the worker ran, in words, e.g. ``"this machine"`` or ``"Modal H100"``.
    """

    answer: bytes
    seconds: dict[str, float]
    where: str


# Called with a job's index and delivery as it answers.
OnAnswer = Callable[[int, Delivery], None] | None


class Submission(Protocol):
    """Jobs a backend has started."""

    def wait(self, on_answer: OnAnswer = None, block: bool = True) -> list[Delivery] | None:
        """Every job's delivery, in order, once all have answered.

        ``on_answer`` is called with each job's index and delivery as it
        answers. With ``block=False``, None if any job is still running.

        Raises
        ------
        WorkerError
            If a job ended without an answer.
        """


class Detached(Submission, Protocol):
    """A detached run's jobs, which outlive this process.

    Attributes
    ----------
    record : dict
        JSON-ready: what :meth:`Backend.reattach` needs to find the jobs again
        from another process.
    """

    record: dict[str, Any]

    def answers(self) -> list[bytes] | None:
        """Every job's answer, read without collecting or removing anything.

        None while any job is still running.

        Raises
        ------
        WorkerError
            If a job ended without an answer.
        """


class Backend(Protocol):
    """Where workers run. Only moves bytes."""

    name: str

    def where(self, options: Options) -> str:
        """Where jobs run with these options, in words."""

    def tariff(self, options: Options, resources: Resources) -> Tariff | None:
        """What containers with these options and resources are billed at; None if nothing."""

    def store_blobs(self, blobs: dict[str, bytes]) -> int:
        """Store the data blobs the workers lack; return the bytes that took."""

    def submit(
        self, jobs: Sequence[bytes], options: Options, detached: Path | None = None
    ) -> Submission | Detached:
        """Start the jobs; with ``detached`` (a run's folder) they outlive this process."""

    def reattach(self, record: dict[str, Any], folder: Path) -> Detached:
        """A detached run's jobs, from their record and folder."""

    def stop(self, checkpoints: Sequence[str]) -> None:
        """Ask the runs keeping these checkpoints to end after their current block."""

    def close(self) -> None:
        """Release warm workers now rather than after their idle window."""

    def prune(self, keep: set[str], fetched: set[str], dry_run: bool) -> dict[str, int]:
        """Delete cached data blobs but ``keep``, compiled programs, and answers of runs
        in ``fetched``; the bytes freed (or, with ``dry_run``, that would be) by store."""


_opened: dict[str, Backend] = {}


def get(name: str) -> Backend:
    """The backend called ``name`` (``"local"`` or ``"modal"``)."""
    if name not in _opened:
        _opened[name] = importlib.import_module(f"pymc_modal.backends.{name}").BACKEND
    return _opened[name]


@functools.cache
def _say_why_local() -> None:
    _log.info(
        "No Modal credentials found, so sampling runs on this machine's CPU (local backend); "
        "run `modal setup` to sample on Modal GPUs, or pass backend='local' to silence this."
    )


def choose(name: str) -> Backend:
    """The backend for an option's value; for Modal, credentials are checked first.

    ``"auto"`` is Modal when Modal credentials are configured, else this
    machine, which it says once.
    """
    if name == "local":
        return get(name)
    modal = get("modal")
    if name == "modal":
        modal.check_credentials()
        return modal
    if modal.credentials_configured():
        return modal
    _say_why_local()
    return get("local")


def say_stopping() -> None:
    """Say what the first Ctrl-C of a waited call did, and what a second does."""
    _log.warning(
        "Stopping after the current block; the draws so far come back. "
        "Press Ctrl-C again to stop at once, with nothing back."
    )


def close_all() -> None:
    """Release every backend's warm workers."""
    for backend in _opened.values():
        backend.close()
