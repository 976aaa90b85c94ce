"""The worker: one job in, one result out, as bytes.

Everything that runs in the worker's process is in this package: :func:`run`
(the one entry a backend starts), the local serving loop (``python -m
pymc_modal.worker``), the samplers (:mod:`.numpyro`, :mod:`.nutpie`,
:mod:`.blackjax`, run by their entry in :mod:`pymc_modal.samplers`) and the
forward computations (:mod:`.forward`). It knows nothing of where it runs
and imports nothing of the client's side, only the shared contract
(:mod:`pymc_modal.job`, :mod:`pymc_modal.payload`, :mod:`pymc_modal.samplers`).
The same function runs in a local process and on a Modal GPU.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
import warnings

from pymc_modal import payload, samplers
from pymc_modal.errors import GpuNotFoundError
from pymc_modal.job import Answer, ForwardAnswer
from pymc_modal.worker.checkpoint import Attempt, Storage

__all__ = ["Storage", "run", "use_compilation_cache"]


def use_compilation_cache(folder: str | os.PathLike, max_bytes: int = -1) -> None:
    """Keep JAX's compiled programs in ``folder``, to skip XLA compilation when one recurs.

    Every program is kept, however quick to compile: a model's sampling loop
    on a CPU can compile in under JAX's default threshold of one second. With
    ``max_bytes`` set, JAX evicts the least recently used programs beyond it.
    """
    import jax

    jax.config.update("jax_compilation_cache_dir", os.fspath(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", max_bytes)


def _reserve(timeout: float) -> float:
    """Of an attempt's ``timeout``, the seconds kept for saving and returning its answer."""
    return min(300.0, timeout / 20)


def run(
    job_bytes: bytes,
    blob_dir: str | os.PathLike | None = None,
    require_gpu: bool = False,
    storage: Storage | None = None,
    timeout: float | None = None,
    timeout_from: float | None = None,
) -> bytes:
    """Run one sampling job.

    Parameters
    ----------
    job_bytes : bytes
        A job made by :func:`pymc_modal.payload.encode_job`.
    blob_dir : path, optional
        The folder holding the data blobs the job refers to, if any.
    require_gpu : bool, default False
        Refuse the job with :class:`GpuNotFoundError` unless JAX runs on a
        GPU: set where a GPU is paid for, as JAX falls back to the CPU
        without a word when its CUDA plugin does not load.
    storage : Storage, optional
        Where the backend keeps checkpoints; without it a run keeps none.
    timeout : float, optional
        The seconds this attempt may run: the run ends before then, with the
        draws it has, rather than be stopped with none.
    timeout_from : float, optional
        When, by :func:`time.time`, the backend began counting ``timeout``;
        by default now.

    Returns
    -------
    bytes
        The result made by :func:`pymc_modal.payload.encode_result`, or, if
        anything failed, the exception and its traceback made by
        :func:`pymc_modal.payload.encode_failure`.
    """
    started = time.perf_counter()
    try:
        if require_gpu:
            _check_gpu()
        start = time.perf_counter()
        job = payload.decode_job(job_bytes, blob_dir)
        load_seconds = time.perf_counter() - start
        deadline = None
        if timeout is not None:
            counted = 0.0 if timeout_from is None else max(0.0, time.time() - timeout_from)
            deadline = time.perf_counter() - counted + timeout - _reserve(timeout)
        attempt = Attempt(
            started=started,
            deadline=deadline,
            checkpoint=None
            if storage is None or job.checkpoint is None
            else storage.checkpoint(job.checkpoint),
            storage=storage,
        )
        answer = _sample(job, attempt)
        seconds = {**answer.seconds, "load": load_seconds}
        return payload.encode_result(dataclasses.replace(answer, seconds=seconds))
    except Exception as exc:
        return payload.encode_failure(exc)


def _check_gpu() -> None:
    import jax

    if jax.default_backend() != "gpu":
        raise GpuNotFoundError(
            f"This worker was started on a GPU, but JAX found only {jax.devices()}, so it would "
            "sample on the CPU while the GPU is billed; nothing was sampled. JAX's CUDA plugin "
            "did not load: the container's log says why (look for 'Unable to initialize backend "
            "cuda'). Check that the image's JAX CUDA plugin matches its jax, with "
            "`python -m pymc_modal doctor`."
        )


def _sample(job: payload.Job, attempt: Attempt) -> Answer | ForwardAnswer:
    import jax
    import pytensor

    from pymc_modal.job import FLOAT64_TRUNCATION, ForwardSettings
    from pymc_modal.worker import forward

    float_x = job.settings.float_x
    pytensor.config.floatX = float_x
    jax.config.update("jax_enable_x64", float_x == "float64")
    if float_x == "float32":
        warnings.filterwarnings("ignore", message=FLOAT64_TRUNCATION)
    for dispatcher, op_class, function in job.registrations:
        dispatcher.register(op_class)(function)
    if isinstance(job.settings, ForwardSettings):
        return forward.run(job.model, job.settings)
    sampler = importlib.import_module(samplers.get(job.settings.sampler).module)
    return sampler.sample(job, attempt)
