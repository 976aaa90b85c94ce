"""Checks that run on the client before any bytes are shipped.

A job that can be seen to fail here must not start a paid GPU: a model with
nothing to sample or with discrete variables, unknown ``var_names``, a graph
PyMC cannot turn into JAX, or a result too large to bring back.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from pymc_modal.errors import (
    DiscreteVariablesError,
    JaxConversionError,
    NoFreeVariablesError,
    ResultTooLargeError,
    UnknownVarNamesError,
)
from pymc_modal.nuts import EXTRA_FIELDS, NutsSettings, kept_variables

__all__ = ["check", "result_bytes"]


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def _check_variables(model, settings: NutsSettings) -> None:
    from pytensor.tensor.type import discrete_dtypes

    if not model.free_RVs:
        raise NoFreeVariablesError(
            "The model has no free random variables, so there is nothing to sample. "
            "To draw from observed variables' priors, use pm.sample_prior_predictive."
        )
    discrete = [rv.name for rv in model.free_RVs if rv.dtype in discrete_dtypes]
    if discrete:
        raise DiscreteVariablesError(
            f"NUTS cannot sample the discrete variable(s) {', '.join(discrete)}. "
            "Marginalize them out (e.g. with pymc_extras.marginalize, or a mixture "
            "likelihood), or sample this model with pm.sample on your own machine."
        )
    if settings.var_names is not None:
        available = [v.name for v in model.unobserved_value_vars]
        unknown = [name for name in settings.var_names if name not in available]
        if unknown:
            raise UnknownVarNamesError(
                f"var_names has {', '.join(map(repr, unknown))}, which the model does not "
                f"sample. Choose among: {', '.join(available)}."
            )


def _abstract_point(model) -> list[jax.ShapeDtypeStruct]:
    point = model.initial_point()
    return [jax.ShapeDtypeStruct(np.shape(point[v.name]), v.dtype) for v in model.value_vars]


def _jaxify(model, settings: NutsSettings):
    """Convert the log density and the returned variables to JAX and trace them abstractly."""
    from pymc.sampling.jax import get_jaxified_graph, get_jaxified_logp

    kept = kept_variables(model, settings)
    elemwise = model.logp(model.observed_RVs, sum=False) if settings.log_likelihood else []

    def trace(values):
        get_jaxified_logp(model, negative_logp=False)(values)
        return get_jaxified_graph(inputs=model.value_vars, outputs=[*kept, *elemwise])(*values)

    try:
        # Converting inside the abstract trace keeps the model's data out of any JAX
        # device: the client never starts one, so a local GPU is left whole to the worker.
        outputs = jax.eval_shape(trace, _abstract_point(model))
    except Exception as exc:
        raise JaxConversionError(
            f"PyMC could not turn this model into JAX: {type(exc).__name__}: {exc}. "
            "Every Op in the model needs a JAX conversion (register one with "
            "pytensor.link.jax.dispatch.jax_funcify.register for a custom Op), and the "
            "model must not contain shared random generators or variables with updates. "
            "Check with pymc.sampling.jax.get_jaxified_logp(model)."
        ) from exc
    return outputs


def result_bytes(outputs, settings: NutsSettings) -> int:
    """Bytes of the arrays a run will return, from the abstract shapes of its outputs."""
    per_draw = sum(math.prod(out.shape) * out.dtype.itemsize for out in outputs)
    per_draw += 8 * len(EXTRA_FIELDS) + 8  # sample stats, tree_depth included
    return per_draw * settings.draws * settings.chains


def check(model, settings: NutsSettings, max_result_bytes: int) -> int:
    """Refuse, with a specific error, a job that would fail or could not come back.

    Parameters
    ----------
    model : pymc.Model
    settings : NutsSettings
    max_result_bytes : int
        The largest result to accept.

    Returns
    -------
    int
        The estimated size of the result in bytes.
    """
    _check_variables(model, settings)
    size = result_bytes(_jaxify(model, settings), settings)
    if size > max_result_bytes:
        raise ResultTooLargeError(
            f"The result would be about {_format_bytes(size)} ({settings.chains} chains x "
            f"{settings.draws} draws), over the limit of {_format_bytes(max_result_bytes)}. "
            "Keep only the variables you need with var_names=[...], or sample fewer draws; "
            "to allow it anyway, raise pymc_modal.options(max_result_bytes=...)."
        )
    return size
