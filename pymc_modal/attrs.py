"""The result's attrs: every ``pymc_modal_*`` key is named here, and nowhere else.

README's "What a result carries" says what each means. The convergence
record of a run sampled to a target becomes attrs here, and is read back
here from a result's attrs (a stored or fetched result has nothing else).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pymc_modal.job import Convergence

__all__ = [
    "ATTEMPTS",
    "BACKEND",
    "COST_USD",
    "CPU",
    "DATA_BYTES",
    "DEVICE",
    "ERROR",
    "FIT",
    "GPU",
    "GPU_SECONDS",
    "IDLE_SECONDS",
    "MEMORY_MIB",
    "PAYLOAD_BYTES",
    "RESULT_BYTES_ESTIMATED",
    "RETURNED_BYTES",
    "RUN_ID",
    "SECONDS",
    "STOP_REASON",
    "STORED_AT",
    "UPLOADED_BYTES",
    "WHERE",
    "WORKERS",
    "convergence",
    "of_convergence",
    "seconds",
]

BACKEND = "pymc_modal_backend"
WHERE = "pymc_modal_where"
DEVICE = "pymc_modal_device"
WORKERS = "pymc_modal_workers"
PAYLOAD_BYTES = "pymc_modal_payload_bytes"
DATA_BYTES = "pymc_modal_data_bytes"
UPLOADED_BYTES = "pymc_modal_uploaded_bytes"
RESULT_BYTES_ESTIMATED = "pymc_modal_result_bytes_estimated"
RETURNED_BYTES = "pymc_modal_returned_bytes"
# What the bill counts: the GPU the workers ran on, their seconds, the idle window after
# them, the CPU and memory their containers asked for.
GPU = "pymc_modal_gpu"
GPU_SECONDS = "pymc_modal_gpu_seconds"
IDLE_SECONDS = "pymc_modal_idle_seconds"
CPU = "pymc_modal_cpu"
MEMORY_MIB = "pymc_modal_memory_mib"
COST_USD = "pymc_modal_cost_usd"
RUN_ID = "pymc_modal_run_id"
# The key of the sampling call that made the result, under which `store` keeps its record
# for `pymc_modal.extend` and `warm_start=`.
FIT = "pymc_modal_fit"
# Why the run stopped (see `pymc_modal.job.Answer.stop_reason`), what failed if a block
# did, and the attempts it took.
STOP_REASON = "pymc_modal_stop_reason"
ERROR = "pymc_modal_error"
ATTEMPTS = "pymc_modal_attempts"
# When a result returned from the store was first made.
STORED_AT = "pymc_modal_stored_at"
# The prefix of each phase's seconds, e.g. ``pymc_modal_seconds_sample``.
SECONDS = "pymc_modal_seconds_"
_CONVERGENCE = "pymc_modal_"


def seconds(phases: dict[str, float]) -> dict[str, float]:
    """Each phase's seconds as attrs."""
    return {f"{SECONDS}{name}": value for name, value in phases.items()}


def of_convergence(record: Convergence | None) -> dict[str, Any]:
    """A run's convergence record as attrs (none for a run not sampled to a target)."""
    if record is None:
        return {}
    fields = dataclasses.asdict(record).items()
    return {f"{_CONVERGENCE}{name}": value for name, value in fields if value is not None}


def convergence(attrs: dict[str, Any]) -> Convergence | None:
    """The convergence record a result's attrs hold, or None."""
    if f"{_CONVERGENCE}blocks" not in attrs:
        return None
    return Convergence(
        **{
            field.name: attrs.get(f"{_CONVERGENCE}{field.name}")
            for field in dataclasses.fields(Convergence)
        }
    )
