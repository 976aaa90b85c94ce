"""Posterior predictive draws and pointwise log-likelihood, on a worker, by PyMC's own functions.

The worker calls ``pm.sample_posterior_predictive`` or
``pm.compute_log_likelihood`` on the shipped posterior with the model
compiled to JAX (``compile_kwargs={"mode": "JAX"}``), so they run on the
worker's device; the client wraps what they return as PyMC would.
"""

from __future__ import annotations

import time
from typing import Any

from pymc_modal._compat import trace_of
from pymc_modal.job import ForwardSettings

__all__ = ["run"]


def run(model, settings: ForwardSettings) -> dict[str, Any]:
    """Compute ``settings.kind`` for ``model`` over the shipped posterior.

    Returns
    -------
    dict
        ``values``: a dict of arrays shaped (chain, draw, ...) for the
        posterior predictive, or PyMC's log-likelihood Dataset; ``seconds``;
        ``device``.
    """
    import jax
    import pymc as pm

    trace = trace_of(settings.groups)
    start = time.perf_counter()
    compile_kwargs = {"mode": "JAX"}
    var_names = None if settings.var_names is None else list(settings.var_names)
    if settings.kind == "posterior_predictive":
        values = pm.sample_posterior_predictive(
            trace,
            model=model,
            var_names=var_names,
            random_seed=settings.random_seed,
            progressbar=False,
            return_inferencedata=False,
            compile_kwargs=compile_kwargs,
        )
    else:
        values = pm.compute_log_likelihood(
            trace,
            var_names=var_names,
            model=model,
            extend_inferencedata=False,
            progressbar=False,
            compile_kwargs=compile_kwargs,
        )
    device = jax.devices()[0]
    return {
        "values": values,
        "seconds": {"compute": time.perf_counter() - start},
        "device": f"{device.platform}: {device.device_kind}",
    }
