"""The rest of the workflow on a worker: posterior predictive draws and pointwise log-likelihood.

``pymc_modal.sample_posterior_predictive`` and
``pymc_modal.compute_log_likelihood`` take what their PyMC namesakes take (or
a detached run's id), ship the model and the posterior to a worker (the data
blobs are already stored there if the model was sampled there), run PyMC's
own function on the worker's device, and return what PyMC returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytensor
from pymc.backends.arviz import find_observations
from pymc.model import modelcontext

from pymc_modal import pipeline, runs
from pymc_modal._compat import add_group, extend, groups_of
from pymc_modal.config import resolve
from pymc_modal.errors import ResultTooLargeError
from pymc_modal.job import ForwardSettings

__all__ = ["compute_log_likelihood", "sample_posterior_predictive"]

# The groups PyMC's functions read: the draws, and the data they were drawn with.
_SHIPPED_GROUPS = ("posterior", "constant_data", "observed_data")


def _check_size(model, groups: dict[str, Any], var_names, max_result_bytes: int) -> None:
    """Refuse before shipping a result over the limit, counting the observed variables."""
    posterior = groups["posterior"]
    draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    observed = find_observations(model) or {}
    names = observed if var_names is None else [n for n in var_names if n in observed]
    size = draws * sum(math.prod(np.shape(observed[name])) * 8 for name in names)
    if size > max_result_bytes:
        raise ResultTooLargeError(
            f"The result would be about {size / 1024**3:.1f} GiB ({draws} draws of "
            f"{', '.join(names)}), over the limit of {max_result_bytes / 1024**3:.1f} GiB. "
            "Thin the posterior first (e.g. idata.sel(draw=slice(None, None, 10))), or "
            "raise pymc_modal.options(max_result_bytes=...)."
        )


def _run(kind: str, trace, model, var_names, random_seed, backend, gpu, quiet: bool):
    """Check one forward job, hand it to the pipeline, and return the trace and the values."""
    if isinstance(trace, str | runs.Run):
        trace = runs.fetch(trace if isinstance(trace, str) else trace.id)
    model = modelcontext(model)
    options = resolve(backend=backend, gpu=gpu)
    groups = groups_of(trace, _SHIPPED_GROUPS)
    _check_size(model, groups, var_names, options.max_result_bytes)
    settings = ForwardSettings(
        kind=kind,
        groups=groups,
        var_names=None if var_names is None else list(var_names),
        random_seed=random_seed,
        float_x=pytensor.config.floatX,
    )
    return trace, pipeline.forward(pipeline.Call(model, settings, options, quiet))


def sample_posterior_predictive(
    trace,
    model=None,
    var_names: Sequence[str] | None = None,
    random_seed=None,
    extend_inferencedata: bool = False,
    idata_kwargs: dict[str, Any] | None = None,
    *,
    backend: str | None = None,
    gpu: str | Sequence[str] | None = None,
    quiet: bool = False,
):
    """Draw from the posterior predictive on a worker, as ``pm.sample_posterior_predictive``.

    The draws are those of ``pm.sample_posterior_predictive(...,
    compile_kwargs={"mode": "JAX"})`` for the same ``random_seed``.

    Parameters
    ----------
    trace : arviz.InferenceData, xarray.DataTree, str or Run
        The result of :func:`pymc_modal.sample` (or ``pm.sample``), or a
        detached run's id or handle, fetched first.
    model : pymc.Model, optional
        By default the one in the enclosing ``with`` block.
    var_names : list of str, optional
        As for ``pm.sample_posterior_predictive``.
    random_seed : int or numpy.random.Generator, optional
    extend_inferencedata : bool, default False
        Add the group to ``trace`` and return it.
    idata_kwargs : dict, optional
        As for ``pm.sample_posterior_predictive``.
    backend, gpu : optional
        Where to compute, as for :func:`pymc_modal.sample`.
    quiet : bool, default False
        Say nothing.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        What ``pm.sample_posterior_predictive`` returns.

    Raises
    ------
    pymc_modal.errors.ResultTooLargeError
        Before shipping, if the draws would be over ``max_result_bytes``.
    """
    import pymc as pm

    trace, values = _run(
        "posterior_predictive", trace, model, var_names, random_seed, backend, gpu, quiet
    )
    kwargs = {"model": modelcontext(model), **(idata_kwargs or {})}
    kwargs.setdefault("sample_dims", ["chain", "draw"])
    predictive = pm.to_inference_data(posterior_predictive=values, **kwargs)
    if not extend_inferencedata:
        return predictive
    extend(trace, predictive)
    return trace


def compute_log_likelihood(
    idata,
    *,
    var_names: Sequence[str] | None = None,
    extend_inferencedata: bool = True,
    model=None,
    backend: str | None = None,
    gpu: str | Sequence[str] | None = None,
    quiet: bool = False,
):
    """Compute the pointwise log-likelihood on a worker, as ``pm.compute_log_likelihood``.

    Parameters
    ----------
    idata : arviz.InferenceData, xarray.DataTree, str or Run
        A result with a posterior, or a detached run's id or handle.
    var_names : list of str, optional
        Observed variables; all by default.
    extend_inferencedata : bool, default True
        Add a ``log_likelihood`` group to ``idata`` and return it; else return
        the group's Dataset.
    model : pymc.Model, optional
        By default the one in the enclosing ``with`` block.
    backend, gpu, quiet : optional
        As for :func:`sample_posterior_predictive`.

    Returns
    -------
    arviz.InferenceData, xarray.DataTree or xarray.Dataset
        What ``pm.compute_log_likelihood`` returns.
    """
    idata, dataset = _run("log_likelihood", idata, model, var_names, None, backend, gpu, quiet)
    if not extend_inferencedata:
        return dataset
    add_group(idata, "log_likelihood", dataset)
    return idata
