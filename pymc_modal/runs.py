"""Detached runs: ``sample(wait=False)``'s handle, :func:`fetch` from any process, the list.

A run's folder and record are kept by :mod:`pymc_modal.store`; its workers
are found again through the backend that started them.
"""

from __future__ import annotations

from typing import Any

from pymc_modal import attrs, backends, payload, pipeline, store
from pymc_modal._compat import open_netcdf
from pymc_modal.errors import RunNotFoundError, WorkerError
from pymc_modal.paths import RunPaths, runs_dir

__all__ = ["Run", "fetch", "list_runs"]


class Run:
    """A handle on a detached run; ``str(run.id)`` is what :func:`fetch` takes.

    Parameters
    ----------
    run_id : str
        The run's id, as :func:`pymc_modal.sample` with ``wait=False`` printed it.
    """

    def __init__(self, run_id: str) -> None:
        self.id = run_id
        self.folder = runs_dir() / run_id
        if store.read_record(self.folder) is None:
            raise RunNotFoundError(
                f"No run {run_id!r} on this machine (looked in {runs_dir()}). "
                "List the runs with `python -m pymc_modal runs`."
            )

    @property
    def record(self) -> dict[str, Any]:
        """What was recorded when the run was sent."""
        return store.read_record(self.folder)

    def status(self) -> str:
        """``"running"``, ``"done"`` or ``"failed"``, asked of the backend; nothing is collected."""
        record = self.record
        try:
            answers = backends.get(record["backend"]).reattach(record, self.folder).answers()
        except WorkerError:
            return "failed"
        if answers is None:
            return "running"
        return "done" if all(payload.answer_status(a) == "ok" for a in answers) else "failed"

    def stop(self) -> None:
        """Ask the run to end after its current block; :meth:`result` then returns its draws.

        The run's stop reason is then ``"stopped"``; a run stopped during
        warm-up raises :class:`pymc_modal.errors.NoDrawsError` when fetched,
        its checkpoint kept. Asking a run that has ended changes nothing.
        """
        if self.status() == "running":
            record = self.record
            backends.get(record["backend"]).stop(record.get("checkpoints", []))

    def result(self, wait: bool = True):
        """The run's result; see :func:`fetch`."""
        return fetch(self.id, wait=wait)

    def __repr__(self) -> str:
        fetched = RunPaths(self.folder).result.exists()
        return (
            f"<pymc_modal run {self.id} on {self.record['attrs'][attrs.WHERE]}"
            f"{', fetched' if fetched else ''}; pymc_modal.fetch({self.id!r})>"
        )


def fetch(run_id: str, wait: bool = True):
    """Return a detached run's result, waiting for it if it is still running.

    The first fetch of a finished run writes its result to the run's folder
    as netCDF; every fetch returns what that file holds, so fetching twice
    gives the same result.

    Parameters
    ----------
    run_id : str
        The id that ``pymc_modal.sample(..., wait=False)`` returned.
    wait : bool, default True
        Wait for a running run, relaying its first worker's output; if
        False, raise instead.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        What ``pymc_modal.sample`` would have returned; a run sampled to a
        target that stopped at a cap warns as ``sample`` does.

    Raises
    ------
    RunNotFoundError
        If there is no run with that id on this machine.
    WorkerError
        If a worker ended without an answer (its log is named), or the run is
        still running and ``wait`` is False.
    Exception
        A worker's own exception, with its traceback attached as a note.
    """
    run = Run(run_id)
    path = RunPaths(run.folder).result
    if not path.exists():
        pipeline.finish_run(run.folder, wait)
    result = open_netcdf(path)
    pipeline.warn_if_short(result, stacklevel=2)
    return result


def list_runs() -> list[dict[str, Any]]:
    """The records of this machine's runs, newest first, each with its status."""
    folder = runs_dir()
    if not folder.exists():
        return []
    found = []
    for entry in sorted(folder.iterdir(), reverse=True):
        if store.read_record(entry) is not None:
            run = Run(entry.name)
            found.append({**run.record, "status": run.status()})
    return found
