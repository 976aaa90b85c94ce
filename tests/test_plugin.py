"""``pymc_modal.patch``: PyMC's own calls, made by a library, go through pymc_modal.

What each call becomes is checked with ``pymc_modal.sample`` replaced by a
recorder; the routed calls themselves run on the in-process backend (slow:
each compiles its sampler).
"""

import logging

import library_like
import numpy as np
import pymc as pm
import pymc.sampling.mcmc
import pytest

import pymc_modal
from pymc_modal import client
from pymc_modal.errors import InvalidOptionError, InvalidTypeError

# In a dict: a patch replaces every module attribute that is PyMC's function, this one too.
PYMC = {"sample": pm.sample}


@pytest.fixture
def calls(monkeypatch):
    """What each routed ``pm.sample`` call asked ``pymc_modal.sample`` for."""
    made = []
    monkeypatch.setattr(client, "sample", lambda **kwargs: made.append(kwargs) or "sampled")
    return made


def test_every_name_of_pm_sample_is_routed_and_restored(model, calls):
    with pymc_modal.patch(backend="local"):
        assert pm.sample is not PYMC["sample"] and pymc.sampling.mcmc.sample is pm.sample
        assert library_like.sample is pm.sample  # imported before the block
        assert library_like.fit_early(model, draws=10) == "sampled"
    assert pm.sample is PYMC["sample"] and pymc.sampling.mcmc.sample is PYMC["sample"]
    assert library_like.sample is PYMC["sample"]
    # PyMC's own modules keep the originals.
    assert pymc.sampling.forward.sample_posterior_predictive is pm.sample_posterior_predictive


def test_prior_predictive_goes_to_a_worker(model, in_process):
    with pymc_modal.patch(backend="local"):
        routed = library_like.prior(model, 20, random_seed=3, compile_kwargs={"mode": "NUMBA"})
    own = library_like.prior(model, 20, random_seed=3, compile_kwargs={"mode": "JAX"})
    assert in_process.submitted == [1]
    for name in ("mu", "effect"):
        np.testing.assert_array_equal(routed.prior[name], own.prior[name])


def test_pm_sample_arguments_mean_what_they_mean_with_an_external_sampler(model, calls):
    with pymc_modal.patch(backend="local", target_ess=400, max_seconds=600), model:
        pm.sample(
            200,
            cores=8,
            init="adapt_diag",
            n_init=1000,
            blas_cores=2,
            mp_ctx="spawn",
            compile_kwargs={"mode": "FAST_RUN"},
            discard_tuned_samples=False,
            return_inferencedata=False,
            progressbar="split",
            random_seed=3,
            target_accept=0.9,
        )
        pm.sample(nuts_sampler="blackjax", chains=16)
        pm.sample(nuts_sampler="nutpie", chains=2)

    first, chees, nutpie = calls
    assert first["draws"] == 200 and first["chains"] == 8  # chains follow cores, as in PyMC
    assert (first["sampler"], first["nuts_sampler"], first["progressbar"]) == (
        "numpyro",
        "numpyro",
        True,
    )
    assert (first["target_accept"], first["target_ess"], first["max_seconds"]) == (0.9, 400, 600)
    assert not {"cores", "init", "n_init", "blas_cores", "mp_ctx", "compile_kwargs"} & set(first)
    assert (chees["sampler"], nutpie["sampler"]) == ("chees", "nutpie")


def test_the_patch_sampler_is_pymc_s_default(model, calls):
    with pymc_modal.patch(backend="local", sampler="nutpie"), model:
        pm.sample(nuts_sampler="pymc")
        pm.sample(nuts_sampler="numpyro")
    assert [call["sampler"] for call in calls] == ["nutpie", "numpyro"]


def test_everything_is_restored_after_an_exception(model):
    with pytest.raises(ZeroDivisionError), pymc_modal.patch(backend="local"):
        assert pm.sample is not PYMC["sample"]
        raise ZeroDivisionError
    assert pm.sample is PYMC["sample"]


def test_patches_nest_and_stop_in_reverse_order(model, calls):
    outer = pymc_modal.patch(backend="local", gpu="A100").start()
    inner = pymc_modal.patch(backend="local", gpu="H100").start()
    with pytest.raises(RuntimeError, match="reverse order"):
        outer.stop()
    with model:
        pm.sample()
    inner.stop()
    assert pm.sample is not PYMC["sample"]
    outer.stop()
    assert pm.sample is PYMC["sample"]
    with pytest.raises(RuntimeError, match="not the innermost one started"):
        outer.stop()


def test_bad_options_are_refused_when_the_patch_is_made():
    with pytest.raises(InvalidOptionError, match="Unknown option"):
        pymc_modal.patch(bakend="local")
    with pytest.raises(InvalidTypeError, match="target_ess='400'"):
        pymc_modal.patch(target_ess="400")
    assert pm.sample is PYMC["sample"]


def test_what_pm_sample_would_refuse_is_refused(model, calls):
    with pymc_modal.patch(backend="local"), model, pytest.raises(InvalidOptionError, match="'x'"):
        pm.sample(nuts_sampler="x")


@pytest.mark.slow
def test_a_model_that_needs_pymc_steps_samples_with_pymc_here(nothing_shipped, caplog):
    caplog.set_level(logging.INFO, logger="pymc_modal")
    with pm.Model() as discrete:
        pm.Poisson("k", 3.0)
    with pymc_modal.patch(backend="local"), discrete:
        idata = pm.sample(draws=10, tune=10, chains=1, progressbar=False, random_seed=1)
    assert "pymc_modal_backend" not in idata.attrs and idata.posterior["k"].shape == (1, 10)
    assert "discrete variables" in caplog.text
    assert "sampling with PyMC on this machine" in caplog.text

    with pm.Model() as continuous:
        pm.Normal("x")
    with pymc_modal.patch(backend="local"), continuous:
        idata = pm.sample(10, tune=10, chains=1, step=pm.Metropolis(), progressbar=False)
    assert "pymc_modal_backend" not in idata.attrs
    assert idata.sample_stats["accepted"].shape == (1, 10)  # Metropolis's own statistic
    assert "step=<pymc.step_methods.metropolis.Metropolis" in caplog.text


@pytest.mark.slow
def test_a_library_fit_inside_the_patch_draws_what_pm_sample_draws(model, in_process):
    kwargs = {"tune": 50, "chains": 2, "random_seed": 5, "progressbar": False}
    with pymc_modal.patch(backend="local"):
        patched = library_like.fit(model, 30, **kwargs)
    with model:
        own = PYMC["sample"](draws=30, nuts_sampler="numpyro", **kwargs)

    assert patched.attrs["pymc_modal_backend"] == "local"
    assert patched["posterior_predictive"]["y"].sizes["draw"] == 30
    for name, values in own.posterior.items():
        np.testing.assert_allclose(patched.posterior[name], values, rtol=1e-6, err_msg=name)
