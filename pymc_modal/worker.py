"""The worker: one job in, one result out, as bytes.

It knows nothing of where it runs; a backend moves the bytes and calls
:func:`run`. The same function runs in a local subprocess and on a Modal GPU.
"""

from __future__ import annotations

import os
import time

from pymc_modal import payload

__all__ = ["run"]


def run(job_bytes: bytes, blob_dir: str | os.PathLike | None = None) -> bytes:
    """Run one sampling job.

    Parameters
    ----------
    job_bytes : bytes
        A job made by :func:`pymc_modal.payload.encode_job`.
    blob_dir : path, optional
        The folder holding the data blobs the job refers to, if any.

    Returns
    -------
    bytes
        The result made by :func:`pymc_modal.payload.encode_result`, or, if
        anything failed, the exception and its traceback made by
        :func:`pymc_modal.payload.encode_failure`.
    """
    try:
        start = time.perf_counter()
        job = payload.decode_job(job_bytes, blob_dir)
        load_seconds = time.perf_counter() - start
        result = _sample(job)
        result["seconds"]["load"] = load_seconds
        return payload.encode_result(result)
    except Exception as exc:
        return payload.encode_failure(exc)


def _sample(job: payload.Job) -> dict:
    import jax
    import pytensor
    from pytensor.link.jax.dispatch import jax_funcify

    from pymc_modal import nuts

    float_x = job.settings.float_x
    pytensor.config.floatX = float_x
    jax.config.update("jax_enable_x64", float_x == "float64")
    for op_class, conversion in job.jax_conversions:
        jax_funcify.register(op_class)(conversion)
    return nuts.sample(job.model, job.settings)
