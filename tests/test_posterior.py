"""Predictive draws and log-likelihood on a worker equal PyMC's own, in PyMC's form."""

import numpy as np
import pymc as pm
import pytest
import xarray as xr

import pymc_modal
from pymc_modal._compat import PYMC_MAJOR
from pymc_modal.errors import InvalidOptionError, ResultTooLargeError, UnsupportedArgumentError


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
        idata,
        model=model,
        extend_inferencedata=False,
        sample_dims=("chain", "draw"),
        progressbar=False,
        backend="local",
    )
    here = pm.compute_log_likelihood(
        idata, model=model, extend_inferencedata=False, progressbar=False
    )
    assert isinstance(remote, xr.Dataset)
    np.testing.assert_allclose(remote["y"].values, here["y"].values, rtol=1e-6)
    assert remote["y"].dims == here["y"].dims == ("chain", "draw", "obs")

    extended = pymc_modal.compute_log_likelihood(idata.copy(), model=model, backend="local")
    assert "log_likelihood" in _groups(extended)


def test_prior_predictive_equals_pymc_with_jax(in_process):
    from conftest import make_model

    model = make_model()
    same = {"draws": 40, "random_seed": 5}
    remote = pymc_modal.sample_prior_predictive(model=model, backend="local", **same)
    here = pm.sample_prior_predictive(model=model, compile_kwargs={"mode": "JAX"}, **same)
    assert in_process.submitted == [1]
    assert _groups(remote) == _groups(here) >= {"prior", "prior_predictive", "observed_data"}
    for group, name in [("prior", "mu"), ("prior", "effect"), ("prior_predictive", "y")]:
        xr.testing.assert_equal(remote[group][name].load(), here[group][name].load())

    arrays = pymc_modal.sample_prior_predictive(
        10, model=model, var_names=["mu"], return_inferencedata=False, backend="local"
    )
    assert arrays.keys() == {"mu"} and arrays["mu"].shape == (10,)


def test_a_prior_too_large_is_refused_before_shipping(nothing_shipped):
    from conftest import make_model

    model = make_model()
    with (
        pymc_modal.options(max_result_bytes=10_000),
        pytest.raises(
            ResultTooLargeError,
            match=r"effect, y\), over the limit of 9.8 KiB\. Ask for fewer draws",
        ),
    ):
        pymc_modal.sample_prior_predictive(2000, model=model, backend="local")
    with pytest.raises(InvalidOptionError, match=r"draws=0: pass a whole number"):
        pymc_modal.sample_prior_predictive(0, model=model, backend="local")


def test_a_result_too_large_is_refused_before_shipping(fitted, nothing_shipped):
    model, idata = fitted
    with (
        pymc_modal.options(max_result_bytes=100),
        pytest.raises(
            ResultTooLargeError,
            match=r"draws of y\), over the limit of 100 B\. Thin the posterior first",
        ),
    ):
        pymc_modal.sample_posterior_predictive(idata, model=model, backend="local")


@pytest.mark.slow
def test_predictions_extend_the_trace_as_pymc_does(fitted):
    model, idata = fitted
    same = {"random_seed": 3, "predictions": True, "extend_inferencedata": True}
    remote = pymc_modal.sample_posterior_predictive(
        idata.copy(), model=model, progressbar=False, backend="local", **same
    )
    here = pm.sample_posterior_predictive(
        idata.copy(), model=model, progressbar=False, compile_kwargs={"mode": "JAX"}, **same
    )
    assert {"predictions", "predictions_constant_data"} <= _groups(remote) == _groups(here)
    xr.testing.assert_equal(remote["predictions"]["y"].load(), here["predictions"]["y"].load())


@pytest.mark.slow
def test_without_inferencedata_the_arrays_are_pymcs(fitted):
    model, idata = fitted
    same = {"var_names": ["y"], "random_seed": 3, "return_inferencedata": False}
    remote = pymc_modal.sample_posterior_predictive(idata, model=model, backend="local", **same)
    here = pm.sample_posterior_predictive(
        idata, model=model, progressbar=False, compile_kwargs={"mode": "JAX"}, **same
    )
    assert isinstance(remote, dict) and remote.keys() == here.keys() == {"y"}
    np.testing.assert_array_equal(remote["y"], here["y"])


@pytest.mark.parametrize(
    "function",
    ["sample_prior_predictive", "sample_posterior_predictive", "compute_log_likelihood"],
)
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"var_nmes": ["y"]}, r"takes what pm\.\w+ takes on PyMC .*'var_nmes'"),
        ({"compile_kwargs": {"mode": "NUMBA"}}, "does not take compile_kwargs=: the worker"),
    ],
)
def test_arguments_pymc_would_refuse_or_that_cannot_apply(
    fitted, nothing_shipped, function, kwargs, match
):
    model, idata = fitted
    given = () if function == "sample_prior_predictive" else (idata,)
    with pytest.raises(UnsupportedArgumentError, match=match):
        getattr(pymc_modal, function)(*given, model=model, backend="local", **kwargs)
