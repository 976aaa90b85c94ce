"""BlackJAX samplers: the default's posterior and result shape, n_steps; bad options refused."""

import dataclasses
import warnings

import arviz as az
import numpy as np
import pytest

import pymc_modal
from pymc_modal._compat import PYMC_MAJOR
from pymc_modal.errors import InvalidOptionError, NotConvergedWarning
from pymc_modal.worker import blackjax as blackjax_worker

COMMON = {"draws": 300, "tune": 300, "random_seed": 2, "backend": "local", "progressbar": False}
# Each fit draws its 300 in two blocks, the second going on from the first.
BLOCKS = {"draws": 150, "target_ess": 10**6, "max_draws": 300}
CHAINS = {"numpyro": 4, "blackjax": 4, "chees": 64}


def _groups(result) -> set[str]:
    return set(result.children) if PYMC_MAJOR >= 6 else set(result.groups())


@pytest.fixture(scope="module")
def fits():
    from conftest import make_model

    model = make_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        return {
            name: pymc_modal.sample(
                model=model, sampler=name, chains=chains, **{**COMMON, **BLOCKS}
            )
            for name, chains in CHAINS.items()
        }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blackjax", "chees"])
def test_posterior_means_agree_with_the_default_within_monte_carlo_error(fits, name):
    reference, fit = fits["numpyro"], fits[name]
    for var in ("mu", "sigma", "slope", "effect"):
        errors = [np.asarray(az.mcse(result, var_names=[var])[var]) for result in (reference, fit)]
        difference = fit.posterior[var].mean(("chain", "draw")) - reference.posterior[var].mean(
            ("chain", "draw")
        )
        bound = 5 * np.sqrt(errors[0] ** 2 + errors[1] ** 2)
        assert np.all(np.abs(np.asarray(difference)) <= bound), (var, difference, bound)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blackjax", "chees"])
def test_results_have_the_default_groups_coords_dims_and_n_steps(fits, name):
    reference, fit = fits["numpyro"], fits[name]
    assert _groups(fit) == _groups(reference)
    for var in reference.posterior.data_vars:
        assert fit.posterior[var].dims == reference.posterior[var].dims
    assert list(fit.posterior["effect"].coords["group"].values) == ["g0", "g1", "g2", "g3"]
    assert fit.posterior.sizes["chain"] == CHAINS[name]
    assert fit.posterior.sizes["draw"] == COMMON["draws"]
    assert fit.attrs["pymc_modal_blocks"] == 2
    steps = np.asarray(fit.sample_stats["n_steps"])
    assert steps.shape == (CHAINS[name], COMMON["draws"]) and steps.min() >= 1
    assert {"lp", "step_size", "acceptance_rate", "diverging"} <= set(fit.sample_stats.data_vars)


def test_an_unknown_sampler_is_refused_before_shipping_with_the_valid_names(model, nothing_shipped):
    with pytest.raises(InvalidOptionError, match="'numpyro', 'blackjax', 'chees'"):
        pymc_modal.sample(model=model, sampler="nutpie", backend="local")
    with (
        pytest.raises(InvalidOptionError, match="sampler='hmc'"),
        pymc_modal.gpu("H100", sampler="hmc"),
    ):
        pass


def test_options_a_blackjax_sampler_cannot_honour_are_refused(model, nothing_shipped):
    with pytest.raises(InvalidOptionError, match="max_tree_depth: NumPyro NUTS options"):
        pymc_modal.sample(
            model=model, sampler="blackjax", nuts_sampler_kwargs={"max_tree_depth": 5}
        )
    with pytest.raises(InvalidOptionError, match="chains=16 or more"):
        pymc_modal.sample(model=model, sampler="chees", chains=1, backend="local")


@pytest.mark.parametrize("name", ["blackjax", "chees"])
def test_the_progress_bar_counts_every_warm_up_step_and_draw(model, settings, name, capsys):
    settings = dataclasses.replace(
        settings, draws=7, tune=5, chains=2, progressbar=True, sampler=name
    )
    blackjax_worker.sample(model, settings)
    assert "12/12" in capsys.readouterr().err
