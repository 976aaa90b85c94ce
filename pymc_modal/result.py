"""Wrap a worker's arrays into what ``pm.sample`` returns on this installation.

PyMC 5 returns an ``arviz.InferenceData``, PyMC 6 an ``xarray.DataTree``; both
are built with the same ArviZ converter PyMC itself uses
(:func:`pymc_modal._compat.from_raw`), with coords, dims, observed data and
constant data taken from the client's own model.
"""

from __future__ import annotations

from typing import Any

from pymc.backends.arviz import (
    coords_and_dims_for_inferencedata,
    find_constants,
    find_observations,
)

from pymc_modal._compat import from_raw
from pymc_modal.job import Answer

__all__ = ["context", "wrap"]


def context(model, idata_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """What wrapping a result takes from the client's model, as plain picklable data.

    Parameters
    ----------
    model : pymc.Model
        The client's model, source of coords, dims and data.
    idata_kwargs : dict, optional
        As for ``pm.sample``; ``log_likelihood`` was already acted on by the worker.
    """
    idata_kwargs = dict(idata_kwargs or {})
    idata_kwargs.pop("log_likelihood", None)
    coords, dims = coords_and_dims_for_inferencedata(model)
    coords.update(idata_kwargs.pop("coords", {}))
    dims.update(idata_kwargs.pop("dims", {}))
    return {
        "coords": coords,
        "dims": dims,
        "observed_data": find_observations(model),
        "constant_data": find_constants(model),
        "idata_kwargs": idata_kwargs,
    }


def wrap(raw: Answer, context: dict[str, Any], attrs: dict[str, Any]):
    """Build the result object from a worker's arrays.

    Parameters
    ----------
    raw : Answer
        A run's answer (the workers' merged).
    context : dict
        What :func:`context` took from the client's model.
    attrs : dict
        Attributes to add to the result's top level.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
    """
    result = from_raw(raw, **context)
    result.attrs.update(attrs)
    return result
