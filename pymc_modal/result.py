"""Wrap a worker's arrays into what ``pm.sample`` returns on this installation.

PyMC 5 returns an ``arviz.InferenceData``, PyMC 6 an ``xarray.DataTree``; both
are built with the same ArviZ converter PyMC itself uses, with coords, dims,
observed data and constant data taken from the client's own model.
"""

from __future__ import annotations

from typing import Any

import numpyro
import pymc
from pymc.backends.arviz import (
    coords_and_dims_for_inferencedata,
    find_constants,
    find_observations,
)

__all__ = ["PYMC_MAJOR", "context", "wrap"]

PYMC_MAJOR = int(pymc.__version__.partition(".")[0])


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


def wrap(raw: dict[str, Any], context: dict[str, Any], attrs: dict[str, Any]):
    """Build the result object from a worker's arrays.

    Parameters
    ----------
    raw : dict
        What :func:`pymc_modal.nuts.sample` returned.
    context : dict
        What :func:`context` took from the client's model.
    attrs : dict
        Attributes to add to the result's top level.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
    """
    convert = _to_datatree if PYMC_MAJOR >= 6 else _to_inference_data
    result = convert(raw, **context)
    result.attrs.update(attrs)
    return result


def _to_inference_data(raw, coords, dims, observed_data, constant_data, idata_kwargs):
    import arviz
    from arviz.data.base import make_attrs

    return arviz.from_dict(
        posterior=raw["posterior"],
        log_likelihood=raw["log_likelihood"],
        observed_data=observed_data,
        constant_data=constant_data,
        sample_stats=raw["sample_stats"],
        coords=coords,
        dims=dims,
        attrs=make_attrs(raw["attrs"], library=numpyro),
        posterior_attrs=make_attrs(raw["attrs"], library=numpyro),
        **idata_kwargs,
    )


def _to_datatree(raw, coords, dims, observed_data, constant_data, idata_kwargs):
    from arviz_base import from_dict, make_attrs

    groups = {"posterior": raw["posterior"], "sample_stats": raw["sample_stats"]}
    if raw["log_likelihood"] is not None:
        groups["log_likelihood"] = raw["log_likelihood"]
    for name, data in (("observed_data", observed_data), ("constant_data", constant_data)):
        if data is not None:
            groups[name] = data
    attrs = {"posterior": make_attrs(raw["attrs"], inference_library=numpyro)}
    idata_kwargs = dict(idata_kwargs)
    attrs.update(idata_kwargs.pop("attrs", {}))
    return from_dict(
        data=groups,
        coords=coords,
        dims=dims,
        sample_dims=["chain", "draw"],
        attrs=attrs,
        **idata_kwargs,
    )
