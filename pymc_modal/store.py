"""Stored results: an identical call returns what it returned before, without a worker.

A call's key is the SHA-256 of everything its draws depend on: the model's
fingerprint (its log density and returned variables as a JAX program, their
data and the initial point; see :class:`pymc_modal.preflight.Checked`), each
worker's settings (the seed included), the library versions and where it
runs. Each stored result is a folder in :func:`pymc_modal.config.cache_dir`
holding the workers' answers as they came and the result's attrs, so it is
wrapped with the calling model's coords and data like a fresh one.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pymc_modal import payload
from pymc_modal.config import cache_dir
from pymc_modal.nuts import NutsSettings

__all__ = ["STORED_AT", "key", "load", "results_dir", "save"]

# What a run's draws depend on; the progress bar does not count.
FIELDS = [f for f in dataclasses.fields(NutsSettings) if f.name != "progressbar"]
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


def key(fingerprint: str, shares: Sequence[NutsSettings], where: str) -> str:
    """The key of a call: its model's fingerprint, each worker's settings, versions, place.

    Parameters
    ----------
    fingerprint : str
        :attr:`pymc_modal.preflight.Checked.fingerprint` of the model.
    shares : sequence of NutsSettings
        The settings of each worker's share of the chains.
    where : str
        Where the call runs, in words (a backend's ``where``).
    """
    settings = [_canonical({f.name: getattr(share, f.name) for f in FIELDS}) for share in shares]
    described = [fingerprint, settings, payload.manifest(), where]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def load(call_key: str) -> tuple[list[bytes], dict[str, Any]] | None:
    """The stored answers and attrs under ``call_key``, or None if there are none."""
    folder = results_dir() / call_key
    try:
        attrs = json.loads((folder / "attrs.json").read_text())
        workers = range(attrs["pymc_modal_workers"])
        answers = [(folder / f"answer-{i}").read_bytes() for i in workers]
    except FileNotFoundError:
        return None
    return answers, attrs


def save(call_key: str, answers: Sequence[bytes], attrs: dict[str, Any]) -> None:
    """Store a call's answers and attrs under ``call_key``, unless any answer is a failure."""
    if any(payload.answer_status(answer) != "ok" for answer in answers):
        return
    folder = results_dir() / call_key
    partial = folder.with_name(f"{call_key}.{os.getpid()}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    for i, answer in enumerate(answers):
        (partial / f"answer-{i}").write_bytes(answer)
    made = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    (partial / "attrs.json").write_text(json.dumps({**attrs, STORED_AT: made}))
    try:
        partial.rename(folder)
    except OSError:
        # Another process stored the same call first; its answers are as good.
        shutil.rmtree(partial)
