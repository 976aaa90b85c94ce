"""A run's checkpoint: what the worker saves to go on from where it was.

After warm-up (and within a long one) and after every block of draws, the
worker saves the sampler's state (each chain's position, adapted step size
and mass matrix, and random key) with the run's progress, and the block's
draws in a file of their own, written once. The state is written after the
draws it counts, each file atomically, so whatever a killed worker left is a
checkpoint to go on from. An attempt that finds a checkpoint of the same
chains goes on from it; one of a run that ended as asked is marked so, and
only an extension (:func:`pymc_modal.extend`) goes on from it. The client
asks a run to stop by writing a stop file beside it, which the worker reads
between blocks. A warm start reads another fit's checkpoint for its adapted
kernel (:meth:`Attempt.adapted`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymc_modal.job import SampleSettings, chain_settings
from pymc_modal.paths import CheckpointPaths, write_atomically

__all__ = ["Attempt", "Checkpoint", "Progress", "Storage"]

_log = logging.getLogger("pymc_modal")


def _nothing() -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Storage:
    """Where a backend keeps checkpoints, and how the worker shares what it writes there.

    Attributes
    ----------
    root : Path
        The folder holding each run's checkpoint in a folder of its own.
    submitted : float, optional
        When the job was submitted, by :func:`time.time`: a stop asked for
        before then was meant for an earlier run.
    publish : callable
        Makes what the worker wrote visible to others (on Modal, a commit).
    refresh : callable
        Shows the worker what others wrote since (on Modal, a reload).
    """

    root: Path
    submitted: float | None = None
    publish: Callable[[], None] = _nothing
    refresh: Callable[[], None] = _nothing

    def checkpoint(self, name: str) -> Checkpoint:
        """The checkpoint called ``name``."""
        return Checkpoint(CheckpointPaths(Path(self.root, name)), self)


@dataclasses.dataclass(frozen=True)
class Progress:
    """What a checkpoint says of its run besides the sampler's state.

    Attributes
    ----------
    chains : bytes
        Whose checkpoint: the pickled :func:`pymc_modal.job.chain_settings`.
    tuned : int
        Warm-up steps done.
    blocks : tuple of int
        Each saved block's draws per chain, in order.
    draw_seconds : float
        The seconds those blocks took to draw.
    attempts : int
        The attempts that made it.
    seconds : float
        The worker's seconds over those attempts, up to this save.
    ended : bool
        The run ended as asked: only an extension goes on from it.
    """

    chains: bytes
    tuned: int
    blocks: tuple[int, ...]
    draw_seconds: float
    attempts: int
    seconds: float
    ended: bool = False

    @property
    def drawn(self) -> int:
        """Draws per chain saved."""
        return sum(self.blocks)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One run's checkpoint; see the module's docstring."""

    paths: CheckpointPaths
    storage: Storage

    @staticmethod
    def chains(settings: SampleSettings) -> bytes:
        """What a run's checkpoint is recognised by: the settings its chains depend on."""
        return pickle.dumps(chain_settings(settings))

    def load(self, settings: SampleSettings) -> tuple[Progress, Any, list] | None:
        """The progress, sampler state and draws saved for these settings' chains, or None.

        None too where the run ended as asked (unless ``settings.extend``),
        or the checkpoint cannot be read (a version of this package that
        saved otherwise, say): the attempt then starts afresh, and overwrites it.
        """
        if not self.paths.state.exists():
            return None
        try:
            progress, state = pickle.loads(self.paths.state.read_bytes())
            if (progress.ended and not settings.extend) or progress.chains != self.chains(settings):
                return None
            draws, start = [], 0
            for size in progress.blocks:
                draws.append(pickle.loads(self.paths.draws(start, start + size).read_bytes()))
                start += size
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is started over
            _log.warning(
                "The checkpoint in %s could not be read (%s: %s); starting afresh.",
                self.paths.folder,
                type(exc).__name__,
                exc,
            )
            return None
        return progress, state, draws

    def save(self, progress: Progress, state: Any, draws=None) -> None:
        """Save the state and progress, with the draws of the block last counted, if new."""
        self.paths.folder.mkdir(parents=True, exist_ok=True)
        if draws is not None:
            stop = progress.drawn
            data = pickle.dumps(draws, pickle.HIGHEST_PROTOCOL)
            write_atomically(self.paths.draws(stop - progress.blocks[-1], stop), data)
        write_atomically(self.paths.state, pickle.dumps((progress, state), pickle.HIGHEST_PROTOCOL))
        self.storage.publish()

    def end(self, progress: Progress, state: Any) -> None:
        """Mark the run ended as asked; its state and draws stay, for an extension."""
        self.save(dataclasses.replace(progress, ended=True), state)

    def stop_asked(self) -> bool:
        """Whether the client asked this run to stop since the job was submitted."""
        # If others' writes cannot be fetched now, the next block's check will see them.
        with contextlib.suppress(Exception):
            self.storage.refresh()
        with contextlib.suppress(FileNotFoundError, ValueError):
            asked = float(self.paths.stop.read_text())
            return self.storage.submitted is None or asked >= self.storage.submitted
        return False


@dataclasses.dataclass(frozen=True)
class Attempt:
    """This attempt at a job, as the worker runs it.

    Attributes
    ----------
    started : float
        When the worker took the job, by :func:`time.perf_counter`.
    deadline : float, optional
        When, by the same clock, the answer must be on its way: the
        attempt's timeout less the time kept for saving and returning it.
    checkpoint : Checkpoint, optional
        Where the run's checkpoint is kept, if anywhere.
    storage : Storage, optional
        Where the backend keeps checkpoints, for a warm start's earlier fit's.
    """

    started: float = dataclasses.field(default_factory=time.perf_counter)
    deadline: float | None = None
    checkpoint: Checkpoint | None = None
    storage: Storage | None = None

    def adapted(self, name: str) -> Any:
        """The sampler state saved in checkpoint ``name``, for a warm start from it.

        Raises
        ------
        FileNotFoundError
            If the backend keeps no checkpoint of that name (it was cleaned, say).
        """
        if self.storage is None:
            raise FileNotFoundError(f"This worker keeps no checkpoints, so none called {name}.")
        path = self.storage.checkpoint(name).paths.state
        with contextlib.suppress(Exception):
            self.storage.refresh()
        if not path.exists():
            raise FileNotFoundError(
                f"The earlier fit's checkpoint {path} is gone (removed by `python -m pymc_modal "
                "clean`?), so its adapted kernel cannot be started from: sample without "
                "warm_start=, or fit the earlier model again first."
            )
        return pickle.loads(path.read_bytes())[1]
