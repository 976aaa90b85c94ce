"""Going on from an earlier fit: ``extend`` draws more from its chains, ``warm_start`` its kernel.

What is refused is refused before anything is shipped; the runs themselves
go through the in-process backend, which keeps checkpoints as the local one
does (slow: each compiles its sampler).
"""

import dataclasses
import types

import arviz as az
import numpy as np
import pymc as pm
import pytest
from conftest import make_model

import pymc_modal
from pymc_modal import attrs, store
from pymc_modal.config import Options
from pymc_modal.errors import InvalidOptionError, NotConvergedWarning, UnsupportedArgumentError

QUIET = {"progressbar": False, "quiet": True, "compute_convergence_checks": False}


def _recorded(settings, sampler="numpyro", checkpoints=("c",), parameters=7, **result_attrs):
    """A result whose fit is recorded on this machine, as a sampling call leaves it."""
    fit = store.Fit(
        dataclasses.replace(settings, sampler=sampler),
        Options(backend="local"),
        {},
        checkpoints,
        parameters,
    )
    store.save_fit("earlier", fit)
    return _Result({attrs.FIT: "earlier", **result_attrs})


class _Result(dict):
    """What extend reads of a result: its attrs and its posterior's draws a chain."""

    def __init__(self, result_attrs) -> None:
        super().__init__(posterior=types.SimpleNamespace(sizes={"chain": 2, "draw": 10}))
        self.attrs = result_attrs


def test_extend_refuses_a_sampler_that_cannot_go_on(settings, model, nothing_shipped):
    with model, pytest.raises(UnsupportedArgumentError, match="sampler='nutpie' cannot go on"):
        pymc_modal.extend(_recorded(settings, sampler="nutpie"), draws=10)


def test_extend_asks_for_draws_or_a_target(settings, model, nothing_shipped):
    with model, pytest.raises(InvalidOptionError, match="pass draws=, the draws per chain to add"):
        pymc_modal.extend(_recorded(settings))
    with model, pytest.raises(InvalidOptionError, match="draws=0: pass"):
        pymc_modal.extend(_recorded(settings), draws=0)
    with model, pytest.raises(InvalidOptionError, match="max_seconds applies to a run sampled"):
        pymc_modal.extend(_recorded(settings), draws=10, max_seconds=60)


def test_extend_refuses_a_target_already_reached(settings, model, nothing_shipped):
    reached = {
        "pymc_modal_blocks": 2,
        "pymc_modal_min_ess_bulk": 450.0,
        "pymc_modal_min_ess_tail": 420.0,
        "pymc_modal_max_rhat": 1.004,
    }
    earlier = _recorded(settings, **reached)
    with model, pytest.raises(InvalidOptionError, match="already reached target_ess=400"):
        pymc_modal.extend(earlier, target_ess=400)


def test_extend_refuses_what_is_not_a_recorded_result(settings, model, nothing_shipped):
    with model, pytest.raises(InvalidOptionError, match="previous=list: pass the result of"):
        pymc_modal.extend([1, 2], draws=10)
    unknown = _Result({attrs.FIT: "gone"})
    with model, pytest.raises(InvalidOptionError, match="no record of the fit"):
        pymc_modal.extend(unknown, draws=10)


def test_extend_refuses_other_data_before_anything_is_shipped(settings, nothing_shipped):
    earlier = _recorded(dataclasses.replace(settings, var_names=None, initvals=None))
    with make_model(), pytest.raises(InvalidOptionError, match="model or its data differ"):
        pymc_modal.extend(earlier, draws=10)


def test_warm_start_refuses_samplers_that_cannot_start_warm(settings, model, nothing_shipped):
    earlier = _recorded(settings)
    with model, pytest.raises(UnsupportedArgumentError, match="sampler='chees' cannot start"):
        pymc_modal.sample(warm_start=earlier, sampler="chees", chains=8, backend="local")
    nutpie = _recorded(settings, sampler="nutpie")
    with model, pytest.raises(UnsupportedArgumentError, match="sampler='nutpie' cannot start"):
        pymc_modal.sample(warm_start=nutpie, backend="local")


def test_warm_start_refuses_a_model_of_other_shapes(settings, model, nothing_shipped):
    earlier = _recorded(settings, parameters=3)
    with model, pytest.raises(InvalidOptionError, match="has 3 unconstrained parameters"):
        pymc_modal.sample(warm_start=earlier, backend="local", **QUIET)


@pytest.mark.slow
@pytest.mark.parametrize(("sampler", "chains"), [("numpyro", 2), ("chees", 8)])
def test_an_extended_run_equals_one_longer_run(model, in_process, sampler, chains):
    fit = {"sampler": sampler, "chains": chains, "tune": 50, "random_seed": 3, **QUIET}
    with model:
        earlier = pymc_modal.sample(draws=30, **fit)
        extended = pymc_modal.extend(earlier, draws=20, **QUIET)
        longer = pymc_modal.sample(draws=50, refit=True, **fit)

    assert extended.posterior.sizes["draw"] == 50
    for group in ("posterior", "sample_stats"):
        for name, values in longer[group].items():
            np.testing.assert_array_equal(extended[group][name], values, err_msg=name)

    # It goes on again from the extension, to a target this time.
    with model, pytest.warns(NotConvergedWarning, match="pymc_modal.extend") as seen:
        further = pymc_modal.extend(extended, target_ess=10**6, max_draws=70, draws=10, **QUIET)
    assert further.attrs[attrs.STOP_REASON] == "max_draws"
    assert seen.pop(NotConvergedWarning).filename == __file__
    np.testing.assert_array_equal(
        further.posterior["mu"][:, :50], extended.posterior["mu"], err_msg="mu"
    )


def _scaled(seed: int) -> pm.Model:
    """A regression whose two slopes' posterior sds differ ten-thousandfold."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(100, 2)) * np.array([100.0, 0.01])
    with pm.Model() as model:
        slopes = pm.Normal("slopes", 0, 100, shape=2)
        pm.Normal("y", x @ slopes, 1.0, observed=x @ np.array([0.02, 50.0]) + rng.normal(size=100))
    return model


@pytest.mark.slow
def test_a_warm_start_needs_a_short_warm_up_only(in_process):
    fit = {"chains": 2, "draws": 100, "random_seed": 2, **QUIET}
    with _scaled(0):
        earlier = pymc_modal.sample(tune=300, **fit)
    with _scaled(1):
        runs = {
            "warm": pymc_modal.sample(tune=50, warm_start=earlier, **fit),
            "cold": pymc_modal.sample(tune=50, **fit),
        }

    # Fifty steps adapt a mass matrix badly from the identity, well from the earlier fit's:
    # each draw takes fewer gradients, and gives more effective samples per gradient.
    steps = {name: float(r.sample_stats["n_steps"].mean()) for name, r in runs.items()}
    ess = {name: float(az.ess(r)["slopes"].min()) / steps[name] for name, r in runs.items()}
    assert steps["warm"] < steps["cold"] / 4, steps
    assert ess["warm"] > 4 * ess["cold"], ess
