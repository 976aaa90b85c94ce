"""Every job that can be seen to fail is refused on the client, before anything is shipped."""

import subprocess
import sys
import textwrap

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from pytensor.compile.ops import as_op

import pymc_modal
from pymc_modal.client import prepare
from pymc_modal.errors import (
    DiscreteVariablesError,
    InitialPointError,
    InvalidOptionError,
    InvalidTypeError,
    JaxConversionError,
    NoFreeVariablesError,
    ResultTooLargeError,
    UnknownVarNamesError,
    UnsupportedArgumentError,
)


@pytest.fixture(autouse=True)
def _nothing_shipped(nothing_shipped):
    """Every test here is refused before anything ships."""


def test_no_free_variables():
    with pm.Model() as model:
        pm.Normal("y", 0, 1, observed=[0.1, 0.2])
    with pytest.raises(NoFreeVariablesError, match="sample_prior_predictive"):
        pymc_modal.sample(model=model, backend="local")


def test_discrete_free_variable_is_named():
    with pm.Model() as model:
        pm.Poisson("count", 3.0)
        pm.Normal("x", 0, 1)
    with pytest.raises(DiscreteVariablesError, match="count"):
        pymc_modal.sample(model=model, backend="local")


def test_unknown_var_names_lists_the_valid_ones(model):
    with pytest.raises(UnknownVarNamesError, match="'nope'.*Choose among: .*mu"):
        pymc_modal.sample(model=model, var_names=["mu", "nope"], backend="local")


def test_observed_variable_in_var_names_is_refused(model):
    with pytest.raises(UnknownVarNamesError, match="'y'"):
        pymc_modal.sample(model=model, var_names=["y"], backend="local")


@as_op(itypes=[pt.dscalar], otypes=[pt.dscalar])
def _python_only(x):
    return np.asarray(x * 2.0)


def test_op_without_jax_conversion():
    with pm.Model() as model:
        x = pm.Normal("x", 0, 1)
        pm.Potential("p", _python_only(x))
    with pytest.raises(JaxConversionError, match="jax_funcify"):
        pymc_modal.sample(model=model, backend="local")


def test_result_too_large_points_to_var_names(model):
    with (
        pymc_modal.options(max_result_bytes=10_000),
        pytest.raises(ResultTooLargeError, match="var_names"),
    ):
        pymc_modal.sample(model=model, draws=1000, chains=4, backend="local")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step": object()}, "step="),
        ({"cores": 4}, "chains= instead"),
        ({"init": "adapt_diag"}, "initvals"),
        ({"nuts_sampler": "pymc"}, "nuts_sampler='pymc'"),
        ({"return_inferencedata": False}, "return_inferencedata"),
        ({"discard_tuned_samples": False}, "discard_tuned_samples"),
        ({"not_an_argument": 1}, "not_an_argument"),
    ],
)
def test_unsupported_arguments(model, kwargs, match):
    with pytest.raises(UnsupportedArgumentError, match=match):
        pymc_modal.sample(model=model, backend="local", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nuts_sampler_kwargs": {"max_tree_depht": 5}}, "max_tree_depht"),
        # Stan's spelling: refused, with the valid option named.
        ({"nuts": {"max_treedepth": 10}}, r"max_treedepth \(did you mean 'max_tree_depth'\?\)"),
        ({"nuts_sampler_kwargs": {"chain_method": "threads"}}, "chain_method"),
        ({"nuts": {"target_accept": 0.9}, "target_accept": 0.95}, "twice"),
        ({"random_seed": -1}, "random_seed = -1"),
        ({"backend": "cloud"}, "backend='cloud'"),
    ],
)
def test_invalid_options(model, kwargs, match):
    with pytest.raises(InvalidOptionError, match=match):
        pymc_modal.sample(model=model, **{"backend": "local", **kwargs})


def test_default_arguments_are_accepted(model):
    with pytest.raises(AssertionError, match="was shipped"):
        pymc_modal.sample(
            model=model,
            backend="local",
            return_inferencedata=True,
            discard_tuned_samples=True,
            nuts={"max_tree_depth": 8, "chain_method": "vectorized"},
        )


def test_postprocessing_options_warn_that_they_have_no_effect(model):
    with (
        pytest.warns(UserWarning, match="postprocessing_backend has no effect"),
        pytest.raises(AssertionError, match="was shipped"),
    ):
        pymc_modal.sample(
            model=model, backend="local", nuts_sampler_kwargs={"postprocessing_backend": "cpu"}
        )


@pytest.mark.slow
def test_client_starts_no_jax_device():
    # A fresh process, since this one has started JAX already. A client that started
    # a device would hold most of a local GPU's memory while the worker needs it.
    script = textwrap.dedent(
        """
        import numpy as np, pymc as pm
        from jax._src import xla_bridge
        from pymc_modal import client
        from pymc_modal.backends.local import LocalBackend
        class Shipped(Exception):
            pass

        def ship(*args):
            raise Shipped

        LocalBackend.store_blobs = LocalBackend.submit = ship
        with pm.Model():
            x = pm.Normal("x", 0, 1, shape=3)
            pm.Normal("y", x.sum(), 1, observed=np.ones(5))
            try:
                client.sample(backend="local", idata_kwargs={"log_likelihood": True})
            except Shipped:
                print("shipped")
        print("device started:", xla_bridge.backends_are_initialized())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "shipped" in done.stdout
    assert "device started: False" in done.stdout


def _bad_start_model(jitter_rescues: bool = False) -> pm.Model:
    """A model whose log density is -inf at its initial point (and, jittered, still)."""
    with pm.Model() as model:
        x = pm.Normal("x", 0, 1)
        edge = 0.0 if jitter_rescues else 100.0
        pm.Potential("wall", pt.switch(x > edge, 0.0, -np.inf))
    return model


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"draws": -1}, InvalidOptionError, r"draws=-1: pass a whole number of draws"),
        ({"draws": 0}, InvalidOptionError, r"draws=0: pass a whole number of draws"),
        ({"draws": 10.5}, InvalidOptionError, r"draws=10.5: pass a whole number"),
        ({"tune": -5}, InvalidOptionError, r"tune=-5: pass a whole number of tuning steps"),
        ({"chains": 0}, InvalidOptionError, r"chains=0: pass a whole number of chains"),
        ({"target_accept": 80}, InvalidOptionError, r"target_accept=80: .* between 0 and 1"),
        ({"var_names": "mu"}, InvalidTypeError, r"var_names='mu': pass a list .*\['mu'\]"),
        ({"draws": "100"}, InvalidTypeError, r"draws='100': pass a whole number of draws"),
        ({"chains": None, "tune": True}, InvalidTypeError, r"tune=True: pass a whole number"),
        ({"target_accept": "0.9"}, InvalidTypeError, r"target_accept='0.9': pass the accept"),
        ({"target_ess": "400"}, InvalidTypeError, r"target_ess='400': pass a positive whole"),
        ({"target_ess": 400, "max_seconds": "1h"}, InvalidTypeError, r"max_seconds='1h': pass"),
        ({"initvals": {"nope": 1.0}}, InvalidOptionError, r"initvals has 'nope'.*among: mu"),
        (
            {"initvals": {"offset": np.zeros(3)}},
            InvalidOptionError,
            r"initvals\[.offset.\] has shape \(3,\), but offset has shape \(4,\)",
        ),
        ({"initvals": [{"mu": 0.0}]}, InvalidOptionError, r"initvals has 1 entries for 2 chains"),
        ({"initvals": {"mu": "middle"}}, InvalidOptionError, r"initvals could not .*strategy"),
        ({"initvals": 0.0}, InvalidOptionError, r"initvals=0.0: pass a dict"),
        ({"nuts": {"max_tree_depth": -1}}, InvalidOptionError, r"max_tree_depth=-1: pass a pos"),
        ({"nuts": {"step_size": 0}}, InvalidOptionError, r"step_size=0: pass a positive number"),
        ({"nuts": {"dense_mass": "yes"}}, InvalidOptionError, r"dense_mass='yes': pass True or"),
        ({"nuts": {"jitter": "no"}}, InvalidOptionError, r"jitter='no' is not one of True, F"),
        ({"gpu": 123}, InvalidOptionError, r"gpu=123 is not a GPU type .* 'H100:2'"),
        (
            {"model": "bad start"},
            InitialPointError,
            r"(?s)'wall': .*-inf.*after 10 tries.*initvals=",
        ),
        (
            {"model": "bad start", "nuts": {"jitter": False}},
            InitialPointError,
            r"(?s)'wall': .*-inf.*not finite where a chain would start\. Pass initvals=",
        ),
        ({"model": "bad start", "workers": 2}, InitialPointError, r"(?s)'wall': .*-inf"),
    ],
)
def test_mistakes_are_refused_before_a_worker_starts(model, kwargs, error, match):
    if kwargs.get("model") == "bad start":
        kwargs = {**kwargs, "model": _bad_start_model()}
    with pytest.raises(error, match=match) as raised:
        pymc_modal.sample(**{"model": model, "chains": 2, "backend": "local", **kwargs})
    # An argument of the wrong type is a TypeError, as pm.sample's is; a wrong value is not.
    assert isinstance(raised.value, TypeError) == (error is InvalidTypeError)


def test_a_start_the_jitter_makes_finite_is_accepted():
    # Half of PyMC's jittered starts of x land above the wall: the retries find one.
    model = _bad_start_model(jitter_rescues=True)
    with pytest.raises(AssertionError, match="was shipped"):
        pymc_modal.sample(model=model, chains=4, random_seed=3, backend="local")


def test_numpy_counts_reach_numpyro_as_ints(model):
    # NumPyro's MCMC refuses a numpy integer for num_warmup or num_samples.
    call = prepare(model=model, draws=np.int64(10), tune=np.int64(5), chains=np.int64(2))
    settings = call.settings
    assert (type(settings.draws), type(settings.tune), type(settings.chains)) == (int, int, int)
