"""Posterior predictive draws and log-likelihood on a worker equal PyMC's own, in PyMC's form."""

import numpy as np
import pymc as pm
import pytest
import xarray as xr

import pymc_modal
from pymc_modal._compat import PYMC_MAJOR
from pymc_modal.errors import ResultTooLargeError


@pytest.fixture(scope="module")
def fitted():
    from conftest import make_model

    model = make_model()
    idata = pm.sample(
        model=model,
        draws=30,
        tune=30,
        chains=2,
        random_seed=1,
        progressbar=False,
        compute_convergence_checks=False,
    )
    return model, idata


def _groups(data) -> set[str]:
    return set(data.children) if PYMC_MAJOR >= 6 else set(data.groups())


@pytest.mark.slow
def test_posterior_predictive_equals_pymc_with_jax(fitted):
    model, idata = fitted
    remote = pymc_modal.sample_posterior_predictive(
        idata, model=model, random_seed=3, backend="local"
    )
    here = pm.sample_posterior_predictive(
        idata, model=model, random_seed=3, progressbar=False, compile_kwargs={"mode": "JAX"}
    )
    assert _groups(remote) == _groups(here)
    xr.testing.assert_equal(
        remote["posterior_predictive"]["y"].load(), here["posterior_predictive"]["y"].load()
    )


@pytest.mark.slow
def test_log_likelihood_equals_pymc_and_extends_the_result(fitted):
    model, idata = fitted
    remote = pymc_modal.compute_log_likelihood(
        idata, model=model, extend_inferencedata=False, backend="local"
    )
    here = pm.compute_log_likelihood(
        idata, model=model, extend_inferencedata=False, progressbar=False
    )
    assert isinstance(remote, xr.Dataset)
    np.testing.assert_allclose(remote["y"].values, here["y"].values, rtol=1e-6)
    assert remote["y"].dims == here["y"].dims == ("chain", "draw", "obs")

    extended = pymc_modal.compute_log_likelihood(idata.copy(), model=model, backend="local")
    assert "log_likelihood" in _groups(extended)


def test_a_result_too_large_is_refused_before_shipping(fitted, nothing_shipped):
    model, idata = fitted
    with (
        pymc_modal.options(max_result_bytes=100),
        pytest.raises(ResultTooLargeError, match="Thin the posterior"),
    ):
        pymc_modal.sample_posterior_predictive(idata, model=model, backend="local")
