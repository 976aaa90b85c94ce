"""Predictive draws and pointwise log-likelihood, on a worker, by PyMC's own functions.

The worker calls ``pm.sample_prior_predictive``, or
``pm.sample_posterior_predictive`` or ``pm.compute_log_likelihood`` on the
shipped posterior, with the model compiled to JAX (``compile_kwargs={"mode":
"JAX"}``), so they run on the worker's device; the client wraps what they
return as PyMC would.
"""

from __future__ import annotations

import time

from pymc_modal._compat import trace_of
from pymc_modal.job import FORWARD, ForwardAnswer, ForwardSettings

__all__ = ["run"]


def run(model, settings: ForwardSettings) -> ForwardAnswer:
    """Compute ``settings.kind`` for ``model`` (over the shipped posterior, if any).

    Returns
    -------
    ForwardAnswer
        Its ``values`` are what PyMC's function returns with
        ``settings.kwargs`` (and ``extend_inferencedata=False`` over a
        posterior).
    """
    import jax
    import pymc as pm

    start = time.perf_counter()
    function = getattr(pm, FORWARD[settings.kind])
    compiled = {"model": model, "compile_kwargs": {"mode": "JAX"}, **settings.kwargs}
    if settings.groups:
        trace = trace_of(settings.groups)
        values = function(trace, extend_inferencedata=False, **compiled)
    else:
        values = function(**compiled)
    device = jax.devices()[0]
    return ForwardAnswer(
        values, {"compute": time.perf_counter() - start}, f"{device.platform}: {device.device_kind}"
    )
