"""What this machine keeps: stored results, and the folders of detached runs.

An identical call returns what it returned before, without a worker.

A call's key is the SHA-256 of everything its draws depend on: the model's
fingerprint (its log density and returned variables as a JAX program, their
data and the initial point; see :class:`pymc_modal.preflight.Checked`), each
worker's settings (the seed included), the library versions and where it
runs. Each stored result is a folder in :func:`pymc_modal.config.cache_dir`
holding the workers' answers as they came and the result's attrs, so it is
wrapped with the calling model's coords and data like a fresh one.

Each detached run has a folder in :func:`runs_dir` holding its record
(``record.json``: backend, options, attrs, and what the backend needs to find
its workers again), what wrapping its result takes from the client's model
(``context.pkl``), the workers' answers as they are collected (and, on the
local backend, their jobs and logs) and, once fetched, the result in ArviZ's
netCDF form (``result.nc``), which opens without this package.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import pickle
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pymc_modal import payload
from pymc_modal.config import cache_dir
from pymc_modal.job import SampleSettings

__all__ = [
    "RESULT_FILE",
    "STORED_AT",
    "answer_path",
    "key",
    "load",
    "new_run_folder",
    "read_context",
    "read_record",
    "remove_run",
    "results_dir",
    "runs_dir",
    "save",
    "write_result",
    "write_run",
]

# What a run's draws depend on; the progress bar does not count.
FIELDS = [f for f in dataclasses.fields(SampleSettings) if f.name != "progressbar"]
_log = logging.getLogger("pymc_modal")
RESULT_FILE = "result.nc"
RECORD_FILE = "record.json"
# The attr that marks a result returned from the store: when it was first made.
STORED_AT = "pymc_modal_stored_at"


def results_dir() -> Path:
    """The folder of stored results, in :func:`pymc_modal.config.cache_dir`.

    Delete it to free the space; a later call samples anew.
    """
    return cache_dir() / "results"


def _canonical(value: Any) -> Any:
    """``value`` as JSON-ready data equal for equal values, arrays by their bytes' hash."""
    if isinstance(value, dict):
        return sorted((str(name), _canonical(item)) for name, item in value.items())
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    array = np.ascontiguousarray(value)
    return [str(array.dtype), array.shape, hashlib.sha256(array.tobytes()).hexdigest()]


def answer_path(folder: Path, index: int) -> Path:
    """Where worker ``index``'s answer is kept in a stored result's or a run's folder."""
    return folder / f"answer-{index}"


def key(fingerprint: str, shares: Sequence[SampleSettings], where: str) -> str:
    """The key of a call: its model's fingerprint, each worker's settings, versions, place.

    Parameters
    ----------
    fingerprint : str
        :attr:`pymc_modal.preflight.Checked.fingerprint` of the model.
    shares : sequence of SampleSettings
        The settings of each worker's share of the chains.
    where : str
        Where the call runs, in words (a backend's ``where``).
    """
    settings = [_canonical({f.name: getattr(share, f.name) for f in FIELDS}) for share in shares]
    described = [fingerprint, settings, payload.manifest(), where]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def load(call_key: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The stored answers (decoded) and attrs under ``call_key``, or None if there are none.

    An entry that cannot be read is logged, naming its folder, and removed,
    so that the call samples as if it were absent.
    """
    folder = results_dir() / call_key
    if not folder.is_dir():
        return None
    try:
        attrs = json.loads((folder / "attrs.json").read_text())
        workers = range(attrs["pymc_modal_workers"])
        answers = [payload.decode_result(answer_path(folder, i).read_bytes(), "") for i in workers]
    except Exception as exc:
        _log.warning(
            "The stored result in %s could not be read (%s: %s); removed it, sampling anew.",
            folder,
            type(exc).__name__,
            exc,
        )
        _remove(folder)
        return None
    return answers, attrs


def _remove(folder: Path) -> None:
    """Remove ``folder`` at once for readers: it is renamed aside, then deleted."""
    aside = folder.with_name(f"{folder.name}.{secrets.token_hex(4)}.removed")
    try:
        folder.rename(aside)
    except FileNotFoundError:
        return  # Another process removed it first.
    shutil.rmtree(aside, ignore_errors=True)


def save(call_key: str, answers: Sequence[bytes], attrs: dict[str, Any]) -> None:
    """Store a call's answers and attrs under ``call_key``, unless any answer is a failure.

    The entry is written beside its place and moved there whole, replacing
    any entry under the same key (what ``refit=True`` sampled anew).
    """
    if any(payload.answer_status(answer) != "ok" for answer in answers):
        return
    folder = results_dir() / call_key
    folder.parent.mkdir(parents=True, exist_ok=True)
    made = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        with payload.written_atomically(folder) as partial:
            partial.mkdir()
            for i, answer in enumerate(answers):
                answer_path(partial, i).write_bytes(answer)
            (partial / "attrs.json").write_text(json.dumps({**attrs, STORED_AT: made}))
            _remove(folder)
    except OSError:
        pass  # Another process stored the same call meanwhile; its answers are as good.


def runs_dir() -> Path:
    """The folder of this machine's detached runs, in :func:`pymc_modal.config.cache_dir`."""
    return cache_dir() / "runs"


def new_run_folder() -> Path:
    """A new, empty folder for a detached run; its name is the run's id."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = runs_dir() / f"{stamp}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    return folder


def write_run(folder: Path, record: dict[str, Any], context: dict[str, Any]) -> None:
    """Record a run once its workers have started: from then on it can be fetched."""
    (folder / "context.pkl").write_bytes(pickle.dumps(context, pickle.HIGHEST_PROTOCOL))
    payload.write_atomically(folder / RECORD_FILE, json.dumps(record, indent=1).encode())


def remove_run(folder: Path) -> None:
    """Remove the folder of a run that could not be started."""
    shutil.rmtree(folder, ignore_errors=True)


def read_record(folder: Path) -> dict[str, Any] | None:
    """A run's record, or None if there is no run recorded in ``folder``."""
    try:
        return json.loads((folder / RECORD_FILE).read_text())
    except FileNotFoundError:
        return None


def read_context(folder: Path) -> dict[str, Any]:
    """What wrapping a run's result takes from the client's model."""
    return pickle.loads((folder / "context.pkl").read_bytes())


def write_result(folder: Path, record: dict[str, Any], idata) -> None:
    """Keep a fetched run's result as netCDF, and its record updated with what it cost."""
    payload.write_atomically(folder / RECORD_FILE, json.dumps(record, indent=1).encode())
    with payload.written_atomically(folder / RESULT_FILE) as partial:
        idata.to_netcdf(partial)
