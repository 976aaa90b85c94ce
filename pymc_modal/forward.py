"""Posterior predictive draws and pointwise log-likelihood, on a worker, by PyMC's own functions.

The worker calls ``pm.sample_posterior_predictive`` or
``pm.compute_log_likelihood`` on the shipped posterior with the model
compiled to JAX (``compile_kwargs={"mode": "JAX"}``), so they run on the
worker's device; the client wraps what they return as PyMC would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["KINDS", "ForwardSettings", "run"]

KINDS = ("posterior_predictive", "log_likelihood")


@dataclasses.dataclass(frozen=True)
class ForwardSettings:
    """One forward computation over a posterior.

    Attributes
    ----------
    kind : {"posterior_predictive", "log_likelihood"}
    groups : dict of str to xarray.Dataset
        The trace's ``posterior`` and, where it has them, ``constant_data``
        and ``observed_data`` (PyMC compares them with the model's data).
    var_names : list of str, optional
    random_seed : optional
        As ``pm.sample_posterior_predictive`` takes it.
    float_x : str
        The client's ``pytensor.config.floatX``.
    """

    kind: str
    groups: dict[str, Any]
    var_names: Sequence[str] | None
    random_seed: Any
    float_x: str


def _trace(groups: dict[str, Any]):
    """The groups as the container this PyMC takes: InferenceData (5) or DataTree (6)."""
    from pymc_modal.result import PYMC_MAJOR

    if PYMC_MAJOR >= 6:
        import xarray

        return xarray.DataTree.from_dict(groups)
    import arviz

    return arviz.InferenceData(**groups)


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

    trace = _trace(settings.groups)
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
