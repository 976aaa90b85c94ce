"""Detached runs: a record on disk for each, fetched later from any process.

Each run has a folder in :func:`pymc_modal.config.cache_dir` holding its
record (``record.json``: backend, worker process ids or Modal call ids,
attrs), what wrapping its result takes from the client's model
(``context.pkl``), the workers' answers (and, on the local backend, their jobs
and logs) and, once fetched, the result in ArviZ's netCDF form
(``result.nc``), which opens without this package.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import pickle
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from pymc_modal import fanout, payload, pricing, result
from pymc_modal.config import Options, cache_dir
from pymc_modal.errors import RunNotFoundError, WorkerError

__all__ = ["Run", "fetch", "list_runs", "runs_dir", "submit"]

RESULT_FILE = "result.nc"

_log = logging.getLogger("pymc_modal")


def runs_dir() -> Path:
    """The folder of this machine's run records, in :func:`pymc_modal.config.cache_dir`."""
    return cache_dir() / "runs"


def _alive(pid: int) -> bool:
    try:
        # A worker this process started must be reaped, or it lingers as a zombie.
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        if not (self.folder / "record.json").exists():
            raise RunNotFoundError(
                f"No run {run_id!r} on this machine (looked in {runs_dir()}). "
                "List the runs with `python -m pymc_modal runs`."
            )

    @property
    def record(self) -> dict[str, Any]:
        """What was recorded when the run was sent."""
        return json.loads((self.folder / "record.json").read_text())

    def answer_paths(self) -> list[Path]:
        """Where each worker's answer is, or will be, kept."""
        return [self.folder / f"answer-{i}" for i in range(self.record["workers"])]

    def status(self) -> str:
        """``"running"``, ``"done"`` or ``"failed"``."""
        answers = self.answer_paths()
        if all(path.exists() for path in answers):
            statuses = [payload.answer_status(path.read_bytes()) for path in answers]
            return "done" if all(status == "ok" for status in statuses) else "failed"
        if self.record["backend"] != "local":
            return "running"  # until fetched: Modal is not asked
        pids = self.record["pids"]
        ended = [
            not path.exists() and not _alive(pid) for path, pid in zip(answers, pids, strict=True)
        ]
        return "failed" if any(ended) else "running"

    def result(self, wait: bool = True):
        """The run's result; see :func:`fetch`."""
        return fetch(self.id, wait=wait)

    def __repr__(self) -> str:
        return f"<pymc_modal run {self.id}: {self.status()}; pymc_modal.fetch({self.id!r})>"


def submit(
    backend: str, jobs: list[bytes], options: Options, context: dict[str, Any], attrs: dict
) -> Run:
    """Record a run, start its workers detached, and return its handle.

    On the local backend the workers are processes in sessions of their own;
    on Modal, calls in an app that outlives this process.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{secrets.token_hex(3)}"
    folder = runs_dir() / run_id
    folder.mkdir(parents=True)
    (folder / "context.pkl").write_bytes(pickle.dumps(context, pickle.HIGHEST_PROTOCOL))
    record = {
        "id": run_id,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "backend": backend,
        "workers": len(jobs),
        "attrs": attrs,
    }
    if backend == "local":
        from pymc_modal.backends import local

        record["pids"] = []
        for index, job in enumerate(jobs):
            (folder / f"job-{index}").write_bytes(job)
            record["pids"].append(
                local.start_detached(
                    folder / f"job-{index}", folder / f"answer-{index}", folder / f"log-{index}.txt"
                )
            )
    else:
        from pymc_modal.backends import modal

        record["calls"] = modal.start_detached(jobs, options, run_id)
    (folder / "record.json").write_text(json.dumps(record, indent=1))
    return Run(run_id)


def _relay_log(path: Path, offset: int) -> int:
    """Copy what the log gained since ``offset`` to stderr; return the new offset."""
    if not path.exists():
        return offset
    with open(path, "rb") as log:
        log.seek(offset)
        new = log.read()
    sys.stderr.write(new.decode(errors="replace"))
    sys.stderr.flush()
    return offset + len(new)


def fetch(run_id: str, wait: bool = True, poll_seconds: float = 1.0):
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
    poll_seconds : float, default 1.0
        How often to look whether a running run has finished.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        What ``pymc_modal.sample`` would have returned.

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
    path = run.folder / RESULT_FILE
    if not path.exists() and run.record["backend"] != "local":
        _collect_from_modal(run, wait)
    if not path.exists():
        offset = 0
        while (status := run.status()) == "running":
            if not wait:
                raise WorkerError(f"Run {run_id} is still running; fetch it with wait=True.")
            offset = _relay_log(run.folder / "log-0.txt", offset)
            time.sleep(poll_seconds)
        _relay_log(run.folder / "log-0.txt", offset)
        if status == "failed" and not all(p.exists() for p in run.answer_paths()):
            raise WorkerError(
                f"A worker of run {run_id} ended without an answer; its output is in "
                f"{run.folder}/log-*.txt."
            )
        _write_result(run, path)
    return _load(path)


def _collect_from_modal(run: Run, wait: bool) -> None:
    from pymc_modal.backends import modal

    if wait:
        _log.info("Waiting for run %s on Modal...", run.id)
    for index, (path, call_id) in enumerate(
        zip(run.answer_paths(), run.record["calls"], strict=True)
    ):
        if not path.exists():
            answer = modal.detached_answer(run.id, index, call_id, wait)
            if answer is not None:
                path.write_bytes(answer)


def _write_result(run: Run, path: Path) -> None:
    where = run.record["attrs"]["pymc_modal_where"]
    answers = [payload.decode_result(p.read_bytes(), where) for p in run.answer_paths()]
    raw = fanout.merge(answers)
    attrs = {
        **run.record["attrs"],
        "pymc_modal_device": raw["device"],
        "pymc_modal_run_id": run.id,
        "pymc_modal_workers": len(answers),
        "pymc_modal_returned_bytes": sum(p.stat().st_size for p in run.answer_paths()),
        **{f"pymc_modal_seconds_{name}": value for name, value in raw["seconds"].items()},
    }
    if "pymc_modal_gpu" in attrs:
        # The workers' own seconds: a detached run's container start is not seen from here.
        gpu_seconds = sum(sum(answer["seconds"].values()) for answer in answers)
        attrs["pymc_modal_gpu_seconds"] = gpu_seconds
        attrs["pymc_modal_cost_usd"] = pricing.cost(attrs["pymc_modal_gpu"], gpu_seconds)
    else:
        attrs["pymc_modal_cost_usd"] = 0.0
    sampling = sum(raw["seconds"][phase] for phase in ("compile", "sample"))
    record = {**run.record, "cost_usd": attrs["pymc_modal_cost_usd"], "sampling_seconds": sampling}
    (run.folder / "record.json").write_text(json.dumps(record, indent=1))
    context = pickle.loads((run.folder / "context.pkl").read_bytes())
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    result.wrap(raw, context, attrs).to_netcdf(partial)
    partial.replace(path)


def _load(path: Path):
    if result.PYMC_MAJOR >= 6:
        import xarray

        with xarray.open_datatree(path) as tree:
            return tree.load()
    import arviz

    return arviz.from_netcdf(path)


def list_runs() -> list[dict[str, Any]]:
    """The records of this machine's runs, newest first, each with its status."""
    folder = runs_dir()
    if not folder.exists():
        return []
    runs = []
    for entry in sorted(folder.iterdir(), reverse=True):
        if (entry / "record.json").exists():
            run = Run(entry.name)
            runs.append({**run.record, "status": run.status()})
    return runs
