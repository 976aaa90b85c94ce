"""The rest of the workflow on a worker: posterior predictive draws and pointwise log-likelihood.

``pymc_modal.sample_posterior_predictive`` and
``pymc_modal.compute_log_likelihood`` take what their PyMC namesakes take on
the installed PyMC (checked against its signatures), or a detached run's id,
ship the model and the posterior to a worker (the data blobs are already
stored there if the model was sampled there), run PyMC's own function with
those arguments on the worker's device, and return what PyMC returns.
"""

from __future__ import annotations

import inspect
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
from pymc_modal.errors import ResultTooLargeError, UnsupportedArgumentError
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


def _run(kind: str, trace, model, kwargs: dict[str, Any], backend, gpu, quiet: bool):
    """Check one forward job, hand it to the pipeline, and return the trace and PyMC's answer."""
    import pymc as pm

    function = {
        "posterior_predictive": pm.sample_posterior_predictive,
        "log_likelihood": pm.compute_log_likelihood,
    }[kind]
    name = function.__name__
    try:
        inspect.signature(function).bind(trace, model=model, **kwargs)
    except TypeError as exc:
        raise UnsupportedArgumentError(
            f"pymc_modal.{name} takes what pm.{name} takes on PyMC {pm.__version__}, "
            f"and backend, gpu and quiet: {exc}."
        ) from exc
    if kwargs.get("compile_kwargs") is not None:
        raise UnsupportedArgumentError(
            f"pymc_modal.{name} does not take compile_kwargs=: the worker compiles the model "
            "with PyMC's JAX backend for its own device."
        )
    kwargs = {key: value for key, value in kwargs.items() if key != "compile_kwargs"}
    if quiet:
        kwargs["progressbar"] = False
    if isinstance(trace, str | runs.Run):
        trace = runs.fetch(trace if isinstance(trace, str) else trace.id)
    model = modelcontext(model)
    options = resolve(backend=backend, gpu=gpu)
    groups = groups_of(trace, _SHIPPED_GROUPS)
    var_names = kwargs.get("var_names")
    var_names = [var_names] if isinstance(var_names, str) else var_names
    _check_size(model, groups, var_names, options.max_result_bytes)
    settings = ForwardSettings(
        kind=kind, groups=groups, kwargs=kwargs, float_x=pytensor.config.floatX
    )
    return trace, pipeline.forward(pipeline.Request(model, settings, options, quiet))


def sample_posterior_predictive(
    trace,
    model=None,
    *,
    extend_inferencedata: bool = False,
    backend: str | None = None,
    gpu: str | Sequence[str] | None = None,
    quiet: bool = False,
    **kwargs: Any,
):
    """Draw from the posterior predictive on a worker, as ``pm.sample_posterior_predictive``.

    Takes every argument ``pm.sample_posterior_predictive`` takes on the
    installed PyMC (by keyword), and returns what it returns: the draws are
    those of ``pm.sample_posterior_predictive(..., compile_kwargs={"mode":
    "JAX"})`` for the same ``random_seed``.

    Parameters
    ----------
    trace : arviz.InferenceData, xarray.DataTree, str or Run
        The result of :func:`pymc_modal.sample` (or ``pm.sample``), or a
        detached run's id or handle, fetched first.
    model : pymc.Model, optional
        By default the one in the enclosing ``with`` block.
    extend_inferencedata : bool, default False
        Add the new group(s) to ``trace`` and return it.
    backend, gpu : optional
        Where to compute, as for :func:`pymc_modal.sample` (so PyMC 6's own
        ``backend``, a compile backend, is not taken: the worker compiles to
        JAX).
    quiet : bool, default False
        Say nothing, and show no progress bar.
    **kwargs
        The other arguments of ``pm.sample_posterior_predictive``:
        ``var_names``, ``random_seed``, ``predictions``, ``sample_dims``,
        ``return_inferencedata``, ``idata_kwargs``, ``progressbar``, ...

    Returns
    -------
    arviz.InferenceData, xarray.DataTree or dict
        What ``pm.sample_posterior_predictive`` returns.

    Raises
    ------
    pymc_modal.errors.UnsupportedArgumentError
        For an argument PyMC's function does not take, or ``compile_kwargs``.
    pymc_modal.errors.ResultTooLargeError
        Before shipping, if the draws would be over ``max_result_bytes``.
    """
    trace, values = _run("posterior_predictive", trace, model, kwargs, backend, gpu, quiet)
    if not extend_inferencedata or isinstance(values, dict):
        return values
    extend(trace, values)
    return trace


def compute_log_likelihood(
    idata,
    *,
    extend_inferencedata: bool = True,
    model=None,
    backend: str | None = None,
    gpu: str | Sequence[str] | None = None,
    quiet: bool = False,
    **kwargs: Any,
):
    """Compute the pointwise log-likelihood on a worker, as ``pm.compute_log_likelihood``.

    Takes every argument ``pm.compute_log_likelihood`` takes on the installed
    PyMC, and returns what it returns.

    Parameters
    ----------
    idata : arviz.InferenceData, xarray.DataTree, str or Run
        A result with a posterior, or a detached run's id or handle.
    extend_inferencedata : bool, default True
        Add a ``log_likelihood`` group to ``idata`` and return it; else return
        the group's Dataset.
    model : pymc.Model, optional
        By default the one in the enclosing ``with`` block.
    backend, gpu, quiet : optional
        As for :func:`sample_posterior_predictive`.
    **kwargs
        The other arguments of ``pm.compute_log_likelihood``: ``var_names``,
        ``sample_dims``, ``progressbar``.

    Returns
    -------
    arviz.InferenceData, xarray.DataTree or xarray.Dataset
        What ``pm.compute_log_likelihood`` returns.

    Raises
    ------
    pymc_modal.errors.UnsupportedArgumentError
        For an argument PyMC's function does not take, or ``compile_kwargs``.
    """
    idata, dataset = _run("log_likelihood", idata, model, kwargs, backend, gpu, quiet)
    if not extend_inferencedata:
        return dataset
    add_group(idata, "log_likelihood", dataset)
    return idata
