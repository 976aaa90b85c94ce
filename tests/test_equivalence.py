"""pymc_modal.sample on the local backend gives what pm.sample(nuts_sampler="numpyro") gives.

pm.sample collects every unconstrained value of every draw and transforms them
afterwards; pymc_modal transforms each draw as it is collected and keeps only
what the result holds. Equal draws here are the lean trace's identity test.
"""

import dataclasses

import numpy as np
import pymc as pm
import pytest

import pymc_modal
from pymc_modal._compat import PYMC_MAJOR
from pymc_modal.errors import NotConvergedWarning
from pymc_modal.payload import Job

pytestmark = pytest.mark.slow

COMMON = {"draws": 30, "tune": 30, "chains": 2, "random_seed": 11, "progressbar": False}


def _groups(result) -> set[str]:
    if PYMC_MAJOR >= 6:
        return {child.lstrip("/") for child in result.children}
    return set(result.groups())


def _assert_same(ours, theirs) -> None:
    assert _groups(ours) == _groups(theirs)
    for group in _groups(theirs):
        mine, reference = ours[group], theirs[group]
        assert set(mine.data_vars) == set(reference.data_vars), group
        for name in reference.data_vars:
            assert mine[name].dims == reference[name].dims, (group, name)
            np.testing.assert_allclose(mine[name].values, reference[name].values, rtol=1e-6)
        for dim, values in reference.coords.items():
            np.testing.assert_array_equal(mine.coords[dim].values, values.values)


@pytest.mark.parametrize("chain_method", ["parallel", "vectorized"])
def test_same_draws_groups_coords_and_dims(model, chain_method):
    options = {"nuts_sampler_kwargs": {"chain_method": chain_method}}
    reference = pm.sample(nuts_sampler="numpyro", model=model, **COMMON, **options)
    ours = pymc_modal.sample(model=model, backend="local", **COMMON, **options)

    assert type(ours) is type(reference)
    _assert_same(ours, reference)
    assert {"observed_data", "constant_data", "posterior", "sample_stats"} <= _groups(ours)
    assert ours.attrs["pymc_modal_backend"] == "local"
    assert ours.attrs["pymc_modal_device"].startswith("cpu")
    for phase in ("serialize", "transfer", "start", "compile", "sample", "return"):
        assert ours.attrs[f"pymc_modal_seconds_{phase}"] >= 0


def test_a_partially_observed_variable_is_imputed_as_pm_sample_imputes_it():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("x", mu, 1, observed=np.array([1.0, np.nan, 2.0]))
    reference = pm.sample(nuts_sampler="numpyro", model=model, **COMMON)
    ours = pymc_modal.sample(model=model, backend="local", **COMMON)

    _assert_same(ours, reference)
    assert "x_unobserved" in ours["posterior"].data_vars


def test_var_names_and_log_likelihood_match_and_blocks_draw_what_one_run_draws(model):
    kwargs = {"var_names": ["mu", "effect"], "idata_kwargs": {"log_likelihood": True}}
    reference = pm.sample(nuts_sampler="numpyro", model=model, **COMMON, **kwargs)
    # Two blocks of 15, going on from the first: the 30 draws of one run.
    blocks = {"draws": 15, "target_ess": 10**6, "max_draws": 30}
    capped = pytest.warns(NotConvergedWarning, match="stopped at max_draws after 30 draws")
    with model, pymc_modal.options(backend="local"), capped:
        ours = pymc_modal.sample(**{**COMMON, **blocks}, **kwargs)

    _assert_same(ours, reference)
    assert set(ours["posterior"].data_vars) == {"mu", "effect"}
    assert "log_likelihood" in _groups(ours)
    assert (ours.attrs["pymc_modal_stop_reason"], ours.attrs["pymc_modal_blocks"]) == (
        "max_draws",
        2,
    )


def test_the_progress_bar_s_stretches_draw_what_one_run_draws(model, settings):
    from pymc_modal.worker import numpyro

    settings = dataclasses.replace(settings, draws=25, tune=25, chains=2)
    quiet = numpyro.sample(Job(model, settings, [], None))
    shown = numpyro.sample(Job(model, dataclasses.replace(settings, progressbar=True), [], None))

    for name, values in quiet.posterior.items():
        np.testing.assert_array_equal(shown.posterior[name], values)
    for name, values in quiet.sample_stats.items():
        np.testing.assert_array_equal(shown.sample_stats[name], values)
