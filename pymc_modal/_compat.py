"""Where PyMC 5 and PyMC 6 differ, and nowhere else.

PyMC 5 returns an ``arviz.InferenceData`` built with ArviZ 0.x; PyMC 6 an
``xarray.DataTree`` built with ``arviz_base``; PyMC 6 also derives the seed it
hands to NumPyro differently. Imported by both sides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymc

__all__ = [
    "PYMC_MAJOR",
    "add_group",
    "extend",
    "from_raw",
    "groups_of",
    "jax_seed",
    "open_netcdf",
    "trace_of",
]

PYMC_MAJOR = int(pymc.__version__.partition(".")[0])


def jax_seed(random_seed, chains: int) -> int:
    """The seed ``pm.sample(nuts_sampler="numpyro")`` hands to NumPyro."""
    from pymc.util import _get_seeds_per_chain, get_random_generator

    if PYMC_MAJOR >= 6:
        random_seed = int(get_random_generator(random_seed).spawn(chains)[0].integers(2**30))
    (seed,) = _get_seeds_per_chain(random_seed, 1)
    return int(seed)


def groups_of(trace, names: tuple[str, ...]) -> dict[str, Any]:
    """The groups of ``trace`` among ``names``, as xarray Datasets."""
    present = trace.children if PYMC_MAJOR >= 6 else trace.groups()
    groups = {}
    for name in names:
        if name in present:
            group = trace[name]
            groups[name] = group.to_dataset() if PYMC_MAJOR >= 6 else group
    return groups


def trace_of(groups: dict[str, Any]):
    """Datasets by group name as the container this PyMC takes and returns."""
    if PYMC_MAJOR >= 6:
        import xarray

        return xarray.DataTree.from_dict(groups)
    import arviz

    return arviz.InferenceData(**groups)


def add_group(trace, name: str, dataset) -> None:
    """Add ``dataset`` to ``trace`` in place as the group ``name``."""
    if PYMC_MAJOR >= 6:
        trace[name] = dataset
    else:
        trace.add_groups({name: dataset})


def extend(trace, other) -> None:
    """Add the groups of ``other`` to ``trace`` in place."""
    if PYMC_MAJOR >= 6:
        trace.update(other)
    else:
        trace.extend(other)


def open_netcdf(path: Path):
    """Load a result written with ``to_netcdf`` into memory."""
    if PYMC_MAJOR >= 6:
        import xarray

        with xarray.open_datatree(path) as tree:
            return tree.load()
    import arviz

    return arviz.from_netcdf(path)


def from_raw(raw, coords, dims, observed_data, constant_data, idata_kwargs):
    """The result ``pm.sample`` returns, from a run's answer and the model's context.

    ``raw`` is a :class:`pymc_modal.job.Answer`.
    """
    import numpyro

    if PYMC_MAJOR < 6:
        import arviz
        from arviz.data.base import make_attrs

        return arviz.from_dict(
            posterior=raw.posterior,
            log_likelihood=raw.log_likelihood,
            observed_data=observed_data,
            constant_data=constant_data,
            sample_stats=raw.sample_stats,
            coords=coords,
            dims=dims,
            attrs=make_attrs(raw.attrs, library=numpyro),
            posterior_attrs=make_attrs(raw.attrs, library=numpyro),
            **idata_kwargs,
        )
    from arviz_base import from_dict, make_attrs

    groups = {"posterior": raw.posterior, "sample_stats": raw.sample_stats}
    if raw.log_likelihood is not None:
        groups["log_likelihood"] = raw.log_likelihood
    for name, data in (("observed_data", observed_data), ("constant_data", constant_data)):
        if data is not None:
            groups[name] = data
    attrs = {"posterior": make_attrs(raw.attrs, inference_library=numpyro)}
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
