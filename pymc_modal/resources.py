"""What a worker's container needs besides its GPU: CPU cores and memory, sized for the job.

A Modal container gets 0.125 of a core and 128 MiB unless its function asks
for more, while XLA compiles, the per-block diagnostics run and the result
is packed on the container's CPU and in its memory, with the GPU billed all
the while. A call's plan sizes its jobs' containers (or takes the user's
``cpu=``/``memory=``); a submission of several calls asks for the largest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from pymc_modal import samplers
from pymc_modal.config import Options
from pymc_modal.job import SampleSettings

__all__ = ["Resources", "applied", "chosen", "size"]

# What the worker holds before any job: Python, PyMC, JAX's runtime and XLA's compiler.
BASE_MEMORY = 4 * 1024**3
# Cores for XLA's compilation, which is multi-threaded, and the per-block diagnostics.
BASE_CPU = 4.0


@dataclasses.dataclass(frozen=True)
class Resources:
    """CPU and memory to request for a worker's container.

    Attributes
    ----------
    cpu : float
        Physical cores.
    memory : int
        MiB.
    """

    cpu: float
    memory: int


def size(
    data_bytes: int,
    result_bytes: int,
    share: SampleSettings | None = None,
    parameters: int = 0,
    cpu_only: bool = False,
) -> Resources:
    """The resources a job needs.

    Parameters
    ----------
    data_bytes : int
        The model's data, held twice while the job is unpickled.
    result_bytes : int
        The most its answer can be (held three times as it is packed: the
        arrays, their pickle, the packed message).
    share : SampleSettings, optional
        A sampling job's settings: its sampler's own trace and threads count.
    parameters : int
        The model's parameters, for a sampler that keeps every one's draws.
    cpu_only : bool
        A container with no GPU, whose chains each run on a core of their own.

    Returns
    -------
    Resources
    """
    memory = BASE_MEMORY + 2 * data_bytes + 3 * result_bytes
    cpu = BASE_CPU
    if isinstance(share, SampleSettings):
        entry = samplers.get(share.sampler)
        draws = share.tune + max(share.draws, share.max_draws or 0)
        memory += entry.trace_bytes_per_value * parameters * share.chains * draws
        if entry.thread_per_chain or cpu_only:
            cpu = max(cpu, float(share.chains))
    return Resources(cpu, math.ceil(memory / 1024**3) * 1024)


def _largest(needs: Sequence[Resources]) -> Resources:
    return Resources(max(need.cpu for need in needs), max(need.memory for need in needs))


def chosen(options: Options, needs: Sequence[Resources]) -> Resources:
    """What a call's containers ask for: the user's ``cpu``/``memory``, else its largest need."""
    largest = _largest(needs)
    return Resources(
        largest.cpu if options.cpu is None else options.cpu,
        largest.memory if options.memory is None else options.memory,
    )


def applied(options: Options, calls: Sequence[Resources]) -> Options:
    """``options`` asking for the largest of the calls' resources, for one submission."""
    largest = _largest(calls)
    return dataclasses.replace(options, cpu=largest.cpu, memory=largest.memory)
