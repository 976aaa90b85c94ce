"""What this machine keeps: stored results, and the folders of detached runs.

An identical call returns what it returned before, without a worker.

A call's key is the SHA-256 of everything its draws depend on: the model's
fingerprint (its log density and returned variables as a JAX program, their
data and the initial point; see :class:`pymc_modal.preflight.Checked`), each
worker's settings (the seed included), the library versions and where it
runs. Each stored result is a folder in :func:`pymc_modal.paths.results_dir`
holding the workers' answers as they came and the result's attrs, so it is
wrapped with the calling model's coords and data like a fresh one.

Each sampling call leaves a :class:`Fit` record under its key in
:func:`pymc_modal.paths.fits_dir`, named by its result's attrs: what
:func:`pymc_modal.extend` and ``sample(warm_start=...)`` need of it.

Each detached run has a folder in :func:`pymc_modal.paths.runs_dir` holding
its record (backend, price, attrs, and what the backend needs to find its
workers again), what wrapping its result takes from the client's model, the
workers' answers as they are collected (and, on the local backend, their jobs
and logs) and, once fetched, the result in ArviZ's netCDF form, which opens
without this package. :class:`pymc_modal.paths.RunPaths` names each file.
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

from pymc_modal import attrs as result_attrs
from pymc_modal import payload, pricing
from pymc_modal.config import Options
from pymc_modal.job import ENDED_EARLY, SampleSettings, chain_settings
from pymc_modal.paths import (
    RunPaths,
    fits_dir,
    results_dir,
    runs_dir,
    write_atomically,
    written_atomically,
)

__all__ = [
    "Fit",
    "checkpoint_names",
    "key",
    "load",
    "load_fit",
    "new_run_folder",
    "read_context",
    "read_record",
    "record_tariff",
    "remove_run",
    "save",
    "save_fit",
    "write_result",
    "write_run",
]

# What a run's draws depend on; the progress bar does not count.
FIELDS = [f for f in dataclasses.fields(SampleSettings) if f.name != "progressbar"]
_log = logging.getLogger("pymc_modal")


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


def checkpoint_names(fingerprint: str, shares: Sequence[SampleSettings]) -> tuple[str, ...]:
    """The name of each worker's checkpoint: the SHA-256 of what its chains depend on.

    Calls that differ only in when they stop (``target_ess``, the caps, the
    timeout) or where they run share their chains, so one goes on from the
    other's checkpoint.
    """
    chains = [chain_settings(share) for share in shares]
    described = [
        [fingerprint, _canonical({f.name: getattr(c, f.name) for f in FIELDS}), payload.manifest()]
        for c in chains
    ]
    return tuple(hashlib.sha256(json.dumps(d).encode()).hexdigest() for d in described)


@dataclasses.dataclass(frozen=True)
class Fit:
    """What a later call needs of an earlier sampling call to go on from it or start from it.

    Attributes
    ----------
    settings : SampleSettings
        The whole call's settings, as planned.
    options : Options
        Its options, with the backend it ran on.
    idata_kwargs : dict
        As it was called with them.
    checkpoints : tuple of str
        Each worker's checkpoint.
    parameters : int
        The model's unconstrained parameters.
    """

    settings: SampleSettings
    options: Options
    idata_kwargs: dict[str, Any]
    checkpoints: tuple[str, ...]
    parameters: int


def save_fit(call_key: str, fit: Fit) -> None:
    """Record a sampling call under its key (what its result's ``pymc_modal_fit`` attr says)."""
    fits_dir().mkdir(parents=True, exist_ok=True)
    write_atomically(fits_dir() / call_key, pickle.dumps(fit, pickle.HIGHEST_PROTOCOL))


def load_fit(call_key: str) -> Fit | None:
    """The record of the sampling call ``call_key``, or None if this machine has none."""
    try:
        return pickle.loads((fits_dir() / call_key).read_bytes())
    except FileNotFoundError:
        return None


def load(call_key: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The stored answers (decoded) and attrs under ``call_key``, or None if there are none.

    An entry that cannot be read is logged, naming its folder, and removed,
    so that the call samples as if it were absent.
    """
    entry = RunPaths(results_dir() / call_key)
    folder = entry.folder
    if not folder.is_dir():
        return None
    try:
        attrs = json.loads(entry.attrs.read_text())
        workers = range(attrs[result_attrs.WORKERS])
        answers = [payload.decode_result(entry.answer(i).read_bytes(), "") for i in workers]
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
    """Store a call's answers and attrs under ``call_key``, unless it failed or ended early.

    A run that ended early (its deadline, a stop, a failed block) is left to
    its checkpoint, from which the same call goes on. The entry is written
    beside its place and moved there whole, replacing any entry under the
    same key (what ``refit=True`` sampled anew).
    """
    if any(payload.answer_status(answer) != "ok" for answer in answers):
        return
    if attrs.get(result_attrs.STOP_REASON) in ENDED_EARLY:
        return
    folder = results_dir() / call_key
    folder.parent.mkdir(parents=True, exist_ok=True)
    made = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        with written_atomically(folder) as partial:
            partial.mkdir()
            entry = RunPaths(partial)
            for i, answer in enumerate(answers):
                entry.answer(i).write_bytes(answer)
            entry.attrs.write_text(json.dumps({**attrs, result_attrs.STORED_AT: made}))
            _remove(folder)
    except OSError:
        pass  # Another process stored the same call meanwhile; its answers are as good.


def new_run_folder() -> Path:
    """A new, empty folder for a detached run; its name is the run's id."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = runs_dir() / f"{stamp}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    return folder


def write_run(folder: Path, record: dict[str, Any], context: dict[str, Any]) -> None:
    """Record a run once its workers have started: from then on it can be fetched."""
    run = RunPaths(folder)
    run.context.write_bytes(pickle.dumps(context, pickle.HIGHEST_PROTOCOL))
    write_atomically(run.record, json.dumps(record, indent=1).encode())


def remove_run(folder: Path) -> None:
    """Remove the folder of a run that could not be started."""
    shutil.rmtree(folder, ignore_errors=True)


def read_record(folder: Path) -> dict[str, Any] | None:
    """A run's record, or None if there is no run recorded in ``folder``."""
    try:
        return json.loads(RunPaths(folder).record.read_text())
    except FileNotFoundError:
        return None


def record_tariff(record: dict[str, Any]) -> pricing.Tariff | None:
    """What a run's record says its containers are billed at; None where nothing is."""
    if "tariff" in record:
        found = record["tariff"]
        return None if found is None else pricing.Tariff(**{**found, "gpus": tuple(found["gpus"])})
    # A record written before runs kept their tariff: the GPU and its price per second.
    if record.get("gpu") is None:
        return None
    _, count = pricing.parse_gpu(record["gpu"])
    return pricing.Tariff((record["gpu"],), 0.0, 0, 0, record["price_per_second"] / count)


def read_context(folder: Path) -> dict[str, Any]:
    """What wrapping a run's result takes from the client's model."""
    return pickle.loads(RunPaths(folder).context.read_bytes())


def write_result(folder: Path, record: dict[str, Any], idata) -> None:
    """Keep a fetched run's result as netCDF, and its record updated with what it cost."""
    run = RunPaths(folder)
    write_atomically(run.record, json.dumps(record, indent=1).encode())
    with written_atomically(run.result) as partial:
        idata.to_netcdf(partial)
