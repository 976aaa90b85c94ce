"""The rest of the workflow on a worker: predictive draws and pointwise log-likelihood.

``pymc_modal.sample_prior_predictive``,
``pymc_modal.sample_posterior_predictive`` and
``pymc_modal.compute_log_likelihood`` take what their PyMC namesakes take on
the installed PyMC (checked against its signatures), or a detached run's id,
ship the model (and the posterior) to a worker (the data blobs are already
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

from pymc_modal import checks, pipeline, runs
from pymc_modal._compat import add_group, extend, groups_of
from pymc_modal.config import resolve
from pymc_modal.errors import ResultTooLargeError, UnsupportedArgumentError
from pymc_modal.job import FORWARD, ForwardSettings

__all__ = ["compute_log_likelihood", "sample_posterior_predictive", "sample_prior_predictive"]

# The groups PyMC's functions read: the draws, and the data they were drawn with.
_SHIPPED_GROUPS = ("posterior", "constant_data", "observed_data")


def _check_size(size: int, what: str, advice: str, max_result_bytes: int) -> None:
    """Refuse before shipping a result of ``size`` bytes over the limit."""
    if size > max_result_bytes:
        raise ResultTooLargeError(
            f"The result would be about {checks.format_bytes(size)} ({what}), over the limit "
            f"of {checks.format_bytes(max_result_bytes)}. {advice}, or raise "
            "pymc_modal.options(max_result_bytes=...)."
        )


def _posterior_size(model, groups: dict[str, Any], var_names) -> tuple[int, str, str]:
    """Bytes of the observed variables' draws over the posterior, what they are, what to do."""
    posterior = groups["posterior"]
    draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    observed = find_observations(model) or {}
    names = observed if var_names is None else [n for n in var_names if n in observed]
    size = draws * sum(math.prod(np.shape(observed[name])) * 8 for name in names)
    thin = "Thin the posterior first (e.g. idata.sel(draw=slice(None, None, 10)))"
    return size, f"{draws} draws of {', '.join(names)}", thin


def _prior_size(model, draws: int, var_names) -> tuple[int, str, str]:
    """Bytes of the prior draws of ``var_names`` (PyMC's default: every named variable)."""
    variables = [*model.free_RVs, *model.deterministics, *model.observed_RVs]
    if var_names is not None:
        variables = [v for v in variables if v.name in var_names]
    shapes = pytensor.function([], [v.shape for v in variables], on_unused_input="ignore")()
    size = draws * sum(math.prod(shape) * 8 for shape in shapes)
    fewer = "Ask for fewer draws, or fewer variables with var_names=[...]"
    return size, f"{draws} draws of {', '.join(v.name for v in variables)}", fewer


def _run(kind: str, trace, model, kwargs: dict[str, Any], backend, gpu, quiet: bool):
    """Check one forward job, hand it to the pipeline, and return the trace and PyMC's answer.

    ``trace`` is None for the prior.
    """
    import pymc as pm

    name = FORWARD[kind]
    given = () if trace is None else (trace,)
    try:
        inspect.signature(getattr(pm, name)).bind(*given, model=model, **kwargs)
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
    if quiet and trace is not None:
        kwargs["progressbar"] = False
    if isinstance(trace, str | runs.Run):
        trace = runs.fetch(trace if isinstance(trace, str) else trace.id)
    model = modelcontext(model)
    options = resolve(backend=backend, gpu=gpu)
    var_names = kwargs.get("var_names")
    var_names = [var_names] if isinstance(var_names, str) else var_names
    if trace is None:
        groups = {}
        # PyMC 5 still takes its old name, samples=, for draws (bambi passes it).
        size = _prior_size(model, kwargs.get("samples") or kwargs["draws"], var_names)
    else:
        groups = groups_of(trace, _SHIPPED_GROUPS)
        size = _posterior_size(model, groups, var_names)
    _check_size(*size, options.max_result_bytes)
    settings = ForwardSettings(
        kind=kind, groups=groups, kwargs=kwargs, float_x=pytensor.config.floatX
    )
    return trace, pipeline.forward(pipeline.Request(model, settings, options, quiet))


def sample_prior_predictive(
    draws: int = 500,
    model=None,
    *,
    backend: str | None = None,
    gpu: str | Sequence[str] | None = None,
    quiet: bool = False,
    **kwargs: Any,
):
    """Draw from the prior and prior predictive on a worker, as ``pm.sample_prior_predictive``.

    Takes every argument ``pm.sample_prior_predictive`` takes on the
    installed PyMC, and returns what it returns: the draws are those of
    ``pm.sample_prior_predictive(..., compile_kwargs={"mode": "JAX"})`` for
    the same ``random_seed``.

    Parameters
    ----------
    draws : int, default 500
        Draws of each variable.
    model : pymc.Model, optional
        By default the one in the enclosing ``with`` block.
    backend, gpu : optional
        Where to compute, as for :func:`pymc_modal.sample`.
    quiet : bool, default False
        Say nothing.
    **kwargs
        The other arguments of ``pm.sample_prior_predictive``: ``var_names``,
        ``random_seed``, ``return_inferencedata``, ``idata_kwargs``.

    Returns
    -------
    arviz.InferenceData, xarray.DataTree or dict
        What ``pm.sample_prior_predictive`` returns.

    Raises
    ------
    pymc_modal.errors.UnsupportedArgumentError
        For an argument PyMC's function does not take, or ``compile_kwargs``.
    pymc_modal.errors.ResultTooLargeError
        Before shipping, if the draws would be over ``max_result_bytes``.
    """
    draws = checks.count("draws", draws, "draws", 500)
    _, values = _run(
        "prior_predictive", None, model, {"draws": draws, **kwargs}, backend, gpu, quiet
    )
    return values


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
